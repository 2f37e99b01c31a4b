//! The Now page: open incidents, who is on call, and the pager's own health.

use axum::extract::State;
use axum::response::Response;

use super::{chrome, unavailable, zone, Shared};
use crate::app::Relay;
use crate::console::auth::Viewer;
use crate::console::render;
use crate::console::views::{self, NowPage, OnCallRow, TargetRow};
use crate::domain::Timestamp;

/// `GET /`: open incidents, who is on call, and the pager's own health.
pub async fn now(State(relay): State<Shared>, viewer: Viewer) -> Response {
    let now = Timestamp::now();
    let zone = zone(&relay, &viewer);
    let (open, on_call, dead) = match tokio::try_join!(
        relay.open_incidents(200),
        relay.on_call(now, 1),
        relay.dead_letters(1000),
    ) {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let incidents = open
        .iter()
        .map(|o| views::IncidentRow {
            id: o.record.id,
            title: views::title(o),
            severity: views::severity(o),
            state: views::state(o, &zone),
            since: views::ago(o.record.machine.started_at, now),
            next: views::next(o, &on_call, &zone),
        })
        .collect();
    let day_ago = Timestamp(now.0 - 86_400_000);
    let page = NowPage {
        chrome: chrome(&relay, Some(&viewer)),
        incidents,
        on_call: on_call
            .iter()
            .map(|o| OnCallRow {
                schedule: o.schedule.clone(),
                now: o.now.as_ref().map(|s| s.person.clone()),
                until: o.now.as_ref().map(|s| views::local(s.ends_at, &zone)),
                next: o
                    .next
                    .first()
                    .map(|s| format!("{} from {}", s.person, views::local(s.starts_at, &zone))),
            })
            .collect(),
        targets: target_health(&relay),
        heartbeats: heartbeats(&relay, now),
        dead_letters: dead.0.iter().filter(|d| d.dead_at > day_ago).count(),
        zone,
    };
    render(&page)
}

/// Each target's last healthcheck, from the relay's own gauge.
pub(super) fn target_health(relay: &Relay) -> Vec<TargetRow> {
    let checked: std::collections::BTreeMap<String, bool> = relay
        .metrics()
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "relay_target_healthy")
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| {
            let target = m.get_label().iter().find(|l| l.name() == "target")?;
            Some((target.value().to_owned(), m.get_gauge().get_value() > 0.5))
        })
        .collect();
    relay
        .runtime()
        .sinks
        .keys()
        .map(|t| TargetRow {
            name: t.as_str().to_owned(),
            healthy: checked.get(t.as_str()).copied(),
        })
        .collect()
}

/// When each heartbeat policy last heard its heartbeat.
fn heartbeats(relay: &Relay, now: Timestamp) -> Vec<(String, String)> {
    relay
        .metrics()
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "relay_heartbeat_last_seen_timestamp_seconds")
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| {
            let policy = m.get_label().iter().find(|l| l.name() == "policy")?;
            let seen = Timestamp((m.get_gauge().get_value() * 1000.0) as i64);
            Some((
                policy.value().to_owned(),
                format!("{} ago", views::ago(seen, now)),
            ))
        })
        .collect()
}
