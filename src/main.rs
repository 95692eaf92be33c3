//! `slipway`, the command-line face: parse arguments, choose the database,
//! call the library, print the report, exit 0 / 1 / 2. All behaviour lives in
//! the library so the CLI and the Lambda function act the same.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use slipway::catalog::Snapshot;
use slipway::local::LocalCluster;
use slipway::migrations::EXPECTED_SNAPSHOT_FILE;
use slipway::secret::{aws_config, SecretSource, DEFAULT_SECRET_TTL};
use slipway::tls::{SslMode, TlsOptions};
use slipway::{
    ApplyOptions, ConnectOptions, Error, MigrationSet, Migrator, Report, RollbackOptions, Settings,
    Target,
};

/// Safe PostgreSQL schema migrations: validate, then apply everything pending
/// in one transaction under an advisory lock. Nothing is ever half-applied.
///
/// Exit codes: 0 success (and, for validate, schema valid); 1 validate found
/// the schema not valid, or lint found errors; 2 error.
#[derive(Debug, Parser)]
#[command(name = "slipway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// PostgreSQL URL, e.g. postgresql://app@db.example:5432/tutor [env: DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,

    /// Secrets Manager secret (RDS JSON) with the credentials [env: DB_SECRET_ARN]
    #[arg(long, global = true, value_name = "ARN")]
    secret_id: Option<String>,

    /// TLS to the database: disable, require, verify-full [default: require, disable on loopback]
    #[arg(long, global = true, value_name = "MODE", env = "DB_SSLMODE")]
    sslmode: Option<SslMode>,

    /// PEM file of the CAs that verify-full trusts, e.g. the RDS global bundle
    #[arg(long, global = true, value_name = "FILE", env = "DB_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,

    /// Use slipway's own throw-away PostgreSQL under .slipway/local/ (started if needed)
    #[arg(long, global = true)]
    local: bool,

    /// Database name inside the --local server
    #[arg(long, global = true, value_name = "NAME", default_value = "slipway")]
    local_database: String,

    /// Directory holding NNNN_description.sql files and repeatable/
    #[arg(long, global = true, value_name = "DIR", default_value = "migrations")]
    migrations: PathBuf,

    /// Print the JSON report instead of text
    #[arg(long, global = true)]
    json: bool,

    /// apply, rollback: run everything, report, then roll back — nothing changes
    #[arg(long, global = true)]
    dry_run: bool,

    /// apply: stop at this version (e.g. 0004) instead of the latest; rollback: the version to go back to (0: all)
    #[arg(long, global = true, value_name = "VERSION")]
    to: Option<String>,

    /// apply, rollback: go ahead although the schema drifted from the recorded or expected snapshot (the live schema becomes the recorded one)
    #[arg(long, global = true)]
    allow_drift: bool,

    /// Skip comparing the schema with the recorded and expected snapshots (an apply still records the schema it leaves)
    #[arg(long, global = true)]
    no_drift_check: bool,

    /// Schema of slipway's history table
    #[arg(long, global = true, value_name = "SCHEMA", default_value = "slipway")]
    history_schema: String,

    /// Longest a migration statement may wait for a table lock (e.g. 5s, 500ms)
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    lock_timeout: Duration,

    /// Longest a migration statement may run; 0 for no limit
    #[arg(long, global = true, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    statement_timeout: Duration,

    /// Retries after a lock timeout (the whole transaction is retried)
    #[arg(long, global = true, value_name = "N", default_value_t = 3)]
    lock_retries: u32,

    /// Wait before the first retry; doubles each time
    #[arg(long, global = true, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    retry_backoff: Duration,

    /// Give up connecting after this long
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read-only: list pending migrations, modified files, unknown versions (exit 1 if not valid)
    #[command(long_flag = "validate")]
    Validate,
    /// Run all pending migrations in one transaction (with --dry-run: then roll back)
    #[command(long_flag = "apply")]
    Apply,
    /// Undo the applied versions above --to, newest first, with their _rollback.sql scripts, in one transaction
    ///
    /// `--to 0` undoes every version. The objects repeatable scripts created
    /// are dropped first; the rolled-back versions and the repeatable scripts
    /// become pending, so `slipway apply` brings the schema forward again.
    /// Refuses, changing nothing, when a needed rollback script is missing.
    Rollback,
    /// Every migration and its state
    Status,
    /// On a throw-away database, apply, roll back and re-apply each migration, checking the schema each time
    ///
    /// The database is created and dropped on slipway's own PostgreSQL, or
    /// on the server of --database-url (PostgreSQL 13+, CREATEDB needed).
    /// Exit 0 when every rollback restores the schema before its migration
    /// and every re-apply the schema after it; 2 otherwise.
    Verify,
    /// Write the schema the migrations produce (applied to a throw-away database) to schema.snapshot.json
    ///
    /// The database is created and dropped on slipway's own PostgreSQL (as
    /// for --local), or on the server of --database-url (PostgreSQL 13+,
    /// CREATEDB needed). Commit the file: apply then checks that the schema
    /// it produces is this one.
    Snapshot {
        /// Where to write it [default: <migrations>/schema.snapshot.json]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only compare with the file; exit 1 when it is stale
        #[arg(long)]
        check: bool,
    },
    /// Check the migration files without a database: syntax (PostgreSQL 15's
    /// parser), destructive statements, lock-risky operations, missing rollbacks
    ///
    /// Exit codes: 0 clean or warnings only; 1 lint errors; 2 slipway could not
    /// lint (unreadable directory, misnamed file, bad option). Every rule is
    /// listed in the README.
    Lint {
        /// Versions above this one must have a NNNN_description_rollback.sql
        /// (older ones are exempt) [default: none required]
        #[arg(long, value_name = "VERSION", env = "SLIPWAY_ROLLBACK_REQUIRED_FROM")]
        rollback_required_from: Option<String>,
    },
    /// Manage the throw-away PostgreSQL of --local
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Start (or reuse) it and print its URL
    Start,
    /// Stop it (its data stays under .slipway/local/)
    Stop,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // Lint touches no database: no runtime, no connection options.
    if let Some(Command::Lint {
        rollback_required_from,
    }) = &cli.command
    {
        return lint_command(&cli, rollback_required_from.as_deref());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("slipway: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let action = match &cli.command {
        Some(Command::Validate) => "validate",
        Some(Command::Status) => "status",
        Some(Command::Apply) => "apply",
        Some(Command::Rollback) => "rollback",
        Some(Command::Verify) => "verify",
        None if cli.dry_run => "apply",
        Some(Command::Local { command }) => return runtime.block_on(local_command(&cli, command)),
        Some(Command::Lint {
            rollback_required_from,
        }) => return lint_command(&cli, rollback_required_from.as_deref()),
        Some(Command::Snapshot { out, check }) => {
            return runtime.block_on(snapshot_command(&cli, out.as_deref(), *check))
        }
        None => {
            eprintln!(
                "slipway: say what to do: validate, apply, rollback, status, verify, lint (see slipway --help)"
            );
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(run(&cli, action));
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render_human(std::io::stdout().is_terminal()));
    }
    ExitCode::from(report.exit_code())
}

