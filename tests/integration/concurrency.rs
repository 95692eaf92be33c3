//! Exactly once under concurrency, whatever the database's defaults: racing
//! applies and rollbacks under each isolation level as the database default,
//! a migration that frees slipway's session lock, the history's own unique
//! indexes, a read-only server, the guard that catches a batch whose
//! transaction was ended, and a bounded, visible wait for the lock.

use std::time::{Duration, Instant};

use crate::common::{self, migrations_dir, run_cli, TestDb};
use slipway::db::{BatchOptions, BatchSteps, History, HistorySetup};
use slipway::migrations::{Directives, Migration, MigrationKind};
use slipway::report::MigrationState;
use slipway::{ApplyOptions, ErrorCode, RollbackOptions};

/// Each migration leaves one row in `runs` per execution, so running twice
/// shows; each rollback script deletes its row.
const COUNTED: &[(&str, &str)] = &[
    (
        "0001_runs.sql",
        "CREATE TABLE runs (version text NOT NULL);\nINSERT INTO runs VALUES ('0001');\n",
    ),
    ("0001_runs_rollback.sql", "DROP TABLE runs;\n"),
    (
        "0002_a.sql",
        "CREATE TABLE a (id int);\nINSERT INTO runs VALUES ('0002');\n",
    ),
    (
        "0002_a_rollback.sql",
        "DROP TABLE a;\nDELETE FROM runs WHERE version = '0002';\n",
    ),
    (
        "0003_b.sql",
        "CREATE TABLE b (id int);\nINSERT INTO runs VALUES ('0003');\n",
    ),
    (
        "0003_b_rollback.sql",
        "DROP TABLE b;\nDELETE FROM runs WHERE version = '0003';\n",
    ),
];

const LEVELS: [&str; 3] = ["read committed", "repeatable read", "serializable"];

async fn database_with_isolation(test: &str, level: &str) -> TestDb {
    let db = TestDb::new(test).await;
    db.client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_isolation = '{level}'",
            db.name
        ))
        .await
        .expect("set the default isolation");
    db
}

