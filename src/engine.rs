//! The orchestrator: `validate`, `apply`, `rollback` and `status` against
//! one target, each returning a [`Report`] — also when it fails, so the
//! caller always has what was found before the failure.
//!
//! It only sequences: connect and read through the database seams
//! ([`crate::history`], [`crate::catalog`]; it never builds SQL itself),
//! decide through `crate::decide` (pure, table-tested), execute, fill the
//! report. `apply` and `rollback` are one flow, `Migrator::run_steps`:
//! what differs between them — the steps and their order, the kind they
//! are recorded as, the objects of the repeatable scripts a rollback drops
//! first, the expected-snapshot check of an apply to the latest version —
//! is data that `decide::run` decides.
//!
//! The executor runs the steps in one transaction each stretch, cut by
//! `-- slipway:no-transaction` steps that run alone in between, with the
//! same lock-timeout retries and the same expected-snapshot check before
//! the last commit for both directions.
//!
//! It touches the database only through [`crate::db`]; it never builds
//! SQL itself.
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
use crate::db::{BatchError, BatchOptions, BatchSteps, History, HistorySetup, HistoryState};
use crate::decide::drift_policy::{
    self, drift_error, Drift, DriftPolicy, ExpectedCheck, Reference, Verdict, EXPECTED_REFERENCE,
};
use crate::decide::run::{self, Direction, RunRequest};
use crate::decide::status::status_rows;
use crate::decide::{fill, owned, segments};
use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationSet};
use crate::plan::{plan, HistoryRow, Plan};
use crate::report::{DriftItem, Report};

/// One database to migrate: how to reach it and where its history lives.
#[derive(Debug, Clone)]
pub struct Database {
    pub connect: ConnectOptions,
    /// Schema holding slipway's history table (default `slipway`).
    pub history_schema: String,
    /// Schemas whose objects the migrations own (default `public`).
    pub managed_schemas: Vec<String>,
    /// Who runs the migrations, stored with each history row: `cli:<host>`,
    /// `lambda:<function>`.
    pub run_by: String,
    /// Compare the live schema with the recorded and the expected snapshot
    /// (default true). Off, validate and a no-op apply skip the catalog
    /// reads; an apply still records the schema it leaves.
    pub check_drift: bool,
}

