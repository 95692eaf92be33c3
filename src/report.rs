//! The report: what a run found and did, in the one shape both faces print
//! (CLI `--json`, the Lambda response) and CodeBuild greps
//! (`"schema_valid":false`). Field names are a contract (DESIGN.md,
//! "Interfaces"); `tests::field_names_are_stable` pins them.
//!
//! Also the human rendering the CLI prints by default.

use std::fmt::Write as _;

use serde::Serialize;

use crate::error::Error;

/// What a run found and did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub success: bool,
    pub action: String,
    pub dry_run: bool,
    pub schema_valid: bool,
    pub database: Option<String>,
    pub current_version: Option<String>,
    pub target_version: Option<String>,
    pub pending: Vec<PendingMigration>,
    pub applied: Vec<AppliedMigration>,
    pub drift: Vec<DriftItem>,
    pub checksum_mismatches: Vec<ChecksumMismatchItem>,
    pub unknown_versions: Vec<UnknownVersion>,
    pub duration_ms: u64,
    pub error: Option<ReportError>,
    /// Every known migration and its state (`status` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Vec<MigrationStatus>>,
    /// What the migrations of an apply changed in the schema, from the
    /// catalog before and after them (`apply`, including a dry run, when
    /// something ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_changes: Option<Vec<SchemaChange>>,
    /// What a `rollback` undid, newest first (a dry run: ran, then undone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<Vec<AppliedMigration>>,
    /// INVALID indexes, left by a failed no-transaction migration, that this
    /// run dropped before running it again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_invalid_indexes: Vec<String>,
    /// `verify`: each migration's apply / rollback / re-apply round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Vec<VerifyStep>>,
    /// `local start` (CLI): the URL of the local server's database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `snapshot` (CLI): the expected-snapshot file written or checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotFile>,
}

/// The expected-snapshot file of `slipway snapshot`; the report's
/// `schema_valid` says whether it matches the migrations after the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotFile {
    pub path: String,
    /// False for `--check`, which only compares.
    pub written: bool,
    pub tables: usize,
    pub fingerprint: String,
}

/// One migration's round trip in `verify`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerifyStep {
    pub version: String,
    pub script: String,
    pub rollback_script: Option<String>,
    /// True when the rollback restored the schema before the migration and
    /// the re-apply the schema after it.
    pub ok: bool,
    /// What differs, one sentence each, e.g. `0004 rollback leaves index
    /// public.quiz_sessions.quiz_sessions_level_idx`.
    pub problems: Vec<String>,
    /// The schema after the rollback compared with the schema before the
    /// migration (`expected`: before, `actual`: after the rollback).
    pub rollback_drift: Vec<DriftItem>,
    /// The schema after the re-apply compared with the schema after the
    /// first apply.
    pub reapply_drift: Vec<DriftItem>,
}

/// A migration that has not run yet (or, for a dry run, ran and was rolled back).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PendingMigration {
    pub version: Option<String>,
    pub description: String,
    pub script: String,
}

/// A migration this run committed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppliedMigration {
    pub version: Option<String>,
    pub description: String,
    pub script: String,
    pub duration_ms: i64,
}

/// One difference between the live catalog and the recorded snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftItem {
    pub kind: String,
    pub object: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// One change an apply made (or, for a dry run, would make) to the schema.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SchemaChange {
    /// `create`, `drop` or `alter`.
    pub change: String,
    /// `table`, `view`, `column`, `constraint`, `index`, `trigger`,
    /// `function`, `sequence`, `type` or `extension`.
    pub object_type: String,
    pub object: String,
    /// For `alter`: `type`, `nullability`, `default`, `owner`, `grants` or `definition`.
    pub aspect: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// An applied migration whose file changed since it ran.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChecksumMismatchItem {
    pub version: String,
    pub script: String,
    pub recorded_checksum: String,
    pub file_checksum: String,
}

/// An applied version that no migration file describes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnknownVersion {
    pub version: String,
    pub description: String,
}

/// A row of `status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MigrationStatus {
    pub version: Option<String>,
    pub description: String,
    pub script: String,
    /// `applied`, `pending`, `modified` or `unknown`.
    pub state: String,
    pub applied_at: Option<String>,
    pub applied_by: Option<String>,
    pub duration_ms: Option<i64>,
}

