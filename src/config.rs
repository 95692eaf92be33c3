//! Configuration shared by both faces: every default declared once, the one
//! duration syntax, the run [`Settings`] and their limits, where the
//! database is ([`DatabaseSource`]), and the optional `slipway.toml`.
//!
//! The CLI and the Lambda read their inputs differently (flags and
//! environment, environment only), but they resolve them with these
//! types and defaults, so a value means the same thing in both. Precedence,
//! where a setting can come from several places: flag > environment >
//! `slipway.toml` > the default here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Longest a migration statement waits for a table lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a migration statement runs by default.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Retries after a lock timeout by default.
pub const DEFAULT_LOCK_RETRIES: u32 = 3;
/// Wait before the first retry by default; doubled for each further one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Default schema of the history table.
pub const DEFAULT_HISTORY_SCHEMA: &str = "slipway";
/// Default database inside the embedded server (`--local`).
pub const DEFAULT_LOCAL_DATABASE: &str = "slipway";
/// Default migrations directory, relative to the working directory.
pub const DEFAULT_MIGRATIONS_DIR: &str = "migrations";
/// The optional configuration file, looked for beside the migrations
/// directory unless `--config` names one.
pub const CONFIG_FILE: &str = "slipway.toml";
pub use crate::connect::DEFAULT_CONNECT_TIMEOUT;
pub use crate::secret::DEFAULT_SECRET_TTL;

/// PostgreSQL's largest `lock_timeout` / `statement_timeout`: an `int` of
/// milliseconds, `INT_MAX` (about 24.8 days).
pub const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Longest connect timeout: a server that has not answered in an hour is
/// not going to, and the run should fail rather than hang a pipeline.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3600);

/// How patient a run is with locks and long statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Longest a migration statement may wait for a table lock.
    pub lock_timeout: Duration,
    /// Longest a migration statement may run; zero means no limit.
    pub statement_timeout: Duration,
    /// How many times a batch that hit `lock_timeout` is tried again.
    pub lock_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            lock_retries: DEFAULT_LOCK_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        }
    }
}

impl Settings {
    /// Refuse settings PostgreSQL would reject after slipway connected, or
    /// that would let a run wait without bound — before anything connects,
    /// so the error is a `config` one naming the setting.
    pub fn check(&self) -> Result<()> {
        // Zero means "wait forever" to PostgreSQL: exactly the queueing
        // behind production traffic that lock_timeout exists to prevent.
        if self.lock_timeout.is_zero() {
            return Err(Error::Config(
                "--lock-timeout 0 would let a migration wait for a table lock forever, while every query on that table queues behind it; give a bound such as 5s".into(),
            ));
        }
        for (flag, value, zero) in [
            ("--lock-timeout", self.lock_timeout, ""),
            (
                "--statement-timeout",
                self.statement_timeout,
                ", or 0 for no limit",
            ),
        ] {
            if value > MAX_TIMEOUT {
                return Err(Error::Config(format!(
                    "{flag} of {} ms is more than PostgreSQL accepts ({} ms, about 24.8 days); give a shorter duration{zero}",
                    value.as_millis(),
                    MAX_TIMEOUT.as_millis()
                )));
            }
        }
        Ok(())
    }
}

/// Refuse a connect timeout of zero (libpq's "wait forever") or above
/// [`MAX_CONNECT_TIMEOUT`].
pub fn check_connect_timeout(timeout: Option<Duration>) -> Result<()> {
    match timeout {
        Some(t) if t.is_zero() || t > MAX_CONNECT_TIMEOUT => Err(Error::Config(format!(
            "--connect-timeout of {} ms is out of range; give a duration from 1ms to 1h, such as 10s",
            t.as_millis()
        ))),
        _ => Ok(()),
    }
}

/// `500ms`, `5s`, `15m` (or `15min`), `1h`, or a bare number of seconds;
/// `None` for anything else. Each face words its own error, naming the
/// flag or variable the text came from.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => number,
        "" | "s" => number.saturating_mul(1000),
        "m" | "min" => number.saturating_mul(60_000),
        "h" => number.saturating_mul(3_600_000),
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

/// A duration written in slipway's syntax: parses with [`parse_duration`]
/// and prints in the largest whole unit (`5s`, `15m`), so a default shows
/// in help text as it would be typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<HumanDuration, String> {
        parse_duration(text)
            .map(HumanDuration)
            .ok_or_else(|| format!("'{}' is not a duration like 500ms, 5s, 15m", text.trim()))
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => write!(f, "0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// Where the database is — the one answer both faces give, whatever they
/// read it from.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// A libpq URL or `key=value` string (`--database-url`, `DATABASE_URL`).
    /// It may hold a password, so it never reaches `Debug`.
    Url(String),
    /// An RDS-format secret in Secrets Manager (`--secret-id`,
    /// `DB_SECRET_ARN`), cached for `ttl`.
    Secret { secret_id: String, ttl: Duration },
    /// A database on slipway's own throw-away server (`--local`).
    Local { database: String },
}

