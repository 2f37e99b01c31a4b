//! Integration tests: the real `exporter` and `demo-gateway` binaries on free ports.

mod helpers;

mod exporter_binary;
mod state_file;
