//! The performance targets of docs/DESIGN.md ("Targets"), measured against `psql`
//! on the same machine, the same server and in the same run.
//!
//! - W1: apply 300 generated DDL migrations to an empty database with
//!   `slipway apply`, versus `psql -X -q -1 -f` on the same SQL concatenated.
//! - W2: a no-op `slipway apply` and a `slipway validate` on an up-to-date
//!   database (the path every deploy hits), versus `psql -X -c 'select 1'`;
//!   process start and connection included, both over the Unix socket; with
//!   the example set of `migrations/`, and again with the 300 W1 migrations,
//!   since reading and checksumming the files grows with their number.
//!
//! Why ratios and not absolute times: a number of milliseconds says more about
//! the machine than about slipway, while a ratio against psql in the same run
//! cancels the machine, the server and the page cache. Why medians: a process
//! spawn now and then loses its time slice; the median ignores that, and the
//! min/max columns show the spread. Why a bench and not a timed test: a timing
//! assertion fails on a busy CI runner for reasons that have nothing to do with
//! the change under test, so the numbers are printed for a human to read.
//!
//! It starts its own throw-away PostgreSQL in a temp dir, times the release
//! `slipway` binary (built first) as a black box from process start to exit,
//! and prints a markdown table on stdout; progress goes to stderr.
//! `SLIPWAY_BENCH_ITERATIONS` sets the W1 iterations (default 7).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use support::{
    build_slipway, check, count_from_env, ms, progress, psql_path, timed, Samples, Server,
};

/// Number of migrations in W1.
const W1_MIGRATIONS: usize = 300;

/// W1 iterations unless `SLIPWAY_BENCH_ITERATIONS` says otherwise.
const W1_DEFAULT_ITERATIONS: usize = 7;

/// Runs of each W2 command.
const W2_RUNS: usize = 30;

fn main() {
    let iterations = count_from_env("SLIPWAY_BENCH_ITERATIONS", W1_DEFAULT_ITERATIONS);
    let slipway = build_slipway();
    let work = tempfile::Builder::new()
        .prefix("slipway-bench-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for the benchmark: {e}"));

    progress("starting a throw-away PostgreSQL");
    let server = Server::start(&work.path().join("pg"));
    let psql = psql_path(server.cluster.bin_dir());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"));
    let tools = Tools {
        slipway,
        psql,
        server: &server,
        runtime: &runtime,
    };

    let w1_dir = work.path().join("w1");
    let all_sql = generate_w1(&w1_dir);
    let w1 = run_w1(&tools, &w1_dir, &all_sql, iterations);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let w2 = run_w2(&tools, "w2", &examples);
    // Not a docs/DESIGN.md target: the same no-op on a mature project's history,
    // because reading and checksumming the files grows with their number.
    let w2_large = run_w2(&tools, "w2_large", &w1_dir);

    print_results(
        &tools,
        iterations,
        &w1,
        &[(&w2, "example set"), (&w2_large, "the 300 W1 migrations")],
    );
    drop(server);
    if let Err(e) = work.close() {
        progress(&format!("could not remove the benchmark temp dir: {e}"));
    }
}

/// The binaries under test and the server they talk to.
struct Tools<'a> {
    slipway: PathBuf,
    psql: PathBuf,
    server: &'a Server,
    runtime: &'a tokio::runtime::Runtime,
}

impl Tools<'_> {
    fn create_database(&self, name: &str) {
        self.runtime
            .block_on(self.server.cluster.ensure_database(name))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    }

    fn drop_database(&self, name: &str) {
        self.runtime
            .block_on(self.server.cluster.drop_database(name))
            .unwrap_or_else(|e| panic!("drop database {name}: {e}"));
    }

    fn url(&self, database: &str) -> String {
        self.server.cluster.url(database)
    }

    fn slipway(&self, action: &str, url: &str, migrations: &Path) -> Command {
        let mut command = Command::new(&self.slipway);
        command
            .arg(action)
            .arg("--database-url")
            .arg(url)
            .arg("--migrations")
            .arg(migrations)
            .arg("--json");
        command
    }

    fn psql(&self) -> Command {
        let mut command = Command::new(&self.psql);
        command.arg("-X");
        command
    }
}

/// Write the W1 migrations into `dir` and their concatenation beside it;
/// returns the path of the concatenation.
fn generate_w1(dir: &Path) -> PathBuf {
    progress(&format!(
        "generating {W1_MIGRATIONS} migrations in {}",
        dir.display()
    ));
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut all = String::new();
    for n in 1..=W1_MIGRATIONS {
        let sql = w1_migration(n);
        let path = dir.join(format!("{n:04}_create_table_{n}.sql"));
        fs::write(&path, &sql).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        all.push_str(&sql);
        all.push('\n');
    }
    let all_path = dir
        .parent()
        .expect("the migrations dir has a parent")
        .join("all.sql");
    fs::write(&all_path, all).unwrap_or_else(|e| panic!("write {}: {e}", all_path.display()));
    all_path
}

