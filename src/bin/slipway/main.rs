//! `slipway`, the command-line face: parse arguments, choose the database,
//! call the library, print the report, exit 0 / 1 / 2. All behaviour lives in
//! the library so the CLI and the Lambda function act the same.
//!
//! Everything it prints goes through `output`: a closed pipe ends the
//! writing, not the run, and every password is blanked (`redact`), also in
//! clap's argument errors — which slipway renders itself, as one
//! `bad_request` report under `--json` — and in panic messages.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use slipway::config::{
    self, layered, DatabaseChoice, DatabaseSource, FileConfig, HumanDuration,
    DEFAULT_HISTORY_SCHEMA, DEFAULT_LOCAL_DATABASE, DEFAULT_LOCK_RETRIES, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MIGRATIONS_DIR, DEFAULT_RETRY_BACKOFF, DEFAULT_STATEMENT_TIMEOUT,
};
use slipway::credentials::{Credentials, Resolve};
use slipway::migrations::EXPECTED_SNAPSHOT_FILE;
use slipway::redact;
use slipway::request::{DatabaseRole, RequestError, RequestOption};
use slipway::runner::{ConnectTimeout, Runner};
use slipway::tls::{SslMode, TlsOptions};
use slipway::{Action, Error, MigrationSet, Report, Request, RequestOptions, Settings};

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

    /// TLS to the database: disable, require, verify-ca, verify-full [default: require, disable on loopback; a URL's sslmode counts]
    #[arg(long, global = true, value_name = "MODE", env = "DB_SSLMODE")]
    sslmode: Option<SslMode>,

    /// PEM file of the CAs that verify-full trusts, e.g. the RDS global bundle
    #[arg(long, global = true, value_name = "FILE", env = "DB_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,

    /// Use slipway's own throw-away PostgreSQL under .slipway/local/ (started if needed)
    #[arg(long, global = true)]
    local: bool,

    /// Database name inside the --local server
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_LOCAL_DATABASE)]
    local_database: String,

    /// Directory holding NNNN_description.sql files and repeatable/
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_MIGRATIONS_DIR)]
    migrations: PathBuf,

    /// Settings file (history schema, timeouts, retries); flags and environment win over it [default: slipway.toml beside the migrations directory, when there is one]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the JSON report instead of text
    #[arg(long, global = true)]
    json: bool,

    /// apply, rollback: run everything, report, then roll back — nothing changes
    #[arg(long, global = true)]
    dry_run: bool,

    /// apply: stop at this version (e.g. 0004) instead of the latest; rollback: the version to go back to (0: all)
    #[arg(long, global = true, value_name = "VERSION")]
    to: Option<String>,

    /// apply, rollback: go ahead although the schema drifted from the recorded or expected snapshot (once the run commits, the live schema becomes the recorded one)
    #[arg(long, global = true)]
    allow_drift: bool,

    /// Skip comparing the schema with the recorded and expected snapshots (an apply still records the schema it leaves)
    #[arg(long, global = true)]
    no_drift_check: bool,

    /// Schema of slipway's history table
    #[arg(long, global = true, value_name = "SCHEMA", default_value = DEFAULT_HISTORY_SCHEMA)]
    history_schema: String,

    /// Longest a migration statement may wait for a table lock (e.g. 5s, 500ms)
    #[arg(long, global = true, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_LOCK_TIMEOUT))]
    lock_timeout: HumanDuration,

    /// Longest a migration statement may run; 0 for no limit
    #[arg(long, global = true, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_STATEMENT_TIMEOUT))]
    statement_timeout: HumanDuration,

    /// Retries after a lock timeout (the whole transaction is retried)
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_LOCK_RETRIES)]
    lock_retries: u32,

    /// Wait before the first retry; doubles each time
    #[arg(long, global = true, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_RETRY_BACKOFF))]
    retry_backoff: HumanDuration,

    /// Give up connecting after this long [default: the URL's connect_timeout, else 10s]
    #[arg(long, global = true, value_name = "DURATION")]
    connect_timeout: Option<HumanDuration>,

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

