//! The database-shaped seam: every SQL string slipway itself sends lives
//! here — the history table, the advisory lock, and the batch that runs the
//! pending migrations in one transaction.
//!
//! Round trips are the cost that dominates a migration run, so the batch is
//! one simple-query message: `BEGIN`, the timeouts, each migration followed by
//! its history row; then, in a message of its own, `COMMIT` (with the schema
//! snapshot rows). The server executes it statement by statement;
//! the client reads the stream of completions to know how far it got when a
//! statement fails (psql, by contrast, sends each statement separately).
//!
//! The catalog queries of [`super::catalog`] ride along in the same messages:
//! after the history read (validate, the lock) and at the end of the batch,
//! so the drift check adds no round trip. The snapshot taken at the end of
//! the batch is stored in `<schema>.schema_snapshot` with the `COMMIT`.
//!
//! A batch of rollback scripts is the same batch (history rows of kind
//! `rollback`), preceded by dropping what the repeatable scripts created;
//! a batch that runs repeatable scripts also reads the catalog just before
//! them, so that what they create is recorded in
//! `<schema>.repeatable_objects` with the `COMMIT`. A `-- slipway:no-transaction`
//! migration is the exception to "one message": it cannot run in a
//! transaction, so [`History::run_alone`] sends it statement by statement.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::catalog::{self, key_parts, CatalogQuery, OwnedObject, Snapshot};
use super::sql::{database_error, is_session_lost, quote_identifier, quote_literal};
use crate::error::{Error, MigrationFailure, Result};
use crate::migrations::{Migration, MigrationKind};
use crate::plan::HistoryRow;
use crate::statements::{statement_lines, statements};

/// Columns read back from the history table, in [`HistoryRow`] order.
const HISTORY_COLUMNS: &str = "id, version, description, kind, script, checksum, \
     to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), applied_by, client, execution_ms";

/// Marker column of the statement that closes each step of a batch.
const STEP_MARKER: &str = "slipway_step";
/// Marker column of the statement that opens a batch.
const BEGIN_MARKER: &str = "slipway_begin";
/// Marker column of the database name in a history read.
const DATABASE_MARKER: &str = "slipway_database";
/// Marker column of the recorded snapshot's fingerprint in a history read.
const RECORDED_MARKER: &str = "slipway_recorded";
/// The unique index that records each version once per generation
/// ([`History::ensure_sql`]); its presence tells a current history table.
const HISTORY_INDEX: &str = "history_version_once";

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

/// The history table of one target database.
#[derive(Debug, Clone)]
pub struct History {
    schema: String,
    quoted_schema: String,
}

/// What the current state of the target is, as read under the lock or not.
#[derive(Debug, Clone)]
pub struct HistoryState {
    pub database: String,
    /// `None` when the history table does not exist yet.
    pub rows: Option<Vec<HistoryRow>>,
    /// The live catalog, when the read asked for it.
    pub catalog: Option<Snapshot>,
    /// The snapshot the last apply stored; `None` before the first apply of
    /// a slipway that records snapshots.
    pub recorded: Option<RecordedSnapshot>,
    /// What the server said about itself in the same message.
    pub server: ServerState,
}

/// The server's answers that decide whether a run may go on, read in the
/// first statement of every history read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerState {
    /// `pg_is_in_recovery()`: a hot standby.
    pub in_recovery: bool,
    /// `transaction_read_only` (e.g. `default_transaction_read_only = on`).
    pub read_only: bool,
    /// `transaction_isolation` of the read.
    pub isolation: String,
    /// Whether this read took the migration lock (only a locking read
    /// tries; a locking read that did not get it has read nothing useful).
    pub locked: bool,
    /// Whether the history table has the unique indexes that make a second
    /// recording of one version impossible (tables made by an older
    /// slipway get them with the next batch).
    pub history_indexed: bool,
}

impl ServerState {
    /// Why the server cannot take a migration, if it cannot.
    pub fn read_only_reason(&self) -> Option<&'static str> {
        if self.in_recovery {
            Some("a hot standby in recovery")
        } else if self.read_only {
            Some("transactions are read-only here: default_transaction_read_only is on")
        } else {
            None
        }
    }
}

/// Who holds the migration lock, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockHolder {
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

/// Identity of the stored snapshot; the snapshot itself is read only when
/// the fingerprints differ ([`History::read_recorded_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSnapshot {
    /// [`catalog::FORMAT`] of the slipway that stored it.
    pub format: u32,
    pub fingerprint: String,
}

/// A batch whose migrations all ran, in a transaction still open: the
/// caller commits it with [`History::commit`] or ends it with
/// [`History::rollback`]. Dropping the client instead rolls it back too.
#[derive(Debug)]
pub struct OpenBatch {
    pub outcomes: Vec<StepOutcome>,
    /// The catalog after the migrations, inside the transaction.
    pub catalog: Option<Snapshot>,
    /// The catalog before step [`BatchSteps::catalog_before`], when asked.
    pub catalog_before: Option<Snapshot>,
}

/// What one transaction runs.
#[derive(Debug, Clone, Copy)]
pub struct BatchSteps<'a> {
    /// The scripts, each followed by its history row.
    pub steps: &'a [&'a Migration],
    /// Create or upgrade the history table first.
    pub setup: HistorySetup,
    /// Drop these first: what repeatable scripts created, before a rollback.
    pub drop_first: &'a [OwnedObject],
    /// Also read the catalog just before this step (the first repeatable
    /// script), so that what the repeatables create can be recorded.
    pub catalog_before: Option<usize>,
}

/// What the history table needs before the first step records itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySetup {
    /// It exists and is current.
    Ready,
    /// It does not exist yet (a new database).
    Create,
    /// It was made by an older slipway ([`ServerState::history_indexed`]
    /// was false): add the generation column and the unique indexes.
    Upgrade,
}

/// A `-- slipway:no-transaction` migration that ran and was recorded.
#[derive(Debug)]
pub struct AloneOutcome {
    pub outcome: StepOutcome,
    /// The catalog after it, as recorded.
    pub catalog: Snapshot,
}

/// Timeouts and identity applied to a batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// `SET LOCAL lock_timeout`: how long one statement may queue for a table lock.
    pub lock_timeout: Duration,
    /// `SET LOCAL statement_timeout`: how long one statement may run (zero: no limit).
    pub statement_timeout: Duration,
    /// Stored in `history.client`, e.g. `cli:buildhost` or `lambda:migrate-prod`.
    pub client: String,
}

/// One migration that ran in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub script: String,
    /// Server-side execution time of the migration, in milliseconds.
    pub execution_ms: i64,
}

/// Why a batch did not commit.
#[derive(Debug)]
pub enum BatchError {
    /// A statement waited longer than `lock_timeout`; safe to retry.
    LockTimeout(String),
    /// Any other failure; the transaction was rolled back.
    Failed(Error),
}

