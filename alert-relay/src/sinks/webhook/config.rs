//! The `targets.webhook.<name>` section: a receiver URL, a Standard Webhooks signing secret
//! (`whsec_<base64>`, inline with `${ENV}` or from a file) and optional extra headers.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use crate::validation::{Checker, EnvString, RawTemplates};

/// Headers the relay sets itself (or that would break the request's framing): a custom header
/// of these names is refused at load, never silently overridden.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The Standard Webhooks secret sizes (24 to 64 random bytes).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where events are POSTed.
    pub url: EnvString,
    /// The signing secret, `whsec_<base64>` (or `secret_file`).
    pub secret: Option<EnvString>,
    pub secret_file: Option<EnvString>,
    /// Extra headers sent with every request (values may use `${ENV}`).
    #[serde(default)]
    pub headers: BTreeMap<String, EnvString>,
    #[serde(default)]
    pub templates: RawTemplates,
}

/// The HMAC key (the secret's bytes after `whsec_`): never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// The key of a `whsec_<base64>` secret, or why it is not one.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let Some(encoded) = secret.strip_prefix("whsec_") else {
            return Err(
                "a Standard Webhooks secret starts with `whsec_` followed by base64".into(),
            );
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "the part after `whsec_` is not valid base64".to_owned())?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(format!(
                "the key is {} bytes; Standard Webhooks secrets are 24 to 64 random bytes \
                 (e.g. `echo whsec_$(head -c 32 /dev/urandom | base64)`)",
                key.len()
            ));
        }
        Ok(Self(key))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: Url,
    pub key: SigningKey,
    /// Extra headers, values marked sensitive (they may carry credentials).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn validate(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawWebhook,
) -> Option<Result<WebhookConfig, String>> {
    let url_path = format!("{path}.url");
    let url = c.expand(&url_path, &raw.url)?;
    let secret_path = format!("{path}.secret");
    let secret = c.secret(&secret_path, raw.secret.as_ref(), raw.secret_file.as_ref());
    if secret.is_none() && raw.secret.is_none() && raw.secret_file.is_none() {
        c.error(
            &secret_path,
            "missing: set secret (e.g. ${WEBHOOK_SECRET}, whsec_<base64>) or secret_file",
        );
    }
    let headers = headers(c, path, &raw.headers);
    let secret = secret?;
    if url.is_empty() {
        return Some(Err(
            "its url is empty (set the environment variable to enable it)".into(),
        ));
    }
    if secret.0.is_empty() {
        return Some(Err(
            "its secret is empty (set the environment variable to enable it)".into(),
        ));
    }
    let url = c.url(&url_path, &url)?;
    // Checked without echoing the secret.
    let key = match SigningKey::parse(secret.expose()) {
        Ok(key) => key,
        Err(why) => {
            c.error(secret_path, why);
            return None;
        }
    };
    Some(Ok(WebhookConfig {
        url,
        key,
        headers: headers?,
    }))
}

/// The extra headers: valid names and values, none the relay sets itself.
fn headers(
    c: &mut Checker<'_>,
    path: &str,
    raw: &BTreeMap<String, EnvString>,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let before = c.errors.len();
    let mut out = Vec::new();
    for (name, value) in raw {
        let here = format!("{path}.headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            c.error(here, "not a valid HTTP header name");
            continue;
        };
        if out.iter().any(|(seen, _): &(HeaderName, _)| seen == header) {
            c.error(
                here,
                "given twice (header names are case-insensitive): it would be sent twice",
            );
            continue;
        }
        if RESERVED_HEADERS.contains(&header.as_str()) {
            c.error(
                here,
                format!(
                    "`{name}` is set by the relay itself and cannot be overridden (reserved: {})",
                    RESERVED_HEADERS.join(", ")
                ),
            );
            continue;
        }
        let Some(value) = c.expand(&here, value) else {
            continue;
        };
        // The value is not echoed: it may be a credential.
        let Ok(mut value) = HeaderValue::from_str(&value) else {
            c.error(here, "the value has characters a header cannot carry");
            continue;
        };
        value.set_sensitive(true);
        out.push((header, value));
    }
    (c.errors.len() == before).then_some(out)
}
