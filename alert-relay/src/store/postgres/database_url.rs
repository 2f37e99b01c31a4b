//! Where the PostgreSQL store connects: a `postgres://` URL checked before use, with the
//! password from a file if asked, so that it never sits in the URL (nor in `ps`), and
//! what it asks of TLS (`sslmode`, `sslrootcert`: see [`super::tls`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use url::Url;

use super::tls::{Connector, Tls};

/// Keys the relay reads itself: the driver knows neither `verify-*` nor `sslrootcert`.
const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Waiting longer than this for a TCP connection means the server is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle seconds before the kernel asks a silent server whether it is still there (the
/// default, two hours, would leave a relay waiting on a dead connection for that long).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Data unacknowledged this long closes the connection: a query never hangs on a server
/// that vanished. (A path that still acknowledges but no longer forwards is the client-side
/// deadline's: `Limits::answer`.)
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Asked of the server for every session: notice a relay that vanished within about 25 s.
/// The timeouts that bound how long one relay can hold up another are [`Limits`]'.
const SESSION_OPTIONS: &str =
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3";

/// How long anything may take on the server, so that no relay — killed, hung or cut off —
/// holds up another for longer than a few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A transaction whose relay sends nothing for this long is ended by the server
    /// (`idle_in_transaction_session_timeout`): a hung relay's locks are free after it.
    pub idle_in_transaction: Duration,
    /// Waiting longer for a lock is an error (`lock_timeout`): a webhook gets a 5xx, which
    /// Alertmanager retries, instead of hanging.
    pub lock_wait: Duration,
    /// A statement running longer is cancelled (`statement_timeout`).
    pub statement: Duration,
    /// A query unanswered this long is given up on by the relay and its connection closed
    /// (a network path that stopped forwarding without closing).
    pub answer: Duration,
    /// `/ready`'s write probe, all of it, at most.
    pub probe: Duration,
    /// Waiting longer for a connection from the pool (or a new one) is an error.
    pub pool_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Ordered so that a wait outlasts what it waits for: a lock held by a hung relay is
        // freed (idle 3 s) before a waiter gives up (4 s), and the statement (5 s) and the
        // relay's own deadline (6 s) come after.
        Self {
            idle_in_transaction: Duration::from_secs(3),
            lock_wait: Duration::from_secs(4),
            statement: Duration::from_secs(5),
            answer: Duration::from_secs(6),
            probe: Duration::from_secs(2),
            pool_wait: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// The server settings, as `-c` options for the session.
    fn options(&self) -> String {
        let ms = |d: Duration| d.as_millis();
        format!(
            "{SESSION_OPTIONS} -c idle_in_transaction_session_timeout={} -c lock_timeout={} -c statement_timeout={}",
            ms(self.idle_in_transaction),
            ms(self.lock_wait),
            ms(self.statement)
        )
    }
}

/// A validated connection URL and, perhaps, a password kept beside it.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: Url,
    password: Option<String>,
    tls: Tls,
}