/// The report's `error` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportError {
    pub code: String,
    pub message: String,
    pub detail: serde_json::Value,
}

impl From<&Error> for ReportError {
    fn from(error: &Error) -> ReportError {
        ReportError {
            code: error.code().as_str().to_owned(),
            message: error.to_string(),
            detail: error.detail(),
        }
    }
}

impl Report {
    /// An empty report for `action`, to be filled in as the run goes.
    pub fn new(action: &str, dry_run: bool) -> Report {
        Report {
            success: false,
            action: action.to_owned(),
            dry_run,
            schema_valid: false,
            database: None,
            current_version: None,
            target_version: None,
            pending: Vec::new(),
            applied: Vec::new(),
            drift: Vec::new(),
            checksum_mismatches: Vec::new(),
            unknown_versions: Vec::new(),
            duration_ms: 0,
            error: None,
            migrations: None,
            schema_changes: None,
            rolled_back: None,
            dropped_invalid_indexes: Vec::new(),
            verify: None,
            url: None,
            snapshot: None,
        }
    }

    /// A failed report carrying `error`, for failures before any work
    /// (malformed event, bad configuration).
    pub fn failure(action: &str, dry_run: bool, error: &Error) -> Report {
        let mut report = Report::new(action, dry_run);
        report.fail(error);
        report
    }

    /// Mark the report failed with `error`.
    pub fn fail(&mut self, error: &Error) {
        self.success = false;
        self.error = Some(ReportError::from(error));
    }

