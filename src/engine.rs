//! The orchestrator: `validate`, `apply`, `rollback` and `status` against
//! one target, each returning a [`Report`] — also when it fails, so the
//! caller always has what was found before the failure.
//!
//! `apply` and `rollback` share one executor: the steps (migrations, or
//! rollback scripts newest first) run in one transaction each stretch, cut
//! by `-- slipway:no-transaction` steps that run alone in between; the same
//! lock-timeout retries, the same expected-snapshot check before the last
//! commit. A rollback first drops the objects the repeatable scripts
//! created, which every apply that runs them records.
//!
//! It decides with [`crate::plan`] and [`crate::drift`] and touches the
//! database only through [`crate::db`] and [`crate::db::catalog`]; it never
//! builds SQL itself.
//!
//! Drift is checked against a reference: the snapshot the database's last
//! apply recorded (validate, and before apply runs anything) and — what
//! ships is what CI tested — the committed expected snapshot, inside the
//! apply transaction after the migrations ran and before `COMMIT`, when the
//! apply goes to the latest version.

use std::time::Instant;

use tokio_postgres::Client;

use crate::action::Action;
pub use crate::config::{Settings, DEFAULT_HISTORY_SCHEMA};
use crate::connect::{connect, ConnectOptions};
use crate::db::catalog::{self, CatalogQuery, OwnedObject, Snapshot};
use crate::db::with_scratch_database;
use crate::db::{
    names_identifier, BatchError, BatchOptions, BatchSteps, History, HistorySetup, HistoryState,
};
use crate::drift::{diff, DiffOptions, Difference, DriftKind};
use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationKind, MigrationSet, Version, EXPECTED_SNAPSHOT_FILE};
use crate::plan::{plan, HistoryRow, Plan};
use crate::report::{
    AppliedMigration, ChecksumMismatchItem, DriftItem, MigrationStatus, PendingMigration, Report,
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
    /// Compare the live schema with the recorded and the expected snapshot
    /// (default true). Off, validate and a no-op apply skip the catalog
    /// reads; an apply still records the schema it leaves.
    pub check_drift: bool,
}

impl Target {
    /// A target with the default schemas.
    pub fn new(connect: ConnectOptions, client: impl Into<String>) -> Target {
        Target {
            connect,
            history_schema: DEFAULT_HISTORY_SCHEMA.to_owned(),
            managed_schemas: vec!["public".to_owned()],
            client: client.into(),
            check_drift: true,
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
    /// Go ahead although the schema drifted from the recorded or the
    /// expected snapshot (the report still lists the drift); once the run
    /// commits, the live schema is the recorded one.
    pub allow_drift: bool,
}

/// Options of one `rollback`.
#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    /// Undo every applied version above this one; `0` undoes them all.
    pub to: String,
    /// Run the rollback scripts, report, then roll the transaction back.
    pub dry_run: bool,
    /// Go ahead although the schema drifted from the recorded snapshot.
    pub allow_drift: bool,
}

/// What the live schema is compared with.
const RECORDED_REFERENCE: &str = "the snapshot recorded by the last apply";
const EXPECTED_REFERENCE: &str = "the expected snapshot (schema.snapshot.json)";

/// Drift found against one reference.
struct Drift {
    reference: &'static str,
    items: Vec<Difference>,
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

    /// The database it works on.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How patient it is with locks and long statements.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Read-only check: pending migrations, modified files, unknown versions.
    pub async fn validate(&self) -> Report {
        let started = Instant::now();
        let mut report = Report::new(Action::Validate, false);
        let outcome = self.validate_into(&mut report).await;
        finish(report, outcome, started)
    }

    /// Like validate, plus every migration's state, for people.
    pub async fn status(&self) -> Report {
        let started = Instant::now();
        let mut report = Report::new(Action::Status, false);
        let outcome = self.status_into(&mut report).await;
        finish(report, outcome, started)
    }

    /// Run the pending migrations in one transaction under the advisory lock.
    pub async fn apply(&self, options: &ApplyOptions) -> Report {
        let started = Instant::now();
        let mut report = Report::new(Action::Apply, options.dry_run);
        let outcome = self.apply_into(&mut report, options).await;
        finish(report, outcome, started)
    }

    /// Undo the applied versions above `options.to`, newest first, with
    /// their rollback scripts, in one transaction under the advisory lock.
    pub async fn rollback(&self, options: &RollbackOptions) -> Report {
        let started = Instant::now();
        let mut report = Report::new(Action::Rollback, options.dry_run);
        let outcome = self.rollback_into(&mut report, options).await;
        finish(report, outcome, started)
    }

