//! What a rollback undoes: the applied versions above its target, newest
//! first, each through its `_rollback.sql` script — or why it refuses
//! before anything runs (a target that is not applied, missing scripts).

use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationSet, Version};
use crate::plan::Plan;

/// `slipway rollback --to`: a version, `0` for everything.
pub fn parse_target(to: &str) -> Result<Version> {
    Version::parse(to.trim()).ok_or_else(|| {
        Error::Config(format!(
            "rollback target '{to}' is not a version like 0003 (0 rolls back everything)"
        ))
    })
}

/// The migrations a rollback to `to` undoes, newest first: each script
/// undoes its migration on the schema that the migrations after it have
/// already been removed from. Empty when nothing is applied above `to`.
///
/// Only versioned migrations still in effect count: a repeatable script
/// is not undone (a rollback drops what the repeatables created instead),
/// and a version an earlier rollback undid is not undone twice.
pub fn undo<'a>(
    to: &Version,
    plan: &Plan<'_>,
    set: &'a MigrationSet,
) -> Result<Vec<&'a Migration>> {
    let everything = to.as_str().bytes().all(|b| b == b'0');
    let applied: Vec<Version> = plan
        .applied
        .iter()
        .filter_map(|row| row.version.as_deref().and_then(Version::parse))
        .collect();
    if !everything && !applied.contains(to) {
        return Err(Error::Config(match set.find(to) {
            None => format!("rollback target {to} is not among the migration files"),
            Some(_) => format!(
                "version {to} is not applied (current version {}); roll back to an applied version, or to 0 for everything",
                plan.current.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string)
            ),
        }));
    }
    let undo: Vec<&Migration> = applied
        .iter()
        .rev()
        // `--to 0` undoes everything, a version 0 migration included.
        .filter(|v| everything || *v > to)
        .filter_map(|v| set.find(v))
        .collect();
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
    Ok(undo)
}