/// One realistic DDL migration of five statements: a table with a primary
/// key, defaults, a check and a foreign key to the previous table, two
/// indexes and a comment.
fn w1_migration(n: usize) -> String {
    let mut sql = String::new();
    let t = format!("table_{n}");
    let _ = writeln!(
        sql,
        "-- Create {t}: one more entity of the generated schema."
    );
    let _ = writeln!(sql, "CREATE TABLE {t} (");
    let _ = writeln!(
        sql,
        "    id          bigint      GENERATED ALWAYS AS IDENTITY,"
    );
    if n > 1 {
        let _ = writeln!(sql, "    parent_id   bigint,");
    }
    let _ = writeln!(sql, "    name        text        NOT NULL,");
    let _ = writeln!(
        sql,
        "    status      varchar(20) NOT NULL DEFAULT 'active',"
    );
    let _ = writeln!(sql, "    score       integer     NOT NULL DEFAULT 0,");
    let _ = writeln!(
        sql,
        "    payload     jsonb       NOT NULL DEFAULT '{{}}'::jsonb,"
    );
    let _ = writeln!(sql, "    created_at  timestamptz NOT NULL DEFAULT now(),");
    let _ = writeln!(sql, "    CONSTRAINT {t}_pkey PRIMARY KEY (id),");
    if n > 1 {
        let _ = writeln!(
            sql,
            "    CONSTRAINT {t}_parent_id_fkey FOREIGN KEY (parent_id)\n        REFERENCES table_{} (id) ON DELETE CASCADE,",
            n - 1
        );
    }
    let _ = writeln!(
        sql,
        "    CONSTRAINT {t}_status_check CHECK (status IN ('active', 'archived', 'deleted'))"
    );
    let _ = writeln!(sql, ");");
    let _ = writeln!(sql);
    if n > 1 {
        let _ = writeln!(sql, "CREATE INDEX {t}_parent_id_idx ON {t} (parent_id);");
    } else {
        let _ = writeln!(sql, "CREATE INDEX {t}_status_idx ON {t} (status);");
    }
    let _ = writeln!(
        sql,
        "CREATE UNIQUE INDEX {t}_name_key ON {t} (lower(name)) WHERE status <> 'deleted';"
    );
    let _ = writeln!(
        sql,
        "COMMENT ON TABLE {t} IS 'Generated entity {n} of the W1 benchmark.';"
    );
    let _ = writeln!(
        sql,
        "ALTER TABLE {t} ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();"
    );
    sql
}

struct W1 {
    slipway: Samples,
    psql: Samples,
}

