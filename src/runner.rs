//! What a face holds to answer requests: the migration set, the resolved
//! credentials and how to reach and record on the database — and the one
//! way a request becomes a run. The CLI builds one per process, the Lambda
//! one per cold start; both call [`Runner::run`], so a request means the
//! same thing from either.

use std::time::Duration;

use crate::config::Settings;
use crate::connect::ConnectOptions;
use crate::credentials::Credentials;
use crate::engine::{Database, Migrator};
use crate::migrations::MigrationSet;
use crate::report::Report;
use crate::request::{self, DatabaseRole, Request};
use crate::tls::TlsOptions;

/// A connect timeout and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectTimeout {
    /// Said on the command line: it beats a URL's `connect_timeout`.
    Given(Duration),
    /// From configuration: a URL's `connect_timeout` wins while this is
    /// the default.
    Configured(Duration),
}

impl ConnectTimeout {
    /// The timeout, wherever it came from.
    pub fn duration(self) -> Duration {
        match self {
            ConnectTimeout::Given(timeout) | ConnectTimeout::Configured(timeout) => timeout,
        }
    }
}

/// Everything but the request that a run needs.
pub struct Runner {
    pub migrations: MigrationSet,
    pub credentials: Credentials,
    pub settings: Settings,
    /// Schema of the history table.
    pub history_schema: String,
    /// Compare the live schema with the recorded and expected snapshots
    /// (on the migrated database; a throw-away one always is).
    pub check_drift: bool,
    /// Who runs the migrations, stored with each history row:
    /// `cli:<host>`, `lambda:<function>`.
    pub run_by: String,
    /// TLS settings that win over the connection string's.
    pub tls: TlsOptions,
    pub connect_timeout: Option<ConnectTimeout>,
}

impl Runner {
    /// Answer `request`: connection options from the credentials (for a
    /// secret, fetched again once on an authentication failure), then
    /// [`request::run`].
    pub async fn run(&self, request: &Request) -> Report {
        let action = request.action().as_str();
        self.credentials
            .with(action, request.options().dry_run, |connect| {
                let migrator = self.migrator(connect, request.action().database());
                async move { request::run(&migrator, request).await }
            })
            .await
    }

    fn migrator(&self, mut connect: ConnectOptions, role: DatabaseRole) -> Migrator {
        match self.connect_timeout {
            Some(ConnectTimeout::Given(timeout)) => {
                connect.connect_timeout = timeout;
                connect.url_connect_timeout = None;
            }
            Some(ConnectTimeout::Configured(timeout)) => connect.connect_timeout = timeout,
            None => {}
        }
        connect.tls = self.tls.clone();
        let mut database = Database::new(connect, self.run_by.clone());
        database.history_schema = self.history_schema.clone();
        if role == DatabaseRole::Migrated {
            database.check_drift = self.check_drift;
        }
        Migrator::new(self.migrations.clone(), database, self.settings.clone())
    }
}