impl History {
    /// The history of `schema` (default `slipway`).
    pub fn new(schema: &str) -> Result<History> {
        if schema.is_empty() || schema.len() > 63 || schema.contains('\0') {
            return Err(Error::Config(format!(
                "history schema name '{schema}' is not a valid PostgreSQL identifier"
            )));
        }
        Ok(History {
            schema: schema.to_owned(),
            quoted_schema: quote_identifier(schema),
        })
    }

    /// The schema's name, unquoted.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Advisory lock key: fixed per history schema, so runs against the same
    /// database and schema exclude each other while different schemas don't.
    fn lock_key(&self) -> i64 {
        key_of(b"slipway:", &self.schema)
    }

    /// Key of the transaction-level lock every batch takes: held exactly
    /// as long as slipway's own transaction, so a batch can check, between
    /// migrations, that no statement ended that transaction.
    fn transaction_key(&self) -> i64 {
        key_of(b"slipway-transaction:", &self.schema)
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

    fn select_history(&self) -> String {
        format!(
            "SELECT {HISTORY_COLUMNS} FROM {}.history ORDER BY id",
            self.quoted_schema
        )
    }

    /// Read the history — and the live catalog when `catalog` is given —
    /// without locking or writing anything (validate, status).
    pub async fn read(
        &self,
        client: &Client,
        catalog: Option<&CatalogQuery>,
    ) -> Result<HistoryState> {
        self.read_with(client, &self.first_statement("NULL"), catalog)
            .await
    }

    /// The first statement of a history read: the database, what the
    /// server is (standby, read-only, isolation), whether `lock` (an SQL
    /// expression) took the lock, whether the history has its indexes.
    fn first_statement(&self, lock: &str) -> String {
        format!(
            "SELECT current_database() AS {DATABASE_MARKER}, pg_is_in_recovery(), \
             current_setting('transaction_read_only'), current_setting('transaction_isolation'), \
             {lock}, to_regclass({}) IS NOT NULL",
            quote_literal(&format!("{}.{HISTORY_INDEX}", self.quoted_schema))
        )
    }

    /// Try the session advisory lock, then read the history.
    ///
    /// A session-level lock (not a transaction-level one) because the lock
    /// must cover reading the history, the batch, and a retry after a lock
    /// timeout; PostgreSQL releases it when the session ends, so a killed
    /// process never leaves it behind
    /// (<https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS>).
    ///
    /// Only a try: when another run holds it, the statement fails on
    /// purpose (it reads a setting that does not exist), so the server skips
    /// the rest of the message — the catalog must not be read while the
    /// holder changes it — and the read answers [`ServerState::locked`]
    /// false and nothing else; the caller says who holds it and
    /// waits with [`History::wait_for_lock`], bounded by `lock_timeout`,
    /// then reads again. The reads after the lock see what the previous
    /// holder committed because every statement of the message takes its
    /// own snapshot: the connection's isolation is read committed whatever
    /// the database's default ([`crate::connect`]), and the caller refuses
    /// a read that reports another isolation.
    pub async fn lock_and_read(
        &self,
        client: &Client,
        catalog: Option<&CatalogQuery>,
    ) -> Result<HistoryState> {
        let lock = format!(
            "CASE WHEN pg_is_in_recovery() THEN false WHEN pg_try_advisory_lock({}) THEN true \
             ELSE current_setting('{LOCKED_ELSEWHERE}')::boolean END",
            self.lock_key()
        );
        self.read_with(client, &self.first_statement(&lock), catalog)
            .await
    }

    /// Who holds this history's migration lock, if anyone else does.
    pub async fn lock_holder(&self, client: &Client) -> Result<Option<LockHolder>> {
        let query = format!(
            "SELECT a.pid::text, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), \
             coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), \
             coalesce(a.state, '') || coalesce(' for ' || date_trunc('second', clock_timestamp() - a.state_change)::text, '') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {} LIMIT 1",
            Self::held_lock_sql(self.lock_key(), "<> pg_backend_pid()")
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
    pub async fn wait_for_lock(
        &self,
        client: &Client,
        timeout: Duration,
    ) -> std::result::Result<(), BatchError> {
        // set_config(..., true) lasts for the message's implicit transaction
        // only; the session keeps its own lock_timeout.
        let query = format!(
            "SELECT set_config('lock_timeout', '{}', true);\nSELECT pg_advisory_lock({})",
            timeout.as_millis(),
            self.lock_key()
        );
        match client.simple_query(&query).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                Err(BatchError::LockTimeout(format!(
                    "another slipway run holds the migration lock of {}",
                    self.quoted_schema
                )))
            }
            Err(e) => Err(BatchError::Failed(database_error(
                "waiting for the migration lock",
                &e,
            ))),
        }
    }

    /// One message: `first` (the database name, maybe the lock), the
    /// catalog queries, the history, the recorded snapshot's fingerprint.
    ///
    /// The two tables that may be missing come last, so whatever precedes a
    /// missing table has already been answered: on a new database the
    /// history read fails (nothing applied yet), on a database last migrated
    /// by a slipway that did not record snapshots the last statement fails
    /// (nothing recorded yet). Both are states, not errors.
    async fn read_with(
        &self,
        client: &Client,
        first: &str,
        catalog: Option<&CatalogQuery>,
    ) -> Result<HistoryState> {
        let mut query = format!("{first};\n");
        let mut statements = 1;
        if let Some(catalog) = catalog {
            query.push_str(&catalog.sql());
            statements += 1 + catalog::QUERY_COUNT;
        }
        let history_statement = statements;
        query.push_str(&self.select_history());
        query.push_str(&format!(
            ";\nSELECT format AS {RECORDED_MARKER}, fingerprint FROM {}.schema_snapshot ORDER BY id DESC LIMIT 1",
            self.quoted_schema
        ));
        let recorded_statement = history_statement + 1;

        let mut database = String::new();
        let mut server = ServerState::default();
        let mut rows = Some(Vec::new());
        let mut recorded = None;
        let mut collector = catalog.map(CatalogQuery::collector);
        let mut completed = 0;
        let stream = client
            .simple_query_raw(&query)
            .await
            .map_err(|e| database_error("reading the migration history", &e))?;
        futures_util::pin_mut!(stream);
        while let Some(message) = stream.next().await {
            match message {
                Ok(SimpleQueryMessage::Row(row)) => match row.columns().first().map(|c| c.name()) {
                    Some(DATABASE_MARKER) => {
                        database = row.get(0).unwrap_or_default().to_owned();
                        let flag = |i: usize| row.get(i) == Some("t") || row.get(i) == Some("on");
                        server = ServerState {
                            in_recovery: flag(1),
                            read_only: flag(2),
                            isolation: row.get(3).unwrap_or_default().to_owned(),
                            locked: flag(4),
                            history_indexed: flag(5),
                        };
                    }
                    Some(catalog::CATALOG_MARKER) => {
                        if let Some(collector) = collector.as_mut() {
                            collector.accept(&row)?;
                        }
                    }
                    Some(RECORDED_MARKER) => {
                        recorded = Some(RecordedSnapshot {
                            format: row.get(0).and_then(|f| f.parse().ok()).unwrap_or(0),
                            fingerprint: row.get(1).unwrap_or_default().to_owned(),
                        });
                    }
                    _ if row.len() == 10 => {
                        if let Some(rows) = rows.as_mut() {
                            rows.push(history_row(&row)?);
                        }
                    }
                    _ => {}
                },
                Ok(SimpleQueryMessage::CommandComplete(_)) => completed += 1,
                Ok(_) => {}
                Err(e) if completed == 0 && is_locked_elsewhere(&e) => {
                    return Ok(HistoryState {
                        database,
                        rows: None,
                        catalog: None,
                        recorded: None,
                        server: ServerState::default(),
                    });
                }
                Err(e) if is_missing_history(&e) && completed == history_statement => {
                    rows = None;
                    break;
                }
                Err(e) if is_missing_history(&e) && completed == recorded_statement => break,
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    // The catalog read waited for a table another session
                    // holds; the caller may retry.
                    return Err(Error::LockTimeout {
                        attempts: 1,
                        message: e
                            .as_db_error()
                            .map_or_else(|| e.to_string(), |db| db.message().to_owned()),
                    });
                }
                Err(e) => return Err(database_error("reading the migration history", &e)),
            }
        }
        let catalog = collector.map(catalog::Collector::finish).transpose()?;
        Ok(HistoryState {
            database,
            rows,
            catalog,
            recorded,
            server,
        })
    }

