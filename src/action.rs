//! The actions of the contract, the options each takes, and which database
//! each works on: a leaf that the request, the report and both faces name
//! actions with, so none of them spells an action as a string.

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
    fn all_lists_every_action_once_in_order() {
        // No wildcard: a new variant does not compile here until it has its
        // place in `ALL` too.
        let position = |action: Action| match action {
            Action::Validate => 0,
            Action::Apply => 1,
            Action::Rollback => 2,
            Action::Status => 3,
            Action::Verify => 4,
            Action::Snapshot => 5,
            Action::VerifyPermissions => 6,
        };
        for (index, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(position(action), index, "{action}");
        }
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
