//! Delivery leases between relays sharing one database: one row of `delivery_claims` per
//! target, naming the relay that delivers it (`holder`), until when (`expires_at`, in the
//! relays' clock, milliseconds), and a `fence` that grows with every new holder. A lease is
//! taken when it is free (released, or run out) in one statement; its holder renews it while
//! it works, and must find its own fence in the row before it sends and when it records
//! (`Tx::hold`, which keeps the row locked until the recording commits).

use std::time::Duration;

use deadpool_postgres::ClientWrapper as Client;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::wait;
use crate::domain::{TargetName, Timestamp};
use crate::store::{Claim, Lease, StoreError, LEASE};

/// Takes the target's lease if nobody holds a live one: a new row, or one released or run
/// out (then the previous holder is kept in `taken_from`, unless it had released it).
const CLAIM: &str = "
INSERT INTO delivery_claims AS c (target, holder, fence, expires_at, released, taken_from)
VALUES ($1, $2, 1, $3, false, NULL)
ON CONFLICT (target) DO UPDATE
   SET holder = EXCLUDED.holder,
       fence = c.fence + 1,
       expires_at = EXCLUDED.expires_at,
       taken_from = CASE WHEN c.released THEN NULL ELSE c.holder END,
       released = false
 WHERE c.released OR c.expires_at <= $4
RETURNING fence, taken_from";

/// Extends the lease if it is still the holder's (same fence); the row stays locked until
/// the statement's transaction ends.
pub(super) const RENEW: &str = "
UPDATE delivery_claims SET expires_at = $4
 WHERE target = $1 AND holder = $2 AND fence = $3 AND NOT released
RETURNING expires_at";

const RELEASE: &str = "
UPDATE delivery_claims SET released = true
 WHERE target = $1 AND holder = $2 AND fence = $3";

fn rows(
    client: &Client,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
    limit: Duration,
) -> Result<Vec<Row>, StoreError> {
    wait(limit, async {
        let statement = client.prepare_cached(sql).await?;
        client.query(&statement, args).await
    })
}

/// Milliseconds after `now` when a lease taken or renewed now ends.
pub(super) fn expiry(now: Timestamp) -> Timestamp {
    now.plus(LEASE)
}

pub(super) fn claim(
    client: &Client,
    holder: &str,
    target: &TargetName,
    now: Timestamp,
    limit: Duration,
) -> Result<Claim, StoreError> {
    let expires = expiry(now);
    let taken = rows(
        client,
        CLAIM,
        &[&target.as_str(), &holder, &expires.0, &now.0],
        limit,
    )?;
    let Some(row) = taken.first() else {
        return Ok(Claim::Theirs);
    };
    Ok(Claim::Ours(Lease {
        target: target.clone(),
        fence: row.try_get(0)?,
        expires,
        taken_from: row.try_get(1)?,
    }))
}

pub(super) fn renew(
    client: &Client,
    holder: &str,
    lease: &Lease,
    now: Timestamp,
    limit: Duration,
) -> Result<Option<Lease>, StoreError> {
    let expires = expiry(now);
    let renewed = rows(
        client,
        RENEW,
        &[&lease.target.as_str(), &holder, &lease.fence, &expires.0],
        limit,
    )?;
    Ok((!renewed.is_empty()).then(|| Lease {
        expires,
        ..lease.clone()
    }))
}

pub(super) fn release(
    client: &Client,
    holder: &str,
    lease: &Lease,
    limit: Duration,
) -> Result<(), StoreError> {
    rows(
        client,
        RELEASE,
        &[&lease.target.as_str(), &holder, &lease.fence],
        limit,
    )?;
    Ok(())
}
