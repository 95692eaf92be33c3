//! What both benchmarks need to time slipway against `psql` as black boxes:
//! a throw-away server, the release binary, the `psql` to compare with, and
//! medians of wall times. Shared so that both measure the same way.

// Each benchmark uses its own part of this module.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use slipway_local::LocalCluster;

/// The cluster, stopped and its folder removed when dropped, on a panic too,
/// so a failed run leaves no server behind.
pub struct Server {
    pub cluster: LocalCluster,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let cluster = LocalCluster::start_fresh(dir)
            .unwrap_or_else(|e| panic!("cannot start the benchmark PostgreSQL server: {e}"));
        Server { cluster }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        progress("stopping the throw-away PostgreSQL");
        if let Err(e) = self.cluster.stop() {
            progress(&format!("could not stop the benchmark server: {e}"));
        }
        let _ = fs::remove_dir_all(self.cluster.dir());
    }
}

/// A positive count from the environment variable `name`, else `default`.
pub fn count_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name} must be a positive whole number, not {text:?}"),
        },
        Err(_) => default,
    }
}

/// Build the release binary the way `make build` does and return its path.
pub fn build_slipway() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    progress("building the release slipway binary");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "slipway"])
        .current_dir(manifest_dir)
        // Keep stdout for the table.
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        status.success(),
        "`cargo build --release --bin slipway` failed ({status})"
    );
    // A relative CARGO_TARGET_DIR is relative to where cargo ran: here.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| manifest_dir.join("target"), |dir| manifest_dir.join(dir));
    let binary = target_dir.join("release").join("slipway");
    assert!(
        binary.is_file(),
        "the release build succeeded but {} does not exist; is the target dir set elsewhere (.cargo/config.toml)? set CARGO_TARGET_DIR",
        binary.display()
    );
    binary
}

/// The `psql` of the server in use, else the first on PATH. Not PATH first:
/// Debian's `/usr/bin/psql` is `pg_wrapper`, a Perl script that adds ~20 ms
/// to every start and would flatter slipway on W2.
pub fn psql_path(bin_dir: &Path) -> PathBuf {
    let beside = bin_dir.join("psql");
    if beside.is_file() {
        return beside;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("psql"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "psql is neither in {} nor on PATH; install the PostgreSQL client",
                bin_dir.display()
            )
        })
}

/// Timings of one command, in the order taken.
#[derive(Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    pub fn median(&self) -> Duration {
        let v = self.sorted();
        assert!(!v.is_empty(), "no samples");
        let mid = v.len() / 2;
        if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2
        }
    }

    pub fn min(&self) -> Duration {
        self.sorted()[0]
    }

    pub fn max(&self) -> Duration {
        *self.sorted().last().expect("no samples")
    }
}

/// Run `command` to exit with its output captured; the wall time from spawn
/// to exit is what a deploy script waits for.
pub fn timed(command: &mut Command, what: &str) -> (Duration, Output) {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    (started.elapsed(), output)
}

fn dump(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// slipway's JSON report on stdout.
pub fn report_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e})\n{}", dump(output)))
}

/// Panic with the command's output unless it exited 0 (and, for slipway's
/// JSON report, said `"success": true`).
pub fn check(output: &Output, what: &str, json_report: bool) {
    assert!(
        output.status.success(),
        "{what} failed ({})\n{}",
        output.status,
        dump(output)
    );
    if json_report {
        assert!(
            report_of(output).get("success") == Some(&serde_json::Value::Bool(true)),
            "{what}: the report does not say success\n{}",
            dump(output)
        );
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn progress(message: &str) {
    eprintln!("bench: {message}");
}
