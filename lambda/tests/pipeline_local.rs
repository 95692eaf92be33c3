//! The pipeline's migrate step against a local stack: this test starts what
//! an AWS account would hold before a pipeline runs — a PostgreSQL server,
//! the database secret in moto's Secrets Manager, CloudWatch, the Lambda
//! endpoint of `cargo lambda watch` — builds the two artifacts the script
//! deploys, and runs `scripts/pipeline-local.sh` in it. The script reads its
//! step from buildspec.yml, so what passes here is what CodeBuild runs.
//!
//! The second artifact is this workspace with one more migration, one that
//! fails half-way. The function embeds its migrations at compile time, so a
//! broken migration is a different build: a copy of the sources, kept in the
//! target directory so that cargo rebuilds it only when they change.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{aws_env, clean_command, unique, Emulator, Moto, Postgres, Proc, FUNCTION_NAME};

const ROLE: &str = "pipeline_app";

/// Created, then a statement that fails: the table must not survive.
const BROKEN_MIGRATION: (&str, &str) = (
    "9000_pipeline_local_broken.sql",
    "-- A migration that fails half-way, for scripts/pipeline-local.sh.\n\
     CREATE TABLE pipeline_local_probe (id bigint PRIMARY KEY);\n\
     ALTER TABLE pipeline_local_no_such_table ADD COLUMN note text;\n",
);

/// The name of the broken build's binary: its own, so that it never
/// replaces this build's `bootstrap` in the shared target directory.
const BROKEN_BIN: &str = "bootstrap-broken-migration";

/// What the copy needs to build `slipway-lambda`: the workspace's manifests
/// and lock, and every source the manifests name.
const SOURCES: [&str; 13] = [
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "benches",
    "migrations",
    "lambda/Cargo.toml",
    "lambda/build.rs",
    "lambda/src",
    "lambda/benches",
    "infra/Cargo.toml",
    "infra/src",
    "local/Cargo.toml",
    "local/src",
];

/// Every file under `path` (or `path` itself), relative to `base`.
fn files(base: &Path, path: &Path, out: &mut Vec<PathBuf>) {
    let full = base.join(path);
    if full.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&full)
            .unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
            .filter_map(Result::ok)
            .map(|e| path.join(e.file_name()))
            .collect();
        entries.sort();
        for entry in entries {
            files(base, &entry, out);
        }
    } else if full.is_file() {
        out.push(path.to_path_buf());
    }
}

/// Make `copy` hold exactly `wanted` (relative path → content), touching
/// only files whose content differs: unchanged files keep their mtimes, so
/// cargo sees them as fresh.
fn sync(copy: &Path, wanted: &[(PathBuf, Vec<u8>)]) {
    let mut present = Vec::new();
    for top in SOURCES {
        files(copy, Path::new(top), &mut present);
    }
    for stale in present
        .iter()
        .filter(|p| !wanted.iter().any(|(w, _)| w == *p))
    {
        std::fs::remove_file(copy.join(stale)).expect("remove a stale file from the copy");
    }
    for (path, content) in wanted {
        let target = copy.join(path);
        if std::fs::read(&target).ok().as_ref() == Some(content) {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("create a folder in the copy");
        }
        std::fs::write(&target, content).expect("write a file of the copy");
    }
}

/// Holds an exclusive `flock` on a file until dropped.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path) -> Lock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: flock on a descriptor we own; it is released when the file closes.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(taken, 0, "flock {}", path.display());
        Lock { _file: file }
    }
}

