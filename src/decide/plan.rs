//! Deciding what to do, without a database: given the history rows and the
//! migration set, which migrations are pending, which applied ones were
//! modified, and which applied versions the files no longer know.
//!
//! Kept pure so every rule (missing, modified, unknown, out of order, target)
//! is a unit test rather than a database test — the shape of refinery's
//! `verify_migrations` and sqlx's `validate_applied_migrations`.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationSet, Version};

// The rows the history seam reads; named here too, where the plan reads
// them.
pub use crate::db::{HistoryKind, HistoryRow};

impl fmt::Display for HistoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An applied migration whose file changed since it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumMismatch {
    pub version: String,
    pub script: String,
    pub recorded: String,
    pub current: String,
}

/// What validate reports and apply acts on.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// Highest applied versioned migration (after rollbacks).
    pub current: Option<Version>,
    /// The version apply would stop at: `--to`, else the latest file.
    pub target: Option<Version>,
    /// Versioned migrations to run, in order, then changed repeatable scripts.
    pub pending: Vec<&'a Migration>,
    pub checksum_mismatches: Vec<ChecksumMismatch>,
    /// Applied versions that no file describes, with their recorded description.
    pub unknown_versions: Vec<(String, String)>,
    /// Applied versioned migrations still in effect, in version order.
    pub applied: Vec<&'a HistoryRow>,
}

impl Plan<'_> {
    /// True when nothing is pending and the history agrees with the files.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty()
            && self.checksum_mismatches.is_empty()
            && self.unknown_versions.is_empty()
    }

    /// Refuse to apply on top of a history that disagrees with the files.
    pub fn check_applicable(&self) -> Result<()> {
        if !self.checksum_mismatches.is_empty() {
            return Err(Error::ChecksumMismatch(
                self.checksum_mismatches
                    .iter()
                    .map(|m| m.script.clone())
                    .collect(),
            ));
        }
        if !self.unknown_versions.is_empty() {
            return Err(Error::UnknownVersion(
                self.unknown_versions
                    .iter()
                    .map(|(v, _)| v.clone())
                    .collect(),
            ));
        }
        Ok(())
    }
}

