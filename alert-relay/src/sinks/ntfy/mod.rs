//! ntfy (phone push): JSON publishing to the server root, with priority by severity, a click
//! URL, up to three actions (Runbook, Acknowledge, Silence) and a sequence id per incident so
//! that the resolve replaces the page on the phone.

mod request;
mod sink;

pub use request::{build_message, MAX_MESSAGE_BYTES};
pub use sink::NtfySink;

#[cfg(test)]
mod tests;
