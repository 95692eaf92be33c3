//! The orchestrator: `validate`, `apply` and `status` against one target,
//! each returning a [`Report`] — also when it fails, so the caller always has
//! what was found before the failure.
//!
//! It decides with [`crate::plan`] and touches the database only through
//! [`crate::history`]; it never builds SQL itself.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::connect::{connect, ConnectOptions};
use crate::error::{Error, Result};
use crate::history::{BatchError, BatchOptions, History, HistoryState};
use crate::migrations::{Migration, MigrationSet, Version};
use crate::plan::{plan, HistoryRow, Plan};
use crate::report::{
    AppliedMigration, ChecksumMismatchItem, MigrationStatus, PendingMigration, Report,
    UnknownVersion,
};

/// One database to migrate: how to reach it and where its history lives.
#[derive(Debug, Clone)]
pub struct Target {
    pub connect: ConnectOptions,
    /// Schema holding slipway's history table (default `slipway`).
    pub history_schema: String,
    /// Schemas whose objects the migrations own (default `public`).
    pub managed_schemas: Vec<String>,
    /// Who runs the migrations, stored with each history row: `cli:<host>`,
    /// `lambda:<function>`.
    pub client: String,
}

impl Target {
    /// A target with the default schemas.
    pub fn new(connect: ConnectOptions, client: impl Into<String>) -> Target {
        Target {
            connect,
            history_schema: DEFAULT_HISTORY_SCHEMA.to_owned(),
            managed_schemas: vec!["public".to_owned()],
            client: client.into(),
        }
    }
}

/// Default schema of the history table.
pub const DEFAULT_HISTORY_SCHEMA: &str = "slipway";

/// How patient a run is with locks and long statements.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a migration statement may wait for a table lock.
    pub lock_timeout: Duration,
    /// Longest a migration statement may run; zero means no limit.
    pub statement_timeout: Duration,
    /// How many times a batch that hit `lock_timeout` is tried again.
    pub lock_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15 * 60),
            lock_retries: 3,
            retry_backoff: Duration::from_secs(2),
        }
    }
}

/// Options of one `apply`.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Run everything, report, then roll back.
    pub dry_run: bool,
    /// Stop at this version instead of the latest.
    pub target: Option<String>,
}

/// Runs a migration set against a target.
#[derive(Debug, Clone)]
pub struct Migrator {
    set: MigrationSet,
    target: Target,
    settings: Settings,
}

impl Migrator {
    /// A migrator for `set` on `target`.
    pub fn new(set: MigrationSet, target: Target, settings: Settings) -> Migrator {
        Migrator {
            set,
            target,
            settings,
        }
    }

    /// The migration set this migrator applies.
    pub fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    /// Read-only check: pending migrations, modified files, unknown versions.
    pub async fn validate(&self) -> Report {
        let started = Instant::now();
        let mut report = Report::new("validate", false);
        let outcome = self.validate_into(&mut report).await;
        finish(report, outcome, started)
    }

    /// Like validate, plus every migration's state, for people.
    pub async fn status(&self) -> Report {
        let started = Instant::now();
        let mut report = Report::new("status", false);
        let outcome = self.status_into(&mut report).await;
        finish(report, outcome, started)
    }

    /// Run the pending migrations in one transaction under the advisory lock.
    pub async fn apply(&self, options: &ApplyOptions) -> Report {
        let started = Instant::now();
        let mut report = Report::new("apply", options.dry_run);
        let outcome = self.apply_into(&mut report, options).await;
        finish(report, outcome, started)
    }

    async fn open(&self) -> Result<(Client, History)> {
        let history = History::new(&self.target.history_schema)?;
        let client = connect(&self.target.connect).await?;
        Ok((client, history))
    }

    fn target_version(&self, target: Option<&str>) -> Result<Option<Version>> {
        target
            .map(|t| {
                Version::parse(t).ok_or_else(|| {
                    Error::Config(format!("target version '{t}' is not a number like 0005"))
                })
            })
            .transpose()
    }

