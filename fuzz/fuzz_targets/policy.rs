//! Any bytes as an escalation-policy file: check-config reports errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| alert_relay::fuzzing::policy(data));