    /// The snapshot the last apply stored (a second round trip, taken only
    /// when its fingerprint differs from the live catalog's).
    pub async fn read_recorded_snapshot(&self, client: &Client) -> Result<Option<Snapshot>> {
        let query = format!(
            "SELECT snapshot::text FROM {}.schema_snapshot ORDER BY id DESC LIMIT 1",
            self.quoted_schema
        );
        let messages = client
            .simple_query(&query)
            .await
            .map_err(|e| database_error("reading the recorded schema snapshot", &e))?;
        let text = messages.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        text.map(|text| {
            Snapshot::from_json(&text, "the recorded schema snapshot").map_err(|e| {
                Error::Internal(format!(
                    "{e} (stored in {}.schema_snapshot)",
                    self.quoted_schema
                ))
            })
        })
        .transpose()
    }

    /// Statements replacing the stored snapshot with `snapshot`, creating
    /// the table first when a database migrated by an older slipway lacks it;
    /// with `fill_history`, also the fingerprint of the last history row
    /// (the state after the batch that just ran).
    ///
    /// Only the latest snapshot is kept: each can be megabytes on a big
    /// schema, and `history.catalog_fingerprint` keeps the trail.
    fn store_sql(&self, snapshot: &Snapshot, client: &str, fill_history: bool) -> String {
        let s = &self.quoted_schema;
        let fingerprint = snapshot.fingerprint();
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {s}.schema_snapshot (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    history_id bigint,
    format integer NOT NULL,
    fingerprint text NOT NULL,
    snapshot json NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    client text NOT NULL
);
COMMENT ON TABLE {s}.schema_snapshot IS 'slipway: the schema after the last apply, for drift checks; do not edit by hand';
DELETE FROM {s}.schema_snapshot;
INSERT INTO {s}.schema_snapshot (history_id, format, fingerprint, snapshot, client)
    SELECT max(id), {format}, '{fingerprint}', {json}, {client} FROM {s}.history;
",
            format = snapshot.format,
            json = quote_literal(&snapshot.canonical_json()),
            client = quote_literal(client),
        );
        if fill_history {
            sql.push_str(&format!(
                "UPDATE {s}.history SET catalog_fingerprint = '{fingerprint}' \
                 WHERE id = (SELECT max(id) FROM {s}.history);\n"
            ));
        }
        sql
    }

    /// Store `snapshot` as the database's recorded one, outside a batch
    /// (a database whose history predates snapshots, or whose drift an
    /// operator accepted with `--allow-drift`). One message, so one
    /// implicit transaction.
    pub async fn store_snapshot(
        &self,
        client: &Client,
        snapshot: &Snapshot,
        who: &str,
    ) -> Result<()> {
        client
            .simple_query(&self.store_sql(snapshot, who, false))
            .await
            .map(|_| ())
            .map_err(|e| database_error("storing the schema snapshot", &e))
    }

    /// Commit an [`OpenBatch`], storing `snapshot` with it.
    ///
    /// The snapshot rows and `COMMIT` travel in one message: unlike the
    /// batch, whose end must wait for the client to see every step succeed,
    /// everything here is already decided. If a statement fails, the server
    /// skips the rest of the message, `COMMIT` included, and the rollback
    /// sent after it discards the batch.
    /// `owned`, when given, replaces the record of the objects repeatable
    /// scripts created.
    pub async fn commit(
        &self,
        client: &Client,
        snapshot: Option<&Snapshot>,
        owned: Option<&[OwnedObject]>,
        who: &str,
    ) -> Result<()> {
        let mut sql = snapshot.map_or_else(String::new, |s| self.store_sql(s, who, true));
        if let Some(owned) = owned {
            sql.push_str(&self.store_owned_sql(owned));
        }
        sql.push_str("COMMIT");
        match client.simple_query(&sql).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = rollback(client).await;
                Err(database_error("committing the migrations", &e))
            }
        }
    }

    /// Statements replacing the record of the objects repeatable scripts
    /// created (one JSON row; read back by [`History::read_owned`]).
    fn store_owned_sql(&self, owned: &[OwnedObject]) -> String {
        let s = &self.quoted_schema;
        let json = serde_json::to_string(owned).unwrap_or_else(|_| "[]".to_owned());
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.repeatable_objects (
    objects json NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE {s}.repeatable_objects IS 'slipway: objects created by repeatable scripts, dropped by a rollback; do not edit by hand';
DELETE FROM {s}.repeatable_objects;
INSERT INTO {s}.repeatable_objects (objects) VALUES ({});
",
            quote_literal(&json)
        )
    }

    /// The objects repeatable scripts created, as recorded by the applies
    /// that ran them; empty when none were recorded.
    pub async fn read_owned(&self, client: &Client) -> Result<Vec<OwnedObject>> {
        let query = format!(
            "SELECT objects::text FROM {}.repeatable_objects",
            self.quoted_schema
        );
        let messages = match client.simple_query(&query).await {
            Ok(messages) => messages,
            Err(e) if is_missing_history(&e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(database_error(
                    "reading the repeatable scripts' objects",
                    &e,
                ))
            }
        };
        let mut owned = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                let text = row.get(0).unwrap_or("[]");
                let objects: Vec<OwnedObject> = serde_json::from_str(text).map_err(|e| {
                    Error::Internal(format!(
                        "{}.repeatable_objects holds unexpected JSON ({e}); was it edited by hand?",
                        self.quoted_schema
                    ))
                })?;
                owned.extend(objects);
            }
        }
        Ok(owned)
    }

    /// Run a `-- slipway:no-transaction` migration: outside any
    /// transaction, each statement in a message of its own (a message of
    /// several statements is an implicit transaction, in which `CREATE INDEX
    /// CONCURRENTLY` refuses to run), still under the session's advisory
    /// lock. Its history row is written only after every statement
    /// succeeded, with the catalog after it.
    ///
    /// A failed `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind
    /// (<https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY>):
    /// the failure names it (INVALID indexes of `schemas` that were not
    /// there before), and [`History::drop_invalid_leftovers`] drops it
    /// before the next attempt.
    pub async fn run_alone(
        &self,
        client: &Client,
        step: &Migration,
        setup: HistorySetup,
        options: &BatchOptions,
        catalog: &CatalogQuery,
        schemas: &[String],
    ) -> std::result::Result<AloneOutcome, BatchError> {
        let failed = |context: &str, e: &tokio_postgres::Error| {
            BatchError::Failed(database_error(context, e))
        };
        if setup != HistorySetup::Ready {
            client
                .simple_query(&self.setup_sql(setup))
                .await
                .map_err(|e| failed("preparing the history table", &e))?;
        }
        let invalid_before = invalid_indexes(client, schemas)
            .await
            .map_err(BatchError::Failed)?;
        // Session settings, not SET LOCAL: there is no transaction to scope
        // them; they are reset after the migration.
        client
            .simple_query(&format!(
                "SET lock_timeout = {}; SET statement_timeout = {}; SET application_name = {}",
                options.lock_timeout.as_millis(),
                options.statement_timeout.as_millis(),
                quote_literal(&format!("slipway: {}", step.script))
            ))
            .await
            .map_err(|e| failed("setting the timeouts", &e))?;
        let started = std::time::Instant::now();
        let mut outcome = Ok(());
        for (line, statement) in statements(&step.sql) {
            if let Err(e) = client.simple_query(statement).await {
                outcome = Err((line, e));
                break;
            }
        }
        let execution_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let reset = client
            .simple_query(
                "RESET lock_timeout; RESET statement_timeout; SET application_name = 'slipway'",
            )
            .await;
        if let Err((line, error)) = outcome {
            let lost = |why: String| {
                BatchError::Failed(Error::Connection(format!(
                    "the connection failed while running {} ({why}); it ran outside a transaction, so statements before the failing one may have taken effect and it is not recorded — check the schema, then rerun",
                    step.script
                )))
            };
            let Some(db) = error.as_db_error() else {
                return Err(lost(error.to_string()));
            };
            if is_session_lost(db) {
                return Err(lost(format!(
                    "{} (SQLSTATE {})",
                    db.message(),
                    db.code().code()
                )));
            }
            if *db.code() == SqlState::LOCK_NOT_AVAILABLE {
                return Err(BatchError::LockTimeout(db.message().to_owned()));
            }
            let left = invalid_indexes(client, schemas)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|i| !invalid_before.contains(i))
                .map(|(schema, name)| catalog::qualified(&schema, &name))
                .collect();
            return Err(BatchError::Failed(Error::MigrationFailed(Box::new(
                MigrationFailure {
                    file: step.script.clone(),
                    version: step.version_str().map(str::to_owned),
                    line: Some(line),
                    sqlstate: db.code().code().to_owned(),
                    message: db.message().to_owned(),
                    detail: db.detail().map(str::to_owned),
                    hint: db.hint().map(str::to_owned),
                    invalid_indexes: left,
                },
            ))));
        }
        reset.map_err(|e| failed("resetting the timeouts", &e))?;
        // Outside a transaction nothing holds the lock but the session: a
        // migration that called pg_advisory_unlock_all() let other runs in.
        // Take it back (re-entrant if still held); if another run has it,
        // recording this step would race that run.
        let still_ours = client
            .simple_query(&format!("SELECT pg_try_advisory_lock({})", self.lock_key()))
            .await
            .map_err(|e| failed("checking the migration lock", &e))?
            .into_iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some("t")));
        if !still_ours {
            return Err(BatchError::Failed(Error::Config(format!(
                "{} released slipway's advisory lock (pg_advisory_unlock_all?) and another run took it; it ran outside a transaction and is not recorded — remove the unlock from the migration, check the schema, then rerun",
                step.script
            ))));
        }

        let snapshot = match catalog::read(client, catalog).await {
            Ok(read) => read.snapshot,
            Err(Error::Database { message, .. }) if message.contains("55P03") => {
                return Err(BatchError::LockTimeout(message))
            }
            Err(e) => return Err(BatchError::Failed(e)),
        };
        // The history row and the snapshot in one message: one implicit
        // transaction, so both are written or neither.
        let mut sql = self.history_insert_sql(step, &options.client, &execution_ms.to_string());
        sql.push_str(";\n");
        sql.push_str(&self.store_sql(&snapshot, &options.client, true));
        client
            .simple_query(&sql)
            .await
            .map_err(|e| failed(&format!("recording {} in the history", step.script), &e))?;
        Ok(AloneOutcome {
            outcome: StepOutcome {
                script: step.script.clone(),
                execution_ms,
            },
            catalog: snapshot,
        })
    }

    /// Drop the INVALID indexes of `schemas` that `step` names: what its
    /// failed run (a `CREATE INDEX CONCURRENTLY` that hit a duplicate, a
    /// deadlock or `lock_timeout`) left. The step is pending, so no recorded
    /// migration owns them; `IF NOT EXISTS` would otherwise keep the broken
    /// index, and a plain `CREATE INDEX` would fail on its name. Returns
    /// them as `schema.name`.
    ///
    /// `DROP INDEX CONCURRENTLY` waits for the transactions that use the
    /// table, so it runs under the migration's `lock_timeout` too, and a
    /// timeout is retried like one.
    pub async fn drop_invalid_leftovers(
        &self,
        client: &Client,
        step: &Migration,
        options: &BatchOptions,
        schemas: &[String],
    ) -> std::result::Result<Vec<String>, BatchError> {
        let mut dropped = Vec::new();
        let leftovers: Vec<(String, String)> = invalid_indexes(client, schemas)
            .await
            .map_err(BatchError::Failed)?
            .into_iter()
            .filter(|(_, name)| names_identifier(&step.sql, name))
            .collect();
        if leftovers.is_empty() {
            return Ok(dropped);
        }
        let session = |sql: String, context: &'static str| async move {
            client
                .simple_query(&sql)
                .await
                .map(|_| ())
                .map_err(|e| BatchError::Failed(database_error(context, &e)))
        };
        session(
            format!("SET lock_timeout = {}", options.lock_timeout.as_millis()),
            "setting lock_timeout",
        )
        .await?;
        for (schema, name) in leftovers {
            let index = format!("{}.{}", quote_identifier(&schema), quote_identifier(&name));
            tracing::warn!(index = %index, script = %step.script, "dropping the INVALID index a failed run of this migration left");
            let outcome = client
                .simple_query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                .await;
            if let Err(e) = outcome {
                let _ = client.simple_query("RESET lock_timeout").await;
                if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                    return Err(BatchError::LockTimeout(format!(
                        "dropping the INVALID index {index}: {e}"
                    )));
                }
                return Err(BatchError::Failed(database_error(
                    &format!("dropping the INVALID index {index}"),
                    &e,
                )));
            }
            dropped.push(catalog::qualified(&schema, &name));
        }
        session("RESET lock_timeout".to_owned(), "resetting lock_timeout").await?;
        Ok(dropped)
    }

    /// Statements that fail unless they run inside an explicit transaction
    /// block: PostgreSQL refuses `SAVEPOINT` in the implicit transaction
    /// that the rest of a message runs in after a `COMMIT`, `ROLLBACK`,
    /// `END` or `PREPARE TRANSACTION` (SQLSTATE 25P01). Cheap enough for
    /// every step: no XID, nothing written. It cannot tell slipway's block
    /// from a new one a `BEGIN` opened; [`History::identity_guard_sql`],
    /// once before the catalog read, can.
    fn guard_sql() -> &'static str {
        "SAVEPOINT slipway_guard;\nRELEASE SAVEPOINT slipway_guard;\n"
    }

    /// A statement that fails unless this session still holds the batch's
    /// transaction-level lock, i.e. unless the transaction is the one the
    /// batch began (a `COMMIT` releases it). Reading `pg_locks` costs time
    /// in proportion to the locks the migrations took, so it runs once, at
    /// the end of the batch, before anything can commit.
    fn identity_guard_sql(&self) -> String {
        format!(
            "DO $slipway_guard$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_locks l WHERE {}) THEN \
             RAISE EXCEPTION USING ERRCODE = '25P01', MESSAGE = '{GUARD_MESSAGE}', \
             HINT = 'remove BEGIN/COMMIT/ROLLBACK from the migrations; slipway runs each apply in one transaction of its own'; \
             END IF; END $slipway_guard$;\n",
            Self::held_lock_sql(self.transaction_key(), "= pg_catalog.pg_backend_pid()")
        )
    }

    /// The `INSERT` of `step`'s history row; `execution_ms` is an SQL expression.
    fn history_insert_sql(&self, step: &Migration, who: &str, execution_ms: &str) -> String {
        let version = step
            .version_str()
            .map_or_else(|| "NULL".to_owned(), quote_literal);
        let generation = match step.kind {
            MigrationKind::Repeatable => format!(
                "(SELECT count(*) FROM {}.history WHERE kind = 'repeatable' AND script = {})",
                self.quoted_schema,
                quote_literal(&step.script)
            ),
            _ => format!(
                "(SELECT count(*) FROM {}.history WHERE kind = 'rollback' AND version = {version})",
                self.quoted_schema
            ),
        };
        format!(
            "INSERT INTO {schema}.history (version, description, kind, script, checksum, client, execution_ms, generation) \
             VALUES ({version}, {description}, '{kind}', {script}, '{checksum}', {client}, {execution_ms}, {generation})",
            schema = self.quoted_schema,
            description = quote_literal(&step.description),
            kind = step.kind.as_str(),
            script = quote_literal(&step.script),
            checksum = step.checksum,
            client = quote_literal(who),
        )
    }

    /// End an [`OpenBatch`] without keeping anything.
    pub async fn rollback(&self, client: &Client) -> Result<()> {
        rollback(client).await
    }

    /// Statements preparing the history table as `setup` says.
    fn setup_sql(&self, setup: HistorySetup) -> String {
        match setup {
            HistorySetup::Ready => String::new(),
            HistorySetup::Create => self.ensure_sql(),
            HistorySetup::Upgrade => self.upgrade_sql(),
        }
    }

    /// Statements creating the history schema and table if missing.
    fn ensure_sql(&self) -> String {
        let s = &self.quoted_schema;
        format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version text,
    description text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('versioned', 'repeatable', 'rollback', 'baseline')),
    script text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_by text NOT NULL DEFAULT current_user,
    client text NOT NULL,
    execution_ms bigint NOT NULL,
    catalog_fingerprint text,
    generation integer NOT NULL DEFAULT 0,
    CHECK ((kind = 'repeatable') = (version IS NULL))
);
COMMENT ON TABLE {s}.history IS 'slipway migration history: one row per script run; do not edit by hand';
{indexes}",
            indexes = self.index_sql()
        )
    }

    /// The unique indexes that make "each migration recorded once" a rule of
    /// the database, not only of the advisory lock: a version's applied row
    /// (versioned or baseline) and its rollback row each exist once per
    /// generation (the number of rollbacks of that version before it), and
    /// a repeatable script's row once per run of that script. A second run
    /// that recorded the same step concurrently fails on the index (its
    /// INSERT waits for the first transaction, then violates) and rolls
    /// back whole.
    fn index_sql(&self) -> String {
        let s = &self.quoted_schema;
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {HISTORY_INDEX} ON {s}.history (version, (kind = 'rollback'), generation) WHERE version IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS history_repeatable_once ON {s}.history (script, generation) WHERE kind = 'repeatable';
"
        )
    }

    /// Statements bringing a history table made by an older slipway up to
    /// date: the generation column, filled from the rows before each, then
    /// the unique indexes. A history that already holds a version twice (a
    /// race an older slipway lost) fails here, inside the batch, which then
    /// changes nothing.
    fn upgrade_sql(&self) -> String {
        let s = &self.quoted_schema;
        format!(
            "ALTER TABLE {s}.history ADD COLUMN IF NOT EXISTS generation integer NOT NULL DEFAULT 0;
UPDATE {s}.history h SET generation = (
    SELECT count(*) FROM {s}.history r
    WHERE r.id < h.id AND CASE WHEN h.kind = 'repeatable' THEN r.kind = 'repeatable' AND r.script = h.script
                              ELSE r.kind = 'rollback' AND r.version = h.version END);
{}",
            self.index_sql()
        )
    }

    /// Run `steps` and their history rows in one transaction, as one message.
    ///
    /// Everything commits or nothing does: a failing statement aborts the
    /// transaction, and the `ROLLBACK` sent afterwards (or the session's end,
    /// if the process dies) discards every step of the batch.
    ///
    /// On success the transaction stays open, the catalog after the
    /// migrations read inside it (when `catalog` is given): the caller
    /// compares it with the expected snapshot and then commits or rolls back.
    /// `COMMIT` is never part of the batch message: inside it the server
    /// would run it even after this process was killed (it notices a dead
    /// client only when it next reads), so a killed apply would still commit.
    pub async fn run_batch(
        &self,
        client: &Client,
        batch_steps: &BatchSteps<'_>,
        options: &BatchOptions,
        catalog: Option<&CatalogQuery>,
    ) -> std::result::Result<OpenBatch, BatchError> {
        let steps = batch_steps.steps;
        let batch = self.batch_sql(batch_steps, options, catalog);
        let result = execute_batch(client, &batch).await;
        match result {
            Ok((outcomes, catalog_rows)) if outcomes.len() == steps.len() => {
                let collect = |rows: &[(String, String)], query: &CatalogQuery| {
                    let mut collector = query.collector();
                    rows.iter()
                        .try_for_each(|(class, json)| collector.accept_text(class, json))
                        .and_then(|()| collector.finish())
                };
                let (before_rows, after_rows) = match (catalog, batch.catalog_before) {
                    (Some(_), true) if catalog_rows.len() >= catalog::QUERY_COUNT => {
                        catalog_rows.split_at(catalog::QUERY_COUNT)
                    }
                    _ => (&catalog_rows[..0], &catalog_rows[..]),
                };
                let collected = catalog
                    .map(|query| {
                        let before = if batch.catalog_before {
                            Some(collect(before_rows, query)?)
                        } else {
                            None
                        };
                        Ok((before, collect(after_rows, query)?))
                    })
                    .transpose();
                let (catalog_before, snapshot) = match collected {
                    Ok(Some((before, after))) => (before, Some(after)),
                    Ok(None) => (None, None),
                    Err(error) => {
                        let _ = rollback(client).await;
                        return Err(BatchError::Failed(error));
                    }
                };
                Ok(OpenBatch {
                    outcomes: outcomes
                        .into_iter()
                        .zip(steps)
                        .map(|(outcome, step)| StepOutcome {
                            script: step.script.clone(),
                            ..outcome
                        })
                        .collect(),
                    catalog: snapshot,
                    catalog_before,
                })
            }
            Ok((outcomes, _)) => {
                let _ = rollback(client).await;
                Err(BatchError::Failed(Error::Internal(format!(
                    "the batch reported {} of {} steps; rolled back",
                    outcomes.len(),
                    steps.len()
                ))))
            }
            Err((progress, error)) => {
                // The transaction is aborted (or the connection is gone);
                // either way nothing of the batch survives.
                let _ = rollback(client).await;
                Err(self.batch_failure(steps, &batch, progress, error))
            }
        }
    }

    fn batch_failure(
        &self,
        steps: &[&Migration],
        batch: &Batch,
        progress: Progress,
        error: tokio_postgres::Error,
    ) -> BatchError {
        let running = steps
            .get(progress.completed_steps)
            .filter(|_| progress.inside_step)
            .map_or_else(String::new, |step| {
                format!(" while running {}", step.script)
            });
        let Some(db) = error.as_db_error() else {
            return BatchError::Failed(Error::Connection(format!(
                "the connection failed{running} ({error}); the transaction was rolled back, nothing was changed"
            )));
        };
        if is_session_lost(db) {
            return BatchError::Failed(Error::Connection(format!(
                "the server ended the session{running}: {} (SQLSTATE {}); the transaction was rolled back, nothing was changed — rerun when the server is back",
                db.message(),
                db.code().code()
            )));
        }
        if *db.code() == SqlState::LOCK_NOT_AVAILABLE {
            return BatchError::LockTimeout(db.message().to_owned());
        }
        // PostgreSQL parses the whole message before running any of it, so a
        // syntax error in any step arrives before BEGIN ran; its position
        // (characters into the message) still names the step.
        let by_position = match db.position() {
            Some(ErrorPosition::Original(position)) => {
                (*position as usize).checked_sub(1).and_then(|at| {
                    batch
                        .step_ranges
                        .iter()
                        .position(|r| (r.0..r.1).contains(&at))
                })
            }
            _ => None,
        };
        let index = by_position.unwrap_or(progress.completed_steps);
        let Some(step) = steps.get(index) else {
            if db.message() == GUARD_MESSAGE {
                // The end-of-batch check: the transaction running now is
                // not the one the batch began.
                return BatchError::Failed(Error::MigrationFailed(Box::new(MigrationFailure {
                    file: steps.iter().map(|s| s.script.as_str()).collect::<Vec<_>>().join(", "),
                    version: None,
                    line: None,
                    sqlstate: db.code().code().to_owned(),
                    message: format!(
                        "{GUARD_MESSAGE}, and a BEGIN opened another; the statements after it were rolled back, what ran before it may have been committed — run slipway status before anything else"
                    ),
                    detail: None,
                    hint: db.hint().map(str::to_owned),
                    invalid_indexes: Vec::new(),
                })));
            }
            // After the last step only the catalog queries run.
            return BatchError::Failed(database_error(
                "reading the schema after the migrations",
                &error,
            ));
        };
        if by_position.is_none() && !progress.inside_step {
            return BatchError::Failed(database_error(batch.prelude, &error));
        }
        let range = &batch.step_ranges[index];
        // Past the migration's own statements: slipway's guard or its
        // history INSERT failed.
        let in_tail = by_position.is_none()
            && progress.statements_in_step >= statement_lines(&step.sql).len();
        let line = if in_tail {
            None
        } else {
            line_of_error(db, &step.sql, range.0, progress.statements_in_step)
        };
        let message = if !in_tail {
            db.message().to_owned()
        } else if *db.code() == SqlState::NO_ACTIVE_SQL_TRANSACTION {
            format!(
                "{GUARD_MESSAGE}; what ran before that statement, earlier migrations of this run included, may have been committed — run slipway status before anything else"
            )
        } else if *db.code() == SqlState::UNIQUE_VIOLATION {
            format!(
                "another run recorded {} at the same time (the history's unique index refuses a second recording: {}); this run rolled back, nothing was changed",
                step.script,
                db.message()
            )
        } else {
            format!(
                "its statements ran, but recording it in slipway's history failed: {}; a migration that changes the session (SET ROLE, SET SESSION AUTHORIZATION, RESET ALL) must restore it before it ends; rolled back, nothing was changed",
                db.message()
            )
        };
        BatchError::Failed(Error::MigrationFailed(Box::new(MigrationFailure {
            file: step.script.clone(),
            version: step.version_str().map(str::to_owned),
            line,
            sqlstate: db.code().code().to_owned(),
            message,
            detail: db.detail().map(str::to_owned),
            hint: db.hint().map(str::to_owned),
            invalid_indexes: Vec::new(),
        })))
    }

    fn batch_sql(
        &self,
        batch_steps: &BatchSteps<'_>,
        options: &BatchOptions,
        catalog: Option<&CatalogQuery>,
    ) -> Batch {
        let steps = batch_steps.steps;
        let mut sql =
            String::with_capacity(steps.iter().map(|s| s.sql.len() + 400).sum::<usize>() + 1500);
        // Read committed whatever the session default: every statement sees
        // what committed before it, as the history read did.
        sql.push_str("BEGIN ISOLATION LEVEL READ COMMITTED;\n");
        // Two transaction-level locks, released only by COMMIT or ROLLBACK:
        // the migration key, so that a migration calling
        // pg_advisory_unlock_all() (which frees session-level locks only)
        // still excludes every other run until this transaction ends — and,
        // held with the session lock on the same key, makes PREPARE
        // TRANSACTION fail (PostgreSQL refuses to prepare a transaction that
        // holds a lock at both levels); and the transaction key, which the
        // guard after each step looks for.
        sql.push_str(&format!(
            "SELECT pg_advisory_xact_lock({}), pg_advisory_xact_lock({});\n",
            self.lock_key(),
            self.transaction_key()
        ));
        // Why SET LOCAL lock_timeout: an ALTER TABLE queued behind a long
        // transaction blocks every later query on that table, turning a
        // migration into an outage (https://www.postgresql.org/docs/current/sql-altertable.html,
        // "ACCESS EXCLUSIVE"). Failing fast and retrying is safer.
        sql.push_str(&format!(
            "SET LOCAL lock_timeout = {};\nSET LOCAL statement_timeout = {};\n",
            options.lock_timeout.as_millis(),
            options.statement_timeout.as_millis()
        ));
        // A killed client is otherwise noticed only when the server next
        // talks to it: the rest of the batch would run, holding its locks,
        // before the rollback. PostgreSQL 14+ can check every second; on
        // older servers the WHERE keeps the unknown setting untouched.
        sql.push_str(
            "SELECT set_config('client_connection_check_interval', '1000', true) \
             WHERE current_setting('server_version_num')::int >= 140000;\n",
        );
        sql.push_str(&self.setup_sql(batch_steps.setup));
        let prelude = if batch_steps.drop_first.is_empty() {
            "preparing the migration transaction"
        } else {
            sql.push_str(&drop_owned_sql(batch_steps.drop_first));
            "dropping the objects the repeatable scripts created (a rollback drops them first; see README, Rollback)"
        };
        sql.push_str(&format!(
            "SELECT set_config('slipway.step_started', clock_timestamp()::text, true) AS {BEGIN_MARKER}{};\n",
            steps.first().map_or_else(String::new, |step| running_as(step))
        ));
        let client = &options.client;
        let guard = Self::guard_sql();
        let mut step_ranges = Vec::with_capacity(steps.len());
        let mut chars = sql.chars().count();
        let mut catalog_before = false;
        for (index, step) in steps.iter().enumerate() {
            if let (Some(query), Some(true)) =
                (catalog, batch_steps.catalog_before.map(|at| at == index))
            {
                // The catalog queries empty search_path and set lock_timeout
                // for the rest of the transaction; the scripts after them
                // get back what they had. The marker row restarts the
                // step's statement count.
                let mut read = String::from(
                    "SELECT set_config('slipway.search_path', current_setting('search_path'), true), \
                     set_config('slipway.lock_timeout', current_setting('lock_timeout'), true);\n",
                );
                read.push_str(&query.sql());
                read.push_str(&format!(
                    "SELECT set_config('slipway.step_started', clock_timestamp()::text, true) AS {BEGIN_MARKER}, \
                     set_config('search_path', current_setting('slipway.search_path'), true), \
                     set_config('lock_timeout', current_setting('slipway.lock_timeout'), true);\n"
                ));
                chars += read.chars().count();
                sql.push_str(&read);
                catalog_before = true;
            }
            let start = chars;
            sql.push_str(&step.sql);
            chars += step.sql.chars().count();
            step_ranges.push((start, chars));
            // The newline ends a trailing `--` comment; the semicolon a last
            // statement written without one.
            // The guard first: if a statement of the migration ended the
            // transaction, the rest of the message would run outside it —
            // the guard fails instead, before the history row and before
            // the next migration's statements. The start time survives a
            // RESET ALL in the migration (the setting is then empty).
            let tail = format!(
                "\n;\n{guard}{} RETURNING execution_ms AS {STEP_MARKER}, set_config('slipway.step_started', clock_timestamp()::text, true){};\n",
                self.history_insert_sql(
                    step,
                    client,
                    "coalesce((extract(epoch FROM clock_timestamp() - nullif(current_setting('slipway.step_started', true), '')::timestamptz) * 1000)::bigint, 0)"
                ),
                steps.get(index + 1).map_or_else(String::new, |next| running_as(next))
            );
            chars += tail.chars().count();
            sql.push_str(&tail);
        }
        if !steps.is_empty() {
            sql.push_str(&self.identity_guard_sql());
        }
        if let Some(catalog) = catalog {
            sql.push_str(&catalog.sql());
        }
        Batch {
            sql,
            step_ranges,
            catalog_before,
            prelude,
        }
    }
}