fn lint_command(cli: &Cli, rollback_required_from: Option<&str>) -> ExitCode {
    let report = slipway::lint::lint_dir(&cli.migrations, rollback_required_from);
    if cli.json {
        println!("{}", report.to_json());
    } else {
        let dir = cli.migrations.display().to_string();
        print!(
            "{}",
            report.render_human(&dir, std::io::stdout().is_terminal())
        );
    }
    ExitCode::from(report.exit_code())
}

async fn run(cli: &Cli, action: &str) -> Report {
    let dry_run = cli.dry_run && (action == "apply" || action == "rollback");
    if action == "verify" {
        return verify(cli).await;
    }
    let migrator = match migrator(cli).await {
        Ok(migrator) => migrator,
        Err(error) => return Report::failure(action, dry_run, &error),
    };
    match action {
        "validate" => migrator.validate().await,
        "status" => migrator.status().await,
        "rollback" => {
            let Some(to) = cli.to.clone() else {
                return Report::failure(
                    action,
                    dry_run,
                    &Error::Config(
                        "rollback needs --to VERSION: the version to go back to (0 undoes everything)"
                            .into(),
                    ),
                );
            };
            let options = RollbackOptions {
                to,
                dry_run,
                allow_drift: cli.allow_drift,
            };
            migrator.rollback(&options).await
        }
        _ => {
            let options = ApplyOptions {
                dry_run,
                target: cli.to.clone(),
                allow_drift: cli.allow_drift,
            };
            migrator.apply(&options).await
        }
    }
}

/// `slipway verify`: the round trips on a scratch database.
async fn verify(cli: &Cli) -> Report {
    let prepared = async {
        let set = MigrationSet::from_dir(&cli.migrations)?;
        let target = scratch_server(cli).await?;
        Ok::<_, Error>((set, target))
    }
    .await;
    match prepared {
        Ok((set, target)) => slipway::verify::verify(&set, &target, &settings(cli)).await,
        Err(error) => Report::failure("verify", false, &error),
    }
}

fn settings(cli: &Cli) -> Settings {
    Settings {
        lock_timeout: cli.lock_timeout,
        statement_timeout: cli.statement_timeout,
        lock_retries: cli.lock_retries,
        retry_backoff: cli.retry_backoff,
    }
}

async fn migrator(cli: &Cli) -> Result<Migrator, Error> {
    let set = MigrationSet::from_dir(&cli.migrations)?;
    let mut connect = connection(cli).await?;
    connect.connect_timeout = cli.connect_timeout;
    connect.tls = TlsOptions {
        mode: cli.sslmode,
        ca_bundle: cli.ca_bundle.clone(),
    };
    let mut target = Target::new(connect, format!("cli:{}", host_name()));
    target.history_schema = cli.history_schema.clone();
    target.check_drift = !cli.no_drift_check;
    Ok(Migrator::new(set, target, settings(cli)))
}