    /// Compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"success\":false,\"action\":\"{}\",\"error\":{{\"code\":\"internal\",\"message\":\"report serialisation failed: {}\",\"detail\":null}}}}",
                self.action.escape_default(),
                e.to_string().escape_default()
            )
        })
    }

    /// The exit code of the CLI for this report: 0 success (and valid, for
    /// validate), 1 validate found the schema not valid (or `snapshot
    /// --check` the file stale), 2 error.
    pub fn exit_code(&self) -> u8 {
        if !self.success {
            2
        } else if (self.action == "validate" || self.action == "snapshot") && !self.schema_valid {
            1
        } else {
            0
        }
    }

    /// Human-readable text; ANSI colour when `color` is set (a TTY).
    pub fn render_human(&self, color: bool) -> String {
        self.render_human_with(color, false)
    }

    /// [`Report::render_human`], told whether the migration a failure names
    /// ran outside a transaction (`-- slipway:no-transaction`): then some of
    /// its statements may have stayed done, and the text must not say that
    /// nothing was changed.
    pub fn render_human_with(&self, color: bool, failed_step_ran_alone: bool) -> String {
        let paint = crate::report::painter(color);
        let mut out = String::new();
        let database = self.database.as_deref().unwrap_or("?");
        let current = self.current_version.as_deref().unwrap_or("none");
        let target = self.target_version.as_deref().unwrap_or("none");
        if self.action == "verify" {
            let _ = writeln!(
                out,
                "verify on the throw-away database {database} (dropped afterwards)"
            );
        } else if self.database.is_some() {
            let _ = writeln!(
                out,
                "{}{} on database {database}: current version {current}, target {target}",
                self.action,
                if self.dry_run { " (dry run)" } else { "" },
            );
        }

        if let Some(migrations) = &self.migrations {
            let rows: Vec<[String; 5]> = migrations
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_else(|| "R".into()),
                        m.state.clone(),
                        m.description.clone(),
                        m.applied_at.clone().unwrap_or_default(),
                        m.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["version", "state", "description", "applied at", "took"],
                &rows,
            ));
        }
        if !self.applied.is_empty() {
            let _ = writeln!(out, "\n{}", paint("32", "applied:"));
            let rows: Vec<[String; 3]> = self
                .applied
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_else(|| "R".into()),
                        m.description.clone(),
                        format!("{} ms", m.duration_ms),
                    ]
                })
                .collect();
            out.push_str(&table(&["version", "description", "took"], &rows));
        }
        if let Some(rolled_back) = self.rolled_back.as_ref().filter(|r| !r.is_empty()) {
            let title = if self.dry_run {
                "would roll back (ran, then undone):"
            } else {
                "rolled back:"
            };
            let _ = writeln!(out, "\n{}", paint("32", title));
            let rows: Vec<[String; 4]> = rolled_back
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_default(),
                        m.description.clone(),
                        m.script.clone(),
                        format!("{} ms", m.duration_ms),
                    ]
                })
                .collect();
            out.push_str(&table(&["version", "description", "file", "took"], &rows));
        }
        if !self.dropped_invalid_indexes.is_empty() {
            let _ = writeln!(
                out,
                "\n{} {}",
                paint("33", "dropped INVALID index(es) a failed run left:"),
                self.dropped_invalid_indexes.join(", ")
            );
        }
        if let Some(steps) = &self.verify {
            let _ = writeln!(out, "\n{}", paint("36", "apply / rollback / re-apply:"));
            for step in steps {
                let verdict = if step.ok {
                    paint("32", "ok")
                } else {
                    paint("31", "FAILED")
                };
                let _ = writeln!(out, "  {}  {}  {verdict}", step.version, step.script);
                for problem in &step.problems {
                    let _ = writeln!(out, "      {problem}");
                }
            }
        }
        if !self.pending.is_empty() && self.migrations.is_none() {
            let title = if self.dry_run && self.success {
                "would apply (ran and rolled back):"
            } else {
                "pending:"
            };
            let _ = writeln!(out, "\n{}", paint("33", title));
            let rows: Vec<[String; 3]> = self
                .pending
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_else(|| "R".into()),
                        m.description.clone(),
                        m.script.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(&["version", "description", "file"], &rows));
        }
        if !self.checksum_mismatches.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                paint("31", "modified after they were applied:")
            );
            for m in &self.checksum_mismatches {
                let _ = writeln!(
                    out,
                    "  {}  {}  recorded {}…, file {}…",
                    m.version,
                    m.script,
                    &m.recorded_checksum[..m.recorded_checksum.len().min(12)],
                    &m.file_checksum[..m.file_checksum.len().min(12)]
                );
            }
        }
        if !self.unknown_versions.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                paint("31", "applied but not in the migration files:")
            );
            for u in &self.unknown_versions {
                let _ = writeln!(out, "  {}  {}", u.version, u.description);
            }
        }
        // A dry run is asked for to see them; after a real apply they are
        // in the JSON report only, not to bury the summary under a
        // thousand-table first deploy.
        if let Some(changes) = self
            .schema_changes
            .as_ref()
            .filter(|c| self.dry_run && !c.is_empty())
        {
            let _ = writeln!(
                out,
                "\n{}",
                paint("36", "schema changes (made, then rolled back):")
            );
            out.push_str(&crate::drift::render_changes(changes, color));
        }
        if !self.drift.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                paint(
                    "31",
                    &format!(
                        "schema drift ({} difference(s); - expected but missing, + not expected, ~ expected → found):",
                        self.drift.len()
                    )
                )
            );
            out.push_str(&crate::drift::render_drift(&self.drift, color));
        }

        if !out.is_empty() {
            out.push('\n');
        }
        match &self.error {
            Some(error) => {
                let _ = writeln!(
                    out,
                    "{} [{}] {}",
                    paint("1;31", "error"),
                    error.code,
                    error.message
                );
                if let Some(detail) = error.detail.as_object() {
                    for key in ["file", "line", "sqlstate", "detail", "hint"] {
                        if let Some(value) = detail.get(key).filter(|v| !v.is_null()) {
                            let value = value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned);
                            let _ = writeln!(out, "  {key}: {value}");
                        }
                    }
                }
                if self.changed_nothing(failed_step_ran_alone)
                    && !error.message.contains("nothing was changed")
                {
                    let _ = writeln!(out, "nothing was changed");
                }
            }
            None => {
                let verdict = match (self.action.as_str(), self.schema_valid) {
                    ("apply", _) if self.dry_run => paint("32", "dry run ok: nothing was changed"),
                    ("apply", _) if self.applied.is_empty() => {
                        paint("32", "up to date: nothing to apply")
                    }
                    ("apply", _) => paint(
                        "32",
                        &format!("applied {} migration(s)", self.applied.len()),
                    ),
                    ("rollback", _) if self.dry_run => {
                        paint("32", "dry run ok: nothing was changed")
                    }
                    ("rollback", _) => paint(
                        "32",
                        &format!(
                            "rolled back {} migration(s); `slipway apply` applies them again",
                            self.rolled_back.as_ref().map_or(0, Vec::len)
                        ),
                    ),
                    ("verify", _) => paint(
                        "32",
                        "every migration round-trips: rollback restores the schema, re-apply rebuilds it",
                    ),
                    (_, true) => paint("32", "schema valid"),
                    (_, false) if !self.drift.is_empty() => paint(
                        "33",
                        "schema not valid: the schema drifted (above); `slipway apply` refuses until it is fixed, or runs with --allow-drift",
                    ),
                    (_, false) => paint("33", "schema not valid: run `slipway apply`"),
                };
                let _ = writeln!(out, "{verdict}");
            }
        }
        let _ = writeln!(out, "took {} ms", self.duration_ms);
        out
    }
}

