//! The `slipway` binary as a black box against a real PostgreSQL: exit codes,
//! the JSON report and the human text, the flag aliases the pipeline script
//! uses, what a killed run leaves behind (nothing), how connection failures
//! are reported (bounded in time, with the right `error.code`, never showing
//! a password), and `--local` end to end.
//!
//! Every run goes through `common::run_cli` / `common::slipway()`, so a
//! failed assertion prints the command, its exit status, stdout and stderr.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{cluster, example_migrations, migrations_dir, run_cli, slipway, Run, TestDb};
use serde_json::Value;

/// Longest any failing-connection run may take (docs/DESIGN.md: connecting has a
/// bounded timeout, 10 s by default).
const CONNECTION_FAILURE_BOUND: Duration = Duration::from_secs(15);

/// An empty working directory, so no run picks up `./migrations` or
/// `.slipway/` by accident.
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp working directory")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Run `command` (already holding its arguments) and wrap it as a [`Run`].
fn run_command(mut command: Command, shown: &str) -> Run {
    let output = command.output().expect("run slipway");
    Run {
        command: shown.to_owned(),
        output,
    }
}

/// `run_cli`, also returning how long the run took.
fn timed(cwd: &Path, args: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let run = run_cli(cwd, args);
    (run, started.elapsed())
}

/// Wait for `child` at most `limit`; kill it and return `None` when it is
/// still running then.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run slipway with `args` in `cwd`, failing the test (instead of hanging)
/// when it takes longer than `limit`.
fn run_within(cwd: &Path, args: &[&str], limit: Duration) -> Run {
    let mut child = slipway()
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slipway");
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = wait_at_most(&mut child, limit);
    let output = std::process::Output {
        status: status.unwrap_or_else(|| child.wait().expect("reap killed child")),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    let run = Run {
        command: format!("slipway {}", args.join(" ")),
        output,
    };
    assert!(
        status.is_some(),
        "still running after {limit:?}, killed it{run}"
    );
    run
}

/// Panic with the whole run when `needle` occurs in its stdout or stderr.
fn assert_not_in_output(run: &Run, needle: &str) {
    assert!(
        !run.stdout().contains(needle) && !run.stderr().contains(needle),
        "a secret ({needle:?}) leaked into the output{run}"
    );
}

/// The report's `error.code`, or a panic showing the run.
fn error_code(run: &Run) -> String {
    let report = run.report();
    assert_eq!(report["success"], false, "{run}");
    report["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in the report{run}"))
        .to_owned()
}

fn versions(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|m| m["version"].as_str().unwrap_or("R").to_owned())
        .collect()
}

