//! A server restart in the middle of an apply: a backend killed with
//! SIGKILL makes the postmaster end every session and run crash recovery,
//! as a crash or a failover would. In a test process of its own, since it
//! ends every session of the test server. Afterwards the report says
//! `connection`, the database is fully old, and a rerun succeeds.

mod common;

use std::time::{Duration, Instant};

use common::{migrations_dir, TestDb};
use slipway::{ApplyOptions, ErrorCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_batch_is_a_connection_error_and_changes_nothing() {
    let dir = migrations_dir(&[
        ("0001_base.sql", "CREATE TABLE base (id int);\n"),
        (
            "0002_slow.sql",
            "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\n",
        ),
    ]);
    let db = TestDb::new("restart").await;
    let before = db.snapshot().await;
    let run = {
        let migrator = db.migrator_with(dir.path(), common::patient_settings());
        tokio::spawn(async move { migrator.apply(&ApplyOptions::default()).await })
    };
    let inspect = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        let rows = inspect
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'slipway: 0002_slow.sql'",
                &[],
            )
            .await
            .expect("activity");
        if let Some(row) = rows.first() {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "the migration never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // SAFETY: kill(2) on a backend of the server this test process started.
    let killed = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(killed, 0);
    let report = run.await.expect("apply");
    assert!(!report.success);
    assert_eq!(
        report.error.as_ref().map(|e| e.code),
        Some(ErrorCode::Connection),
        "{}",
        report.to_json()
    );
    assert!(report.applied.is_empty(), "{}", report.to_json());
    // Crash recovery takes a moment; then the database is as it was. The
    // server's log says when it is over: a connection that succeeds is no
    // proof, since it may come before the postmaster noticed the crash and
    // be ended by the reset.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = common::cluster().log_file();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text
            .rfind("reinitializing")
            .is_some_and(|reset| text[reset..].contains("ready to accept connections"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not finish crash recovery; its log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        if common::cluster()
            .config(&db.name)
            .connect(tokio_postgres::NoTls)
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = db.snapshot().await;
    assert_eq!(after, before, "fully old");
    // A rerun succeeds (the slow migration replaced by a quick one).
    std::fs::write(
        dir.path().join("0002_slow.sql"),
        "CREATE TABLE slow (id int);\n",
    )
    .expect("rewrite 0002");
    let report = db
        .migrator_with(dir.path(), common::patient_settings())
        .apply(&ApplyOptions::default())
        .await;
    assert!(report.success, "{}", report.to_json());
}
