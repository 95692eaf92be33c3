//! The history table of one target database: creating it (and bringing a
//! table an older slipway made up to date), the row each step records, the
//! schema snapshot stored after an apply, the record of what the repeatable
//! scripts created — and the read that decides what to run.
//!
//! Round trips are the cost that dominates a migration run, so that read is
//! one simple-query message: what the server is (and, for a run that
//! migrates, the lock of [`super::lock`]), the catalog queries of
//! [`super::catalog`], the history, the recorded snapshot's fingerprint.
//! The drift check rides along and adds no round trip.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::catalog::{self, CatalogQuery, OwnedObject, Snapshot};
use super::lock::{is_locked_elsewhere, LockHolder, MigrationLock};
use super::sql::{database_error, quote_identifier, quote_literal, BatchError};
use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationKind};

/// Columns read back from the history table, in [`HistoryRow`] order.
const HISTORY_COLUMNS: &str = "id, version, description, kind, script, checksum, \
     to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), applied_by, client, execution_ms";

/// Marker column of the database name in a history read.
const DATABASE_MARKER: &str = "slipway_database";
/// Marker column of the recorded snapshot's fingerprint in a history read.
const RECORDED_MARKER: &str = "slipway_recorded";
/// The unique index that records each version once per generation
/// ([`History::ensure_sql`]); its presence tells a current history table.
const HISTORY_INDEX: &str = "history_version_once";

/// The history table of one target database.
#[derive(Debug, Clone)]
pub struct History {
    schema: String,
    quoted_schema: String,
    lock: MigrationLock,
}

/// What the current state of the target is, as read under the lock or not.
#[derive(Debug, Clone)]
pub(crate) struct HistoryState {
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
pub(crate) struct ServerState {
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

/// Identity of the stored snapshot; the snapshot itself is read only when
/// the fingerprints differ ([`History::read_recorded_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordedSnapshot {
    /// [`catalog::FORMAT`] of the slipway that stored it.
    pub format: u32,
    pub fingerprint: String,
}

/// What the history table needs before the first step records itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySetup {
    /// It exists and is current.
    Ready,
    /// It does not exist yet (a new database).
    Create,
    /// It was made by an older slipway (`ServerState::history_indexed`
    /// was false): add the generation column and the unique indexes.
    Upgrade,
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
            lock: MigrationLock::new(schema),
        })
    }

    /// The schema's name, unquoted.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The advisory locks of this history.
    pub(super) fn lock(&self) -> &MigrationLock {
        &self.lock
    }

    fn select_history(&self) -> String {
        format!(
            "SELECT {HISTORY_COLUMNS} FROM {}.history ORDER BY id",
            self.quoted_schema
        )
    }

    /// Read the history — and the live catalog when `catalog` is given —
    /// without locking or writing anything (validate, status).
    pub(crate) async fn read(
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
    pub(crate) async fn lock_and_read(
        &self,
        client: &Client,
        catalog: Option<&CatalogQuery>,
    ) -> Result<HistoryState> {
        let lock = self.lock.try_lock_sql();
        self.read_with(client, &self.first_statement(&lock), catalog)
            .await
    }

    /// Who holds this history's migration lock, if anyone else does.
    pub(crate) async fn lock_holder(&self, client: &Client) -> Result<Option<LockHolder>> {
        self.lock.holder(client).await
    }

    /// Wait for the migration lock, at most `timeout` (`lock_timeout`
    /// bounds an advisory lock wait like any other lock wait).
    pub(crate) async fn wait_for_lock(
        &self,
        client: &Client,
        timeout: Duration,
    ) -> std::result::Result<(), BatchError> {
        self.lock.wait(client, timeout, &self.quoted_schema).await
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
    pub(crate) async fn read_recorded_snapshot(&self, client: &Client) -> Result<Option<Snapshot>> {
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
    pub(super) fn store_sql(
        &self,
        snapshot: &Snapshot,
        client: &str,
        fill_history: bool,
    ) -> String {
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
    pub(crate) async fn store_snapshot(
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

    /// Statements replacing the record of the objects repeatable scripts
    /// created (one JSON row; read back by [`History::read_owned`]).
    pub(super) fn store_owned_sql(&self, owned: &[OwnedObject]) -> String {
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
    pub(crate) async fn read_owned(&self, client: &Client) -> Result<Vec<OwnedObject>> {
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

    /// The `INSERT` of `step`'s history row; `execution_ms` is an SQL expression.
    pub(super) fn history_insert_sql(
        &self,
        step: &Migration,
        who: &str,
        execution_ms: &str,
    ) -> String {
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

    /// Statements preparing the history table as `setup` says.
    pub(super) fn setup_sql(&self, setup: HistorySetup) -> String {
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
        kind: HistoryKind::parse(&text(3)),
        script: text(4),
        checksum: text(5),
        applied_at: text(6),
        applied_by: text(7),
        client: text(8),
        execution_ms: number(9)?,
    })
}
/// One row of the history table, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub id: i64,
    /// `None` for repeatable scripts.
    pub version: Option<String>,
    pub description: String,
    pub kind: HistoryKind,
    pub script: String,
    pub checksum: String,
    pub applied_at: String,
    pub applied_by: String,
    pub client: String,
    pub execution_ms: i64,
}

/// What a history row records, from its `kind` column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HistoryKind {
    /// A versioned migration ran.
    Versioned,
    /// A repeatable script ran.
    Repeatable,
    /// A version was rolled back: its rollback script ran.
    Rollback,
    /// Versions up to this one were recorded as applied without running.
    Baseline,
    /// A value slipway never writes (a history edited by hand), kept as read
    /// so that the plan can name it when it refuses the row.
    Unrecognised(String),
}

impl HistoryKind {
    /// The kind of the history's `kind` column `text`.
    pub fn parse(text: &str) -> HistoryKind {
        match text {
            "versioned" => HistoryKind::Versioned,
            "repeatable" => HistoryKind::Repeatable,
            "rollback" => HistoryKind::Rollback,
            "baseline" => HistoryKind::Baseline,
            other => HistoryKind::Unrecognised(other.to_owned()),
        }
    }

    /// The value of the history's `kind` column.
    pub fn as_str(&self) -> &str {
        match self {
            HistoryKind::Versioned => "versioned",
            HistoryKind::Repeatable => "repeatable",
            HistoryKind::Rollback => "rollback",
            HistoryKind::Baseline => "baseline",
            HistoryKind::Unrecognised(text) => text,
        }
    }
}
