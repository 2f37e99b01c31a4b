//! Acknowledge links: HMAC-SHA256-signed tokens bound to one incident, with an expiry and a
//! nonce (so the store can refuse a replay). Format: `base64url(payload).base64url(mac)`,
//! payload = incident id (8 bytes BE) | expiry ms (8 bytes BE) | nonce (12 bytes) | incident
//! key (16 bytes). The key is random per incident, so a link never acknowledges another
//! incident that got the same id after the store was reset or restored.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::domain::{IncidentKey, Timestamp};
use crate::validation::Secret;

type HmacSha256 = Hmac<Sha256>;

/// What a calendar feed's token signs before the feed's name.
const FEED_DOMAIN: &[u8] = b"alert-relay calendar feed\0";
const CSRF_DOMAIN: &[u8] = b"alert-relay console form\0";

const PAYLOAD_LEN: usize = 8 + 8 + 12 + 16;
/// Links signed before incident keys existed (bound to the id only); they expire within
/// `ack_link_ttl` of the upgrade.
const LEGACY_PAYLOAD_LEN: usize = 8 + 8 + 12;
/// A generated key file is this long (hex of 32 random bytes).
const GENERATED_LEN: usize = 64;

#[derive(Clone)]
pub struct AckKey(Vec<u8>);

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(***)")
    }
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckClaim {
    pub incident_id: i64,
    /// `None` for a legacy link (signed before incident keys existed).
    pub incident_key: Option<IncidentKey>,
    /// Unique per link: the store records it when used.
    pub nonce: String,
}

