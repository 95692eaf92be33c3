//! The function end to end, real parts only (docs/DESIGN.md, "Real parts in
//! tests"): the `bootstrap` binary under `cargo lambda watch`, credentials
//! from a secret in moto's Secrets Manager, a PostgreSQL server of its own,
//! metrics in moto's CloudWatch, and every invocation made by
//! `scripts/invoke-migration.sh` through the AWS CLI — the buildspec's path.
//!
//! One test, in steps that build on each other (the pipeline's own order:
//! validate, apply, validate), then the failure paths, each on a cold start.
//! At the end, every byte any process printed is searched for the passwords.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{aws_env, clean_command, unique, Emulator, Moto, Postgres, Proc, FUNCTION_NAME};

const ENVIRONMENT: &str = "e2e";
const NAMESPACE: &str = "SlipwayE2E";
const ROLE: &str = "tutor_app";

/// One run of scripts/invoke-migration.sh.
struct Invoke {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Invoke {
    fn report(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not a report ({e}):\n{self}"))
    }
    fn error_code(&self) -> String {
        self.report()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl std::fmt::Display for Invoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

struct World {
    dir: tempfile::TempDir,
    moto: Moto,
    emulator: Emulator,
    /// Everything the script printed, for the leak check.
    transcript: String,
}

impl World {
    fn invoke(&mut self, args: &[&str]) -> Invoke {
        let script = support::workspace().join("scripts/invoke-migration.sh");
        let mut env = aws_env(&self.moto.url());
        env.push(("SLIPWAY_FUNCTION".into(), FUNCTION_NAME.into()));
        env.push(("LAMBDA_ENDPOINT_URL".into(), self.emulator.url()));
        let mut command: Command = clean_command(Path::new("bash"), &env);
        command.arg(&script).args(args);
        let output = command.output().expect("run invoke-migration.sh");
        let run = Invoke {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        self.transcript.push_str(&format!(
            "$ invoke-migration.sh {}\n{run}\n",
            args.join(" ")
        ));
        run
    }

    fn start_function(&self, secret_id: &str, log: &str) -> Proc {
        let mut env = aws_env(&self.moto.url());
        for (k, v) in [
            ("DB_SECRET_ARN", secret_id),
            ("SLIPWAY_ENVIRONMENT", ENVIRONMENT),
            ("METRICS_NAMESPACE", NAMESPACE),
            ("CONNECT_TIMEOUT", "5s"),
        ] {
            env.push((k.into(), v.into()));
        }
        self.emulator.start_function(
            Path::new(env!("CARGO_BIN_EXE_bootstrap")),
            &env,
            &self.dir.path().join(log),
        )
    }

    fn put_secret(&self, name: &str, value: &Value, create: bool) {
        let file = self.dir.path().join("secret.json");
        std::fs::write(&file, value.to_string()).expect("write the secret file");
        let from_file = format!("file://{}", file.display());
        if create {
            self.moto.aws(&[
                "secretsmanager",
                "create-secret",
                "--name",
                name,
                "--secret-string",
                &from_file,
            ]);
        } else {
            self.moto.aws(&[
                "secretsmanager",
                "put-secret-value",
                "--secret-id",
                name,
                "--secret-string",
                &from_file,
            ]);
        }
        let _ = std::fs::remove_file(file);
    }

    /// The Sum and SampleCount of `metric` for `action` over the last hour.
    fn statistics(&self, metric: &str, action: &str) -> (f64, f64, String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let out = self.moto.aws(&[
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            NAMESPACE,
            "--metric-name",
            metric,
            "--dimensions",
            &format!("Name=Environment,Value={ENVIRONMENT}"),
            &format!("Name=Action,Value={action}"),
            "--start-time",
            &(now - 3600).to_string(),
            "--end-time",
            &(now + 600).to_string(),
            "--period",
            "3600",
            "--statistics",
            "Sum",
            "SampleCount",
        ]);
        let json: Value = serde_json::from_str(&out).expect("get-metric-statistics prints JSON");
        let points = json["Datapoints"].as_array().cloned().unwrap_or_default();
        let sum = points.iter().filter_map(|p| p["Sum"].as_f64()).sum();
        let count = points
            .iter()
            .filter_map(|p| p["SampleCount"].as_f64())
            .sum();
        let unit = points
            .first()
            .and_then(|p| p["Unit"].as_str())
            .unwrap_or_default()
            .to_owned();
        (sum, count, unit)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_end_to_end() {
    let dir = tempfile::Builder::new()
        .prefix("slipway-e2e-")
        .tempdir()
        .expect("temp dir");
    let postgres = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("start PostgreSQL");
    let password = unique("e2e-first-pw");
    let rotated = unique("e2e-rotated-pw");
    let wrong = unique("e2e-wrong-pw");
    postgres.create_app_database(ROLE, &password).await;

    let moto = Moto::start(dir.path());
    let emulator = Emulator::start(dir.path());
    let mut world = World {
        dir,
        moto,
        emulator,
        transcript: String::new(),
    };

    let good = postgres.secret_json(ROLE, &password);
    world.put_secret("slipway/e2e", &good, true);
    let mut wrong_secret = good.clone();
    wrong_secret["password"] = Value::String(wrong.clone());
    world.put_secret("slipway/e2e-wrong", &wrong_secret, true);
    let mut hostless = good.clone();
    hostless
        .as_object_mut()
        .expect("secret is an object")
        .remove("host");
    world.put_secret("slipway/e2e-hostless", &hostless, true);

    let mut function = world.start_function("slipway/e2e", "function.log");

    // The pipeline's path: validate -> not valid -> apply -> valid.
    let validate = world.invoke(&["validate"]);
    assert_eq!(validate.code, Some(0), "{validate}");
    let report = validate.report();
    assert_eq!(report["success"], true, "{validate}");
    assert_eq!(report["schema_valid"], false, "{validate}");
    assert!(
        validate.stdout.contains("\"schema_valid\":false"),
        "the buildspec greps for this: {validate}"
    );
    let pending = report["pending"].as_array().map_or(0, Vec::len);
    assert!(pending >= 5, "{validate}");

    let apply = world.invoke(&["apply"]);
    assert_eq!(apply.code, Some(0), "{apply}");
    let report = apply.report();
    assert_eq!(report["success"], true, "{apply}");
    assert_eq!(
        report["applied"].as_array().map_or(0, Vec::len),
        pending,
        "{apply}"
    );

    let validate = world.invoke(&["validate"]);
    assert_eq!(validate.code, Some(0), "{validate}");
    assert_eq!(validate.report()["schema_valid"], true, "{validate}");

    // Idempotent: a second apply finds nothing to do.
    let again = world.invoke(&["apply"]);
    assert_eq!(again.code, Some(0), "{again}");
    assert_eq!(again.report()["applied"], serde_json::json!([]), "{again}");

    // Roll back to 0003 (the repeatable view goes first), then forward again.
    let rollback = world.invoke(&["rollback", "--to", "0003"]);
    assert_eq!(rollback.code, Some(0), "{rollback}");
    let report = rollback.report();
    assert_eq!(report["action"], "rollback", "{rollback}");
    assert_eq!(report["current_version"], "0003", "{rollback}");
    assert_eq!(
        report["rolled_back"].as_array().map_or(0, Vec::len),
        2,
        "{rollback}"
    );
    let validate = world.invoke(&["validate"]);
    assert_eq!(validate.report()["schema_valid"], false, "{validate}");
    assert_eq!(
        validate.report()["drift"],
        serde_json::json!([]),
        "{validate}"
    );
    let forward = world.invoke(&["apply"]);
    assert_eq!(forward.code, Some(0), "{forward}");
    assert_eq!(
        forward.report()["applied"].as_array().map_or(0, Vec::len),
        3,
        "{forward}"
    );

    // A malformed event is answered, never defaulted.
    for payload in [
        r#"{"action":"explode"}"#,
        r#"{"action":"apply","dryrun":true}"#,
    ] {
        let bad = world.invoke(&["--payload", payload]);
        assert_eq!(bad.code, Some(2), "{payload}: {bad}");
        assert_eq!(bad.error_code(), "bad_request", "{payload}: {bad}");
    }

    // Rotation: the database and the secret move to a new password while the
    // warm function still caches the old one; the run must still succeed.
    postgres
        .admin(&format!("ALTER ROLE {ROLE} PASSWORD '{rotated}'"))
        .await;
    let mut rotated_secret = good.clone();
    rotated_secret["password"] = Value::String(rotated.clone());
    world.put_secret("slipway/e2e", &rotated_secret, false);
    let after_rotation = world.invoke(&["validate"]);
    assert_eq!(after_rotation.code, Some(0), "{after_rotation}");
    assert_eq!(after_rotation.report()["schema_valid"], true);
    assert!(
        function
            .output()
            .contains("fetching the secret again in case it was rotated"),
        "no re-fetch in the log:\n{}",
        function.output()
    );
    function.check_alive();
    let warm_log = function.output();
    drop(function);

    // Wrong password, on a cold start: `auth`, and a connection-error metric.
    let wrong_function = world.start_function("slipway/e2e-wrong", "function-wrong.log");
    let denied = world.invoke(&["validate"]);
    assert_eq!(denied.code, Some(2), "{denied}");
    assert_eq!(denied.error_code(), "auth", "{denied}");
    let wrong_log = wrong_function.output();
    drop(wrong_function);

    // A secret without `host`: `secret`, naming the field.
    let hostless_function = world.start_function("slipway/e2e-hostless", "function-hostless.log");
    let broken = world.invoke(&["validate"]);
    assert_eq!(broken.code, Some(2), "{broken}");
    assert_eq!(broken.error_code(), "secret", "{broken}");
    let message = broken.report()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("'host'"), "{broken}");
    let hostless_log = hostless_function.output();
    drop(hostless_function);

    // Metrics, read back from CloudWatch (moto) with their dimensions.
    let (successes, _, _) = world.statistics("MigrationSuccess", "apply");
    assert!(successes >= 2.0, "MigrationSuccess/apply sum {successes}");
    let (_, samples, unit) = world.statistics("MigrationDuration", "apply");
    assert!(samples >= 2.0, "MigrationDuration/apply samples {samples}");
    assert_eq!(unit, "Milliseconds");
    let (failures, _, _) = world.statistics("MigrationFailure", "invalid");
    assert!(failures >= 2.0, "MigrationFailure/invalid sum {failures}");
    let (connection_errors, _, _) = world.statistics("DatabaseConnectionErrors", "validate");
    assert_eq!(
        connection_errors, 1.0,
        "one auth failure, no other connection error"
    );

    // Logs: JSON lines, each invocation with its request id.
    let logs = [&warm_log, &wrong_log, &hostless_log];
    for log in logs {
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let json: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(json["level"].is_string(), "{line}");
        }
    }
    let finished = warm_log
        .lines()
        .filter(|l| l.contains("\"invocation finished\""))
        .count();
    assert!(finished >= 5, "{warm_log}");
    assert!(
        warm_log
            .lines()
            .filter(|l| l.contains("\"invocation finished\"") || l.contains("\"invocation failed\""))
            .all(|l| l.contains("\"request_id\":\"") && l.contains("\"action\":")),
        "{warm_log}"
    );
    assert!(wrong_log.contains("\"error_code\":\"auth\""), "{wrong_log}");

    // No password anywhere: reports, script output, function and emulator logs.
    let everything = format!(
        "{}\n{warm_log}\n{wrong_log}\n{hostless_log}\n{}",
        world.transcript,
        world.emulator.proc.output()
    );
    for secret in [&password, &rotated, &wrong] {
        assert!(
            !everything.contains(secret.as_str()),
            "a password leaked:\n{everything}"
        );
    }
}