    /// The live catalog of the managed schemas (read-only).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let client = connect(&self.target.connect).await?;
        Ok(catalog::read(&client, &self.catalog_query())
            .await?
            .snapshot)
    }

    fn catalog_query(&self) -> CatalogQuery {
        CatalogQuery::new(&self.target.managed_schemas, &self.target.history_schema)
            .lock_timeout(self.settings.lock_timeout)
    }

    /// Connect, then read the history and, with the drift check on, the live
    /// catalog; with `lock`, take the migration lock first. The read runs
    /// again while it fails on `lock_timeout`: describing a table takes a
    /// share lock on it, so a table held exclusively elsewhere makes the read
    /// wait, as it would make a migration wait.
    async fn open_and_read(
        &self,
        lock: bool,
        report: &mut Report,
    ) -> Result<(Client, History, HistoryState)> {
        let (client, history) = self.open().await?;
        let query = self.catalog_query();
        let live = self.target.check_drift.then_some(&query);
        if lock {
            tracing::debug!("taking the migration lock");
        }
        let read = || async {
            let read = if lock {
                history.lock_and_read(&client, live).await
            } else {
                history.read(&client, live).await
            };
            read.map_err(|error| match error {
                Error::LockTimeout { message, .. } => BatchError::LockTimeout(message),
                other => BatchError::Failed(other),
            })
        };
        // The database's name, for the report also when the run is refused.
        let database = std::sync::Mutex::new(None);
        let state = self
            .with_retries(|| async {
                let state = read().await?;
                if let Ok(mut name) = database.lock() {
                    *name = Some(state.database.clone());
                }
                if !lock {
                    return Ok(state);
                }
                // A standby or a read-only default would fail the first
                // migration with a message that blames it.
                if let Some(reason) = state.server.read_only_reason() {
                    return Err(BatchError::Failed(Error::ReadOnly(reason.to_owned())));
                }
                if state.server.locked {
                    check_isolation(&state)?;
                    return Ok(state);
                }
                // Another run holds the lock: say who, wait at most
                // lock_timeout (a timeout is retried like any other), then
                // read again — what that run committed is now visible.
                let holder = history
                    .lock_holder(&client)
                    .await
                    .map_err(BatchError::Failed)?;
                let who = holder.map_or_else(
                    || "another slipway run".to_owned(),
                    |h| format!("another slipway run ({h})"),
                );
                tracing::warn!(
                    "waiting up to {} ms for the migration lock of {}: {who} holds it",
                    self.settings.lock_timeout.as_millis(),
                    history.schema()
                );
                history
                    .wait_for_lock(&client, self.settings.lock_timeout)
                    .await
                    .map_err(|e| match e {
                        BatchError::LockTimeout(_) => BatchError::LockTimeout(format!(
                            "{who} holds the migration lock of {}",
                            history.schema()
                        )),
                        other => other,
                    })?;
                let state = read().await?;
                if let Some(reason) = state.server.read_only_reason() {
                    return Err(BatchError::Failed(Error::ReadOnly(reason.to_owned())));
                }
                check_isolation(&state)?;
                if !state.server.locked {
                    return Err(BatchError::Failed(Error::Internal(
                        "the migration lock was granted but the next read did not hold it".into(),
                    )));
                }
                Ok(state)
            })
            .await;
        if let Some(name) = database.into_inner().ok().flatten() {
            report.database = Some(name);
        }
        Ok((client, history, state?))
    }

    /// The committed expected snapshot of the migration set, if it has one.
    fn expected_snapshot(&self) -> Result<Option<Snapshot>> {
        let Some(text) = self.set.expected_snapshot() else {
            return Ok(None);
        };
        let expected = Snapshot::from_json(text, EXPECTED_SNAPSHOT_FILE)?;
        if expected.format != catalog::FORMAT {
            return Err(Error::Config(format!(
                "{EXPECTED_SNAPSHOT_FILE} has snapshot format {}, this slipway writes format {}; regenerate it with `slipway snapshot`",
                expected.format,
                catalog::FORMAT
            )));
        }
        let managed = Snapshot::empty(&self.target.managed_schemas).schemas;
        if expected.schemas != managed {
            return Err(Error::Config(format!(
                "{EXPECTED_SNAPSHOT_FILE} covers schema(s) {} but this target manages {}; regenerate it with `slipway snapshot`",
                expected.schemas.join(", "),
                managed.join(", ")
            )));
        }
        Ok(Some(expected))
    }

