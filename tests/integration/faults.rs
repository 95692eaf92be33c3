//! Fault injection: slipway's session terminated, and the CLI sent SIGTERM,
//! SIGINT or SIGKILL, at each point of a run — waiting for the lock, in the
//! middle of the batch, between the batch and `COMMIT`, during a
//! no-transaction migration, during a rollback. Afterwards the database is
//! fully old or fully new, the history agrees with the schema, no advisory
//! lock or prepared transaction is left, and a rerun succeeds.
//!
//! A migration is held at a known point by making it wait for an advisory
//! lock the test holds (key [`GATE`]); the test opens the gate to let it go.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, migrations_dir, slipway, TestDb};
use slipway::{ApplyOptions, ErrorCode, Report, RollbackOptions};
use tokio_postgres::Client;

/// The advisory lock key a held migration waits for.
const GATE: i64 = 7_700_770;

fn files(no_transaction: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("0001_base.sql", "CREATE TABLE base (id int);\n"),
        ("0001_base_rollback.sql", "DROP TABLE base;\n"),
        (
            "0002_gated.sql",
            if no_transaction {
                "-- slipway:no-transaction\nSELECT pg_advisory_lock_shared(7700770), pg_advisory_unlock_shared(7700770);\nCREATE INDEX CONCURRENTLY base_id ON base (id);\n"
            } else {
                "CREATE TABLE gated (id int);\nSELECT pg_advisory_xact_lock_shared(7700770);\nINSERT INTO gated VALUES (1);\n"
            },
        ),
        (
            "0002_gated_rollback.sql",
            if no_transaction {
                "DROP INDEX base_id;\n"
            } else {
                "SELECT pg_advisory_xact_lock_shared(7700770);\nDROP TABLE gated;\n"
            },
        ),
    ]
}

/// An apply of `dir` on `db`, running in the background.
fn spawn_apply(db: &TestDb, dir: &std::path::Path) -> tokio::task::JoinHandle<Report> {
    let migrator = db.migrator_with(dir, common::patient_settings());
    tokio::spawn(async move { migrator.apply(&ApplyOptions::default()).await })
}

/// Panic with the report unless it failed with `code`.
fn expect_error(report: &Report, code: ErrorCode) {
    assert!(!report.success, "{}", report.to_json());
    assert_eq!(
        report.error.as_ref().map(|e| e.code),
        Some(code),
        "{}",
        report.to_json()
    );
}

/// The condition matching slipway's session while `script` waits at the gate.
fn at_the_gate(script: &str) -> String {
    format!("application_name = 'slipway: {script}' AND wait_event_type = 'Lock'")
}

/// A session holding the gate shut.
async fn close_gate(db: &TestDb) -> Client {
    let gate = db.client().await;
    gate.execute("SELECT pg_advisory_lock($1)", &[&GATE])
        .await
        .expect("close the gate");
    gate
}

async fn open_gate(gate: &Client) {
    gate.execute("SELECT pg_advisory_unlock($1)", &[&GATE])
        .await
        .expect("open the gate");
}

/// Poll `sql` (a count) until it is at least 1.
async fn wait_until(client: &Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = client.query_one(sql, &[]).await.expect("poll").get(0);
        if n >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The pid of the slipway session whose application_name is `name`, once
/// it shows `state`-like activity.
async fn slipway_pid(client: &Client, condition: &str) -> i32 {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND {condition}"
    );
    wait_until(client, &sql, condition).await;
    client
        .query_one(
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND {condition} LIMIT 1"
            ),
            &[],
        )
        .await
        .expect("pid")
        .get(0)
}

async fn terminate(client: &Client, pid: i32) {
    let done: bool = client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate")
        .get(0);
    assert!(done, "pg_terminate_backend({pid})");
}

/// No slipway session left, hence no advisory lock but the gate's, and no
/// prepared transaction.
async fn nothing_left(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sessions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'slipway%'",
                &[],
            )
            .await
            .expect("sessions")
            .get(0);
        if sessions == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a slipway session outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let locks: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT (classid = 0 AND objid = $1::bigint::oid)",
            &[&GATE],
        )
        .await
        .expect("locks")
        .get(0);
    assert_eq!(locks, 0, "an advisory lock was left behind");
    let prepared: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .await
        .expect("prepared")
        .get(0);
    assert_eq!(prepared, 0, "a prepared transaction was left behind");
}

