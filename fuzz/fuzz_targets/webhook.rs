//! Any bytes as an Alertmanager webhook body: intake answers 400, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alert_relay::fuzzing::webhook(data));
