//! `server.console` and `server.console_auth`: whether the console is served, and how people
//! sign in to it.

use std::time::Duration;

use super::super::raw::RawServer;
use super::super::{ConsoleConfig, ProxyAuth};
use crate::validation::Checker;

pub(super) fn console(c: &mut Checker<'_>, s: &RawServer) -> Option<ConsoleConfig> {
    let auth = &s.console_auth;
    let path = "server.console_auth";
    let link_ttl = c.duration(
        &format!("{path}.link_ttl"),
        auth.link_ttl.as_deref(),
        Duration::from_secs(5 * 60),
    );
    if !(Duration::from_secs(30)..=Duration::from_secs(3600)).contains(&link_ttl) {
        c.error(
            format!("{path}.link_ttl"),
            "between 30s and 1h: long enough to open a push, short enough that a lost phone's old links are dead",
        );
    }
    let session_ttl = c.duration(
        &format!("{path}.session_ttl"),
        auth.session_ttl.as_deref(),
        Duration::from_secs(30 * 24 * 3600),
    );
    if !(Duration::from_secs(600)..=Duration::from_secs(400 * 24 * 3600)).contains(&session_ttl) {
        c.error(format!("{path}.session_ttl"), "between 10m and 400d");
    }
    let proxy = auth.proxy.as_ref().and_then(|p| {
        let header = match http::HeaderName::from_bytes(p.header.trim().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                c.error(
                    format!("{path}.proxy.header"),
                    format!(
                        "`{}` is not an HTTP header name (e.g. X-Forwarded-Email)",
                        p.header
                    ),
                );
                None
            }
        };
        if p.trusted_proxies.is_empty() {
            c.error(
                format!("{path}.proxy.trusted_proxies"),
                "empty: list the addresses the proxy connects from (e.g. 127.0.0.1, 10.0.0.0/8); the header from anywhere else is refused",
            );
        }
        let mut trusted = Vec::new();
        for (i, text) in p.trusted_proxies.iter().enumerate() {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(net) => trusted.push(net),
                Err(_) => c.error(
                    format!("{path}.proxy.trusted_proxies[{i}]"),
                    format!("`{text}` is not an address or a network (10.0.0.0/8, ::1)"),
                ),
            }
        }
        Some(ProxyAuth {
            header: header?,
            trusted,
        })
    });
    let sign_in_by_push = auth.sign_in_by_push.unwrap_or(true);
    if s.console == Some(false) {
        return None;
    }
    if !sign_in_by_push && proxy.is_none() {
        c.error(
            path,
            "nobody could sign in: keep sign_in_by_push, or set a proxy (or server.console: false)",
        );
    }
    Some(ConsoleConfig {
        sign_in_by_push,
        link_ttl,
        session_ttl,
        proxy,
    })
}
