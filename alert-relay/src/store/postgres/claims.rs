//! Delivery claims between relays sharing one database: a session-level advisory lock per
//! target, held on a connection of the store's own (outside the pool, whose recycling
//! would not release it). The server releases a session's locks when it ends, so a relay
//! that dies gives its claims up with its connection: at once when the process dies, and
//! within the server's TCP keepalive (set to about 25 s, `database_url`) when its machine
//! or network does.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio_postgres::NoTls;

use super::{on_driver, wait};
use crate::domain::TargetName;
use crate::store::{Claim, StoreError};

/// The advisory lock space of delivery claims (the key is the target's `hashtext`; two
/// targets with the same hash are delivered one at a time, which is safe).
const CLAIM_SPACE: i32 = 0x7265_6c79;

pub(super) struct Claims {
    config: tokio_postgres::Config,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The connection that holds the locks; `None` until the first claim or after it broke.
    client: Option<tokio_postgres::Client>,
    /// Targets this relay holds: a second worker of the same relay is told `Theirs` (a
    /// session's advisory locks stack, so the server would say yes to it).
    held: BTreeSet<TargetName>,
}

impl Claims {
    pub(super) fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                client: None,
                held: BTreeSet::new(),
            }),
        }
    }

    pub(super) fn claim(&self, target: &TargetName) -> Result<Claim, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.held.contains(target) {
            return Ok(Claim::Theirs);
        }
        if inner.client.as_ref().is_none_or(|c| c.is_closed()) {
            // A broken connection took every lock with it.
            inner.held.clear();
            inner.client = Some(self.connect()?);
        }
        let Some(client) = &inner.client else {
            return Err(StoreError::Task("no connection for delivery claims".into()));
        };
        let answer = wait(client.query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&CLAIM_SPACE, &target.as_str()],
        ));
        match answer.and_then(|row| row.try_get::<_, bool>(0)) {
            Ok(true) => {
                inner.held.insert(target.clone());
                Ok(Claim::Ours)
            }
            Ok(false) => Ok(Claim::Theirs),
            Err(error) => {
                inner.client = None;
                inner.held.clear();
                Err(error.into())
            }
        }
    }

    pub(super) fn release(&self, target: &TargetName) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.held.remove(target) {
            return Ok(());
        }
        let Some(client) = &inner.client else {
            return Ok(());
        };
        let answer = wait(client.query_one(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&CLAIM_SPACE, &target.as_str()],
        ));
        if let Err(error) = answer {
            // Closing the connection releases whatever it still held.
            inner.client = None;
            inner.held.clear();
            return Err(error.into());
        }
        Ok(())
    }

    fn connect(&self) -> Result<tokio_postgres::Client, StoreError> {
        let config = self.config.clone();
        on_driver(async move {
            let (client, connection) = config.connect(NoTls).await?;
            // Ends when the client is dropped (or the server goes away).
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "the PostgreSQL connection for delivery claims broke");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        })?
        .map_err(StoreError::from)
    }
}
