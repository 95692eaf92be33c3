//! The drift-check targets of docs/DESIGN.md ("Targets"), on a real server:
//!
//! - D1: `slipway validate` with the drift check on a generated 1,000-table
//!   schema, process start and connection included: under 1 s, with a
//!   constant number of catalog queries (counted in-process on the same
//!   schema, and shown to be the same as on the 6-table example schema).
//! - D2: the same after one out-of-band change, the path that also fetches
//!   the recorded snapshot and diffs it (one more round trip).
//! - D3: the catalog read alone, in-process, on the same schema.
//! - W2 with drift: `slipway validate` on the up-to-date example schema
//!   versus `psql -X -c 'select 1'` (target: within 3x).
//!
//! Like `benches/migrate.rs` it starts its own throw-away PostgreSQL, times
//! the release binary as a black box (medians; min and max show the spread)
//! and prints a markdown table on stdout, progress on stderr.
//! `SLIPWAY_BENCH_RUNS` sets the runs per command (default 15).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway::db::catalog::{self, CatalogQuery, QUERY_COUNT};

mod support;

use support::{
    build_slipway, check, count_from_env, ms, progress, psql_path, report_of, timed, Samples,
    Server,
};

/// Tables of the generated schema.
const TABLES: usize = 1000;

/// Tables per generated migration.
const TABLES_PER_MIGRATION: usize = 100;

/// Runs of each timed command unless `SLIPWAY_BENCH_RUNS` says otherwise.
const DEFAULT_RUNS: usize = 15;

