//! Golden files of the report: one fully populated report of each kind —
//! validate, apply, a dry run, rollback, status, verify, snapshot, local
//! start, a failure — compared with `src/report/golden/NAME.json` (exactly
//! what [`Report::to_json`] prints) and `NAME.txt` / `NAME.color.txt` (the
//! human rendering, plain and on a terminal).
//!
//! The JSON is the contract CodeBuild and the Lambda's callers read
//! (docs/DESIGN.md, "Interfaces"), so any change to a field's type must leave
//! these files byte for byte as they are. `UPDATE_EXPECT=1` rewrites them,
//! for a change that means to alter the output; review the diff then.

use std::path::{Path, PathBuf};

use super::*;
use crate::drift::{Aspect, DriftKind, ObjectType};
use crate::error::MigrationFailure;

fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/report/golden")
        .join(file)
}

/// Compare `actual` with the golden file, or rewrite it under `UPDATE_EXPECT=1`.
fn expect_file(file: &str, actual: &str) {
    let path = golden_path(file);
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "src/report/golden/{file} differs from the report (UPDATE_EXPECT=1 cargo test -p slipway --lib report::golden rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

/// Check `report`'s JSON and both human renderings against `NAME.*`.
fn expect_report(name: &str, report: &Report) {
    expect_file(&format!("{name}.json"), &format!("{}\n", report.to_json()));
    expect_file(&format!("{name}.txt"), &report.render_human(false));
    expect_file(&format!("{name}.color.txt"), &report.render_human(true));
}

fn pending(version: Option<&str>, description: &str, script: &str) -> PendingMigration {
    PendingMigration {
        version: version.map(str::to_owned),
        description: description.into(),
        script: script.into(),
    }
}

fn done(version: Option<&str>, description: &str, script: &str, ms: i64) -> AppliedMigration {
    AppliedMigration {
        version: version.map(str::to_owned),
        description: description.into(),
        script: script.into(),
        duration_ms: ms,
    }
}

fn drift_item(
    kind: DriftKind,
    object: &str,
    expected: Option<&str>,
    actual: Option<&str>,
) -> DriftItem {
    DriftItem {
        kind,
        object: object.into(),
        expected: expected.map(str::to_owned),
        actual: actual.map(str::to_owned),
    }
}

fn change(
    change: SchemaChangeKind,
    object_type: ObjectType,
    object: &str,
    aspect: Option<Aspect>,
    before: Option<&str>,
    after: Option<&str>,
) -> SchemaChange {
    SchemaChange {
        change,
        object_type,
        object: object.into(),
        aspect,
        before: before.map(str::to_owned),
        after: after.map(str::to_owned),
    }
}

/// A report of `action` that reached database `quiz` at 0002 of 0005.
fn reached(action: &str, dry_run: bool) -> Report {
    let mut report = Report::new(action, dry_run);
    report.success = true;
    report.database = Some("quiz".into());
    report.current_version = Some("0002".into());
    report.target_version = Some("0005".into());
    report.duration_ms = 42;
    report
}

/// One item of every shape the drift rendering knows: table parts under
/// their table, a multi-line definition, a function signature with dots,
/// owners and grants.
fn every_drift_shape() -> Vec<DriftItem> {
    vec![
        drift_item(
            DriftKind::ExtraColumn,
            "public.users.nickname",
            None,
            Some("character varying(20) NOT NULL DEFAULT 'x'::character varying"),
        ),
        drift_item(
            DriftKind::NullabilityChanged,
            "public.users.email",
            Some("NOT NULL"),
            Some("NULL"),
        ),
        drift_item(
            DriftKind::DefaultChanged,
            "public.users.role",
            Some("'student'::character varying"),
            None,
        ),
        drift_item(
            DriftKind::MissingIndex,
            "public.users.users_email_idx",
            Some("CREATE INDEX users_email_idx ON public.users USING btree (email)"),
            None,
        ),
        drift_item(
            DriftKind::ExtraIndex,
            "public.\"Odd.Name\".\"idx.1\"",
            None,
            Some("CREATE UNIQUE INDEX \"idx.1\" ON public.\"Odd.Name\" USING btree (id) (INVALID)"),
        ),
        drift_item(
            DriftKind::ViewChanged,
            "public.user_ids",
            Some(" SELECT users.id\n   FROM public.users;"),
            Some(" SELECT users.email\n   FROM public.users;"),
        ),
        drift_item(
            DriftKind::ExtraTable,
            "public.audit",
            None,
            Some("table (1 column)"),
        ),
        drift_item(
            DriftKind::MissingTable,
            "public.old",
            Some("table (3 columns)"),
            None,
        ),
        drift_item(
            DriftKind::FunctionChanged,
            "public.f(numeric(5,2))",
            Some("body sha256 aaaaaaaaaaaa"),
            Some("body sha256 bbbbbbbbbbbb"),
        ),
        drift_item(
            DriftKind::OwnerChanged,
            "public.f(numeric(5,2))",
            Some("app"),
            Some("postgres"),
        ),
        drift_item(
            DriftKind::GrantsChanged,
            "public.users",
            None,
            Some("app=arwdDxt/app,report=r/app"),
        ),
        drift_item(
            DriftKind::ExtensionChanged,
            "pg_trgm",
            Some("schema public, version 1.6"),
            Some("schema public, version 1.5"),
        ),
    ]
}

fn every_change_shape() -> Vec<SchemaChange> {
    vec![
        change(
            SchemaChangeKind::Create,
            ObjectType::Table,
            "public.progress_records",
            None,
            None,
            Some("table (4 columns)"),
        ),
        change(
            SchemaChangeKind::Create,
            ObjectType::Column,
            "public.quiz_sessions.difficulty_level",
            None,
            None,
            Some("integer NOT NULL DEFAULT 1"),
        ),
        change(
            SchemaChangeKind::Alter,
            ObjectType::Column,
            "public.users.email",
            Some(Aspect::Type),
            Some("text"),
            Some("citext"),
        ),
        change(
            SchemaChangeKind::Drop,
            ObjectType::Index,
            "public.users.users_email_idx",
            None,
            Some("CREATE INDEX users_email_idx ON public.users USING btree (email)"),
            None,
        ),
        change(
            SchemaChangeKind::Alter,
            ObjectType::View,
            "public.user_ids",
            Some(Aspect::Definition),
            Some(" SELECT users.id\n   FROM public.users;"),
            Some(" SELECT users.id,\n    users.email\n   FROM public.users;"),
        ),
        change(
            SchemaChangeKind::Create,
            ObjectType::Function,
            "public.touch()",
            None,
            None,
            Some("function () returns trigger language plpgsql volatile"),
        ),
        change(
            SchemaChangeKind::Alter,
            ObjectType::Sequence,
            "public.ticket_seq",
            Some(Aspect::Owner),
            Some("app"),
            Some("postgres"),
        ),
    ]
}

#[test]
fn validate() {
    let mut report = reached("validate", false);
    report.pending = vec![
        pending(
            Some("0003"),
            "add quiz analytics",
            "0003_add_quiz_analytics.sql",
        ),
        pending(None, "progress view", "repeatable/progress_view.sql"),
    ];
    report.drift = every_drift_shape();
    report.checksum_mismatches = vec![ChecksumMismatchItem {
        version: "0002".into(),
        script: "0002_index_level.sql".into(),
        recorded_checksum: "3f2a9c0d1e8b7a6f5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b"
            .into(),
        file_checksum: "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c".into(),
    }];
    report.unknown_versions = vec![UnknownVersion {
        version: "0009".into(),
        description: "hand made".into(),
    }];
    expect_report("validate", &report);
}

#[test]
fn apply() {
    let mut report = reached("apply", false);
    report.schema_valid = true;
    report.current_version = Some("0005".into());
    report.applied = vec![
        done(
            Some("0003"),
            "add quiz analytics",
            "0003_add_quiz_analytics.sql",
            12,
        ),
        done(Some("0004"), "index level", "0004_index_level.sql", 7),
        done(None, "progress view", "repeatable/progress_view.sql", 3),
    ];
    report.schema_changes = Some(every_change_shape());
    report.dropped_invalid_indexes = vec!["public.t.t_email_key".into()];
    expect_report("apply", &report);
}

#[test]
fn apply_dry_run() {
    let mut report = reached("apply", true);
    report.schema_valid = false;
    report.pending = vec![
        pending(
            Some("0003"),
            "add quiz analytics",
            "0003_add_quiz_analytics.sql",
        ),
        pending(None, "progress view", "repeatable/progress_view.sql"),
    ];
    report.schema_changes = Some(every_change_shape());
    expect_report("apply_dry_run", &report);
}

#[test]
fn rollback() {
    let mut report = reached("rollback", false);
    report.schema_valid = true;
    report.current_version = Some("0002".into());
    report.target_version = Some("0002".into());
    report.rolled_back = Some(vec![
        done(
            Some("0004"),
            "index level",
            "0004_index_level_rollback.sql",
            5,
        ),
        done(
            Some("0003"),
            "add quiz analytics",
            "0003_add_quiz_analytics_rollback.sql",
            9,
        ),
    ]);
    report.schema_changes = Some(vec![change(
        SchemaChangeKind::Drop,
        ObjectType::Table,
        "public.quiz_analytics",
        None,
        Some("table (2 columns)"),
        None,
    )]);
    expect_report("rollback", &report);

    let mut dry = report.clone();
    dry.dry_run = true;
    expect_report("rollback_dry_run", &dry);
}

#[test]
fn status() {
    let mut report = reached("status", false);
    report.pending = vec![pending(
        Some("0003"),
        "add quiz analytics",
        "0003_add_quiz_analytics.sql",
    )];
    let row =
        |version: Option<&str>, state: MigrationState, script: &str, ran: bool| MigrationStatus {
            version: version.map(str::to_owned),
            description: script.trim_end_matches(".sql").replace('_', " "),
            script: script.into(),
            state,
            applied_at: ran.then(|| "2024-05-01 10:00:00+00".to_owned()),
            applied_by: ran.then(|| "app (slipway 0.1.0)".to_owned()),
            duration_ms: ran.then_some(11),
        };
    report.migrations = Some(vec![
        row(
            Some("0001"),
            MigrationState::Applied,
            "0001_create_users.sql",
            true,
        ),
        row(
            Some("0002"),
            MigrationState::Modified,
            "0002_index_level.sql",
            true,
        ),
        row(
            Some("0003"),
            MigrationState::Pending,
            "0003_add_quiz_analytics.sql",
            false,
        ),
        row(
            None,
            MigrationState::Applied,
            "repeatable/progress_view.sql",
            true,
        ),
        row(Some("0009"), MigrationState::Unknown, "", false),
    ]);
    expect_report("status", &report);
}

#[test]
fn verify() {
    let mut report = Report::new("verify", false);
    report.database = Some("slipway_verify_1234".into());
    report.current_version = Some("0002".into());
    report.target_version = Some("0002".into());
    report.duration_ms = 310;
    report.verify = Some(vec![
        VerifyStep {
            version: "0001".into(),
            script: "0001_create_users.sql".into(),
            rollback_script: Some("0001_create_users_rollback.sql".into()),
            ok: true,
            problems: Vec::new(),
            rollback_drift: Vec::new(),
            reapply_drift: Vec::new(),
        },
        VerifyStep {
            version: "0002".into(),
            script: "0002_index_level.sql".into(),
            rollback_script: Some("0002_index_level_rollback.sql".into()),
            ok: false,
            problems: vec![
                "0002 rollback leaves index public.quiz_sessions.idx_quiz_sessions_level".into(),
                "0002 re-apply failed: relation \"idx_quiz_sessions_level\" already exists"
                    .into(),
            ],
            rollback_drift: vec![drift_item(
                DriftKind::ExtraIndex,
                "public.quiz_sessions.idx_quiz_sessions_level",
                None,
                Some("CREATE INDEX idx_quiz_sessions_level ON public.quiz_sessions USING btree (level)"),
            )],
            reapply_drift: vec![drift_item(
                DriftKind::IndexChanged,
                "public.quiz_sessions.idx_quiz_sessions_level",
                Some("CREATE INDEX idx_quiz_sessions_level ON public.quiz_sessions USING btree (level)"),
                Some("CREATE INDEX idx_quiz_sessions_level ON public.quiz_sessions USING btree (level) (INVALID)"),
            )],
        },
        VerifyStep {
            version: "0003".into(),
            script: "0003_add_quiz_analytics.sql".into(),
            rollback_script: None,
            ok: false,
            problems: vec!["0003 has no rollback script (0003_add_quiz_analytics_rollback.sql)".into()],
            rollback_drift: Vec::new(),
            reapply_drift: Vec::new(),
        },
    ]);
    let mut passed = report.clone();
    report.fail(&Error::Drift {
        reference: "the schema before each migration".into(),
        context: "verify".into(),
        count: 2,
        summary: "0002 rollback leaves index public.quiz_sessions.idx_quiz_sessions_level".into(),
        next: "fix the rollback scripts".into(),
    });
    expect_report("verify_failed", &report);

    passed.success = true;
    passed.schema_valid = true;
    if let Some(steps) = passed.verify.as_mut() {
        steps.truncate(1);
    }
    expect_report("verify", &passed);
}

#[test]
fn snapshot() {
    let mut report = Report::new("snapshot", false);
    report.success = true;
    report.schema_valid = false;
    report.duration_ms = 95;
    report.snapshot = Some(SnapshotFile {
        path: "migrations/schema.snapshot.json".into(),
        written: false,
        tables: 7,
        fingerprint: "9e107d9d372bb6826bd81d3542a419d6e277d4d731479571562b82f74494341f".into(),
    });
    expect_report("snapshot", &report);
}

#[test]
fn local_start() {
    let mut report = Report::new("local start", false);
    report.success = true;
    report.schema_valid = true;
    report.database = Some("slipway".into());
    report.url = Some("postgresql://postgres@127.0.0.1:54329/slipway".into());
    report.duration_ms = 820;
    expect_report("local_start", &report);
}

#[test]
fn failure() {
    let mut report = reached("apply", false);
    report.success = false;
    report.pending = vec![
        pending(
            Some("0003"),
            "add quiz analytics",
            "0003_add_quiz_analytics.sql",
        ),
        pending(Some("0004"), "index level", "0004_index_level.sql"),
    ];
    report.fail(&Error::MigrationFailed(Box::new(MigrationFailure {
        file: "0004_index_level.sql".into(),
        version: Some("0004".into()),
        line: Some(3),
        sqlstate: "42P07".into(),
        message: "relation \"idx_quiz_sessions_level\" already exists".into(),
        detail: Some("an earlier run left it".into()),
        hint: Some("drop it by hand, then run again".into()),
        invalid_indexes: vec!["public.quiz_sessions.idx_quiz_sessions_level".into()],
    })));
    expect_report("failure", &report);

    let mut drift = reached("apply", false);
    drift.success = false;
    drift.drift = every_drift_shape();
    drift.fail(&Error::Drift {
        reference: "the snapshot recorded by the last apply".into(),
        context: "before the migrations".into(),
        count: 12,
        summary: "extra_column public.users.nickname, nullability_changed public.users.email, default_changed public.users.role, ...".into(),
        next: "nothing was changed; fix the schema, or run with --allow-drift".into(),
    });
    expect_report("failure_drift", &drift);

    let refused = Report::failure(
        "unknown",
        false,
        &Error::BadRequest("unknown action 'explode'".into()),
    );
    expect_report("failure_bad_request", &refused);

    let mut rejected = Report::failure(
        "apply",
        false,
        &Error::Auth("password authentication failed for user \"app\"".into()),
    );
    rejected.duration_ms = 3;
    expect_report("failure_auth", &rejected);
}