impl std::fmt::Debug for DatabaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseSource::Url(_) => f.write_str("Url(***)"),
            DatabaseSource::Secret { secret_id, ttl } => f
                .debug_struct("Secret")
                .field("secret_id", secret_id)
                .field("ttl", ttl)
                .finish(),
            DatabaseSource::Local { database } => {
                f.debug_struct("Local").field("database", database).finish()
            }
        }
    }
}

/// What the command line said about the database, flags and environment
/// already read.
#[derive(Debug, Clone, Default)]
pub struct DatabaseChoice {
    pub url_flag: Option<String>,
    pub secret_flag: Option<String>,
    pub local: Option<String>,
    pub url_env: Option<String>,
    pub secret_env: Option<String>,
}

impl DatabaseSource {
    /// The database a CLI run migrates: flags first, then the environment;
    /// never a guessed database.
    pub fn choose(choice: DatabaseChoice) -> Result<DatabaseSource> {
        let given = [
            choice.url_flag.is_some(),
            choice.secret_flag.is_some(),
            choice.local.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(Error::Config(
                "give only one of --database-url, --secret-id, --local".into(),
            ));
        }
        if let Some(database) = choice.local {
            return Ok(DatabaseSource::Local { database });
        }
        if let Some(url) = choice.url_flag.or(choice.url_env) {
            return Ok(DatabaseSource::Url(url));
        }
        if let Some(secret_id) = choice.secret_flag.or(choice.secret_env) {
            return Ok(DatabaseSource::Secret {
                secret_id,
                ttl: DEFAULT_SECRET_TTL,
            });
        }
        Err(Error::Config(
            "no database given; use one of: --database-url URL (or DATABASE_URL), --secret-id ARN (or DB_SECRET_ARN), --local (slipway's own throw-away PostgreSQL)".into(),
        ))
    }

    /// The server a throw-away database is created on (`snapshot`,
    /// `verify`). Only an explicit `--database-url` moves it off the
    /// embedded server: a `DATABASE_URL` left in the environment may be
    /// production.
    pub fn scratch_server(url_flag: Option<String>) -> DatabaseSource {
        url_flag.map_or_else(
            || DatabaseSource::Local {
                database: "postgres".into(),
            },
            DatabaseSource::Url,
        )
    }
}

/// `slipway.toml`: settings a team commits beside its migrations, below
/// flags and environment variables in precedence. Unknown keys are an
/// error naming them, so a typo never passes as a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Schema of the history table.
    pub history_schema: Option<String>,
    /// `lock_timeout` of migration statements, e.g. `"5s"`.
    #[serde(default, deserialize_with = "duration_text")]
    pub lock_timeout: Option<Duration>,
    /// `statement_timeout` of migration statements; `"0"` for no limit.
    #[serde(default, deserialize_with = "duration_text")]
    pub statement_timeout: Option<Duration>,
    /// Retries after a lock timeout.
    pub lock_retries: Option<u32>,
    /// Wait before the first retry.
    #[serde(default, deserialize_with = "duration_text")]
    pub retry_backoff: Option<Duration>,
    /// Connect timeout.
    #[serde(default, deserialize_with = "duration_text")]
    pub connect_timeout: Option<Duration>,
}

fn duration_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("'{text}' is not a duration like 500ms, 5s, 15m"))
    })
}

impl FileConfig {
    /// Parse the text of a `slipway.toml`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig> {
        toml::from_str(text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message().trim_end())))
    }

    /// Read the configuration file: `explicit` (`--config`) must exist;
    /// otherwise `slipway.toml` beside the migrations directory is read
    /// when present, and its absence means every default.
    pub fn load(explicit: Option<&Path>, migrations_dir: &Path) -> Result<FileConfig> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let beside = migrations_dir
                    .parent()
                    .map_or_else(|| PathBuf::from(CONFIG_FILE), |p| p.join(CONFIG_FILE));
                if !beside.is_file() {
                    return Ok(FileConfig::default());
                }
                beside
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        FileConfig::parse(&text, &path)
    }
}

