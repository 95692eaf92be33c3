//! The CLI's `--secret-id` / `DB_SECRET_ARN` and `--sslmode`, black-box:
//! credentials from a secret in moto's Secrets Manager (the same
//! `slipway::secret` code as the Lambda), over TCP with password
//! authentication to the harness's server.
//!
//! moto comes from the project venv (scripts/setup.sh, run by `make test`).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, cluster, slipway, Run, TestDb};

/// moto's server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let venv = std::env::var_os("SLIPWAY_VENV").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
            PathBuf::from,
        );
        let server = venv.join("bin/moto_server");
        assert!(
            server.is_file(),
            "{} is missing: run `make test` or `bash scripts/setup.sh`",
            server.display()
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited early: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "moto_server did not listen within 90 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn aws_env(&self, command: &mut Command) {
        command
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE");
    }

    /// Create a secret with moto's own HTTP API (Secrets Manager speaks JSON
    /// 1.1); no AWS CLI needed in this test.
    fn create_secret(&self, name: &str, value: &serde_json::Value) {
        let body = serde_json::json!({"Name": name, "SecretString": value.to_string()}).to_string();
        let port = self.url.rsplit(':').next().unwrap_or_default();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             X-Amz-Target: secretsmanager.CreateSecret\r\n\
             Content-Type: application/x-amz-json-1.1\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        use std::io::{Read, Write};
        let mut stream =
            TcpStream::connect(self.url.trim_start_matches("http://")).expect("connect to moto");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(moto: &Moto, args: &[&str]) -> Run {
    let mut command = slipway();
    moto.aws_env(&mut command);
    let output = command.args(args).output().expect("run slipway");
    Run {
        command: format!("slipway {}", args.join(" ")),
        output,
    }
}

fn secret(db: &TestDb, password: &str) -> serde_json::Value {
    serde_json::json!({
        "engine": "postgres", "host": "127.0.0.1", "port": cluster().port(),
        "username": "postgres", "password": password, "dbname": db.name,
    })
}

#[tokio::test]
async fn secret_id_reads_credentials_from_secrets_manager() {
    let moto = Moto::start();
    let db = TestDb::new("cli_secret").await;
    let password = cluster().password().to_owned();
    moto.create_secret("cli/good", &secret(&db, &password));
    moto.create_secret("cli/wrong", &secret(&db, "not-the-password-x1"));
    let migrations = common::example_migrations();
    let migrations = migrations.to_str().expect("UTF-8 path");

    let validate = run(
        &moto,
        &[
            "--secret-id",
            "cli/good",
            "--migrations",
            migrations,
            "validate",
            "--json",
        ],
    );
    validate.expect_code(1);
    assert_eq!(validate.report()["success"], true, "{validate}");

    // DB_SECRET_ARN works as the flag does.
    let mut command = slipway();
    moto.aws_env(&mut command);
    let output = command
        .env("DB_SECRET_ARN", "cli/good")
        .args(["--migrations", migrations, "apply", "--json"])
        .output()
        .expect("run slipway");
    let apply = Run {
        command: "DB_SECRET_ARN=cli/good slipway apply --json".into(),
        output,
    };
    apply.expect_code(0);
    assert!(db.has_table("users").await, "{apply}");

    let wrong = run(
        &moto,
        &[
            "--secret-id",
            "cli/wrong",
            "--migrations",
            migrations,
            "validate",
            "--json",
        ],
    );
    wrong.expect_code(2);
    assert_eq!(wrong.report()["error"]["code"], "auth", "{wrong}");

    let missing = run(
        &moto,
        &[
            "--secret-id",
            "cli/none",
            "--migrations",
            migrations,
            "validate",
            "--json",
        ],
    );
    missing.expect_code(2);
    assert_eq!(missing.report()["error"]["code"], "secret", "{missing}");

    for run in [&validate, &apply, &wrong, &missing] {
        let text = format!("{}{}", run.stdout(), run.stderr());
        assert!(!text.contains(&password), "password leaked{run}");
        assert!(
            !text.contains("not-the-password-x1"),
            "password leaked{run}"
        );
    }
}

#[tokio::test]
async fn sslmode_is_honoured_and_checked() {
    let db = TestDb::new("cli_sslmode").await;
    let url = db.tcp_url();
    // The harness's server has no TLS: `require` must fail, not fall back.
    let run = common::run_cli(
        Path::new("."),
        &[
            "--database-url",
            &url,
            "--sslmode",
            "require",
            "validate",
            "--json",
        ],
    );
    run.expect_code(2);
    assert_eq!(run.report()["error"]["code"], "tls", "{run}");
    assert!(!run.stdout().contains(cluster().password()), "{run}");

    let run = common::run_cli(
        Path::new("."),
        &["--database-url", &url, "--sslmode", "prefer", "validate"],
    );
    run.expect_code(2);
    assert!(
        run.stderr().contains("disable, require, verify-full"),
        "{run}"
    );
}

/// Argument errors are rendered by slipway, not clap: any password on the
/// command line is blanked, in the text on stderr and in the `--json`
/// report alike, and a URL given where a subcommand goes gets a hint.
#[test]
fn argument_errors_show_no_password() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let cases: &[&[&str]] = &[
        // A psql habit: the URL as the first argument.
        &["postgresql://u:hunter2secret@db.example/tutor", "validate"],
        &["validate", "postgresql://u:hunter2secret@db.example/tutor"],
        &["postgres://u:hunter2secret@db.example:5432/tutor?sslmode=require"],
        // Percent-encoded, and with the characters that end a quote.
        &["postgresql://u:hunter%32secret@db.example/tutor", "apply"],
        &["postgresql://u:hunter'2secret\"x@db.example/tutor", "apply"],
        // libpq's key=value form.
        &[
            "host=db.example password=hunter2secret dbname=tutor",
            "status",
        ],
        &[
            "host=db.example password='hunter2 secret' dbname=tutor",
            "status",
        ],
        // A flag slipway lacks, and flags that take no value, given one.
        &[
            "--databse-url=postgresql://u:hunter2secret@db.example/tutor",
            "validate",
        ],
        &[
            "--local=postgresql://u:hunter2secret@db.example/tutor",
            "validate",
        ],
        &[
            "--json=postgresql://u:hunter2secret@db.example/tutor",
            "validate",
        ],
        &[
            "validate",
            "--dry-run=postgresql://u:hunter2secret@db.example/tutor",
        ],
        // --database-url itself, malformed, next to an argument error.
        &[
            "--database-url",
            "postgresql://u:hunter2secret@db.example:notaport/tutor",
            "--database-url",
            "postgresql://u:hunter2secret@db.example/tutor",
            "validate",
        ],
        &[
            "--database-url",
            "postgresql://u:hunter2secret@db.example:notaport/tutor",
            "validate",
            "--lock-timeout",
            "banana",
        ],
    ];
    for args in cases {
        for json in [false, true] {
            let mut command = slipway();
            command.current_dir(cwd.path()).args(*args);
            if json {
                command.arg("--json");
            }
            let output = command.output().expect("run slipway");
            let run = Run {
                command: format!(
                    "slipway {}{}",
                    args.join(" "),
                    if json { " --json" } else { "" }
                ),
                output,
            };
            run.expect_code(2);
            let text = format!("{}{}", run.stdout(), run.stderr());
            for secret in [
                "hunter2secret",
                "hunter%32secret",
                "hunter'2secret",
                "hunter2 secret",
            ] {
                assert!(!text.contains(secret), "password leaked{run}");
            }
            assert!(!text.contains("panicked"), "{run}");
            if json {
                let report = run.report();
                assert_eq!(report["error"]["code"], "bad_request", "{run}");
            }
        }
    }

    // The hint for a URL where a subcommand goes.
    let run = common::run_cli(
        cwd.path(),
        &["postgresql://u:hunter2secret@db.example/tutor", "validate"],
    );
    assert!(
        run.stderr()
            .contains("use --database-url URL or DATABASE_URL"),
        "{run}"
    );
    assert!(
        run.stderr()
            .contains("postgresql://u:****@db.example/tutor"),
        "{run}"
    );
    let run = common::run_cli(
        cwd.path(),
        &["--json", "postgresql://u:hunter2secret@db.example/tutor"],
    );
    let message = run.report()["error"]["message"].to_string();
    assert!(
        message.contains("use --database-url URL or DATABASE_URL"),
        "{run}"
    );
}

/// A password in the environment stays out of argument errors too, also
/// when the same text is on the command line.
#[test]
fn environment_passwords_stay_out_of_argument_errors() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut command = slipway();
    command
        .current_dir(cwd.path())
        .env(
            "DATABASE_URL",
            "postgresql://u:env-hunter2secret@db.example/tutor",
        )
        .env("PGPASSWORD", "pg-hunter2secret")
        .args(["env-hunter2secret", "pg-hunter2secret", "--json"]);
    let output = command.output().expect("run slipway");
    let run = Run {
        command: "DATABASE_URL=... PGPASSWORD=... slipway <passwords> --json".into(),
        output,
    };
    run.expect_code(2);
    let text = format!("{}{}", run.stdout(), run.stderr());
    assert!(!text.contains("env-hunter2secret"), "{run}");
    assert!(!text.contains("pg-hunter2secret"), "{run}");
    assert_eq!(run.report()["error"]["code"], "bad_request", "{run}");
}