/// Statements dropping `objects`, dependents first; `IF EXISTS`, never
/// `CASCADE`: an object of a versioned migration that depends on one of
/// them stops the rollback instead of vanishing with it. One statement per
/// kind, so objects of one kind that depend on each other go together.
fn drop_owned_sql(objects: &[OwnedObject]) -> String {
    let name = |key: &str| {
        key_parts(key)
            .iter()
            .map(|p| quote_identifier(p))
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut sql = String::new();
    for o in objects.iter().filter(|o| o.kind == "trigger") {
        if let Some(table) = &o.table {
            sql.push_str(&format!(
                "DROP TRIGGER IF EXISTS {} ON {};\n",
                name(&o.object),
                name(table)
            ));
        }
    }
    let groups: [(&[&str], &str); 9] = [
        (&["materialized view"], "MATERIALIZED VIEW"),
        (&["view"], "VIEW"),
        (&["foreign table"], "FOREIGN TABLE"),
        (&["table", "partitioned table"], "TABLE"),
        (&["index"], "INDEX"),
        (&["function"], "ROUTINE"),
        (&["sequence"], "SEQUENCE"),
        (&["type"], "TYPE"),
        (&["domain"], "DOMAIN"),
    ];
    for (kinds, what) in groups {
        let names: Vec<String> = objects
            .iter()
            .filter(|o| kinds.contains(&o.kind.as_str()))
            // A function's key is its signature as PostgreSQL writes it.
            .map(|o| {
                if o.kind == "function" {
                    o.object.clone()
                } else {
                    name(&o.object)
                }
            })
            .collect();
        if !names.is_empty() {
            sql.push_str(&format!("DROP {what} IF EXISTS {};\n", names.join(", ")));
        }
    }
    sql
}

/// The INVALID indexes of `schemas` as `(schema, name)`: what a failed
/// `CREATE INDEX CONCURRENTLY` leaves (`pg_index.indisvalid`).
pub async fn invalid_indexes(client: &Client, schemas: &[String]) -> Result<Vec<(String, String)>> {
    let list = schemas
        .iter()
        .map(|s| quote_literal(s))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = ANY (ARRAY[{list}]::text[]) ORDER BY 1, 2"
    );
    let messages = client
        .simple_query(&query)
        .await
        .map_err(|e| database_error("looking for INVALID indexes", &e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((
                row.get(0).unwrap_or_default().to_owned(),
                row.get(1).unwrap_or_default().to_owned(),
            )),
            _ => None,
        })
        .collect())
}

