//! Drift detection against a real PostgreSQL: each out-of-band change is
//! reported as exactly its items; a clean database reports none; the
//! committed `migrations/schema.snapshot.json` is current (the CI gate) and
//! a stale one fails; a conflicting pre-existing object rolls an apply back
//! with `drift` unless `allow_drift`; snapshots are stable across databases
//! and restarts; the catalog is read with a fixed number of queries.

use std::path::Path;

use crate::common::{
    self, copy_example_migrations, example_migrations, migrations_dir, run_cli, TestDb,
};
use slipway::db::catalog::{self, CatalogQuery, Snapshot, QUERY_COUNT};
use slipway::drift::{DriftKind, ObjectType};
use slipway::engine::build_expected_snapshot;
use slipway::migrations::EXPECTED_SNAPSHOT_FILE;
use slipway::report::SchemaChangeKind;
use slipway::{ApplyOptions, ConnectOptions, Database, ErrorCode, MigrationSet, Migrator, Report};
use slipway_local::LocalCluster;

fn allow_drift() -> ApplyOptions {
    ApplyOptions {
        allow_drift: true,
        ..ApplyOptions::default()
    }
}

/// `(kind, object)` of every drift item.
fn drift(report: &Report) -> Vec<(DriftKind, String)> {
    report
        .drift
        .iter()
        .map(|d| (d.kind, d.object.clone()))
        .collect()
}

fn pairs(items: &[(DriftKind, &str)]) -> Vec<(DriftKind, String)> {
    items.iter().map(|(k, o)| (*k, (*o).to_owned())).collect()
}

fn error_code(report: &Report) -> Option<ErrorCode> {
    report.error.as_ref().map(|e| e.code)
}

/// The example migrations plus a repeatable function, without a committed
/// snapshot: drift is then judged against what the database recorded.
fn example_with_function() -> tempfile::TempDir {
    let dir = copy_example_migrations();
    std::fs::remove_file(dir.path().join(EXPECTED_SNAPSHOT_FILE)).expect("remove snapshot");
    std::fs::write(
        dir.path().join("repeatable/functions.sql"),
        "CREATE OR REPLACE FUNCTION mastery_band(level numeric) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN level >= 80 THEN 'mastered' WHEN level >= 40 THEN 'practising' ELSE 'learning' END
$$;
",
    )
    .expect("write function");
    dir
}

