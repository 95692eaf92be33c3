//! What the `slipway` binary prints, black-box: a closed pipe on stdout or
//! stderr ends the writing and keeps the exit code; with `--json`, stdout
//! holds exactly one JSON report in every case, argument errors included
//! (`bad_request`, exit 2); timeouts PostgreSQL would refuse are `config`
//! errors before anything connects; a failed run prints its error once and
//! says whether anything was changed.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{example_migrations, migrations_dir, run_cli, slipway, Run, TestDb};
use serde_json::Value;

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp working directory")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A database URL nothing listens on: connecting fails at once, so a
/// `config` error proves the check came before the connection.
fn unreachable_url() -> String {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.local_addr().expect("local addr").port()
    };
    format!("postgres://u:hunter2secret@127.0.0.1:{port}/db")
}

/// stdout as exactly one JSON object, or a panic showing the run.
fn one_report(run: &Run) -> Value {
    let stdout = run.stdout();
    let values: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}{run}"));
    assert_eq!(values.len(), 1, "stdout holds exactly one report{run}");
    let report = values.into_iter().next().unwrap_or_default();
    assert!(report.is_object(), "the report is a JSON object{run}");
    report
}

fn wait_at_most(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("slipway still running after {limit:?}, killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run slipway with the read end of its stdout pipe (and, with
/// `close_stderr`, of its stderr pipe) closed before it writes: every write
/// gets EPIPE, as under `slipway ... | head -1` once `head` has exited.
fn run_with_closed_pipes(cwd: &Path, args: &[&str], close_stderr: bool) -> Run {
    let mut child = slipway()
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slipway");
    drop(child.stdout.take());
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = if close_stderr {
        drop(stderr);
        None
    } else {
        Some(std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        }))
    };
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    let stderr = reader
        .map(|r| r.join().expect("stderr reader"))
        .unwrap_or_default();
    Run {
        command: format!(
            "slipway {} (stdout closed{})",
            args.join(" "),
            if close_stderr { ", stderr closed" } else { "" }
        ),
        output: std::process::Output {
            status,
            stdout: Vec::new(),
            stderr,
        },
    }
}

fn assert_no_panic(run: &Run) {
    assert_ne!(run.code(), Some(101), "a closed pipe must not panic{run}");
    assert!(!run.stderr().contains("panicked"), "{run}");
}

