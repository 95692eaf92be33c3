//! Throw-away databases: one is created on a server for a single job
//! (`slipway snapshot` builds the expected schema in one, `slipway verify`
//! round-trips every migration in one) and dropped when the job ends,
//! whether it succeeded or not.

use std::future::Future;

use tokio_postgres::Client;

use super::sql::{database_error, quote_identifier};
use crate::error::Result;

/// Run `job` against a database created for it on the server `admin` is
/// connected to, then drop the database whatever the job answered.
///
/// The name, `<prefix>_<pid>_<nanoseconds>`, is handed to `job`: two runs
/// on one server never share a database. The job's error comes first; a
/// failed drop is the answer only when the job succeeded.
pub(crate) async fn with_scratch_database<T, F, Fut>(
    admin: &Client,
    prefix: &str,
    job: F,
) -> Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("{prefix}_{}_{stamp}", std::process::id());
    create_database(admin, &name).await?;
    let outcome = job(name.clone()).await;
    let dropped = drop_database(admin, &name).await;
    let value = outcome?;
    dropped?;
    Ok(value)
}

/// Create the throw-away database `name`.
async fn create_database(client: &Client, name: &str) -> Result<()> {
    client
        .simple_query(&format!("CREATE DATABASE {}", quote_identifier(name)))
        .await
        .map(|_| ())
        .map_err(|e| database_error(&format!("creating the scratch database {name}"), &e))
}

/// Drop the throw-away database `name`; `FORCE` (PostgreSQL 13+) because the
/// connections that used it may not have closed on the server yet.
async fn drop_database(client: &Client, name: &str) -> Result<()> {
    client
        .simple_query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        ))
        .await
        .map(|_| ())
        .map_err(|e| database_error(&format!("dropping the scratch database {name}"), &e))
}
