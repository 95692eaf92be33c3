//! The database seam: every SQL string slipway sends for its own work lives
//! in this folder — the orchestrator decides, these modules talk to
//! PostgreSQL ("the orchestrator never builds SQL").
//!
//! - `sql`: the leaf the others stand on — quoting, hex, database errors.
//! - `lock`: the advisory locks that let one run at a time migrate.
//! - `history`: the history table and the read that decides what to run.
//! - `batch`: one transaction of steps, its guards, its commit.
//! - `no_transaction`: a `-- slipway:no-transaction` migration, run alone.
//! - [`catalog`]: the managed schemas as a snapshot, read in a fixed number
//!   of queries.
//! - `scratch`: throw-away databases.
//!
//! Imports run one way, so no two of these modules import each other:
//! `sql` ← `lock` ← `history` ← `batch` ← `no_transaction`, with `catalog`
//! (which needs only `sql`) under `history`; none of them imports the
//! orchestrator. Outside the folder they use only the migration set, the
//! statement splitter, the plan's history rows and the crate's errors.

mod batch;
pub mod catalog;
mod history;
mod lock;
mod no_transaction;
mod scratch;
pub(crate) mod sql;

pub use batch::{BatchOptions, BatchSteps, OpenBatch};
pub use history::{History, HistorySetup};
pub use history::{HistoryKind, HistoryRow};
pub(crate) use history::{HistoryState, RecordedSnapshot};
pub(crate) use no_transaction::names_identifier;
pub(crate) use scratch::with_scratch_database;
pub use sql::BatchError;
