//! Getting a connection: parsing the database URL, connecting with a bounded
//! timeout, and turning what went wrong into the report's error codes
//! (`config`, `connection`, `auth`, `tls`).
//!
//! Nothing here ever formats the URL or the password into a message: errors
//! describe the target as `host:port/database` only.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};
use crate::tls::{self, Attempt, TlsOptions};

/// Default bound on establishing a connection (DESIGN.md: 10 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    pub config: Config,
    pub connect_timeout: Duration,
    /// `sslmode` and CA bundle ([`crate::tls`]).
    pub tls: TlsOptions,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("target", &describe(&self.config))
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for `config` with the default timeout.
    pub fn new(config: Config) -> ConnectOptions {
        ConnectOptions {
            config,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: TlsOptions::default(),
        }
    }

    /// Parse a `postgresql://` URL or a `key=value` connection string.
    pub fn from_url(url: &str) -> Result<ConnectOptions> {
        Ok(ConnectOptions::new(parse_database_url(url)?))
    }
}

/// Parse a database URL; a malformed one is a `config` error that never
/// repeats the URL (it may hold a password).
pub fn parse_database_url(url: &str) -> Result<Config> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Error::Config("the database URL is empty".into()));
    }
    let config = Config::from_str(url).map_err(|e| {
        Error::Config(format!(
            "the database URL is malformed ({}); expected postgresql://user:password@host:port/database",
            scrub(&e.to_string(), url)
        ))
    })?;
    if config.get_hosts().is_empty() {
        return Err(Error::Config(
            "the database URL names no host; expected postgresql://user:password@host:port/database"
                .into(),
        ));
    }
    Ok(config)
}

/// `host:port/database as user`, for messages; never the password.
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    match config.get_user() {
        Some(user) => format!("{host}:{port}/{db} as {user}"),
        None => format!("{host}:{port}/{db}"),
    }
}

/// Connect within the timeout and drive the connection on the runtime.
pub async fn connect(options: &ConnectOptions) -> Result<Client> {
    let mut config = options.config.clone();
    if config.get_application_name().is_none() {
        // Makes a waiting or long-running slipway easy to spot in pg_stat_activity.
        config.application_name("slipway");
    }
    // Read committed for every transaction of this session, whatever the
    // database's default: at repeatable read or serializable, the message
    // that takes the advisory lock and reads the history would read it
    // with a snapshot taken before the lock was granted, and a run that
    // waited for another would not see what that run committed — it would
    // run the same migrations again. A start-up option costs no round trip;
    // the user's own `options` are kept, ours appended (the last -c wins).
    config.options(with_session_defaults(config.get_options()));
    config.connect_timeout(options.connect_timeout);
    let target = describe(&config);
    match tls::connect(&mut config, &options.tls, options.connect_timeout).await? {
        Attempt::Connected(client) => Ok(client),
        Attempt::TimedOut => Err(Error::Connection(format!(
            "{target}: no answer within {}s; check the host, port, security groups and that the server is running",
            options.connect_timeout.as_secs_f32()
        ))),
        Attempt::Failed(e) => Err(classify_connect_error(&e, &target, config.get_password())),
    }
}

/// The start-up `options` slipway sends: `user`'s, then its own session
/// defaults (a space inside a value is escaped with a backslash, as the
/// server's option parser expects).
pub fn with_session_defaults(user: Option<&str>) -> String {
    const OURS: &str = r"-c default_transaction_isolation=read\ committed";
    match user.map(str::trim).filter(|o| !o.is_empty()) {
        Some(theirs) => format!("{theirs} {OURS}"),
        None => OURS.to_owned(),
    }
}

/// Map a failed connection attempt to `auth`, `tls` or `connection`.
pub fn classify_connect_error(
    error: &tokio_postgres::Error,
    target: &str,
    password: Option<&[u8]>,
) -> Error {
    // tokio-postgres's Display names only the kind ("error performing TLS
    // handshake"); the why (e.g. "certificate verify failed") is in the sources.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // native-tls repeats its inner OpenSSL error in its own text.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let text = match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) => scrub(&text, p),
        None => text,
    };
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return match code {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => Error::Auth(format!(
                "{target}: {} (SQLSTATE {code}); check the user name and password (was the secret rotated?)",
                db.message()
            )),
            _ => Error::Connection(format!("{target}: {} (SQLSTATE {code})", db.message())),
        };
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("tls") || lower.contains("ssl") {
        return Error::Tls(format!(
            "{target}: {text}; check the sslmode (DB_SSLMODE, --sslmode) and, for verify-full, the CA bundle (DB_CA_BUNDLE, --ca-bundle)"
        ));
    }
    if lower.contains("password missing") {
        return Error::Auth(format!(
            "{target}: the server asks for a password and none was given"
        ));
    }
    Error::Connection(format!("{target}: {text}"))
}

/// Remove every occurrence of `secret` from `text`.
fn scrub(text: &str, secret: &str) -> String {
    if secret.len() < 2 {
        return text.to_owned();
    }
    text.replace(secret, "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_defaults_keep_the_users_options() {
        let ours = r"-c default_transaction_isolation=read\ committed";
        assert_eq!(with_session_defaults(None), ours);
        assert_eq!(with_session_defaults(Some("  ")), ours);
        assert_eq!(
            with_session_defaults(Some("-c search_path=app")),
            format!("-c search_path=app {ours}")
        );
    }

    #[test]
    fn malformed_urls_are_config_errors_without_the_password() {
        for url in [
            "postgres://user:hunter2secret@host:notaport/db",
            "postgres://user:hunter2secret@host:99999/db",
            "postgres://user:hunter2secret@host/db?sslmode=bogus",
            "",
        ] {
            let err = parse_database_url(url).unwrap_err();
            assert_eq!(err.code().as_str(), "config", "{url}: {err}");
            assert!(!err.to_string().contains("hunter2secret"), "{err}");
        }
    }

    #[test]
    fn describe_never_shows_the_password() {
        let config =
            parse_database_url("postgres://app:hunter2secret@db.example:6432/tutor").unwrap();
        assert_eq!(describe(&config), "db.example:6432/tutor as app");
        let options = ConnectOptions::new(config);
        assert!(!format!("{options:?}").contains("hunter2secret"));
    }
}
