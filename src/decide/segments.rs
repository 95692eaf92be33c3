//! Where a run is cut into transactions: consecutive transactional steps
//! share one, and a `-- slipway:no-transaction` step runs alone between
//! them, since PostgreSQL refuses statements such as `CREATE INDEX
//! CONCURRENTLY` inside a transaction block. Also why a dry run cannot
//! take such a step: nothing outside a transaction can be undone.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::migrations::Migration;

/// A stretch of steps run together: in one transaction, or one step alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Indexes into the run's steps.
    pub range: Range<usize>,
    /// A no-transaction step, run outside any transaction.
    pub alone: bool,
}

/// Cut `steps` at each no-transaction step. With `prelude` (objects to drop
/// first), the first segment is a transaction even when it must be empty.
pub fn segments(steps: &[&Migration], prelude: bool) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    if prelude && steps.first().is_some_and(|m| m.directives.no_transaction) {
        out.push(Segment {
            range: 0..0,
            alone: false,
        });
    }
    for (index, step) in steps.iter().enumerate() {
        let alone = step.directives.no_transaction;
        match out.last_mut() {
            Some(last) if !alone && !last.alone && last.range.end == index => {
                last.range.end = index + 1;
            }
            _ => out.push(Segment {
                range: index..index + 1,
                alone,
            }),
        }
    }
    out
}

/// Refuse a dry run whose steps include a no-transaction one: it cannot
/// run inside the transaction a dry run rolls back, so it could not be
/// undone.
pub fn check_dry_run(steps: &[&Migration], dry_run: bool) -> Result<()> {
    if !dry_run {
        return Ok(());
    }
    match steps.iter().find(|m| m.directives.no_transaction) {
        Some(m) => Err(Error::Config(format!(
            "{} is marked -- slipway:no-transaction: it cannot run inside a transaction, so a dry run cannot try it and undo it; try it on a throw-away database with `slipway verify`",
            m.script
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_data::set;

    const TX: &str = "select 1;";
    const ALONE: &str = "-- slipway:no-transaction\nselect 1;";

    /// A run of one step per entry, each transactional (`TX`) or not (`ALONE`).
    fn cut(kinds: &[&str], prelude: bool) -> Vec<(Range<usize>, bool)> {
        let files: Vec<(String, &str)> = kinds
            .iter()
            .enumerate()
            .map(|(i, sql)| (format!("{:04}_step.sql", i + 1), *sql))
            .collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        let set = set(&files);
        let steps: Vec<&Migration> = set.versioned().iter().collect();
        segments(&steps, prelude)
            .into_iter()
            .map(|s| (s.range, s.alone))
            .collect()
    }

    /// A case: its name, the steps, whether there is a prelude, the cut.
    type CutCase = (
        &'static str,
        &'static [&'static str],
        bool,
        &'static [(Range<usize>, bool)],
    );

    #[test]
    fn no_transaction_steps_cut_the_run_into_transactions() {
        let cases: &[CutCase] = &[
            ("nothing to run", &[], false, &[]),
            ("nothing to run, prelude", &[], true, &[]),
            (
                "all in one transaction",
                &[TX, TX, TX],
                false,
                &[(0..3, false)],
            ),
            (
                "no-transaction first",
                &[ALONE, TX, TX],
                false,
                &[(0..1, true), (1..3, false)],
            ),
            (
                "no-transaction in the middle",
                &[TX, ALONE, TX],
                false,
                &[(0..1, false), (1..2, true), (2..3, false)],
            ),
            (
                "no-transaction last",
                &[TX, TX, ALONE],
                false,
                &[(0..2, false), (2..3, true)],
            ),
            (
                "two no-transaction steps in a row stay apart",
                &[TX, TX, ALONE, ALONE, TX],
                false,
                &[(0..2, false), (2..3, true), (3..4, true), (4..5, false)],
            ),
            (
                "only no-transaction steps",
                &[ALONE, ALONE],
                false,
                &[(0..1, true), (1..2, true)],
            ),
            // Objects to drop first need a transaction before a leading
            // no-transaction step.
            (
                "prelude before a no-transaction first step",
                &[ALONE, ALONE, TX],
                true,
                &[(0..0, false), (0..1, true), (1..2, true), (2..3, false)],
            ),
            (
                "prelude joins a transactional first step",
                &[TX, TX],
                true,
                &[(0..2, false)],
            ),
            (
                "prelude, no-transaction in the middle",
                &[TX, ALONE],
                true,
                &[(0..1, false), (1..2, true)],
            ),
        ];
        for (case, kinds, prelude, expected) in cases {
            assert_eq!(cut(kinds, *prelude), *expected, "{case}");
        }
    }

    #[test]
    fn a_dry_run_refuses_a_no_transaction_step() {
        let set = set(&[("0001_a.sql", TX), ("0002_b.sql", ALONE)]);
        let all: Vec<&Migration> = set.versioned().iter().collect();
        // (case, steps, dry run, the step it refuses)
        type DryRunCase<'a> = (&'a str, &'a [&'a Migration], bool, Option<&'a str>);
        let cases: &[DryRunCase] = &[
            ("a real run takes it", &all, false, None),
            ("a dry run refuses it", &all, true, Some("0002_b.sql")),
            ("a dry run without one", &all[..1], true, None),
            ("a dry run of nothing", &[], true, None),
        ];
        for (case, steps, dry_run, refused) in cases {
            match (check_dry_run(steps, *dry_run), refused) {
                (Ok(()), None) => {}
                (Err(Error::Config(message)), Some(script)) => {
                    assert!(message.starts_with(script), "{case}: {message}");
                    assert!(message.contains("slipway verify"), "{case}: {message}");
                }
                (outcome, _) => panic!("{case}: {outcome:?}"),
            }
        }
    }
}
