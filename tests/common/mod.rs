//! Test harness: one real PostgreSQL server per test process, started by the
//! same code as `slipway --local` (initdb in a temp dir, a free loopback port,
//! run as an unprivileged user when the tests run as root) and stopped when
//! the process exits; a fresh database per test, dropped when the test passes
//! and kept (its name printed) when it fails. `tests/integration` shares the
//! server among all its suites; `tests/restart.rs` and `tests/standby.rs`,
//! which act on the whole server, get one each.
//!
//! Also a black-box runner for the `slipway` binary that dumps the command,
//! stdout and stderr whenever an assertion about it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use slipway::{ConnectOptions, Database, MigrationSet, Migrator, Settings};
use slipway_local::LocalCluster;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

struct Server {
    cluster: LocalCluster,
    dir: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();

extern "C" fn stop_server_at_exit() {
    if let Some(server) = SERVER.get() {
        let _ = server.cluster.stop();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// The process's server, started on first use.
pub fn cluster() -> &'static LocalCluster {
    &SERVER
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("slipway-test-")
                .tempdir()
                .expect("create a temp dir for the test server")
                .keep();
            let cluster = LocalCluster::start_fresh(&dir)
                .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL server: {e}"));
            // SAFETY: registering a plain `extern "C"` function has no preconditions.
            unsafe {
                libc::atexit(stop_server_at_exit);
            }
            Server { cluster, dir }
        })
        .cluster
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database of its own for one test.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// Create a database named after the test.
    pub async fn new(test: &str) -> TestDb {
        let cluster = cluster();
        let name = format!(
            "t_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        cluster
            .ensure_database(&name)
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        TestDb { name }
    }

    /// URL over the Unix socket (what the CLI gets as --database-url).
    pub fn url(&self) -> String {
        cluster().url(&self.name)
    }

    /// URL over TCP with password authentication.
    pub fn tcp_url(&self) -> String {
        cluster().tcp_url(&self.name)
    }

    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::new(cluster().config(&self.name))
    }

    /// A migrator for `dir` against this database, with quick lock retries.
    pub fn migrator(&self, dir: &Path) -> Migrator {
        self.migrator_with(dir, fast_settings())
    }

    pub fn migrator_with(&self, dir: &Path, settings: Settings) -> Migrator {
        let set = MigrationSet::from_dir(dir).expect("load migrations");
        Migrator::new(
            set,
            Database::new(self.connect_options(), "test:harness"),
            settings,
        )
    }

    /// A plain client for inspecting the database.
    pub async fn client(&self) -> Client {
        let (client, connection) = cluster()
            .config(&self.name)
            .connect(NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// Everything a migration could change, as sorted text: schemas,
    /// relations, columns, constraints, indexes, functions, views, and the
    /// history rows. Two equal snapshots mean the database is as it was.
    pub async fn snapshot(&self) -> String {
        let client = self.client().await;
        let rows = client
            .query(SNAPSHOT_SQL, &[])
            .await
            .expect("snapshot the catalog");
        let mut lines: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let history = client
            .query(
                "SELECT coalesce(version, '-') || ' ' || kind || ' ' || script || ' ' || checksum \
                 FROM slipway.history ORDER BY id",
                &[],
            )
            .await
            .map(Some);
        match or_if_undefined_table(history, None, "read the history") {
            Some(rows) => lines.extend(
                rows.iter()
                    .map(|r| format!("history {}", r.get::<_, String>(0))),
            ),
            None => lines.push("history: none".into()),
        }
        lines.join("\n")
    }

    /// Number of history rows (0 when the history table does not exist yet).
    pub async fn history_count(&self) -> i64 {
        let client = self.client().await;
        let count = client
            .query_one("SELECT count(*) FROM slipway.history", &[])
            .await
            .map(|row| row.get(0));
        or_if_undefined_table(count, 0, "count the history rows")
    }

    /// Whether `public.<table>` exists.
    pub async fn has_table(&self, table: &str) -> bool {
        let client = self.client().await;
        let row = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("public.{table}")],
            )
            .await
            .expect("to_regclass");
        row.get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept test database {} for inspection: {}",
                self.name,
                self.url()
            );
            return;
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a database call needs a
        // runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async { cluster().drop_database(&name).await })
        })
        .join();
    }
}