/// Whether `sql` names `identifier` (case-insensitive, as a whole word):
/// how a pending migration claims the INVALID index its failed run left.
pub fn names_identifier(sql: &str, identifier: &str) -> bool {
    let sql = sql.to_lowercase();
    let identifier = identifier.to_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
    sql.match_indices(&identifier).any(|(at, _)| {
        !word(sql[..at].chars().next_back()) && !word(sql[at + identifier.len()..].chars().next())
    })
}

/// The batch text and, per step, the character range of its migration SQL.
struct Batch {
    sql: String,
    step_ranges: Vec<(usize, usize)>,
    /// Whether the catalog is also read before a step ([`BatchSteps::catalog_before`]).
    catalog_before: bool,
    /// What the statements before the first step do, for an error there.
    prelude: &'static str,
}

/// How far a batch got before it stopped.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    completed_steps: usize,
    inside_step: bool,
    statements_in_step: usize,
}

/// The outcomes of the steps, and the `(class, json)` answers of the
/// catalog queries at the end.
type BatchAnswer = (Vec<StepOutcome>, Vec<(String, String)>);

async fn execute_batch(
    client: &Client,
    batch: &Batch,
) -> std::result::Result<BatchAnswer, (Progress, tokio_postgres::Error)> {
    let mut progress = Progress::default();
    let mut outcomes = Vec::new();
    let mut catalog_rows = Vec::new();
    let mut marker_pending = false;
    let stream = match client.simple_query_raw(&batch.sql).await {
        Ok(stream) => stream,
        Err(e) => return Err((progress, e)),
    };
    futures_util::pin_mut!(stream);
    while let Some(message) = stream.next().await {
        match message {
            Ok(SimpleQueryMessage::Row(row)) => match row.columns().first().map(|c| c.name()) {
                Some(BEGIN_MARKER) => {
                    marker_pending = true;
                    progress.inside_step = true;
                }
                Some(STEP_MARKER) => {
                    marker_pending = true;
                    let execution_ms = row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0);
                    outcomes.push(StepOutcome {
                        script: String::new(),
                        execution_ms,
                    });
                    progress.completed_steps += 1;
                }
                Some(catalog::CATALOG_MARKER) => catalog_rows.push((
                    row.get(0).unwrap_or_default().to_owned(),
                    row.get(1).unwrap_or("[]").to_owned(),
                )),
                _ => {}
            },
            Ok(SimpleQueryMessage::CommandComplete(_)) => {
                if marker_pending {
                    marker_pending = false;
                    progress.statements_in_step = 0;
                } else if progress.inside_step {
                    progress.statements_in_step += 1;
                }
            }
            Ok(_) => {}
            Err(e) => return Err((progress, e)),
        }
    }
    Ok((outcomes, catalog_rows))
}