// 1. Exit codes and the JSON report ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_apply_validate_exit_codes_and_compact_json() {
    let db = TestDb::new("cli_exit_codes").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let common_args = ["--database-url", &url, "--migrations", path_str(&dir)];
    let with = |action: &str| {
        let mut args = vec![action, "--json"];
        args.extend(common_args);
        run_cli(cwd.path(), &args)
    };

    let run = with("validate");
    run.expect_code(1);
    let stdout = run.stdout();
    let line = stdout.strip_suffix('\n').unwrap_or(&stdout);
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "the report must be exactly one line{run}"
    );
    assert!(
        !line.contains("\": ") && !line.contains(", \"") && !line.contains("{ "),
        "the report must be compact JSON{run}"
    );
    // What buildspec.yml greps for.
    assert!(line.contains("\"schema_valid\":false"), "{run}");
    assert!(
        line.starts_with("{\"success\":true,\"action\":\"validate\""),
        "{run}"
    );
    let report = run.report();
    assert_eq!(report["success"], true, "{run}");
    assert_eq!(report["schema_valid"], false, "{run}");
    assert_eq!(report["error"], Value::Null, "{run}");
    assert_eq!(report["database"], db.name.as_str(), "{run}");
    assert_eq!(report["current_version"], Value::Null, "{run}");
    assert_eq!(report["target_version"], "0005", "{run}");
    let pending = versions(&report["pending"]);
    assert!(
        pending.len() >= 5 && pending[..5] == ["0001", "0002", "0003", "0004", "0005"],
        "every versioned migration is pending, in order{run}"
    );
    assert_eq!(db.history_count().await, 0, "validate must not write{run}");

    let run = with("apply");
    run.expect_code(0);
    let report = run.report();
    assert_eq!(report["success"], true, "{run}");
    assert_eq!(report["schema_valid"], true, "{run}");
    assert_eq!(report["current_version"], "0005", "{run}");
    assert_eq!(
        versions(&report["applied"]),
        pending,
        "apply runs exactly what validate listed{run}"
    );
    assert!(db.has_table("quiz_analytics").await);
    let after_apply = db.snapshot().await;

    let run = with("validate");
    run.expect_code(0);
    assert!(run.stdout().contains("\"schema_valid\":true"), "{run}");
    assert_eq!(run.report()["pending"], serde_json::json!([]), "{run}");

    // Idempotency: a second apply does nothing and says so.
    let run = with("apply");
    run.expect_code(0);
    assert_eq!(run.report()["applied"], serde_json::json!([]), "{run}");
    assert_eq!(db.snapshot().await, after_apply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_output_is_a_plain_table_without_ansi_when_not_a_tty() {
    let db = TestDb::new("cli_human").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let args = |action: &'static str| {
        [
            action,
            "--database-url",
            &url,
            "--migrations",
            path_str(&dir),
        ]
    };

    let run = run_cli(cwd.path(), &args("validate"));
    run.expect_code(1);
    let text = run.stdout();
    assert!(
        !text.trim_start().starts_with('{'),
        "no JSON without --json{run}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("version") && l.contains("description")),
        "a table header{run}"
    );
    for version in ["0001", "0002", "0003", "0004", "0005"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(version)),
            "a row for {version}{run}"
        );
    }
    assert!(text.contains("pending"), "{run}");
    assert!(text.contains("schema not valid"), "{run}");
    assert!(
        !text.contains('\x1b') && !run.stderr().contains('\x1b'),
        "ANSI escapes on a pipe{run}"
    );

    let run = run_cli(cwd.path(), &args("apply"));
    run.expect_code(0);
    let text = run.stdout();
    assert!(text.contains("applied"), "{run}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("0005")),
        "{run}"
    );
    assert!(
        !text.contains('\x1b') && !run.stderr().contains('\x1b'),
        "{run}"
    );

    let run = run_cli(cwd.path(), &args("status"));
    run.expect_code(0);
    let text = run.stdout();
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("0003") && l.contains("applied")),
        "status lists each migration with its state{run}"
    );
    assert!(!text.contains('\x1b'), "{run}");
}

