//! One request type for both faces, its one validation, and its one
//! dispatch.
//!
//! The CLI and the Lambda function each turn their input (arguments, an
//! event) into a [`Request`]; [`Request::new`] is the only place that says
//! which options an action takes, and [`run`] the only place that says what
//! an action does. Its `match` has no wildcard arm: a new [`Action`] does not
//! compile until every face handles it, and no unknown action can fall
//! through to `apply`.

use std::path::PathBuf;

use crate::engine::{ApplyOptions, Migrator, RollbackOptions};
use crate::error::Error;
use crate::report::Report;

/// What slipway is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read-only: pending migrations, modified files, unknown versions, drift.
    Validate,
    /// Run the pending migrations in one transaction under the advisory lock.
    Apply,
    /// Undo the applied versions above a version with their rollback scripts.
    Rollback,
    /// Like validate, plus every migration's state.
    Status,
    /// Apply, roll back and re-apply each migration on a throw-away database.
    Verify,
    /// Write (or check) the schema the migrations produce.
    Snapshot,
    /// Is the migration role allowed to do this deploy (not available yet).
    VerifyPermissions,
}

/// Which database an action works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseRole {
    /// The database being migrated.
    Migrated,
    /// A server to create a throw-away database on: never the migrated
    /// database, which may be production.
    ScratchServer,
}

/// An option a request may carry; each face spells it its own way
/// (`--dry-run`, `"dry_run"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOption {
    DryRun,
    To,
    AllowDrift,
    Out,
    Check,
}

impl Action {
    /// Every action, in the contract's order.
    pub const ALL: [Action; 7] = [
        Action::Validate,
        Action::Apply,
        Action::Rollback,
        Action::Status,
        Action::Verify,
        Action::Snapshot,
        Action::VerifyPermissions,
    ];

    /// The spelling in events, reports, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Validate => "validate",
            Action::Apply => "apply",
            Action::Rollback => "rollback",
            Action::Status => "status",
            Action::Verify => "verify",
            Action::Snapshot => "snapshot",
            Action::VerifyPermissions => "verify-permissions",
        }
    }

    /// The action spelled `text` exactly (no case folding: `APPLY` is a
    /// typo to refuse, not a request to guess at).
    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether the action takes `option`: the one table of the contract.
    pub fn accepts(self, option: RequestOption) -> bool {
        use RequestOption::{AllowDrift, Check, DryRun, Out, To};
        match self {
            Action::Apply | Action::Rollback => matches!(option, DryRun | To | AllowDrift),
            Action::Snapshot => matches!(option, Out | Check),
            Action::Validate | Action::Status | Action::Verify | Action::VerifyPermissions => false,
        }
    }

    /// Whether the action cannot run without `option`.
    pub fn requires(self, option: RequestOption) -> bool {
        matches!(
            (self, option),
            (Action::Rollback, RequestOption::To) | (Action::Snapshot, RequestOption::Out)
        )
    }

    /// The actions that take `option`, for messages ("apply and rollback").
    pub fn taking(option: RequestOption) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| a.accepts(option))
            .collect()
    }

    /// Which database the action works on.
    pub fn database(self) -> DatabaseRole {
        match self {
            Action::Verify | Action::Snapshot => DatabaseRole::ScratchServer,
            Action::Validate
            | Action::Apply
            | Action::Rollback
            | Action::Status
            | Action::VerifyPermissions => DatabaseRole::Migrated,
        }
    }

    /// Whether `dry_run` is meaningful for the report of this action.
    pub fn takes_dry_run(self) -> bool {
        self.accepts(RequestOption::DryRun)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The options of a request, as given; [`Request::new`] checks them
/// against the action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// apply, rollback: run everything, report, then roll back.
    pub dry_run: bool,
    /// apply: the version to stop at; rollback: the version to go back to
    /// (`0`: everything).
    pub to: Option<String>,
    /// apply, rollback: go ahead although the schema drifted.
    pub allow_drift: bool,
    /// snapshot: the file to write or compare with (the CLI's default is
    /// `<migrations>/schema.snapshot.json`).
    pub out: Option<PathBuf>,
    /// snapshot: only compare with the file.
    pub check: bool,
}

impl RequestOptions {
    fn given(&self, option: RequestOption) -> bool {
        match option {
            RequestOption::DryRun => self.dry_run,
            RequestOption::To => self.to.is_some(),
            RequestOption::AllowDrift => self.allow_drift,
            RequestOption::Out => self.out.is_some(),
            RequestOption::Check => self.check,
        }
    }

    /// These options without those `action` does not take: for a face
    /// whose options are global switches, documented per action (the CLI's
    /// `--dry-run` is ignored by `validate`).
    pub fn keep_for(mut self, action: Action) -> RequestOptions {
        let keep = |option| action.accepts(option);
        self.dry_run &= keep(RequestOption::DryRun);
        self.allow_drift &= keep(RequestOption::AllowDrift);
        self.check &= keep(RequestOption::Check);
        if !keep(RequestOption::To) {
            self.to = None;
        }
        if !keep(RequestOption::Out) {
            self.out = None;
        }
        self
    }
}

/// A request that breaks the option table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// `option` was given to an action that does not take it.
    NotAccepted {
        option: RequestOption,
        action: Action,
    },
    /// `action` needs `option`.
    Missing {
        option: RequestOption,
        action: Action,
    },
}

/// An action with options it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    action: Action,
    options: RequestOptions,
}