/// Build the broken variant and return its binary, copied into `dir`.
fn broken_artifact(dir: &Path) -> PathBuf {
    let bootstrap = Path::new(env!("CARGO_BIN_EXE_bootstrap"));
    let target_dir = bootstrap
        .parent()
        .and_then(Path::parent)
        .expect("bootstrap lives in <target>/<profile>/");
    let workspace = support::workspace();
    // One copy per target directory, always at the same path, so that cargo
    // reuses its build; workspaces sharing the target take turns.
    let base = target_dir.join("slipway-pipeline-local");
    std::fs::create_dir_all(&base).expect("create the copy's folder");
    let _lock = Lock::take(&base.join("lock"));
    let copy = base.join("broken-migration");

    let mut sources = Vec::new();
    for top in SOURCES {
        files(&workspace, Path::new(top), &mut sources);
    }
    let mut wanted: Vec<(PathBuf, Vec<u8>)> = sources
        .into_iter()
        .map(|path| {
            let content = std::fs::read(workspace.join(&path))
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (path, content)
        })
        .collect();
    let manifest = Path::new("lambda/Cargo.toml");
    let (_, content) = wanted
        .iter_mut()
        .find(|(path, _)| path == manifest)
        .expect("lambda/Cargo.toml is copied");
    let text = String::from_utf8_lossy(content).into_owned();
    let renamed = text.replace("name = \"bootstrap\"", &format!("name = \"{BROKEN_BIN}\""));
    assert_ne!(
        renamed, text,
        "lambda/Cargo.toml names no `bootstrap` binary"
    );
    *content = renamed.into_bytes();
    wanted.push((
        Path::new("migrations").join(BROKEN_MIGRATION.0),
        BROKEN_MIGRATION.1.as_bytes().to_vec(),
    ));
    sync(&copy, &wanted);

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // Cargo gives this test CARGO_MANIFEST_DIR, CARGO_PKG_NAME, OUT_DIR and
    // more; build scripts (ring's) ask to rerun when those change, so passing
    // them on would rebuild half the tree here, and again in the next
    // `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || name.starts_with("__CARGO")
            || name == "OUT_DIR"
        {
            command.env_remove(name.as_ref());
        }
    }
    let output = command
        .current_dir(&copy)
        .args([
            "build",
            "--locked",
            "--package",
            "slipway-lambda",
            "--bin",
            BROKEN_BIN,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .expect("run cargo build for the broken variant");
    assert!(
        output.status.success(),
        "building the broken variant in {} failed:\n{}",
        copy.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let built = bootstrap.with_file_name(BROKEN_BIN);
    // Ours alone, whatever another workspace builds next.
    let binary = dir.join(BROKEN_BIN);
    std::fs::copy(&built, &binary).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buildspec_migrate_step_against_a_local_stack() {
    let dir = tempfile::Builder::new()
        .prefix("slipway-pipeline-local-")
        .tempdir()
        .expect("temp dir");
    let artifacts = dir.path().to_path_buf();
    let broken = tokio::task::spawn_blocking(move || broken_artifact(&artifacts));
    let postgres = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("start PostgreSQL");
    let password = unique("pipeline-local-pw");
    postgres.create_app_database(ROLE, &password).await;

    let moto = Moto::start(dir.path());
    let secret_file = dir.path().join("secret.json");
    std::fs::write(
        &secret_file,
        postgres.secret_json(ROLE, &password).to_string(),
    )
    .expect("write the secret file");
    moto.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "slipway/pipeline-local",
        "--secret-string",
        &format!("file://{}", secret_file.display()),
    ]);
    std::fs::remove_file(&secret_file).expect("remove the secret file");
    let emulator = Emulator::start(dir.path());
    let broken = broken.await.expect("build the broken variant");

    let mut env = aws_env(&moto.url());
    let psql = postgres.cluster.bin_dir().join("psql");
    for (name, value) in [
        ("SLIPWAY_LOCAL_STACK", "1".to_owned()),
        ("SLIPWAY_FUNCTION", FUNCTION_NAME.to_owned()),
        ("LAMBDA_ENDPOINT_URL", emulator.url()),
        ("AWS_LAMBDA_RUNTIME_API", format!("{}/.rt", emulator.url())),
        ("DB_SECRET_ARN", "slipway/pipeline-local".to_owned()),
        ("SLIPWAY_ENVIRONMENT", "pipeline-local".to_owned()),
        ("METRICS_NAMESPACE", "SlipwayPipelineLocal".to_owned()),
        ("CONNECT_TIMEOUT", "5s".to_owned()),
        (
            "SLIPWAY_ARTIFACT",
            env!("CARGO_BIN_EXE_bootstrap").to_owned(),
        ),
        ("SLIPWAY_BROKEN_ARTIFACT", broken.display().to_string()),
        ("SLIPWAY_BROKEN_MIGRATION", BROKEN_MIGRATION.0.to_owned()),
        ("SLIPWAY_CHECK_DATABASE_URL", postgres.cluster.url(ROLE)),
        ("PSQL", psql.display().to_string()),
        ("TMPDIR", dir.path().display().to_string()),
    ] {
        env.push((name.to_owned(), value));
    }
    let script = support::workspace().join("scripts/pipeline-local.sh");
    let mut command = clean_command(Path::new("bash"), &env);
    command.arg(&script);
    let mut run = Proc::spawn(
        "pipeline-local.sh",
        command,
        &dir.path().join("pipeline.log"),
    );
    let status = run.wait(Duration::from_secs(300));
    let output = run.output();
    println!("{output}");
    assert!(status.success(), "pipeline-local.sh: {status}\n{output}");
    assert!(
        output.contains("pipeline-local: ok: deploy 1 applied"),
        "{output}"
    );
    // The failed deploy's report was printed for the build log.
    assert!(output.contains("\"code\":\"migration_failed\""), "{output}");
    assert!(
        !output.contains(&password),
        "the password leaked:\n{output}"
    );
}
