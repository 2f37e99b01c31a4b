//! Which text may become a link in front of a person: an absolute http(s) URL, nothing else.

use url::Url;

/// `text` if it may be made a link a person opens: an absolute `http://` or `https://` URL
/// with a host, written without whitespace or control characters (browsers drop those, so
/// `" javascript:…"` or `"java\tscript:…"` would run). Anything else — `javascript:`,
/// `data:`, `file:`, a relative path, text that is no URL — is `None`: never a link.
pub fn web_link(text: &str) -> Option<&str> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://"))
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let url = Url::parse(text).ok()?;
    let has_host = url.host_str().is_some_and(|host| !host.is_empty());
    (matches!(url.scheme(), "http" | "https") && has_host).then_some(text)
}

/// Whether `name` can be a runbook's name (`docs/runbooks/<name>.md`, served at
/// `/runbooks/<name>`): ASCII letters, digits, `_` and `-`, not empty.
pub fn is_runbook_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_links_are_links() {
        for good in [
            "https://runbooks.example.com/GatewayDown",
            "http://localhost:9465/runbooks/GatewayDown#diagnosis",
            "HTTPS://Example.com/x?y=1",
        ] {
            assert_eq!(web_link(good), Some(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(document.cookie)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "vbscript:msgbox(1)",
            "ftp://example.com/runbook",
            "/GatewayDown",
            "GatewayDown",
            "//evil.example.com/x",
            "https://",
            "http:example.com",
            " https://example.com/padded",
            "https://example.com/a b",
            "",
        ] {
            assert_eq!(web_link(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn runbook_names_are_plain_words() {
        assert!(is_runbook_name("GatewayHighErrorRate"));
        assert!(is_runbook_name("disk_full-2"));
        for bad in ["", "..", "a/b", "a.md", "a b", "ünï"] {
            assert!(!is_runbook_name(bad), "{bad:?}");
        }
    }
}