impl Request {
    /// The request, if `action` takes every option given and has every
    /// option it needs.
    pub fn new(action: Action, options: RequestOptions) -> Result<Request, RequestError> {
        use RequestOption::{AllowDrift, Check, DryRun, Out, To};
        for option in [DryRun, To, AllowDrift, Out, Check] {
            if options.given(option) && !action.accepts(option) {
                return Err(RequestError::NotAccepted { option, action });
            }
        }
        for option in [DryRun, To, AllowDrift, Out, Check] {
            if action.requires(option) && !options.given(option) {
                return Err(RequestError::Missing { option, action });
            }
        }
        Ok(Request { action, options })
    }

    /// What is asked.
    pub fn action(&self) -> Action {
        self.action
    }

    /// With which options.
    pub fn options(&self) -> &RequestOptions {
        &self.options
    }

    /// The report to answer with when the request cannot even start (no
    /// database, a bad setting).
    pub fn failure(&self, error: &Error) -> Report {
        Report::failure(self.action.as_str(), self.options.dry_run, error)
    }
}

/// Run `request` with `migrator`: the one dispatch of every action.
///
/// `migrator` must point at the database [`Action::database`] names: the
/// migrated one, or for verify and snapshot the server a throw-away
/// database is made on.
pub async fn run(migrator: &Migrator, request: &Request) -> Report {
    let options = request.options();
    match request.action() {
        Action::Validate => migrator.validate().await,
        Action::Status => migrator.status().await,
        Action::Apply => {
            migrator
                .apply(&ApplyOptions {
                    dry_run: options.dry_run,
                    target: options.to.clone(),
                    allow_drift: options.allow_drift,
                })
                .await
        }
        Action::Rollback => {
            migrator
                .rollback(&RollbackOptions {
                    to: options.to.clone().unwrap_or_default(),
                    dry_run: options.dry_run,
                    allow_drift: options.allow_drift,
                })
                .await
        }
        Action::Verify => {
            crate::verify::verify(migrator.migrations(), migrator.target(), migrator.settings())
                .await
        }
        Action::Snapshot => {
            // Request::new requires the file for a snapshot.
            let Some(path) = options.out.as_deref() else {
                return request.failure(&Error::Internal(
                    "a snapshot request without a file passed validation; report the bug".into(),
                ));
            };
            crate::expected::write_or_check(
                migrator.migrations(),
                migrator.target(),
                path,
                options.check,
            )
            .await
        }
        Action::VerifyPermissions => request.failure(&Error::BadRequest(format!(
            "{} is not available in this version of slipway; use validate, apply, rollback or status",
            Action::VerifyPermissions
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_its_spelling() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("APPLY"), None);
        assert_eq!(Action::parse("migrate"), None);
    }

    #[test]
    fn the_option_table() {
        use RequestOption::{AllowDrift, DryRun, Out, To};
        let to = |v: &str| RequestOptions {
            to: Some(v.into()),
            ..RequestOptions::default()
        };
        let dry = RequestOptions {
            dry_run: true,
            ..RequestOptions::default()
        };
        let cases = [
            (Action::Validate, RequestOptions::default(), Ok(())),
            (
                Action::Validate,
                dry.clone(),
                Err(RequestError::NotAccepted {
                    option: DryRun,
                    action: Action::Validate,
                }),
            ),
            (Action::Apply, dry.clone(), Ok(())),
            (Action::Apply, to("0004"), Ok(())),
            (Action::Apply, RequestOptions::default(), Ok(())),
            (Action::Rollback, to("0"), Ok(())),
            (
                Action::Rollback,
                dry.clone(),
                Err(RequestError::Missing {
                    option: To,
                    action: Action::Rollback,
                }),
            ),
            (
                Action::Status,
                to("0002"),
                Err(RequestError::NotAccepted {
                    option: To,
                    action: Action::Status,
                }),
            ),
            (
                Action::Verify,
                RequestOptions {
                    allow_drift: true,
                    ..RequestOptions::default()
                },
                Err(RequestError::NotAccepted {
                    option: AllowDrift,
                    action: Action::Verify,
                }),
            ),
            (
                Action::Snapshot,
                RequestOptions {
                    out: Some("s.json".into()),
                    check: true,
                    ..RequestOptions::default()
                },
                Ok(()),
            ),
            (
                Action::Snapshot,
                RequestOptions::default(),
                Err(RequestError::Missing {
                    option: Out,
                    action: Action::Snapshot,
                }),
            ),
            (
                Action::Apply,
                RequestOptions {
                    out: Some("s.json".into()),
                    ..RequestOptions::default()
                },
                Err(RequestError::NotAccepted {
                    option: Out,
                    action: Action::Apply,
                }),
            ),
        ];
        for (action, options, expected) in cases {
            let outcome = Request::new(action, options.clone()).map(|_| ());
            assert_eq!(outcome, expected, "{action} {options:?}");
        }
        assert_eq!(
            Action::taking(DryRun),
            vec![Action::Apply, Action::Rollback]
        );
    }

    #[test]
    fn global_switches_are_dropped_where_an_action_ignores_them() {
        let all = RequestOptions {
            dry_run: true,
            to: Some("0003".into()),
            allow_drift: true,
            out: Some("s.json".into()),
            check: true,
        };
        for action in Action::ALL {
            let kept = all.clone().keep_for(action);
            let outcome = Request::new(action, kept);
            assert!(
                !matches!(outcome, Err(RequestError::NotAccepted { .. })),
                "{action}: {outcome:?}"
            );
        }
        assert_eq!(
            all.clone().keep_for(Action::Validate),
            RequestOptions::default()
        );
    }

    #[test]
    fn only_verify_and_snapshot_leave_the_migrated_database() {
        for action in Action::ALL {
            let scratch = matches!(action, Action::Verify | Action::Snapshot);
            assert_eq!(
                action.database() == DatabaseRole::ScratchServer,
                scratch,
                "{action}"
            );
        }
    }
}