    async fn validate_into(&self, report: &mut Report) -> Result<()> {
        let (client, history) = self.open().await?;
        let state = history.read(&client).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, None)?;
        fill_from_plan(report, &state, &plan);
        report.schema_valid = plan.is_clean();
        Ok(())
    }

    async fn status_into(&self, report: &mut Report) -> Result<()> {
        let (client, history) = self.open().await?;
        let state = history.read(&client).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, None)?;
        fill_from_plan(report, &state, &plan);
        report.schema_valid = plan.is_clean();
        report.migrations = Some(status_rows(&self.set, &rows, &plan));
        Ok(())
    }

    async fn apply_into(&self, report: &mut Report, options: &ApplyOptions) -> Result<()> {
        let target = self.target_version(options.target.as_deref())?;
        let (client, history) = self.open().await?;
        tracing::debug!("taking the migration lock");
        let state = history.lock_and_read(&client).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, target.as_ref())?;
        fill_from_plan(report, &state, &plan);
        report.schema_valid = plan.is_clean();
        plan.check_applicable()?;
        if plan.pending.is_empty() {
            tracing::info!("nothing to apply");
            return Ok(());
        }
        if let Some(m) = plan.pending.iter().find(|m| m.directives.no_transaction) {
            return Err(Error::Config(format!(
                "{} is marked -- slipway:no-transaction, which this version of slipway cannot run yet; apply it by hand or remove the directive",
                m.script
            )));
        }

        let batch_options = BatchOptions {
            lock_timeout: self.settings.lock_timeout,
            statement_timeout: self.settings.statement_timeout,
            client: self.target.client.clone(),
            dry_run: options.dry_run,
        };
        let outcomes = self
            .run_with_retries(
                &client,
                &history,
                &plan.pending,
                state.rows.is_none(),
                &batch_options,
            )
            .await?;

        if options.dry_run {
            tracing::info!(
                migrations = outcomes.len(),
                "dry run: all pending migrations ran and were rolled back"
            );
            return Ok(());
        }
        report.applied = plan
            .pending
            .iter()
            .zip(&outcomes)
            .map(|(m, outcome)| AppliedMigration {
                version: m.version_str().map(str::to_owned),
                description: m.description.clone(),
                script: m.script.clone(),
                duration_ms: outcome.execution_ms,
            })
            .collect();
        for applied in &report.applied {
            tracing::info!(script = %applied.script, duration_ms = applied.duration_ms, "applied");
        }
        // What stays pending after this run: versions above `--to`.
        let everything = self::plan(&rows, &self.set, None)?;
        report.pending = everything
            .pending
            .iter()
            .filter(|m| !plan.pending.iter().any(|done| done.script == m.script))
            .map(|m| pending_item(m))
            .collect();
        if let Some(last) = plan.pending.iter().filter_map(|m| m.version.as_ref()).max() {
            if plan.current.as_ref().is_none_or(|current| last > current) {
                report.current_version = Some(last.to_string());
            }
        }
        report.schema_valid = report.pending.is_empty();
        Ok(())
    }

    async fn run_with_retries(
        &self,
        client: &Client,
        history: &History,
        steps: &[&Migration],
        create_history: bool,
        options: &BatchOptions,
    ) -> Result<Vec<crate::history::StepOutcome>> {
        let attempts = self.settings.lock_retries + 1;
        let mut backoff = self.settings.retry_backoff;
        for attempt in 1..=attempts {
            match history
                .run_batch(client, steps, create_history, options)
                .await
            {
                Ok(outcomes) => return Ok(outcomes),
                Err(BatchError::Failed(error)) => return Err(error),
                Err(BatchError::LockTimeout(message)) if attempt < attempts => {
                    tracing::warn!(
                        attempt,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        "lock timeout ({message}); rolled back, retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(BatchError::LockTimeout(message)) => {
                    return Err(Error::LockTimeout { attempts, message })
                }
            }
        }
        Err(Error::Internal(
            "retry loop ended without an outcome".into(),
        ))
    }
}

/// Seal a report: success or the error, and the wall time.
fn finish(mut report: Report, outcome: Result<()>, started: Instant) -> Report {
    match outcome {
        Ok(()) => report.success = true,
        Err(error) => {
            tracing::error!(code = error.code().as_str(), "{error}");
            report.fail(&error);
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

fn pending_item(m: &Migration) -> PendingMigration {
    PendingMigration {
        version: m.version_str().map(str::to_owned),
        description: m.description.clone(),
        script: m.script.clone(),
    }
}

fn fill_from_plan(report: &mut Report, state: &HistoryState, plan: &Plan) {
    report.database = Some(state.database.clone());
    report.current_version = plan.current.as_ref().map(ToString::to_string);
    report.target_version = plan.target.as_ref().map(ToString::to_string);
    report.pending = plan.pending.iter().map(|m| pending_item(m)).collect();
    report.checksum_mismatches = plan
        .checksum_mismatches
        .iter()
        .map(|m| ChecksumMismatchItem {
            version: m.version.clone(),
            script: m.script.clone(),
            recorded_checksum: m.recorded.clone(),
            file_checksum: m.current.clone(),
        })
        .collect();
    report.unknown_versions = plan
        .unknown_versions
        .iter()
        .map(|(version, description)| UnknownVersion {
            version: version.clone(),
            description: description.clone(),
        })
        .collect();
}

fn status_rows(set: &MigrationSet, rows: &[HistoryRow], plan: &Plan) -> Vec<MigrationStatus> {
    let applied_row = |m: &Migration| -> Option<&HistoryRow> {
        plan.applied
            .iter()
            .copied()
            .find(|r| r.version.as_deref().and_then(Version::parse).as_ref() == m.version.as_ref())
            .or_else(|| {
                rows.iter()
                    .rev()
                    .find(|r| r.kind == "repeatable" && r.script == m.script)
            })
    };
    let mut out = Vec::new();
    for m in set.versioned().iter().chain(set.repeatable()) {
        let row = applied_row(m);
        let state = if plan.pending.iter().any(|p| p.script == m.script) {
            "pending"
        } else if plan
            .checksum_mismatches
            .iter()
            .any(|c| c.script == m.script)
        {
            "modified"
        } else if row.is_some() {
            "applied"
        } else {
            "pending"
        };
        out.push(MigrationStatus {
            version: m.version_str().map(str::to_owned),
            description: m.description.clone(),
            script: m.script.clone(),
            state: state.to_owned(),
            applied_at: row.map(|r| r.applied_at.clone()),
            applied_by: row.map(|r| format!("{} ({})", r.applied_by, r.client)),
            duration_ms: row.map(|r| r.execution_ms),
        });
    }
    for (version, description) in &plan.unknown_versions {
        out.push(MigrationStatus {
            version: Some(version.clone()),
            description: description.clone(),
            script: String::new(),
            state: "unknown".to_owned(),
            applied_at: None,
            applied_by: None,
            duration_ms: None,
        });
    }
    out
}
