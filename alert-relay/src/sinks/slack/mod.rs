//! Slack (incoming webhook): a Block Kit message with a `text` fallback, a colour bar by
//! severity and status, the labels that matter, and Runbook / Source / Silence buttons.

mod request;
mod sink;

pub use request::build_message;
pub use sink::SlackSink;

#[cfg(test)]
mod tests;