    /// Drift of the live catalog from the database's reference: the snapshot
    /// its last apply recorded or, for a database with a history but no
    /// recorded snapshot and nothing pending, the expected snapshot.
    async fn reference_drift(
        &self,
        client: &Client,
        history: &History,
        state: &HistoryState,
        plan: &Plan<'_>,
    ) -> Result<Option<Drift>> {
        let Some(live) = &state.catalog else {
            return Ok(None);
        };
        if let Some(recorded) = &state.recorded {
            if recorded.format != catalog::FORMAT {
                tracing::warn!(
                    format = recorded.format,
                    "the recorded schema snapshot has another format; not compared (the next apply replaces it)"
                );
                return Ok(None);
            }
            // The common case costs a hash: the snapshot itself is fetched
            // only when the fingerprints differ.
            if recorded.fingerprint == live.fingerprint() {
                return Ok(Some(Drift {
                    reference: RECORDED_REFERENCE,
                    items: Vec::new(),
                }));
            }
            let Some(recorded) = history.read_recorded_snapshot(client).await? else {
                return Ok(None);
            };
            if recorded.schemas != live.schemas {
                tracing::warn!(
                    recorded = %recorded.schemas.join(","),
                    managed = %live.schemas.join(","),
                    "the recorded schema snapshot covers other schemas; not compared (the next apply replaces it)"
                );
                return Ok(None);
            }
            let same_database = DiffOptions {
                same_database: true,
            };
            return Ok(Some(Drift {
                reference: RECORDED_REFERENCE,
                items: diff(&recorded, live, same_database),
            }));
        }
        if state.rows.is_some() && plan.pending.is_empty() {
            if let Some(expected) = self.expected_snapshot()? {
                return Ok(Some(Drift {
                    reference: EXPECTED_REFERENCE,
                    items: diff(&expected, live, DiffOptions::default()),
                }));
            }
        }
        Ok(None)
    }

    async fn open(&self) -> Result<(Client, History)> {
        self.settings.check()?;
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
        self.inspect(report).await.map(|_| ())
    }

    async fn status_into(&self, report: &mut Report) -> Result<()> {
        let rows = self.inspect(report).await?;
        let plan = plan(&rows, &self.set, None)?;
        report.migrations = Some(status_rows(&self.set, &rows, &plan));
        Ok(())
    }

