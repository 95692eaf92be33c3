//! The rows of `slipway status`: every migration file and every applied
//! version no file describes, each with its state and, when it ran, when,
//! by whom and how long.

use crate::migrations::{Migration, MigrationSet, Version};
use crate::plan::{HistoryKind, HistoryRow, Plan};
use crate::report::{MigrationState, MigrationStatus};

/// One row per versioned file, then per repeatable script, then per
/// unknown version. A file is `pending` (also when its last run no longer
/// counts: rolled back, or a repeatable script changed since), `modified`
/// (applied, but the file changed since), `applied`, and an applied
/// version without a file `unknown`.
pub fn status_rows(set: &MigrationSet, rows: &[HistoryRow], plan: &Plan) -> Vec<MigrationStatus> {
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
    use crate::decide::test_data::{row, set};
    use crate::plan::plan;

    const FILES: &[(&str, &str)] = &[
        ("0001_a.sql", "select 1;"),
        ("0002_b.sql", "select 2;"),
        ("repeatable/v.sql", "select 'v';"),
    ];

    /// `(script, state, applied_at)` of each row, read from its JSON: what
    /// the report prints.
    fn states(rows: &[MigrationStatus]) -> Vec<(String, String, Option<String>)> {
        rows.iter()
            .map(|r| {
                let json = serde_json::to_value(r).expect("a status row serialises");
                (
                    json["script"].as_str().unwrap_or_default().to_owned(),
                    json["state"].as_str().unwrap_or_default().to_owned(),
                    json["applied_at"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    fn s(script: &str, state: &str, at: Option<&str>) -> (String, String, Option<String>) {
        (script.to_owned(), state.to_owned(), at.map(str::to_owned))
    }

    #[test]
    fn each_migration_has_its_state() {
        let set = set(FILES);
        let v1 = row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;");
        let v2 = row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;");
        let r3 = row(3, "repeatable", None, "repeatable/v.sql", "select 'v';");
        let cases: Vec<(&str, Vec<HistoryRow>, Vec<_>)> = vec![
            (
                "pending: nothing ran",
                vec![],
                vec![
                    s("0001_a.sql", "pending", None),
                    s("0002_b.sql", "pending", None),
                    s("repeatable/v.sql", "pending", None),
                ],
            ),
            (
                "applied",
                vec![v1.clone(), v2.clone(), r3.clone()],
                vec![
                    s("0001_a.sql", "applied", Some("at 1")),
                    s("0002_b.sql", "applied", Some("at 2")),
                    s("repeatable/v.sql", "applied", Some("at 3")),
                ],
            ),
            (
                "modified: the file changed since it ran",
                vec![
                    row(1, "versioned", Some("0001"), "0001_a.sql", "select 'old';"),
                    v2.clone(),
                    r3.clone(),
                ],
                vec![
                    s("0001_a.sql", "modified", Some("at 1")),
                    s("0002_b.sql", "applied", Some("at 2")),
                    s("repeatable/v.sql", "applied", Some("at 3")),
                ],
            ),
            (
                "a changed repeatable script is pending, with its last run",
                vec![
                    v1.clone(),
                    v2.clone(),
                    row(3, "repeatable", None, "repeatable/v.sql", "select 'old';"),
                ],
                vec![
                    s("0001_a.sql", "applied", Some("at 1")),
                    s("0002_b.sql", "applied", Some("at 2")),
                    s("repeatable/v.sql", "pending", Some("at 3")),
                ],
            ),
            (
                "unknown: applied, no file",
                vec![
                    v1.clone(),
                    v2.clone(),
                    r3.clone(),
                    // Below the latest file: above it, the plan asks for a
                    // rollback instead.
                    row(4, "versioned", Some("0000"), "0000_gone.sql", "x"),
                ],
                vec![
                    s("0001_a.sql", "applied", Some("at 1")),
                    s("0002_b.sql", "applied", Some("at 2")),
                    s("repeatable/v.sql", "applied", Some("at 3")),
                    s("", "unknown", None),
                ],
            ),
            (
                "rolled back: pending again, the repeatable script too",
                vec![
                    v1.clone(),
                    v2.clone(),
                    r3.clone(),
                    row(4, "rollback", Some("0002"), "0002_b_rollback.sql", "x"),
                ],
                vec![
                    s("0001_a.sql", "applied", Some("at 1")),
                    s("0002_b.sql", "pending", None),
                    s("repeatable/v.sql", "pending", Some("at 3")),
                ],
            ),
            (
                "applied again after a rollback: the newer run",
                vec![
                    v1.clone(),
                    v2,
                    r3,
                    row(4, "rollback", Some("0002"), "0002_b_rollback.sql", "x"),
                    row(5, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
                    row(6, "repeatable", None, "repeatable/v.sql", "select 'v';"),
                ],
                vec![
                    s("0001_a.sql", "applied", Some("at 1")),
                    s("0002_b.sql", "applied", Some("at 5")),
                    s("repeatable/v.sql", "applied", Some("at 6")),
                ],
            ),
        ];
        for (case, history, expected) in cases {
            let plan = plan(&history, &set, None).expect("the test history plans");
            assert_eq!(
                states(&status_rows(&set, &history, &plan)),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn a_row_says_who_ran_it_and_for_how_long() {
        let set = set(FILES);
        let history = vec![row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;")];
        let planned = plan(&history, &set, None).expect("the test history plans");
        let rows = status_rows(&set, &history, &planned);
        let json = serde_json::to_value(&rows[0]).expect("a status row serialises");
        assert_eq!(json["version"], "0001");
        assert_eq!(json["description"], "a");
        assert_eq!(json["applied_by"], "migrator (cli:test)");
        assert_eq!(json["duration_ms"], 10);
        let unknown = vec![row(1, "versioned", Some("0009"), "0009_gone.sql", "x")];
        let planned = plan(&unknown, &set, None).expect("the test history plans");
        let rows = status_rows(&set, &unknown, &planned);
        let json = serde_json::to_value(rows.last()).expect("a status row serialises");
        assert_eq!(json["version"], "0009");
        assert_eq!(json["description"], "0009_gone.sql");
        assert_eq!(json["duration_ms"], serde_json::Value::Null);
    }
}
