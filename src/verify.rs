//! `slipway verify`: prove that every migration's rollback script really
//! undoes it, before production ever needs it.
//!
//! On a throw-away database, for each versioned migration in order: read the
//! catalog, apply the migration, read it again, roll it back, compare with
//! the first reading, apply it again, compare with the second. A rollback
//! that forgets an index, or a migration that does not rebuild the same
//! schema the second time, is named with the drift items that differ. The
//! comparison is the drift check's ([`crate::drift`]), on snapshots of the
//! same database, so owners and grants count too.
//!
//! The steps go through [`Migrator`], the code a deploy runs: the round trip
//! tests the same transactions, history rows and repeatable handling.

use std::time::Instant;

use crate::action::Action;
use crate::connect::connect;
use crate::db::catalog::Snapshot;
use crate::db::with_scratch_database;
use crate::drift::{diff, Change, DiffOptions, Difference};
use crate::engine::{ApplyOptions, Database, Migrator, RollbackOptions, Settings};
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::report::{DriftItem, Report, VerifyStep};

/// Run the round trip of every migration of `set` on a database created
/// for it on the server of `server` (whose own database is used only to
/// create and drop it; PostgreSQL 13+, `CREATEDB` needed).
pub async fn verify(set: &MigrationSet, server: &Database, settings: &Settings) -> Report {
    let started = Instant::now();
    let mut report = Report::new(Action::Verify, false);
    let outcome = verify_into(set, server, settings, &mut report).await;
    if let Err(error) = outcome {
        report.fail(&error);
    } else if report.error.is_none() {
        report.success = true;
        report.schema_valid = true;
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

async fn verify_into(
    set: &MigrationSet,
    server: &Database,
    settings: &Settings,
    report: &mut Report,
) -> Result<()> {
    let admin = connect(&server.connect).await?;
    with_scratch_database(&admin, "slipway_verify", |name| async move {
        let mut target = server.clone();
        target.connect.config.dbname(&name);
        report.database = Some(name);
        // The committed expected snapshot is `slipway snapshot --check`'s
        // business; here only the round trips count.
        let migrator = Migrator::new(
            set.clone().without_expected_snapshot(),
            target,
            settings.clone(),
        );
        round_trips(&migrator, report).await
    })
    .await
}

async fn round_trips(migrator: &Migrator, report: &mut Report) -> Result<()> {
    let mut steps = Vec::new();
    let mut previous = "0".to_owned();
    let mut failures = Vec::new();
    let versioned = migrator.migrations().versioned().to_vec();
    for migration in &versioned {
        let Some(version) = migration.version_str().map(str::to_owned) else {
            continue;
        };
        let mut step = VerifyStep {
            version: version.clone(),
            script: migration.script.clone(),
            rollback_script: migration.rollback.as_ref().map(|r| r.script.clone()),
            ok: true,
            problems: Vec::new(),
            rollback_drift: Vec::new(),
            reapply_drift: Vec::new(),
        };
        let apply = ApplyOptions {
            to: Some(version.clone()),
            ..ApplyOptions::default()
        };
        let before = migrator.snapshot().await?;
        if let Some(sub) = failed(migrator.apply(&apply).await) {
            step.ok = false;
            step.problems
                .push(format!("{version} apply failed: {}", message(&sub)));
            return stop(report, steps, step, sub, failures);
        }
        let applied = migrator.snapshot().await?;
        if migration.rollback.is_none() {
            step.ok = false;
            step.problems.push(format!(
                "{version} has no rollback script ({}_rollback.sql)",
                migration
                    .script
                    .strip_suffix(".sql")
                    .unwrap_or(&migration.script)
            ));
            failures.push(step.problems[0].clone());
            steps.push(step);
            previous = version;
            continue;
        }
        let rollback = RollbackOptions {
            to: previous.clone(),
            ..RollbackOptions::default()
        };
        if let Some(sub) = failed(migrator.rollback(&rollback).await) {
            step.ok = false;
            step.problems
                .push(format!("{version} rollback failed: {}", message(&sub)));
            return stop(report, steps, step, sub, failures);
        }
        let rolled_back = migrator.snapshot().await?;
        let found = compare(&before, &rolled_back);
        step.problems
            .extend(found.iter().map(|d| sentence(&version, Pass::Rollback, d)));
        step.rollback_drift = found.iter().map(DriftItem::from).collect();
        if let Some(sub) = failed(migrator.apply(&apply).await) {
            step.ok = false;
            step.problems
                .push(format!("{version} re-apply failed: {}", message(&sub)));
            return stop(report, steps, step, sub, failures);
        }
        let reapplied = migrator.snapshot().await?;
        let found = compare(&applied, &reapplied);
        step.problems
            .extend(found.iter().map(|d| sentence(&version, Pass::Reapply, d)));
        step.reapply_drift = found.iter().map(DriftItem::from).collect();
        step.ok = step.problems.is_empty();
        failures.extend(step.problems.iter().cloned());
        steps.push(step);
        previous = version;
    }
    report.verify = Some(steps);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(round_trip_error(&failures))
    }
}

/// The error of a verify whose round trips found differences.
fn round_trip_error(failures: &[String]) -> Error {
    let mut summary = failures
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if failures.len() > 3 {
        summary.push_str("; ...");
    }
    Error::Drift {
        reference: "the schemas the migrations build".into(),
        context: "verify".into(),
        count: failures.len(),
        summary,
        next: "fix the rollback scripts (or migrations) named above; `slipway verify` tries them again".into(),
    }
}

/// A sub-run's report when it failed.
fn failed(report: Report) -> Option<Report> {
    (!report.success).then_some(report)
}

/// End the round trips at a step that failed to run: the database state is
/// no longer the one the next migration expects. When differences came
/// before (a rollback that left an object makes the re-apply fail), they
/// are the cause and the error names them; else the run's own error.
fn stop(
    report: &mut Report,
    mut steps: Vec<VerifyStep>,
    step: VerifyStep,
    sub: Report,
    mut failures: Vec<String>,
) -> Result<()> {
    let found_before = !failures.is_empty() || step.problems.len() > 1;
    failures.extend(step.problems.iter().cloned());
    steps.push(step);
    report.verify = Some(steps);
    if found_before {
        return Err(round_trip_error(&failures));
    }
    report.success = false;
    report.error = sub.error;
    Ok(())
}

/// The error message of a failed sub-run.
fn message(report: &Report) -> String {
    report
        .error
        .as_ref()
        .map_or_else(|| "failed".to_owned(), |e| e.message.clone())
}

fn compare(expected: &Snapshot, actual: &Snapshot) -> Vec<Difference> {
    diff(
        expected,
        actual,
        DiffOptions {
            same_database: true,
        },
    )
}

/// Which comparison a difference comes from.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// After the rollback, against the schema before the migration.
    Rollback,
    /// After the re-apply, against the schema after the first apply.
    Reapply,
}

/// `0004 rollback leaves index public.quiz_sessions.quiz_sessions_level_idx`.
fn sentence(version: &str, pass: Pass, d: &Difference) -> String {
    let (what, object) = (d.object_type, &d.object);
    match (pass, d.kind.change()) {
        (Pass::Rollback, Change::Extra) => format!("{version} rollback leaves {what} {object}"),
        (Pass::Rollback, Change::Missing) => {
            format!("{version} rollback removes {what} {object}, which was there before {version}")
        }
        (Pass::Reapply, Change::Extra) => {
            format!("{version} re-apply creates {what} {object}, which the first apply did not")
        }
        (Pass::Reapply, Change::Missing) => {
            format!("{version} re-apply does not create {what} {object}, which the first apply did")
        }
        (pass, Change::Changed) => format!(
            "{version} {} changes {what} {object} ({}): {} → {}",
            match pass {
                Pass::Rollback => "rollback",
                Pass::Reapply => "re-apply",
            },
            d.kind.as_str(),
            d.expected.as_deref().unwrap_or("none"),
            d.actual.as_deref().unwrap_or("none")
        ),
    }
}