/// The 1-based line of `sql` where the failing statement starts: from the
/// server's character position when it gives one, else from the number of
/// statements that completed before the failure.
fn line_of_error(db: &DbError, sql: &str, step_start: usize, completed: usize) -> Option<usize> {
    if let Some(ErrorPosition::Original(position)) = db.position() {
        let offset = (*position as usize).checked_sub(1 + step_start)?;
        let before: String = sql.chars().take(offset).collect();
        if offset <= sql.chars().count() {
            return Some(before.matches('\n').count() + 1);
        }
    }
    statement_lines(sql).get(completed).copied()
}

async fn rollback(client: &Client) -> Result<()> {
    client
        .simple_query("ROLLBACK")
        .await
        .map(|_| ())
        .map_err(|e| database_error("rolling back", &e))
}

/// The setting the lock statement reads, on purpose, when the lock is
/// taken: no such setting exists, so the statement fails.
const LOCKED_ELSEWHERE: &str = "slipway.migration_lock_held_by_another_run";

/// Whether `error` is the lock statement's deliberate failure.
fn is_locked_elsewhere(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNDEFINED_OBJECT && db.message().contains(LOCKED_ELSEWHERE)
    })
}

fn is_missing_history(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME
    )
}

fn history_row(row: &tokio_postgres::SimpleQueryRow) -> Result<HistoryRow> {
    let text = |i: usize| row.get(i).unwrap_or_default().to_owned();
    let number = |i: usize| -> Result<i64> {
        row.get(i)
            .unwrap_or_default()
            .parse()
            .map_err(|_| Error::Internal(format!("history column {i} is not a number")))
    };
    Ok(HistoryRow {
        id: number(0)?,
        version: row.get(1).map(str::to_owned),
        description: text(2),
        kind: text(3),
        script: text(4),
        checksum: text(5),
        applied_at: text(6),
        applied_by: text(7),
        client: text(8),
        execution_ms: number(9)?,
    })
}

