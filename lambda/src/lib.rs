//! `slipway-lambda`: the AWS Lambda face of slipway. A thin adapter — event
//! in, [`slipway::Migrator`] call, [`slipway::Report`] out — plus the two
//! things only a function does: CloudWatch metrics and CodePipeline job
//! results. The `bootstrap` binary (src/main.rs) wires it to
//! `lambda_runtime`.
//!
//! The library under it knows nothing of Lambda (ARCHITECTURE.md); nothing
//! here decides anything about migrations.

pub mod codepipeline;
pub mod config;
pub mod event;
pub mod handler;
pub mod metrics;

pub use handler::{handler, State};

/// The migration set of this build, embedded at compile time: a deployed
/// function carries exactly the migrations of its commit (docs/DESIGN.md,
/// "Migration files"). build.rs makes cargo rebuild when they change.
pub static MIGRATIONS: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../migrations");
