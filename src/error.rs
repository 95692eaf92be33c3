//! The one error type of the library, and its mapping to the report's fixed
//! `error.code` list (docs/DESIGN.md, "Interfaces").
//!
//! Every variant maps to exactly one code; `tests::every_variant_has_its_code`
//! pins that mapping so the JSON contract cannot drift silently. Messages are
//! lower-case and say what to do next. None of them ever carries a password:
//! connection errors are built from the server's or the socket's words, never
//! from the URL.

use std::path::PathBuf;

use serde::Serialize;

/// The fixed list of `error.code` values a report may carry, serialised as
/// [`ErrorCode::as_str`] (`tests::every_variant_has_its_code` holds the two
/// together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Config,
    Secret,
    Connection,
    Auth,
    Tls,
    LockTimeout,
    MigrationFailed,
    ChecksumMismatch,
    UnknownVersion,
    DuplicateVersion,
    Drift,
    Internal,
}

impl ErrorCode {
    /// The code as it appears in the report JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Config => "config",
            ErrorCode::Secret => "secret",
            ErrorCode::Connection => "connection",
            ErrorCode::Auth => "auth",
            ErrorCode::Tls => "tls",
            ErrorCode::LockTimeout => "lock_timeout",
            ErrorCode::MigrationFailed => "migration_failed",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::UnknownVersion => "unknown_version",
            ErrorCode::DuplicateVersion => "duplicate_version",
            ErrorCode::Drift => "drift",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and why a migration failed, as PostgreSQL told us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationFailure {
    /// Script path relative to the migrations directory, e.g. `0003_add_index.sql`.
    pub file: String,
    /// Version of the failing migration (`None` for repeatable scripts).
    pub version: Option<String>,
    /// 1-based line in the file where the failing statement starts, when known.
    pub line: Option<usize>,
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// INVALID indexes the failure left (a `CREATE INDEX CONCURRENTLY` of a
    /// no-transaction migration); the next apply drops them first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_indexes: Vec<String>,
}

impl MigrationFailure {
    /// What the message adds about INVALID indexes left behind.
    fn leftovers(&self) -> String {
        if self.invalid_indexes.is_empty() {
            String::new()
        } else {
            format!(
                "; it left INVALID index(es) {}, which the next apply drops before running {} again — fix the cause first",
                self.invalid_indexes.join(", "),
                self.file
            )
        }
    }
}

/// Everything that can go wrong in slipway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),

    #[error("{0}")]
    Config(String),

    #[error("migration file {file}: {reason}")]
    InvalidMigrationFile { file: PathBuf, reason: String },

    #[error("cannot read migrations from {path}: {source}")]
    ReadMigrations {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    PostgresNotInstalled(String),

    #[error("{0}")]
    Secret(String),

    #[error("cannot connect to the database: {0}")]
    Connection(String),

    #[error("authentication failed: {0}")]
    Auth(String),

    #[error("tls: {0}")]
    Tls(String),

    #[error("local postgresql: {0}")]
    LocalCluster(String),

    #[error("gave up waiting for a lock after {attempts} attempt(s) of lock_timeout each: {message}; nothing was changed — rerun when it is free, or raise --lock-timeout / --lock-retries")]
    LockTimeout { attempts: u32, message: String },

    /// The server accepts no writes: a hot standby, or a database whose
    /// `default_transaction_read_only` is on.
    #[error("the server is read-only ({0}); nothing was changed — point slipway at the primary")]
    ReadOnly(String),

    #[error("migration {} failed: {}{}", .0.file, .0.message, .0.leftovers())]
    MigrationFailed(Box<MigrationFailure>),

    #[error("{} applied migration(s) were modified after they ran: {}; restore the files or write a new migration", .0.len(), .0.join(", "))]
    ChecksumMismatch(Vec<String>),

    #[error("the database has applied version(s) {} that are not in the migration files; deploy the matching files or check that you point at the right database", .0.join(", "))]
    UnknownVersion(Vec<String>),

    #[error("duplicate migration version {version}: {first} and {second}; renumber one of them")]
    DuplicateVersion {
        version: String,
        first: String,
        second: String,
    },

    /// The schema differs from the reference snapshot; the report's `drift`
    /// lists every item.
    #[error("{context}: {count} difference(s) from {reference} ({summary}); {next}")]
    Drift {
        /// What was compared: `the snapshot recorded by the last apply`, ...
        reference: String,
        /// When it was found, e.g. `the schema after the migrations`.
        context: String,
        count: usize,
        /// The first few items, `kind object`.
        summary: String,
        /// What happened and what to do next.
        next: String,
    },

    /// Rollback scripts the rollback needs and the files lack.
    #[error("cannot roll back: no rollback script for {}; add {}, or roll back to a later version", .versions.join(", "), .files.join(", "))]
    RollbackMissing {
        versions: Vec<String>,
        /// The file names the scripts would have.
        files: Vec<String>,
    },

    #[error("database error while {context}: {message}")]
    Database { context: String, message: String },

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The report `error.code` this error is reported under.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::Config(_)
            | Error::InvalidMigrationFile { .. }
            | Error::ReadMigrations { .. }
            | Error::PostgresNotInstalled(_)
            | Error::RollbackMissing { .. } => ErrorCode::Config,
            Error::Secret(_) => ErrorCode::Secret,
            Error::Connection(_) | Error::LocalCluster(_) | Error::ReadOnly(_) => {
                ErrorCode::Connection
            }
            Error::Auth(_) => ErrorCode::Auth,
            Error::Tls(_) => ErrorCode::Tls,
            Error::LockTimeout { .. } => ErrorCode::LockTimeout,
            Error::MigrationFailed(_) => ErrorCode::MigrationFailed,
            Error::ChecksumMismatch(_) => ErrorCode::ChecksumMismatch,
            Error::UnknownVersion(_) => ErrorCode::UnknownVersion,
            Error::DuplicateVersion { .. } => ErrorCode::DuplicateVersion,
            Error::Drift { .. } => ErrorCode::Drift,
            Error::Database { .. } | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Structured detail for the report's `error.detail`, when there is any.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            Error::MigrationFailed(failure) => {
                serde_json::to_value(failure).unwrap_or(serde_json::Value::Null)
            }
            Error::InvalidMigrationFile { file, .. } => {
                serde_json::json!({ "file": file.display().to_string() })
            }
            Error::DuplicateVersion {
                version,
                first,
                second,
            } => serde_json::json!({ "version": version, "files": [first, second] }),
            Error::ChecksumMismatch(files) => serde_json::json!({ "files": files }),
            Error::UnknownVersion(versions) => serde_json::json!({ "versions": versions }),
            Error::RollbackMissing { versions, files } => {
                serde_json::json!({ "versions": versions, "files": files })
            }
            Error::LockTimeout { attempts, .. } => serde_json::json!({ "attempts": attempts }),
            Error::Drift {
                reference, count, ..
            } => serde_json::json!({ "reference": reference, "count": count }),
            _ => serde_json::Value::Null,
        }
    }
}