mod arguments;
mod local;
mod output;

use arguments::{argument_error, wants_json};
use local::{local_command, local_dir, print_side_report};
use output::{init_logging, panic_hook, with_spinner};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let texts: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .chain(std::env::var("DATABASE_URL").ok())
        .collect();
    redact::remember(
        &texts,
        &std::env::var("PGPASSWORD")
            .ok()
            .into_iter()
            .collect::<Vec<_>>(),
    );
    std::panic::set_hook(Box::new(panic_hook));
    let json = wants_json(&args);
    let parsed = Cli::command()
        .try_get_matches_from(&args)
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return argument_error(&error, &args, json),
    };
    init_logging(cli.verbose);
    match std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(&cli, &matches))) {
        Ok(code) => code,
        Err(_) => {
            // The hook has said where on stderr; --json still owes stdout
            // its one report, unless the panic came after it.
            if cli.json && !output::report_printed() {
                let error = Error::Internal(
                    "slipway stopped on a bug (stderr says where); check the database with `slipway status` and report the bug".into(),
                );
                output::report_json(&Report::failure(
                    report_action(&cli).unwrap_or("unknown"),
                    false,
                    &error,
                ));
            }
            ExitCode::from(2)
        }
    }
}

/// The library action of a command line; `None` for the commands that are
/// the CLI's own (`lint`, `local`) and for no command at all. A bare
/// `--dry-run` is an apply's, as in the pipeline's script.
fn action(cli: &Cli) -> Option<Action> {
    match &cli.command {
        Some(Command::Validate) => Some(Action::Validate),
        Some(Command::Apply) => Some(Action::Apply),
        Some(Command::Rollback) => Some(Action::Rollback),
        Some(Command::Status) => Some(Action::Status),
        Some(Command::Verify) => Some(Action::Verify),
        Some(Command::Snapshot { .. }) => Some(Action::Snapshot),
        Some(Command::Lint { .. } | Command::Local { .. }) => None,
        None if cli.dry_run => Some(Action::Apply),
        None => None,
    }
}

/// The report's `action` for a parsed command line; `None` when no
/// subcommand was given.
fn report_action(cli: &Cli) -> Option<&'static str> {
    match &cli.command {
        Some(Command::Lint { .. }) => Some("lint"),
        Some(Command::Local {
            command: LocalCommand::Start,
        }) => Some("local start"),
        Some(Command::Local {
            command: LocalCommand::Stop,
        }) => Some("local stop"),
        _ => action(cli).map(Action::as_str),
    }
}

fn dispatch(cli: &Cli, matches: &ArgMatches) -> ExitCode {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Internal(format!(
                    "cannot start the async runtime: {e}; check the process limits (threads, open files)"
                ))
            })
    };
    match (&cli.command, action(cli)) {
        // Lint touches no database: no runtime, no connection options.
        (
            Some(Command::Lint {
                rollback_required_from,
            }),
            _,
        ) => lint_command(cli, rollback_required_from.as_deref()),
        (Some(Command::Local { command }), _) => {
            let action = report_action(cli).unwrap_or("local");
            match runtime() {
                Ok(runtime) => runtime.block_on(local_command(cli, command)),
                Err(error) => print_side_report(cli, &Report::failure(action, false, &error)),
            }
        }
        (_, Some(action)) => {
            let request = match request(cli, action) {
                Ok(request) => request,
                Err(error) => {
                    return print_outcome(
                        cli,
                        action,
                        &Report::failure(action, cli.dry_run && action.takes_dry_run(), &error),
                    )
                }
            };
            let report = match runtime() {
                Ok(runtime) => runtime.block_on(run(cli, matches, &request)),
                Err(error) => request.failure(&error),
            };
            print_outcome(cli, action, &report)
        }
        (_, None) => {
            let message = "say what to do: validate, apply, rollback, status, verify, snapshot, lint, local (see slipway --help)";
            if cli.json {
                let error = Error::BadRequest(message.into());
                output::report_json(&Report::failure("unknown", false, &error));
            } else {
                output::err(&format!("slipway: {message}\n"));
            }
            ExitCode::from(2)
        }
    }
}