// 2. Aliases and where options may stand -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_aliases_option_placement_and_database_url_env() {
    let db = TestDb::new("cli_aliases").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let dir = path_str(&dir);
    let empty = db.snapshot().await;

    let run = run_cli(
        cwd.path(),
        &[
            "--validate",
            "--database-url",
            &url,
            "--migrations",
            dir,
            "--json",
        ],
    );
    run.expect_code(1);
    let report = run.report();
    assert_eq!(report["action"], "validate", "{run}");
    assert_eq!(report["success"], true, "{run}");

    for args in [
        vec![
            "--apply",
            "--dry-run",
            "--database-url",
            &url,
            "--migrations",
            dir,
            "--json",
        ],
        vec![
            "--dry-run",
            "--database-url",
            &url,
            "--migrations",
            dir,
            "--json",
        ],
        vec![
            "apply",
            "--dry-run",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    ] {
        let run = run_cli(cwd.path(), &args);
        run.expect_code(0);
        let report = run.report();
        assert_eq!(report["action"], "apply", "{run}");
        assert_eq!(report["dry_run"], true, "{run}");
        assert_eq!(report["success"], true, "{run}");
        assert_eq!(report["applied"], serde_json::json!([]), "{run}");
        assert!(
            versions(&report["pending"]).contains(&"0005".to_owned()),
            "{run}"
        );
        assert_eq!(db.snapshot().await, empty, "a dry run changes nothing{run}");
    }

    // Global options before the subcommand, after it, and on both sides.
    for args in [
        vec![
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
            "validate",
        ],
        vec![
            "validate",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
        vec![
            "--database-url",
            &url,
            "validate",
            "--migrations",
            dir,
            "--json",
        ],
    ] {
        let run = run_cli(cwd.path(), &args);
        run.expect_code(1);
        assert_eq!(run.report()["action"], "validate", "{run}");
        assert_eq!(run.report()["database"], db.name.as_str(), "{run}");
    }

    // DATABASE_URL (the harness removes it; set it on purpose).
    let mut command = slipway();
    command
        .current_dir(cwd.path())
        .env("DATABASE_URL", &url)
        .args(["validate", "--json", "--migrations", dir]);
    let run = run_command(command, "DATABASE_URL=<url> slipway validate --json");
    run.expect_code(1);
    assert_eq!(run.report()["database"], db.name.as_str(), "{run}");

    // The flag wins over the environment.
    let mut command = slipway();
    command
        .current_dir(cwd.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .args([
            "validate",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ]);
    let run = run_command(
        command,
        "DATABASE_URL=<elsewhere> slipway validate --json --database-url <url>",
    );
    run.expect_code(1);
    assert_eq!(run.report()["database"], db.name.as_str(), "{run}");

    // The alias applies for real too.
    let run = run_cli(
        cwd.path(),
        &[
            "--apply",
            "--database-url",
            &url,
            "--migrations",
            dir,
            "--json",
        ],
    );
    run.expect_code(0);
    assert_eq!(run.report()["current_version"], "0005", "{run}");
}

// 3. No connection given -------------------------------------------------------

#[test]
fn no_connection_given_is_a_config_error_naming_the_choices() {
    let cwd = workdir();
    let dir = example_migrations();
    let dir = path_str(&dir);

    for action in ["validate", "apply", "status"] {
        let run = run_cli(cwd.path(), &[action, "--migrations", dir]);
        run.expect_code(2);
        let all = format!("{}{}", run.stdout(), run.stderr());
        for option in ["--database-url", "--secret-id", "--local"] {
            assert!(all.contains(option), "the message must name {option}{run}");
        }

        let run = run_cli(cwd.path(), &[action, "--json", "--migrations", dir]);
        run.expect_code(2);
        assert_eq!(error_code(&run), "config", "{run}");
        let message = run.report()["error"]["message"].to_string();
        for option in ["--database-url", "--secret-id", "--local"] {
            assert!(message.contains(option), "{run}");
        }
    }

    // An empty DATABASE_URL is no database either.
    let mut command = slipway();
    command
        .current_dir(cwd.path())
        .env("DATABASE_URL", "")
        .args(["validate", "--json", "--migrations", dir]);
    let run = run_command(command, "DATABASE_URL= slipway validate --json");
    run.expect_code(2);
    assert_eq!(error_code(&run), "config", "{run}");

    // Two at once is ambiguous: refused before anything starts.
    let run = run_cli(
        cwd.path(),
        &[
            "validate",
            "--json",
            "--local",
            "--database-url",
            "postgres://x@127.0.0.1/x",
            "--migrations",
            dir,
        ],
    );
    run.expect_code(2);
    assert_eq!(error_code(&run), "config", "{run}");
    assert!(
        !cwd.path().join(".slipway").exists(),
        "a refused --local must not create a cluster{run}"
    );

    // Nothing to do at all is a usage error.
    let run = run_cli(cwd.path(), &[]);
    run.expect_code(2);
}

// 4. SIGKILL in the middle of apply ---------------------------------------------

/// Whether a slipway session of database `name` is running `pg_sleep`.
/// slipway's sessions are named `slipway`, or `slipway: <file>` while a
/// migration runs.
///
/// `query` alone is not enough: slipway sends the whole batch as one message
/// and `pg_stat_activity.query` keeps only its first
/// `track_activity_query_size` (1 kB) bytes, which the history DDL fills; the
/// `PgSleep` wait event names the sleep wherever it is.
async fn slipway_sleeping(client: &tokio_postgres::Client, name: &str) -> bool {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE (query LIKE '%pg_sleep%' OR wait_event = 'PgSleep') \
               AND (application_name = 'slipway' OR application_name LIKE 'slipway: %') \
               AND datname = $1 AND state = 'active' AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .expect("read pg_stat_activity");
    row.get::<_, i64>(0) > 0
}

/// Sessions of slipway still connected to database `name`.
async fn slipway_sessions(client: &tokio_postgres::Client, name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE (application_name = 'slipway' OR application_name LIKE 'slipway: %') \
               AND datname = $1",
            &[&name],
        )
        .await
        .expect("read pg_stat_activity")
        .get(0)
}

/// Advisory locks held or awaited in database `name`.
async fn advisory_locks(client: &tokio_postgres::Client, name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND d.datname = $1",
            &[&name],
        )
        .await
        .expect("read pg_locks")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_apply_leaves_nothing_and_releases_the_lock() {
    let db = TestDb::new("cli_sigkill").await;
    let cwd = workdir();
    let migrations = migrations_dir(&[
        (
            "0001_create_a.sql",
            "CREATE TABLE a (id int PRIMARY KEY);\n",
        ),
        (
            "0002_slow_b.sql",
            "SELECT pg_sleep(3);\nCREATE TABLE b (id int PRIMARY KEY);\n",
        ),
    ]);
    let url = db.url();
    let args = [
        "apply",
        "--database-url",
        &url,
        "--migrations",
        path_str(migrations.path()),
    ];
    let before = db.snapshot().await;
    let observer = db.client().await;

    let mut child = slipway()
        .current_dir(cwd.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn slipway apply");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if slipway_sleeping(&observer, &db.name).await {
            break;
        }
        if let Some(status) = child.try_wait().expect("poll child") {
            panic!("slipway apply ended ({status}) before the pg_sleep was seen running");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("never saw slipway's pg_sleep in pg_stat_activity");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().expect("SIGKILL slipway");
    let status = child.wait().expect("reap slipway");
    assert_eq!(
        status.code(),
        None,
        "killed by a signal, not exited: {status}"
    );

    // The server notices the dead client once the sleep ends; wait for the
    // orphan session to go away, then look at what it left behind.
    let deadline = Instant::now() + Duration::from_secs(15);
    while slipway_sessions(&observer, &db.name).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the killed run's session is still there after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        db.snapshot().await,
        before,
        "a killed apply must leave the database exactly as it was"
    );
    assert!(!db.has_table("a").await, "0001 must have rolled back");
    assert!(!db.has_table("b").await, "0002 must have rolled back");
    assert_eq!(db.history_count().await, 0, "no history rows");
    assert_eq!(
        advisory_locks(&observer, &db.name).await,
        0,
        "the advisory lock is released"
    );

    // A re-run neither hangs on a leftover lock nor trips on leftovers.
    let run = run_within(cwd.path(), &args, Duration::from_secs(30));
    run.expect_code(0);
    assert!(db.has_table("a").await && db.has_table("b").await, "{run}");
    assert_eq!(db.history_count().await, 2, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_applies_one_does_the_work() {
    let db = TestDb::new("cli_race").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let args = [
        "apply",
        "--json",
        "--database-url",
        &url,
        "--migrations",
        path_str(&dir),
    ];
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| run_within(cwd.path(), &args, Duration::from_secs(60)));
        let second = scope.spawn(|| run_within(cwd.path(), &args, Duration::from_secs(60)));
        (first.join().expect("first"), second.join().expect("second"))
    });
    first.expect_code(0);
    second.expect_code(0);
    let applied = [
        first.report()["applied"].as_array().map_or(0, Vec::len),
        second.report()["applied"].as_array().map_or(0, Vec::len),
    ];
    let runs = format!("{first}{second}");
    assert!(
        applied.contains(&0) && applied.iter().sum::<usize>() >= 5,
        "exactly one run applies, the other finds nothing to do{runs}"
    );
    assert_eq!(
        db.history_count().await as usize,
        applied.iter().sum::<usize>(),
        "{runs}"
    );
}