/// The embedded server's errors as the variants, codes and messages slipway
/// reported before that server became a crate of its own.
#[cfg(feature = "local")]
impl From<slipway_local::LocalError> for Error {
    fn from(error: slipway_local::LocalError) -> Error {
        use slipway_local::LocalError;
        match error {
            LocalError::NotInstalled(message) => Error::PostgresNotInstalled(message),
            LocalError::Cluster(message) => Error::LocalCluster(message),
            LocalError::Config(message) => Error::Config(message),
            LocalError::Database { context, message } => Error::Database { context, message },
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_code() {
        let cases: Vec<(Error, &str)> = vec![
            (Error::BadRequest("x".into()), "bad_request"),
            (Error::Config("x".into()), "config"),
            (
                Error::InvalidMigrationFile {
                    file: "a.sql".into(),
                    reason: "x".into(),
                },
                "config",
            ),
            (
                Error::ReadMigrations {
                    path: "m".into(),
                    source: std::io::Error::other("x"),
                },
                "config",
            ),
            (Error::PostgresNotInstalled("x".into()), "config"),
            (Error::Secret("x".into()), "secret"),
            (Error::Connection("x".into()), "connection"),
            (Error::LocalCluster("x".into()), "connection"),
            (Error::ReadOnly("x".into()), "connection"),
            (Error::Auth("x".into()), "auth"),
            (Error::Tls("x".into()), "tls"),
            (
                Error::LockTimeout {
                    attempts: 3,
                    message: "x".into(),
                },
                "lock_timeout",
            ),
            (
                Error::MigrationFailed(Box::new(MigrationFailure {
                    file: "0001_a.sql".into(),
                    version: Some("0001".into()),
                    line: Some(3),
                    sqlstate: "42601".into(),
                    message: "syntax error".into(),
                    detail: None,
                    hint: None,
                    invalid_indexes: Vec::new(),
                })),
                "migration_failed",
            ),
            (
                Error::ChecksumMismatch(vec!["0001".into()]),
                "checksum_mismatch",
            ),
            (
                Error::UnknownVersion(vec!["0009".into()]),
                "unknown_version",
            ),
            (
                Error::RollbackMissing {
                    versions: vec!["0004".into()],
                    files: vec!["0004_x_rollback.sql".into()],
                },
                "config",
            ),
            (
                Error::DuplicateVersion {
                    version: "0001".into(),
                    first: "0001_a.sql".into(),
                    second: "0001_b.sql".into(),
                },
                "duplicate_version",
            ),
            (
                Error::Drift {
                    reference: "x".into(),
                    context: "x".into(),
                    count: 1,
                    summary: "extra_table public.t".into(),
                    next: "x".into(),
                },
                "drift",
            ),
            (
                Error::Database {
                    context: "x".into(),
                    message: "y".into(),
                },
                "internal",
            ),
            (Error::Internal("x".into()), "internal"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code().as_str(), code, "{error:?}");
            let json = serde_json::to_value(error.code()).unwrap();
            assert_eq!(json, serde_json::Value::String(code.into()));
        }
    }

    #[cfg(feature = "local")]
    #[test]
    fn local_errors_keep_their_code_and_message() {
        use slipway_local::LocalError;
        let cases: Vec<(LocalError, &str, &str)> = vec![
            (LocalError::NotInstalled("x".into()), "config", "x"),
            (
                LocalError::Cluster("x".into()),
                "connection",
                "local postgresql: x",
            ),
            (LocalError::Config("x".into()), "config", "x"),
            (
                LocalError::Database {
                    context: "x".into(),
                    message: "y".into(),
                },
                "internal",
                "database error while x: y",
            ),
        ];
        for (local, code, message) in cases {
            assert_eq!(local.to_string(), message, "{local:?}");
            let error = Error::from(local);
            assert_eq!(error.code().as_str(), code, "{error:?}");
            assert_eq!(error.to_string(), message, "{error:?}");
        }
    }
}
