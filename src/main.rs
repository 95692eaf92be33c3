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
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use slipway::db::catalog::Snapshot;
use slipway::local::LocalCluster;
use slipway::migrations::EXPECTED_SNAPSHOT_FILE;
use slipway::redact;
use slipway::report::SnapshotFile;
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

    /// apply, rollback: go ahead although the schema drifted from the recorded or expected snapshot (once the run commits, the live schema becomes the recorded one)
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

    /// Give up connecting after this long [default: the URL's connect_timeout, else 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    connect_timeout: Option<Duration>,

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
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return argument_error(&error, &args, json),
    };
    init_logging(cli.verbose);
    match std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(&cli))) {
        Ok(code) => code,
        Err(_) => {
            // The hook has said where on stderr; --json still owes stdout
            // its one report, unless the panic came after it.
            if cli.json && !output::report_printed() {
                let error = Error::Internal(
                    "slipway stopped on a bug (stderr says where); check the database with `slipway status` and report the bug".into(),
                );
                output::report_json(&Report::failure(
                    action_name(&cli).unwrap_or("unknown"),
                    false,
                    &error,
                ));
            }
            ExitCode::from(2)
        }
    }
}

/// The report's `action` for a parsed command line; `None` when no
/// subcommand was given.
fn action_name(cli: &Cli) -> Option<&'static str> {
    Some(match &cli.command {
        Some(Command::Validate) => "validate",
        Some(Command::Status) => "status",
        Some(Command::Apply) => "apply",
        Some(Command::Rollback) => "rollback",
        Some(Command::Verify) => "verify",
        Some(Command::Snapshot { .. }) => "snapshot",
        Some(Command::Lint { .. }) => "lint",
        Some(Command::Local {
            command: LocalCommand::Start,
        }) => "local start",
        Some(Command::Local {
            command: LocalCommand::Stop,
        }) => "local stop",
        None if cli.dry_run => "apply",
        None => return None,
    })
}

fn dispatch(cli: &Cli) -> ExitCode {
    // Lint touches no database: no runtime, no connection options.
    if let Some(Command::Lint {
        rollback_required_from,
    }) = &cli.command
    {
        return lint_command(cli, rollback_required_from.as_deref());
    }
    let Some(action) = action_name(cli) else {
        let message = "say what to do: validate, apply, rollback, status, verify, snapshot, lint, local (see slipway --help)";
        if cli.json {
            let error = Error::BadRequest(message.into());
            output::report_json(&Report::failure("unknown", false, &error));
        } else {
            output::err(&format!("slipway: {message}\n"));
        }
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let error = Error::Internal(format!(
                "cannot start the async runtime: {e}; check the process limits (threads, open files)"
            ));
            return print_outcome(cli, Report::failure(action, false, &error));
        }
    };
    match &cli.command {
        Some(Command::Local { command }) => runtime.block_on(local_command(cli, command)),
        Some(Command::Snapshot { out, check }) => {
            runtime.block_on(snapshot_command(cli, out.as_deref(), *check))
        }
        _ => {
            let report = runtime.block_on(run(cli, action));
            print_outcome(cli, report)
        }
    }
}

/// Print a run's report (JSON, or the human text) and map it to the exit code.
fn print_outcome(cli: &Cli, report: Report) -> ExitCode {
    if cli.json {
        output::report_json(&report);
    } else {
        let ran_alone = failed_step_ran_alone(cli, &report);
        output::out(&report.render_human_with(std::io::stdout().is_terminal(), ran_alone));
    }
    ExitCode::from(report.exit_code())
}

/// Whether the migration a failed run names is a `-- slipway:no-transaction`
/// one: its statements ran outside a transaction, so the failure may have
/// left some of them done and "nothing was changed" would be a false promise.
fn failed_step_ran_alone(cli: &Cli, report: &Report) -> bool {
    let Some(file) = report
        .error
        .as_ref()
        .and_then(|e| e.detail.get("file"))
        .and_then(serde_json::Value::as_str)
    else {
        return false;
    };
    let Ok(set) = MigrationSet::from_dir(&cli.migrations) else {
        // Cannot tell: do not promise that nothing changed.
        return true;
    };
    set.versioned().iter().chain(set.repeatable()).any(|m| {
        (m.script == file && m.directives.no_transaction)
            || m.rollback
                .as_ref()
                .is_some_and(|r| r.script == file && r.directives.no_transaction)
    })
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

/// Whether the command line asks for JSON, read from the raw arguments: when
/// parsing fails there is no `Cli` to ask, and `--json` still owes stdout
/// its one report.
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .map(|a| a.to_str())
        .take_while(|a| *a != Some("--"))
        .any(|a| a.is_some_and(|a| a == "--json" || a.starts_with("--json=")))
}