/// The request of a command line. Its options are global switches, each
/// documented for the actions that take it; the others ignore it.
fn request(cli: &Cli, action: Action) -> Result<Request, Error> {
    let snapshot = match &cli.command {
        Some(Command::Snapshot { out, check }) => Some((
            out.clone()
                .unwrap_or_else(|| cli.migrations.join(EXPECTED_SNAPSHOT_FILE)),
            *check,
        )),
        _ => None,
    };
    let options = RequestOptions {
        dry_run: cli.dry_run,
        to: cli.to.clone(),
        allow_drift: cli.allow_drift,
        check: snapshot.as_ref().is_some_and(|(_, check)| *check),
        out: snapshot.map(|(out, _)| out),
    };
    Request::new(action, options.keep_for(action)).map_err(|error| match error {
        RequestError::Missing {
            option: RequestOption::To,
            ..
        } => Error::Config(
            "rollback needs --to VERSION: the version to go back to (0 undoes everything)".into(),
        ),
        // The CLI passes only what the action takes, and always a snapshot
        // file: the table cannot refuse anything else, but say which flag.
        RequestError::NotAccepted { option, action } => Error::BadRequest(format!(
            "{} does not apply to {action}; see slipway --help",
            flag(option)
        )),
        RequestError::Missing { option, action } => Error::BadRequest(format!(
            "{action} needs {}; see slipway --help",
            flag(option)
        )),
    })
}

/// The CLI's spelling of a request option.
fn flag(option: RequestOption) -> &'static str {
    match option {
        RequestOption::DryRun => "--dry-run",
        RequestOption::To => "--to",
        RequestOption::AllowDrift => "--allow-drift",
        RequestOption::Out => "--out",
        RequestOption::Check => "--check",
    }
}

/// Run a request: settings checked before anything connects, the migration
/// files read, the database resolved for the action, then the library.
async fn run(cli: &Cli, matches: &ArgMatches, request: &Request) -> Report {
    match runner(cli, matches, request).await {
        Ok(runner) => with_spinner(request.action().as_str(), runner.run(request)).await,
        Err(error) => request.failure(&error),
    }
}

/// Settings checked before anything connects, the migration files read,
/// the database the action works on resolved.
async fn runner(cli: &Cli, matches: &ArgMatches, request: &Request) -> Result<Runner, Error> {
    let file = FileConfig::load(cli.config.as_deref(), &cli.migrations)?;
    let settings = settings(cli, matches, &file);
    settings.check()?;
    let connect_timeout = match (cli.connect_timeout, file.connect_timeout) {
        (Some(flag), _) => Some(ConnectTimeout::Given(flag.0)),
        (None, Some(file)) => Some(ConnectTimeout::Configured(file)),
        (None, None) => None,
    };
    config::check_connect_timeout(connect_timeout.map(ConnectTimeout::duration))?;
    let migrations = MigrationSet::from_dir(&cli.migrations)?;
    let source = match request.action().database() {
        DatabaseRole::Migrated => DatabaseSource::choose(database_choice(cli))?,
        DatabaseRole::ScratchServer => DatabaseSource::scratch_server(cli.database_url.clone()),
    };
    let resolve = Resolve {
        passwords: password_sources(),
        sdk: None,
        local_dir: Some(local_dir()),
    };
    Ok(Runner {
        migrations,
        credentials: Credentials::resolve(&source, resolve).await?,
        settings,
        history_schema: from_file(
            matches,
            "history_schema",
            &cli.history_schema,
            &file.history_schema,
        ),
        check_drift: !cli.no_drift_check,
        run_by: format!("cli:{}", host_name()),
        tls: TlsOptions {
            mode: cli.sslmode,
            ca_bundle: cli.ca_bundle.clone(),
        },
        connect_timeout,
    })
}

