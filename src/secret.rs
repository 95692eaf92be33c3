//! Database credentials from AWS Secrets Manager, for the Lambda function and
//! the CLI's `--secret-id` alike: loading the AWS settings, fetching the
//! secret, parsing the RDS JSON, caching it across warm invocations, and
//! fetching it again once when the database rejects the cached password.
//!
//! The secret is the RDS format (`engine, host, port, username, password,
//! dbname`; AWS Secrets Manager docs, "JSON structure of database
//! credentials secrets"). Nothing here ever formats a value of the secret into
//! an error, a log line or a `Debug` string: errors name the secret and the
//! *field*, and the JSON is never handed to a parser whose errors quote input
//! (serde's "invalid type: string \"...\"").
//!
//! Why the re-fetch on `auth`: Secrets Manager rotation changes the password in
//! the database and then in the secret. A warm Lambda still holds the old one
//! until its cache expires; without one re-fetch, the first deploy after a
//! rotation would fail for no reason.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde_json::Value;
use tokio_postgres::Config;

use crate::error::{Error, ErrorCode, Result};
use crate::report::Report;

/// How long a fetched secret is used before it is fetched again.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(15 * 60);

/// Bounds on every AWS call, so a function in a VPC without a route to the
/// AWS endpoints fails with a clear `secret` error instead of hanging until
/// the Lambda timeout. Three attempts (the SDK's standard retry) fit in the
/// operation bound.
const AWS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The AWS settings every client of slipway uses: the SDK's default chain for
/// region and credentials (it reads `AWS_*` variables and `~/.aws`, as the AWS
/// CLI does; `AWS_ENDPOINT_URL` points it at an emulator), bounded timeouts,
/// and one HTTPS client.
pub async fn aws_config() -> SdkConfig {
    aws_config_loader().load().await
}

/// [`aws_config()`] before loading, for callers (tests) that set the region,
/// credentials or endpoint themselves.
///
/// The HTTP client is built here because the SDK crates are compiled without
/// their default TLS features, which would each bring a TLS stack (aws-lc, a
/// legacy hyper/rustls); rustls with *ring* is the smallest that does the job.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(AWS_CONNECT_TIMEOUT)
                .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
                .operation_timeout(AWS_OPERATION_TIMEOUT)
                .build(),
        )
}

/// The database credentials of an RDS-format secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DbSecret {
    pub host: String,
    pub port: u16,
    pub username: String,
    password: String,
    pub dbname: String,
}

// Hand-written: the password must never reach a log line through `{:?}`.
impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"***")
            .field("dbname", &self.dbname)
            .finish()
    }
}

const RDS_FORMAT: &str = "the secret must be RDS JSON: {\"engine\":\"postgres\",\"host\":...,\"port\":5432,\"username\":...,\"password\":...,\"dbname\":...}";

impl DbSecret {
    /// Parse the secret string of `secret_id`. `port` may be a number or a
    /// string of digits (both are seen in hand-made secrets) and defaults to
    /// 5432; `engine`, when present, must be PostgreSQL. Every other field is
    /// required: slipway never guesses which database to migrate.
    pub fn parse(text: &str, secret_id: &str) -> Result<DbSecret> {
        let field_error =
            |what: String| Error::Secret(format!("secret {secret_id}: {what}; {RDS_FORMAT}"));
        // Only the position of a syntax error is kept: serde_json's messages
        // do not quote input today, but nothing guarantees that they never will.
        let value: Value = serde_json::from_str(text).map_err(|e| {
            field_error(format!(
                "is not JSON (syntax error at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(object) = value else {
            return Err(field_error("is JSON but not an object".into()));
        };
        let string = |name: &str| -> Result<String> {
            match object.get(name) {
                None | Some(Value::Null) => Err(field_error(format!("field '{name}' is missing"))),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    Err(field_error(format!("field '{name}' is empty")))
                }
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(field_error(format!("field '{name}' is not a string"))),
            }
        };
        if object.contains_key("engine") {
            let engine = string("engine")?;
            // Values RDS and Aurora write into generated secrets.
            if !matches!(
                engine.as_str(),
                "postgres" | "postgresql" | "aurora-postgresql"
            ) {
                return Err(field_error(
                    "field 'engine' is not postgres; slipway migrates PostgreSQL only".into(),
                ));
            }
        }
        let port = match object.get("port") {
            None | Some(Value::Null) => Some(5432),
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
            Some(_) => None,
        }
        .filter(|p| *p != 0)
        .ok_or_else(|| field_error("field 'port' is not a port number (1 to 65535)".into()))?;
        Ok(DbSecret {
            host: string("host")?,
            port,
            username: string("username")?,
            password: string("password")?,
            dbname: string("dbname")?,
        })
    }

    /// The password, for code that must hand it on (never to print).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Connection settings for this secret (TLS is decided by the caller's
    /// [`crate::tls::TlsOptions`]).
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.username)
            .password(self.password.as_bytes())
            .dbname(&self.dbname);
        config
    }
}