impl Database {
    /// A target with the default schemas.
    pub fn new(connect: ConnectOptions, run_by: impl Into<String>) -> Database {
        Database {
            connect,
            history_schema: DEFAULT_HISTORY_SCHEMA.to_owned(),
            managed_schemas: vec!["public".to_owned()],
            run_by: run_by.into(),
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
    pub to: Option<String>,
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

/// Runs a migration set against a database.
#[derive(Debug, Clone)]
pub struct Migrator {
    set: MigrationSet,
    database: Database,
    settings: Settings,
}

impl Migrator {
    /// A migrator for `set` on `database`.
    pub fn new(set: MigrationSet, database: Database, settings: Settings) -> Migrator {
        Migrator {
            set,
            database,
            settings,
        }
    }

    /// The migration set this migrator applies.
    pub fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    /// The database it works on.
    pub fn database(&self) -> &Database {
        &self.database
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
        let client = connect(&self.database.connect).await?;
        Ok(catalog::read(&client, &self.catalog_query())
            .await?
            .snapshot)
    }

    fn catalog_query(&self) -> CatalogQuery {
        CatalogQuery::new(
            &self.database.managed_schemas,
            &self.database.history_schema,
        )
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
        let live = self.database.check_drift.then_some(&query);
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
        drift_policy::expected_snapshot(
            self.set.expected_snapshot(),
            &self.database.managed_schemas,
        )
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
        let reference = drift_policy::reference(
            state.catalog.as_ref(),
            state.recorded.as_ref(),
            state.rows.is_some(),
            plan.pending.is_empty(),
        );
        match reference {
            Reference::None => Ok(None),
            Reference::OtherFormat(format) => {
                tracing::warn!(
                    format,
                    "the recorded schema snapshot has another format; not compared (the next apply replaces it)"
                );
                Ok(None)
            }
            Reference::Unchanged => Ok(Some(drift_policy::unchanged())),
            Reference::Recorded(live) => {
                let Some(recorded) = history.read_recorded_snapshot(client).await? else {
                    return Ok(None);
                };
                let drift = drift_policy::recorded_drift(&recorded, live);
                if drift.is_none() {
                    tracing::warn!(
                        recorded = %recorded.schemas.join(","),
                        managed = %live.schemas.join(","),
                        "the recorded schema snapshot covers other schemas; not compared (the next apply replaces it)"
                    );
                }
                Ok(drift)
            }
            Reference::Expected(live) => Ok(self
                .expected_snapshot()?
                .map(|expected| drift_policy::expected_drift(&expected, live))),
        }
    }

    async fn open(&self) -> Result<(Client, History)> {
        self.settings.check()?;
        let history = History::new(&self.database.history_schema)?;
        let client = connect(&self.database.connect).await?;
        Ok((client, history))
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
        fill::from_plan(report, &state.database, &plan);
        if let Some(drift) = self
            .reference_drift(&client, &history, &state, &plan)
            .await?
        {
            report.drift = fill::items(&drift.items);
        }
        report.schema_valid = plan.is_clean() && report.drift.is_empty();
        Ok(rows)
    }

    async fn apply_into(&self, report: &mut Report, options: &ApplyOptions) -> Result<()> {
        let request = RunRequest {
            direction: Direction::apply(options.to.as_deref())?,
            dry_run: options.dry_run,
            allow_drift: options.allow_drift,
        };
        self.run_steps(report, &request).await
    }

    async fn rollback_into(&self, report: &mut Report, options: &RollbackOptions) -> Result<()> {
        let request = RunRequest {
            direction: Direction::rollback(&options.to)?,
            dry_run: options.dry_run,
            allow_drift: options.allow_drift,
        };
        self.run_steps(report, &request).await
    }

    /// The one flow of `apply` and `rollback`: read under the migration
    /// lock, plan, decide the steps, check the drift, run them, fill the
    /// report.
    async fn run_steps(&self, report: &mut Report, request: &RunRequest) -> Result<()> {
        let (client, history, state) = self.open_and_read(true, report).await?;
        let rows = state.rows.clone().unwrap_or_default();
        let plan = plan(&rows, &self.set, request.direction.plan_target())?;
        fill::run_start(report, &state.database, &plan, &request.direction);
        plan.check_applicable()?;
        let decided = run::steps_plan(request, &plan, &self.set, self.database.check_drift)?;
        if decided.steps.is_empty() && !decided.check_drift_when_idle {
            tracing::info!("{}", request.direction.nothing_to_do());
            return Ok(());
        }

        // Someone changed the schema behind the migrations' back: running
        // more steps on top would hide it, so stop unless told.
        let drift_accepted = self
            .check_reference_drift(&client, &history, &state, &plan, report, &decided.drift)
            .await?;
        if decided.steps.is_empty() {
            tracing::info!("{}", request.direction.nothing_to_do());
            let record = drift_policy::record_snapshot(
                state.rows.is_some(),
                request.dry_run,
                state.recorded.is_some(),
                drift_accepted,
            );
            if let (true, Some(live)) = (record, &state.catalog) {
                history
                    .store_snapshot(&client, live, &self.database.run_by)
                    .await?;
                report.schema_valid = plan.is_clean();
            }
            return Ok(());
        }

        // Parsed before anything runs: a broken file is a config error,
        // not a rolled-back migration.
        let expected = if decided.check_expected {
            self.expected_snapshot()?
        } else {
            None
        };
        let owned = if decided.track_owned {
            Some(history.read_owned(&client).await?)
        } else {
            None
        };
        let drop_first = if decided.drop_owned_first {
            history.read_owned(&client).await?
        } else {
            Vec::new()
        };
        let run = Run {
            steps: decided.step_refs(),
            setup: run::history_setup(state.rows.is_some(), state.server.history_indexed),
            drop_first,
            owned,
            expected,
            dry_run: request.dry_run,
            allow_drift: request.allow_drift,
        };
        let mut executed = Executed::default();
        let outcome = self
            .execute(&client, &history, &run, report, &mut executed)
            .await;
        report.dropped_invalid_indexes = executed.dropped_invalid.clone();
        if let (Some(before), Some(after)) = (&state.catalog, &executed.after) {
            report.schema_changes = Some(fill::changes(before, after));
        }
        fill::done(
            report,
            request,
            &run.steps,
            &executed.done,
            plan.current.as_ref(),
        );
        for applied in &report.applied {
            tracing::info!(script = %applied.script, duration_ms = applied.duration_ms, "applied");
        }
        outcome?;

        if request.dry_run {
            tracing::info!(
                migrations = executed.done.len(),
                "{}",
                request.direction.dry_run_done()
            );
            return Ok(());
        }
        match &request.direction {
            Direction::Apply { .. } => fill::after_apply(report, &rows, &self.set, &plan)?,
            Direction::Rollback { to } => {
                for step in &run.steps {
                    tracing::info!(script = %step.script, "rolled back");
                }
                // Read again: the rows this run added make the rolled-back
                // versions and the repeatable scripts pending again.
                let rows = history.read(&client, None).await?.rows.unwrap_or_default();
                let after = self::plan(&rows, &self.set, None)?;
                fill::after_rollback(report, &state.database, &after, to);
            }
        }
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
        let drift = self.reference_drift(client, history, state, plan).await?;
        match drift_policy::verdict(drift, &plan.pending, policy) {
            Verdict::Clean => Ok(false),
            Verdict::Accepted(found) => {
                tracing::warn!(
                    items = found.len(),
                    "schema drift allowed by --allow-drift; once this run commits, the live schema is the recorded one"
                );
                report.drift = found;
                report.schema_valid = false;
                Ok(true)
            }
            Verdict::Refused(found, error) => {
                report.drift = found;
                report.schema_valid = false;
                Err(error)
            }
        }
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
        segments::check_dry_run(&run.steps, run.dry_run)?;
        let query = self.catalog_query();
        let batch_options = BatchOptions {
            lock_timeout: self.settings.lock_timeout,
            statement_timeout: self.settings.statement_timeout,
            client: self.database.run_by.clone(),
        };
        let parts = segments::segments(&run.steps, !run.drop_first.is_empty());
        let mut setup = run.setup;
        let mut drop_first = &run.drop_first[..];
        for (number, part) in parts.iter().enumerate() {
            let last = number + 1 == parts.len();
            if part.alone {
                let step = run.steps[part.range.start];
                let schemas = &self.database.managed_schemas;
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
                    let check = drift_policy::check_expected(
                        expected,
                        &alone.catalog,
                        &report.drift,
                        run.allow_drift,
                    );
                    take_expected(report, check).map_err(|found| {
                        drift_error(
                            EXPECTED_REFERENCE,
                            "schema drift after the migrations",
                            &found,
                            "the last migration ran outside a transaction and stays applied; fix the conflicting objects with a new migration, or regenerate the snapshot if the migrations changed (slipway snapshot)",
                        )
                    })?;
                }
                executed.after = Some(alone.catalog);
                continue;
            }
            let steps = &run.steps[part.range.clone()];
            let batch = BatchSteps {
                steps,
                setup,
                drop_first,
                catalog_before: owned::catalog_before(steps, run.owned.is_some()),
            };
            let open = self
                .with_retries(|| history.run_batch(client, &batch, &batch_options, Some(&query)))
                .await?;
            let owned = owned::owned_after(
                !drop_first.is_empty(),
                run.owned.as_deref(),
                open.catalog_before.as_ref(),
                open.catalog.as_ref(),
            );
            setup = HistorySetup::Ready;
            drop_first = &[];
            // What ships is what CI tested: the schema the migrations
            // produced here, inside the still-open transaction, must be the
            // one they produced in CI. A pre-existing object that a
            // migration's IF NOT EXISTS skipped, or a hand-made change the
            // migrations did not touch, shows up here — and nothing of it
            // is committed.
            if let (true, Some(expected), Some(after)) = (last, &run.expected, &open.catalog) {
                let check =
                    drift_policy::check_expected(expected, after, &report.drift, run.allow_drift);
                if let Err(found) = take_expected(report, check) {
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
                    &self.database.run_by,
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

/// What the executor runs: the steps of an apply or a rollback as
/// decided, and what was read for them.
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

/// Put what the expected-snapshot comparison found into the report; `Err`
/// with the report's drift when it stops the run.
fn take_expected(
    report: &mut Report,
    check: ExpectedCheck,
) -> std::result::Result<(), Vec<DriftItem>> {
    match check {
        ExpectedCheck::Matches => Ok(()),
        ExpectedCheck::Allowed(drift) => {
            report.drift = drift;
            report.schema_valid = false;
            tracing::warn!("schema drift from the expected snapshot allowed by --allow-drift");
            Ok(())
        }
        ExpectedCheck::Refused(drift) => {
            report.drift = drift.clone();
            report.schema_valid = false;
            Err(drift)
        }
    }
}

/// Build the expected snapshot of `set`: apply every migration to a
/// throw-away database created on the server of `server` (whose own
/// database is used only to create and drop it), read the catalog of its
/// managed schemas, drop the database. What `slipway snapshot` writes to
/// `schema.snapshot.json`.
pub async fn build_expected_snapshot(set: &MigrationSet, server: &Database) -> Result<Snapshot> {
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

/// Seal a report: success or the error, and the wall time.
pub(crate) fn finish(mut report: Report, outcome: Result<()>, started: Instant) -> Report {
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
