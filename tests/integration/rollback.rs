//! `rollback --to V` against a real PostgreSQL: the example set rolled back
//! and applied again (the repeatable view over the rolled-back tables
//! included), dry runs, refusals that change nothing, a failing rollback
//! script, and rollbacks racing applies.

use crate::common::{copy_example_migrations, example_migrations, migrations_dir, run_cli, TestDb};
use slipway::drift::DriftKind;
use slipway::report::SchemaChangeKind;
use slipway::{ApplyOptions, ErrorCode, Report, RollbackOptions};

fn to(version: &str) -> ApplyOptions {
    ApplyOptions {
        to: Some(version.into()),
        ..ApplyOptions::default()
    }
}

fn back_to(version: &str) -> RollbackOptions {
    RollbackOptions {
        to: version.into(),
        ..RollbackOptions::default()
    }
}

fn rolled_back(report: &Report) -> Vec<&str> {
    report
        .rolled_back
        .as_ref()
        .map(|r| r.iter().filter_map(|m| m.version.as_deref()).collect())
        .unwrap_or_default()
}

fn pending_scripts(report: &Report) -> Vec<&str> {
    report.pending.iter().map(|m| m.script.as_str()).collect()
}

fn error_code(report: &Report) -> Option<ErrorCode> {
    report.error.as_ref().map(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_then_apply_again_restores_each_schema_exactly() {
    let db = TestDb::new("rollback_cycle").await;
    let migrator = db.migrator(&example_migrations());

    let report = migrator.apply(&to("0003")).await;
    assert!(report.success, "{}", report.to_json());
    let at_0003 = migrator.snapshot().await.unwrap();
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    let at_latest = migrator.snapshot().await.unwrap();
    assert!(at_latest
        .relations
        .contains_key("public.user_progress_summary"));

    // 0005's tables carry the repeatable view: the rollback drops it first.
    let report = migrator.rollback(&back_to("0003")).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(rolled_back(&report), ["0005", "0004"]);
    assert_eq!(report.current_version.as_deref(), Some("0003"));
    assert_eq!(
        pending_scripts(&report),
        [
            "0004_add_difficulty_level.sql",
            "0005_create_progress_and_analytics.sql",
            "repeatable/views.sql"
        ]
    );
    assert_eq!(migrator.snapshot().await.unwrap(), at_0003);

    // The recorded snapshot follows the rollback: no false drift.
    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.drift.is_empty(), "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.current_version.as_deref(), Some("0003"));
    assert_eq!(report.pending.len(), 3, "{}", report.to_json());

    // Apply again: the expected-snapshot check at the latest version passes.
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 3, "{}", report.to_json());
    assert_eq!(migrator.snapshot().await.unwrap(), at_latest);
    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );

    let client = db.client().await;
    let kinds: Vec<String> = client
        .query(
            "SELECT kind || ' ' || coalesce(version, '-') FROM slipway.history ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        &kinds[6..],
        [
            "rollback 0005",
            "rollback 0004",
            "versioned 0004",
            "versioned 0005",
            "repeatable -"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_zero_undoes_everything_and_is_idempotent() {
    let db = TestDb::new("rollback_zero").await;
    let migrator = db.migrator(&example_migrations());
    let empty = migrator.snapshot().await.unwrap();
    assert!(migrator.apply(&ApplyOptions::default()).await.success);

    let report = migrator.rollback(&back_to("0")).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(
        rolled_back(&report),
        ["0005", "0004", "0003", "0002", "0001"]
    );
    assert_eq!(report.current_version, None);
    assert_eq!(migrator.snapshot().await.unwrap(), empty);

    // Nothing above 0 is applied any more: a second rollback is a no-op.
    let before = db.snapshot().await;
    let report = migrator.rollback(&back_to("0")).await;
    assert!(report.success, "{}", report.to_json());
    assert!(rolled_back(&report).is_empty());
    assert_eq!(db.snapshot().await, before);

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_dry_run_changes_nothing() {
    let db = TestDb::new("rollback_dry_run").await;
    let migrator = db.migrator(&example_migrations());
    assert!(migrator.apply(&ApplyOptions::default()).await.success);
    let before = db.snapshot().await;

    let report = migrator
        .rollback(&RollbackOptions {
            to: "0001".into(),
            dry_run: true,
            ..RollbackOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.dry_run);
    assert_eq!(rolled_back(&report), ["0005", "0004", "0003", "0002"]);
    let changes = report.schema_changes.as_ref().expect("schema changes");
    assert!(
        changes
            .iter()
            .any(|c| c.change == SchemaChangeKind::Drop && c.object == "public.tree_nodes"),
        "{}",
        report.to_json()
    );
    assert_eq!(db.snapshot().await, before);
    let report = migrator.validate().await;
    assert!(report.schema_valid, "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_rollback_script_refuses_naming_all_and_changes_nothing() {
    let db = TestDb::new("rollback_missing").await;
    let dir = copy_example_migrations();
    std::fs::remove_file(dir.path().join("0004_add_difficulty_level_rollback.sql")).unwrap();
    std::fs::remove_file(dir.path().join("0002_create_tree_nodes_rollback.sql")).unwrap();
    let migrator = db.migrator(dir.path());
    assert!(migrator.apply(&ApplyOptions::default()).await.success);
    let before = db.snapshot().await;
    let catalog = migrator.snapshot().await.unwrap();

    let report = migrator.rollback(&back_to("0001")).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Config),
        "{}",
        report.to_json()
    );
    let detail = &report.error.as_ref().unwrap().detail;
    assert_eq!(detail["versions"], serde_json::json!(["0004", "0002"]));
    assert_eq!(
        detail["files"],
        serde_json::json!([
            "0004_add_difficulty_level_rollback.sql",
            "0002_create_tree_nodes_rollback.sql"
        ])
    );
    assert!(rolled_back(&report).is_empty());
    assert_eq!(db.snapshot().await, before);
    assert_eq!(migrator.snapshot().await.unwrap(), catalog);

    // Above the gaps it works.
    let report = migrator.rollback(&back_to("0004")).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(rolled_back(&report), ["0005"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_not_applied_is_refused() {
    let db = TestDb::new("rollback_target").await;
    let migrator = db.migrator(&example_migrations());
    assert!(migrator.apply(&to("0003")).await.success);
    let before = db.snapshot().await;

    for (target, words) in [
        ("0004", "not applied"),
        ("0009", "not among the migration files"),
        ("v2", "not a version"),
    ] {
        let report = migrator.rollback(&back_to(target)).await;
        assert_eq!(
            error_code(&report),
            Some(ErrorCode::Config),
            "{}",
            report.to_json()
        );
        assert!(
            report.error.as_ref().unwrap().message.contains(words),
            "{target}: {}",
            report.to_json()
        );
        assert_eq!(db.snapshot().await, before);
    }
    // The current version: nothing to do.
    let report = migrator.rollback(&back_to("0003")).await;
    assert!(report.success, "{}", report.to_json());
    assert!(rolled_back(&report).is_empty());
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_or_a_modified_file_stops_the_rollback_before_it_changes_anything() {
    let db = TestDb::new("rollback_drift").await;
    let dir = copy_example_migrations();
    let migrator = db.migrator(dir.path());
    assert!(migrator.apply(&ApplyOptions::default()).await.success);
    db.client()
        .await
        .batch_execute("CREATE TABLE hand_made (id int)")
        .await
        .unwrap();
    let before = db.snapshot().await;

    let report = migrator.rollback(&back_to("0003")).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Drift),
        "{}",
        report.to_json()
    );
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.kind == DriftKind::ExtraTable && d.object == "public.hand_made"),
        "{}",
        report.to_json()
    );
    assert_eq!(db.snapshot().await, before);

    db.client()
        .await
        .batch_execute("DROP TABLE hand_made")
        .await
        .unwrap();
    let before = db.snapshot().await;
    let file = dir.path().join("0002_create_tree_nodes.sql");
    let mut sql = std::fs::read_to_string(&file).unwrap();
    sql.push_str("-- edited after it ran\n");
    std::fs::write(&file, sql).unwrap();
    let report = db.migrator(dir.path()).rollback(&back_to("0001")).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::ChecksumMismatch),
        "{}",
        report.to_json()
    );
    assert_eq!(db.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollback_script_leaves_everything_as_it_was() {
    let db = TestDb::new("rollback_fails").await;
    let dir = migrations_dir(&[
        (
            "0001_create_a.sql",
            "CREATE TABLE a (id int PRIMARY KEY);\n",
        ),
        ("0001_create_a_rollback.sql", "DROP TABLE a;\n"),
        ("0002_create_b.sql", "CREATE TABLE b (id int);\n"),
        (
            "0002_create_b_rollback.sql",
            "-- drops the wrong table\nDROP TABLE b;\nDROP TABLE nonexistent;\n",
        ),
        ("0003_create_c.sql", "CREATE TABLE c (id int);\n"),
        ("0003_create_c_rollback.sql", "DROP TABLE c;\n"),
    ]);
    let migrator = db.migrator(dir.path());
    assert!(migrator.apply(&ApplyOptions::default()).await.success);
    let before = db.snapshot().await;

    let report = migrator.rollback(&back_to("0001")).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::MigrationFailed),
        "{}",
        report.to_json()
    );
    let detail = &report.error.as_ref().unwrap().detail;
    assert_eq!(detail["file"], "0002_create_b_rollback.sql", "{detail}");
    assert_eq!(detail["line"], 3, "{detail}");
    assert!(rolled_back(&report).is_empty(), "{}", report.to_json());
    assert_eq!(db.snapshot().await, before);
    assert!(db.has_table("c").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rollbacks_and_applies_do_not_corrupt() {
    let db = TestDb::new("rollback_race").await;
    // Six runs queue for the lock in turn: patient settings, so a loaded
    // machine does not turn a wait into a lock_timeout.
    let migrator = db.migrator_with(&example_migrations(), crate::common::patient_settings());
    assert!(migrator.apply(&to("0002")).await.success);
    let at_0002 = migrator.snapshot().await.unwrap();
    assert!(migrator.apply(&ApplyOptions::default()).await.success);
    let at_latest = migrator.snapshot().await.unwrap();

    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let migrator = migrator.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    migrator.rollback(&back_to("0002")).await
                } else {
                    migrator.apply(&ApplyOptions::default()).await
                }
            }));
        }
        for task in tasks {
            let report = task.await.unwrap();
            assert!(report.success, "round {round}: {}", report.to_json());
        }
        // Whichever ran last, the schema is exactly one of the two states,
        // and the history agrees with it.
        let report = migrator.validate().await;
        assert!(report.success, "{}", report.to_json());
        assert!(report.drift.is_empty(), "{}", report.to_json());
        let live = migrator.snapshot().await.unwrap();
        match report.current_version.as_deref() {
            Some("0005") => {
                assert!(report.schema_valid, "{}", report.to_json());
                assert_eq!(live, at_latest);
            }
            Some("0002") => assert_eq!(live, at_0002),
            other => panic!("current version {other:?}: {}", report.to_json()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rolls_back_and_needs_to() {
    let db = TestDb::new("rollback_cli").await;
    let url = db.url();
    let cwd = tempfile::tempdir().unwrap();
    let migrations = example_migrations();
    let migrations = migrations.to_str().unwrap();
    let base = ["--database-url", &url, "--migrations", migrations, "--json"];

    let run = run_cli(cwd.path(), &[&base[..], &["apply"]].concat());
    run.expect_code(0);
    let run = run_cli(cwd.path(), &[&base[..], &["rollback"]].concat());
    run.expect_code(2);
    assert_eq!(run.report()["error"]["code"], "config", "{run}");
    assert!(run.stdout().contains("--to"), "{run}");

    let run = run_cli(
        cwd.path(),
        &[&base[..], &["rollback", "--to", "0003", "--dry-run"]].concat(),
    );
    run.expect_code(0);
    assert_eq!(run.report()["dry_run"], true, "{run}");
    let run = run_cli(
        cwd.path(),
        &[&base[..], &["rollback", "--to", "0003"]].concat(),
    );
    run.expect_code(0);
    let report = run.report();
    assert_eq!(report["action"], "rollback", "{run}");
    assert_eq!(report["current_version"], "0003", "{run}");
    assert_eq!(report["rolled_back"][0]["version"], "0005", "{run}");
    assert_eq!(
        report["rolled_back"][0]["script"], "0005_create_progress_and_analytics_rollback.sql",
        "{run}"
    );
    run_cli(cwd.path(), &[&base[..], &["validate"]].concat()).expect_code(1);
    run_cli(cwd.path(), &[&base[..], &["apply"]].concat()).expect_code(0);
    run_cli(cwd.path(), &[&base[..], &["validate"]].concat()).expect_code(0);
}