/// The answer of a query over a table that may not exist yet: `absent` when
/// PostgreSQL says it does not (SQLSTATE 42P01, undefined_table), the rows
/// otherwise. Any other error panics with `what`: a refused connection or a
/// broken query must fail the test, never pass for "no rows".
pub fn or_if_undefined_table<T>(
    result: Result<T, tokio_postgres::Error>,
    absent: T,
    what: &str,
) -> T {
    match result {
        Ok(value) => value,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => absent,
        Err(e) => panic!("{what}: {e}"),
    }
}

const SNAPSHOT_SQL: &str = "
SELECT x FROM (
  SELECT 'schema ' || nspname::text AS x FROM pg_namespace
   WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
  UNION ALL
  SELECT 'relation ' || n.nspname::text || '.' || c.relname::text || ' ' || c.relkind::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
  UNION ALL
  SELECT 'column ' || table_schema::text || '.' || table_name::text || '.' || column_name::text || ' ' || data_type::text
         || ' ' || is_nullable::text || ' ' || coalesce(column_default::text, '')
    FROM information_schema.columns
   WHERE table_schema NOT LIKE 'pg\\_%' AND table_schema <> 'information_schema'
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname::text || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint
   WHERE connamespace IN (SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema')
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
  UNION ALL
  SELECT 'view ' || schemaname::text || '.' || viewname::text || ' ' || md5(definition) FROM pg_views
   WHERE schemaname NOT LIKE 'pg\\_%' AND schemaname <> 'information_schema'
) s ORDER BY x";

/// The example migrations the project ships.
pub fn example_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// A temp directory holding the given migration files.
pub fn migrations_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(path, contents).expect("write migration");
    }
    dir
}

/// Settings with short lock retries so tests don't wait long.
pub fn fast_settings() -> Settings {
    Settings {
        lock_timeout: std::time::Duration::from_millis(200),
        statement_timeout: std::time::Duration::from_secs(60),
        lock_retries: 2,
        retry_backoff: std::time::Duration::from_millis(100),
    }
}

/// Settings patient enough that racing runs queue for the lock in turn and
/// a migration held at a gate by a test is not timed out: long waits, no
/// retries.
pub fn patient_settings() -> Settings {
    Settings {
        lock_timeout: std::time::Duration::from_secs(60),
        statement_timeout: std::time::Duration::from_secs(120),
        lock_retries: 0,
        retry_backoff: std::time::Duration::from_millis(100),
    }
}

/// The `slipway` binary under test.
pub fn slipway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("DB_SECRET_ARN")
        .env_remove("DB_SSLMODE")
        .env_remove("DB_CA_BUNDLE")
        .env_remove("SLIPWAY_LOG");
    command
}

/// A finished CLI run, with everything needed to explain a failed assertion.
pub struct Run {
    pub command: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    /// The JSON report on stdout.
    pub fn report(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout().trim())
            .unwrap_or_else(|e| panic!("{self}\nstdout is not a JSON report: {e}"))
    }
    /// Panic with the whole run unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code(), Some(code), "{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n--- command: {}\n--- exit: {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.command,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// Run `slipway` with `args` in `cwd`.
pub fn run_cli(cwd: &Path, args: &[&str]) -> Run {
    let output = slipway()
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run slipway");
    Run {
        command: format!("slipway {}", args.join(" ")),
        output,
    }
}

/// A temp directory holding a copy of the example migrations, for tests that
/// edit, delete or re-encode files.
pub fn copy_example_migrations() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read migrations") {
            let entry = entry.expect("dir entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy migration");
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    copy(&example_migrations(), dir.path());
    dir
}
