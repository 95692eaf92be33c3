//! What a run does around its steps — the decision that makes `apply` and
//! `rollback` one flow. Which steps, in what order, recorded as which kind
//! (migrations oldest first; rollback scripts newest first, kind
//! `rollback`); whether the objects the repeatable scripts created are
//! dropped first (a rollback) or tracked (an apply that runs them); whether
//! the schema after the last step must match the expected snapshot (an
//! apply to the latest version); what drift stops it; how the history
//! table is prepared.

use std::borrow::Cow;

use crate::db::HistorySetup;
use crate::decide::drift_policy::DriftPolicy;
use crate::decide::rollback;
use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationKind, MigrationSet, Version};
use crate::plan::Plan;

/// Which way a run moves the schema, and how far.
#[derive(Debug, Clone)]
pub enum Direction {
    /// Run the pending migrations up to `to` (`None`: the latest).
    Apply { to: Option<Version> },
    /// Undo the applied versions above `to` (`0`: all of them).
    Rollback { to: Version },
}

impl Direction {
    /// An apply to `--to`, when given.
    pub fn apply(target: Option<&str>) -> Result<Direction> {
        let target = target
            .map(|t| {
                Version::parse(t).ok_or_else(|| {
                    Error::Config(format!("target version '{t}' is not a number like 0005"))
                })
            })
            .transpose()?;
        Ok(Direction::Apply { to: target })
    }

    /// A rollback to `--to`.
    pub fn rollback(to: &str) -> Result<Direction> {
        Ok(Direction::Rollback {
            to: rollback::parse_target(to)?,
        })
    }

    /// The target the plan is made for: an apply's `--to`; a rollback
    /// plans as validate does, to know what is applied.
    pub fn plan_target(&self) -> Option<&Version> {
        match self {
            Direction::Apply { to } => to.as_ref(),
            Direction::Rollback { .. } => None,
        }
    }

    /// The log line of a run without steps.
    pub fn nothing_to_do(&self) -> &'static str {
        match self {
            Direction::Apply { .. } => "nothing to apply",
            Direction::Rollback { .. } => "nothing to roll back",
        }
    }

    /// The log line of a dry run that ran its steps.
    pub fn dry_run_done(&self) -> &'static str {
        match self {
            Direction::Apply { .. } => "dry run: all pending migrations ran and were rolled back",
            Direction::Rollback { .. } => "dry run: the rollback scripts ran and were undone",
        }
    }
}

/// One apply or rollback, as asked.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub direction: Direction,
    /// Run the steps, report, then roll back.
    pub dry_run: bool,
    /// Go ahead although the schema drifted (`--allow-drift`).
    pub allow_drift: bool,
}

/// What a run does, decided from its plan before anything changes.
#[derive(Debug, Clone)]
pub struct StepsPlan<'a> {
    /// The steps, in the order they run; each is recorded with its kind.
    pub steps: Vec<Cow<'a, Migration>>,
    /// With no steps, still compare the schema with its reference first: a
    /// no-op apply is how drift is accepted and how a database migrated
    /// by an older slipway gets its snapshot. A rollback with nothing to
    /// undo stops before.
    pub check_drift_when_idle: bool,
    /// What drift found before the steps means.
    pub drift: DriftPolicy,
    /// Drop the objects the repeatable scripts created before the first
    /// step: they are written against the latest schema, and a view over a
    /// table a rollback script drops would block it.
    pub drop_owned_first: bool,
    /// Add what the repeatable steps create to the objects they own, so a
    /// later rollback can drop them.
    pub track_owned: bool,
    /// Compare the schema after the last step with the committed expected
    /// snapshot before committing: what ships is what CI tested, and CI
    /// tested the latest version.
    pub check_expected: bool,
}

impl StepsPlan<'_> {
    /// The steps as the executor takes them.
    pub fn step_refs(&self) -> Vec<&Migration> {
        self.steps.iter().map(|step| step.as_ref()).collect()
    }
}