/// Flags first, then the environment; never a guessed database.
async fn connection(cli: &Cli) -> Result<ConnectOptions, Error> {
    let chosen = [
        cli.database_url.is_some(),
        cli.secret_id.is_some(),
        cli.local,
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err(Error::Config(
            "give only one of --database-url, --secret-id, --local".into(),
        ));
    }
    if cli.local {
        let cluster = start_local().await?;
        cluster.ensure_database(&cli.local_database).await?;
        return Ok(ConnectOptions::new(cluster.config(&cli.local_database)));
    }
    let url = cli
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()));
    if let Some(url) = url {
        return ConnectOptions::from_url(&url);
    }
    let secret = cli.secret_id.clone().or_else(|| {
        std::env::var("DB_SECRET_ARN")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if let Some(secret_id) = secret {
        // The Lambda's code (src/secret.rs); one run, so the cache never serves twice.
        let source = SecretSource::new(&aws_config().await, secret_id, DEFAULT_SECRET_TTL);
        return Ok(ConnectOptions::new(source.get().await?.config()));
    }
    Err(Error::Config(
        "no database given; use one of: --database-url URL (or DATABASE_URL), --secret-id ARN (or DB_SECRET_ARN), --local (slipway's own throw-away PostgreSQL)".into(),
    ))
}

fn local_dir() -> PathBuf {
    Path::new(".slipway").join("local")
}

async fn start_local() -> Result<LocalCluster, Error> {
    let dir = local_dir();
    tokio::task::spawn_blocking(move || LocalCluster::start_or_reuse(&dir))
        .await
        .map_err(|e| Error::Internal(format!("local cluster start panicked: {e}")))?
}

async fn local_command(cli: &Cli, command: &LocalCommand) -> ExitCode {
    let outcome = match command {
        LocalCommand::Start => match start_local().await {
            Ok(cluster) => match cluster.ensure_database(&cli.local_database).await {
                Ok(()) => {
                    println!("{}", cluster.url(&cli.local_database));
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        LocalCommand::Stop => match LocalCluster::stop_dir(&local_dir()) {
            Ok(true) => {
                println!(
                    "stopped the local PostgreSQL under {}",
                    local_dir().display()
                );
                Ok(())
            }
            Ok(false) => {
                println!(
                    "no local PostgreSQL was running under {}",
                    local_dir().display()
                );
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    exit_code(outcome)
}

/// `slipway snapshot`: write the expected snapshot, or with `--check` say
/// whether the committed one is stale (exit 1).
async fn snapshot_command(cli: &Cli, out: Option<&Path>, check: bool) -> ExitCode {
    let path = out.map_or_else(
        || cli.migrations.join(EXPECTED_SNAPSHOT_FILE),
        Path::to_path_buf,
    );
    let outcome = match build_snapshot(cli).await {
        Ok(snapshot) if check => {
            let text = snapshot.to_pretty_json();
            if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
                println!("{} is up to date", path.display());
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "slipway: {} is stale: the migrations produce another schema; refresh it with `slipway snapshot --out {}` and commit it",
                path.display(),
                path.display()
            );
            return ExitCode::from(1);
        }
        Ok(snapshot) => std::fs::write(&path, snapshot.to_pretty_json())
            .map(|()| {
                println!(
                    "wrote {}: {} table(s), fingerprint {}",
                    path.display(),
                    snapshot.table_count(),
                    snapshot.fingerprint()
                )
            })
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display()))),
        Err(e) => Err(e),
    };
    exit_code(outcome)
}

/// Only an explicit --database-url moves the scratch database off the
/// embedded server: a DATABASE_URL left in the environment may be production.
/// Exit 0, or print the error on one line and exit 2 (DESIGN.md's exit codes).
fn exit_code(outcome: Result<(), Error>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slipway: {e}");
            ExitCode::from(2)
        }
    }
}

async fn build_snapshot(cli: &Cli) -> Result<Snapshot, Error> {
    let set = MigrationSet::from_dir(&cli.migrations)?;
    let target = scratch_server(cli).await?;
    slipway::engine::build_expected_snapshot(&set, &target).await
}

/// The server a scratch database is created on (snapshot, verify).
async fn scratch_server(cli: &Cli) -> Result<Target, Error> {
    let mut server = match &cli.database_url {
        Some(url) => ConnectOptions::from_url(url)?,
        None => ConnectOptions::new(start_local().await?.config("postgres")),
    };
    server.connect_timeout = cli.connect_timeout;
    server.tls = TlsOptions {
        mode: cli.sslmode,
        ca_bundle: cli.ca_bundle.clone(),
    };
    let mut target = Target::new(server, format!("cli:{}", host_name()));
    target.history_schema = cli.history_schema.clone();
    Ok(target)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// `500ms`, `5s`, `15m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 500ms, 5s, 15m"))?;
    let millis = match unit {
        "ms" => number,
        "" | "s" => number.saturating_mul(1000),
        "m" | "min" => number.saturating_mul(60_000),
        "h" => number.saturating_mul(3_600_000),
        _ => return Err(format!("'{text}' is not a duration like 500ms, 5s, 15m")),
    };
    Ok(Duration::from_millis(millis))
}