/// A setting from the first place that has it: flag (or environment, which
/// clap folds into the flag), then the file, then the default.
pub fn layered<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_alike() {
        for (text, ms) in [
            ("500ms", Some(500)),
            ("5s", Some(5000)),
            ("5", Some(5000)),
            (" 15m ", Some(900_000)),
            ("15min", Some(900_000)),
            ("1h", Some(3_600_000)),
            ("0", Some(0)),
            ("5 s", None),
            ("-1s", None),
            ("1d", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(text).map(|d| d.as_millis()), ms, "{text:?}");
        }
        for (ms, text) in [
            (5000, "5s"),
            (900_000, "15m"),
            (2000, "2s"),
            (10_000, "10s"),
            (3_600_000, "1h"),
            (1500, "1500ms"),
            (0, "0s"),
        ] {
            let shown = HumanDuration(Duration::from_millis(ms)).to_string();
            assert_eq!(shown, text);
            assert_eq!(
                shown.parse::<HumanDuration>(),
                Ok(HumanDuration(Duration::from_millis(ms)))
            );
        }
    }

    #[test]
    fn settings_postgresql_would_refuse_are_config_errors() {
        let with = |lock_ms: u64, statement_ms: u64| Settings {
            lock_timeout: Duration::from_millis(lock_ms),
            statement_timeout: Duration::from_millis(statement_ms),
            ..Settings::default()
        };
        let max = i32::MAX as u64;
        for (settings, ok) in [
            (Settings::default(), true),
            (with(1, 0), true),
            (with(max, max), true),
            (with(0, 1000), false),
            (with(max + 1, 1000), false),
            (with(1000, 1000 * 3600 * 1000), false),
        ] {
            let checked = settings.check();
            assert_eq!(checked.is_ok(), ok, "{settings:?}: {checked:?}");
            if let Err(error) = checked {
                assert_eq!(error.code().as_str(), "config");
            }
        }
        for (timeout, ok) in [
            (None, true),
            (Some(Duration::from_millis(1)), true),
            (Some(MAX_CONNECT_TIMEOUT), true),
            (Some(Duration::ZERO), false),
            (Some(MAX_CONNECT_TIMEOUT + Duration::from_millis(1)), false),
        ] {
            assert_eq!(check_connect_timeout(timeout).is_ok(), ok, "{timeout:?}");
        }
    }

    #[test]
    fn the_database_is_chosen_from_flags_then_environment_never_guessed() {
        let url = || Some("postgresql://app@db/tutor".to_owned());
        let arn = || Some("arn:aws:secretsmanager:eu-west-1:1:secret:db".to_owned());
        let cases = [
            (
                DatabaseChoice {
                    url_flag: url(),
                    ..Default::default()
                },
                Ok("Url(***)"),
            ),
            (
                DatabaseChoice {
                    url_env: url(),
                    secret_env: arn(),
                    ..Default::default()
                },
                Ok("Url(***)"),
            ),
            (
                DatabaseChoice {
                    secret_flag: arn(),
                    url_env: url(),
                    ..Default::default()
                },
                Ok("Url(***)"),
            ),
            (
                DatabaseChoice {
                    local: Some("slipway".into()),
                    url_env: url(),
                    ..Default::default()
                },
                Ok("Local { database: \"slipway\" }"),
            ),
            (
                DatabaseChoice {
                    local: Some("slipway".into()),
                    url_flag: url(),
                    ..Default::default()
                },
                Err("give only one of"),
            ),
            (DatabaseChoice::default(), Err("no database given")),
        ];
        for (choice, expected) in cases {
            let chosen = DatabaseSource::choose(choice.clone());
            match (chosen, expected) {
                (Ok(source), Ok(debug)) => assert_eq!(format!("{source:?}"), debug),
                (Err(error), Err(text)) => {
                    assert_eq!(error.code().as_str(), "config");
                    assert!(error.to_string().contains(text), "{error}");
                }
                (other, expected) => panic!("{choice:?}: {other:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            DatabaseSource::scratch_server(None),
            DatabaseSource::Local {
                database: "postgres".into()
            }
        );
    }

    #[test]
    fn the_file_is_strict_and_below_flags() {
        let path = Path::new("slipway.toml");
        let file = FileConfig::parse(
            "history_schema = \"ops\"\nlock_timeout = \"2s\"\nlock_retries = 5\n",
            path,
        )
        .expect("valid");
        assert_eq!(file.history_schema.as_deref(), Some("ops"));
        assert_eq!(file.lock_timeout, Some(Duration::from_secs(2)));
        assert_eq!(layered(None, file.lock_retries, DEFAULT_LOCK_RETRIES), 5);
        assert_eq!(layered(Some(1), file.lock_retries, DEFAULT_LOCK_RETRIES), 1);
        assert_eq!(layered(None, None, DEFAULT_LOCK_RETRIES), 3);
        for (text, expected) in [
            ("lock_timout = \"2s\"", "unknown field `lock_timout`"),
            ("lock_timeout = \"soon\"", "not a duration"),
            ("lock_retries = -1", "slipway.toml"),
        ] {
            let error = FileConfig::parse(text, path).expect_err(text);
            assert_eq!(error.code().as_str(), "config");
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
    }
}
