//! `slipway verify` on a real server: the example migrations round-trip
//! exactly (this is the check `make test` runs on migrations/), and a
//! rollback that forgets an index, or is missing, is named.

use crate::common::{self, cluster, example_migrations, migrations_dir, run_cli};
use slipway::drift::DriftKind;
use slipway::report::Report;
use slipway::{ConnectOptions, Database, ErrorCode, MigrationSet};

/// The harness's server, as the scratch databases' host.
fn server() -> Database {
    Database::new(
        ConnectOptions::new(cluster().config("postgres")),
        "test:verify",
    )
}

async fn verify(dir: &std::path::Path) -> Report {
    let set = MigrationSet::from_dir(dir).expect("load migrations");
    slipway::verify::verify(&set, &server(), &common::fast_settings()).await
}

fn problems(report: &Report) -> Vec<String> {
    report
        .verify
        .as_ref()
        .map(|steps| steps.iter().flat_map(|s| s.problems.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_migration_round_trips_exactly() {
    let report = verify(&example_migrations()).await;
    assert!(report.success, "{}", report.to_json());
    let steps = report.verify.as_ref().expect("verify steps");
    let versions: Vec<&str> = steps.iter().map(|s| s.version.as_str()).collect();
    assert_eq!(versions, ["0001", "0002", "0003", "0004", "0005"]);
    assert!(steps.iter().all(|s| s.ok), "{}", report.to_json());
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_forgets_an_index_is_named() {
    let dir = migrations_dir(&[
        (
            "0001_create_sessions.sql",
            "CREATE TABLE quiz_sessions (id int PRIMARY KEY, level text);\n",
        ),
        ("0001_create_sessions_rollback.sql", "DROP TABLE quiz_sessions;\n"),
        (
            "0002_index_level.sql",
            "CREATE INDEX idx_quiz_sessions_level ON quiz_sessions (level);\nALTER TABLE quiz_sessions ADD COLUMN note text;\n",
        ),
        (
            "0002_index_level_rollback.sql",
            "-- forgets the index\nALTER TABLE quiz_sessions DROP COLUMN note;\n",
        ),
        ("0003_create_other.sql", "CREATE TABLE other (id int);\n"),
        ("0003_create_other_rollback.sql", "DROP TABLE other;\n"),
    ]);
    let report = verify(dir.path()).await;
    assert!(!report.success, "{}", report.to_json());
    assert_eq!(report.exit_code(), 2);
    let error = report.error.as_ref().expect("an error");
    assert_eq!(error.code, ErrorCode::Drift, "{}", report.to_json());
    assert!(
        error
            .message
            .contains("0002 rollback leaves index public.quiz_sessions.idx_quiz_sessions_level"),
        "{}",
        report.to_json()
    );
    let steps = report.verify.as_ref().unwrap();
    assert!(steps[0].ok);
    assert!(!steps[1].ok);
    assert_eq!(steps[1].rollback_drift.len(), 1, "{}", report.to_json());
    assert_eq!(steps[1].rollback_drift[0].kind, DriftKind::ExtraIndex);
    // The re-apply then trips over the index the rollback left.
    assert!(
        problems(&report)
            .iter()
            .any(|p| p.starts_with("0002 re-apply failed")),
        "{}",
        report.to_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_rollback_script_fails_verify_and_the_rest_still_runs() {
    let dir = migrations_dir(&[
        ("0001_create_a.sql", "CREATE TABLE a (id int);\n"),
        ("0002_create_b.sql", "CREATE TABLE b (id int);\n"),
        ("0002_create_b_rollback.sql", "DROP TABLE b;\n"),
    ]);
    let report = verify(dir.path()).await;
    assert!(!report.success, "{}", report.to_json());
    let steps = report.verify.as_ref().unwrap();
    assert_eq!(steps.len(), 2, "{}", report.to_json());
    assert!(!steps[0].ok);
    assert!(
        steps[0].problems[0].contains("0001_create_a_rollback.sql"),
        "{}",
        report.to_json()
    );
    assert!(steps[1].ok, "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_functions_and_views_are_dropped_by_the_rollback() {
    let dir = migrations_dir(&[
        ("0001_create_t.sql", "CREATE TABLE t (id int, v int);\n"),
        ("0001_create_t_rollback.sql", "DROP TABLE t;\n"),
        ("0002_add_w.sql", "ALTER TABLE t ADD COLUMN w int;\n"),
        ("0002_add_w_rollback.sql", "ALTER TABLE t DROP COLUMN w;\n"),
        (
            "repeatable/report.sql",
            "CREATE OR REPLACE FUNCTION total(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b';\n\
             CREATE OR REPLACE VIEW t_totals AS SELECT id, total(v, w) AS total FROM t;\n\
             CREATE OR REPLACE VIEW t_big AS SELECT * FROM t_totals WHERE total > 10;\n",
        ),
    ]);
    let report = verify(dir.path()).await;
    assert!(report.success, "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_on_a_scratch_database_of_the_given_server() {
    let cwd = tempfile::tempdir().unwrap();
    let url = cluster().url("postgres");
    let migrations = example_migrations();
    let run = run_cli(
        cwd.path(),
        &[
            "verify",
            "--database-url",
            &url,
            "--migrations",
            migrations.to_str().unwrap(),
            "--json",
        ],
    );
    run.expect_code(0);
    let report = run.report();
    assert_eq!(report["action"], "verify", "{run}");
    assert_eq!(report["verify"].as_array().map(Vec::len), Some(5), "{run}");
    let scratch = report["database"].as_str().unwrap_or_default().to_owned();
    assert!(scratch.starts_with("slipway_verify_"), "{run}");

    let broken = migrations_dir(&[
        (
            "0001_create_t.sql",
            "CREATE TABLE t (id int);\nCREATE INDEX t_id_idx ON t (id);\n",
        ),
        ("0001_create_t_rollback.sql", "DROP INDEX t_id_idx;\n"),
    ]);
    let run = run_cli(
        cwd.path(),
        &[
            "verify",
            "--database-url",
            &url,
            "--migrations",
            broken.path().to_str().unwrap(),
        ],
    );
    run.expect_code(2);
    assert!(
        run.stdout().contains("0001 rollback leaves table public.t"),
        "{run}"
    );
    // The scratch database is gone.
    let client = {
        let (client, connection) = cluster()
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&scratch],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