/// `(version, executions)` from `runs`, and `(version, kind, rows)` of the
/// history, both sorted.
async fn counts(db: &TestDb) -> (Vec<(String, i64)>, Vec<(String, String, i64)>) {
    let client = db.client().await;
    let runs = client
        .query(
            "SELECT version, count(*) FROM runs GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect());
    // A rollback of 0001 drops `runs`: no table, no executions.
    let runs = common::or_if_undefined_table(runs, Vec::new(), "read the runs");
    let history = client
        .query(
            "SELECT coalesce(version, script), kind, count(*) FROM slipway.history GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("read the history")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    (runs, history)
}

fn once_each(versions: &[&str]) -> Vec<(String, i64)> {
    versions.iter().map(|v| ((*v).to_owned(), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_applies_run_each_migration_once_under_every_isolation_level() {
    let dir = migrations_dir(COUNTED);
    for level in LEVELS {
        let db = database_with_isolation("sixteen", level).await;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let migrator = db.migrator_with(dir.path(), common::patient_settings());
                tokio::spawn(async move { migrator.apply(&ApplyOptions::default()).await })
            })
            .collect();
        let mut applied = 0;
        for task in tasks {
            let report = task.await.expect("apply task");
            assert!(report.success, "{level}: {}", report.to_json());
            assert_eq!(report.current_version.as_deref(), Some("0003"));
            applied += report.applied.len();
        }
        assert_eq!(applied, 3, "{level}: the three migrations ran once in all");
        let (runs, history) = counts(&db).await;
        assert_eq!(runs, once_each(&["0001", "0002", "0003"]), "{level}");
        assert_eq!(
            history,
            ["0001", "0002", "0003"]
                .iter()
                .map(|v| ((*v).to_owned(), "versioned".to_owned(), 1))
                .collect::<Vec<_>>(),
            "{level}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_racing_rollback_keeps_history_and_schema_in_step() {
    let dir = migrations_dir(COUNTED);
    for level in LEVELS {
        let db = database_with_isolation("race_rollback", level).await;
        let first = db
            .migrator_with(dir.path(), common::patient_settings())
            .apply(&ApplyOptions::default())
            .await;
        assert!(first.success, "{}", first.to_json());
        let mut tasks = Vec::new();
        for round in 0..8 {
            let migrator = db.migrator_with(dir.path(), common::patient_settings());
            tasks.push(tokio::spawn(async move {
                if round % 2 == 0 {
                    migrator
                        .rollback(&RollbackOptions {
                            to: "0001".into(),
                            ..RollbackOptions::default()
                        })
                        .await
                } else {
                    migrator.apply(&ApplyOptions::default()).await
                }
            }));
        }
        for task in tasks {
            let report = task.await.expect("task");
            assert!(report.success, "{level}: {}", report.to_json());
        }
        // Whatever order they ran in, the schema is what the history says.
        let report = db
            .migrator_with(dir.path(), common::patient_settings())
            .status()
            .await;
        assert!(report.success, "{}", report.to_json());
        let applied: Vec<String> = report
            .migrations
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.state == MigrationState::Applied)
            .filter_map(|m| m.version)
            .collect();
        let (runs, _) = counts(&db).await;
        let applied: Vec<&str> = applied.iter().map(String::as_str).collect();
        assert_eq!(runs, once_each(&applied), "{level}");
        let client = db.client().await;
        for (table, version) in [("a", "0002"), ("b", "0003")] {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .await
                .expect("regclass")
                .get(0);
            assert_eq!(exists, applied.contains(&version), "{level}: table {table}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlock_all_inside_a_migration_still_excludes_other_runs() {
    let dir = migrations_dir(&[
        (
            "0001_runs.sql",
            "CREATE TABLE runs (version text NOT NULL);\n\
             SELECT pg_advisory_unlock_all();\n\
             SELECT pg_sleep(0.5);\n\
             INSERT INTO runs VALUES ('0001');\n",
        ),
        ("0001_runs_rollback.sql", "DROP TABLE runs;\n"),
    ]);
    let db = TestDb::new("unlock_all").await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let migrator = db.migrator_with(dir.path(), common::patient_settings());
            tokio::spawn(async move { migrator.apply(&ApplyOptions::default()).await })
        })
        .collect();
    for task in tasks {
        let report = task.await.expect("task");
        assert!(report.success, "{}", report.to_json());
    }
    let (runs, history) = counts(&db).await;
    assert_eq!(runs, once_each(&["0001"]));
    assert_eq!(history, [("0001".to_owned(), "versioned".to_owned(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_recording_of_an_applied_version_is_refused_by_the_database() {
    let dir = migrations_dir(COUNTED);
    let db = TestDb::new("unique_history").await;
    let report = db
        .migrator_with(dir.path(), common::patient_settings())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    let client = db.client().await;
    let duplicate = client
        .batch_execute(
            "INSERT INTO slipway.history (version, description, kind, script, checksum, client, execution_ms) \
             SELECT version, description, kind, script, checksum, client, execution_ms FROM slipway.history WHERE version = '0002'",
        )
        .await
        .expect_err("a second row for 0002 must be refused");
    assert_eq!(
        duplicate.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
        "{duplicate}"
    );
    // After a rollback the version may be applied again: a new generation.
    let rolled = db
        .migrator_with(dir.path(), common::patient_settings())
        .rollback(&RollbackOptions {
            to: "0001".into(),
            ..RollbackOptions::default()
        })
        .await;
    assert!(rolled.success, "{}", rolled.to_json());
    let again = db
        .migrator_with(dir.path(), common::patient_settings())
        .apply(&ApplyOptions::default())
        .await;
    assert!(again.success, "{}", again.to_json());
    assert_eq!(again.applied.len(), 2);
    let generations: Vec<(String, String, i32)> = client
        .query(
            "SELECT version, kind, generation FROM slipway.history WHERE version = '0002' ORDER BY id",
            &[],
        )
        .await
        .expect("generations")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        generations,
        [
            ("0002".to_owned(), "versioned".to_owned(), 0),
            ("0002".to_owned(), "rollback".to_owned(), 0),
            ("0002".to_owned(), "versioned".to_owned(), 1),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_from_an_older_slipway_gets_its_indexes_with_the_next_apply() {
    let dir = migrations_dir(COUNTED);
    let db = TestDb::new("upgrade_history").await;
    let apply_to = |version: &'static str| {
        let migrator = db.migrator_with(dir.path(), common::patient_settings());
        async move {
            migrator
                .apply(&ApplyOptions {
                    to: Some(version.into()),
                    ..ApplyOptions::default()
                })
                .await
        }
    };
    assert!(apply_to("0002").await.success);
    // What an older slipway left: no generation column, no unique indexes.
    db.client()
        .await
        .batch_execute(
            "DROP INDEX slipway.history_version_once; DROP INDEX slipway.history_repeatable_once; \
             ALTER TABLE slipway.history DROP COLUMN generation;",
        )
        .await
        .expect("downgrade the history");
    let report = apply_to("0003").await;
    assert!(report.success, "{}", report.to_json());
    let indexes: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'slipway' AND indexname IN ('history_version_once', 'history_repeatable_once')",
            &[],
        )
        .await
        .expect("indexes")
        .get(0);
    assert_eq!(indexes, 2);
    let (runs, _) = counts(&db).await;
    assert_eq!(runs, once_each(&["0001", "0002", "0003"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_refused_before_anything_runs() {
    let dir = migrations_dir(COUNTED);
    let db = TestDb::new("read_only").await;
    db.client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name
        ))
        .await
        .expect("make it read-only");
    let before = db.snapshot().await;
    let report = db
        .migrator_with(dir.path(), common::patient_settings())
        .apply(&ApplyOptions::default())
        .await;
    assert!(!report.success);
    let error = report.error.as_ref().expect("an error");
    assert_eq!(error.code, ErrorCode::Connection, "{}", report.to_json());
    assert_eq!(report.database.as_deref(), Some(db.name.as_str()));
    assert!(
        error.message.contains("read-only") && error.message.contains("primary"),
        "{}",
        error.message
    );
    assert_eq!(db.snapshot().await, before, "nothing may change");
    // validate is read-only and still answers.
    let validate = db
        .migrator_with(dir.path(), common::patient_settings())
        .validate()
        .await;
    assert!(validate.success, "{}", validate.to_json());
}

fn step(script: &str, version: &str, sql: &str) -> Migration {
    Migration {
        kind: MigrationKind::Versioned,
        version: slipway::migrations::Version::parse(version),
        description: script.into(),
        script: script.into(),
        sql: sql.into(),
        checksum: "0".repeat(64),
        directives: Directives::default(),
        rollback: None,
    }
}

/// Run `steps` as one batch by hand; it must fail.
async fn failed_batch(
    history: &History,
    client: &tokio_postgres::Client,
    steps: &[&Migration],
    setup: HistorySetup,
) -> slipway::Error {
    let options = BatchOptions {
        lock_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
        client: "test:guard".into(),
    };
    let batch = BatchSteps {
        steps,
        setup,
        drop_first: &[],
        catalog_before: None,
    };
    match history.run_batch(client, &batch, &options, None).await {
        Err(slipway::db::BatchError::Failed(error)) => error,
        other => panic!("the batch must fail: {other:?}"),
    }
}

/// The file loader refuses transaction control however it is written; the
/// guard inside the batch is what still holds if a statement got through
/// anyway. Here the batch is built by hand, past the loader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_stops_a_batch_whose_transaction_was_ended() {
    let db = TestDb::new("guard").await;
    let client = slipway::connect::connect(&db.connect_options())
        .await
        .expect("connect");
    let history = History::new("slipway").expect("history");
    let first = step("0001_a.sql", "0001", "CREATE TABLE a (id int);\nCOMMIT;\n");
    let second = step("0002_b.sql", "0002", "CREATE TABLE b (id int);\n");
    let steps = [&first, &second];
    let error = failed_batch(&history, &client, &steps, HistorySetup::Create).await;
    assert_eq!(error.code().as_str(), "migration_failed", "{error}");
    assert!(
        error.to_string().contains("ended the transaction"),
        "{error}"
    );
    // The next migration never ran, and 0001 was not recorded.
    let inspect = db.client().await;
    let b: bool = inspect
        .query_one("SELECT to_regclass('public.b') IS NOT NULL", &[])
        .await
        .expect("regclass")
        .get(0);
    assert!(!b, "the statements after the guard must not run");
    let recorded: i64 = inspect
        .query_one("SELECT count(*) FROM slipway.history", &[])
        .await
        .expect("history")
        .get(0);
    assert_eq!(recorded, 0);

    // COMMIT then BEGIN: the savepoint probe passes in the new block; the
    // identity check at the end of the batch does not.
    let first = step(
        "0003_c.sql",
        "0003",
        "CREATE TABLE c (id int);\nCOMMIT;\nBEGIN;\n",
    );
    let second = step("0004_d.sql", "0004", "CREATE TABLE d (id int);\n");
    let steps = [&first, &second];
    let error = failed_batch(&history, &client, &steps, HistorySetup::Ready).await;
    assert_eq!(error.code().as_str(), "migration_failed", "{error}");
    assert!(
        error.to_string().contains("a BEGIN opened another"),
        "{error}"
    );
    let d: bool = inspect
        .query_one("SELECT to_regclass('public.d') IS NOT NULL", &[])
        .await
        .expect("regclass")
        .get(0);
    assert!(!d, "what ran in the new transaction must be rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_lock_is_bounded_and_names_the_holder() {
    let dir = migrations_dir(&[(
        "0001_slow.sql",
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(6);\n",
    )]);
    let db = TestDb::new("bounded_wait").await;
    let url = db.url();
    let holder = {
        let migrator = db.migrator_with(dir.path(), common::patient_settings());
        tokio::spawn(async move { migrator.apply(&ApplyOptions::default()).await })
    };
    // Wait until the first run holds the lock and is inside its migration.
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'slipway: 0001_slow.sql'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if running == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the first run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let url_arg = url.clone();
    let dir_arg = dir.path().to_path_buf();
    let second = tokio::task::spawn_blocking(move || {
        run_cli(
            &dir_arg,
            &[
                "--database-url",
                &url_arg,
                "--migrations",
                ".",
                "--lock-timeout",
                "1s",
                "--lock-retries",
                "0",
                "--json",
                "apply",
            ],
        )
    })
    .await
    .expect("cli");
    let waited = started.elapsed();
    second.expect_code(2);
    let report = second.report();
    assert_eq!(report["error"]["code"], "lock_timeout", "{second}");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("pid"), "{message}");
    assert!(second.stderr().contains("waiting"), "{second}");
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");
    let first = holder.await.expect("first run");
    assert!(first.success, "{}", first.to_json());
}
