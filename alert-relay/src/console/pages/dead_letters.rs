//! The Dead letters page: what could not be sent and why, and each target's health.

use axum::extract::State;
use axum::response::Response;

use super::now::target_health;
use super::{chrome, unavailable, zone, Shared};
use crate::console::auth::Viewer;
use crate::console::render;
use crate::console::views::dead_letters::{self as view, DeadLettersView};

/// Dead letters listed at most, newest first.
const LIMIT: u32 = 200;

/// `GET /dead-letters`.
pub async fn dead_letters(State(relay): State<Shared>, viewer: Viewer) -> Response {
    let zone = zone(&relay, &viewer);
    let (letters, quarantined) = match relay.dead_letters(LIMIT).await {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let page = DeadLettersView {
        chrome: chrome(&relay, Some(&viewer)),
        targets: view::target_health(target_health(&relay), &letters),
        letters: letters.iter().map(|d| view::letter_row(d, &zone)).collect(),
        quarantined: quarantined
            .iter()
            .map(|q| view::quarantined_row(q, &zone))
            .collect(),
        limit: LIMIT,
        zone,
    };
    render(&page)
}
