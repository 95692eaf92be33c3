//! The report: what a run found and did, in the one shape both faces print
//! (CLI `--json`, the Lambda response) and CodeBuild greps
//! (`"schema_valid":false`). Field names are a contract (docs/DESIGN.md,
//! "Interfaces"); `tests::field_names_are_stable` and the golden files
//! (`golden.rs`) pin them.
//!
//! The report is built from the diff's [`Difference`]s here, on the report's
//! side, so that [`crate::drift`] needs nothing from the report; the human
//! rendering the CLI prints by default lives in `human.rs`.

use std::fmt;

use serde::Serialize;

use crate::action::Action;
use crate::drift::{Aspect, Change, Difference, DriftKind, ObjectType};
use crate::error::{Error, ErrorCode};

mod human;

#[cfg(feature = "lint")]
pub(crate) use human::painter;

/// The report's `action`: an [`Action`], one of the CLI's own commands, or
/// — for a request that could not be read — what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportAction {
    Action(Action),
    Lint,
    LocalStart,
    LocalStop,
    /// A request that could not be read: the action it named (cut short by
    /// the face), or `unknown`.
    Unread(String),
}

impl ReportAction {
    /// The action `text` names: a known spelling is its variant, anything
    /// else is kept as asked.
    pub fn named(text: &str) -> ReportAction {
        match text {
            "lint" => ReportAction::Lint,
            "local start" => ReportAction::LocalStart,
            "local stop" => ReportAction::LocalStop,
            _ => Action::parse(text).map_or_else(
                || ReportAction::Unread(text.to_owned()),
                ReportAction::Action,
            ),
        }
    }

    /// The spelling in the report.
    pub fn as_str(&self) -> &str {
        match self {
            ReportAction::Action(action) => action.as_str(),
            ReportAction::Lint => "lint",
            ReportAction::LocalStart => "local start",
            ReportAction::LocalStop => "local stop",
            ReportAction::Unread(text) => text,
        }
    }
}

impl From<Action> for ReportAction {
    fn from(action: Action) -> ReportAction {
        ReportAction::Action(action)
    }
}

impl From<&str> for ReportAction {
    fn from(text: &str) -> ReportAction {
        ReportAction::named(text)
    }
}

impl PartialEq<Action> for ReportAction {
    fn eq(&self, other: &Action) -> bool {
        *self == ReportAction::Action(*other)
    }
}

impl std::fmt::Display for ReportAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReportAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a run found and did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub success: bool,
    pub action: ReportAction,
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
    pub kind: DriftKind,
    pub object: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// One change an apply made (or, for a dry run, would make) to the schema.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SchemaChange {
    pub change: SchemaChangeKind,
    pub object_type: ObjectType,
    pub object: String,
    /// For `alter`: what part of the object.
    pub aspect: Option<Aspect>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a [`SchemaChange`] does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChangeKind {
    Create,
    Drop,
    Alter,
}

impl SchemaChangeKind {
    /// Every kind of change.
    pub const ALL: [SchemaChangeKind; 3] = [
        SchemaChangeKind::Create,
        SchemaChangeKind::Drop,
        SchemaChangeKind::Alter,
    ];

    /// The change as it appears in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaChangeKind::Create => "create",
            SchemaChangeKind::Drop => "drop",
            SchemaChangeKind::Alter => "alter",
        }
    }
}

impl fmt::Display for SchemaChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub state: MigrationState,
    pub applied_at: Option<String>,
    pub applied_by: Option<String>,
    pub duration_ms: Option<i64>,
}

/// Where a migration of `status` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// Recorded in the history, and its file unchanged.
    Applied,
    /// Not run yet (or to run again: a repeatable script that changed, a
    /// version rolled back).
    Pending,
    /// Recorded, but its file changed since it ran.
    Modified,
    /// Recorded, but no migration file describes it.
    Unknown,
}

impl MigrationState {
    /// Every state.
    pub const ALL: [MigrationState; 4] = [
        MigrationState::Applied,
        MigrationState::Pending,
        MigrationState::Modified,
        MigrationState::Unknown,
    ];

    /// The state as it appears in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
            MigrationState::Modified => "modified",
            MigrationState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The report's `error` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: serde_json::Value,
}

impl From<&Error> for ReportError {
    fn from(error: &Error) -> ReportError {
        ReportError {
            code: error.code(),
            message: error.to_string(),
            detail: error.detail(),
        }
    }
}

/// The difference as the report's drift item.
impl From<&Difference> for DriftItem {
    fn from(d: &Difference) -> DriftItem {
        DriftItem {
            kind: d.kind,
            object: d.object.clone(),
            expected: d.expected.clone(),
            actual: d.actual.clone(),
        }
    }
}

/// The difference read as a change a dry run would make, when the reference
/// is the schema before and the database the schema after.
impl From<&Difference> for SchemaChange {
    fn from(d: &Difference) -> SchemaChange {
        SchemaChange {
            change: match d.kind.change() {
                Change::Missing => SchemaChangeKind::Drop,
                Change::Extra => SchemaChangeKind::Create,
                Change::Changed => SchemaChangeKind::Alter,
            },
            object_type: d.object_type,
            object: d.object.clone(),
            aspect: d.kind.aspect(),
            before: d.expected.clone(),
            after: d.actual.clone(),
        }
    }
}

impl Report {
    /// An empty report for `action`, to be filled in as the run goes.
    pub fn new(action: impl Into<ReportAction>, dry_run: bool) -> Report {
        Report {
            success: false,
            action: action.into(),
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
    pub fn failure(action: impl Into<ReportAction>, dry_run: bool, error: &Error) -> Report {
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
                self.action.as_str().escape_default(),
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
        } else if (self.action == Action::Validate || self.action == Action::Snapshot)
            && !self.schema_valid
        {
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::fixtures::{base, column, users};
    use crate::drift::{diff, DiffOptions};

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
    fn the_report_spells_each_value_as_its_name() {
        let json = |value: serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        for change in SchemaChangeKind::ALL {
            assert_eq!(json(serde_json::json!(change)), change.as_str());
        }
        for state in MigrationState::ALL {
            assert_eq!(json(serde_json::json!(state)), state.as_str());
        }
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
    fn items_carry_expected_and_actual() {
        let mut actual = base();
        users(&mut actual)
            .columns
            .get_mut("email")
            .unwrap()
            .not_null = false;
        users(&mut actual).columns.insert(
            "nickname".into(),
            column(
                "character varying(20)",
                true,
                Some("'x'::character varying"),
            ),
        );
        let items: Vec<DriftItem> = diff(&base(), &actual, DiffOptions::default())
            .iter()
            .map(DriftItem::from)
            .collect();
        assert_eq!(
            items,
            [
                DriftItem {
                    kind: DriftKind::NullabilityChanged,
                    object: "public.users.email".into(),
                    expected: Some("NOT NULL".into()),
                    actual: Some("NULL".into()),
                },
                DriftItem {
                    kind: DriftKind::ExtraColumn,
                    object: "public.users.nickname".into(),
                    expected: None,
                    actual: Some(
                        "character varying(20) NOT NULL DEFAULT 'x'::character varying".into()
                    ),
                },
            ]
        );
    }
}
