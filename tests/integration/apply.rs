//! The engine against a real PostgreSQL: validate, apply, idempotency, dry
//! run, `--to`, repeatable scripts, odd file endings, and racing runs. What a
//! failure leaves behind (nothing) is `failures.rs`.

use crate::common::{copy_example_migrations, example_migrations, migrations_dir, TestDb};
use slipway::{ApplyOptions, Report};

/// Every script of the example set, in the order apply runs them.
const EXAMPLE_SCRIPTS: [&str; 6] = [
    "0001_create_users.sql",
    "0002_create_tree_nodes.sql",
    "0003_create_quiz_sessions.sql",
    "0004_add_difficulty_level.sql",
    "0005_create_progress_and_analytics.sql",
    "repeatable/views.sql",
];

fn to(version: &str) -> ApplyOptions {
    ApplyOptions {
        to: Some(version.into()),
        ..ApplyOptions::default()
    }
}

fn dry_run() -> ApplyOptions {
    ApplyOptions {
        dry_run: true,
        ..ApplyOptions::default()
    }
}

fn pending_scripts(report: &Report) -> Vec<&str> {
    report.pending.iter().map(|m| m.script.as_str()).collect()
}

fn applied_scripts(report: &Report) -> Vec<&str> {
    report.applied.iter().map(|m| m.script.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_database_validate_apply_apply_validate() {
    let db = TestDb::new("empty_cycle").await;
    let migrator = db.migrator(&example_migrations());

    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.pending.len(), 6, "{}", report.to_json());
    assert_eq!(report.current_version, None);
    assert_eq!(db.history_count().await, 0, "validate must not write");

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 6);
    assert_eq!(report.current_version.as_deref(), Some("0005"));
    assert!(report.schema_valid);
    assert!(db.has_table("quiz_analytics").await);
    let after_first = db.snapshot().await;

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.applied.is_empty(), "second apply must be a no-op");
    assert_eq!(db.snapshot().await, after_first);

    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );
    assert!(report.pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_on_empty_database_changes_nothing() {
    let db = TestDb::new("dry_run_empty").await;
    let migrator = db.migrator(&example_migrations());
    let before = db.snapshot().await;

    let report = migrator.apply(&dry_run()).await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.dry_run);
    assert!(report.applied.is_empty(), "{}", report.to_json());
    assert_eq!(pending_scripts(&report), EXAMPLE_SCRIPTS);
    assert_eq!(report.current_version, None);

    assert_eq!(db.snapshot().await, before);
    assert_eq!(db.history_count().await, 0);
    assert!(!db.has_table("users").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_on_database_at_0003_changes_nothing() {
    let db = TestDb::new("dry_run_0003").await;
    let migrator = db.migrator(&example_migrations());
    let report = migrator.apply(&to("0003")).await;
    assert!(report.success, "{}", report.to_json());
    let before = db.snapshot().await;

    let report = migrator.apply(&dry_run()).await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.dry_run);
    assert!(report.applied.is_empty(), "{}", report.to_json());
    assert_eq!(pending_scripts(&report), &EXAMPLE_SCRIPTS[3..]);
    assert_eq!(report.current_version.as_deref(), Some("0003"));
    assert_eq!(report.target_version.as_deref(), Some("0005"));

    assert_eq!(db.snapshot().await, before);
    assert_eq!(db.history_count().await, 3);
    assert!(!db.has_table("quiz_analytics").await);

    // The dry run left nothing behind that would stop the real run.
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(applied_scripts(&report), &EXAMPLE_SCRIPTS[3..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_stops_at_a_version_and_latest_applies_the_rest() {
    let db = TestDb::new("apply_to").await;
    let migrator = db.migrator(&example_migrations());

    let report = migrator.apply(&to("0002")).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(applied_scripts(&report), &EXAMPLE_SCRIPTS[..2]);
    assert_eq!(report.current_version.as_deref(), Some("0002"));
    assert_eq!(pending_scripts(&report), &EXAMPLE_SCRIPTS[2..]);
    assert!(!report.schema_valid);
    assert!(db.has_table("tree_nodes").await);
    assert!(!db.has_table("quiz_sessions").await);
    assert_eq!(db.history_count().await, 2);

    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.current_version.as_deref(), Some("0002"));
    assert_eq!(pending_scripts(&report), &EXAMPLE_SCRIPTS[2..]);

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(applied_scripts(&report), &EXAMPLE_SCRIPTS[2..]);
    assert_eq!(report.current_version.as_deref(), Some("0005"));
    assert!(report.schema_valid && report.pending.is_empty());
    assert!(db.has_table("quiz_analytics").await);
    assert_eq!(db.history_count().await, 6);

    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_without_final_newline_or_semicolon_apply() {
    let db = TestDb::new("file_endings").await;
    let dir = migrations_dir(&[
        (
            "0001_comment_last.sql",
            "CREATE TABLE t1 (id int);\n-- the last line is a comment, no newline",
        ),
        ("0002_no_semicolon.sql", "CREATE TABLE t2 (id int)"),
        (
            "0003_both.sql",
            "CREATE TABLE t3 (id int);\nINSERT INTO t3 VALUES (3) -- no semicolon either",
        ),
        (
            "repeatable/t_view.sql",
            "CREATE OR REPLACE VIEW t_view AS SELECT id FROM t3 -- end",
        ),
    ]);
    let migrator = db.migrator(dir.path());

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 4, "{}", report.to_json());
    for table in ["t1", "t2", "t3", "t_view"] {
        assert!(db.has_table(table).await, "{table} missing");
    }
    let client = db.client().await;
    let row = client.query_one("SELECT id FROM t3", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(db.history_count().await, 4);

    let after = db.snapshot().await;
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(
        report.success && report.applied.is_empty(),
        "{}",
        report.to_json()
    );
    assert_eq!(db.snapshot().await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_repeatable_script_is_pending_then_reapplied() {
    let db = TestDb::new("repeatable_changed").await;
    let dir = copy_example_migrations();
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());

    let file = dir.path().join("repeatable/views.sql");
    let mut sql = std::fs::read_to_string(&file).unwrap();
    sql.push_str("\nCOMMENT ON VIEW user_progress_summary IS 'version 2';\n");
    std::fs::write(&file, sql).unwrap();
    let migrator = db.migrator(dir.path());

    let report = migrator.validate().await;
    assert!(report.success, "{}", report.to_json());
    assert!(!report.schema_valid);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(pending_scripts(&report), ["repeatable/views.sql"]);
    assert!(
        report.checksum_mismatches.is_empty(),
        "a changed repeatable script is pending, not a mismatch"
    );
    assert_eq!(db.history_count().await, 6, "validate must not write");

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(applied_scripts(&report), ["repeatable/views.sql"]);
    assert!(report.schema_valid);

    let client = db.client().await;
    let rows = client
        .query(
            "SELECT checksum FROM slipway.history WHERE kind = 'repeatable' \
             AND script = 'repeatable/views.sql' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "a second repeatable row");
    assert_ne!(rows[0].get::<_, String>(0), rows[1].get::<_, String>(0));
    let comment = client
        .query_one(
            "SELECT obj_description('public.user_progress_summary'::regclass, 'pg_class')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        comment.get::<_, Option<String>>(0).as_deref(),
        Some("version 2")
    );
    assert_eq!(db.history_count().await, 7);

    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_applies_apply_each_migration_once() {
    let db = TestDb::new("concurrent").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let migrator = db.migrator(&example_migrations());
            tokio::spawn(async move { migrator.apply(&ApplyOptions::default()).await })
        })
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await.expect("apply task"));
    }

    for report in &reports {
        assert!(report.success, "{}", report.to_json());
        assert!(report.schema_valid, "{}", report.to_json());
        assert_eq!(report.current_version.as_deref(), Some("0005"));
    }
    let winners: Vec<&Report> = reports.iter().filter(|r| !r.applied.is_empty()).collect();
    assert_eq!(winners.len(), 1, "exactly one run applies");
    assert_eq!(applied_scripts(winners[0]), EXAMPLE_SCRIPTS);

    let client = db.client().await;
    let rows = client
        .query(
            "SELECT coalesce(version, script), kind, count(*) FROM slipway.history \
             GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(String, String, i64)> = ["0001", "0002", "0003", "0004", "0005"]
        .iter()
        .map(|v| ((*v).to_owned(), "versioned".to_owned(), 1))
        .chain([(
            "repeatable/views.sql".to_owned(),
            "repeatable".to_owned(),
            1,
        )])
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(db.history_count().await, 6);
    assert!(db.has_table("quiz_analytics").await);
}
