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

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use slipway::config::{
    self, layered, DatabaseChoice, DatabaseSource, FileConfig, HumanDuration,
    DEFAULT_HISTORY_SCHEMA, DEFAULT_LOCAL_DATABASE, DEFAULT_LOCK_RETRIES, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MIGRATIONS_DIR, DEFAULT_RETRY_BACKOFF, DEFAULT_STATEMENT_TIMEOUT,
};
use slipway::credentials::{start_local, Credentials, Resolve};
use slipway::local::LocalCluster;
use slipway::migrations::EXPECTED_SNAPSHOT_FILE;
use slipway::redact;
use slipway::request::{DatabaseRole, RequestError, RequestOption};
use slipway::tls::{SslMode, TlsOptions};
use slipway::{
    Action, ConnectOptions, Error, MigrationSet, Migrator, Report, Request, RequestOptions,
    Settings, Target,
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
                        &Report::failure(action.as_str(), false, &error),
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
        other => Error::BadRequest(format!("{other:?}; see slipway --help")),
    })
}

/// Run a request: settings checked before anything connects, the migration
/// files read, the database resolved for the action, then the library.
async fn run(cli: &Cli, matches: &ArgMatches, request: &Request) -> Report {
    let prepared = async {
        let file = FileConfig::load(cli.config.as_deref(), &cli.migrations)?;
        let settings = settings(cli, matches, &file);
        settings.check()?;
        let connect_timeout = cli.connect_timeout.map(|t| t.0).or(file.connect_timeout);
        config::check_connect_timeout(connect_timeout)?;
        let set = MigrationSet::from_dir(&cli.migrations)?;
        let role = request.action().database();
        let source = match role {
            DatabaseRole::Migrated => DatabaseSource::choose(database_choice(cli))?,
            DatabaseRole::ScratchServer => DatabaseSource::scratch_server(cli.database_url.clone()),
        };
        let resolve = Resolve {
            passwords: password_sources(),
            sdk: None,
            local_dir: Some(local_dir()),
        };
        let credentials = Credentials::resolve(&source, resolve).await?;
        let history_schema = from_file(
            matches,
            "history_schema",
            &cli.history_schema,
            &file.history_schema,
        );
        Ok::<_, Error>((
            settings,
            connect_timeout,
            set,
            role,
            credentials,
            history_schema,
        ))
    }
    .await;
    let (settings, connect_timeout, set, role, credentials, history_schema) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return request.failure(&error),
    };
    let action = request.action().as_str();
    let dry_run = request.options().dry_run;
    let work = credentials.with(action, dry_run, |mut connect: ConnectOptions| {
        if let Some(timeout) = connect_timeout {
            // The flag beats the URL's connect_timeout.
            connect.connect_timeout = timeout;
            connect.url_connect_timeout = None;
        }
        connect.tls = TlsOptions {
            mode: cli.sslmode,
            ca_bundle: cli.ca_bundle.clone(),
        };
        let mut target = Target::new(connect, format!("cli:{}", host_name()));
        target.history_schema = history_schema.clone();
        if role == DatabaseRole::Migrated {
            target.check_drift = !cli.no_drift_check;
        }
        let migrator = Migrator::new(set.clone(), target, settings.clone());
        async move { slipway::run(&migrator, request).await }
    });
    with_spinner(action, work).await
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

async fn local_command(cli: &Cli, command: &LocalCommand) -> ExitCode {
    let started = Instant::now();
    let (action, outcome) = match command {
        LocalCommand::Start => ("local start", local_start(cli).await.map(Some)),
        LocalCommand::Stop => (
            "local stop",
            LocalCluster::stop_dir(&local_dir()).map(|stopped| {
                if !cli.json {
                    let what = if stopped {
                        "stopped the local PostgreSQL"
                    } else {
                        "no local PostgreSQL was running"
                    };
                    output::out(&format!("{what} under {}\n", local_dir().display()));
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
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    print_side_report(cli, &report)
}

/// Start (or reuse) the local server and its database; its URL.
async fn local_start(cli: &Cli) -> Result<String, Error> {
    let cluster = start_local(local_dir()).await?;
    cluster.ensure_database(&cli.local_database).await?;
    Ok(cluster.url(&cli.local_database))
}

/// The commands without a report of their own in human mode (`local`,
/// `snapshot`) print their text as they go; here the JSON report, or the
/// error on one line on stderr, and the exit code.
fn print_side_report(cli: &Cli, report: &Report) -> ExitCode {
    if cli.json {
        output::report_json(report);
    } else if let Some(error) = &report.error {
        output::err(&format!("slipway: {}\n", error.message));
    }
    ExitCode::from(report.exit_code())
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