/// A command line clap refused (or `--help`, `--version`): its message, with
/// every password blanked, on stderr — or, with `--json`, a `bad_request`
/// report on stdout. Exit 2, as for every error.
fn argument_error(error: &clap::Error, args: &[OsString], json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let text = redact::redact(&error.render().to_string());
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        output::out(&text);
        return ExitCode::SUCCESS;
    }
    // A psql habit: the URL as an argument. Say where it goes.
    let url_hint = stray_database_url(args).then_some(
        "a database URL was given as an argument; use --database-url URL or DATABASE_URL",
    );
    if json {
        let mut message: Vec<String> =
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                // clap's text is the whole help; the usage line says enough.
                let usage = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Usage:"))
                    .map_or_else(String::new, |u| format!(", as in: {}", u.trim()));
                vec![format!("a subcommand is missing{usage}")]
            } else {
                text.lines()
                    .map(str::trim)
                    .filter(|l| {
                        !l.is_empty()
                            && !l.starts_with("Usage:")
                            && !l.starts_with("For more information")
                    })
                    .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_owned())
                    .collect()
            };
        message.extend(url_hint.map(str::to_owned));
        message.push("see slipway --help".into());
        let (action, dry_run) = guess_action(args);
        let error = Error::BadRequest(message.join("; "));
        output::report_json(&Report::failure(action, dry_run, &error));
    } else {
        output::err(&text);
        if let Some(hint) = url_hint {
            output::err(&format!("\n  hint: {hint}\n"));
        }
    }
    ExitCode::from(2)
}

/// Whether an argument other than the value of `--database-url` looks
/// like a connection URL (`postgresql://...`) or a `key=value` connection
/// string.
fn stray_database_url(args: &[OsString]) -> bool {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    words.iter().enumerate().any(|(i, word)| {
        let value_of_flag = i > 0 && words[i - 1] == "--database-url";
        let lower = word.to_ascii_lowercase();
        !value_of_flag
            && !lower.starts_with("--database-url=")
            && (lower.contains("://")
                || lower.starts_with("postgres")
                || lower.contains("host=")
                || lower.contains("dbname=")
                || lower.contains("password="))
    })
}

/// The action and dry-run of a command line clap refused, for the report:
/// the first subcommand named, else `unknown` (as the Lambda says for an
/// event it cannot read).
fn guess_action(args: &[OsString]) -> (&'static str, bool) {
    const ACTIONS: [(&str, &str); 10] = [
        ("validate", "validate"),
        ("--validate", "validate"),
        ("apply", "apply"),
        ("--apply", "apply"),
        ("rollback", "rollback"),
        ("status", "status"),
        ("verify", "verify"),
        ("snapshot", "snapshot"),
        ("lint", "lint"),
        ("local", "local"),
    ];
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .collect();
    let action = words
        .iter()
        .find_map(|word| ACTIONS.iter().find(|(w, _)| w == word).map(|(_, a)| *a))
        .unwrap_or("unknown");
    let dry_run = (action == "apply" || action == "rollback") && words.contains(&"--dry-run");
    (action, dry_run)
}

/// A panic prints a fixed sentence, where, and the message with every
/// password blanked — never the raw message, which may quote a URL.
fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    output::err(&panic_message(&payload, location.as_deref()));
}

fn panic_message(payload: &str, location: Option<&str>) -> String {
    format!(
        "slipway: internal error, a bug in slipway ({}): {}; check the database with `slipway status` and report the bug\n",
        location.unwrap_or("unknown location"),
        redact::redact(payload)
    )
}

/// Everything slipway prints goes through here. A closed pipe
/// (`slipway status | head -1`) ends the writing, not the run: the exit code
/// stays the one the outcome deserves, and nothing panics. Any other write
/// error is ignored alike — there is nowhere left to report it.
mod output {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    use slipway::Report;

    static REPORT_PRINTED: AtomicBool = AtomicBool::new(false);

    fn write(mut stream: impl Write, text: &str) {
        let text = slipway::redact::redact(text);
        let _ = stream
            .write_all(text.as_bytes())
            .and_then(|()| stream.flush());
    }

    /// Text on stdout.
    pub fn out(text: &str) {
        write(std::io::stdout().lock(), text);
    }

    /// Text on stderr.
    pub fn err(text: &str) {
        write(std::io::stderr().lock(), text);
    }

