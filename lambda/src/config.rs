//! The function's configuration, read once per cold start from the
//! environment the template sets (README, "The Lambda function").
//!
//! Parsing takes a lookup function instead of reading `std::env` itself, so it
//! is unit-tested with a table; only `main` passes the real environment. Every
//! missing or invalid setting is a `config` error naming the variable, and
//! none is guessed: the database, at least, must be said.

use std::path::PathBuf;
use std::time::Duration;

use slipway::config::{
    DatabaseSource, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HISTORY_SCHEMA, DEFAULT_SECRET_TTL,
};
use slipway::tls::{SslMode, TlsOptions};
use slipway::{Error, Settings};

/// CloudWatch namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_METRICS_NAMESPACE: &str = "Slipway";

/// Everything the function needs to know besides the event.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DB_SECRET_ARN` (with `SECRET_CACHE_TTL`) or `DATABASE_URL`.
    pub database: DatabaseSource,
    /// `SLIPWAY_ENVIRONMENT`: the `Environment` dimension of every metric.
    pub environment: String,
    /// `METRICS_NAMESPACE`.
    pub metrics_namespace: String,
    /// `DB_SSLMODE`, `DB_CA_BUNDLE`.
    pub tls: TlsOptions,
    /// `LOCK_TIMEOUT`, `STATEMENT_TIMEOUT`, `LOCK_RETRIES`, `RETRY_BACKOFF`.
    pub settings: Settings,
    /// `CONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
    /// `HISTORY_SCHEMA`.
    pub history_schema: String,
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda): history rows say `lambda:<name>`.
    pub function_name: String,
}

impl Config {
    /// Read the configuration through `var` (the environment, in `main`).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        // An empty value is as good as none: templates often render unset
        // parameters as "".
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let defaults = Settings::default();
        let duration = |name: &str, default: Duration| -> Result<Duration, Error> {
            var(name).map_or(Ok(default), |text| parse_duration(&text, name))
        };

        let database = match (var("DB_SECRET_ARN"), var("DATABASE_URL")) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "both DB_SECRET_ARN and DATABASE_URL are set; set only one".into(),
                ))
            }
            (Some(secret_id), None) => DatabaseSource::Secret {
                secret_id,
                ttl: duration("SECRET_CACHE_TTL", DEFAULT_SECRET_TTL)?,
            },
            (None, Some(url)) => DatabaseSource::Url(url),
            (None, None) => {
                return Err(Error::Config(
                    "DB_SECRET_ARN is not set; set it to the ARN of the database secret (or DATABASE_URL for a local run)".into(),
                ))
            }
        };
        let environment = var("SLIPWAY_ENVIRONMENT").ok_or_else(|| {
            Error::Config(
                "SLIPWAY_ENVIRONMENT is not set; set it to dev, staging or prod (it is the Environment dimension of the metrics)".into(),
            )
        })?;
        let metrics_namespace =
            var("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned());
        if metrics_namespace.starts_with(':') || metrics_namespace.starts_with("AWS/") {
            return Err(Error::Config(format!(
                "METRICS_NAMESPACE is '{metrics_namespace}'; a custom namespace may not start with ':' or 'AWS/'"
            )));
        }
        let tls = TlsOptions {
            mode: var("DB_SSLMODE")
                .map(|mode| SslMode::parse(&mode, "DB_SSLMODE"))
                .transpose()?,
            ca_bundle: var("DB_CA_BUNDLE").map(PathBuf::from),
        };
        if tls.ca_bundle.is_some()
            && !matches!(tls.mode, Some(SslMode::VerifyFull | SslMode::VerifyCa))
        {
            return Err(Error::Config(
                "DB_CA_BUNDLE is set but DB_SSLMODE is neither verify-full nor verify-ca; the bundle is only used to verify the server, so set DB_SSLMODE=verify-full".into(),
            ));
        }
        let lock_retries = match var("LOCK_RETRIES") {
            None => defaults.lock_retries,
            Some(text) => text.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "LOCK_RETRIES is '{text}'; expected a whole number like 3"
                ))
            })?,
        };
        let settings = Settings {
            lock_timeout: duration("LOCK_TIMEOUT", defaults.lock_timeout)?,
            statement_timeout: duration("STATEMENT_TIMEOUT", defaults.statement_timeout)?,
            lock_retries,
            retry_backoff: duration("RETRY_BACKOFF", defaults.retry_backoff)?,
        };
        Ok(Config {
            database,
            environment,
            metrics_namespace,
            tls,
            settings,
            connect_timeout: duration("CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)?,
            history_schema: var("HISTORY_SCHEMA")
                .unwrap_or_else(|| DEFAULT_HISTORY_SCHEMA.to_owned()),
            function_name: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
        })
    }
}

