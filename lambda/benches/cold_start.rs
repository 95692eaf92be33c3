//! Cold start of the function (docs/DESIGN.md, "Targets": first report under
//! 50 ms excluding the database; zip under 10 MB), measured the way Lambda
//! starts it: the invocation is already waiting in `cargo lambda watch`'s
//! runtime API when the `bootstrap` process starts, and the clock runs from
//! process start to the report's arrival at the invoker.
//!
//! "Excluding the database" subtracts the report's own `duration_ms` (connect
//! plus queries). What remains is process start, configuration, the embedded
//! migration set, the AWS clients, the Secrets Manager fetch and the
//! PutMetricData call (both to moto on loopback, so network time is near
//! zero here and not in Lambda), and the runtime API round trips.
//!
//! Prints a markdown table on stdout. `make bench` builds the zip first
//! (`make lambda`) so its size can be reported.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{aws_env, Emulator, Moto, Postgres};

const RUNS: usize = 15;

struct Case {
    name: &'static str,
    env: Vec<(String, String)>,
    payload: &'static str,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    // Truncation is the point: the index of the p-th value.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((values.len() - 1) as f64 * p).round() as usize;
    values[index]
}

fn zip_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| support::workspace().join("target"), PathBuf::from)
        .join("lambda/bootstrap/bootstrap.zip")
}

/// One cold start: queue the invocation, start the process, wait for the
/// report. Returns (total ms, database ms).
fn cold_start(emulator: &Emulator, case: &Case, log: &Path) -> (f64, f64) {
    let (sender, receiver) = mpsc::channel();
    let payload = case.payload.to_owned();
    let port = emulator.port;
    std::thread::spawn(move || {
        let _ = sender.send(support::invoke_at(port, &payload));
    });
    // Let the invocation reach the emulator's queue before the process starts.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let mut function =
        emulator.start_function(Path::new(env!("CARGO_BIN_EXE_bootstrap")), &case.env, log);
    let (status, body) = receiver
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "no report within 60 s; function log:\n{}",
                function.output()
            )
        });
    let total = started.elapsed().as_secs_f64() * 1000.0;
    function.stop();
    assert_eq!(status, 200, "{}: {body}", case.name);
    let report: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{}: not a report ({e}): {body}", case.name));
    #[allow(clippy::cast_precision_loss)]
    let database = report["duration_ms"].as_u64().unwrap_or(0) as f64;
    (total, database)
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("slipway-cold-start-")
        .tempdir()
        .expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let postgres = Postgres::start();
    let password = support::unique("bench-pw");
    runtime.block_on(postgres.create_app_database("bench_app", &password));
    let moto = Moto::start(dir.path());
    let secret_file = dir.path().join("secret.json");
    std::fs::write(
        &secret_file,
        postgres.secret_json("bench_app", &password).to_string(),
    )
    .expect("write the secret");
    moto.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "bench/db",
        "--secret-string",
        &format!("file://{}", secret_file.display()),
    ]);
    let emulator = Emulator::start(dir.path());

    let base = |database: (&str, String)| {
        let mut env = aws_env(&moto.url());
        env.push((database.0.to_owned(), database.1));
        env.push(("SLIPWAY_ENVIRONMENT".into(), "bench".into()));
        env
    };
    let url = format!(
        "postgresql://bench_app:{password}@127.0.0.1:{}/bench_app",
        postgres.cluster.port()
    );
    let cases = [
        Case {
            name: "validate, secret from Secrets Manager",
            env: base(("DB_SECRET_ARN", "bench/db".into())),
            payload: r#"{"action":"validate"}"#,
        },
        Case {
            name: "validate, DATABASE_URL",
            env: base(("DATABASE_URL", url)),
            payload: r#"{"action":"validate"}"#,
        },
        Case {
            name: "malformed event (no database)",
            env: base(("DB_SECRET_ARN", "bench/db".into())),
            payload: r#"{"action":"explode"}"#,
        },
    ];

    // Bring the database up to date once, so every validate does the same work.
    let warm = Case {
        name: "apply (warm-up)",
        env: cases[0].env.clone(),
        payload: r#"{"action":"apply"}"#,
    };
    cold_start(&emulator, &warm, &dir.path().join("warmup.log"));

    println!("## Lambda cold start (process start to report, {RUNS} runs each)\n");
    println!("| case | median total | median database | median cold start excl. database | p90 cold start |");
    println!("|---|---:|---:|---:|---:|");
    for case in &cases {
        let mut totals = Vec::new();
        let mut colds = Vec::new();
        let mut databases = Vec::new();
        for run in 0..RUNS {
            let (total, database) =
                cold_start(&emulator, case, &dir.path().join(format!("run-{run}.log")));
            totals.push(total);
            databases.push(database);
            colds.push(total - database);
        }
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            case.name,
            median(&mut totals),
            median(&mut databases),
            median(&mut colds.clone()),
            percentile(&mut colds, 0.9)
        );
    }
    println!("\nTarget: cold start excl. database under 50 ms.\n");

    let zip = zip_path();
    match std::fs::metadata(&zip) {
        #[allow(clippy::cast_precision_loss)]
        Ok(meta) => println!(
            "Zip: {} — {:.2} MB (target: under 10 MB)",
            zip.display(),
            meta.len() as f64 / 1_000_000.0
        ),
        Err(_) => println!(
            "Zip: {} not found; `make lambda` builds it (`make bench` does)",
            zip.display()
        ),
    }
    let binary = Path::new(env!("CARGO_BIN_EXE_bootstrap"));
    if let Ok(meta) = std::fs::metadata(binary) {
        #[allow(clippy::cast_precision_loss)]
        let mb = meta.len() as f64 / 1_000_000.0;
        println!("Binary: {} — {mb:.2} MB", binary.display());
    }
}
