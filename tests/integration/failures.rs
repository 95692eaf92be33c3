//! What a failing run leaves behind — nothing — and what it says: a broken
//! migration (syntax and runtime errors), a tampered or missing applied file,
//! a duplicate version, and a table lock that outlasts the retries. Every test
//! compares the database before and after, not only the report.

use crate::common::{copy_example_migrations, fast_settings, migrations_dir, run_cli, TestDb};
use slipway::{ApplyOptions, ErrorCode, MigrationSet, Report};

/// Five migrations; the third has a syntax error on its line 2.
const BROKEN_THIRD: &[(&str, &str)] = &[
    (
        "0001_create_a.sql",
        "CREATE TABLE a (id int PRIMARY KEY);\n",
    ),
    ("0002_create_b.sql", "CREATE TABLE b (id int);\n"),
    (
        "0003_create_c.sql",
        "CREATE TABLE c (id int);\nCREATE TABLEE broken (id int);\n",
    ),
    ("0004_create_d.sql", "CREATE TABLE d (id int);\n"),
    ("0005_create_e.sql", "CREATE TABLE e (id int);\n"),
];

fn to(version: &str) -> ApplyOptions {
    ApplyOptions {
        to: Some(version.into()),
        ..ApplyOptions::default()
    }
}

/// The report's `error.detail`, after checking the code.
fn error_detail(report: &Report, code: ErrorCode) -> serde_json::Value {
    assert!(!report.success, "{}", report.to_json());
    let error = report
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("no error in {}", report.to_json()));
    assert_eq!(error.code, code, "{}", report.to_json());
    error.detail.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_in_third_of_five_rolls_back_everything() {
    let db = TestDb::new("syntax_error").await;
    let dir = migrations_dir(BROKEN_THIRD);
    let before = db.snapshot().await;

    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    let detail = error_detail(&report, ErrorCode::MigrationFailed);
    assert_eq!(detail["file"], "0003_create_c.sql", "{detail}");
    assert_eq!(detail["version"], "0003", "{detail}");
    assert_eq!(detail["line"], 2, "{detail}");
    assert_eq!(detail["sqlstate"], "42601", "{detail}");
    assert!(report.applied.is_empty(), "{}", report.to_json());
    assert_eq!(report.exit_code(), 2);

    assert!(!db.has_table("a").await && !db.has_table("b").await);
    assert_eq!(db.history_count().await, 0);
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_in_first_migration_is_located() {
    let db = TestDb::new("syntax_error_first").await;
    let dir = migrations_dir(&[
        ("0001_first.sql", "-- one\n-- two\nSELEC 1;\n"),
        ("0002_second.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let before = db.snapshot().await;

    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    let detail = error_detail(&report, ErrorCode::MigrationFailed);
    assert_eq!(detail["file"], "0001_first.sql", "{detail}");
    assert_eq!(detail["line"], 3, "{detail}");
    assert_eq!(detail["sqlstate"], "42601", "{detail}");
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_the_same_failure_and_changes_nothing() {
    let db = TestDb::new("dry_run_failure").await;
    let dir = migrations_dir(BROKEN_THIRD);
    let before = db.snapshot().await;

    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions {
            dry_run: true,
            ..ApplyOptions::default()
        })
        .await;
    assert!(report.dry_run);
    let detail = error_detail(&report, ErrorCode::MigrationFailed);
    assert_eq!(detail["file"], "0003_create_c.sql", "{detail}");
    assert_eq!(detail["line"], 2, "{detail}");
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_error_without_position_reports_statement_line_and_detail() {
    let db = TestDb::new("runtime_error").await;
    let dir = migrations_dir(&[
        ("0001_create_a.sql", "CREATE TABLE a (id int PRIMARY KEY);\n"),
        (
            "0002_seed_a.sql",
            "-- seed rows\nINSERT INTO a VALUES (0);\nINSERT INTO a VALUES (1), (1);\nINSERT INTO a VALUES (2);\n",
        ),
        ("0003_create_b.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let before = db.snapshot().await;

    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    let detail = error_detail(&report, ErrorCode::MigrationFailed);
    assert_eq!(detail["file"], "0002_seed_a.sql", "{detail}");
    assert_eq!(detail["line"], 3, "{detail}");
    assert_eq!(detail["sqlstate"], "23505", "{detail}");
    assert_eq!(
        detail["detail"], "Key (id)=(1) already exists.",
        "the PostgreSQL detail: {detail}"
    );

    assert!(!db.has_table("a").await);
    assert_eq!(db.history_count().await, 0);
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_after_an_earlier_run_keeps_the_earlier_state() {
    let db = TestDb::new("failure_after_run").await;
    let dir = migrations_dir(BROKEN_THIRD);
    let migrator = db.migrator(dir.path());

    let report = migrator.apply(&to("0002")).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 2);
    let before = db.snapshot().await;
    assert_eq!(db.history_count().await, 2);

    let report = migrator.apply(&ApplyOptions::default()).await;
    let detail = error_detail(&report, ErrorCode::MigrationFailed);
    assert_eq!(detail["file"], "0003_create_c.sql", "{detail}");
    assert_eq!(detail["line"], 2, "{detail}");
    assert_eq!(report.current_version.as_deref(), Some("0002"));

    assert!(db.has_table("a").await && db.has_table("b").await);
    assert!(!db.has_table("c").await && !db.has_table("d").await);
    assert_eq!(db.history_count().await, 2);
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modified_applied_file_is_a_finding_and_stops_apply() {
    let db = TestDb::new("checksum_tamper").await;
    let dir = copy_example_migrations();
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    let before = db.snapshot().await;

    let file = dir.path().join("0002_create_tree_nodes.sql");
    let mut sql = std::fs::read_to_string(&file).unwrap();
    sql.push_str("-- edited after it ran\n");
    std::fs::write(&file, sql).unwrap();
    // A fresh migrator: the set is read when it is built.
    let migrator = db.migrator(dir.path());

    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.exit_code(), 1, "validate: not valid, not an error");
    assert_eq!(report.checksum_mismatches.len(), 1, "{}", report.to_json());
    assert_eq!(report.checksum_mismatches[0].version, "0002");
    assert_eq!(
        report.checksum_mismatches[0].script,
        "0002_create_tree_nodes.sql"
    );
    assert_ne!(
        report.checksum_mismatches[0].recorded_checksum,
        report.checksum_mismatches[0].file_checksum
    );

    let report = migrator.apply(&ApplyOptions::default()).await;
    let detail = error_detail(&report, ErrorCode::ChecksumMismatch);
    assert_eq!(
        detail["files"],
        serde_json::json!(["0002_create_tree_nodes.sql"]),
        "{detail}"
    );
    let message = &report.error.as_ref().unwrap().message;
    assert!(message.contains("0002_create_tree_nodes.sql"), "{message}");
    assert_eq!(report.exit_code(), 2);
    assert!(report.applied.is_empty());
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_line_endings_are_not_a_mismatch() {
    let db = TestDb::new("crlf").await;
    let dir = copy_example_migrations();
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    let before = db.snapshot().await;

    for name in ["0003_create_quiz_sessions.sql", "repeatable/views.sql"] {
        let file = dir.path().join(name);
        let sql = std::fs::read_to_string(&file).unwrap();
        assert!(!sql.contains('\r'));
        std::fs::write(&file, sql.replace('\n', "\r\n")).unwrap();
    }
    let migrator = db.migrator(dir.path());

    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );
    assert!(report.checksum_mismatches.is_empty() && report.pending.is_empty());

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.applied.is_empty(), "{}", report.to_json());
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_version_names_both_files_and_touches_nothing() {
    let db = TestDb::new("duplicate_version").await;
    let dir = migrations_dir(&[
        ("0001_base.sql", "CREATE TABLE base (id int);\n"),
        ("0002_a.sql", "CREATE TABLE a (id int);\n"),
        ("0002_b.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let before = db.snapshot().await;

    let error = MigrationSet::from_dir(dir.path()).unwrap_err();
    assert_eq!(error.code().as_str(), "duplicate_version", "{error}");
    let message = error.to_string();
    assert!(
        message.contains("0002_a.sql") && message.contains("0002_b.sql"),
        "{message}"
    );
    let detail = error.detail();
    let mut files: Vec<&str> = detail["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["0002_a.sql", "0002_b.sql"], "{detail}");

    // The CLI refuses the same way, before it touches the database.
    let run = run_cli(
        dir.path(),
        &[
            "apply",
            "--json",
            "--database-url",
            &db.url(),
            "--migrations",
            dir.path().to_str().unwrap(),
        ],
    );
    run.expect_code(2);
    assert_eq!(run.report()["error"]["code"], "duplicate_version", "{run}");

    assert!(!db.has_table("base").await);
    assert_eq!(db.history_count().await, 0);
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_version_missing_from_files_is_unknown() {
    let db = TestDb::new("unknown_version").await;
    let dir = migrations_dir(&[
        ("0001_create_a.sql", "CREATE TABLE a (id int);\n"),
        ("0002_create_b.sql", "CREATE TABLE b (id int);\n"),
        ("0003_create_c.sql", "CREATE TABLE c (id int);\n"),
    ]);
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 3);
    let before = db.snapshot().await;

    std::fs::remove_file(dir.path().join("0003_create_c.sql")).unwrap();
    std::fs::write(
        dir.path().join("0004_create_d.sql"),
        "CREATE TABLE d (id int);\n",
    )
    .unwrap();
    let migrator = db.migrator(dir.path());

    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.unknown_versions.len(), 1, "{}", report.to_json());
    assert_eq!(report.unknown_versions[0].version, "0003");
    assert_eq!(report.unknown_versions[0].description, "create c");

    let report = migrator.apply(&ApplyOptions::default()).await;
    let detail = error_detail(&report, ErrorCode::UnknownVersion);
    assert_eq!(detail["versions"], serde_json::json!(["0003"]), "{detail}");
    assert!(report.applied.is_empty());
    assert!(!db.has_table("d").await, "0004 must not run");
    assert_eq!(db.history_count().await, 3);
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_lock_held_elsewhere_times_out_after_retries_then_applies() {
    let db = TestDb::new("lock_timeout").await;
    let dir = copy_example_migrations();
    let migrator = db.migrator_with(dir.path(), fast_settings());
    let report = migrator.apply(&to("0003")).await;
    assert!(report.success, "{}", report.to_json());
    let before = db.snapshot().await;

    // 0004 alters quiz_sessions; hold its strongest lock in another session.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE quiz_sessions IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();

    let report = migrator.apply(&ApplyOptions::default()).await;
    let detail = error_detail(&report, ErrorCode::LockTimeout);
    assert_eq!(detail["attempts"], 3, "{detail}");
    assert!(report.applied.is_empty());

    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        db.snapshot().await,
        before,
        "a lock timeout changes nothing"
    );
    assert_eq!(db.history_count().await, 3);

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 3, "{}", report.to_json());
    assert!(db.has_table("quiz_analytics").await);
    assert_eq!(db.history_count().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_resets_the_session_still_applies_and_records() {
    let dir = migrations_dir(&[
        ("0001_reset.sql", "RESET ALL;\nCREATE TABLE a (id int);\n"),
        ("0002_next.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let db = TestDb::new("reset_all").await;
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 2);
    assert_eq!(db.history_count().await, 2);
    let again = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(
        again.success && again.applied.is_empty(),
        "{}",
        again.to_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_that_cannot_record_names_the_file_and_changes_nothing() {
    let db = TestDb::new("set_role").await;
    let role = format!("{}_nobody", db.name);
    db.client()
        .await
        .batch_execute(&format!("CREATE ROLE \"{role}\" NOLOGIN"))
        .await
        .expect("create role");
    let dir = migrations_dir(&[
        ("0001_a.sql", "CREATE TABLE a (id int);\n"),
        (
            "0002_role.sql",
            &format!("CREATE TABLE b (id int);\nSET ROLE \"{role}\";\n"),
        ),
        ("0003_c.sql", "CREATE TABLE c (id int);\n"),
    ]);
    let before = db.snapshot().await;
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    let detail = error_detail(&report, ErrorCode::MigrationFailed);
    assert_eq!(detail["file"], "0002_role.sql", "{}", report.to_json());
    let message = &report.error.as_ref().expect("error").message;
    assert!(
        message.contains("recording it in slipway's history failed")
            && message.contains("SET ROLE"),
        "{message}"
    );
    assert!(report.applied.is_empty());
    assert_eq!(db.snapshot().await, before, "nothing may change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_zero_undoes_a_version_zero_migration_too() {
    let dir = migrations_dir(&[
        ("0000_init.sql", "CREATE TABLE init (id int);\n"),
        ("0000_init_rollback.sql", "DROP TABLE init;\n"),
        ("0001_a.sql", "CREATE TABLE a (id int);\n"),
        ("0001_a_rollback.sql", "DROP TABLE a;\n"),
    ]);
    let db = TestDb::new("rollback_zero").await;
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    let report = db
        .migrator(dir.path())
        .rollback(&slipway::RollbackOptions {
            to: "0".into(),
            ..slipway::RollbackOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(
        report.rolled_back.as_ref().map(Vec::len),
        Some(2),
        "{}",
        report.to_json()
    );
    assert!(!db.has_table("init").await);
    assert!(!db.has_table("a").await);
    let validate = db.migrator(dir.path()).validate().await;
    assert_eq!(validate.current_version, None, "{}", validate.to_json());
    assert_eq!(validate.pending.len(), 2);
}