impl DatabaseUrl {
    /// Checks `text` as a PostgreSQL URL: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`,
    /// or `postgres://USER@/DATABASE?host=/run/postgresql` for a unix socket.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|e| {
            format!(
                "the database URL is not a URL ({e}); write it like \
                 postgres://relay@db.example.com:5432/relay"
            )
        })?;
        let mut this = Self {
            url,
            password: None,
            tls: Tls::default(),
        };
        let shown = this.to_string();
        if !matches!(this.url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "{shown}: the database URL must start with postgres:// (SQLite needs no URL: \
                 leave --database-url out to keep the state in --data-dir)"
            ));
        }
        if this.url.username().is_empty() && this.query("user").is_none() {
            return Err(format!(
                "{shown}: no user; write it like postgres://relay@{}/relay",
                this.url.host_str().unwrap_or("db.example.com")
            ));
        }
        let host = this.url.host_str().is_some_and(|h| !h.is_empty());
        if !host && this.query("host").is_none() {
            return Err(format!(
                "{shown}: no host; write it like postgres://relay@db.example.com/relay, or \
                 postgres://relay@%2Frun%2Fpostgresql/relay for a unix socket"
            ));
        }
        let database = this.url.path().trim_start_matches('/');
        if database.is_empty() && this.query("dbname").is_none() {
            return Err(format!(
                "{shown}: no database; name it after the host, like {}/relay",
                shown.trim_end_matches('/')
            ));
        }
        if let Some(key) = ["sslcert", "sslkey", "sslpassword"]
            .into_iter()
            .find(|key| this.query(key).is_some())
        {
            return Err(format!(
                "{shown}: {key}: client certificates are not supported; the relay signs in \
                 with a password (--database-password-file)"
            ));
        }
        this.tls = Tls::parse(
            this.query("sslmode").as_deref(),
            this.query("sslrootcert").as_deref(),
        )
        .map_err(|e| format!("{shown}: {e}"))?;
        // The driver's own reading, so that anything it refuses is refused here, at start.
        let driver = tokio_postgres::Config::from_str(this.driver_url().as_str())
            .map_err(|e| format!("{shown}: not a PostgreSQL URL the driver accepts: {e}"))?;
        let mode = this.tls.mode();
        if mode.requires_tls()
            && driver
                .get_hosts()
                .iter()
                .all(|h| matches!(h, Host::Unix(_)))
        {
            return Err(format!(
                "{shown}: sslmode={mode} asks for TLS, which PostgreSQL does not speak over a \
                 unix socket: leave sslmode out for a socket, or connect by host name"
            ));
        }
        Ok(this)
    }

    /// Takes the password from the first line of `path` (a secret mounted as a file); the
    /// URL must then carry none.
    pub fn with_password_file(mut self, path: &Path) -> Result<Self, String> {
        if self.url.password().is_some() || self.query("password").is_some() {
            return Err(format!(
                "{self}: the URL has a password and --database-password-file gives one too: \
                 keep it in the file only"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "--database-password-file {}: cannot read it: {e}",
                path.display()
            )
        })?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            return Err(format!(
                "--database-password-file {}: the file is empty",
                path.display()
            ));
        }
        self.password = Some(password);
        Ok(self)
    }

    /// The same server and credentials, another database (tests make one each).
    pub fn with_database(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.url = without(&self.url, &["dbname"]);
        other.url.set_path(&format!("/{name}"));
        other
    }

    /// The driver's configuration, with the relay's timeouts where the URL sets none.
    pub fn config(&self) -> Result<tokio_postgres::Config, String> {
        self.config_with(&Limits::default())
    }

    /// [`DatabaseUrl::config`] with other limits (tests that need them short).
    pub fn config_with(&self, limits: &Limits) -> Result<tokio_postgres::Config, String> {
        let mut config = tokio_postgres::Config::from_str(self.driver_url().as_str())
            .map_err(|e| format!("{self}: {e}"))?;
        config.ssl_mode(self.tls.driver_mode());
        if let Some(password) = &self.password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if self.query("keepalives_idle").is_none() {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if self.query("tcp_user_timeout").is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("alert-relay");
        }
        // The URL's own options come last, so that they win.
        let ours = limits.options();
        let options = match config.get_options() {
            Some(own) => format!("{ours} {own}"),
            None => ours,
        };
        config.options(&options);
        Ok(config)
    }

    /// The connector that negotiates TLS and checks the server's certificate as `sslmode`
    /// asks (used for every connection; with `sslmode=disable` it is never called).
    pub fn tls(&self) -> Result<Connector, String> {
        self.tls.connector().map_err(|e| format!("{self}: {e}"))
    }

    /// The URL without the keys the relay reads itself, for the driver.
    fn driver_url(&self) -> Url {
        without(&self.url, &TLS_KEYS)
    }

    fn query(&self, key: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }
}

/// `url` without the query parameters named `keys`; the others are kept as written (the
/// driver reads `%20` as a space, but not `+`, which re-encoding would write).
fn without(url: &Url, keys: &[&str]) -> Url {
    let kept: Vec<&str> = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let key = url::form_urlencoded::parse(key.as_bytes()).next();
            !pair.is_empty() && !key.is_some_and(|(k, _)| keys.contains(&k.as_ref()))
        })
        .collect();
    let mut url = url.clone();
    url.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    url
}

