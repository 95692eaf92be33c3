//! From "where the database is" ([`DatabaseSource`]) to connection options
//! a run can use: a URL parsed once, a Secrets Manager secret fetched per
//! run through its cache (and fetched again once when the database rejects
//! it: rotation), slipway's own embedded server started or reused (with
//! the `local` feature; the Lambda's build has none).
//!
//! Both faces hold a [`Credentials`] and hand [`Credentials::with`] the run;
//! the Lambda keeps it across warm invocations, so the secret cache lives
//! as long as the process.

use std::future::Future;
use std::path::PathBuf;

use aws_config::SdkConfig;

use crate::config::DatabaseSource;
use crate::connect::{ConnectOptions, PasswordSources};
use crate::error::{Error, Result};
use crate::report::Report;
use crate::secret::{aws_config, with_secret, SecretSource};

/// What resolving a source may need besides the source.
#[derive(Default)]
pub struct Resolve<'a> {
    /// Where a URL without a password looks for one (read by the binary:
    /// `PGPASSWORD`, `PGPASSFILE`, `~/.pgpass`).
    pub passwords: PasswordSources,
    /// The AWS settings for a secret; without them, the SDK's default chain.
    pub sdk: Option<&'a SdkConfig>,
    /// The folder of the embedded server (`.slipway/local`).
    pub local_dir: Option<PathBuf>,
}

/// A database source, resolved.
pub enum Credentials {
    /// Fixed options (a URL, the embedded server).
    // Boxed: one per process, and it keeps the enum small.
    Fixed(Box<ConnectOptions>),
    /// A secret, fetched through its cache for each run.
    Secret(SecretSource),
}

impl Credentials {
    /// Resolve `source`: parse the URL, set up the secret's client, or
    /// start (or reuse) the embedded server and its database.
    pub async fn resolve(source: &DatabaseSource, with: Resolve<'_>) -> Result<Credentials> {
        match source {
            DatabaseSource::Url(url) => Ok(Credentials::Fixed(Box::new(
                ConnectOptions::from_url(url)?.with_password_sources(with.passwords),
            ))),
            DatabaseSource::Secret { secret_id, ttl } => {
                let sdk = match with.sdk {
                    Some(sdk) => sdk.clone(),
                    None => aws_config().await,
                };
                Ok(Credentials::Secret(SecretSource::new(
                    &sdk,
                    secret_id.clone(),
                    *ttl,
                )))
            }
            DatabaseSource::Local { database } => local_options(database, with.local_dir).await,
        }
    }

    /// Run `work` with connection options; for a secret, fetched through
    /// the cache, and once more when the database rejected the cached
    /// password. A secret that cannot be fetched is the report of `action`.
    pub async fn with<F, Fut>(&self, action: &str, dry_run: bool, mut work: F) -> Report
    where
        F: FnMut(ConnectOptions) -> Fut,
        Fut: Future<Output = Report>,
    {
        match self {
            Credentials::Fixed(options) => work(options.as_ref().clone()).await,
            Credentials::Secret(source) => {
                with_secret(source, action, dry_run, |config| {
                    work(ConnectOptions::new(config))
                })
                .await
            }
        }
    }
}

/// The embedded server in `dir` (by default `.slipway/local`), started or
/// reused, and its database `database`.
#[cfg(feature = "local")]
async fn local_options(database: &str, dir: Option<PathBuf>) -> Result<Credentials> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(".slipway").join("local"));
    let cluster = start_local(dir).await?;
    cluster.ensure_database(database).await?;
    Ok(Credentials::Fixed(Box::new(ConnectOptions::new(
        cluster.config(database),
    ))))
}

/// Without the `local` feature (the Lambda's build) there is no embedded
/// server to start; the function never asks for one.
#[cfg(not(feature = "local"))]
async fn local_options(_database: &str, _dir: Option<PathBuf>) -> Result<Credentials> {
    Err(Error::Config(
        "this build of slipway has no embedded postgresql (the `local` feature); \
         give a database URL or a secret instead"
            .into(),
    ))
}

/// Start (or reuse) the embedded server in `dir`; blocking work (`initdb`,
/// `pg_ctl`) off the runtime's thread.
#[cfg(feature = "local")]
pub async fn start_local(dir: PathBuf) -> Result<slipway_local::LocalCluster> {
    tokio::task::spawn_blocking(move || slipway_local::LocalCluster::start_or_reuse(&dir))
        .await
        .map_err(|e| Error::Internal(format!("local cluster start panicked: {e}")))?
        .map_err(Error::from)
}

#[cfg(all(test, not(feature = "local")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_the_embedded_server_local_is_a_config_error() {
        let source = DatabaseSource::Local {
            database: "slipway".into(),
        };
        let Err(error) = Credentials::resolve(&source, Resolve::default()).await else {
            panic!("a build without the local feature resolved --local");
        };
        assert_eq!(error.code().as_str(), "config");
        assert!(
            error.to_string().contains("no embedded postgresql"),
            "{error}"
        );
    }
}
