//! Real parts for the function's tests and its cold-start benchmark
//! (docs/DESIGN.md, "Real parts in tests"): a PostgreSQL server of our own, moto's
//! server on a free loopback port, `cargo lambda watch` as the Lambda runtime
//! emulator, the `bootstrap` binary under it, the AWS CLI.
//!
//! Every process started here is a [`Proc`]: its own process group, its
//! output in a log file, killed (group and all) when dropped — also when a
//! test panics — and, should the test process itself be killed, by the
//! kernel (`PR_SET_PDEATHSIG`). Readiness is polled, with generous bounds for
//! slow machines, and a process that dies while we wait fails the test with
//! its log.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use slipway_local::LocalCluster;

/// Bound on waiting for a server to listen; moto and `cargo lambda` start in
/// about a second here, much slower on a loaded CI machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lambda/ has a parent")
        .to_path_buf()
}

/// A tool installed in the project venv by scripts/setup.sh (`make test`
/// runs it first); `SLIPWAY_VENV` points elsewhere.
pub fn venv_bin(name: &str) -> PathBuf {
    let venv =
        std::env::var_os("SLIPWAY_VENV").map_or_else(|| workspace().join(".venv"), PathBuf::from);
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make test`, or `bash scripts/setup.sh`, which installs \
         scripts/requirements.txt into .venv",
        path.display()
    );
    path
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// A value no one else would produce, for passwords whose leaks we look for.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos:09}", std::process::id())
}

/// A child process we started and must stop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `command` in its own process group, output to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Proc {
        let file = File::create(log).expect("create a log file");
        let err = file.try_clone().expect("clone the log file");
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                // Die with the test process even when it is killed outright.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panic with its log if it has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}) early; its output:\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// Wait until something accepts connections on `port`.
    pub fn wait_for_port(&mut self, port: u16) {
        let started = Instant::now();
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return;
            }
            self.check_alive();
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "{} did not listen on port {port} within {READY_TIMEOUT:?}; its output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for it to exit by itself, at most `limit`; panic with its log
    /// when it does not.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "{} did not finish within {limit:?}; its output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop it: SIGTERM to the group, SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let Ok(pid) = i32::try_from(self.child.id()) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        };
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; the group may hold children of the child.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Environment for every AWS client the tests start: fake credentials, one
/// region, the developer's own ~/.aws kept out.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A command with a clean environment: PATH (venv first), HOME, and `env`.
pub fn clean_command(program: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(program);
    let path = std::env::var("PATH").unwrap_or_default();
    let venv = venv_bin("python");
    let venv_dir = venv.parent().map(Path::to_path_buf).unwrap_or_default();
    command
        .env_clear()
        .env("PATH", format!("{}:{path}", venv_dir.display()))
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
        )
        .env("LANG", "C.UTF-8");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// moto's server on a free loopback port.
pub struct Moto {
    pub proc: Proc,
    pub port: u16,
}

impl Moto {
    pub fn start(dir: &Path) -> Moto {
        let port = free_port();
        let mut command = clean_command(&venv_bin("moto_server"), &[]);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut proc = Proc::spawn("moto_server", command, &dir.join("moto.log"));
        proc.wait_for_port(port);
        Moto { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run the AWS CLI against moto; panic with everything on failure.
    pub fn aws(&self, args: &[&str]) -> String {
        let mut command = clean_command(&venv_bin("aws"), &aws_env(&self.url()));
        command.args(args);
        let output = run(command, &format!("aws {}", args.join(" ")));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Run `command` to completion; panic with its output unless it succeeded.
pub fn run(mut command: Command, shown: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `cargo lambda watch` serving only the Lambda APIs (runtime API and invoke
/// endpoint) on a free loopback port; the function process is ours to start
/// ([`Emulator::start_function`]), so a test controls its environment,
/// captures its logs and can give it a cold start at will. The emulator
/// routes invocations of function `_` to whichever process polls it.
pub struct Emulator {
    pub proc: Proc,
    pub port: u16,
}

/// The function name `cargo lambda watch --only-lambda-apis` serves.
pub const FUNCTION_NAME: &str = "_";

impl Emulator {
    pub fn start(dir: &Path) -> Emulator {
        let port = free_port();
        let mut command = clean_command(&venv_bin("cargo-lambda"), &[]);
        // It reads the manifest (cargo metadata) though it builds nothing.
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()]);
        if let Ok(cargo) = std::env::var("CARGO") {
            command.env("CARGO", cargo);
        }
        if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
            command.env("CARGO_TARGET_DIR", target);
        }
        let mut proc = Proc::spawn("cargo lambda watch", command, &dir.join("emulator.log"));
        proc.wait_for_port(port);
        Emulator { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start `bootstrap` against this emulator with `env` (plus the variables
    /// Lambda itself sets).
    pub fn start_function(&self, bootstrap: &Path, env: &[(String, String)], log: &Path) -> Proc {
        let mut command = clean_command(bootstrap, env);
        command
            .env("AWS_LAMBDA_RUNTIME_API", format!("{}/.rt", self.url()))
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512");
        Proc::spawn("bootstrap", command, log)
    }

    /// POST an event to the invoke endpoint, as `aws lambda invoke` does;
    /// returns the HTTP status and body.
    pub fn invoke_raw(&self, payload: &str) -> (u16, String) {
        invoke_at(self.port, payload)
    }
}

/// [`Emulator::invoke_raw`] for the emulator on `port` (usable from another
/// thread without the emulator's process handle).
pub fn invoke_at(port: u16, payload: &str) -> (u16, String) {
    let mut stream =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the emulator");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("set a read timeout");
    let request = format!(
        "POST /2015-03-31/functions/{FUNCTION_NAME}/invocations HTTP/1.1\r\n\
         Host: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        port,
        payload.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the invocation");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the invocation's response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// Undo `Transfer-Encoding: chunked` if the body looks chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            return out;
        }
        let Some(chunk) = after.get(..size) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or("");
    }
}

/// A fresh PostgreSQL server for one test process, stopped when dropped.
pub struct Postgres {
    pub cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("slipway-lambda-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let cluster = LocalCluster::start_fresh(dir.path())
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        Postgres { cluster, _dir: dir }
    }

    /// Run SQL as the superuser (over the Unix socket).
    pub async fn admin(&self, sql: &str) {
        let (client, connection) = self
            .cluster
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect as the superuser");
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap_or_else(|e| {
            let detail = e
                .as_db_error()
                .map_or_else(|| e.to_string(), ToString::to_string);
            panic!("{sql}: {detail}")
        });
    }

    /// A login role owning a new database, both named `name`, for
    /// password authentication over TCP (what a Secrets Manager secret
    /// describes).
    pub async fn create_app_database(&self, name: &str, password: &str) {
        self.admin(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            .await;
        // Alone: CREATE DATABASE refuses to run in a (multi-statement) transaction.
        self.admin(&format!("CREATE DATABASE {name} OWNER {name}"))
            .await;
    }

    /// RDS-format secret JSON for `role` on this server.
    pub fn secret_json(&self, role: &str, password: &str) -> serde_json::Value {
        serde_json::json!({
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": self.cluster.port(),
            "username": role,
            "password": password,
            "dbname": role,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}