    /// Validate into `report`: history, plan, drift. Returns the history rows.
    async fn inspect(&self, report: &mut Report) -> Result<Vec<HistoryRow>> {
        let (client, history, state) = self.open_and_read(false, report).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, None)?;
        fill_from_plan(report, &state, &plan);
        if let Some(drift) = self
            .reference_drift(&client, &history, &state, &plan)
            .await?
        {
            report.drift = items(&drift.items);
        }
        report.schema_valid = plan.is_clean() && report.drift.is_empty();
        Ok(rows)
    }

    async fn apply_into(&self, report: &mut Report, options: &ApplyOptions) -> Result<()> {
        let target = self.target_version(options.target.as_deref())?;
        let (client, history, state) = self.open_and_read(true, report).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, target.as_ref())?;
        fill_from_plan(report, &state, &plan);
        report.schema_valid = plan.is_clean();
        plan.check_applicable()?;

        // Someone changed the schema behind the migrations' back: running
        // more migrations on top would hide it, so stop unless told.
        let drift_accepted = self
            .check_reference_drift(
                &client,
                &history,
                &state,
                &plan,
                report,
                &DriftPolicy {
                    allow_drift: options.allow_drift,
                    next: "nothing was applied; undo the out-of-band change (slipway validate lists it), or rerun with --allow-drift to apply anyway and accept the live schema",
                },
            )
            .await?;
        if plan.pending.is_empty() {
            tracing::info!("nothing to apply");
            // A database with history but no recorded snapshot (migrated by
            // an older slipway) gets one now, once; so does accepted drift.
            let record = state.rows.is_some()
                && !options.dry_run
                && (state.recorded.is_none() || drift_accepted);
            if let (true, Some(live)) = (record, &state.catalog) {
                history
                    .store_snapshot(&client, live, &self.target.client)
                    .await?;
                report.schema_valid = plan.is_clean();
            }
            return Ok(());
        }

        // Parsed before anything runs: a broken file is a config error,
        // not a rolled-back migration.
        let to_latest = plan.target.as_ref() == self.set.latest_version();
        let expected = if to_latest && self.target.check_drift {
            self.expected_snapshot()?
        } else {
            None
        };
        let owned = if plan
            .pending
            .iter()
            .any(|m| m.kind == MigrationKind::Repeatable)
        {
            Some(history.read_owned(&client).await?)
        } else {
            None
        };
        let run = Run {
            steps: plan.pending.clone(),
            setup: history_setup(&state),
            drop_first: Vec::new(),
            owned,
            expected,
            dry_run: options.dry_run,
            allow_drift: options.allow_drift,
        };
        let mut executed = Executed::default();
        let outcome = self
            .execute(&client, &history, &run, report, &mut executed)
            .await;
        report.dropped_invalid_indexes = executed.dropped_invalid.clone();
        if let (Some(before), Some(after)) = (&state.catalog, &executed.after) {
            report.schema_changes = Some(changes(before, after));
        }
        if !options.dry_run {
            report.applied = executed
                .done
                .iter()
                .map(|&(index, ms)| done_item(run.steps[index], ms))
                .collect();
            for applied in &report.applied {
                tracing::info!(script = %applied.script, duration_ms = applied.duration_ms, "applied");
            }
            if let Some(last) = executed
                .done
                .iter()
                .filter_map(|&(index, _)| run.steps[index].version.as_ref())
                .max()
            {
                if plan.current.as_ref().is_none_or(|current| last > current) {
                    report.current_version = Some(last.to_string());
                }
            }
        }
        outcome?;

        if options.dry_run {
            tracing::info!(
                migrations = executed.done.len(),
                "dry run: all pending migrations ran and were rolled back"
            );
            return Ok(());
        }
        // What stays pending after this run: versions above `--to`.
        let everything = self::plan(&rows, &self.set, None)?;
        report.pending = everything
            .pending
            .iter()
            .filter(|m| !plan.pending.iter().any(|done| done.script == m.script))
            .map(|m| pending_item(m))
            .collect();
        report.schema_valid = report.pending.is_empty();
        Ok(())
    }

    /// Compare the live schema with the database's reference before changing
    /// anything; drift stops the run unless `allow_drift`. Returns whether
    /// drift was found and accepted.
    async fn check_reference_drift(
        &self,
        client: &Client,
        history: &History,
        state: &HistoryState,
        plan: &Plan<'_>,
        report: &mut Report,
        policy: &DriftPolicy,
    ) -> Result<bool> {
        let Some(drift) = self.reference_drift(client, history, state, plan).await? else {
            return Ok(false);
        };
        // An INVALID index that a pending no-transaction migration names is
        // what its failed run left: the run drops it and tries again, so
        // it does not stop the run (validate still lists it).
        let found: Vec<Difference> = drift
            .items
            .into_iter()
            .filter(|d| !is_leftover_of(d, &plan.pending))
            .collect();
        if found.is_empty() {
            return Ok(false);
        }
        report.drift = items(&found);
        report.schema_valid = false;
        if !policy.allow_drift {
            return Err(drift_error(
                drift.reference,
                if report.action == Action::Rollback {
                    "schema drift before rolling back"
                } else {
                    "schema drift before applying"
                },
                &report.drift,
                policy.next,
            ));
        }
        tracing::warn!(
            items = found.len(),
            "schema drift allowed by --allow-drift; once this run commits, the live schema is the recorded one"
        );
        Ok(true)
    }

    async fn rollback_into(&self, report: &mut Report, options: &RollbackOptions) -> Result<()> {
        let to = Version::parse(options.to.trim()).ok_or_else(|| {
            Error::Config(format!(
                "rollback target '{}' is not a version like 0003 (0 rolls back everything)",
                options.to
            ))
        })?;
        let everything = to.as_str().bytes().all(|b| b == b'0');
        let (client, history, state) = self.open_and_read(true, report).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, None)?;
        fill_from_plan(report, &state, &plan);
        report.target_version = Some(to.to_string());
        report.rolled_back = Some(Vec::new());
        report.schema_valid = plan.is_clean();
        plan.check_applicable()?;

        let applied: Vec<Version> = plan
            .applied
            .iter()
            .filter_map(|row| row.version.as_deref().and_then(Version::parse))
            .collect();
        if !everything && !applied.contains(&to) {
            return Err(Error::Config(match self.set.find(&to) {
                None => format!("rollback target {to} is not among the migration files"),
                Some(_) => format!(
                    "version {to} is not applied (current version {}); roll back to an applied version, or to 0 for everything",
                    plan.current.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string)
                ),
            }));
        }
        // Newest first: each script undoes its migration on the schema that
        // the migrations after it have already been removed from.
        let undo: Vec<&Migration> = applied
            .iter()
            .rev()
            // `--to 0` undoes everything, a version 0 migration included.
            .filter(|v| everything || **v > to)
            .filter_map(|v| self.set.find(v))
            .collect();
        if undo.is_empty() {
            tracing::info!("nothing to roll back");
            report.schema_valid = plan.is_clean();
            return Ok(());
        }
        let missing: Vec<&&Migration> = undo.iter().filter(|m| m.rollback.is_none()).collect();
        if !missing.is_empty() {
            return Err(Error::RollbackMissing {
                versions: missing
                    .iter()
                    .filter_map(|m| m.version_str().map(str::to_owned))
                    .collect(),
                files: missing
                    .iter()
                    .map(|m| {
                        let stem = m.script.strip_suffix(".sql").unwrap_or(&m.script);
                        format!("{stem}_rollback.sql")
                    })
                    .collect(),
            });
        }
        self.check_reference_drift(
            &client,
            &history,
            &state,
            &plan,
            report,
            &DriftPolicy {
                allow_drift: options.allow_drift,
                next: "nothing was rolled back; undo the out-of-band change (slipway validate lists it), or rerun with --allow-drift",
            },
        )
        .await?;

        let scripts: Vec<Migration> = undo.iter().filter_map(|m| m.rollback_step()).collect();
        let run = Run {
            steps: scripts.iter().collect(),
            setup: history_setup(&state),
            drop_first: history.read_owned(&client).await?,
            owned: None,
            expected: None,
            dry_run: options.dry_run,
            allow_drift: options.allow_drift,
        };
        let mut executed = Executed::default();
        let outcome = self
            .execute(&client, &history, &run, report, &mut executed)
            .await;
        if let (Some(before), Some(after)) = (&state.catalog, &executed.after) {
            report.schema_changes = Some(changes(before, after));
        }
        report.dropped_invalid_indexes = executed.dropped_invalid.clone();
        report.rolled_back = Some(
            executed
                .done
                .iter()
                .map(|&(index, ms)| done_item(run.steps[index], ms))
                .collect(),
        );
        outcome?;
        if options.dry_run {
            tracing::info!(
                migrations = executed.done.len(),
                "dry run: the rollback scripts ran and were undone"
            );
            return Ok(());
        }
        for script in &scripts {
            tracing::info!(script = %script.script, "rolled back");
        }
        // The rolled-back versions and the repeatable scripts are pending again.
        let rows = history.read(&client, None).await?.rows.unwrap_or_default();
        let after = self::plan(&rows, &self.set, None)?;
        fill_from_plan(report, &state, &after);
        report.target_version = Some(to.to_string());
        report.schema_valid = after.is_clean();
        Ok(())
    }

    /// Run the steps of an apply or a rollback: consecutive transactional
    /// steps in one transaction each, a `-- slipway:no-transaction` step
    /// alone between them, all under the advisory lock the caller holds.
    /// `executed` keeps what was committed, also when a later part fails.
    async fn execute(
        &self,
        client: &Client,
        history: &History,
        run: &Run<'_>,
        report: &mut Report,
        executed: &mut Executed,
    ) -> Result<()> {
        if run.dry_run {
            if let Some(m) = run.steps.iter().find(|m| m.directives.no_transaction) {
                return Err(Error::Config(format!(
                    "{} is marked -- slipway:no-transaction: it cannot run inside a transaction, so a dry run cannot try it and undo it; try it on a throw-away database with `slipway verify`",
                    m.script
                )));
            }
        }
        let query = self.catalog_query();
        let batch_options = BatchOptions {
            lock_timeout: self.settings.lock_timeout,
            statement_timeout: self.settings.statement_timeout,
            client: self.target.client.clone(),
        };
        let parts = segments(&run.steps, !run.drop_first.is_empty());
        let mut setup = run.setup;
        let mut drop_first = &run.drop_first[..];
        for (number, part) in parts.iter().enumerate() {
            let last = number + 1 == parts.len();
            if part.alone {
                let step = run.steps[part.range.start];
                let schemas = &self.target.managed_schemas;
                let first_setup = setup;
                // Kept across attempts and reported also when the step fails.
                let dropped = std::sync::Mutex::new(Vec::new());
                let result = self
                    .with_retries(|| async {
                        let left = history
                            .drop_invalid_leftovers(client, step, &batch_options, schemas)
                            .await?;
                        if let Ok(mut all) = dropped.lock() {
                            all.extend(left);
                        }
                        history
                            .run_alone(client, step, first_setup, &batch_options, &query, schemas)
                            .await
                    })
                    .await;
                executed
                    .dropped_invalid
                    .extend(dropped.into_inner().unwrap_or_default());
                let alone = result?;
                setup = HistorySetup::Ready;
                executed
                    .done
                    .push((part.range.start, alone.outcome.execution_ms));
                tracing::info!(script = %step.script, "ran outside a transaction and recorded");
                if let (true, Some(expected)) = (last, &run.expected) {
                    check_expected(expected, &alone.catalog, run.allow_drift, report).map_err(
                        |found| {
                            drift_error(
                                EXPECTED_REFERENCE,
                                "schema drift after the migrations",
                                &found,
                                "the last migration ran outside a transaction and stays applied; fix the conflicting objects with a new migration, or regenerate the snapshot if the migrations changed (slipway snapshot)",
                            )
                        },
                    )?;
                }
                executed.after = Some(alone.catalog);
                continue;
            }
            let steps = &run.steps[part.range.clone()];
            let catalog_before = run.owned.as_ref().and_then(|_| {
                steps
                    .iter()
                    .position(|m| m.kind == MigrationKind::Repeatable)
            });
            let batch = BatchSteps {
                steps,
                setup,
                drop_first,
                catalog_before,
            };
            let open = self
                .with_retries(|| history.run_batch(client, &batch, &batch_options, Some(&query)))
                .await?;
            // What the repeatables own now: what they created before, plus
            // what they created here, less what no longer exists.
            let owned = if !drop_first.is_empty() {
                Some(Vec::new())
            } else {
                match (&run.owned, &open.catalog_before, &open.catalog) {
                    (Some(previous), Some(before), Some(after)) => {
                        let mut all = previous.clone();
                        all.extend(after.created_since(before));
                        all.retain(|o| after.holds(o));
                        all.sort();
                        all.dedup();
                        Some(all)
                    }
                    _ => None,
                }
            };
            setup = HistorySetup::Ready;
            drop_first = &[];
            // What ships is what CI tested: the schema the migrations
            // produced here, inside the still-open transaction, must be the
            // one they produced in CI. A pre-existing object that a
            // migration's IF NOT EXISTS skipped, or a hand-made change the
            // migrations did not touch, shows up here — and nothing of it
            // is committed.
            if let (true, Some(expected), Some(after)) = (last, &run.expected, &open.catalog) {
                if let Err(found) = check_expected(expected, after, run.allow_drift, report) {
                    history.rollback(client).await?;
                    return Err(drift_error(
                        EXPECTED_REFERENCE,
                        "schema drift after the migrations",
                        &found,
                        "rolled back, nothing of this transaction was applied; fix the conflicting objects, regenerate the snapshot if the migrations changed (slipway snapshot), or rerun with --allow-drift",
                    ));
                }
            }
            let ran = open
                .outcomes
                .iter()
                .enumerate()
                .map(|(k, outcome)| (part.range.start + k, outcome.execution_ms));
            if run.dry_run {
                history.rollback(client).await?;
                executed.done.extend(ran);
                executed.after = open.catalog;
                return Ok(());
            }
            history
                .commit(
                    client,
                    open.catalog.as_ref(),
                    owned.as_deref(),
                    &self.target.client,
                )
                .await?;
            executed.done.extend(ran);
            executed.after = open.catalog;
        }
        Ok(())
    }

    /// Run `attempt` again while it fails on `lock_timeout`, with a doubling
    /// backoff: a failed read changed nothing, a failed batch was rolled back,
    /// and a failed no-transaction migration left only what the next attempt
    /// cleans up.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, BatchError>>,
    {
        let attempts = self.settings.lock_retries + 1;
        let mut backoff = self.settings.retry_backoff;
        for number in 1..=attempts {
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(BatchError::Failed(error)) => return Err(error),
                Err(BatchError::LockTimeout(message)) if number < attempts => {
                    tracing::warn!(
                        attempt = number,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        "lock timeout ({message}); retrying"
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

/// How the history table must be prepared before the first step.
fn history_setup(state: &HistoryState) -> HistorySetup {
    if state.rows.is_none() {
        HistorySetup::Create
    } else if state.server.history_indexed {
        HistorySetup::Ready
    } else {
        HistorySetup::Upgrade
    }
}

/// Refuse a locked read taken under another isolation than read committed:
/// its snapshot may predate the lock, so it may miss what the previous
/// holder committed (the connection asks for read committed at start-up;
/// a connection pooler can drop that request).
fn check_isolation(state: &HistoryState) -> std::result::Result<(), BatchError> {
    match state.server.isolation.as_str() {
        "read committed" => Ok(()),
        other => Err(BatchError::Failed(Error::Config(format!(
            "the connection runs at isolation level '{other}' although slipway asked for read committed at start-up (options=-c default_transaction_isolation); connect to PostgreSQL directly, not through a pooler that drops start-up options"
        )))),
    }
}

/// What to do about drift found before a run changes anything.
struct DriftPolicy {
    /// Go ahead anyway (`--allow-drift`).
    allow_drift: bool,
    /// The error's last words: what happened and what to do next.
    next: &'static str,
}

/// The steps of an apply or a rollback, decided.
struct Run<'a> {
    steps: Vec<&'a Migration>,
    /// Create or upgrade the history table in the first transaction.
    setup: HistorySetup,
    /// Objects the repeatable scripts created, dropped first (a rollback).
    drop_first: Vec<OwnedObject>,
    /// The recorded objects of the repeatable scripts, when the steps
    /// include some: what they create is added.
    owned: Option<Vec<OwnedObject>>,
    /// Compare the schema after the last step with this before committing.
    expected: Option<Snapshot>,
    dry_run: bool,
    allow_drift: bool,
}

/// What [`Migrator::execute`] ran.
#[derive(Debug, Default)]
struct Executed {
    /// Index into [`Run::steps`] and execution time of each committed step
    /// (in a dry run: each step that ran before the rollback).
    done: Vec<(usize, i64)>,
    /// The catalog after the last step that ran.
    after: Option<Snapshot>,
    /// INVALID indexes dropped before a no-transaction step ran again.
    dropped_invalid: Vec<String>,
}

/// A stretch of steps run together: in one transaction, or one step alone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    range: std::ops::Range<usize>,
    alone: bool,
}

/// Cut `steps` at each no-transaction step. With `prelude` (objects to drop
/// first), the first segment is a transaction even when it must be empty.
fn segments(steps: &[&Migration], prelude: bool) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    if prelude && steps.first().is_some_and(|m| m.directives.no_transaction) {
        out.push(Segment {
            range: 0..0,
            alone: false,
        });
    }
    for (index, step) in steps.iter().enumerate() {
        let alone = step.directives.no_transaction;
        match out.last_mut() {
            Some(last) if !alone && !last.alone && last.range.end == index => {
                last.range.end = index + 1;
            }
            _ => out.push(Segment {
                range: index..index + 1,
                alone,
            }),
        }
    }
    out
}

/// Add the differences between `expected` and `after` to the report's
/// drift; `Err` with them unless `allow_drift`.
fn check_expected(
    expected: &Snapshot,
    after: &Snapshot,
    allow_drift: bool,
    report: &mut Report,
) -> std::result::Result<(), Vec<DriftItem>> {
    let found = items(&diff(expected, after, DiffOptions::default()));
    if found.is_empty() {
        return Ok(());
    }
    for item in found {
        if !report.drift.contains(&item) {
            report.drift.push(item);
        }
    }
    report.schema_valid = false;
    if allow_drift {
        tracing::warn!("schema drift from the expected snapshot allowed by --allow-drift");
        return Ok(());
    }
    Err(report.drift.clone())
}

/// Whether `d` is an INVALID index that a pending no-transaction migration
/// names: what its failed run left, dropped before it runs again.
fn is_leftover_of(d: &Difference, pending: &[&Migration]) -> bool {
    if d.kind != DriftKind::ExtraIndex
        || !d.actual.as_deref().is_some_and(|a| a.contains("INVALID"))
    {
        return false;
    }
    let name = crate::db::catalog::key_parts(&d.object)
        .pop()
        .unwrap_or_default();
    pending
        .iter()
        .any(|m| m.directives.no_transaction && names_identifier(&m.sql, &name))
}

/// The schema changes between two catalogs of the same database.
fn changes(before: &Snapshot, after: &Snapshot) -> Vec<crate::report::SchemaChange> {
    let same_database = DiffOptions {
        same_database: true,
    };
    diff(before, after, same_database)
        .iter()
        .map(crate::report::SchemaChange::from)
        .collect()
}

fn done_item(m: &Migration, duration_ms: i64) -> AppliedMigration {
    AppliedMigration {
        version: m.version_str().map(str::to_owned),
        description: m.description.clone(),
        script: m.script.clone(),
        duration_ms,
    }
}

/// Build the expected snapshot of `set`: apply every migration to a
/// throw-away database created on the server of `server` (whose own
/// database is used only to create and drop it), read the catalog of its
/// managed schemas, drop the database. What `slipway snapshot` writes to
/// `schema.snapshot.json`.
pub async fn build_expected_snapshot(set: &MigrationSet, server: &Target) -> Result<Snapshot> {
    let admin = connect(&server.connect).await?;
    with_scratch_database(&admin, "slipway_snapshot", |name| async move {
        let mut target = server.clone();
        target.connect.config.dbname(&name);
        // Without the old expected snapshot: the new one is what is being made.
        let migrator = Migrator::new(
            set.clone().without_expected_snapshot(),
            target,
            Settings::default(),
        );
        let mut report = Report::new(Action::Apply, false);
        migrator
            .apply_into(&mut report, &ApplyOptions::default())
            .await?;
        migrator.snapshot().await
    })
    .await
}

/// Report items of differences.
fn items(differences: &[Difference]) -> Vec<DriftItem> {
    differences.iter().map(DriftItem::from).collect()
}

fn drift_error(reference: &str, context: &str, items: &[DriftItem], next: &str) -> Error {
    let mut summary = items
        .iter()
        .take(3)
        .map(|d| format!("{} {}", d.kind, d.object))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 3 {
        summary.push_str(", ...");
    }
    Error::Drift {
        reference: reference.to_owned(),
        context: context.to_owned(),
        count: items.len(),
        summary,
        next: next.to_owned(),
    }
}

/// Seal a report: success or the error, and the wall time.
fn finish(mut report: Report, outcome: Result<()>, started: Instant) -> Report {
    match outcome {
        Ok(()) => report.success = true,
        Err(error) => {
            // Debug only: the report carries the error, and each face prints
            // the report (the CLI) or logs its outcome (the Lambda) once.
            tracing::debug!(code = error.code().as_str(), "{error}");
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
    use crate::plan::HistoryKind;
    use crate::report::MigrationState;

    let applied_row = |m: &Migration| -> Option<&HistoryRow> {
        plan.applied
            .iter()
            .copied()
            .find(|r| r.version.as_deref().and_then(Version::parse).as_ref() == m.version.as_ref())
            .or_else(|| {
                rows.iter()
                    .rev()
                    .find(|r| r.kind == HistoryKind::Repeatable && r.script == m.script)
            })
    };
    let mut out = Vec::new();
    for m in set.versioned().iter().chain(set.repeatable()) {
        let row = applied_row(m);
        let state = if plan.pending.iter().any(|p| p.script == m.script) {
            MigrationState::Pending
        } else if plan
            .checksum_mismatches
            .iter()
            .any(|c| c.script == m.script)
        {
            MigrationState::Modified
        } else if row.is_some() {
            MigrationState::Applied
        } else {
            MigrationState::Pending
        };
        out.push(MigrationStatus {
            version: m.version_str().map(str::to_owned),
            description: m.description.clone(),
            script: m.script.clone(),
            state,
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
            state: MigrationState::Unknown,
            applied_at: None,
            applied_by: None,
            duration_ms: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::SourceFile;

    #[test]
    fn no_transaction_steps_cut_the_run_into_transactions() {
        let set = MigrationSet::from_files(
            [
                ("0001_a.sql", "select 1;"),
                ("0002_b.sql", "select 2;"),
                ("0003_c.sql", "-- slipway:no-transaction\nselect 3;"),
                ("0004_d.sql", "-- slipway:no-transaction\nselect 4;"),
                ("0005_e.sql", "select 5;"),
            ]
            .map(|(path, sql)| SourceFile {
                path: path.to_owned(),
                contents: sql.as_bytes().to_vec().into(),
            }),
        )
        .unwrap();
        let steps: Vec<&Migration> = set.versioned().iter().collect();
        let cut = |steps: &[&Migration], prelude| -> Vec<(std::ops::Range<usize>, bool)> {
            segments(steps, prelude)
                .into_iter()
                .map(|s| (s.range, s.alone))
                .collect()
        };
        assert_eq!(
            cut(&steps, false),
            [(0..2, false), (2..3, true), (3..4, true), (4..5, false)]
        );
        // Objects to drop first need a transaction before a leading
        // no-transaction step.
        assert_eq!(
            cut(&steps[2..], true),
            [(0..0, false), (0..1, true), (1..2, true), (2..3, false)]
        );
        assert_eq!(cut(&steps[..2], true), [(0..2, false)]);
        assert!(cut(&[], false).is_empty());
    }
}