struct Cached {
    secret: Arc<DbSecret>,
    fetched: Instant,
}

/// One secret in Secrets Manager, with a client and a cache that live as
/// long as the process (across warm Lambda invocations).
pub struct SecretSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    cache: Mutex<Option<Cached>>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("secret_id", &self.secret_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretSource {
    /// A source for `secret_id` (name or ARN); a fetched value is reused for `ttl`.
    pub fn new(sdk: &SdkConfig, secret_id: impl Into<String>, ttl: Duration) -> SecretSource {
        SecretSource {
            client: aws_sdk_secretsmanager::Client::new(sdk),
            secret_id: secret_id.into(),
            ttl,
            cache: Mutex::new(None),
        }
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The cached secret while it is younger than the TTL, else a fresh one.
    pub async fn get(&self) -> Result<Arc<DbSecret>> {
        if let Some(cached) = self.lock_cache().as_ref() {
            if cached.fetched.elapsed() < self.ttl {
                return Ok(Arc::clone(&cached.secret));
            }
        }
        self.refresh().await
    }

    /// Fetch the secret now and cache it.
    pub async fn refresh(&self) -> Result<Arc<DbSecret>> {
        let secret = Arc::new(self.fetch().await?);
        *self.lock_cache() = Some(Cached {
            secret: Arc::clone(&secret),
            fetched: Instant::now(),
        });
        Ok(secret)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        // A panic while holding the lock leaves nothing half-written: the
        // slot is replaced whole, so the poisoned value is still good.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch(&self) -> Result<DbSecret> {
        let id = &self.secret_id;
        tracing::debug!(secret_id = %id, "fetching the database secret");
        let output = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                Error::Secret(format!(
                    "cannot read secret {id} from Secrets Manager: {}; check DB_SECRET_ARN, the role's secretsmanager:GetSecretValue permission and the network route to Secrets Manager",
                    DisplayErrorContext(&e)
                ))
            })?;
        let Some(text) = output.secret_string() else {
            return Err(Error::Secret(format!(
                "secret {id} holds binary data; {RDS_FORMAT}"
            )));
        };
        DbSecret::parse(text, id)
    }
}