// 5. Unreachable host, wrong password, bad URLs ----------------------------------

/// Run `args` twice — as JSON, and as text with debug logging — and check
/// both fail fast with exit 2, without any of `secrets` in the output.
/// Returns the JSON run.
fn failing_connection(cwd: &Path, args: &[&str], secrets: &[&str]) -> Run {
    let mut json_args = vec!["validate", "--json"];
    json_args.extend(args);
    let (run, took) = timed(cwd, &json_args);
    run.expect_code(2);
    assert!(took < CONNECTION_FAILURE_BOUND, "took {took:?}{run}");
    for secret in secrets {
        assert_not_in_output(&run, secret);
    }

    let mut text_args = vec!["apply", "-vv"];
    text_args.extend(args);
    let (text, took) = timed(cwd, &text_args);
    text.expect_code(2);
    assert!(took < CONNECTION_FAILURE_BOUND, "took {took:?}{text}");
    assert!(text.stdout().contains("error ["), "{text}");
    for secret in secrets {
        assert_not_in_output(&text, secret);
    }
    run
}

#[test]
fn connection_refused_is_a_quick_connection_error() {
    let cwd = workdir();
    let dir = example_migrations();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.local_addr().expect("local addr").port()
    };
    let url = format!("postgres://u:hunter2secret@127.0.0.1:{port}/db");
    let run = failing_connection(
        cwd.path(),
        &["--database-url", &url, "--migrations", path_str(&dir)],
        &["hunter2secret"],
    );
    assert_eq!(error_code(&run), "connection", "{run}");
}

