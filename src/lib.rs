//! slipway: safe PostgreSQL schema migrations for CI/CD.
//!
//! The library holds all behaviour; the `slipway` CLI and the Lambda function
//! are thin adapters over [`Migrator`]. See ARCHITECTURE.md for the code map.

pub mod action;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod db;
pub mod drift;
pub mod engine;
pub mod error;
pub mod expected;
#[cfg(feature = "lint")]
pub mod lint;
pub mod migrations;
pub mod plan;
pub mod redact;
pub mod report;
pub mod request;
pub mod runner;
pub mod secret;
pub mod statements;
pub mod tls;
pub mod verify;

pub use connect::ConnectOptions;
pub use engine::{ApplyOptions, Migrator, RollbackOptions, Settings, Target};
pub use error::{Error, ErrorCode, Result};
pub use migrations::MigrationSet;
pub use report::Report;
pub use request::{run, Action, Request, RequestOptions};
