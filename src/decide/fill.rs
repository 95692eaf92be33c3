//! What the report says about a plan and a run: the plan's current and
//! target versions, its pending, modified and unknown migrations, the steps
//! a run executed, what stays pending after it, and the drift items and
//! schema changes between two snapshots. Plain conversions into the
//! report's fields, kept in one place so that `validate`, `apply`,
//! `rollback` and `status` say the same thing the same way.

use crate::db::catalog::Snapshot;
use crate::decide::run::{Direction, RunRequest};
use crate::drift::{diff, DiffOptions, Difference};
use crate::error::Result;
use crate::migrations::{Migration, MigrationSet, Version};
use crate::plan::{plan, HistoryRow, Plan};
use crate::report::{
    AppliedMigration, ChecksumMismatchItem, DriftItem, PendingMigration, Report, SchemaChange,
    UnknownVersion,
};

/// Report items of differences.
pub fn items(differences: &[Difference]) -> Vec<DriftItem> {
    differences.iter().map(DriftItem::from).collect()
}

/// The schema changes between two catalogs of the same database.
pub fn changes(before: &Snapshot, after: &Snapshot) -> Vec<SchemaChange> {
    let same_database = DiffOptions {
        same_database: true,
    };
    diff(before, after, same_database)
        .iter()
        .map(SchemaChange::from)
        .collect()
}

/// A migration that has not run.
pub fn pending_item(m: &Migration) -> PendingMigration {
    PendingMigration {
        version: m.version_str().map(str::to_owned),
        description: m.description.clone(),
        script: m.script.clone(),
    }
}

/// A step that ran, in `duration_ms`.
pub fn done_item(m: &Migration, duration_ms: i64) -> AppliedMigration {
    AppliedMigration {
        version: m.version_str().map(str::to_owned),
        description: m.description.clone(),
        script: m.script.clone(),
        duration_ms,
    }
}