/// A loopback listener that accepts connections and never says a word, like
/// a host whose firewall lets TCP in but nothing answers.
struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn silent_host_times_out_as_a_connection_error() {
    let cwd = workdir();
    let dir = example_migrations();
    let server = SilentServer::start();
    let url = format!("postgres://u:hunter2secret@127.0.0.1:{}/db", server.port);
    let (run, took) = timed(
        cwd.path(),
        &[
            "validate",
            "--json",
            "--connect-timeout",
            "1s",
            "--database-url",
            &url,
            "--migrations",
            path_str(&dir),
        ],
    );
    run.expect_code(2);
    assert!(
        took < Duration::from_secs(5),
        "--connect-timeout 1s took {took:?}{run}"
    );
    assert_eq!(error_code(&run), "connection", "{run}");
    let message = run.report()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        message.contains("1s") && (message.contains("within") || message.contains("timeout")),
        "the message must say it gave up after the timeout{run}"
    );
    assert_not_in_output(&run, "hunter2secret");

    // The same through the human path, with debug logs on.
    failing_connection(
        cwd.path(),
        &[
            "--connect-timeout",
            "1s",
            "--database-url",
            &url,
            "--migrations",
            path_str(&dir),
        ],
        &["hunter2secret"],
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error_that_shows_no_password() {
    let db = TestDb::new("cli_wrong_password").await;
    let cwd = workdir();
    let dir = example_migrations();
    let cluster = cluster();
    let real = db.tcp_url();
    assert!(
        real.contains(cluster.password()),
        "tcp_url carries the password"
    );
    let wrong = real.replacen(cluster.password(), "wrong-pass-XYZ123secret", 1);
    assert_ne!(wrong, real);

    // The real password over TCP works: the failure below is the password's.
    let run = run_cli(
        cwd.path(),
        &[
            "validate",
            "--json",
            "--database-url",
            &real,
            "--migrations",
            path_str(&dir),
        ],
    );
    run.expect_code(1);
    assert_not_in_output(&run, cluster.password());

    let run = failing_connection(
        cwd.path(),
        &["--database-url", &wrong, "--migrations", path_str(&dir)],
        &[
            "wrong-pass-XYZ123secret",
            "XYZ123secret",
            cluster.password(),
        ],
    );
    assert_eq!(error_code(&run), "auth", "{run}");
    let message = run.report()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("28P01"), "the SQLSTATE is named{run}");
}

#[test]
fn malformed_urls_are_config_errors_that_show_no_password() {
    let cwd = workdir();
    let dir = example_migrations();
    for url in [
        "postgres://u:hunter2secret@localhost:notaport/db",
        "not a url at all",
        "postgres://u:hunter2secret@/db?sslmode=bogus",
    ] {
        let run = failing_connection(
            cwd.path(),
            &["--database-url", url, "--migrations", path_str(&dir)],
            &["hunter2secret"],
        );
        assert_eq!(error_code(&run), "config", "{url}{run}");
    }
}

// 6. A failing migration ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_migration_names_file_line_and_sqlstate_and_changes_nothing() {
    let db = TestDb::new("cli_migration_failed").await;
    let cwd = workdir();
    let migrations = migrations_dir(&[
        (
            "0001_first.sql",
            "CREATE TABLE first_table (id int PRIMARY KEY);\n",
        ),
        (
            "0002_broken.sql",
            "-- a migration with a typo on line 4\n\
             CREATE TABLE second_table (id int PRIMARY KEY);\n\
             \n\
             CREATE TABL broken (id int);\n",
        ),
        (
            "0003_third.sql",
            "CREATE TABLE third_table (id int PRIMARY KEY);\n",
        ),
    ]);
    let url = db.url();
    let dir = path_str(migrations.path());
    let before = db.snapshot().await;

    let run = run_cli(
        cwd.path(),
        &[
            "apply",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(2);
    assert_eq!(error_code(&run), "migration_failed", "{run}");
    let detail = &run.report()["error"]["detail"];
    assert_eq!(detail["file"], "0002_broken.sql", "{run}");
    assert_eq!(detail["line"], 4, "{run}");
    assert_eq!(detail["sqlstate"], "42601", "{run}");
    assert_eq!(detail["version"], "0002", "{run}");
    assert_eq!(
        db.snapshot().await,
        before,
        "a failed apply changes nothing{run}"
    );
    assert!(!db.has_table("first_table").await, "{run}");
    assert_eq!(db.history_count().await, 0, "{run}");

    let run = run_cli(
        cwd.path(),
        &["apply", "--database-url", &url, "--migrations", dir],
    );
    run.expect_code(2);
    let text = run.stdout();
    assert!(text.contains("[migration_failed]"), "{run}");
    assert!(text.contains("0002_broken.sql"), "{run}");
    assert!(text.contains("line: 4"), "{run}");
    assert!(text.contains("42601"), "{run}");
    assert!(!text.contains('\x1b'), "{run}");
    assert_eq!(db.snapshot().await, before, "{run}");
}

// 7. --local end to end ----------------------------------------------------------------

/// Runs `slipway local stop` in the working directory when the test ends,
/// also on a failed assertion, so no server outlives its temp dir.
struct StopLocal<'a>(&'a Path);

