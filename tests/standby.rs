//! A hot standby is refused before anything runs: a streaming replica of
//! the test server (`pg_basebackup -R`), started beside it, answers apply
//! and rollback with `connection` ("read-only server; point slipway at the
//! primary") and validate as usual. In a test process of its own, with a
//! server of its own: the base backup forces a checkpoint of the whole
//! server and copies every database on it, which beside the other suites
//! would mean copying their databases too, while they change.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{migrations_dir, TestDb};
use slipway::{
    ApplyOptions, ConnectOptions, Database, ErrorCode, MigrationSet, Migrator, RollbackOptions,
};

/// `program` from the server's bin dir, as the user that owns the server
/// (`postgres` when the tests run as root).
fn postgres_command(program: &str) -> Command {
    let path = common::cluster().bin_dir().join(program);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops the standby when the test ends, passing or not.
struct Standby {
    data: std::path::PathBuf,
}

impl Drop for Standby {
    fn drop(&mut self) {
        let mut stop = postgres_command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_is_refused_before_anything_runs() {
    let dir = migrations_dir(&[
        ("0001_a.sql", "CREATE TABLE a (id int);\n"),
        ("0001_a_rollback.sql", "DROP TABLE a;\n"),
        ("0002_b.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let db = TestDb::new("standby").await;
    let primary = db.migrator(dir.path());
    let report = primary
        .apply(&ApplyOptions {
            to: Some("0001".into()),
            ..ApplyOptions::default()
        })
        .await;
    assert!(report.success, "{}", report.to_json());

    let cluster = common::cluster();
    let home = cluster.dir().join("standby");
    std::fs::create_dir_all(&home).expect("standby dir");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["postgres:postgres"]).arg(&home);
                c
            },
            "chown the standby dir",
        );
    }
    let data = home.join("data");
    let mut backup = postgres_command("pg_basebackup");
    backup
        .arg("-h")
        .arg(cluster.socket_dir())
        .arg("-p")
        .arg(cluster.port().to_string())
        .args(["-U", "postgres", "-X", "stream", "-R", "-c", "fast", "-D"])
        .arg(&data);
    run(backup, "pg_basebackup");
    let standby = Standby { data: data.clone() };
    let port = free_port();
    let mut start = postgres_command("pg_ctl");
    start
        .arg("-D")
        .arg(&standby.data)
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=''",
            home.display()
        ))
        .arg("-l")
        .arg(home.join("log"))
        .args(["-w", "start"]);
    run(start, "start the standby");

    let mut only = tokio_postgres::Config::new();
    only.host_path(&home)
        .port(port)
        .user("postgres")
        .dbname(&db.name);
    let connect = ConnectOptions::new(only);
    let migrator = |set: MigrationSet| {
        Migrator::new(
            set,
            Database::new(connect.clone(), "test:standby"),
            common::fast_settings(),
        )
    };
    let set = || MigrationSet::from_dir(dir.path()).expect("load");

    // The replica replays the primary's history before it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let validate = migrator(set()).validate().await;
        if validate.success && validate.current_version.as_deref() == Some("0001") {
            assert_eq!(validate.pending.len(), 1, "{}", validate.to_json());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never answered: {}",
            validate.to_json()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let before = db.snapshot().await;
    let report = migrator(set()).apply(&ApplyOptions::default()).await;
    let error = report.error.as_ref().expect("apply must fail");
    assert_eq!(error.code, ErrorCode::Connection, "{}", report.to_json());
    assert!(
        error.message.contains("hot standby") && error.message.contains("primary"),
        "{}",
        error.message
    );
    let report = migrator(set())
        .rollback(&RollbackOptions {
            to: "0".into(),
            ..RollbackOptions::default()
        })
        .await;
    assert_eq!(
        report.error.as_ref().map(|e| e.code),
        Some(ErrorCode::Connection),
        "{}",
        report.to_json()
    );
    assert_eq!(db.snapshot().await, before, "the primary is unchanged");
    drop(standby);
}