/// A target on `db`'s server, for building expected snapshots there.
fn server_of(db: &TestDb) -> Database {
    Database::new(db.connect_options(), "test:snapshot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_database_reports_no_drift_and_records_its_snapshot() {
    let db = TestDb::new("drift_clean").await;
    let migrator = db.migrator(&example_migrations());
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    assert!(report.drift.is_empty(), "{}", report.to_json());

    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );
    assert!(report.drift.is_empty());

    // The snapshot of the apply is stored, and its fingerprint is on the
    // last history row.
    let live = migrator.snapshot().await.expect("snapshot");
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT s.fingerprint, s.format, s.snapshot::text, \
                    (SELECT catalog_fingerprint FROM slipway.history ORDER BY id DESC LIMIT 1), \
                    (SELECT count(*) FROM slipway.schema_snapshot) \
             FROM slipway.schema_snapshot s",
            &[],
        )
        .await
        .expect("read the stored snapshot");
    assert_eq!(row.get::<_, String>(0), live.fingerprint());
    assert_eq!(row.get::<_, i32>(1), 1);
    let stored = Snapshot::from_json(&row.get::<_, String>(2), "stored").expect("parse");
    assert_eq!(stored, live);
    assert_eq!(row.get::<_, Option<String>>(3), Some(live.fingerprint()));
    assert_eq!(row.get::<_, i64>(4), 1, "only the latest snapshot is kept");
    let intermediate = client
        .query_one(
            "SELECT count(*) FROM slipway.history WHERE catalog_fingerprint IS NULL",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(
        intermediate.get::<_, i64>(0),
        5,
        "only the batch's last row has the fingerprint"
    );

    // The live schema is the committed expected one.
    let expected = Snapshot::from_json(
        &std::fs::read_to_string(example_migrations().join(EXPECTED_SNAPSHOT_FILE))
            .expect("read the committed snapshot"),
        "committed",
    )
    .expect("parse");
    assert_eq!(
        live.relations.keys().collect::<Vec<_>>(),
        expected.relations.keys().collect::<Vec<_>>()
    );
    assert_eq!(live, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_out_of_band_change_is_exactly_its_items() {
    /// What is done by hand, and the `(kind, object)` items it must yield.
    type Case = (
        &'static str,
        &'static str,
        &'static [(DriftKind, &'static str)],
    );
    let cases: [Case; 7] = [
        (
            "add a column",
            "ALTER TABLE users ADD COLUMN nickname text",
            &[(DriftKind::ExtraColumn, "public.users.nickname")],
        ),
        (
            "drop an index",
            "DROP INDEX users_created_at_idx",
            &[(DriftKind::MissingIndex, "public.users.users_created_at_idx")],
        ),
        (
            "change a default",
            "ALTER TABLE users ALTER COLUMN role SET DEFAULT 'tutor'",
            &[(DriftKind::DefaultChanged, "public.users.role")],
        ),
        (
            "add a table",
            "CREATE TABLE audit_log (id bigint PRIMARY KEY, note text NOT NULL)",
            &[(DriftKind::ExtraTable, "public.audit_log")],
        ),
        (
            "replace a function body",
            "CREATE OR REPLACE FUNCTION mastery_band(level numeric) RETURNS text \
             LANGUAGE sql IMMUTABLE AS $$ SELECT 'mastered' $$",
            &[(DriftKind::FunctionChanged, "public.mastery_band(numeric)")],
        ),
        (
            "drop NOT NULL",
            "ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL",
            &[(DriftKind::NullabilityChanged, "public.users.display_name")],
        ),
        (
            "add a check constraint",
            "ALTER TABLE quiz_sessions ADD CONSTRAINT quiz_sessions_score_positive_check CHECK (score > 0)",
            &[(
                DriftKind::ExtraConstraint,
                "public.quiz_sessions.quiz_sessions_score_positive_check",
            )],
        ),
    ];
    let dir = example_with_function();
    for (what, sql, expected) in cases {
        let db = TestDb::new("drift_change").await;
        let migrator = db.migrator(dir.path());
        let report = migrator.apply(&ApplyOptions::default()).await;
        assert!(report.success, "{what}: {}", report.to_json());
        let report = migrator.validate().await;
        assert!(report.drift.is_empty(), "{what}: {}", report.to_json());

        db.client().await.batch_execute(sql).await.expect(what);

        let report = migrator.validate().await;
        assert!(report.success, "{what}: {}", report.to_json());
        assert_eq!(
            drift(&report),
            pairs(expected),
            "{what}: {}",
            report.to_json()
        );
        assert!(!report.schema_valid, "{what}");
        assert_eq!(report.exit_code(), 1, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_items_say_what_was_expected_and_what_was_found() {
    let db = TestDb::new("drift_values").await;
    let dir = example_with_function();
    let migrator = db.migrator(dir.path());
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE quiz_sessions ADD COLUMN notes varchar(200) NOT NULL DEFAULT '';
             ALTER TABLE users ALTER COLUMN role SET DEFAULT 'tutor';
             ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL;",
        )
        .await
        .expect("out-of-band changes");
    let report = migrator.validate().await;
    let by_object = |object: &str| {
        report
            .drift
            .iter()
            .find(|d| d.object == object)
            .unwrap_or_else(|| panic!("no item for {object}: {}", report.to_json()))
    };
    let notes = by_object("public.quiz_sessions.notes");
    assert_eq!(notes.kind, DriftKind::ExtraColumn);
    assert_eq!(notes.expected, None);
    assert_eq!(
        notes.actual.as_deref(),
        Some("character varying(200) NOT NULL DEFAULT ''::character varying")
    );
    let role = by_object("public.users.role");
    assert_eq!(
        role.expected.as_deref(),
        Some("'student'::character varying")
    );
    assert_eq!(role.actual.as_deref(), Some("'tutor'::character varying"));
    let name = by_object("public.users.display_name");
    assert_eq!(
        (name.expected.as_deref(), name.actual.as_deref()),
        (Some("NOT NULL"), Some("NULL"))
    );

    let text = report.render_human(false);
    assert!(
        text.contains(
            "  public.quiz_sessions\n    + column notes  character varying(200) NOT NULL DEFAULT ''::character varying\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  public.users\n    ~ column display_name nullability  NOT NULL → NULL\n    ~ column role default  'student'::character varying → 'tutor'::character varying\n"),
        "{text}"
    );
    assert!(
        text.contains("schema not valid: the schema drifted"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_recorded_drift_until_allowed_then_accepts_it() {
    let db = TestDb::new("drift_refuse").await;
    let dir = example_with_function();
    let migrator = db.migrator(dir.path());
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    db.client()
        .await
        .batch_execute("DROP INDEX quiz_sessions_tree_node_id_idx")
        .await
        .expect("drop index");

    // A new migration is pending, but the schema drifted: nothing runs.
    std::fs::write(
        dir.path().join("0006_add_nickname.sql"),
        "ALTER TABLE users ADD COLUMN nickname text;\n",
    )
    .expect("write 0006");
    let migrator = db.migrator(dir.path());
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Drift),
        "{}",
        report.to_json()
    );
    assert_eq!(report.exit_code(), 2);
    assert_eq!(
        drift(&report),
        pairs(&[(
            DriftKind::MissingIndex,
            "public.quiz_sessions.quiz_sessions_tree_node_id_idx"
        )])
    );
    let error = report.error.as_ref().expect("error");
    assert!(error.message.contains("--allow-drift"), "{}", error.message);
    assert_eq!(error.detail["count"], 1);
    assert!(report.applied.is_empty());
    assert_eq!(db.history_count().await, 7, "0006 must not run");

    let report = migrator.apply(&allow_drift()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.drift.len(), 1, "the report still lists the drift");
    assert!(report.schema_valid);

    // Accepted: the live schema (without the index, with 0006) is recorded.
    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid && report.drift.is_empty(),
        "{}",
        report.to_json()
    );

    // Nothing pending: --allow-drift on a no-op apply records the drift too.
    db.client()
        .await
        .batch_execute("ALTER TABLE users ALTER COLUMN email DROP NOT NULL")
        .await
        .expect("drop not null");
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Drift),
        "{}",
        report.to_json()
    );
    let report = migrator.apply(&allow_drift()).await;
    assert!(
        report.success && report.applied.is_empty(),
        "{}",
        report.to_json()
    );
    assert_eq!(
        drift(&report),
        pairs(&[(DriftKind::NullabilityChanged, "public.users.email")])
    );
    let report = migrator.validate().await;
    assert!(report.schema_valid, "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_snapshot_is_current() {
    let db = TestDb::new("snapshot_current").await;
    let set = MigrationSet::from_dir(&example_migrations()).expect("load migrations");
    let built = build_expected_snapshot(&set, &server_of(&db))
        .await
        .expect("build the expected snapshot");
    let path = example_migrations().join(EXPECTED_SNAPSHOT_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == built.to_pretty_json(),
        "{} is stale: the migrations produce another schema. Refresh it with \
         `cargo run -- snapshot --out migrations/{EXPECTED_SNAPSHOT_FILE}` (or `make snapshot`) and commit it.",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_committed_snapshot_fails_the_check_and_the_apply() {
    let db = TestDb::new("snapshot_stale").await;
    let dir = copy_example_migrations();
    std::fs::write(
        dir.path().join("0006_add_nickname.sql"),
        "ALTER TABLE users ADD COLUMN nickname text;\n",
    )
    .expect("write 0006");

    // The check: what the migrations build is not the committed file.
    let set = MigrationSet::from_dir(dir.path()).expect("load migrations");
    let built = build_expected_snapshot(&set, &server_of(&db))
        .await
        .expect("build");
    let committed = std::fs::read_to_string(dir.path().join(EXPECTED_SNAPSHOT_FILE)).unwrap();
    assert_ne!(committed, built.to_pretty_json());

    // The same through the CLI: --check exits 1 and says how to refresh.
    let url = db.url();
    let migrations = dir.path().to_str().expect("utf-8 path");
    let run = run_cli(
        dir.path(),
        &[
            "snapshot",
            "--check",
            "--database-url",
            &url,
            "--migrations",
            migrations,
        ],
    );
    run.expect_code(1);
    assert!(
        run.stderr().contains("is stale") && run.stderr().contains("slipway snapshot --out"),
        "{run}"
    );

    // And apply, which compares before COMMIT, rolls everything back.
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Drift),
        "{}",
        report.to_json()
    );
    assert_eq!(
        drift(&report),
        pairs(&[(DriftKind::ExtraColumn, "public.users.nickname")])
    );
    assert!(report.applied.is_empty());
    assert_eq!(db.history_count().await, 0);
    assert!(!db.has_table("users").await, "rolled back as a whole");

    // Refreshing the snapshot makes the same apply pass.
    let run = run_cli(
        dir.path(),
        &[
            "snapshot",
            "--database-url",
            &url,
            "--migrations",
            migrations,
        ],
    );
    run.expect_code(0);
    let run = run_cli(
        dir.path(),
        &[
            "snapshot",
            "--check",
            "--database-url",
            &url,
            "--migrations",
            migrations,
        ],
    );
    run.expect_code(0);
    let report = db
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_existing_conflicting_object_rolls_back_with_drift_unless_allowed() {
    // The migration tolerates an existing table, so it "succeeds" on a
    // database where someone created the table by hand, differently.
    let dir = migrations_dir(&[(
        "0001_create_settings.sql",
        "CREATE TABLE IF NOT EXISTS settings (key text PRIMARY KEY, value text NOT NULL);\n",
    )]);
    let clean = TestDb::new("conflict_clean").await;
    let set = MigrationSet::from_dir(dir.path()).expect("load");
    let expected = build_expected_snapshot(&set, &server_of(&clean))
        .await
        .expect("build");
    std::fs::write(
        dir.path().join(EXPECTED_SNAPSHOT_FILE),
        expected.to_pretty_json(),
    )
    .expect("write snapshot");
    let report = clean
        .migrator(dir.path())
        .apply(&ApplyOptions::default())
        .await;
    assert!(
        report.success && report.drift.is_empty(),
        "{}",
        report.to_json()
    );

    let db = TestDb::new("conflict").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE settings (key text PRIMARY KEY); CREATE TABLE legacy (id int)")
        .await
        .expect("pre-existing objects");
    let before = db.snapshot().await;
    let migrator = db.migrator(dir.path());

    let report = migrator.apply(&ApplyOptions::default()).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Drift),
        "{}",
        report.to_json()
    );
    assert_eq!(
        drift(&report),
        pairs(&[
            (DriftKind::ExtraTable, "public.legacy"),
            (DriftKind::MissingColumn, "public.settings.value"),
        ])
    );
    assert!(report.applied.is_empty());
    assert_eq!(db.snapshot().await, before, "nothing survives");
    assert_eq!(db.history_count().await, 0);

    let report = migrator.apply(&allow_drift()).await;
    assert!(report.success, "{}", report.to_json());
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.drift.len(), 2);
    let report = migrator.validate().await;
    assert!(report.schema_valid, "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_the_schema_changes_it_would_make() {
    let db = TestDb::new("drift_dry_run").await;
    let migrator = db.migrator(&example_migrations());
    let report = migrator
        .apply(&ApplyOptions {
            to: Some("0003".into()),
            ..ApplyOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
    let before = db.snapshot().await;

    let report = migrator
        .apply(&ApplyOptions {
            dry_run: true,
            ..ApplyOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
    let changes = report.schema_changes.clone().expect("schema changes");
    let summary: Vec<(SchemaChangeKind, ObjectType, &str)> = changes
        .iter()
        .map(|c| (c.change, c.object_type, c.object.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                SchemaChangeKind::Create,
                ObjectType::Table,
                "public.progress_records"
            ),
            (
                SchemaChangeKind::Create,
                ObjectType::Table,
                "public.quiz_analytics"
            ),
            (
                SchemaChangeKind::Create,
                ObjectType::Column,
                "public.quiz_sessions.difficulty_level"
            ),
            (
                SchemaChangeKind::Create,
                ObjectType::Constraint,
                "public.quiz_sessions.quiz_sessions_difficulty_level_check"
            ),
            (
                SchemaChangeKind::Create,
                ObjectType::Index,
                "public.quiz_sessions.quiz_sessions_tree_node_id_difficulty_level_idx"
            ),
            (
                SchemaChangeKind::Create,
                ObjectType::View,
                "public.user_progress_summary"
            ),
        ]
    );
    assert!(report.drift.is_empty(), "{}", report.to_json());
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(
        json["schema_changes"][2]["after"],
        "character varying(20) NOT NULL DEFAULT 'medium'::character varying"
    );
    let text = report.render_human(false);
    assert!(
        text.contains("schema changes (made, then rolled back):"),
        "{text}"
    );
    assert!(
        text.contains(
            "  public.quiz_sessions\n    + column difficulty_level  character varying(20)"
        ),
        "{text}"
    );
    assert_eq!(db.snapshot().await, before, "a dry run changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_from_before_snapshots_adopts_one_on_its_next_apply() {
    let db = TestDb::new("drift_legacy").await;
    let migrator = db.migrator(&example_migrations());
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    // What a database migrated by the slipway before snapshots looks like.
    let client = db.client().await;
    client
        .batch_execute(
            "DROP TABLE slipway.schema_snapshot; UPDATE slipway.history SET catalog_fingerprint = NULL",
        )
        .await
        .expect("downgrade");

    let report = migrator.validate().await;
    assert!(
        report.success && report.schema_valid,
        "{}",
        report.to_json()
    );

    // At the latest version and nothing recorded: the committed snapshot is
    // the reference.
    client
        .batch_execute("ALTER TABLE users ADD COLUMN nickname text")
        .await
        .expect("out-of-band change");
    let report = migrator.validate().await;
    assert_eq!(
        drift(&report),
        pairs(&[(DriftKind::ExtraColumn, "public.users.nickname")])
    );
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert_eq!(
        error_code(&report),
        Some(ErrorCode::Drift),
        "{}",
        report.to_json()
    );
    client
        .batch_execute("ALTER TABLE users DROP COLUMN nickname")
        .await
        .expect("undo");

    // The no-op apply records the snapshot, once.
    let report = migrator.apply(&ApplyOptions::default()).await;
    assert!(report.success, "{}", report.to_json());
    let count = client
        .query_one("SELECT count(*) FROM slipway.schema_snapshot", &[])
        .await
        .expect("the table is back");
    assert_eq!(count.get::<_, i64>(0), 1);
    let report = migrator.validate().await;
    assert!(
        report.schema_valid && report.drift.is_empty(),
        "{}",
        report.to_json()
    );
}

/// Stops the dedicated server when the test ends, also on failure.
struct Running(LocalCluster);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

async fn snapshot_of(cluster: &LocalCluster, database: &str) -> Snapshot {
    let target = Database::new(ConnectOptions::new(cluster.config(database)), "test");
    let set = MigrationSet::from_dir(&example_migrations()).expect("load");
    Migrator::new(set, target, common::fast_settings())
        .snapshot()
        .await
        .expect("snapshot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_equal_across_fresh_databases_and_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pg");
    let cluster = Running(LocalCluster::start_fresh(&dir).expect("start a dedicated server"));
    let mut snapshots = Vec::new();
    for database in ["first", "second"] {
        cluster.0.ensure_database(database).await.expect("create");
        let target = Database::new(ConnectOptions::new(cluster.0.config(database)), "test");
        let set = MigrationSet::from_dir(&example_migrations()).expect("load");
        let report = Migrator::new(set, target, common::fast_settings())
            .apply(&ApplyOptions::default())
            .await;
        assert!(report.success, "{}", report.to_json());
        snapshots.push(snapshot_of(&cluster.0, database).await);
    }
    assert_eq!(snapshots[0].to_pretty_json(), snapshots[1].to_pretty_json());

    cluster.0.stop().expect("stop");
    let restarted = Running(LocalCluster::start_or_reuse(&dir).expect("restart"));
    for database in ["first", "second"] {
        let after = snapshot_of(&restarted.0, database).await;
        assert_eq!(
            after.fingerprint(),
            snapshots[0].fingerprint(),
            "{database}"
        );
        assert_eq!(after.to_pretty_json(), snapshots[0].to_pretty_json());
    }
    let committed = std::fs::read_to_string(example_migrations().join(EXPECTED_SNAPSHOT_FILE))
        .expect("read the committed snapshot");
    assert_eq!(snapshots[0].to_pretty_json(), committed);
}

/// `n` tables, each with a key, a default, a check, a foreign key, an index.
fn tables_sql(n: usize) -> String {
    let mut sql = String::from("CREATE TABLE t_root (id bigint PRIMARY KEY);\n");
    for i in 0..n {
        sql.push_str(&format!(
            "CREATE TABLE t_{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             root_id bigint REFERENCES t_root (id), name text NOT NULL DEFAULT 'x', \
             score int CHECK (score >= 0));\nCREATE INDEX t_{i}_name_idx ON t_{i} (name);\n"
        ));
    }
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_queries_are_fixed_in_number_whatever_the_schema_size() {
    let mut counts = Vec::new();
    for n in [10, 200] {
        let db = TestDb::new("catalog_count").await;
        let client = db.client().await;
        client
            .batch_execute(&tables_sql(n))
            .await
            .expect("create tables");
        let query = CatalogQuery::new(&["public".to_owned()], "slipway");
        let read = catalog::read(&client, &query).await.expect("read catalog");
        assert_eq!(read.snapshot.table_count(), n + 1);
        let table = &read.snapshot.relations["public.t_0"];
        assert_eq!(table.columns.len(), 4);
        assert_eq!(table.constraints.len(), 3, "{table:?}");
        assert_eq!(table.indexes.len(), 1);
        counts.push((read.queries, read.round_trips));
    }
    assert_eq!(counts, [(QUERY_COUNT, 1), (QUERY_COUNT, 1)]);
}

#[test]
fn the_catalog_query_count_is_documented() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    assert!(
        readme.contains(&format!("{QUERY_COUNT} catalog queries")),
        "README.md should state the number of catalog queries ({QUERY_COUNT})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reports_drift_and_applies_with_allow_drift() {
    let db = TestDb::new("drift_cli").await;
    let url = db.url();
    let dir = copy_example_migrations();
    let migrations = dir.path().to_str().expect("utf-8 path");
    let args = |extra: &[&'static str]| -> Vec<String> {
        ["--database-url", url.as_str(), "--migrations", migrations]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(extra.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    let cli = |extra: &[&'static str]| {
        let args = args(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(dir.path(), &refs)
    };
    cli(&["apply", "--json"]).expect_code(0);
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE users ADD COLUMN nickname text; DROP INDEX users_created_at_idx",
        )
        .await
        .expect("out-of-band changes");

    let run = cli(&["validate", "--json"]);
    run.expect_code(1);
    let report = run.report();
    assert_eq!(report["schema_valid"], false, "{run}");
    assert_eq!(report["drift"][0]["kind"], "extra_column", "{run}");
    assert_eq!(report["drift"][1]["kind"], "missing_index", "{run}");

    let run = cli(&["validate"]);
    run.expect_code(1);
    assert!(
        run.stdout().contains("  public.users\n    + column nickname  text\n    - index users_created_at_idx  CREATE INDEX"),
        "{run}"
    );

    // Skipping the check is explicit, and only skips it.
    let run = cli(&["validate", "--no-drift-check", "--json"]);
    run.expect_code(0);
    assert_eq!(run.report()["drift"], serde_json::json!([]), "{run}");

    let run = cli(&["--apply", "--json"]);
    run.expect_code(2);
    assert_eq!(run.report()["error"]["code"], "drift", "{run}");

    let run = cli(&["apply", "--allow-drift", "--json"]);
    run.expect_code(0);
    assert_eq!(
        run.report()["drift"].as_array().map(Vec::len),
        Some(2),
        "{run}"
    );
    cli(&["validate", "--json"]).expect_code(0);
}
