//! slipway: safe PostgreSQL schema migrations for CI/CD.
//!
//! The library holds all behaviour; the `slipway` CLI and the Lambda function
//! are thin adapters: each turns its input into a [`Request`] and hands it
//! to a [`runner::Runner`], which resolves the database and calls [`run`],
//! the one dispatch of every [`Action`]. See ARCHITECTURE.md for the code
//! map and docs/DESIGN.md for the contract.
//!
//! The public modules are what the binaries, the tests and the benchmarks
//! use; everything else is private to the crate.

mod action;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod db;
pub mod drift;
pub mod engine;
pub mod error;
mod expected;
#[cfg(feature = "lint")]
pub mod lint;
pub mod migrations;
pub mod redact;
pub mod report;
pub mod request;
pub mod runner;
pub mod secret;
mod statements;
pub mod tls;
pub mod verify;

mod decide;
// The history seam reads its rows into the plan's `HistoryRow`.
pub(crate) use decide::plan;

pub use connect::ConnectOptions;
pub use engine::{ApplyOptions, Database, Migrator, RollbackOptions, Settings};
pub use error::{Error, ErrorCode, Result};
pub use migrations::MigrationSet;
pub use report::Report;
pub use request::{run, Action, Request, RequestOptions};