// 1. A closed pipe -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_keeps_the_exit_code_of_the_outcome() {
    let db = TestDb::new("out_closed_pipe").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let dir = path_str(&dir);

    // `slipway --json apply | true`: the apply succeeds, so exit 0.
    let run = run_with_closed_pipes(
        cwd.path(),
        &[
            "--json",
            "apply",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
        false,
    );
    assert_no_panic(&run);
    run.expect_code(0);
    assert!(db.has_table("users").await, "the apply went through{run}");

    // `slipway status | head -1`, human text.
    let run = run_with_closed_pipes(
        cwd.path(),
        &["status", "--database-url", &url, "--migrations", dir],
        false,
    );
    assert_no_panic(&run);
    run.expect_code(0);

    // validate of an up-to-date schema: 0, with stderr closed too.
    let run = run_with_closed_pipes(
        cwd.path(),
        &[
            "validate",
            "-vv",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
        true,
    );
    assert_no_panic(&run);
    run.expect_code(0);
}

#[test]
fn a_closed_pipe_on_an_error_path_keeps_exit_2() {
    let cwd = workdir();
    let url = unreachable_url();
    let dir = example_migrations();
    let dir = path_str(&dir);
    for (args, close_stderr) in [
        // The report of a failed run, on stdout.
        (vec!["--json", "validate", "--database-url", &url], false),
        (vec!["apply", "--database-url", &url], true),
        // The one-line error of snapshot, on stderr.
        (vec!["snapshot", "--database-url", &url], true),
        // Argument errors.
        (vec!["--json", "--lock-timeout", "banana", "apply"], false),
        (vec!["--lock-timeout", "banana", "apply"], true),
    ] {
        let mut args = args.clone();
        args.extend(["--migrations", dir]);
        let run = run_with_closed_pipes(cwd.path(), &args, close_stderr);
        assert_no_panic(&run);
        run.expect_code(2);
    }
    // lint, clean of errors: 0.
    let run = run_with_closed_pipes(cwd.path(), &["lint", "--migrations", dir], true);
    assert_no_panic(&run);
    run.expect_code(0);
}

// 3. --json: exactly one report ---------------------------------------------------

#[test]
fn json_argument_errors_are_one_bad_request_report() {
    let cwd = workdir();
    let dir = example_migrations();
    let dir = path_str(&dir);
    for (args, action) in [
        (vec!["--json", "--lock-timeout", "banana", "apply"], "apply"),
        (vec!["apply", "--json", "--lock-retries", "-1"], "apply"),
        (vec!["--json"], "unknown"),
        (vec!["--json", "--migrations", dir], "unknown"),
        (vec!["--json", "migrate"], "unknown"),
        (vec!["--json", "local", "url"], "local"),
        (vec!["--json", "local"], "local"),
        (vec!["--json", "status", "--no-such-flag"], "status"),
        (vec!["--json", "lint", "--no-such-flag"], "lint"),
        (vec!["--json", "snapshot", "--check=yes"], "snapshot"),
        (vec!["--json", "--dry-run", "apply", "--to"], "apply"),
    ] {
        let run = run_cli(cwd.path(), &args);
        run.expect_code(2);
        let report = one_report(&run);
        assert_eq!(report["success"], false, "{run}");
        assert_eq!(report["error"]["code"], "bad_request", "{run}");
        assert_eq!(report["action"], action, "{run}");
        let message = report["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("slipway --help"), "{run}");
        assert!(!message.contains("Usage:"), "{run}");

        // Without --json: clap's error on stderr, nothing on stdout.
        let plain: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
        let run = run_cli(cwd.path(), &plain);
        run.expect_code(2);
        assert!(run.stdout().is_empty(), "{run}");
        assert!(!run.stderr().is_empty(), "{run}");
    }
    // The bad value is named.
    let run = run_cli(cwd.path(), &["--json", "--lock-timeout", "banana", "apply"]);
    let report = one_report(&run);
    assert!(
        report["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("banana") && m.contains("--lock-timeout")),
        "{run}"
    );
    // Asked-for help is no error.
    run_cli(cwd.path(), &["--help"]).expect_code(0);
}

#[test]
fn json_lint_is_one_report() {
    let cwd = workdir();
    let dir = example_migrations();
    let run = run_cli(
        cwd.path(),
        &["--json", "lint", "--migrations", path_str(&dir)],
    );
    run.expect_code(0);
    assert_eq!(one_report(&run)["action"], "lint", "{run}");

    let run = run_cli(
        cwd.path(),
        &["lint", "--json", "--migrations", "no/such/dir"],
    );
    run.expect_code(2);
    assert_eq!(one_report(&run)["error"]["code"], "config", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_snapshot_and_snapshot_check_are_one_report() {
    let db = TestDb::new("out_snapshot").await;
    let cwd = workdir();
    let url = db.url();
    let dir = example_migrations();
    let dir = path_str(&dir);
    let out = cwd.path().join("snapshot.json");
    let out = path_str(&out);

    let run = run_cli(
        cwd.path(),
        &[
            "snapshot",
            "--json",
            "--out",
            out,
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(0);
    let report = one_report(&run);
    assert_eq!(report["success"], true, "{run}");
    assert_eq!(report["action"], "snapshot", "{run}");
    assert_eq!(report["snapshot"]["path"], out, "{run}");
    assert_eq!(report["snapshot"]["written"], true, "{run}");
    assert!(
        Path::new(out).is_file(),
        "the snapshot file is written{run}"
    );

    let check = |cwd: &Path| {
        run_cli(
            cwd,
            &[
                "snapshot",
                "--check",
                "--json",
                "--out",
                out,
                "--database-url",
                &url,
                "--migrations",
                dir,
            ],
        )
    };
    let run = check(cwd.path());
    run.expect_code(0);
    let report = one_report(&run);
    assert_eq!(report["schema_valid"], true, "{run}");
    assert_eq!(report["snapshot"]["written"], false, "{run}");

    std::fs::write(out, "{}\n").expect("make the snapshot stale");
    let run = check(cwd.path());
    run.expect_code(1);
    let report = one_report(&run);
    assert_eq!(report["success"], true, "{run}");
    assert_eq!(report["schema_valid"], false, "{run}");

    let bad = unreachable_url();
    let run = run_cli(
        cwd.path(),
        &[
            "snapshot",
            "--json",
            "--check",
            "--database-url",
            &bad,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(2);
    assert_eq!(one_report(&run)["error"]["code"], "connection", "{run}");
    assert!(!run.stdout().contains("hunter2secret"), "{run}");
}

/// Stops the working directory's `--local` server when the test ends.
struct StopLocal<'a>(&'a Path);

impl Drop for StopLocal<'_> {
    fn drop(&mut self) {
        let _ = run_cli(self.0, &["local", "stop"]);
    }
}

#[test]
fn json_local_start_and_stop_are_one_report() {
    let cwd = workdir();
    let _stop = StopLocal(cwd.path());

    let run = run_cli(cwd.path(), &["--json", "local", "stop"]);
    run.expect_code(0);
    let report = one_report(&run);
    assert_eq!(
        (&report["success"], &report["action"]),
        (&Value::Bool(true), &Value::from("local stop")),
        "{run}"
    );

    let run = run_cli(cwd.path(), &["local", "start", "--json"]);
    run.expect_code(0);
    let report = one_report(&run);
    assert_eq!(report["action"], "local start", "{run}");
    assert_eq!(report["database"], "slipway", "{run}");
    assert!(
        report["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("postgres")),
        "local start reports its URL{run}"
    );

    let run = run_cli(cwd.path(), &["local", "stop", "--json"]);
    run.expect_code(0);
    assert_eq!(one_report(&run)["success"], true, "{run}");
}

// 4. Timeouts checked before connecting -------------------------------------------

#[test]
fn out_of_range_timeouts_are_config_errors_before_connecting() {
    let cwd = workdir();
    let url = unreachable_url();
    let dir = example_migrations();
    let dir = path_str(&dir);
    for (flag, value) in [
        ("--statement-timeout", "1000h"),
        ("--statement-timeout", "2147484s"),
        ("--lock-timeout", "600h"),
        ("--lock-timeout", "0"),
        ("--lock-timeout", "0ms"),
        ("--connect-timeout", "0"),
        ("--connect-timeout", "2h"),
    ] {
        for action in [
            "validate", "apply", "status", "rollback", "verify", "snapshot",
        ] {
            let args = [
                action,
                "--json",
                flag,
                value,
                "--to",
                "0",
                "--database-url",
                &url,
                "--migrations",
                dir,
            ];
            // --to belongs to apply and rollback only.
            let args: Vec<&str> = if action == "apply" || action == "rollback" {
                args.to_vec()
            } else {
                args.iter()
                    .copied()
                    .enumerate()
                    .filter(|(i, _)| *i != 4 && *i != 5)
                    .map(|(_, a)| a)
                    .collect()
            };
            let run = run_cli(cwd.path(), &args);
            run.expect_code(2);
            let report = one_report(&run);
            assert_eq!(report["error"]["code"], "config", "{run}");
            assert!(
                report["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(flag)),
                "the error names {flag}{run}"
            );
        }
    }
    // The limits themselves are fine: these fail only on connecting.
    for (flag, value) in [
        ("--statement-timeout", "0"),
        ("--statement-timeout", "2147483647ms"),
        ("--lock-timeout", "2147483647ms"),
        ("--connect-timeout", "1h"),
    ] {
        let run = run_cli(
            cwd.path(),
            &[
                "validate",
                "--json",
                flag,
                value,
                "--database-url",
                &url,
                "--migrations",
                dir,
            ],
        );
        run.expect_code(2);
        assert_eq!(one_report(&run)["error"]["code"], "connection", "{run}");
    }
    // Human text: the same error, in the report's words.
    let run = run_cli(
        cwd.path(),
        &[
            "apply",
            "--statement-timeout",
            "1000h",
            "--database-url",
            &url,
            "--migrations",
            dir,
        ],
    );
    run.expect_code(2);
    assert!(
        run.stdout().contains("error [config] --statement-timeout"),
        "{run}"
    );
}

// 5. Each error once; "nothing was changed" only when true --------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_prints_its_error_once_and_says_nothing_changed() {
    let db = TestDb::new("out_error_once").await;
    let cwd = workdir();
    let migrations = migrations_dir(&[
        ("0001_first.sql", "CREATE TABLE first_table (id int);\n"),
        ("0002_broken.sql", "CREATE TABL broken (id int);\n"),
    ]);
    let url = db.url();
    let dir = path_str(migrations.path());

    for verbose in [None, Some("-v")] {
        let mut args = vec!["apply", "--database-url", &url, "--migrations", dir];
        args.extend(verbose);
        let run = run_cli(cwd.path(), &args);
        run.expect_code(2);
        let all = format!("{}{}", run.stdout(), run.stderr());
        assert_eq!(
            all.matches("syntax error at or near").count(),
            1,
            "the error is printed once{run}"
        );
        assert!(run.stdout().contains("[migration_failed]"), "{run}");
        assert!(run.stdout().contains("nothing was changed"), "{run}");
    }
    assert!(!db.has_table("first_table").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_no_transaction_step_does_not_claim_nothing_changed() {
    let db = TestDb::new("out_no_tx").await;
    let cwd = workdir();
    let migrations = migrations_dir(&[(
        "0001_alone.sql",
        "-- slipway:no-transaction\n\
         CREATE TABLE kept_table (id int);\n\
         CREATE TABL broken (id int);\n",
    )]);
    let url = db.url();
    let run = run_cli(
        cwd.path(),
        &[
            "apply",
            "--database-url",
            &url,
            "--migrations",
            path_str(migrations.path()),
        ],
    );
    run.expect_code(2);
    assert!(run.stdout().contains("[migration_failed]"), "{run}");
    assert!(
        !run.stdout().contains("nothing was changed"),
        "its first statement ran on its own and stayed{run}"
    );
    assert!(db.has_table("kept_table").await, "{run}");
}
