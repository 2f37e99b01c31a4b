//! The Me page's view model: the viewer's shifts ahead, the pages they received, their
//! sessions (each one theirs to end) and their calendar feed.

use askama::Template;

use super::{local, Chrome};
use crate::app::console::ReceivedPage;
use crate::domain::Timestamp;
use crate::engine::oncall::{Schedule, Shift};
use crate::store::ConsoleSession;

#[derive(Template)]
#[template(path = "console/me.html")]
pub struct MePage {
    pub chrome: Chrome,
    /// The viewer's zone, which every time is in.
    pub zone: String,
    pub shift_days: i64,
    pub shifts: Vec<MyShift>,
    pub page_days: i64,
    pub pages: Vec<PageRow>,
    /// More pages than shown were received in the window.
    pub more_pages: bool,
    pub sessions: Vec<SessionRow>,
    /// Signed in through the organisation's proxy (no session of the console's own).
    pub by_proxy: bool,
    pub feed: String,
    /// What the viewer's last action did.
    pub notice: Option<&'static str>,
}

pub struct MyShift {
    pub schedule: String,
    pub starts: String,
    pub ends: String,
    pub current: bool,
    pub by_override: bool,
}

pub struct PageRow {
    pub at: String,
    pub incident: i64,
    /// The incident's title, when it can still be read.
    pub title: Option<String>,
    pub detail: String,
}

pub struct SessionRow {
    /// The session's hash: what "sign out this session" names.
    pub hash: String,
    pub browser: String,
    pub created: String,
    pub expires: String,
    /// The session this page was asked for with.
    pub this_one: bool,
}

pub fn my_shift(schedule: &Schedule, shift: &Shift, zone: &str, now: Timestamp) -> MyShift {
    MyShift {
        schedule: schedule.name.clone(),
        starts: local(shift.starts_at, zone),
        ends: local(shift.ends_at, zone),
        current: shift.starts_at <= now && now < shift.ends_at,
        by_override: shift.override_id.is_some(),
    }
}

pub fn page_row(page: &ReceivedPage, zone: &str) -> PageRow {
    PageRow {
        at: local(page.event.at, zone),
        incident: page.event.incident_id,
        title: page
            .incident
            .as_ref()
            .map(|r| clipped(&super::record_title(r), MAX_TITLE)),
        detail: page.event.detail.clone(),
    }
}

/// How much of an incident's title a line of the list shows (its page shows it all).
const MAX_TITLE: usize = 160;

/// `text` cut to `max` characters, with a visible marker where it was cut.
fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

pub fn session_row(session: &ConsoleSession, current: Option<&str>, zone: &str) -> SessionRow {
    SessionRow {
        hash: session.id_hash.clone(),
        browser: if session.user_agent.trim().is_empty() {
            "unknown browser".into()
        } else {
            session.user_agent.clone()
        },
        created: local(session.created_at, zone),
        expires: local(session.expires_at, zone),
        this_one: current == Some(session.id_hash.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_title_is_cut_with_a_marker() {
        assert_eq!(clipped("GatewayDown", 160), "GatewayDown");
        assert_eq!(clipped("ééééé", 3), "ééé…");
        assert_eq!(clipped(&"x".repeat(500), 160).chars().count(), 161);
    }
}
