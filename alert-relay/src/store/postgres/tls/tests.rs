//! `sslmode` and `sslrootcert` as the database URL gives them: what is accepted, what the
//! driver is told, and what is refused before any connection.

use std::path::Path;

use super::{Check, Tls};
use crate::store::postgres::DatabaseUrl;

fn refused(text: &str) -> String {
    match DatabaseUrl::parse(text) {
        Ok(url) => panic!("{url} must be refused"),
        Err(error) => error,
    }
}

#[test]
fn every_sslmode_is_accepted_and_the_driver_is_told_whether_tls_is_needed() {
    use tokio_postgres::config::SslMode as Driver;
    for (mode, driver) in [
        ("disable", Driver::Disable),
        ("prefer", Driver::Prefer),
        ("require", Driver::Require),
        ("verify-ca", Driver::Require),
        ("verify-full", Driver::Require),
    ] {
        let text = format!("postgres://relay@db/relay?sslmode={mode}&connect_timeout=3");
        let url = DatabaseUrl::parse(&text).unwrap_or_else(|e| panic!("{mode}: {e}"));
        let config = url.config().unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(config.get_ssl_mode(), driver, "{mode}");
        assert!(url.tls().is_ok(), "{mode}");
        assert!(
            url.to_string().contains(&format!("sslmode={mode}")),
            "{url}"
        );
    }
    let default = DatabaseUrl::parse("postgres://relay@db/relay").expect("url");
    assert_eq!(
        default.config().expect("config").get_ssl_mode(),
        Driver::Prefer
    );
}

#[test]
fn an_unknown_sslmode_is_refused_with_the_known_ones() {
    let error = refused("postgres://relay@db/relay?sslmode=verify");
    assert!(error.contains("sslmode=verify is not a mode"), "{error}");
    assert!(error.contains("verify-ca, verify-full"), "{error}");
}

#[test]
fn the_ca_file_is_read_when_the_url_is_parsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let url = |file: &Path| {
        format!(
            "postgres://relay@db/relay?sslmode=verify-full&sslrootcert={}",
            file.display()
        )
    };
    let error = refused(&url(&ca));
    assert!(error.contains("cannot read the CA file"), "{error}");
    assert!(error.contains(&ca.display().to_string()), "{error}");
    std::fs::write(&ca, "").expect("empty");
    assert!(refused(&url(&ca)).contains("no certificate in the file"));
    std::fs::write(&ca, "not a certificate\n").expect("text");
    assert!(refused(&url(&ca)).contains("no certificate in the file"));

    let key = rcgen::KeyPair::generate().expect("key");
    let one = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.self_signed(&key))
        .expect("a CA");
    let other = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.self_signed(&key))
        .expect("another CA");
    std::fs::write(&ca, format!("{}{}", one.pem(), other.pem())).expect("bundle");
    let parsed = DatabaseUrl::parse(&url(&ca)).expect("a bundle of two CAs");
    assert!(parsed.config().is_ok() && parsed.tls().is_ok());
    let driver = parsed.config().expect("config");
    assert!(
        !format!("{driver:?}").contains("ca.pem"),
        "the driver never sees it"
    );
}

#[test]
fn what_tls_cannot_do_is_refused_at_parse() {
    let error = refused("postgres://relay@db/relay?sslmode=disable&sslrootcert=system");
    assert!(error.contains("of no use with sslmode=disable"), "{error}");
    let error = refused("postgres://relay@db/relay?sslmode=require&sslcert=client.pem");
    assert!(
        error.contains("client certificates are not supported"),
        "{error}"
    );
    let error = refused("postgres://relay@%2Frun%2Fpostgresql/relay?sslmode=require");
    assert!(error.contains("unix socket"), "{error}");
    DatabaseUrl::parse("postgres://relay@%2Frun%2Fpostgresql/relay?sslmode=prefer")
        .expect("prefer over a socket is plain text");
    DatabaseUrl::parse("postgres://relay@db/relay?sslmode=verify-ca&sslrootcert=system")
        .expect("the built-in CAs");
}

#[test]
fn another_database_keeps_the_tls_settings() {
    let url = DatabaseUrl::parse("postgres://relay@db/postgres?sslmode=verify-full")
        .expect("url")
        .with_database("relay_test_2");
    let config = url.config().expect("config");
    assert_eq!(
        config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
    assert!(url.to_string().contains("sslmode=verify-full"), "{url}");
}

#[test]
fn only_the_verifying_modes_and_a_given_ca_check_the_certificate() {
    let check = |mode: &str| Tls::parse(Some(mode), None).map(|t| t.check());
    assert_eq!(check("prefer"), Ok(Check::Nothing));
    assert_eq!(check("require"), Ok(Check::Nothing));
    assert_eq!(check("verify-ca"), Ok(Check::Chain));
    assert_eq!(check("verify-full"), Ok(Check::ChainAndName));
    let given = Tls::parse(Some("require"), Some("system")).map(|t| t.check());
    assert_eq!(given, Ok(Check::Chain));
}
