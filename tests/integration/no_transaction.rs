//! `-- slipway:no-transaction` migrations on a real server: run alone
//! between the transactions of the migrations around them, recorded only
//! after they succeed; a failed `CREATE UNIQUE INDEX CONCURRENTLY` leaves an
//! INVALID index that is reported, and dropped when the apply runs again
//! after the data is fixed.

use crate::common::{migrations_dir, TestDb};
use slipway::drift::DriftKind;
use slipway::{ApplyOptions, ErrorCode, Report, RollbackOptions};

fn applied(report: &Report) -> Vec<&str> {
    report.applied.iter().map(|m| m.script.as_str()).collect()
}

fn error_code(report: &Report) -> Option<ErrorCode> {
    report.error.as_ref().map(|e| e.code)
}

async fn index_validity(db: &TestDb, index: &str) -> Option<bool> {
    db.client()
        .await
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1",
            &[&index],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_transaction_migration_runs_alone_between_batches() {
    let db = TestDb::new("no_tx_applies").await;
    let dir = migrations_dir(&[
        ("0001_create_t.sql", "CREATE TABLE t (id int, v int);\n"),
        ("0001_create_t_rollback.sql", "DROP TABLE t;\n"),
        (
            "0002_index_v.sql",
            "-- slipway:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_v_idx ON t (v);\n",
        ),
        (
            "0002_index_v_rollback.sql",
            "-- slipway:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_v_idx;\n",
        ),
        ("0003_create_u.sql", "CREATE TABLE u (id int);\n"),
        ("0003_create_u_rollback.sql", "DROP TABLE u;\n"),
    ]);
    let migrator = db.migrator(dir.path());

    // A dry run cannot undo it, so it refuses, naming it.
    let before = db.snapshot().await;
    let report = migrator
        .apply(&ApplyOptions {
            dry_run: true,
            ..ApplyOptions::default()
        })
        .await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Config),
        "{}",
        report.to_json()
    );
    assert!(report.to_json().contains("0002_index_v.sql"));
    assert_eq!(db.snapshot().await, before);

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(
        applied(&report),
        ["0001_create_t.sql", "0002_index_v.sql", "0003_create_u.sql"]
    );
    assert_eq!(report.current_version.as_deref(), Some("0003"));
    assert_eq!(index_validity(&db, "t_v_idx").await, Some(true));
    assert_eq!(db.history_count().await, 3);
    let report = migrator.validate().await;
    assert!(report.schema_valid, "{}", report.to_json());
    let after = db.snapshot().await;
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success && report.applied.is_empty());
    assert_eq!(db.snapshot().await, after);

    // Its rollback script runs alone too.
    let report = migrator
        .rollback(&RollbackOptions {
            to: "0001".into(),
            ..RollbackOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(index_validity(&db, "t_v_idx").await, None);
    assert!(!db.has_table("u").await);
    let report = migrator.validate().await;
    assert!(report.drift.is_empty(), "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_concurrent_index_is_reported_and_recovered_on_the_next_run() {
    let db = TestDb::new("no_tx_invalid").await;
    let dir = migrations_dir(&[
        (
            "0001_create_t.sql",
            "CREATE TABLE t (id int PRIMARY KEY, email text);\nINSERT INTO t VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x');\n",
        ),
        ("0002_create_s.sql", "CREATE TABLE s (id int);\n"),
        (
            "0003_unique_email.sql",
            "-- slipway:no-transaction\n-- one statement, so a rerun starts from scratch\nCREATE UNIQUE INDEX CONCURRENTLY t_email_key ON t (email);\n",
        ),
        ("0004_create_u.sql", "CREATE TABLE u (id int);\n"),
    ]);
    let migrator = db.migrator(dir.path());
    assert!(
        migrator
            .apply(&ApplyOptions {
                to: Some("0001".into()),
                ..ApplyOptions::default()
            })
            .await
            .success
    );
    let before = db.snapshot().await;

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::MigrationFailed),
        "{}",
        report.to_json()
    );
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.detail["file"], "0003_unique_email.sql");
    assert_eq!(error.detail["line"], 3);
    assert_eq!(error.detail["sqlstate"], "23505");
    assert_eq!(
        error.detail["invalid_indexes"],
        serde_json::json!(["public.t_email_key"])
    );
    assert!(error.message.contains("INVALID"), "{}", error.message);
    // The batch before it committed; it and the one after did not.
    assert_eq!(applied(&report), ["0002_create_s.sql"]);
    assert_eq!(report.current_version.as_deref(), Some("0002"));
    assert_eq!(index_validity(&db, "t_email_key").await, Some(false));
    assert!(!db.has_table("u").await);
    // Exactly: 0002's table and history row, and the INVALID index.
    let after = db.snapshot().await;
    let mut added: Vec<&str> = after
        .lines()
        .filter(|line| !before.lines().any(|b| b == *line))
        .collect();
    added.sort_unstable();
    let history_row = format!(
        "history 0002 versioned 0002_create_s.sql {}",
        slipway::migrations::checksum("CREATE TABLE s (id int);\n")
    );
    assert_eq!(
        added,
        [
            "column public.s.id integer YES ",
            history_row.as_str(),
            "index CREATE UNIQUE INDEX t_email_key ON public.t USING btree (email)",
            "relation public.s r",
            "relation public.t_email_key i",
        ],
        "{after}"
    );
    assert!(before.lines().all(|b| after.lines().any(|a| a == b)));

    // validate shows it; apply does not refuse on it: the migration that
    // left it is pending and drops it before running again.
    let report = migrator.validate().await;
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.kind == DriftKind::ExtraIndex && d.object == "public.t.t_email_key"),
        "{}",
        report.to_json()
    );
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::MigrationFailed),
        "{}",
        report.to_json()
    );
    assert_eq!(
        report.dropped_invalid_indexes,
        ["public.t_email_key"],
        "{}",
        report.to_json()
    );

    // Fix the data, run again: dropped, rebuilt, valid, recorded.
    db.client()
        .await
        .execute("UPDATE t SET email = 'c@x' WHERE id = 2", &[])
        .await
        .unwrap();
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.dropped_invalid_indexes, ["public.t_email_key"]);
    assert_eq!(
        applied(&report),
        ["0003_unique_email.sql", "0004_create_u.sql"]
    );
    assert_eq!(index_validity(&db, "t_email_key").await, Some(true));
    let report = migrator.validate().await;
    assert!(report.schema_valid, "{}", report.to_json());
}