/// The URL as it may be printed: a password, in the userinfo or as `?password=`, is `***`.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        if self.query("password").is_some() {
            let pairs: Vec<(String, String)> = self
                .url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" { "***".into() } else { v };
                    (k.into_owned(), v.into_owned())
                })
                .collect();
            shown.set_query(None);
            shown.query_pairs_mut().extend_pairs(pairs);
        }
        write!(f, "{shown}")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        match DatabaseUrl::parse(text) {
            Ok(url) => panic!("{url} must be refused"),
            Err(error) => error,
        }
    }

    #[test]
    fn a_url_with_user_host_and_database_is_accepted() {
        for text in [
            "postgres://relay@db:5432/relay",
            "postgresql://relay:pw@127.0.0.1/relay?connect_timeout=3",
            "postgres://relay@%2Frun%2Fpostgresql/relay",
            "postgres:///relay?host=/run/postgresql&user=relay",
        ] {
            let url = DatabaseUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            url.config().unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn each_missing_part_is_named_with_a_fix() {
        assert!(refused("db:5432").contains("postgres://"));
        assert!(refused("mysql://relay@db/relay").contains("must start with postgres://"));
        assert!(refused("postgres://db/relay").contains("no user"));
        assert!(refused("postgres://relay@db").contains("no database"));
        assert!(refused("postgres://relay@db/relay?port=many").contains("driver"));
    }

    #[test]
    fn a_password_is_never_printed() {
        let error = refused("postgres://relay:s3cret@db/relay?sslmode=verify-everything");
        assert!(
            !error.contains("s3cret") && error.contains("***"),
            "{error}"
        );
        let url = DatabaseUrl::parse("postgres://relay@db/relay?password=s3cret").expect("url");
        assert!(!url.to_string().contains("s3cret"), "{url}");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn the_password_file_gives_the_password_and_refuses_a_second_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-the-file\n").expect("write");
        let url = DatabaseUrl::parse("postgres://relay@db/relay")
            .and_then(|u| u.with_password_file(&file))
            .expect("password file");
        assert_eq!(
            url.config().expect("config").get_password(),
            Some(&b"from-the-file"[..])
        );
        let both = DatabaseUrl::parse("postgres://relay:inline@db/relay")
            .and_then(|u| u.with_password_file(&file));
        assert!(
            both.is_err_and(|e| e.contains("keep it in the file only") && !e.contains("inline"))
        );
        std::fs::write(&file, "").expect("empty");
        let empty = DatabaseUrl::parse("postgres://relay@db/relay")
            .and_then(|u| u.with_password_file(&file));
        assert!(empty.is_err_and(|e| e.contains("empty")));
    }

    #[test]
    fn sessions_ask_for_keepalives_and_the_url_options_win() {
        let plain = DatabaseUrl::parse("postgres://relay@db/relay").expect("url");
        let options = plain.config().expect("config");
        let ours = options.get_options().expect("options");
        for setting in [
            "tcp_keepalives_idle=10",
            "idle_in_transaction_session_timeout=3000",
            "lock_timeout=4000",
            "statement_timeout=5000",
        ] {
            assert!(ours.contains(setting), "{setting} in {ours}");
        }
        let own =
            DatabaseUrl::parse("postgres://relay@db/relay?options=-c%20statement_timeout%3D5s")
                .expect("url");
        let options = own.config().expect("config");
        let options = options.get_options().expect("options");
        assert!(options.ends_with("-c statement_timeout=5s"), "{options}");
    }

    #[test]
    fn another_database_keeps_server_and_credentials() {
        let url =
            DatabaseUrl::parse("postgres://relay:pw@db:6543/postgres?dbname=x&connect_timeout=2")
                .expect("url")
                .with_database("relay_test_1");
        let config = url.config().expect("config");
        assert_eq!(config.get_dbname(), Some("relay_test_1"));
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
    }
}
