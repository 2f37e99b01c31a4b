//! Fake vendors as strict as the real ones: they refuse what the vendor's documentation says
//! it refuses, with the vendor's own answer, so that a test catches the next limit breach.
//! The limits are written here from the vendors' documents, independently of the relay's
//! request builders:
//! - ntfy: a JSON publish over 2 × `message-size-limit` (8,192 bytes) → 413 code 41303; a
//!   message over 4,096 bytes → 413; priority outside 1–5 → 400 code 40007; at most 3 actions
//!   (<https://docs.ntfy.sh/publish/>, server/errors.go).
//! - Slack: Block Kit — header ≤ 150, section text ≤ 3,000, ≤ 10 fields of ≤ 2,000, button URL
//!   ≤ 3,000 and text ≤ 75 characters, ≤ 50 blocks → 400 `invalid_blocks`
//!   (<https://api.slack.com/reference/block-kit/blocks>).
//! - PagerDuty Events API v2: summary ≤ 1,024 characters, source and severity required, a valid
//!   timestamp, the event ≤ 512 KB → 400 "invalid event"
//!   (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>).

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub struct StrictNtfy;

impl Respond for StrictNtfy {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let refuse = |status: u16, code: u32, error: &str| {
            ResponseTemplate::new(status)
                .set_body_json(json!({"code": code, "http": status, "error": error}))
        };
        if request.body.len() > 8192 {
            return refuse(413, 41303, "request entity too large");
        }
        let Ok(message) = serde_json::from_slice::<Value>(&request.body) else {
            return refuse(
                400,
                40026,
                "invalid request: request body must be message JSON",
            );
        };
        if message["message"].as_str().map_or(0, str::len) > 4096 {
            return refuse(413, 41303, "request entity too large");
        }
        if let Some(p) = message.get("priority") {
            if !p.as_u64().is_some_and(|p| (1..=5).contains(&p)) {
                return refuse(400, 40007, "invalid priority");
            }
        }
        if message["actions"].as_array().is_some_and(|a| a.len() > 3) {
            return refuse(400, 40018, "invalid request: too many actions");
        }
        if message["topic"].as_str().is_none_or(str::is_empty) {
            return refuse(400, 40009, "invalid topic");
        }
        ResponseTemplate::new(200).set_body_json(json!({"id": "x", "event": "message"}))
    }
}

/// ntfy that answers 503 until told to recover, then as [`StrictNtfy`]: a switch with no
/// moment in between where a request would meet no answer at all.
#[derive(Clone, Default)]
pub struct Recovering(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Recovering {
    pub fn recover(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Respond for Recovering {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            StrictNtfy.respond(request)
        } else {
            ResponseTemplate::new(503)
        }
    }
}

pub struct StrictSlack;

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// What Slack would find wrong with a message's blocks.
pub fn block_kit_errors(body: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut blocks: Vec<&Value> = body["blocks"].as_array().into_iter().flatten().collect();
    for attachment in body["attachments"].as_array().into_iter().flatten() {
        blocks.extend(attachment["blocks"].as_array().into_iter().flatten());
    }
    if blocks.len() > 50 {
        errors.push(format!("{} blocks", blocks.len()));
    }
    for block in blocks {
        match block["type"].as_str() {
            Some("header") => {
                let n = chars(&block["text"]["text"]);
                if n == 0 || n > 150 {
                    errors.push(format!("header of {n}"));
                }
            }
            Some("section") => {
                if chars(&block["text"]["text"]) > 3000 {
                    errors.push("section text over 3000".into());
                }
                let fields = block["fields"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                if fields.len() > 10 || fields.iter().any(|f| chars(&f["text"]) > 2000) {
                    errors.push("fields".into());
                }
            }
            Some("actions") => {
                for b in block["elements"].as_array().into_iter().flatten() {
                    if chars(&b["url"]) > 3000 || chars(&b["text"]["text"]) > 75 {
                        errors.push("button".into());
                    }
                }
            }
            Some("context") => {
                for e in block["elements"].as_array().into_iter().flatten() {
                    if chars(&e["text"]) > 3000 {
                        errors.push("context".into());
                    }
                }
            }
            _ => {}
        }
    }
    errors
}

impl Respond for StrictSlack {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_string("invalid_payload");
        };
        if body["text"].as_str().is_none_or(str::is_empty) && body["attachments"].is_null() {
            return ResponseTemplate::new(400).set_body_string("no_text");
        }
        if !block_kit_errors(&body).is_empty() {
            return ResponseTemplate::new(400).set_body_string("invalid_blocks");
        }
        ResponseTemplate::new(200).set_body_string("ok")
    }
}

