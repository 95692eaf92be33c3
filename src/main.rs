//! `slipway`, the command-line face: parse arguments, choose the database,
//! call the library, print the report, exit 0 / 1 / 2. All behaviour lives in
//! the library so the CLI and the Lambda function act the same.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use slipway::local::LocalCluster;
use slipway::{
    ApplyOptions, ConnectOptions, Error, MigrationSet, Migrator, Report, Settings, Target,
};

/// Safe PostgreSQL schema migrations: validate, then apply everything pending
/// in one transaction under an advisory lock. Nothing is ever half-applied.
///
/// Exit codes: 0 success (and, for validate, schema valid); 1 validate found
/// the schema not valid; 2 error.
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

    /// apply: run everything, report, then roll back — nothing changes
    #[arg(long, global = true)]
    dry_run: bool,

    /// apply: stop at this version (e.g. 0004) instead of the latest
    #[arg(long, global = true, value_name = "VERSION")]
    to: Option<String>,

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
    /// Every migration and its state
    Status,
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
        None if cli.dry_run => "apply",
        Some(Command::Local { command }) => return runtime.block_on(local_command(&cli, command)),
        None => {
            eprintln!("slipway: say what to do: validate, apply, status (see slipway --help)");
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

async fn run(cli: &Cli, action: &str) -> Report {
    let dry_run = cli.dry_run && action == "apply";
    let migrator = match migrator(cli).await {
        Ok(migrator) => migrator,
        Err(error) => return Report::failure(action, dry_run, &error),
    };
    match action {
        "validate" => migrator.validate().await,
        "status" => migrator.status().await,
        _ => {
            let options = ApplyOptions {
                dry_run,
                target: cli.to.clone(),
            };
            migrator.apply(&options).await
        }
    }
}

async fn migrator(cli: &Cli) -> Result<Migrator, Error> {
    let set = MigrationSet::from_dir(&cli.migrations)?;
    let mut connect = connection(cli).await?;
    connect.connect_timeout = cli.connect_timeout;
    let mut target = Target::new(connect, format!("cli:{}", host_name()));
    target.history_schema = cli.history_schema.clone();
    let settings = Settings {
        lock_timeout: cli.lock_timeout,
        statement_timeout: cli.statement_timeout,
        lock_retries: cli.lock_retries,
        retry_backoff: cli.retry_backoff,
    };
    Ok(Migrator::new(set, target, settings))
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
    if secret.is_some() {
        return Err(Error::Config(
            "reading credentials from Secrets Manager (--secret-id / DB_SECRET_ARN) is not available in this build yet; use --database-url or --local".into(),
        ));
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
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slipway: {e}");
            ExitCode::from(2)
        }
    }
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
