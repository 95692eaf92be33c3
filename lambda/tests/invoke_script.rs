//! scripts/invoke-migration.sh against a stand-in `aws` (a shell script that
//! prints a chosen version, records its arguments and writes a chosen
//! payload): the paths the end-to-end test cannot reach with PyPI's AWS CLI
//! v1 — v2's `--cli-binary-format`, a `FunctionError`, a payload that is no
//! report, a failing CLI. The real CLI and function are in end_to_end.rs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const FAKE_AWS: &str = r#"#!/usr/bin/env bash
if [ "$1" = "--version" ]; then echo "$FAKE_VERSION"; exit 0; fi
printf '%s\n' "$@" > "$ARGS_FILE"
printf 'call\n' >> "$ARGS_FILE.calls"
for last in "$@"; do :; done
printf '%s' "$FAKE_PAYLOAD" > "$last"
printf '%s\n' "$FAKE_META"
exit "${FAKE_EXIT:-0}"
"#;

const V2: &str = "aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64.amzn.2";
const V1: &str = "aws-cli/1.46.3 Python/3.11.7 Linux/6.1 botocore/1.43.62";
const OK_META: &str = r#"{"StatusCode": 200, "ExecutedVersion": "$LATEST"}"#;
const REPORT_OK: &str = r#"{"success":true,"action":"apply","dry_run":true,"schema_valid":true}"#;

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    args: Vec<String>,
    /// How many times the script ran `aws lambda invoke`.
    calls: usize,
}

fn run(dir: &Path, version: &str, payload: &str, meta: &str, exit: i32, args: &[&str]) -> Outcome {
    let aws = dir.join("aws");
    std::fs::write(&aws, FAKE_AWS).expect("write the fake aws");
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let args_file = dir.join("args");
    let _ = std::fs::remove_file(&args_file);
    let calls_file = dir.join("args.calls");
    let _ = std::fs::remove_file(&calls_file);
    let output = Command::new("bash")
        .arg(support::workspace().join("scripts/invoke-migration.sh"))
        .args(args)
        .env("AWS_CLI", &aws)
        .env("ARGS_FILE", &args_file)
        .env("FAKE_VERSION", version)
        .env("FAKE_PAYLOAD", payload)
        .env("FAKE_META", meta)
        .env("FAKE_EXIT", exit.to_string())
        .env("SLIPWAY_FUNCTION", "tutor-migrate")
        .env_remove("LAMBDA_ENDPOINT_URL")
        .output()
        .expect("run the script");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        args: std::fs::read_to_string(&args_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect(),
        calls: std::fs::read_to_string(&calls_file)
            .unwrap_or_default()
            .lines()
            .count(),
    }
}

fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[test]
fn builds_the_event_and_speaks_both_cli_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let v2 = run(
        dir.path(),
        V2,
        REPORT_OK,
        OK_META,
        0,
        &[
            "apply",
            "--dry-run",
            "--to",
            "0004",
            "--endpoint-url",
            "http://127.0.0.1:9001",
        ],
    );
    assert_eq!(v2.code, Some(0), "{}", v2.stderr);
    assert_eq!(v2.stdout.trim(), REPORT_OK);
    assert_eq!(
        after(&v2.args, "--payload"),
        Some(r#"{"action":"apply","dry_run":true,"to":"0004"}"#)
    );
    assert_eq!(
        after(&v2.args, "--cli-binary-format"),
        Some("raw-in-base64-out")
    );
    assert_eq!(after(&v2.args, "--function-name"), Some("tutor-migrate"));
    assert_eq!(
        after(&v2.args, "--endpoint-url"),
        Some("http://127.0.0.1:9001")
    );
    assert_eq!(after(&v2.args, "--cli-read-timeout"), Some("900"));

    let v1 = run(dir.path(), V1, REPORT_OK, OK_META, 0, &["validate"]);
    assert_eq!(v1.code, Some(0), "{}", v1.stderr);
    assert!(
        !v1.args.iter().any(|a| a == "--cli-binary-format"),
        "{:?}",
        v1.args
    );
    assert_eq!(
        after(&v1.args, "--payload"),
        Some(r#"{"action":"validate","dry_run":false}"#)
    );
}

#[test]
fn reads_success_from_the_payload_not_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let failed = r#"{"success":false,"action":"apply","error":{"code":"auth"}}"#;
    let cases = [
        ("a failed run", failed, OK_META, 0, 2),
        (
            "a function error",
            r#"{"errorType":"Runtime.ExitError","errorMessage":"boom"}"#,
            r#"{"StatusCode": 200, "FunctionError": "Unhandled"}"#,
            0,
            3,
        ),
        ("a payload that is no report", "null", OK_META, 0, 3),
        ("an empty payload", "", OK_META, 0, 3),
        ("the CLI failing", "", "", 255, 3),
    ];
    for (what, payload, meta, aws_exit, want) in cases {
        let out = run(dir.path(), V1, payload, meta, aws_exit, &["apply"]);
        assert_eq!(
            out.code,
            Some(want),
            "{what}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn refuses_bad_arguments_before_invoking() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &[][..],
        &["apply", "--to", "v5"][..],
        &["apply", "validate"][..],
        &["--payload", "{}", "apply"][..],
        &["apply;rm"][..],
        &["--bogus"][..],
    ] {
        let out = run(dir.path(), V1, REPORT_OK, OK_META, 0, args);
        assert_eq!(out.code, Some(3), "{args:?}: {}", out.stderr);
        assert!(out.args.is_empty(), "{args:?} invoked: {:?}", out.args);
    }
}

#[test]
fn migrate_applies_only_when_validate_says_the_schema_is_not_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let valid = r#"{"success":true,"action":"validate","dry_run":false,"schema_valid":true}"#;
    let pending = r#"{"success":true,"action":"validate","dry_run":false,"schema_valid":false}"#;
    let failed =
        r#"{"success":false,"action":"validate","schema_valid":false,"error":{"code":"auth"}}"#;

    let noop = run(dir.path(), V1, valid, OK_META, 0, &["migrate"]);
    assert_eq!(noop.code, Some(0), "{}", noop.stderr);
    assert_eq!(noop.calls, 1, "a valid schema needs no apply");
    assert_eq!(
        after(&noop.args, "--payload"),
        Some(r#"{"action":"validate","dry_run":false}"#)
    );
    assert!(noop.stderr.contains("nothing to apply"), "{}", noop.stderr);

    // The stand-in answers the apply with the same payload: a success.
    let applied = run(
        dir.path(),
        V1,
        pending,
        OK_META,
        0,
        &["migrate", "--to", "0004"],
    );
    assert_eq!(applied.code, Some(0), "{}", applied.stderr);
    assert_eq!(applied.calls, 2, "validate, then apply");
    assert_eq!(
        after(&applied.args, "--payload"),
        Some(r#"{"action":"apply","dry_run":false,"to":"0004"}"#)
    );
    assert_eq!(
        applied.stdout.lines().count(),
        2,
        "both reports: {}",
        applied.stdout
    );

    let broken = run(dir.path(), V1, failed, OK_META, 0, &["migrate"]);
    assert_eq!(broken.code, Some(2), "{}", broken.stderr);
    assert_eq!(broken.calls, 1, "no apply after a failed validate");
    assert_eq!(broken.stdout.trim(), failed);

    let no_report = run(dir.path(), V1, "null", OK_META, 0, &["migrate"]);
    assert_eq!(no_report.code, Some(3), "{}", no_report.stderr);
    assert_eq!(no_report.calls, 1);
}
