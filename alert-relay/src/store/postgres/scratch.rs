//! Databases of their own for tests: each test that needs PostgreSQL creates one on the
//! server that `RELAY_TEST_DATABASE_URL` names (`scripts/start-postgres` starts a
//! throwaway server and sets it), so tests run in parallel, and drops it afterwards.
//!
//! An unset variable fails the test with what to do: a PostgreSQL test that passes
//! without PostgreSQL would be a lie. `RELAY_TEST_WITHOUT_POSTGRES=1` is the explicit way
//! to run the rest of the suite without one; those tests then say loudly that they tested
//! nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::NoTls;

use super::{on_driver, DatabaseUrl, PostgresStore, StoreError};

/// The server (and a database to connect to first) that tests create databases on.
pub const URL_VAR: &str = "RELAY_TEST_DATABASE_URL";
/// `1`: run without PostgreSQL; its tests pass without testing anything, and say so.
pub const OPT_OUT_VAR: &str = "RELAY_TEST_WITHOUT_POSTGRES";

/// A database created for one test, dropped with this value.
pub struct ScratchDatabase {
    admin: DatabaseUrl,
    name: String,
    url: DatabaseUrl,
}

impl ScratchDatabase {
    /// A new, empty database; `None` only when [`OPT_OUT_VAR`] is `1` and no server is set.
    ///
    /// # Panics
    /// When [`URL_VAR`] is unset (without the opt-out), malformed, or the server refuses.
    pub fn create() -> Option<Self> {
        let Ok(text) = std::env::var(URL_VAR) else {
            if std::env::var(OPT_OUT_VAR).is_ok_and(|v| v == "1") {
                eprintln!(
                    "NOT TESTED: {URL_VAR} is unset and {OPT_OUT_VAR}=1: this PostgreSQL test \
                     checked nothing"
                );
                return None;
            }
            panic!(
                "{URL_VAR} is not set, and this test needs a PostgreSQL server. Start a \
                 throwaway one: `scripts/start-postgres -- cargo nextest run -p alert-relay` \
                 (or `eval \"$(scripts/start-postgres)\"` in a shell), or set {OPT_OUT_VAR}=1 \
                 to run without the PostgreSQL tests (they then test nothing)"
            );
        };
        let admin = DatabaseUrl::parse(&text).unwrap_or_else(|e| panic!("{URL_VAR}: {e}"));
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "relay_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_on(&admin, format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create a test database on {admin}: {e}"));
        Some(Self {
            url: admin.with_database(&name),
            admin,
            name,
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on this database.
    ///
    /// # Panics
    /// When it cannot be opened.
    pub fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.url)
            .unwrap_or_else(|e| panic!("cannot open the store on {}: {e}", self.url))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = run_on(&self.admin, sql) {
            eprintln!("cannot drop the test database {}: {error}", self.name);
        }
    }
}

/// Runs `sql` on a connection of its own (outside any pool).
fn run_on(url: &DatabaseUrl, sql: String) -> Result<(), StoreError> {
    let config = url.config().map_err(StoreError::Open)?;
    on_driver(async move {
        let (client, connection) = config.connect(NoTls).await?;
        let task = tokio::spawn(connection);
        let result = client.batch_execute(&sql).await;
        drop(client);
        let _ = task.await;
        result
    })?
    .map_err(StoreError::from)
}