    /// A JSON document on stdout, on its own line.
    pub fn json(text: &str) {
        REPORT_PRINTED.store(true, Ordering::SeqCst);
        out(&format!("{text}\n"));
    }

    /// The report as JSON on stdout.
    pub fn report_json(report: &Report) {
        json(&report.to_json());
    }

    /// Whether the one JSON report has been printed.
    pub fn report_printed() -> bool {
        REPORT_PRINTED.load(Ordering::SeqCst)
    }
}

async fn run(cli: &Cli, action: &str) -> Report {
    let dry_run = cli.dry_run && (action == "apply" || action == "rollback");
    if let Err(error) = check_timeouts(cli) {
        return Report::failure(action, dry_run, &error);
    }
    if action == "verify" {
        return verify(cli).await;
    }
    let migrator = match migrator(cli).await {
        Ok(migrator) => migrator,
        Err(error) => return Report::failure(action, dry_run, &error),
    };
    with_spinner(action, run_action(cli, action, dry_run, &migrator)).await
}

/// While `work` runs, a spinner on stderr with the time so far — only on a
/// terminal, so pipes and CI logs see none of it. What runs is also in
/// `pg_stat_activity.application_name` (`slipway: <migration>`).
async fn with_spinner(action: &str, work: impl std::future::Future<Output = Report>) -> Report {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} slipway {msg} ({elapsed})")
    {
        spinner.set_style(style);
    }
    spinner.set_message(action.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let report = work.await;
    spinner.finish_and_clear();
    report
}

async fn run_action(cli: &Cli, action: &str, dry_run: bool, migrator: &Migrator) -> Report {
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
    if let Some(timeout) = cli.connect_timeout {
        // The flag beats the URL's connect_timeout.
        connect.connect_timeout = timeout;
        connect.url_connect_timeout = None;
    }
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
        return Ok(ConnectOptions::from_url(&url)?.with_password_sources(password_sources()));
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
    let started = Instant::now();
    let (action, outcome) = match command {
        LocalCommand::Start => ("local start", local_start(cli).await.map(Some)),
        LocalCommand::Stop => (
            "local stop",
            LocalCluster::stop_dir(&local_dir()).map(|stopped| {
                if !cli.json {
                    output::out(&if stopped {
                        format!(
                            "stopped the local PostgreSQL under {}\n",
                            local_dir().display()
                        )
                    } else {
                        format!(
                            "no local PostgreSQL was running under {}\n",
                            local_dir().display()
                        )
                    });
                }
                None
            }),
        ),
    };
    let mut report = Report::new(action, false);
    match outcome {
        Ok(url) => {
            report.success = true;
            report.schema_valid = true;
            if let Some(url) = url {
                report.database = Some(cli.local_database.clone());
                if !cli.json {
                    output::out(&format!("{url}\n"));
                }
                report.url = Some(url);
            }
        }
        Err(e) => report.fail(&e),
    }
    report.duration_ms = elapsed_ms(started);
    print_side_report(cli, &report)
}

/// Start (or reuse) the local server and its database; its URL.
async fn local_start(cli: &Cli) -> Result<String, Error> {
    let cluster = start_local().await?;
    cluster.ensure_database(&cli.local_database).await?;
    Ok(cluster.url(&cli.local_database))
}

/// `slipway snapshot`: write the expected snapshot, or with `--check` say
/// whether the committed one is stale (exit 1).
async fn snapshot_command(cli: &Cli, out: Option<&Path>, check: bool) -> ExitCode {
    let started = Instant::now();
    let path = out.map_or_else(
        || cli.migrations.join(EXPECTED_SNAPSHOT_FILE),
        Path::to_path_buf,
    );
    let mut report = Report::new("snapshot", false);
    let outcome = async {
        check_timeouts(cli)?;
        let snapshot = build_snapshot(cli).await?;
        let text = snapshot.to_pretty_json();
        let up_to_date = std::fs::read_to_string(&path).is_ok_and(|current| current == text);
        if !check {
            std::fs::write(&path, &text)
                .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
        }
        report.schema_valid = up_to_date || !check;
        report.snapshot = Some(SnapshotFile {
            path: path.display().to_string(),
            written: !check,
            tables: snapshot.table_count(),
            fingerprint: snapshot.fingerprint(),
        });
        Ok::<_, Error>(())
    }
    .await;
    match outcome {
        Ok(()) => report.success = true,
        Err(e) => report.fail(&e),
    }
    report.duration_ms = elapsed_ms(started);
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
    print_side_report(cli, &report)
}