/// Compare the history with the migration set.
///
/// `target` limits pending versioned migrations to those at or below it, and
/// leaves repeatable scripts for a run that goes to the latest version (they
/// are written against the final schema).
pub fn plan<'a>(
    history: &'a [HistoryRow],
    set: &'a MigrationSet,
    target: Option<&Version>,
) -> Result<Plan<'a>> {
    let mut applied: BTreeMap<Version, &HistoryRow> = BTreeMap::new();
    let mut baseline: Option<Version> = None;
    let mut repeatable_checksums: BTreeMap<&str, &str> = BTreeMap::new();

    for row in history {
        let version = row.version.as_deref().and_then(Version::parse);
        match (&row.kind, version) {
            (HistoryKind::Versioned, Some(v)) => {
                applied.insert(v, row);
            }
            (HistoryKind::Rollback, Some(v)) => {
                applied.remove(&v);
                // Repeatable scripts are written against the latest schema:
                // a rollback drops what they created, so they run again at
                // the next apply to the latest version.
                repeatable_checksums.clear();
            }
            (HistoryKind::Baseline, Some(v)) => {
                baseline = Some(v);
            }
            (HistoryKind::Repeatable, _) => {
                repeatable_checksums.insert(row.script.as_str(), row.checksum.as_str());
            }
            _ => {
                return Err(Error::Internal(format!(
                    "history row {} has kind '{}' and version {:?}, which slipway does not understand; was the history table edited by hand?",
                    row.id, row.kind, row.version
                )))
            }
        }
    }

    if let Some(target) = target {
        if set.find(target).is_none() {
            return Err(Error::Config(format!(
                "target version {target} is not among the migration files"
            )));
        }
    }
    let latest = set.latest_version().cloned();
    let target = target.cloned().or_else(|| latest.clone());
    let to_latest = target == latest;

    let mut pending = Vec::new();
    let mut checksum_mismatches = Vec::new();
    for migration in set.versioned() {
        let Some(version) = &migration.version else {
            continue;
        };
        if baseline.as_ref().is_some_and(|b| version <= b) {
            continue;
        }
        match applied.get(version) {
            Some(row) if row.checksum != migration.checksum => {
                checksum_mismatches.push(ChecksumMismatch {
                    version: version.to_string(),
                    script: migration.script.clone(),
                    recorded: row.checksum.clone(),
                    current: migration.checksum.clone(),
                })
            }
            Some(_) => {}
            None if target.as_ref().is_some_and(|t| version <= t) => pending.push(migration),
            None => {}
        }
    }

    let unknown_versions = applied
        .iter()
        .filter(|(version, _)| set.find(version).is_none())
        .map(|(version, row)| (version.to_string(), row.description.clone()))
        .collect();

    let current = applied.keys().next_back().cloned();
    if let (Some(target), Some(current)) = (&target, &current) {
        if target < current && pending.is_empty() {
            return Err(Error::Config(format!(
                "target version {target} is below the current version {current}; use `slipway rollback --to {target}` to go back"
            )));
        }
    }

    if to_latest {
        for script in set.repeatable() {
            if repeatable_checksums.get(script.script.as_str()) != Some(&script.checksum.as_str()) {
                pending.push(script);
            }
        }
    }

    Ok(Plan {
        current,
        target,
        pending,
        checksum_mismatches,
        unknown_versions,
        applied: applied.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{checksum, SourceFile};

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(files.iter().map(|(p, c)| SourceFile {
            path: (*p).to_owned(),
            contents: c.as_bytes().to_vec().into(),
        }))
        .unwrap()
    }

    fn row(id: i64, kind: &str, version: Option<&str>, script: &str, sql: &str) -> HistoryRow {
        HistoryRow {
            id,
            version: version.map(str::to_owned),
            description: script.to_owned(),
            kind: HistoryKind::parse(kind),
            script: script.to_owned(),
            checksum: checksum(sql),
            applied_at: String::new(),
            applied_by: String::new(),
            client: String::new(),
            execution_ms: 0,
        }
    }

    fn versions(plan: &Plan) -> Vec<String> {
        plan.pending.iter().map(|m| m.script.clone()).collect()
    }

    const FILES: &[(&str, &str)] = &[
        ("0001_a.sql", "select 1;"),
        ("0002_b.sql", "select 2;"),
        ("0003_c.sql", "select 3;"),
        ("repeatable/v.sql", "select 'v';"),
    ];

    #[test]
    fn empty_history_has_everything_pending() {
        let set = set(FILES);
        let plan = plan(&[], &set, None).unwrap();
        assert_eq!(
            versions(&plan),
            ["0001_a.sql", "0002_b.sql", "0003_c.sql", "repeatable/v.sql"]
        );
        assert_eq!(plan.current, None);
        assert_eq!(plan.target.as_ref().unwrap().as_str(), "0003");
        assert!(!plan.is_clean());
    }

    #[test]
    fn up_to_date_history_is_clean() {
        let set = set(FILES);
        let history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
            row(3, "versioned", Some("0003"), "0003_c.sql", "select 3;"),
            row(4, "repeatable", None, "repeatable/v.sql", "select 'v';"),
        ];
        let plan = plan(&history, &set, None).unwrap();
        assert!(plan.is_clean(), "{plan:?}");
        assert_eq!(plan.current.as_ref().unwrap().as_str(), "0003");
        plan.check_applicable().unwrap();
    }

    #[test]
    fn modified_file_is_a_mismatch() {
        let set = set(FILES);
        let history = vec![row(
            1,
            "versioned",
            Some("0001"),
            "0001_a.sql",
            "select 'old';",
        )];
        let plan = plan(&history, &set, None).unwrap();
        assert_eq!(plan.checksum_mismatches.len(), 1);
        assert_eq!(plan.checksum_mismatches[0].version, "0001");
        let err = plan.check_applicable().unwrap_err();
        assert_eq!(err.code().as_str(), "checksum_mismatch");
    }

    #[test]
    fn applied_version_missing_from_files_is_unknown() {
        let set = set(FILES);
        let history = vec![row(1, "versioned", Some("0009"), "0009_gone.sql", "x")];
        let plan = plan(&history, &set, None).unwrap();
        assert_eq!(
            plan.unknown_versions,
            [("0009".to_owned(), "0009_gone.sql".to_owned())]
        );
        assert_eq!(
            plan.check_applicable().unwrap_err().code().as_str(),
            "unknown_version"
        );
    }

    #[test]
    fn out_of_order_migration_is_still_pending() {
        let set = set(FILES);
        let history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0003"), "0003_c.sql", "select 3;"),
        ];
        let plan = plan(&history, &set, None).unwrap();
        assert_eq!(versions(&plan), ["0002_b.sql", "repeatable/v.sql"]);
    }

    #[test]
    fn target_stops_early_and_skips_repeatables() {
        let set = set(FILES);
        let target = Version::parse("2").unwrap();
        let plan = plan(&[], &set, Some(&target)).unwrap();
        assert_eq!(versions(&plan), ["0001_a.sql", "0002_b.sql"]);
        let missing = Version::parse("7").unwrap();
        assert_eq!(
            super::plan(&[], &set, Some(&missing))
                .unwrap_err()
                .code()
                .as_str(),
            "config"
        );
    }

    #[test]
    fn target_below_current_asks_for_rollback() {
        let set = set(FILES);
        let history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
        ];
        let target = Version::parse("0001").unwrap();
        let err = plan(&history, &set, Some(&target)).unwrap_err();
        assert!(err.to_string().contains("rollback"), "{err}");
    }

    #[test]
    fn rollback_rows_make_a_version_pending_again() {
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
        let plan = plan(&history, &set, None).unwrap();
        assert_eq!(plan.current.as_ref().unwrap().as_str(), "0001");
        assert_eq!(versions(&plan)[0], "0002_b.sql");
    }

    #[test]
    fn a_rollback_makes_repeatables_pending_until_they_run_again() {
        let set = set(FILES);
        let mut history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
            row(3, "versioned", Some("0003"), "0003_c.sql", "select 3;"),
            row(4, "repeatable", None, "repeatable/v.sql", "select 'v';"),
            row(5, "rollback", Some("0003"), "0003_c_rollback.sql", "x"),
        ];
        assert_eq!(
            versions(&plan(&history, &set, None).unwrap()),
            ["0003_c.sql", "repeatable/v.sql"]
        );
        history.push(row(6, "versioned", Some("0003"), "0003_c.sql", "select 3;"));
        history.push(row(
            7,
            "repeatable",
            None,
            "repeatable/v.sql",
            "select 'v';",
        ));
        assert!(plan(&history, &set, None).unwrap().is_clean());
    }

    #[test]
    fn baseline_covers_older_versions() {
        let set = set(FILES);
        let history = vec![row(1, "baseline", Some("0002"), "baseline", "")];
        let plan = plan(&history, &set, None).unwrap();
        assert_eq!(versions(&plan), ["0003_c.sql", "repeatable/v.sql"]);
    }

    #[test]
    fn changed_repeatable_is_pending() {
        let set = set(FILES);
        let mut history = vec![
            row(1, "versioned", Some("0001"), "0001_a.sql", "select 1;"),
            row(2, "versioned", Some("0002"), "0002_b.sql", "select 2;"),
            row(3, "versioned", Some("0003"), "0003_c.sql", "select 3;"),
            row(4, "repeatable", None, "repeatable/v.sql", "select 'old';"),
        ];
        assert_eq!(
            versions(&plan(&history, &set, None).unwrap()),
            ["repeatable/v.sql"]
        );
        history.push(row(
            5,
            "repeatable",
            None,
            "repeatable/v.sql",
            "select 'v';",
        ));
        assert!(plan(&history, &set, None).unwrap().is_clean());
    }

    #[test]
    fn unknown_history_kind_is_an_error() {
        let set = set(FILES);
        let history = vec![row(1, "mystery", Some("0001"), "0001_a.sql", "select 1;")];
        let err = plan(&history, &set, None).unwrap_err();
        assert_eq!(err.code().as_str(), "internal");
        assert!(err.to_string().contains("kind 'mystery'"), "{err}");
    }
}