/// Decide what `request` does given its `plan` of `set`; `check_drift`
/// says whether the target compares schemas at all. A rollback refuses
/// here a target that is not applied and missing rollback scripts.
pub fn steps_plan<'a>(
    request: &RunRequest,
    plan: &Plan<'a>,
    set: &'a MigrationSet,
    check_drift: bool,
) -> Result<StepsPlan<'a>> {
    let decided = match &request.direction {
        Direction::Apply { .. } => StepsPlan {
            steps: plan.pending.iter().map(|m| Cow::Borrowed(*m)).collect(),
            check_drift_when_idle: true,
            drift: DriftPolicy {
                allow_drift: request.allow_drift,
                context: "schema drift before applying",
                next: "nothing was applied; undo the out-of-band change (slipway validate lists it), or rerun with --allow-drift to apply anyway and accept the live schema",
            },
            drop_owned_first: false,
            track_owned: plan
                .pending
                .iter()
                .any(|m| m.kind == MigrationKind::Repeatable),
            check_expected: check_drift && plan.target.as_ref() == set.latest_version(),
        },
        Direction::Rollback { to } => StepsPlan {
            steps: rollback::steps(&rollback::undo(to, plan, set)?)
                .into_iter()
                .map(Cow::Owned)
                .collect(),
            check_drift_when_idle: false,
            drift: DriftPolicy {
                allow_drift: request.allow_drift,
                context: "schema drift before rolling back",
                next: "nothing was rolled back; undo the out-of-band change (slipway validate lists it), or rerun with --allow-drift",
            },
            drop_owned_first: true,
            track_owned: false,
            check_expected: false,
        },
    };
    Ok(decided)
}