/// The message of the guard that finds slipway's transaction ended.
pub const GUARD_MESSAGE: &str =
    "a statement of this migration ended the transaction slipway runs it in (COMMIT, ROLLBACK, END or PREPARE TRANSACTION)";

/// A target-list item naming `step` in `pg_stat_activity.application_name`
/// while it runs (transaction-local: back to `slipway` after the batch).
fn running_as(step: &Migration) -> String {
    format!(
        ", set_config('application_name', {}, true)",
        quote_literal(&format!("slipway: {}", step.script))
    )
}

/// Create the throw-away database `name` that `slipway snapshot` applies
/// the migrations to.
pub async fn create_database(client: &Client, name: &str) -> Result<()> {
    client
        .simple_query(&format!("CREATE DATABASE {}", quote_identifier(name)))
        .await
        .map(|_| ())
        .map_err(|e| database_error(&format!("creating the scratch database {name}"), &e))
}

/// Drop the throw-away database `name`; `FORCE` (PostgreSQL 13+) because the
/// connections that migrated it may not have closed on the server yet.
pub async fn drop_database(client: &Client, name: &str) -> Result<()> {
    client
        .simple_query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        ))
        .await
        .map(|_| ())
        .map_err(|e| database_error(&format!("dropping the scratch database {name}"), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_is_stable() {
        let key = History::new("slipway").unwrap().lock_key();
        assert_eq!(key, History::new("slipway").unwrap().lock_key());
        assert_ne!(key, History::new("other").unwrap().lock_key());
    }

    #[test]
    fn an_index_is_named_as_a_whole_word_only() {
        let sql = "CREATE UNIQUE INDEX CONCURRENTLY t_email_key ON t (email);";
        assert!(names_identifier(sql, "t_email_key"));
        assert!(names_identifier(sql, "T_EMAIL_KEY"));
        assert!(!names_identifier(sql, "email_key"));
        assert!(!names_identifier(sql, "t_email"));
        assert!(names_identifier("CREATE INDEX \"Odd\" ON t (x)", "odd"));
    }

    #[test]
    fn owned_objects_are_dropped_dependents_first_never_cascading() {
        let owned = |kind: &str, object: &str, table: Option<&str>| OwnedObject {
            kind: kind.into(),
            object: object.into(),
            table: table.map(Into::into),
        };
        let sql = drop_owned_sql(&[
            owned("function", "public.total(integer,integer)", None),
            owned("view", "public.t_totals", None),
            owned("view", "public.\"Big\"", None),
            owned("trigger", "t_touch", Some("public.t")),
            owned("domain", "public.email", None),
        ]);
        assert_eq!(
            sql,
            "DROP TRIGGER IF EXISTS \"t_touch\" ON \"public\".\"t\";\n\
             DROP VIEW IF EXISTS \"public\".\"t_totals\", \"public\".\"Big\";\n\
             DROP ROUTINE IF EXISTS public.total(integer,integer);\n\
             DROP DOMAIN IF EXISTS \"public\".\"email\";\n"
        );
        assert!(!sql.contains("CASCADE"));
    }
}
