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

pub use crate::action::{Action, DatabaseRole, RequestOption};
use crate::engine::{ApplyOptions, Migrator, RollbackOptions};
use crate::error::Error;
use crate::report::Report;

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
        Report::failure(self.action, self.options.dry_run, error)
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
                    to: options.to.clone(),
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
            crate::verify::verify(migrator.migrations(), migrator.database(), migrator.settings())
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
                migrator.database(),
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
}
