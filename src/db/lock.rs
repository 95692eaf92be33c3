//! The migration lock: the session advisory lock that lets one slipway run
//! at a time migrate a database and history schema, the transaction-level
//! locks every batch takes beside it, and who holds it when a run must wait.
//!
//! Advisory locks rather than a lock table: PostgreSQL releases them when
//! the session or transaction ends, so a killed run never leaves one behind
//! (<https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS>).
//! The keys come from the history schema's name, so runs on different
//! history schemas of one database do not exclude each other.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::sql::{database_error, BatchError};
use crate::error::Result;

/// The setting the lock statement reads, on purpose, when the lock is
/// taken: no such setting exists, so the statement fails.
const LOCKED_ELSEWHERE: &str = "slipway.migration_lock_held_by_another_run";

/// A 64-bit advisory lock key for `schema`. FNV-1a: stable across releases
/// and platforms (unlike std's hasher) — two slipway releases must agree.
fn key_of(prefix: &[u8], schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prefix.iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The advisory lock keys of one history schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MigrationLock {
    /// The session lock's key: fixed per history schema, so runs against the
    /// same database and schema exclude each other while different schemas
    /// don't.
    key: i64,
    /// Key of the transaction-level lock every batch takes: held exactly
    /// as long as slipway's own transaction, so a batch can check, between
    /// migrations, that no statement ended that transaction.
    transaction_key: i64,
}

/// Who holds the migration lock, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LockHolder {
    pub pid: String,
    pub application_name: String,
    pub client: String,
    /// When the holder's session started, UTC.
    pub since: String,
    /// What it is running now.
    pub state: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {}, application_name '{}'{}, connected since {}, {}",
            self.pid,
            self.application_name,
            if self.client.is_empty() {
                String::new()
            } else {
                format!(" from {}", self.client)
            },
            self.since,
            self.state
        )
    }
}

impl MigrationLock {
    /// The keys of the history in `schema`.
    pub(super) fn new(schema: &str) -> MigrationLock {
        MigrationLock {
            key: key_of(b"slipway:", schema),
            transaction_key: key_of(b"slipway-transaction:", schema),
        }
    }

    /// A `pg_locks` condition matching this session's lock on `key`
    /// (`pg_advisory_lock(bigint)` shows as classid = high half, objid =
    /// low half, objsubid = 1).
    fn held_lock_sql(key: i64, pid: &str) -> String {
        let bits = u64::from_ne_bytes(key.to_ne_bytes());
        format!(
            "l.locktype = 'advisory' AND l.classid = {} AND l.objid = {} AND l.objsubid = 1 AND l.granted AND l.pid {pid}",
            bits >> 32,
            bits & 0xffff_ffff
        )
    }

    /// The item of a locking history read that tries the session lock: true
    /// when this session took it, false on a standby; when another run holds
    /// it, the statement fails on purpose ([`is_locked_elsewhere`]).
    pub(super) fn try_lock_sql(&self) -> String {
        format!(
            "CASE WHEN pg_is_in_recovery() THEN false WHEN pg_try_advisory_lock({}) THEN true \
             ELSE current_setting('{LOCKED_ELSEWHERE}')::boolean END",
            self.key
        )
    }

    /// A query answering `t` when this session holds the session lock,
    /// taking it if it is free (re-entrant if already held).
    pub(super) fn retake_sql(&self) -> String {
        format!("SELECT pg_try_advisory_lock({})", self.key)
    }

    /// The statement taking the two transaction-level locks of a batch,
    /// released only by `COMMIT` or `ROLLBACK`: the migration key, so that
    /// a migration calling `pg_advisory_unlock_all()` (which frees
    /// session-level locks only) still excludes every other run until the
    /// transaction ends — and, held with the session lock on the same key,
    /// makes `PREPARE TRANSACTION` fail (PostgreSQL refuses to prepare a
    /// transaction that holds a lock at both levels); and the transaction
    /// key, which the guard after each step looks for.
    pub(super) fn transaction_locks_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_xact_lock({}), pg_advisory_xact_lock({});\n",
            self.key, self.transaction_key
        )
    }

    /// A `pg_locks` condition true while this session holds the
    /// transaction key, i.e. while the batch's own transaction is open.
    pub(super) fn transaction_held_sql(&self) -> String {
        Self::held_lock_sql(self.transaction_key, "= pg_catalog.pg_backend_pid()")
    }

    /// Who holds this lock, if another session does.
    pub(super) async fn holder(&self, client: &Client) -> Result<Option<LockHolder>> {
        let query = format!(
            "SELECT a.pid::text, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), \
             coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), \
             coalesce(a.state, '') || coalesce(' for ' || date_trunc('second', clock_timestamp() - a.state_change)::text, '') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {} LIMIT 1",
            Self::held_lock_sql(self.key, "<> pg_backend_pid()")
        );
        let messages = client
            .simple_query(&query)
            .await
            .map_err(|e| database_error("finding who holds the migration lock", &e))?;
        Ok(messages.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(LockHolder {
                pid: row.get(0).unwrap_or_default().to_owned(),
                application_name: row.get(1).unwrap_or_default().to_owned(),
                client: row.get(2).unwrap_or_default().to_owned(),
                since: row.get(3).unwrap_or_default().to_owned(),
                state: row.get(4).unwrap_or_default().to_owned(),
            }),
            _ => None,
        }))
    }

    /// Wait for the migration lock, at most `timeout` (`lock_timeout`
    /// bounds an advisory lock wait like any other lock wait).
    /// `quoted_schema` names the history in the error.
    pub(super) async fn wait(
        &self,
        client: &Client,
        timeout: Duration,
        quoted_schema: &str,
    ) -> std::result::Result<(), BatchError> {
        // set_config(..., true) lasts for the message's implicit transaction
        // only; the session keeps its own lock_timeout.
        let query = format!(
            "SELECT set_config('lock_timeout', '{}', true);\nSELECT pg_advisory_lock({})",
            timeout.as_millis(),
            self.key
        );
        match client.simple_query(&query).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                Err(BatchError::LockTimeout(format!(
                    "another slipway run holds the migration lock of {quoted_schema}"
                )))
            }
            Err(e) => Err(BatchError::Failed(database_error(
                "waiting for the migration lock",
                &e,
            ))),
        }
    }
}

/// Whether `error` is the lock statement's deliberate failure.
pub(super) fn is_locked_elsewhere(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNDEFINED_OBJECT && db.message().contains(LOCKED_ELSEWHERE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_is_stable() {
        let lock = MigrationLock::new("slipway");
        assert_eq!(lock, MigrationLock::new("slipway"));
        // Runs of two releases exclude each other only while these agree.
        assert_eq!(lock.key, -8797735126964485243);
        assert_eq!(lock.transaction_key, 376226902657233140);
        assert_ne!(lock.key, MigrationLock::new("other").key);
        assert_ne!(lock.key, lock.transaction_key);
    }
}
