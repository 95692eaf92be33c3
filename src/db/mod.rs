//! The database seam: every SQL string slipway sends for its own work lives
//! under this folder, so the orchestrator decides and these modules talk to
//! PostgreSQL.
//!
//! [`sql`] is the leaf the others stand on: quoting, hex and the mapping of
//! database errors.

pub mod catalog;
mod history;
pub(crate) mod sql;

pub(crate) use history::{create_database, drop_database, names_identifier, HistoryState};
pub use history::{BatchError, BatchOptions, BatchSteps, History, HistorySetup, OpenBatch};
