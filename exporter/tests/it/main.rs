//! Integration tests: the real `exporter` and `demo-gateway` binaries on free ports.

mod helpers;

mod exporter_binary;
mod hostile_gateway;
mod logs;
mod state_file;
