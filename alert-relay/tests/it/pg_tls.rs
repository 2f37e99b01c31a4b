//! TLS to a real PostgreSQL: a CA and a server certificate for `localhost` made here, a
//! private server (`pg_server`) that takes only TLS connections with a password, and each
//! `sslmode` against it: what connects, what is refused, and in which words.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alert_relay::store::{DatabaseUrl, PostgresStore, Store};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::helpers::write_policy;
use crate::pg_server::Server;

const PASSWORD: &str = "tls-test-s3cret";

/// A CA, a server certificate it signed for `localhost` only, and a CA that signed nothing.
struct Pki {
    dir: tempfile::TempDir,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, ca) = certificate_authority("relay test CA");
        let (other_pem, _) = certificate_authority("some other CA");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write the CA");
        std::fs::write(dir.path().join("other-ca.pem"), other_pem).expect("write the other CA");
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &ca)
            .expect("sign the server's certificate");
        Pki {
            dir,
            server_cert: cert.pem(),
            server_key: key.serialize_pem(),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }
}

fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert.pem(), Issuer::new(params, key))
}

/// A server with TLS on that takes TCP connections only over TLS and with the password
/// (SCRAM, so that the exchange can be bound to the certificate).
fn tls_server(pki: &Pki) -> Server {
    let server = Server::init();
    let cert = server.write_private("server.crt", &pki.server_cert);
    let key = server.write_private("server.key", &pki.server_key);
    server.write_private(
        "data/pg_hba.conf",
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    );
    let server = server.with_options(&format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        cert.display(),
        key.display()
    ));
    server.up();
    server.psql(&format!("ALTER ROLE relay PASSWORD '{PASSWORD}'"));
    server
}

fn url(server: &Server, host: &str, query: &str) -> String {
    format!(
        "postgres://relay:{PASSWORD}@{host}:{}/postgres?connect_timeout=10&{query}",
        server.port()
    )
}

fn open(text: &str) -> Result<PostgresStore, String> {
    let url = DatabaseUrl::parse(text)?;
    PostgresStore::open(&url).map_err(|e| e.to_string())
}

fn refused(text: &str) -> String {
    match open(text) {
        Ok(_) => panic!("{text} must be refused"),
        Err(error) => {
            assert!(!error.contains(PASSWORD), "the password is shown: {error}");
            error
        }
    }
}

/// Whether the store's own connection is encrypted, as the server sees it.
fn encrypted(store: &PostgresStore) -> bool {
    let rows = store
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl");
    rows.first().is_some_and(|row| row.get::<_, bool>(0))
}

#[test]
fn verify_full_with_the_right_ca_connects_over_tls_and_the_store_writes() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    // channel_binding=require: SCRAM-SHA-256-PLUS, bound to the server's certificate.
    let query = format!(
        "sslmode=verify-full&sslrootcert={}&channel_binding=require",
        pki.ca().display()
    );
    let store = open(&url(&server, "localhost", &query)).expect("verify-full with the right CA");
    assert!(encrypted(&store));
    store.probe().expect("a write, rolled back");
    store
        .execute("CREATE TABLE written_over_tls (n int); INSERT INTO written_over_tls VALUES (1)")
        .expect("a write");
    let rows = store
        .query("SELECT count(*) FROM written_over_tls", &[])
        .expect("read it back");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

#[test]
fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let ca = pki.ca().display().to_string();
    let error = refused(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(
        error.contains("the server's certificate is for localhost, not for 127.0.0.1"),
        "{error}"
    );
    assert!(error.contains("sslmode=verify-full"), "{error}");
    assert!(
        error.contains(&format!("relay:***@127.0.0.1:{}", server.port())),
        "{error}"
    );

    let store = open(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .expect("verify-ca checks the chain only");
    assert!(encrypted(&store));
}

#[test]
fn require_encrypts_without_checking_unless_given_a_ca() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let store =
        open(&url(&server, "127.0.0.1", "sslmode=require")).expect("require takes any certificate");
    assert!(encrypted(&store));
    drop(store);

    let other = pki.other_ca().display().to_string();
    let error = refused(&url(
        &server,
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={other}"),
    ));
    assert!(
        error.contains(&format!("not signed by a CA in {other} (sslmode=require)")),
        "{error}"
    );
}

#[test]
fn a_certificate_from_another_ca_stops_serve_at_start_and_says_why() {
    let pki = Pki::new();
    let server = tls_server(&pki);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "http://127.0.0.1:9", "5m");
    let other = pki.other_ca().display().to_string();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .arg("serve")
        .arg("--config")
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env(
            "RELAY_DATABASE_URL",
            url(
                &server,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
        )
        .env_remove("LOKI_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start alert-relay");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = relay.try_wait().expect("wait for alert-relay") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = relay.kill();
            panic!("alert-relay still runs with a server certificate it cannot trust");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(relay.stderr.take().expect("stderr")).expect("read");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("relay:***@localhost:{}", server.port())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the server's certificate is not signed by a CA in {other} (sslmode=verify-full)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn require_refuses_a_server_without_tls_and_disable_still_connects() {
    let server = Server::start();
    let plain = |query: &str| format!("{}?{query}", server.url());

    let error = refused(&plain("sslmode=require"));
    assert!(error.contains("server does not support TLS"), "{error}");
    assert!(error.contains("sslmode=require"), "{error}");

    let store = open(&plain("sslmode=disable")).expect("disable connects in plain text");
    assert!(!encrypted(&store));
    store.probe().expect("a write, rolled back");
    drop(store);
    let store = open(&plain("sslmode=prefer")).expect("prefer falls back to plain text");
    assert!(!encrypted(&store));
}
