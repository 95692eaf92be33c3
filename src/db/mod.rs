//! The database seam: every SQL string slipway sends for its own work lives
//! under this folder, so the orchestrator decides and these modules talk to
//! PostgreSQL.
//!
//! [`sql`] is the leaf the others stand on: quoting, hex and the mapping of
//! database errors.

pub(crate) mod sql;
