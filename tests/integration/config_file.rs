//! `slipway.toml` through the binary: found beside the migrations directory
//! or named by `--config`, below flags in precedence, and strict — a bad
//! file is a `config` error that leaves the database as it was.

use crate::common::{run_cli, TestDb};

/// A project directory: `migrations/` with one migration, and optionally a
/// `slipway.toml` beside it.
fn project(config: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).expect("migrations dir");
    std::fs::write(
        migrations.join("0001_create_notes.sql"),
        "CREATE TABLE notes (id bigint PRIMARY KEY);\n",
    )
    .expect("write migration");
    if let Some(text) = config {
        std::fs::write(dir.path().join("slipway.toml"), text).expect("write slipway.toml");
    }
    dir
}

async fn schemas_with_tables(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT DISTINCT table_schema::text FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .await
        .expect("list schemas")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn the_file_beside_the_migrations_sets_what_no_flag_gives() {
    let db = TestDb::new("config_file_beside").await;
    let dir = project(Some("history_schema = \"ops\"\nlock_timeout = \"2s\"\n"));
    let url = db.url();
    run_cli(dir.path(), &["--database-url", &url, "apply", "--json"]).expect_code(0);
    assert_eq!(schemas_with_tables(&db).await, ["ops", "public"]);
    // Validate reads the history where the file says it is.
    let run = run_cli(dir.path(), &["--database-url", &url, "validate", "--json"]);
    run.expect_code(0);
    assert_eq!(run.report()["current_version"], "0001", "{run}");
}

#[tokio::test]
async fn a_flag_beats_the_file() {
    let db = TestDb::new("config_file_flag").await;
    let dir = project(Some("history_schema = \"ops\"\n"));
    let url = db.url();
    run_cli(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--history-schema",
            "flagged",
            "apply",
            "--json",
        ],
    )
    .expect_code(0);
    assert_eq!(schemas_with_tables(&db).await, ["flagged", "public"]);
}

#[tokio::test]
async fn config_names_a_file_elsewhere() {
    let db = TestDb::new("config_file_named").await;
    let dir = project(None);
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let file = elsewhere.path().join("team.toml");
    std::fs::write(&file, "history_schema = \"team\"\n").expect("write config");
    let url = db.url();
    let file = file.display().to_string();
    run_cli(
        dir.path(),
        &["--database-url", &url, "--config", &file, "apply", "--json"],
    )
    .expect_code(0);
    assert_eq!(schemas_with_tables(&db).await, ["public", "team"]);
}

#[tokio::test]
async fn a_bad_file_is_a_config_error_that_changes_nothing() {
    let db = TestDb::new("config_file_bad").await;
    let url = db.url();
    for (text, named) in [
        ("history_schem = \"ops\"\n", "history_schem"),
        ("lock_timeout = \"soon\"\n", "not a duration"),
        ("lock_timeout = \"0\"\n", "--lock-timeout 0"),
        ("lock_retries = \"three\"\n", "slipway.toml"),
        ("[history\n", "slipway.toml"),
    ] {
        let dir = project(Some(text));
        let run = run_cli(dir.path(), &["--database-url", &url, "apply", "--json"]);
        run.expect_code(2);
        let report = run.report();
        assert_eq!(report["error"]["code"], "config", "{text}: {run}");
        let message = report["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{text}: {message}");
        assert!(
            schemas_with_tables(&db).await.is_empty(),
            "{text}: the database changed"
        );
    }
    let dir = project(None);
    let run = run_cli(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--config",
            "missing.toml",
            "apply",
            "--json",
        ],
    );
    run.expect_code(2);
    assert_eq!(run.report()["error"]["code"], "config", "{run}");
    assert!(schemas_with_tables(&db).await.is_empty());
}