/// A setting that `slipway.toml` may give: the flag (or its environment
/// variable) when given, else the file's, else the flag's default.
fn from_file<T: Clone>(matches: &ArgMatches, id: &str, flag: &T, file: &Option<T>) -> T {
    let given = matches
        .value_source(id)
        .is_some_and(|source| source != ValueSource::DefaultValue);
    layered(given.then(|| flag.clone()), file.clone(), flag.clone())
}

fn settings(cli: &Cli, matches: &ArgMatches, file: &FileConfig) -> Settings {
    Settings {
        lock_timeout: from_file(
            matches,
            "lock_timeout",
            &cli.lock_timeout.0,
            &file.lock_timeout,
        ),
        statement_timeout: from_file(
            matches,
            "statement_timeout",
            &cli.statement_timeout.0,
            &file.statement_timeout,
        ),
        lock_retries: from_file(
            matches,
            "lock_retries",
            &cli.lock_retries,
            &file.lock_retries,
        ),
        retry_backoff: from_file(
            matches,
            "retry_backoff",
            &cli.retry_backoff.0,
            &file.retry_backoff,
        ),
    }
}

/// What the command line and the environment say about the database.
fn database_choice(cli: &Cli) -> DatabaseChoice {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    DatabaseChoice {
        url_flag: cli.database_url.clone(),
        secret_flag: cli.secret_id.clone(),
        local: cli.local.then(|| cli.local_database.clone()),
        url_env: env("DATABASE_URL"),
        secret_env: env("DB_SECRET_ARN"),
    }
}

/// Print a run's report (JSON, or the human text) and map it to the exit code.
fn print_outcome(cli: &Cli, action: Action, report: &Report) -> ExitCode {
    if action == Action::Snapshot {
        return print_snapshot(cli, report);
    }
    if cli.json {
        output::report_json(report);
    } else {
        output::out(&report.render_human_with(
            std::io::stdout().is_terminal(),
            failed_step_ran_alone(cli, report),
        ));
    }
    ExitCode::from(report.exit_code())
}

/// Whether the migration a failed run names ran outside a transaction, so
/// that "nothing was changed" would be a false promise.
fn failed_step_ran_alone(cli: &Cli, report: &Report) -> bool {
    let Some(file) = report
        .error
        .as_ref()
        .and_then(|e| e.detail.get("file"))
        .and_then(serde_json::Value::as_str)
    else {
        return false;
    };
    // Cannot tell: do not promise that nothing changed.
    MigrationSet::from_dir(&cli.migrations).map_or(true, |set| set.runs_alone(file))
}

fn print_snapshot(cli: &Cli, report: &Report) -> ExitCode {
    if !cli.json {
        match &report.snapshot {
            Some(file) if file.written => output::out(&format!(
                "wrote {}: {} table(s), fingerprint {}\n",
                file.path, file.tables, file.fingerprint
            )),
            Some(file) if report.schema_valid => {
                output::out(&format!("{} is up to date\n", file.path));
            }
            Some(file) => output::err(&format!(
                "slipway: {} is stale: the migrations produce another schema; refresh it with `slipway snapshot --out {}` and commit it\n",
                file.path, file.path
            )),
            None => {}
        }
    }
    print_side_report(cli, report)
}

fn lint_command(cli: &Cli, rollback_required_from: Option<&str>) -> ExitCode {
    let report = slipway::lint::lint_dir(&cli.migrations, rollback_required_from);
    if cli.json {
        output::json(&report.to_json());
    } else {
        let dir = cli.migrations.display().to_string();
        output::out(&report.render_human(&dir, std::io::stdout().is_terminal()));
    }
    ExitCode::from(report.exit_code())
}

/// Where libpq looks for a password a URL lacks: `PGPASSWORD`, then
/// `PGPASSFILE`, else `~/.pgpass` (the library reads no environment).
fn password_sources() -> slipway::connect::PasswordSources {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    slipway::connect::PasswordSources {
        pgpassword: non_empty("PGPASSWORD").and_then(|v| v.into_string().ok()),
        pgpassfile: non_empty("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|home| Path::new(&home).join(".pgpass"))),
    }
}

/// The host for the history's `client` column: `cli:<host>`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