/// The commands without a report of their own in human mode (`local`,
/// `snapshot`) print their text as they go; here the JSON report, or the
/// error on one line on stderr, and the exit code (DESIGN.md's exit codes).
fn print_side_report(cli: &Cli, report: &Report) -> ExitCode {
    if cli.json {
        output::report_json(report);
    } else if let Some(error) = &report.error {
        output::err(&format!("slipway: {}\n", error.message));
    }
    ExitCode::from(report.exit_code())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// PostgreSQL's `lock_timeout` and `statement_timeout` are an `int` of
/// milliseconds: the largest it accepts.
const PG_TIMEOUT_MAX_MS: u128 = i32::MAX as u128;

/// Longest `--connect-timeout`: a server that has not answered in an hour is
/// not going to, and the run should fail rather than hang a pipeline.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// The timeouts checked before anything connects, so that a value the
/// server would refuse is a `config` error naming the flag, not an
/// `internal` one after the connection.
fn check_timeouts(cli: &Cli) -> Result<(), Error> {
    if cli.lock_timeout.is_zero() {
        return Err(Error::Config(
            "--lock-timeout 0 would let a migration wait for a table lock forever, while every query on that table queues behind it; give a bound such as 5s".into(),
        ));
    }
    for (flag, value, zero) in [
        ("--lock-timeout", cli.lock_timeout, ""),
        (
            "--statement-timeout",
            cli.statement_timeout,
            ", or 0 for no limit",
        ),
    ] {
        if value.as_millis() > PG_TIMEOUT_MAX_MS {
            return Err(Error::Config(format!(
                "{flag} of {} ms is more than PostgreSQL accepts ({PG_TIMEOUT_MAX_MS} ms, about 24.8 days); give a shorter duration{zero}",
                value.as_millis()
            )));
        }
    }
    if let Some(timeout) = cli
        .connect_timeout
        .filter(|t| t.is_zero() || *t > CONNECT_TIMEOUT_MAX)
    {
        return Err(Error::Config(format!(
            "--connect-timeout of {} ms is out of range; give a duration from 1ms to 1h, such as 10s",
            timeout.as_millis()
        )));
    }
    Ok(())
}

async fn build_snapshot(cli: &Cli) -> Result<Snapshot, Error> {
    let set = MigrationSet::from_dir(&cli.migrations)?;
    let target = scratch_server(cli).await?;
    slipway::engine::build_expected_snapshot(&set, &target).await
}

/// The server a scratch database is created on (snapshot, verify).
/// Only an explicit --database-url moves the scratch database off the
/// embedded server: a DATABASE_URL left in the environment may be production.
async fn scratch_server(cli: &Cli) -> Result<Target, Error> {
    let mut server = match &cli.database_url {
        Some(url) => ConnectOptions::from_url(url)?.with_password_sources(password_sources()),
        None => ConnectOptions::new(start_local().await?.config("postgres")),
    };
    if let Some(timeout) = cli.connect_timeout {
        server.connect_timeout = timeout;
        server.url_connect_timeout = None;
    }
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
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The engine logs the error a run ends with; the CLI prints it in the
    // report (human text or JSON) already, and once is enough.
    let not_in_report = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target() == "slipway::engine"
            && *meta.level() == tracing::Level::ERROR
            && meta.fields().field("code").is_some())
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter)
        .with_filter(not_in_report);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// stderr for log lines, redacted like every other output, and quiet about
/// a closed pipe.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        output::err(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_message_is_redacted() {
        let text = panic_message(
            "called `Result::unwrap()` on an `Err` value: bad url postgresql://app:hunter2@db/tutor (password=hunter2)",
            Some("src/main.rs:1:1"),
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgresql://app:****@db/tutor"), "{text}");
        assert!(
            text.starts_with("slipway: internal error, a bug in slipway (src/main.rs:1:1)"),
            "{text}"
        );
        let text = panic_message("", None);
        assert!(text.contains("unknown location"), "{text}");
    }

    #[test]
    fn json_is_read_from_the_raw_arguments() {
        let args = |list: &[&str]| -> Vec<OsString> {
            std::iter::once("slipway")
                .chain(list.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert!(wants_json(&args(&["apply", "--json"])));
        assert!(wants_json(&args(&["--json=x"])));
        assert!(!wants_json(&args(&["apply", "--", "--json"])));
        assert!(!wants_json(&args(&["--jsonx"])));
        assert_eq!(
            guess_action(&args(&["--dry-run", "apply", "--to"])),
            ("apply", true)
        );
        assert_eq!(
            guess_action(&args(&["--dry-run", "status"])),
            ("status", false)
        );
        assert_eq!(guess_action(&args(&["migrate"])), ("unknown", false));
    }
}