pub struct StrictPagerDuty;

impl Respond for StrictPagerDuty {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let invalid = |error: String| {
            ResponseTemplate::new(400).set_body_json(json!({
                "status": "invalid event", "message": "Event object is invalid", "errors": [error]
            }))
        };
        if request.body.len() > 512 * 1024 {
            return ResponseTemplate::new(413).set_body_string("Request Entity Too Large");
        }
        let Ok(event) = serde_json::from_slice::<Value>(&request.body) else {
            return invalid("Event object is not valid JSON".into());
        };
        if event["routing_key"].as_str().map_or(0, str::len) != 32 {
            return invalid(
                "Length of 'routing_key' is incorrect (should be 32 characters)".into(),
            );
        }
        if event["event_action"] == "trigger" {
            let p = &event["payload"];
            if chars(&p["summary"]) == 0 || chars(&p["summary"]) > 1024 {
                return invalid("'payload.summary' is missing or longer than 1024".into());
            }
            if chars(&p["source"]) == 0 {
                return invalid("'payload.source' is missing".into());
            }
            if !["critical", "error", "warning", "info"]
                .contains(&p["severity"].as_str().unwrap_or(""))
            {
                return invalid("'payload.severity' is invalid".into());
            }
            if let Some(t) = p.get("timestamp") {
                if t.as_str()
                    .is_none_or(|t| t.parse::<jiff::Timestamp>().is_err())
                {
                    return invalid("'payload.timestamp' is not a valid ISO 8601 date".into());
                }
            }
        }
        ResponseTemplate::new(202)
            .set_body_json(json!({"status": "success", "message": "Event processed"}))
    }
}

/// A strict fake mounted for every POST (and ntfy's health and account checks).
pub async fn strict(responder: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}

/// A Standard Webhooks receiver, written from the specification (not with the relay's
/// signer): 401 for a missing `webhook-*` header, a timestamp more than 5 minutes off (the
/// reference libraries' tolerance) or no `v1,` signature matching HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under the secret's key; 413 for a body over `max_body`; 400 for
/// a body that is not JSON; else 200.
pub struct StrictWebhookReceiver {
    pub secret: &'static str,
    pub max_body: usize,
}

impl StrictWebhookReceiver {
    /// Why a request would be refused, as (status, reason); `None` if it verifies.
    pub fn refusal(&self, request: &Request) -> Option<(u16, String)> {
        use base64::Engine as _;
        use hmac::Mac as _;
        // A receiver's server caps the body before the handler reads it.
        if request.body.len() > self.max_body {
            return Some((413, "payload too large".into()));
        }
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(id), Some(timestamp), Some(signatures)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return Some((401, "missing required headers".into()));
        };
        let Ok(sent) = timestamp.parse::<i64>() else {
            return Some((401, "invalid timestamp".into()));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if (now - sent).abs() > 5 * 60 {
            return Some((401, "message timestamp too old or too new".into()));
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let key = engine
            .decode(self.secret.trim_start_matches("whsec_"))
            .expect("the fake's secret");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&request.body);
        let expected = engine.encode(mac.finalize().into_bytes());
        if !signatures
            .split(' ')
            .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
        {
            return Some((401, "no matching signature found".into()));
        }
        if serde_json::from_slice::<Value>(&request.body).is_err() {
            return Some((400, "body is not JSON".into()));
        }
        None
    }
}

impl Respond for StrictWebhookReceiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match self.refusal(request) {
            Some((status, reason)) => {
                ResponseTemplate::new(status).set_body_json(json!({"message": reason}))
            }
            None => ResponseTemplate::new(200),
        }
    }
}