/// Apply everything again (gate open) and check the result is complete.
async fn rerun_succeeds(db: &TestDb, dir: &std::path::Path) {
    let report = db
        .migrator_with(dir, common::patient_settings())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
    let validate = db
        .migrator_with(dir, common::patient_settings())
        .validate()
        .await;
    assert!(validate.schema_valid, "{}", validate.to_json());
}

async fn apply_to(db: &TestDb, dir: &std::path::Path, version: &str) {
    let report = db
        .migrator_with(dir, common::patient_settings())
        .apply(&ApplyOptions {
            to: Some(version.into()),
            ..ApplyOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_mid_batch_is_a_connection_error_and_changes_nothing() {
    let dir = migrations_dir(&files(false));
    let db = TestDb::new("kill_mid_batch").await;
    let inspect = db.client().await;
    let before = db.snapshot().await;
    let gate = close_gate(&db).await;
    let run = spawn_apply(&db, dir.path());
    let pid = slipway_pid(&inspect, &at_the_gate("0002_gated.sql")).await;
    terminate(&inspect, pid).await;
    let report = run.await.expect("apply");
    expect_error(&report, ErrorCode::Connection);
    assert!(report.applied.is_empty(), "{}", report.to_json());
    nothing_left(&inspect).await;
    assert_eq!(db.snapshot().await, before, "fully old");
    open_gate(&gate).await;
    rerun_succeeds(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_while_waiting_for_the_lock_is_a_connection_error() {
    let dir = migrations_dir(&files(false));
    let db = TestDb::new("kill_waiting").await;
    let inspect = db.client().await;
    let gate = close_gate(&db).await;
    let first = spawn_apply(&db, dir.path());
    slipway_pid(&inspect, "application_name = 'slipway: 0002_gated.sql'").await;
    let second = spawn_apply(&db, dir.path());
    // The second run waits in pg_advisory_lock for the first.
    let waiting = slipway_pid(
        &inspect,
        "application_name = 'slipway' AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
    )
    .await;
    terminate(&inspect, waiting).await;
    let report = second.await.expect("second");
    expect_error(&report, ErrorCode::Connection);
    open_gate(&gate).await;
    let report = first.await.expect("first");
    assert!(report.success, "{}", report.to_json());
    nothing_left(&inspect).await;
    rerun_succeeds(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_during_a_no_transaction_migration_leaves_it_unrecorded() {
    let dir = migrations_dir(&files(true));
    let db = TestDb::new("kill_no_transaction").await;
    let inspect = db.client().await;
    let gate = close_gate(&db).await;
    let run = spawn_apply(&db, dir.path());
    let pid = slipway_pid(&inspect, &at_the_gate("0002_gated.sql")).await;
    terminate(&inspect, pid).await;
    let report = run.await.expect("apply");
    expect_error(&report, ErrorCode::Connection);
    nothing_left(&inspect).await;
    // 0001 committed before it and is recorded; 0002 is neither.
    let versions: Vec<String> = inspect
        .query("SELECT version FROM slipway.history ORDER BY id", &[])
        .await
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, ["0001"]);
    let index: bool = inspect
        .query_one("SELECT to_regclass('public.base_id') IS NOT NULL", &[])
        .await
        .expect("regclass")
        .get(0);
    assert!(!index);
    open_gate(&gate).await;
    rerun_succeeds(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_during_a_rollback_leaves_everything_applied() {
    let dir = migrations_dir(&files(false));
    let db = TestDb::new("kill_rollback").await;
    let inspect = db.client().await;
    apply_to(&db, dir.path(), "0002").await;
    let before = db.snapshot().await;
    let gate = close_gate(&db).await;
    let run = {
        let migrator = db.migrator_with(dir.path(), common::patient_settings());
        tokio::spawn(async move {
            migrator
                .rollback(&RollbackOptions {
                    to: "0001".into(),
                    ..RollbackOptions::default()
                })
                .await
        })
    };
    let pid = slipway_pid(&inspect, &at_the_gate("0002_gated_rollback.sql")).await;
    terminate(&inspect, pid).await;
    let report = run.await.expect("rollback");
    expect_error(&report, ErrorCode::Connection);
    nothing_left(&inspect).await;
    assert_eq!(db.snapshot().await, before, "fully as before the rollback");
    open_gate(&gate).await;
    let report = db
        .migrator_with(dir.path(), common::patient_settings())
        .rollback(&RollbackOptions {
            to: "0001".into(),
            ..RollbackOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());
}

/// The CLI applying `dir` to `db`; `piped` keeps its output.
fn spawn_cli(db: &TestDb, dir: &std::path::Path, piped: bool) -> Child {
    let out = || if piped { Stdio::piped() } else { Stdio::null() };
    slipway()
        .current_dir(dir)
        .args([
            "--database-url",
            &db.url(),
            "--migrations",
            ".",
            "--lock-timeout",
            "60s",
            "--json",
            "apply",
        ])
        .stdout(out())
        .stderr(out())
        .spawn()
        .expect("start slipway")
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on a child process this test started and still owns.
    let done = unsafe { libc::kill(pid, signal) };
    assert_eq!(done, 0, "kill({pid}, {signal})");
}

async fn killed_cli_mid_batch(test: &str, sig: libc::c_int) {
    let dir = migrations_dir(&files(false));
    let db = TestDb::new(test).await;
    let inspect = db.client().await;
    let before = db.snapshot().await;
    let gate = close_gate(&db).await;
    let mut child = spawn_cli(&db, dir.path(), false);
    slipway_pid(&inspect, &at_the_gate("0002_gated.sql")).await;
    signal(&child, sig);
    let status = child.wait().expect("wait for slipway");
    assert!(!status.success(), "{status:?}");
    // The server notices the closed client (client_connection_check_interval)
    // and rolls back; the gate stays shut until the session is gone.
    nothing_left(&inspect).await;
    assert_eq!(db.snapshot().await, before, "fully old");
    open_gate(&gate).await;
    rerun_succeeds(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_cli_mid_batch_changes_nothing() {
    killed_cli_mid_batch("sigterm", libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_to_the_cli_mid_batch_changes_nothing() {
    killed_cli_mid_batch("sigint", libc::SIGINT).await;
}

/// The batch has run; its transaction waits, open, for the client's
/// `COMMIT`. The client is stopped there (SIGSTOP), then killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_batch_and_commit_changes_nothing() {
    let dir = migrations_dir(&files(false));
    let db = TestDb::new("kill_before_commit").await;
    let inspect = db.client().await;
    let before = db.snapshot().await;
    let gate = close_gate(&db).await;
    let mut child = spawn_cli(&db, dir.path(), false);
    slipway_pid(&inspect, &at_the_gate("0002_gated.sql")).await;
    signal(&child, libc::SIGSTOP);
    open_gate(&gate).await;
    // The server finishes the batch and waits for the stopped client.
    slipway_pid(
        &inspect,
        "application_name LIKE 'slipway%' AND state = 'idle in transaction'",
    )
    .await;
    signal(&child, libc::SIGKILL);
    child.wait().expect("wait for slipway");
    nothing_left(&inspect).await;
    assert_eq!(db.snapshot().await, before, "fully old");
    rerun_succeeds(&db, dir.path()).await;
}

/// The same point, but the server side goes away: the client, resumed,
/// reports a connection error and nothing was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_between_the_batch_and_commit_is_a_connection_error() {
    let dir = migrations_dir(&files(false));
    let db = TestDb::new("term_before_commit").await;
    let inspect = db.client().await;
    let before = db.snapshot().await;
    let gate = close_gate(&db).await;
    let child = spawn_cli(&db, dir.path(), true);
    slipway_pid(&inspect, &at_the_gate("0002_gated.sql")).await;
    signal(&child, libc::SIGSTOP);
    open_gate(&gate).await;
    let pid = slipway_pid(
        &inspect,
        "application_name LIKE 'slipway%' AND state = 'idle in transaction'",
    )
    .await;
    terminate(&inspect, pid).await;
    signal(&child, libc::SIGCONT);
    let output = child.wait_with_output().expect("wait for slipway");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(output.status.code(), Some(2), "{report}");
    assert_eq!(report["error"]["code"], "connection", "{report}");
    nothing_left(&inspect).await;
    assert_eq!(db.snapshot().await, before, "fully old");
    rerun_succeeds(&db, dir.path()).await;
}