impl Report {
    /// Whether a failed `apply` or `rollback` left the database as it was:
    /// it committed nothing (every transaction rolled back) and the failure
    /// is not of a step that ran outside a transaction, nor one that left
    /// INVALID indexes behind.
    fn changed_nothing(&self, failed_step_ran_alone: bool) -> bool {
        let left_indexes = self
            .error
            .as_ref()
            .and_then(|e| e.detail.get("invalid_indexes"))
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty());
        !self.success
            && (self.action == "apply" || self.action == "rollback")
            && self.applied.is_empty()
            && self.rolled_back.as_ref().is_none_or(Vec::is_empty)
            && !failed_step_ran_alone
            && !left_indexes
    }
}

/// A plain, left-aligned text table.
fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let dashes = widths.map(|w| "-".repeat(w));
    let mut out = String::new();
    let mut push_line = |cells: [&str; N]| {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let _ = write!(line, "  {cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_line(*headers);
    push_line(dashes.each_ref().map(String::as_str));
    for row in rows {
        push_line(row.each_ref().map(String::as_str));
    }
    out
}

/// Wraps text in an ANSI colour `code` when `color` is set (a TTY), else
/// leaves it plain: the one colouring rule of every human rendering.
pub(crate) fn painter(color: bool) -> impl Fn(&str, &str) -> String {
    move |code, text| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_stable() {
        let report = Report::new("validate", false);
        let json = report.to_json();
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).unwrap();
        // Order as printed, not as parsed: the contract is the text.
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_by_key(|k| json.find(&format!("\"{k}\":")).unwrap());
        assert_eq!(
            keys,
            [
                "success",
                "action",
                "dry_run",
                "schema_valid",
                "database",
                "current_version",
                "target_version",
                "pending",
                "applied",
                "drift",
                "checksum_mismatches",
                "unknown_versions",
                "duration_ms",
                "error",
            ]
        );
        assert!(report.to_json().starts_with(
            "{\"success\":false,\"action\":\"validate\",\"dry_run\":false,\"schema_valid\":false,"
        ));
    }

    #[test]
    fn exit_codes() {
        let mut report = Report::new("validate", false);
        assert_eq!(report.exit_code(), 2);
        report.success = true;
        assert_eq!(report.exit_code(), 1);
        report.schema_valid = true;
        assert_eq!(report.exit_code(), 0);
        let mut apply = Report::new("apply", false);
        apply.success = true;
        assert_eq!(apply.exit_code(), 0);
    }

    #[test]
    fn error_detail_is_rendered() {
        let error = Error::MigrationFailed(Box::new(crate::error::MigrationFailure {
            file: "0003_c.sql".into(),
            version: Some("0003".into()),
            line: Some(4),
            sqlstate: "42601".into(),
            message: "syntax error at or near \"TABL\"".into(),
            detail: None,
            hint: Some("check it".into()),
            invalid_indexes: Vec::new(),
        }));
        let report = Report::failure("apply", false, &error);
        let text = report.render_human(false);
        assert!(text.contains("[migration_failed]"), "{text}");
        assert!(
            text.contains("file: 0003_c.sql") && text.contains("line: 4"),
            "{text}"
        );
        assert!(
            text.contains("sqlstate: 42601") && text.contains("hint: check it"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["error"]["code"], "migration_failed");
        assert_eq!(json["error"]["detail"]["line"], 4);
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&["a", "bb"], &[["xxx".into(), "y".into()]]);
        assert_eq!(text, "  a    bb\n  ---  --\n  xxx  y\n");
    }
}