/// The report's fields from `plan`, made for `database`.
pub fn from_plan(report: &mut Report, database: &str, plan: &Plan) {
    report.database = Some(database.to_owned());
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

/// The report of a run before it changes anything: the plan it starts
/// from; a rollback's target is its `--to`, and its `rolled_back` list is
/// there, empty, also when the run stops early.
pub fn run_start(report: &mut Report, database: &str, plan: &Plan, direction: &Direction) {
    from_plan(report, database, plan);
    if let Direction::Rollback { to } = direction {
        report.target_version = Some(to.to_string());
        report.rolled_back = Some(Vec::new());
    }
    report.schema_valid = plan.is_clean();
}

/// The steps a run executed, `(index into steps, duration)`, into the
/// report — also when a later part failed. An apply lists what it
/// committed (a dry run committed nothing) and moves the current version
/// up to the highest one it applied; a rollback lists what it undid, a dry
/// run's too (ran, then undone).
pub fn done(
    report: &mut Report,
    request: &RunRequest,
    steps: &[&Migration],
    done: &[(usize, i64)],
    current: Option<&Version>,
) {
    let items = || -> Vec<AppliedMigration> {
        done.iter()
            .map(|&(index, ms)| done_item(steps[index], ms))
            .collect()
    };
    match request.direction {
        Direction::Apply { .. } => {
            if request.dry_run {
                return;
            }
            report.applied = items();
            if let Some(last) = done
                .iter()
                .filter_map(|&(index, _)| steps[index].version.as_ref())
                .max()
            {
                if current.is_none_or(|current| last > current) {
                    report.current_version = Some(last.to_string());
                }
            }
        }
        Direction::Rollback { .. } => report.rolled_back = Some(items()),
    }
}

/// The report after an apply committed: what stays pending (versions above
/// `--to`, and the repeatable scripts a run to `--to` leaves) out of what
/// the history `rows` it started from left pending.
pub fn after_apply(
    report: &mut Report,
    rows: &[HistoryRow],
    set: &MigrationSet,
    ran: &Plan,
) -> Result<()> {
    let everything = plan(rows, set, None)?;
    report.pending = everything
        .pending
        .iter()
        .filter(|m| !ran.pending.iter().any(|done| done.script == m.script))
        .map(|m| pending_item(m))
        .collect();
    report.schema_valid = report.pending.is_empty();
    Ok(())
}

/// The report after a rollback to `to` committed: the plan of the history
/// as it is now, in which the rolled-back versions and the repeatable
/// scripts are pending again.
pub fn after_rollback(report: &mut Report, database: &str, after: &Plan, to: &Version) {
    from_plan(report, database, after);
    report.target_version = Some(to.to_string());
    report.schema_valid = after.is_clean();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_data::{report, row, set, snapshot};

    const FILES: &[(&str, &str)] = &[
        ("0001_a.sql", "select 1;"),
        ("0001_a_rollback.sql", "select -1;"),
        ("0002_b.sql", "select 2;"),
        ("0002_b_rollback.sql", "select -2;"),
        ("0003_c.sql", "select 3;"),
        ("repeatable/v.sql", "select 'v';"),
    ];

    fn scripts(pending: &[PendingMigration]) -> Vec<&str> {
        pending.iter().map(|p| p.script.as_str()).collect()
    }

    fn version(text: &str) -> Version {
        Version::parse(text).expect("a test version")
    }

    #[test]
    fn the_plan_fills_the_report() {
        let set = set(FILES);
        let modified = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 'old';"),
            row(2, "versioned", Some("0000"), "0000_gone.sql", "x"),
        ];
        let applied = vec![row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;")];
        let to_0002 = version("0002");
        // (case, history, --to, current, target, pending, mismatches, unknown)
        type Case<'a> = (
            &'a str,
            Vec<HistoryRow>,
            Option<&'a Version>,
            Option<&'a str>,
            &'a str,
            Vec<&'a str>,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a new database",
                vec![],
                None,
                None,
                "0003",
                vec!["0001_a.sql", "0002_b.sql", "0003_c.sql", "repeatable/v.sql"],
                vec![],
                vec![],
            ),
            (
                "part applied, to a target",
                applied,
                Some(&to_0002),
                Some("0001"),
                "0002",
                vec!["0002_b.sql"],
                vec![],
                vec![],
            ),
            (
                "a modified file and an unknown version",
                modified,
                None,
                Some("0001"),
                "0003",
                vec!["0002_b.sql", "0003_c.sql", "repeatable/v.sql"],
                vec!["0001_a.sql"],
                vec!["0000"],
            ),
        ];
        for (case, history, target, current, to, pending, mismatches, unknown) in cases {
            let plan = plan(&history, &set, target).expect("the test history plans");
            let mut report = report();
            from_plan(&mut report, "tutor", &plan);
            assert_eq!(report.database.as_deref(), Some("tutor"), "{case}");
            assert_eq!(report.current_version.as_deref(), current, "{case}");
            assert_eq!(report.target_version.as_deref(), Some(to), "{case}");
            assert_eq!(scripts(&report.pending), pending, "{case}");
            let got: Vec<&str> = report
                .checksum_mismatches
                .iter()
                .map(|m| m.script.as_str())
                .collect();
            assert_eq!(got, mismatches, "{case}");
            for m in &report.checksum_mismatches {
                assert_eq!(m.file_checksum, crate::migrations::checksum("select 1;"));
                assert_eq!(
                    m.recorded_checksum,
                    crate::migrations::checksum("select 'old';")
                );
            }
            let got: Vec<&str> = report
                .unknown_versions
                .iter()
                .map(|u| u.version.as_str())
                .collect();
            assert_eq!(got, unknown, "{case}");
        }
    }

    #[test]
    fn a_run_starts_from_its_plan_and_a_rollback_from_its_target() {
        let set = set(FILES);
        let history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
        ];
        let plan = plan(&history, &set, None).expect("the test history plans");
        let cases = [
            ("apply", Direction::Apply { to: None }, "0003", None),
            (
                "rollback",
                Direction::Rollback {
                    to: version("0001"),
                },
                "0001",
                Some(0),
            ),
        ];
        for (case, direction, target, rolled_back) in cases {
            let mut report = report();
            run_start(&mut report, "tutor", &plan, &direction);
            assert_eq!(report.target_version.as_deref(), Some(target), "{case}");
            assert_eq!(report.rolled_back.map(|r| r.len()), rolled_back, "{case}");
            assert!(!report.schema_valid, "{case}: 0003 is pending");
            assert_eq!(
                scripts(&report.pending),
                ["0003_c.sql", "repeatable/v.sql"],
                "{case}"
            );
        }
    }

    #[test]
    fn the_steps_done_go_to_applied_or_rolled_back() {
        let set = set(FILES);
        let versioned = set.versioned();
        let forward: Vec<&Migration> = vec![&versioned[1], &versioned[2], &set.repeatable()[0]];
        let backward: Vec<Migration> = [&versioned[1], &versioned[0]]
            .iter()
            .filter_map(|m| m.rollback_step())
            .collect();
        let backward: Vec<&Migration> = backward.iter().collect();
        let apply = |dry_run| RunRequest {
            direction: Direction::Apply { to: None },
            dry_run,
            allow_drift: false,
        };
        let rollback = |dry_run| RunRequest {
            direction: Direction::Rollback { to: version("0") },
            dry_run,
            allow_drift: false,
        };
        let v1 = version("0001");
        let v5 = version("0005");
        // (case, request, steps, done, current before, applied, rolled back, current after)
        type Case<'a> = (
            &'a str,
            RunRequest,
            &'a [&'a Migration],
            Vec<(usize, i64)>,
            Option<&'a Version>,
            Vec<&'a str>,
            Option<Vec<&'a str>>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "apply: what committed, the current version moves up",
                apply(false),
                &forward,
                vec![(0, 5), (1, 6), (2, 7)],
                Some(&v1),
                vec!["0002_b.sql", "0003_c.sql", "repeatable/v.sql"],
                None,
                Some("0003"),
            ),
            (
                "apply: a later part failed",
                apply(false),
                &forward,
                vec![(0, 5)],
                Some(&v1),
                vec!["0002_b.sql"],
                None,
                Some("0002"),
            ),
            (
                "apply: only a repeatable script, the version stays",
                apply(false),
                &forward,
                vec![(2, 7)],
                Some(&v1),
                vec!["repeatable/v.sql"],
                None,
                Some("0001"),
            ),
            (
                "apply: an out-of-order version below the current one",
                apply(false),
                &forward,
                vec![(0, 5)],
                Some(&v5),
                vec!["0002_b.sql"],
                None,
                Some("0005"),
            ),
            (
                "apply, dry run: nothing committed",
                apply(true),
                &forward,
                vec![(0, 5), (1, 6)],
                Some(&v1),
                vec![],
                None,
                Some("0001"),
            ),
            (
                "rollback: what it undid, newest first",
                rollback(false),
                &backward,
                vec![(0, 3), (1, 4)],
                Some(&v1),
                vec![],
                Some(vec!["0002_b_rollback.sql", "0001_a_rollback.sql"]),
                Some("0001"),
            ),
            (
                "rollback, dry run: what ran and was undone",
                rollback(true),
                &backward,
                vec![(0, 3)],
                Some(&v1),
                vec![],
                Some(vec!["0002_b_rollback.sql"]),
                Some("0001"),
            ),
        ];
        for (case, request, steps, ran, current, applied, rolled_back, after) in cases {
            let mut report = report();
            report.current_version = current.map(ToString::to_string);
            done(&mut report, &request, steps, &ran, current);
            let got: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
            assert_eq!(got, applied, "{case}");
            let got: Option<Vec<&str>> = report
                .rolled_back
                .as_ref()
                .map(|r| r.iter().map(|a| a.script.as_str()).collect());
            assert_eq!(got, rolled_back, "{case}");
            assert_eq!(report.current_version.as_deref(), after, "{case}");
            for (item, &(index, ms)) in report.applied.iter().zip(&ran) {
                assert_eq!(item.duration_ms, ms, "{case}");
                assert_eq!(
                    item.version.as_deref(),
                    steps[index].version_str(),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn after_an_apply_only_what_it_did_not_run_stays_pending() {
        let set = set(FILES);
        let to_0002 = version("0002");
        let cases: [(&str, Option<&Version>, &[&str]); 2] = [
            ("to the latest", None, &[]),
            (
                "to 0002",
                Some(&to_0002),
                &["0003_c.sql", "repeatable/v.sql"],
            ),
        ];
        for (case, target, still) in cases {
            let ran = plan(&[], &set, target).expect("the test history plans");
            let mut report = report();
            after_apply(&mut report, &[], &set, &ran).expect("the history plans");
            assert_eq!(scripts(&report.pending), still, "{case}");
            assert_eq!(report.schema_valid, still.is_empty(), "{case}");
        }
    }

    #[test]
    fn after_a_rollback_its_versions_are_pending_again() {
        let set = set(FILES);
        let history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
            row(
                3,
                "rollback",
                Some("0002"),
                "0002_b_rollback.sql",
                "select -2;",
            ),
        ];
        let after = plan(&history, &set, None).expect("the test history plans");
        let mut report = report();
        after_rollback(&mut report, "tutor", &after, &version("0001"));
        assert_eq!(report.current_version.as_deref(), Some("0001"));
        assert_eq!(report.target_version.as_deref(), Some("0001"));
        assert_eq!(
            scripts(&report.pending),
            ["0002_b.sql", "0003_c.sql", "repeatable/v.sql"]
        );
        assert!(!report.schema_valid);
    }

    #[test]
    fn snapshots_become_drift_items_and_schema_changes() {
        let before = snapshot("{}");
        let after = snapshot(r#"{"public.t":{"kind":"table","owner":"o"}}"#);
        let drift = items(&diff(&before, &after, DiffOptions::default()));
        assert_eq!(drift.len(), 1);
        let json = serde_json::to_value(&drift[0]).expect("a drift item serialises");
        assert_eq!(json["kind"], "extra_table");
        assert_eq!(json["object"], "public.t");
        let made = changes(&before, &after);
        assert_eq!(made.len(), 1);
        let json = serde_json::to_value(&made[0]).expect("a change serialises");
        assert_eq!(json["change"], "create");
        assert_eq!(json["object_type"], "table");
        assert!(changes(&after, &after).is_empty());
    }
}
