//! Throw-away databases: created on a server for one job (`slipway
//! snapshot`, `slipway verify`) and dropped when it ends.

use tokio_postgres::Client;

use super::sql::{database_error, quote_identifier};
use crate::error::Result;

/// Create the throw-away database `name` that `slipway snapshot` applies
/// the migrations to.
pub(crate) async fn create_database(client: &Client, name: &str) -> Result<()> {
    client
        .simple_query(&format!("CREATE DATABASE {}", quote_identifier(name)))
        .await
        .map(|_| ())
        .map_err(|e| database_error(&format!("creating the scratch database {name}"), &e))
}

/// Drop the throw-away database `name`; `FORCE` (PostgreSQL 13+) because the
/// connections that migrated it may not have closed on the server yet.
pub(crate) async fn drop_database(client: &Client, name: &str) -> Result<()> {
    client
        .simple_query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        ))
        .await
        .map(|_| ())
        .map_err(|e| database_error(&format!("dropping the scratch database {name}"), &e))
}