fn run_w1(tools: &Tools<'_>, dir: &Path, all_sql: &Path, iterations: usize) -> W1 {
    let mut result = W1 {
        slipway: Samples::default(),
        psql: Samples::default(),
    };
    // Iteration 0 warms the page cache and the server and is not counted.
    for i in 0..=iterations {
        let (a, b) = (format!("w1_slipway_{i}"), format!("w1_psql_{i}"));
        tools.create_database(&a);
        tools.create_database(&b);
        let (url_a, url_b) = (tools.url(&a), tools.url(&b));

        let run_slipway = || {
            let (elapsed, output) =
                timed(&mut tools.slipway("apply", &url_a, dir), "W1 slipway apply");
            check(&output, "W1 slipway apply", true);
            elapsed
        };
        let run_psql = || {
            let (elapsed, output) = timed(
                tools
                    .psql()
                    .args(["-q", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
                    .arg(all_sql)
                    .arg(&url_b),
                "W1 psql -1 -f",
            );
            check(&output, "W1 psql -1 -f", false);
            elapsed
        };
        // Alternate who goes first: the second one runs on a server that has
        // just done the same work, with warmer caches.
        let (s, p) = if i % 2 == 0 {
            let s = run_slipway();
            (s, run_psql())
        } else {
            let p = run_psql();
            (run_slipway(), p)
        };
        tools.drop_database(&a);
        tools.drop_database(&b);
        if i == 0 {
            progress(&format!("W1 warm-up: slipway {}, psql {}", ms(s), ms(p)));
            continue;
        }
        progress(&format!(
            "W1 {i}/{iterations}: slipway {}, psql {}",
            ms(s),
            ms(p)
        ));
        result.slipway.0.push(s);
        result.psql.0.push(p);
    }
    result
}

struct W2 {
    apply: Samples,
    validate: Samples,
    psql: Samples,
}

/// No-op runs on `database`, first migrated with `migrations`.
fn run_w2(tools: &Tools<'_>, database: &str, migrations: &Path) -> W2 {
    tools.create_database(database);
    let url = tools.url(database);
    progress(&format!(
        "W2: migrating database {database} with {}",
        migrations.display()
    ));
    let (_, output) = timed(
        &mut tools.slipway("apply", &url, migrations),
        "W2 initial apply",
    );
    check(&output, "W2 initial apply", true);

    let mut result = W2 {
        apply: Samples::default(),
        validate: Samples::default(),
        psql: Samples::default(),
    };
    // Run 0 is a warm-up, not counted.
    for run in 0..=W2_RUNS {
        // Rotate the order so no command always follows the same one.
        for slot in 0..3 {
            match (run + slot) % 3 {
                0 => {
                    let (t, out) = timed(
                        tools
                            .slipway("apply", &url, migrations)
                            .arg("--no-drift-check"),
                        "W2 no-op apply",
                    );
                    check(&out, "W2 no-op apply", true);
                    if run > 0 {
                        result.apply.0.push(t);
                    }
                }
                1 => {
                    let (t, out) = timed(
                        tools
                            .slipway("validate", &url, migrations)
                            .arg("--no-drift-check"),
                        "W2 validate",
                    );
                    check(&out, "W2 validate", true);
                    if run > 0 {
                        result.validate.0.push(t);
                    }
                }
                _ => {
                    let (t, out) = timed(
                        tools.psql().args(["-c", "select 1"]).arg(&url),
                        "W2 psql select 1",
                    );
                    check(&out, "W2 psql select 1", false);
                    if run > 0 {
                        result.psql.0.push(t);
                    }
                }
            }
        }
    }
    progress(&format!(
        "W2 ({database}): {W2_RUNS} runs each: no-op apply {}, validate {}, psql {} (medians)",
        ms(result.apply.median()),
        ms(result.validate.median()),
        ms(result.psql.median())
    ));
    tools.drop_database(database);
    result
}

/// `w2`: each W2 result with the migration set it ran on.
fn print_results(tools: &Tools<'_>, iterations: usize, w1: &W1, w2: &[(&W2, &str)]) {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let psql_version = Command::new(&tools.psql)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let server_version = tools
        .psql()
        .args(["-At", "-c", "show server_version"])
        .arg(tools.url("postgres"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());

    println!("## slipway benchmarks");
    println!();
    println!("- machine: {cores} CPUs (nproc), {cpu}");
    println!("- PostgreSQL: {psql_version}; server {server_version} (throw-away cluster, fsync=off, Unix socket)");
    println!(
        "- binaries: {} and {}",
        tools.slipway.display(),
        tools.psql.display()
    );
    println!(
        "- W1: {W1_MIGRATIONS} migrations (5 statements each), {iterations} iterations after one warm-up, fresh databases, order alternated"
    );
    println!(
        "- W2: {W2_RUNS} runs of each command after one warm-up, interleaved, on a database migrated with the example set of migrations/ \
         and, beyond docs/DESIGN.md, on one holding the 300 W1 migrations; run with --no-drift-check, so the 1.5x target applies \
         (`cargo bench --bench drift` measures W2 with the drift check, target 3x)"
    );
    println!(
        "- times are wall clock from process start to exit; ratio = slipway median / psql median"
    );
    println!();
    println!(
        "| workload | slipway median | psql median | ratio | target | slipway min / max | psql min / max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    row(
        &format!("W1 apply {W1_MIGRATIONS} migrations (psql -1 -f)"),
        &w1.slipway,
        &w1.psql,
        1.10,
    );
    for (result, set) in w2 {
        row(
            &format!("W2 no-op apply, {set}, without drift check (psql -c 'select 1')"),
            &result.apply,
            &result.psql,
            1.5,
        );
        row(
            &format!("W2 validate, {set}, without drift check (psql -c 'select 1')"),
            &result.validate,
            &result.psql,
            1.5,
        );
    }
}

fn row(workload: &str, slipway: &Samples, psql: &Samples, target: f64) {
    let ratio = slipway.median().as_secs_f64() / psql.median().as_secs_f64();
    let verdict = if ratio <= target { "met" } else { "MISSED" };
    println!(
        "| {workload} | {} | {} | {ratio:.2}x | ≤ {target:.2}x ({verdict}) | {} / {} | {} / {} |",
        ms(slipway.median()),
        ms(psql.median()),
        ms(slipway.min()),
        ms(slipway.max()),
        ms(psql.min()),
        ms(psql.max()),
    );
}