/// The steps that undo `undo`, in its order: each one's rollback script,
/// run and recorded (kind `rollback`) like a migration.
pub fn steps(undo: &[&Migration]) -> Vec<Migration> {
    undo.iter().filter_map(|m| m.rollback_step()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_data::{row, set};
    use crate::migrations::MigrationKind;
    use crate::plan::{plan, HistoryRow};

    const FILES: &[(&str, &str)] = &[
        ("0000_init.sql", "select 0;"),
        ("0000_init_rollback.sql", "select -0;"),
        ("0001_a.sql", "select 1;"),
        ("0001_a_rollback.sql", "select -1;"),
        ("0002_b.sql", "select 2;"),
        ("0002_b_rollback.sql", "select -2;"),
        ("0003_c.sql", "select 3;"),
        ("0003_c_rollback.sql", "select -3;"),
        ("0004_d.sql", "select 4;"),
        ("repeatable/v.sql", "select 'v';"),
    ];

    fn applied(versions: &[(&str, &str, &str)]) -> Vec<HistoryRow> {
        versions
            .iter()
            .zip(1..)
            .map(|((version, script, sql), id)| row(id, "versioned", Some(version), script, sql))
            .collect()
    }

    /// 0000 to 0003 applied, then the repeatable script.
    fn through_0003() -> Vec<HistoryRow> {
        let mut rows = applied(&[
            ("0000", "0000_init.sql", "select 0;"),
            ("0001", "0001_a.sql", "select 1;"),
            ("0002", "0002_b.sql", "select 2;"),
            ("0003", "0003_c.sql", "select 3;"),
        ]);
        rows.push(row(
            5,
            "repeatable",
            None,
            "repeatable/v.sql",
            "select 'v';",
        ));
        rows
    }

    enum Expect {
        Undo(&'static [&'static str]),
        Config(&'static str),
        Missing(&'static [&'static str], &'static [&'static str]),
    }

    #[test]
    fn a_rollback_undoes_the_versions_above_its_target_newest_first() {
        let set = set(FILES);
        let mut rolled_back = through_0003();
        rolled_back.push(row(
            6,
            "rollback",
            Some("0003"),
            "0003_c_rollback.sql",
            "select -3;",
        ));
        let mut through_0004 = through_0003();
        through_0004.push(row(6, "versioned", Some("0004"), "0004_d.sql", "select 4;"));
        let cases: Vec<(&str, Vec<HistoryRow>, &str, Expect)> = vec![
            (
                "to below current",
                through_0003(),
                "0001",
                Expect::Undo(&["0003", "0002"]),
            ),
            (
                "to equal current",
                through_0003(),
                "0003",
                Expect::Undo(&[]),
            ),
            (
                "to 0 undoes everything, version 0 included",
                through_0003(),
                "0",
                Expect::Undo(&["0003", "0002", "0001", "0000"]),
            ),
            (
                "to 0000 is everything too",
                through_0003(),
                "0000",
                Expect::Undo(&["0003", "0002", "0001", "0000"]),
            ),
            (
                "to 0 on an empty history",
                Vec::new(),
                "0",
                Expect::Undo(&[]),
            ),
            (
                "to above current",
                through_0003(),
                "0004",
                Expect::Config("version 0004 is not applied (current version 0003)"),
            ),
            (
                "to a version no file has",
                through_0003(),
                "0009",
                Expect::Config("rollback target 0009 is not among the migration files"),
            ),
            (
                "to a version on an empty history",
                Vec::new(),
                "0001",
                Expect::Config("version 0001 is not applied (current version none)"),
            ),
            (
                "an already rolled-back version is not undone again",
                rolled_back.clone(),
                "0001",
                Expect::Undo(&["0002"]),
            ),
            (
                "to a rolled-back version",
                rolled_back,
                "0003",
                Expect::Config("version 0003 is not applied (current version 0002)"),
            ),
            (
                "a missing rollback script",
                through_0004,
                "0002",
                Expect::Missing(&["0004"], &["0004_d_rollback.sql"]),
            ),
        ];
        for (case, history, to, expect) in cases {
            let plan = plan(&history, &set, None).expect("the test history plans");
            let to = parse_target(to).expect("the test target parses");
            match (undo(&to, &plan, &set), expect) {
                (Ok(undo), Expect::Undo(versions)) => {
                    let got: Vec<&str> = undo.iter().filter_map(|m| m.version_str()).collect();
                    assert_eq!(got, versions, "{case}");
                    let steps = steps(&undo);
                    assert_eq!(steps.len(), undo.len(), "{case}");
                    for (step, migration) in steps.iter().zip(&undo) {
                        assert_eq!(step.kind, MigrationKind::Rollback, "{case}");
                        assert_eq!(step.version_str(), migration.version_str(), "{case}");
                        assert_eq!(
                            step.script,
                            migration.script.replace(".sql", "_rollback.sql"),
                            "{case}"
                        );
                    }
                }
                (Err(Error::Config(message)), Expect::Config(start)) => {
                    assert!(message.starts_with(start), "{case}: {message}");
                }
                (Err(Error::RollbackMissing { versions, files }), Expect::Missing(v, f)) => {
                    assert_eq!(versions, v, "{case}");
                    assert_eq!(files, f, "{case}");
                }
                (outcome, _) => panic!("{case}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn a_repeatable_script_is_never_a_rollback_step() {
        let set = set(FILES);
        let history = through_0003();
        let plan = plan(&history, &set, None).expect("the test history plans");
        let undo = undo(&Version::parse("0").expect("0 parses"), &plan, &set)
            .expect("everything can be undone");
        assert!(undo.iter().all(|m| m.kind == MigrationKind::Versioned));
        assert!(steps(&undo)
            .iter()
            .all(|m| !m.script.starts_with("repeatable/")));
    }

    #[test]
    fn the_target_is_a_version_or_a_config_error() {
        for (to, parsed) in [
            ("0003", Some("0003")),
            (" 3 ", Some("3")),
            ("0", Some("0")),
            ("", None),
            ("v3", None),
            ("-1", None),
        ] {
            match (parse_target(to), parsed) {
                (Ok(version), Some(text)) => assert_eq!(version.as_str(), text, "{to:?}"),
                (Err(Error::Config(message)), None) => {
                    assert!(message.contains(&format!("'{to}'")), "{to:?}: {message}");
                }
                (outcome, _) => panic!("{to:?}: {outcome:?}"),
            }
        }
    }
}