impl Drop for StopLocal<'_> {
    fn drop(&mut self) {
        let run = run_cli(self.0, &["local", "stop"]);
        if run.code() != Some(0) {
            eprintln!("stopping the --local server failed{run}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn local_apply_validate_start_and_stop() {
    let cwd = workdir();
    copy_dir(&example_migrations(), &cwd.path().join("migrations"));
    let _stop = StopLocal(cwd.path());

    let run = run_within(cwd.path(), &["--local", "apply"], Duration::from_secs(120));
    run.expect_code(0);
    assert!(run.stdout().contains("applied"), "{run}");
    assert!(
        cwd.path().join(".slipway").join("local").is_dir(),
        "--local keeps its server under .slipway/local/{run}"
    );

    let run = run_within(
        cwd.path(),
        &["--local", "validate", "--json"],
        Duration::from_secs(60),
    );
    run.expect_code(0);
    let report = run.report();
    assert_eq!(report["schema_valid"], true, "{run}");
    assert_eq!(report["current_version"], "0005", "{run}");

    let first = run_within(cwd.path(), &["local", "start"], Duration::from_secs(60));
    first.expect_code(0);
    let second = run_within(cwd.path(), &["local", "start"], Duration::from_secs(60));
    second.expect_code(0);
    let url = first.stdout().trim().to_owned();
    assert!(
        url.starts_with("postgres"),
        "local start prints a URL{first}"
    );
    assert_eq!(
        url,
        second.stdout().trim(),
        "the same server is reused{first}{second}"
    );

    let run = run_cli(cwd.path(), &["local", "stop"]);
    run.expect_code(0);
    assert!(run.stdout().contains("stopped"), "{run}");
    let run = run_cli(cwd.path(), &["local", "stop"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("no local PostgreSQL was running"),
        "{run}"
    );
}

// 8. --to, timeouts and durations ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_a_version_and_duration_options() {
    let db = TestDb::new("cli_to").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let dir = path_str(&dir);

    let run = run_cli(
        cwd.path(),
        &[
            "apply",
            "--to",
            "0002",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(0);
    let report = run.report();
    assert_eq!(versions(&report["applied"]), ["0001", "0002"], "{run}");
    assert_eq!(report["current_version"], "0002", "{run}");
    assert!(
        db.has_table("users").await && db.has_table("tree_nodes").await,
        "{run}"
    );
    assert!(
        !db.has_table("quiz_sessions").await,
        "0003 is past --to{run}"
    );

    let run = run_cli(
        cwd.path(),
        &[
            "validate",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(1);
    let pending = versions(&run.report()["pending"]);
    assert!(
        pending.len() >= 3 && pending[..3] == ["0003", "0004", "0005"],
        "what lies past --to stays pending{run}"
    );

    let run = run_cli(
        cwd.path(),
        &[
            "apply",
            "--json",
            "--lock-timeout",
            "200ms",
            "--lock-retries",
            "1",
            "--retry-backoff",
            "100ms",
            "--statement-timeout",
            "1m",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(0);
    assert_eq!(run.report()["current_version"], "0005", "{run}");

    for bad in [
        vec!["apply", "--lock-timeout", "5x"],
        vec!["apply", "--connect-timeout", "soon"],
        vec!["apply", "--lock-retries", "-1"],
    ] {
        let mut args = bad.clone();
        args.extend(["--database-url", &url, "--migrations", dir]);
        let run = run_cli(cwd.path(), &args);
        run.expect_code(2);
        assert!(
            run.stderr().contains(bad[2]),
            "the usage error names the bad value{run}"
        );
        assert!(run.stdout().is_empty(), "{run}");
    }
    assert_eq!(db.history_count().await, 6, "a usage error touches nothing");
}
