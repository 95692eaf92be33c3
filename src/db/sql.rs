//! The leaf every module that talks to PostgreSQL stands on: quoting
//! identifiers and literals, lower-case hex, and turning a
//! `tokio_postgres` error into the crate's [`Error`] (or a [`BatchError`],
//! when a lock timeout may be retried).
//!
//! It imports nothing of the crate but [`crate::error`], so the catalog
//! seam and the history seam can both use it without importing each other.

use tokio_postgres::error::DbError;

use crate::error::Error;

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` as a literal that means the same under any
/// `standard_conforming_strings` setting.
pub(crate) fn quote_literal(text: &str) -> String {
    if text.contains('\\') {
        format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// `bytes` as lower-case hex, two digits a byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A database error from slipway's own statements, with its context.
pub(crate) fn database_error(context: &str, error: &tokio_postgres::Error) -> Error {
    match error.as_db_error() {
        Some(db) if is_session_lost(db) => Error::Connection(format!(
            "the server ended the session while {context}: {} (SQLSTATE {}); rerun when the server is back",
            db.message(),
            db.code().code()
        )),
        Some(db) => Error::Database {
            context: context.to_owned(),
            message: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None if error.is_closed() => {
            Error::Connection(format!("the connection closed while {context}"))
        }
        None => Error::Connection(format!("{context}: {error}")),
    }
}

/// Why a batch did not commit — or a lock wait or a migration run alone
/// did not go through: the one distinction the caller's retry needs.
#[derive(Debug)]
pub enum BatchError {
    /// A statement waited longer than `lock_timeout`; safe to retry.
    LockTimeout(String),
    /// Any other failure; the transaction was rolled back.
    Failed(Error),
}

/// Whether the server ended the session rather than refusing a statement:
/// a terminated backend (`pg_terminate_backend`, 57P01), a shutdown or
/// crash restart (57P01/57P02), a dropped database, any connection
/// exception (class 08) or any FATAL/PANIC. Such a failure is about the
/// connection, never about the migration that happened to be running.
pub(crate) fn is_session_lost(db: &DbError) -> bool {
    let code = db.code().code();
    code.starts_with("57P") || code.starts_with("08") || matches!(db.severity(), "FATAL" | "PANIC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'"), r"E'a\\b'''");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
    }
}
