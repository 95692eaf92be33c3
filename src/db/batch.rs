//! The batch: the steps of one transaction, each migration followed by a
//! guard and its history row, and how it ends — `COMMIT` with the schema
//! snapshot, or `ROLLBACK`.
//!
//! Round trips are the cost that dominates a migration run, so the batch is
//! one simple-query message: `BEGIN`, the timeouts, each migration followed by
//! its history row; then, in a message of its own, `COMMIT` (with the schema
//! snapshot rows). The server executes it statement by statement;
//! the client reads the stream of completions to know how far it got when a
//! statement fails (psql, by contrast, sends each statement separately).
//!
//! The catalog queries of [`super::catalog`] ride along at the end of the
//! batch, so the drift check adds no round trip; the snapshot they take is
//! stored in `<schema>.schema_snapshot` with the `COMMIT`.
//!
//! A batch of rollback scripts is the same batch (history rows of kind
//! `rollback`), preceded by dropping what the repeatable scripts created;
//! a batch that runs repeatable scripts also reads the catalog just before
//! them, so that what they create is recorded in
//! `<schema>.repeatable_objects` with the `COMMIT`. A `-- slipway:no-transaction`
//! migration is the exception to "one message": it cannot run in a
//! transaction, so [`super::no_transaction`] sends it statement by statement.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::catalog::{self, key_parts, CatalogQuery, OwnedObject, Snapshot};
use super::history::{History, HistorySetup};
use super::sql::{database_error, is_session_lost, quote_identifier, quote_literal, BatchError};
use crate::error::{Error, MigrationFailure, Result};
use crate::migrations::Migration;
use crate::statements::statement_lines;

/// Marker column of the statement that closes each step of a batch.
const STEP_MARKER: &str = "slipway_step";
/// Marker column of the statement that opens a batch.
const BEGIN_MARKER: &str = "slipway_begin";

/// The message of the guard that finds slipway's transaction ended.
const GUARD_MESSAGE: &str =
    "a statement of this migration ended the transaction slipway runs it in (COMMIT, ROLLBACK, END or PREPARE TRANSACTION)";

/// A batch whose migrations all ran, in a transaction still open: the
/// caller commits it with `History::commit` or ends it with
/// `History::rollback`. Dropping the client instead rolls it back too.
#[derive(Debug)]
pub struct OpenBatch {
    pub(crate) outcomes: Vec<StepOutcome>,
    /// The catalog after the migrations, inside the transaction.
    pub(crate) catalog: Option<Snapshot>,
    /// The catalog before step [`BatchSteps::catalog_before`], when asked.
    pub(crate) catalog_before: Option<Snapshot>,
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
pub(crate) struct StepOutcome {
    pub script: String,
    /// Server-side execution time of the migration, in milliseconds.
    pub execution_ms: i64,
}

impl History {
    /// Commit an [`OpenBatch`], storing `snapshot` with it.
    ///
    /// The snapshot rows and `COMMIT` travel in one message: unlike the
    /// batch, whose end must wait for the client to see every step succeed,
    /// everything here is already decided. If a statement fails, the server
    /// skips the rest of the message, `COMMIT` included, and the rollback
    /// sent after it discards the batch.
    /// `owned`, when given, replaces the record of the objects repeatable
    /// scripts created.
    pub(crate) async fn commit(
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

    /// End an [`OpenBatch`] without keeping anything.
    pub(crate) async fn rollback(&self, client: &Client) -> Result<()> {
        rollback(client).await
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
        sql.push_str(&self.lock().transaction_locks_sql());
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
            self.lock().transaction_held_sql()
        )
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

/// A target-list item naming `step` in `pg_stat_activity.application_name`
/// while it runs (transaction-local: back to `slipway` after the batch).
fn running_as(step: &Migration) -> String {
    format!(
        ", set_config('application_name', {}, true)",
        quote_literal(&format!("slipway: {}", step.script))
    )
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

#[cfg(test)]
mod tests {
    use super::*;

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
