//! A `-- slipway:no-transaction` migration, run alone between two batches:
//! outside any transaction, one statement a message, recorded only after
//! every statement succeeded — and the INVALID indexes a failed
//! `CREATE INDEX CONCURRENTLY` leaves behind, named in the failure and
//! dropped before the next attempt.
//!
//! It is the one exception to "one message, one transaction" (README,
//! "Non-transactional migrations", says what that gives up), so it lives
//! apart from the batch it interrupts.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::batch::{BatchOptions, StepOutcome};
use super::catalog::{self, CatalogQuery, Snapshot};
use super::history::{History, HistorySetup};
use super::sql::{database_error, is_session_lost, quote_identifier, quote_literal, BatchError};
use crate::error::{Error, MigrationFailure, Result};
use crate::migrations::Migration;
use crate::statements::statements;

/// A `-- slipway:no-transaction` migration that ran and was recorded.
#[derive(Debug)]
pub(crate) struct AloneOutcome {
    pub outcome: StepOutcome,
    /// The catalog after it, as recorded.
    pub catalog: Snapshot,
}

impl History {
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
    pub(crate) async fn run_alone(
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
            .simple_query(&self.lock().retake_sql())
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
    pub(crate) async fn drop_invalid_leftovers(
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
}

/// The INVALID indexes of `schemas` as `(schema, name)`: what a failed
/// `CREATE INDEX CONCURRENTLY` leaves (`pg_index.indisvalid`).
async fn invalid_indexes(client: &Client, schemas: &[String]) -> Result<Vec<(String, String)>> {
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
pub(crate) fn names_identifier(sql: &str, identifier: &str) -> bool {
    let sql = sql.to_lowercase();
    let identifier = identifier.to_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
    sql.match_indices(&identifier).any(|(at, _)| {
        !word(sql[..at].chars().next_back()) && !word(sql[at + identifier.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_named_as_a_whole_word_only() {
        let sql = "CREATE UNIQUE INDEX CONCURRENTLY t_email_key ON t (email);";
        assert!(names_identifier(sql, "t_email_key"));
        assert!(names_identifier(sql, "T_EMAIL_KEY"));
        assert!(!names_identifier(sql, "email_key"));
        assert!(!names_identifier(sql, "t_email"));
        assert!(names_identifier("CREATE INDEX \"Odd\" ON t (x)", "odd"));
    }
}
