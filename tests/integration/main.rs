//! The integration tests, one binary: every suite here shares the one
//! PostgreSQL server `common` starts on first use, so a `cargo test` run
//! initialises and starts it once instead of once per suite. Each test still
//! gets a fresh database of its own on it, so tests run in parallel as
//! before. Tests that need servers of their own (`local_cluster`, `tls`,
//! which turns TLS on with `ALTER SYSTEM`, and a restarted one in `drift`)
//! start them in temp dirs and leave the shared one alone. Nothing here
//! changes what the process shares: environment variables and working
//! directories are set on child commands only, and signals go to children.
//!
//! Two suites stay binaries of their own, with a server of their own,
//! because they act on the whole server: `tests/restart.rs` kills a backend
//! so that the postmaster ends every session and runs crash recovery, which
//! would fail every test running beside it here; `tests/standby.rs` forces
//! a checkpoint of the whole server and copies every database on it into a
//! replica, which here would be everyone's databases while they change.
//! `tests/tidy.rs` reads the repository, not a database, and needs none.

#[path = "../common/mod.rs"]
mod common;

mod apply;
mod cli;
mod cli_output;
mod cli_secret;
mod concurrency;
mod config_file;
mod connect_url;
mod drift;
mod failures;
mod faults;
// `slipway lint` exists only with the feature, as the binary does.
#[cfg(feature = "lint")]
mod lint;
mod local_cluster;
mod migration_files;
mod no_transaction;
mod rollback;
mod tls;
mod verify;