/// How the history table must be prepared before the first step records
/// itself: created in a new database, upgraded when an older slipway made
/// it without the unique indexes.
pub fn history_setup(has_history: bool, indexed: bool) -> HistorySetup {
    if !has_history {
        HistorySetup::Create
    } else if indexed {
        HistorySetup::Ready
    } else {
        HistorySetup::Upgrade
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_data::{row, set};
    use crate::plan::{plan, HistoryRow};

    const FILES: &[(&str, &str)] = &[
        ("0001_a.sql", "select 1;"),
        ("0001_a_rollback.sql", "select -1;"),
        ("0002_b.sql", "select 2;"),
        ("0002_b_rollback.sql", "select -2;"),
        ("0003_c.sql", "select 3;"),
        ("0003_c_rollback.sql", "select -3;"),
        ("repeatable/v.sql", "select 'v';"),
    ];

    fn request(direction: Direction) -> RunRequest {
        RunRequest {
            direction,
            dry_run: false,
            allow_drift: false,
        }
    }

    fn through(version: usize) -> Vec<HistoryRow> {
        let sql = ["select 1;", "select 2;", "select 3;"];
        let scripts = ["0001_a.sql", "0002_b.sql", "0003_c.sql"];
        let versions = ["0001", "0002", "0003"];
        let mut rows: Vec<HistoryRow> = (0..version)
            .map(|i| {
                row(
                    i as i64 + 1,
                    "versioned",
                    Some(versions[i]),
                    scripts[i],
                    sql[i],
                )
            })
            .collect();
        if version == 3 {
            rows.push(row(
                4,
                "repeatable",
                None,
                "repeatable/v.sql",
                "select 'v';",
            ));
        }
        rows
    }

    struct Expect {
        steps: &'static [(&'static str, MigrationKind)],
        idle_check: bool,
        drop_first: bool,
        track: bool,
        expected: bool,
        context: &'static str,
    }

    const APPLYING: &str = "schema drift before applying";
    const ROLLING_BACK: &str = "schema drift before rolling back";

    #[test]
    fn apply_and_rollback_differ_only_in_what_is_decided_here() {
        use MigrationKind::{Repeatable, Rollback, Versioned};
        let set = set(FILES);
        let apply = |target: Option<&str>| Direction::apply(target).expect("a test target");
        let rollback = |to: &str| Direction::rollback(to).expect("a test target");
        // (case, history, direction, check_drift, expect)
        let cases: Vec<(&str, Vec<HistoryRow>, Direction, bool, Expect)> = vec![
            (
                "apply to the latest: the migrations, then the repeatable scripts",
                through(1),
                apply(None),
                true,
                Expect {
                    steps: &[("0002_b.sql", Versioned), ("0003_c.sql", Versioned), ("repeatable/v.sql", Repeatable)],
                    idle_check: true,
                    drop_first: false,
                    track: true,
                    expected: true,
                    context: APPLYING,
                },
            ),
            (
                "apply to the latest named with --to",
                through(1),
                apply(Some("0003")),
                true,
                Expect {
                    steps: &[("0002_b.sql", Versioned), ("0003_c.sql", Versioned), ("repeatable/v.sql", Repeatable)],
                    idle_check: true,
                    drop_first: false,
                    track: true,
                    expected: true,
                    context: APPLYING,
                },
            ),
            (
                "apply to an earlier version: no repeatables, no expected snapshot",
                through(0),
                apply(Some("0002")),
                true,
                Expect {
                    steps: &[("0001_a.sql", Versioned), ("0002_b.sql", Versioned)],
                    idle_check: true,
                    drop_first: false,
                    track: false,
                    expected: false,
                    context: APPLYING,
                },
            ),
            (
                "apply without the drift check: no expected snapshot",
                through(1),
                apply(None),
                false,
                Expect {
                    steps: &[("0002_b.sql", Versioned), ("0003_c.sql", Versioned), ("repeatable/v.sql", Repeatable)],
                    idle_check: true,
                    drop_first: false,
                    track: true,
                    expected: false,
                    context: APPLYING,
                },
            ),
            (
                "apply with nothing pending still checks the drift",
                through(3),
                apply(None),
                true,
                Expect {
                    steps: &[],
                    idle_check: true,
                    drop_first: false,
                    track: false,
                    expected: true,
                    context: APPLYING,
                },
            ),
            (
                "rollback: the rollback scripts, newest first, after dropping the repeatables' objects",
                through(3),
                rollback("0001"),
                true,
                Expect {
                    steps: &[("0003_c_rollback.sql", Rollback), ("0002_b_rollback.sql", Rollback)],
                    idle_check: false,
                    drop_first: true,
                    track: false,
                    expected: false,
                    context: ROLLING_BACK,
                },
            ),
            (
                "rollback with nothing to undo stops before the drift check",
                through(3),
                rollback("0003"),
                true,
                Expect {
                    steps: &[],
                    idle_check: false,
                    drop_first: true,
                    track: false,
                    expected: false,
                    context: ROLLING_BACK,
                },
            ),
        ];
        for (case, history, direction, check_drift, expect) in cases {
            let plan =
                plan(&history, &set, direction.plan_target()).expect("the test history plans");
            let mut request = request(direction);
            request.allow_drift = true;
            let decided = steps_plan(&request, &plan, &set, check_drift).expect("a plan");
            let steps: Vec<(&str, MigrationKind)> = decided
                .step_refs()
                .iter()
                .map(|m| (m.script.as_str(), m.kind))
                .collect();
            assert_eq!(steps, expect.steps, "{case}");
            assert_eq!(decided.check_drift_when_idle, expect.idle_check, "{case}");
            assert_eq!(decided.drop_owned_first, expect.drop_first, "{case}");
            assert_eq!(decided.track_owned, expect.track, "{case}");
            assert_eq!(decided.check_expected, expect.expected, "{case}");
            assert_eq!(decided.drift.context, expect.context, "{case}");
            assert!(decided.drift.allow_drift, "{case}");
            assert!(decided.drift.next.contains("--allow-drift"), "{case}");
        }
    }

    #[test]
    fn a_rollback_refuses_before_anything_runs() {
        let set = set(FILES);
        let history = through(2);
        let plan = plan(&history, &set, None).expect("the test history plans");
        let above = request(Direction::rollback("0003").expect("a test target"));
        assert!(matches!(
            steps_plan(&above, &plan, &set, true),
            Err(Error::Config(message)) if message.contains("not applied")
        ));
    }

    #[test]
    fn the_direction_comes_from_the_options() {
        assert!(matches!(
            Direction::apply(None),
            Ok(Direction::Apply { to: None })
        ));
        assert!(matches!(
            Direction::apply(Some("0005")),
            Ok(Direction::Apply { to: Some(v) }) if v.as_str() == "0005"
        ));
        // An apply's target is taken as written; a rollback's is trimmed.
        for bad in ["x", " 5", ""] {
            assert!(
                matches!(Direction::apply(Some(bad)), Err(Error::Config(m)) if m.contains("is not a number like 0005")),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Direction::rollback(" 5 "),
            Ok(Direction::Rollback { to }) if to.as_str() == "5"
        ));
        assert!(matches!(Direction::rollback("five"), Err(Error::Config(_))));
        let to = Version::parse("1").expect("1 parses");
        assert!(Direction::Rollback { to }.plan_target().is_none());
    }

    #[test]
    fn the_history_table_is_created_upgraded_or_ready() {
        for (has_history, indexed, setup) in [
            (false, false, HistorySetup::Create),
            (false, true, HistorySetup::Create),
            (true, false, HistorySetup::Upgrade),
            (true, true, HistorySetup::Ready),
        ] {
            assert_eq!(
                history_setup(has_history, indexed),
                setup,
                "{has_history} {indexed}"
            );
        }
    }
}