/// Run `work` against the database of `source`'s secret and return its
/// report. When the database rejects the credentials (`error.code` `auth`),
/// fetch the secret once more and, if it changed (rotation), run `work` again
/// with the new one. An `auth` failure happens while connecting, before
/// anything ran, so a second run is safe.
pub async fn with_secret<F, Fut>(
    source: &SecretSource,
    action: &str,
    dry_run: bool,
    mut work: F,
) -> Report
where
    F: FnMut(Config) -> Fut,
    Fut: Future<Output = Report>,
{
    let secret = match source.get().await {
        Ok(secret) => secret,
        Err(error) => return Report::failure(action, dry_run, &error),
    };
    let report = work(secret.config()).await;
    let auth_failed = report
        .error
        .as_ref()
        .is_some_and(|e| e.code == ErrorCode::Auth);
    if !auth_failed {
        return report;
    }
    tracing::warn!(
        secret_id = source.secret_id(),
        "the database rejected the credentials; fetching the secret again in case it was rotated"
    );
    match source.refresh().await {
        Ok(fresh) if fresh != secret => {
            tracing::info!("the secret changed; retrying with the new credentials");
            work(fresh.config()).await
        }
        Ok(_) => report,
        Err(error) => {
            tracing::warn!(code = error.code().as_str(), "{error}");
            report
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "hunter2-s3cr3t-value";

    fn rds(fields: &[(&str, Value)]) -> String {
        let mut object = serde_json::json!({
            "engine": "postgres",
            "host": "db.example.internal",
            "port": 5432,
            "username": "app",
            "password": PASSWORD,
            "dbname": "tutor",
        });
        for (name, value) in fields {
            if value.is_null() {
                object.as_object_mut().unwrap().remove(*name);
            } else {
                object[*name] = value.clone();
            }
        }
        object.to_string()
    }

    #[test]
    fn parses_the_rds_format() {
        let secret = DbSecret::parse(&rds(&[]), "arn:x").unwrap();
        assert_eq!(secret.host, "db.example.internal");
        assert_eq!(secret.port, 5432);
        assert_eq!(secret.username, "app");
        assert_eq!(secret.password(), PASSWORD);
        assert_eq!(secret.dbname, "tutor");
        let config = secret.config();
        assert_eq!(config.get_password(), Some(PASSWORD.as_bytes()));
        assert_eq!(config.get_dbname(), Some("tutor"));
        assert_eq!(config.get_ports(), [5432]);
    }

    #[test]
    fn port_may_be_a_string_or_absent_and_engine_may_be_absent() {
        let s = DbSecret::parse(&rds(&[("port", "6432".into())]), "x").unwrap();
        assert_eq!(s.port, 6432);
        let s = DbSecret::parse(&rds(&[("port", Value::Null)]), "x").unwrap();
        assert_eq!(s.port, 5432);
        let s = DbSecret::parse(&rds(&[("engine", Value::Null)]), "x").unwrap();
        assert_eq!(s.host, "db.example.internal");
        let s = DbSecret::parse(&rds(&[("engine", "aurora-postgresql".into())]), "x").unwrap();
        assert_eq!(s.username, "app");
    }

    #[test]
    fn bad_secrets_are_secret_errors_naming_the_field_never_a_value() {
        let cases: Vec<(String, &str)> = vec![
            (rds(&[("host", Value::Null)]), "'host' is missing"),
            (rds(&[("username", Value::Null)]), "'username' is missing"),
            (rds(&[("password", Value::Null)]), "'password' is missing"),
            (rds(&[("dbname", Value::Null)]), "'dbname' is missing"),
            (rds(&[("host", "".into())]), "'host' is empty"),
            (
                rds(&[("password", 1234.into())]),
                "'password' is not a string",
            ),
            (
                rds(&[("port", PASSWORD.into())]),
                "'port' is not a port number",
            ),
            (
                rds(&[("port", 70000.into())]),
                "'port' is not a port number",
            ),
            (rds(&[("port", (-1).into())]), "'port' is not a port number"),
            (
                rds(&[("engine", "mysql".into())]),
                "'engine' is not postgres",
            ),
            (
                rds(&[("host", serde_json::json!([PASSWORD]))]),
                "'host' is not a string",
            ),
            (format!("password={PASSWORD}"), "is not JSON"),
            (format!("{{\"password\":\"{PASSWORD}\""), "is not JSON"),
            (format!("[\"{PASSWORD}\"]"), "not an object"),
            (String::new(), "is not JSON"),
        ];
        for (text, want) in cases {
            let err = DbSecret::parse(&text, "arn:aws:secretsmanager:eu-west-1:1:secret:db")
                .expect_err(&text);
            assert_eq!(err.code().as_str(), "secret", "{err}");
            let message = err.to_string();
            assert!(message.contains(want), "{message} should say {want}");
            assert!(message.contains("arn:aws:secretsmanager"), "{message}");
            assert!(!message.contains(PASSWORD), "leaked: {message}");
            assert!(!format!("{err:?}").contains(PASSWORD), "leaked: {err:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let secret = DbSecret::parse(&rds(&[]), "x").unwrap();
        let text = format!("{secret:?} {:#?}", secret);
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(text.contains("db.example.internal"), "{text}");
    }
}