impl AckClaim {
    /// Whether the link is for the incident whose random key is `key`: not for another that
    /// got the same id after the store was reset or restored. A legacy link fits by id.
    pub fn fits(&self, key: IncidentKey) -> bool {
        self.incident_key.is_none_or(|k| k == key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the acknowledge link is malformed")]
    Malformed,
    #[error("the acknowledge link's signature is invalid")]
    Forged,
    #[error("the acknowledge link has expired")]
    Expired,
}

impl AckKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// The configured secret, else the one kept in `data_dir/ack-secret` (created on first
    /// start, mode 0600, written atomically), so that links survive restarts without
    /// configuration. A damaged key file is an error that says how to fix it.
    pub fn load_or_create(configured: Option<&Secret>, data_dir: &Path) -> Result<Self, String> {
        if let Some(secret) = configured {
            return Ok(Self::new(secret.expose().as_bytes()));
        }
        let path = data_dir.join("ack-secret");
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().len() >= 32 => return Ok(Self::new(text.trim().as_bytes())),
            // Nothing was ever signed with an empty key: make a new one.
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                return Err(format!(
                    "{} holds {} characters, fewer than the 32 an acknowledge key needs: delete it \
                     to have a new key generated (acknowledge links already sent stop working), \
                     or set server.ack_secret_file to a file of at least 32 random characters",
                    path.display(),
                    text.trim().len()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        let mut bytes = [0u8; GENERATED_LEN / 2];
        rand::rng().fill_bytes(&mut bytes);
        let secret = hex(&bytes);
        write_private(data_dir, &path, &secret)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self::new(secret.as_bytes()))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// A link for incident `incident_id` (whose random key is `key`), valid until `expires`.
    /// `nonce` makes each link distinct; the store records it when the link is used.
    pub fn sign(
        &self,
        incident_id: i64,
        key: IncidentKey,
        expires: Timestamp,
        nonce: [u8; 12],
    ) -> String {
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.extend_from_slice(&incident_id.to_be_bytes());
        payload.extend_from_slice(&expires.0.to_be_bytes());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&key.0);
        self.seal(&payload)
    }

    fn seal(&self, payload: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The secret token of a calendar feed (`schedule-primary`, `person-alice`): each feed
    /// its own, none of them an acknowledge token (a separate domain of the same key).
    /// Rotating the ack secret revokes them all.
    pub fn feed_token(&self, feed: &str) -> String {
        let mut mac = self.mac();
        mac.update(FEED_DOMAIN);
        mac.update(feed.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the feed's (constant time).
    pub fn verify_feed(&self, feed: &str, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(FEED_DOMAIN);
        mac.update(feed.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }

    /// The console's anti-forgery token for a signed-in principal (a session, or a person
    /// named by the trusted proxy): forms carry it, and a form without it is refused.
    pub fn form_token(&self, principal: &str) -> String {
        let mut mac = self.mac();
        mac.update(CSRF_DOMAIN);
        mac.update(principal.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the principal's form token (constant time).
    pub fn verify_form(&self, principal: &str, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(CSRF_DOMAIN);
        mac.update(principal.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }

    /// Checks the signature (constant time) and then the expiry.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<AckClaim, AckError> {
        let (payload, tag) = token.split_once('.').ok_or(AckError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AckError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| AckError::Malformed)?;
        if payload.len() != PAYLOAD_LEN && payload.len() != LEGACY_PAYLOAD_LEN {
            return Err(AckError::Malformed);
        }
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| AckError::Forged)?;
        let field = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&payload[range]);
            i64::from_be_bytes(bytes)
        };
        let incident_id = field(0..8);
        if field(8..16) < now.0 {
            return Err(AckError::Expired);
        }
        let incident_key = (payload.len() == PAYLOAD_LEN).then(|| {
            let mut key = [0u8; 16];
            key.copy_from_slice(&payload[28..]);
            IncidentKey(key)
        });
        Ok(AckClaim {
            incident_id,
            incident_key,
            nonce: URL_SAFE_NO_PAD.encode(&payload[16..28]),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path` mode 0600 through a temporary file and a rename, so that a crash
/// never leaves an empty or half-written key behind.
fn write_private(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);
    const KEY: IncidentKey = IncidentKey([7; 16]);

    impl AckKey {
        fn sign_test(&self, id: i64, expires: Timestamp) -> String {
            let mut nonce = [0u8; 12];
            rand::rng().fill_bytes(&mut nonce);
            self.sign(id, KEY, expires, nonce)
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let key = AckKey::new(b"0123456789abcdef0123456789abcdef");
        let token = key.sign_test(42, Timestamp(NOW.0 + 60_000));
        let claim = key.verify(&token, NOW).expect("valid");
        assert_eq!(claim.incident_id, 42);
        assert_eq!(claim.incident_key, Some(KEY));
        assert_eq!(
            key.verify(&token, Timestamp(NOW.0 + 60_001)),
            Err(AckError::Expired)
        );
    }

    #[test]
    fn forged_and_malformed_links_are_refused() {
        let key = AckKey::new(b"0123456789abcdef0123456789abcdef");
        let other = AckKey::new(b"another key, another key, another");
        let token = other.sign_test(42, Timestamp(NOW.0 + 60_000));
        assert_eq!(key.verify(&token, NOW), Err(AckError::Forged));
        // Changing the incident id invalidates the signature.
        let genuine = key.sign_test(42, Timestamp(NOW.0 + 60_000));
        let (payload, tag) = genuine.split_once('.').expect("dot");
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).expect("b64");
        bytes[7] = 43;
        let tampered = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(key.verify(&tampered, NOW), Err(AckError::Forged));
        for junk in ["", "abc", "a.b", "%%%.%%%", &format!("{payload}.")] {
            assert!(key.verify(junk, NOW).is_err(), "{junk}");
        }
    }

    #[test]
    fn each_link_has_its_own_nonce() {
        let key = AckKey::new(b"0123456789abcdef0123456789abcdef");
        let expires = Timestamp(NOW.0 + 1);
        let a = key.verify(&key.sign_test(1, expires), NOW).expect("a");
        let b = key.verify(&key.sign_test(1, expires), NOW).expect("b");
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn a_generated_key_is_kept_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = AckKey::load_or_create(None, dir.path()).expect("create");
        let token = first.sign_test(7, Timestamp(NOW.0 + 1000));
        let second = AckKey::load_or_create(None, dir.path()).expect("load");
        assert!(second.verify(&token, NOW).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ack-secret"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_legacy_link_without_incident_key_still_verifies() {
        let key = AckKey::new(b"0123456789abcdef0123456789abcdef");
        let mut payload = Vec::new();
        payload.extend_from_slice(&5i64.to_be_bytes());
        payload.extend_from_slice(&(NOW.0 + 1).to_be_bytes());
        payload.extend_from_slice(&[1u8; 12]);
        let claim = key.verify(&key.seal(&payload), NOW).expect("legacy");
        assert_eq!((claim.incident_id, claim.incident_key), (5, None));
    }

    #[test]
    fn an_empty_key_file_is_replaced_and_a_short_one_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ack-secret");
        std::fs::write(&file, "").expect("empty");
        AckKey::load_or_create(None, dir.path()).expect("an empty file is replaced");
        assert_eq!(std::fs::read_to_string(&file).expect("read").len(), 64);
        std::fs::write(&file, "short").expect("short");
        let error = AckKey::load_or_create(None, dir.path()).expect_err("short");
        assert!(error.contains("fewer than the 32"), "{error}");
        assert!(error.contains("delete it"), "{error}");
    }
}