/// A duration in slipway's syntax ([`slipway::config::parse_duration`]),
/// or a `config` error naming the variable.
pub fn parse_duration(text: &str, name: &str) -> Result<Duration, Error> {
    slipway::config::parse_duration(text).ok_or_else(|| {
        Error::Config(format!(
            "{name} is '{text}'; expected a duration like 500ms, 5s, 15m"
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        (
            "DB_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:db",
        ),
        ("SLIPWAY_ENVIRONMENT", "prod"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<_> = BASE.to_vec();
        vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn defaults() {
        let config = config(&BASE).unwrap();
        assert_eq!(
            config.database,
            DatabaseSource::Secret {
                secret_id: "arn:aws:secretsmanager:eu-west-1:1:secret:db".into(),
                ttl: DEFAULT_SECRET_TTL
            }
        );
        assert_eq!(config.environment, "prod");
        assert_eq!(config.metrics_namespace, "Slipway");
        assert_eq!(config.tls, TlsOptions::default());
        assert_eq!(config.settings.lock_timeout, Duration::from_secs(5));
        assert_eq!(config.history_schema, "slipway");
        assert_eq!(config.function_name, "local");
    }

    #[test]
    fn every_setting_is_read() {
        let config = config(&with(&[
            ("METRICS_NAMESPACE", "Tutor/Migrations"),
            ("DB_SSLMODE", "verify-full"),
            ("DB_CA_BUNDLE", "/opt/rds/global-bundle.pem"),
            ("LOCK_TIMEOUT", "2s"),
            ("STATEMENT_TIMEOUT", "10m"),
            ("LOCK_RETRIES", "5"),
            ("RETRY_BACKOFF", "250ms"),
            ("CONNECT_TIMEOUT", "4"),
            ("SECRET_CACHE_TTL", "1m"),
            ("HISTORY_SCHEMA", "ops"),
            ("AWS_LAMBDA_FUNCTION_NAME", "tutor-migrate"),
        ]))
        .unwrap();
        assert_eq!(config.metrics_namespace, "Tutor/Migrations");
        assert_eq!(config.tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            config.tls.ca_bundle.as_deref(),
            Some(std::path::Path::new("/opt/rds/global-bundle.pem"))
        );
        assert_eq!(config.settings.lock_timeout, Duration::from_secs(2));
        assert_eq!(config.settings.statement_timeout, Duration::from_secs(600));
        assert_eq!(config.settings.lock_retries, 5);
        assert_eq!(config.settings.retry_backoff, Duration::from_millis(250));
        assert_eq!(config.connect_timeout, Duration::from_secs(4));
        assert!(
            matches!(config.database, DatabaseSource::Secret { ttl, .. } if ttl == Duration::from_secs(60))
        );
        assert_eq!(config.history_schema, "ops");
        assert_eq!(config.function_name, "tutor-migrate");
    }

    #[test]
    fn missing_or_invalid_settings_name_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("SLIPWAY_ENVIRONMENT", "dev")], "DB_SECRET_ARN"),
            (vec![BASE[0]], "SLIPWAY_ENVIRONMENT"),
            (with(&[("SLIPWAY_ENVIRONMENT", " ")]), "SLIPWAY_ENVIRONMENT"),
            (
                with(&[("DATABASE_URL", "postgresql://x@h/db")]),
                "DATABASE_URL",
            ),
            (with(&[("DB_SSLMODE", "prefer")]), "DB_SSLMODE"),
            (with(&[("DB_CA_BUNDLE", "/x.pem")]), "DB_CA_BUNDLE"),
            (with(&[("LOCK_TIMEOUT", "5x")]), "LOCK_TIMEOUT"),
            (with(&[("STATEMENT_TIMEOUT", "-1s")]), "STATEMENT_TIMEOUT"),
            (with(&[("LOCK_RETRIES", "three")]), "LOCK_RETRIES"),
            (with(&[("RETRY_BACKOFF", "1d")]), "RETRY_BACKOFF"),
            (with(&[("CONNECT_TIMEOUT", "")]), "none: empty is unset"),
            (with(&[("SECRET_CACHE_TTL", "soon")]), "SECRET_CACHE_TTL"),
            (
                with(&[("METRICS_NAMESPACE", "AWS/RDS")]),
                "METRICS_NAMESPACE",
            ),
        ];
        for (vars, name) in cases {
            match config(&vars) {
                Ok(_) => assert!(name.starts_with("none"), "{vars:?} was accepted"),
                Err(err) => {
                    assert_eq!(err.code().as_str(), "config", "{err}");
                    assert!(err.to_string().contains(name), "{err} should name {name}");
                }
            }
        }
    }

    #[test]
    fn a_database_url_never_reaches_debug() {
        let config = config(&[
            (
                "DATABASE_URL",
                "postgresql://app:hunter2secret@127.0.0.1/tutor",
            ),
            ("SLIPWAY_ENVIRONMENT", "dev"),
        ])
        .unwrap();
        assert!(!format!("{config:?}").contains("hunter2secret"));
    }

    #[test]
    fn durations() {
        let ok = [
            ("500ms", 500),
            ("5s", 5_000),
            ("5", 5_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text, "X").unwrap(),
                Duration::from_millis(millis)
            );
        }
        for text in ["", "s", "5 s", "1.5s", "5d"] {
            assert!(parse_duration(text, "X").is_err(), "{text}");
        }
    }
}