fn main() {
    let runs = count_from_env("SLIPWAY_BENCH_RUNS", DEFAULT_RUNS);
    let slipway = build_slipway();
    let work = tempfile::Builder::new()
        .prefix("slipway-bench-drift-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for the benchmark: {e}"));
    progress("starting a throw-away PostgreSQL");
    let server = Server::start(&work.path().join("pg"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"));
    let psql = psql_path(server.cluster.bin_dir());

    // The 1,000-table schema, migrated by slipway (which records its snapshot).
    let big_dir = work.path().join("big");
    generate(&big_dir);
    runtime
        .block_on(server.cluster.ensure_database("big"))
        .unwrap_or_else(|e| panic!("create database big: {e}"));
    let big_url = server.cluster.url("big");
    progress(&format!("applying {TABLES} tables"));
    let (apply_time, output) = timed(
        slipway_command(&slipway, "apply", &big_url, &big_dir).arg("--statement-timeout=0"),
        "initial apply",
    );
    check(&output, "initial apply", true);

    progress(&format!("D1: {runs} validate runs on {TABLES} tables"));
    let d1 = sample(runs, || {
        let (t, out) = timed(
            &mut slipway_command(&slipway, "validate", &big_url, &big_dir),
            "D1",
        );
        check(&out, "D1 validate", true);
        let report = report_of(&out);
        assert_eq!(
            report["schema_valid"], true,
            "D1: the schema should be valid"
        );
        t
    });

    let (snapshot, queries, round_trips, d3) = runtime.block_on(async {
        let (client, connection) = server
            .cluster
            .config("big")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        tokio::spawn(connection);
        let query = CatalogQuery::new(&["public".to_owned()], "slipway");
        let mut samples = Samples::default();
        let mut last = None;
        for _ in 0..runs {
            let started = Instant::now();
            let read = catalog::read(&client, &query)
                .await
                .unwrap_or_else(|e| panic!("catalog read: {e}"));
            samples.0.push(started.elapsed());
            last = Some(read);
        }
        let read = last.expect("at least one run");
        (read.snapshot, read.queries, read.round_trips, samples)
    });
    assert_eq!(snapshot.table_count(), TABLES, "the generated schema");

    // One out-of-band change: validate now fetches and diffs the snapshot.
    runtime.block_on(async {
        let (client, connection) = server
            .cluster
            .config("big")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute("ALTER TABLE table_500 ADD COLUMN added_by_hand text")
            .await
            .unwrap_or_else(|e| panic!("out-of-band change: {e}"));
    });
    progress(&format!("D2: {runs} validate runs with one drifted column"));
    let d2 = sample(runs, || {
        let mut command = slipway_command(&slipway, "validate", &big_url, &big_dir);
        let (t, out) = timed(&mut command, "D2");
        assert_eq!(out.status.code(), Some(1), "D2: validate should find drift");
        let report = report_of(&out);
        assert_eq!(
            report["drift"].as_array().map(Vec::len),
            Some(1),
            "D2: exactly one drift item"
        );
        t
    });

    // W2 with the drift check, on the example schema.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    runtime
        .block_on(server.cluster.ensure_database("example"))
        .unwrap_or_else(|e| panic!("create database example: {e}"));
    let example_url = server.cluster.url("example");
    let (_, output) = timed(
        &mut slipway_command(&slipway, "apply", &example_url, &example),
        "example apply",
    );
    check(&output, "example apply", true);
    let small_queries = runtime.block_on(async {
        let (client, connection) = server
            .cluster
            .config("example")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        tokio::spawn(connection);
        let query = CatalogQuery::new(&["public".to_owned()], "slipway");
        catalog::read(&client, &query)
            .await
            .unwrap_or_else(|e| panic!("catalog read: {e}"))
            .queries
    });
    progress(&format!(
        "W2: {runs} runs each of validate and psql, interleaved"
    ));
    let mut w2_validate = Samples::default();
    let mut w2_apply = Samples::default();
    let mut w2_psql = Samples::default();
    for run in 0..=runs {
        let (a, out) = timed(
            &mut slipway_command(&slipway, "apply", &example_url, &example),
            "W2 no-op apply",
        );
        check(&out, "W2 no-op apply", true);
        let (t, out) = timed(
            &mut slipway_command(&slipway, "validate", &example_url, &example),
            "W2 validate",
        );
        check(&out, "W2 validate", true);
        let (p, out) = timed(
            Command::new(&psql)
                .arg("-X")
                .arg("-d")
                .arg(&example_url)
                .args(["-c", "select 1"])
                .stdout(Stdio::null()),
            "W2 psql",
        );
        assert!(out.status.success(), "psql failed: {out:?}");
        // The first round warms the page cache and the binaries.
        if run > 0 {
            w2_validate.0.push(t);
            w2_apply.0.push(a);
            w2_psql.0.push(p);
        }
    }

    let json_bytes = snapshot.canonical_json().len();
    println!("## slipway drift check ({TABLES} tables, {runs} runs per row)\n");
    println!(
        "- schema: {TABLES} tables in {} migrations, each with an identity key, a foreign key, 8 columns with defaults, a check, 2 indexes; plus a view and a function; initial apply took {}",
        TABLES / TABLES_PER_MIGRATION,
        ms(apply_time)
    );
    println!(
        "- catalog queries per snapshot: {queries} on {TABLES} tables, {small_queries} on the 6-table example (constant: `catalog::QUERY_COUNT` = {QUERY_COUNT}), sent in {round_trips} message; validate = connect + 1 round trip (+1 to fetch the recorded snapshot when the fingerprint differs)"
    );
    println!("- canonical snapshot: {} KiB of JSON\n", json_bytes / 1024);
    println!("| workload | median | min | max | target |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, s: &Samples, target: &str| {
        println!(
            "| {name} | {} | {} | {} | {target} |",
            ms(s.median()),
            ms(s.min()),
            ms(s.max())
        );
    };
    row(
        &format!("D1 `slipway validate`, {TABLES} tables, no drift (process start included)"),
        &d1,
        "< 1 s",
    );
    row(
        &format!("D2 `slipway validate`, {TABLES} tables, one drifted column"),
        &d2,
        "< 1 s",
    );
    row("D3 catalog read alone (in-process)", &d3, "—");
    row(
        "W2 `slipway validate` with drift check, example schema",
        &w2_validate,
        "≤ 3x psql",
    );
    row(
        "W2 no-op `slipway apply` with drift check, example schema",
        &w2_apply,
        "≤ 3x psql",
    );
    row("W2 `psql -X -c 'select 1'`", &w2_psql, "—");
    for (name, samples) in [("validate", &w2_validate), ("no-op apply", &w2_apply)] {
        let ratio = samples.median().as_secs_f64() / w2_psql.median().as_secs_f64();
        println!(
            "\nW2 with drift check: {name} / psql = {ratio:.2}x (target within 3x): {}",
            if ratio <= 3.0 { "met" } else { "NOT met" }
        );
    }
    let d1_ok = d1.median() < Duration::from_secs(1);
    println!(
        "D1: {} median for {TABLES} tables (target under 1 s): {}",
        ms(d1.median()),
        if d1_ok { "met" } else { "NOT met" }
    );
    drop(server);
    if let Err(e) = work.close() {
        progress(&format!("could not remove the benchmark temp dir: {e}"));
    }
}

fn sample(runs: usize, mut one: impl FnMut() -> Duration) -> Samples {
    // One warm-up run, not counted.
    let _ = one();
    Samples((0..runs).map(|_| one()).collect())
}

/// Write the migrations of the generated schema into `dir`.
fn generate(dir: &Path) {
    progress(&format!("generating {TABLES} tables in {}", dir.display()));
    fs::create_dir_all(dir.join("repeatable"))
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    for m in 0..TABLES / TABLES_PER_MIGRATION {
        let mut sql = String::new();
        for n in m * TABLES_PER_MIGRATION + 1..=(m + 1) * TABLES_PER_MIGRATION {
            table_sql(&mut sql, n);
        }
        let path = dir.join(format!("{:04}_create_tables_{}.sql", m + 1, m + 1));
        fs::write(&path, sql).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    let repeatable = "CREATE OR REPLACE VIEW active_table_1 AS SELECT id, name FROM table_1 WHERE status = 'active';
CREATE OR REPLACE FUNCTION score_band(score integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN score >= 80 THEN 'high' ELSE 'low' END
$$;
";
    let path = dir.join("repeatable/objects.sql");
    fs::write(&path, repeatable).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn table_sql(sql: &mut String, n: usize) {
    let t = format!("table_{n}");
    let parent = if n > 1 {
        format!(
            "    parent_id bigint REFERENCES table_{} (id) ON DELETE CASCADE,\n",
            n - 1
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        sql,
        "CREATE TABLE {t} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
{parent}    name text NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived', 'deleted')),
    score integer NOT NULL DEFAULT 0,
    payload jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {t}_status_idx ON {t} (status);
CREATE UNIQUE INDEX {t}_name_key ON {t} (lower(name)) WHERE status <> 'deleted';"
    );
}

fn slipway_command(slipway: &Path, action: &str, url: &str, migrations: &Path) -> Command {
    let mut command = Command::new(slipway);
    command
        .arg(action)
        .arg("--database-url")
        .arg(url)
        .arg("--migrations")
        .arg(migrations)
        .arg("--json");
    command
}
