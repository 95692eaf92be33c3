//! Deciding, without a database: pure functions of plain data — history
//! rows, the migration set, snapshots already read — that say what a run
//! does. No `Client`, no `async`, no I/O; each sits beside a table of tests
//! covering its cases.
//!
//! The orchestrator ([`crate::engine`]) reads through the database seams,
//! calls these, then acts on their answer. Kept apart so that every rule —
//! what is pending, what a rollback undoes, where a run is cut into
//! transactions, when drift stops a run — is a unit test rather than a
//! database test.

pub mod drift_policy;
pub mod fill;
pub mod owned;
pub mod plan;
pub mod rollback;
pub mod run;
pub mod segments;
pub mod status;

#[cfg(test)]
mod test_data;
