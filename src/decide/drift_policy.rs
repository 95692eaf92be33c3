//! When drift stops a run. Which reference the live schema is compared
//! with (the snapshot the last apply recorded, or the committed expected
//! snapshot), which differences a run forgives (the INVALID index a failed
//! no-transaction migration left, which its rerun drops), whether
//! `--allow-drift` lets the run go on, and when a run records the live
//! schema as the new reference.
//!
//! Someone changed the schema behind the migrations' back: running more
//! steps on top would hide it, so a run stops unless told.

use crate::db::catalog::{self, Snapshot};
use crate::db::{names_identifier, RecordedSnapshot};
use crate::decide::fill::items;
use crate::drift::{diff, DiffOptions, Difference, DriftKind};
use crate::error::{Error, Result};
use crate::migrations::{Migration, EXPECTED_SNAPSHOT_FILE};
use crate::report::DriftItem;

/// What the live schema is compared with.
pub const RECORDED_REFERENCE: &str = "the snapshot recorded by the last apply";
pub const EXPECTED_REFERENCE: &str = "the expected snapshot (schema.snapshot.json)";

/// Drift found against one reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub reference: &'static str,
    pub items: Vec<Difference>,
}

/// What the live catalog is compared with, from what the read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<'a> {
    /// Nothing: the drift check is off (no live catalog), or the database
    /// has no reference yet.
    None,
    /// The recorded snapshot has another format: not compared (the next
    /// apply replaces it).
    OtherFormat(u32),
    /// The recorded snapshot's fingerprint is the live one: no drift. The
    /// common case costs a hash.
    Unchanged,
    /// The fingerprints differ: fetch the recorded snapshot and compare it
    /// with this live catalog.
    Recorded(&'a Snapshot),
    /// No recorded snapshot, but a history with nothing pending (migrated
    /// by an older slipway): compare this live catalog with the expected
    /// snapshot, when the migration set has one.
    Expected(&'a Snapshot),
}

/// The reference for `live` (read only with the drift check on), given the
/// recorded snapshot's identity, whether the database has a history, and
/// whether anything is pending.
pub fn reference<'a>(
    live: Option<&'a Snapshot>,
    recorded: Option<&RecordedSnapshot>,
    has_history: bool,
    nothing_pending: bool,
) -> Reference<'a> {
    let Some(live) = live else {
        return Reference::None;
    };
    match recorded {
        Some(recorded) if recorded.format != catalog::FORMAT => {
            Reference::OtherFormat(recorded.format)
        }
        Some(recorded) if recorded.fingerprint == live.fingerprint() => Reference::Unchanged,
        Some(_) => Reference::Recorded(live),
        None if has_history && nothing_pending => Reference::Expected(live),
        None => Reference::None,
    }
}

/// No drift from the recorded snapshot.
pub fn unchanged() -> Drift {
    Drift {
        reference: RECORDED_REFERENCE,
        items: Vec::new(),
    }
}

/// The drift of `live` from the `recorded` snapshot of the same database;
/// `None` when it covers other schemas (not compared: the next apply
/// replaces it).
pub fn recorded_drift(recorded: &Snapshot, live: &Snapshot) -> Option<Drift> {
    if recorded.schemas != live.schemas {
        return None;
    }
    let same_database = DiffOptions {
        same_database: true,
    };
    Some(Drift {
        reference: RECORDED_REFERENCE,
        items: diff(recorded, live, same_database),
    })
}

/// The drift of `live` from the committed expected snapshot, made in
/// another database.
pub fn expected_drift(expected: &Snapshot, live: &Snapshot) -> Drift {
    Drift {
        reference: EXPECTED_REFERENCE,
        items: diff(expected, live, DiffOptions::default()),
    }
}

/// The committed expected snapshot (`text`, when the set has one), refused
/// when another slipway wrote it or it covers other schemas than `managed`.
pub fn expected_snapshot(text: Option<&str>, managed: &[String]) -> Result<Option<Snapshot>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let expected = Snapshot::from_json(text, EXPECTED_SNAPSHOT_FILE)?;
    if expected.format != catalog::FORMAT {
        return Err(Error::Config(format!(
            "{EXPECTED_SNAPSHOT_FILE} has snapshot format {}, this slipway writes format {}; regenerate it with `slipway snapshot`",
            expected.format,
            catalog::FORMAT
        )));
    }
    let managed = Snapshot::empty(managed).schemas;
    if expected.schemas != managed {
        return Err(Error::Config(format!(
            "{EXPECTED_SNAPSHOT_FILE} covers schema(s) {} but this target manages {}; regenerate it with `slipway snapshot`",
            expected.schemas.join(", "),
            managed.join(", ")
        )));
    }
    Ok(Some(expected))
}

/// What to do about drift found before a run changes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftPolicy {
    /// Go ahead anyway (`--allow-drift`).
    pub allow_drift: bool,
    /// What the run was about to do, for the error: `schema drift before
    /// applying`.
    pub context: &'static str,
    /// The error's last words: what happened and what to do next.
    pub next: &'static str,
}

/// What drift found before a run changes anything means for the run.
#[derive(Debug)]
pub enum Verdict {
    /// Nothing that stops it.
    Clean,
    /// Drift, which `--allow-drift` accepts: the report's drift.
    Accepted(Vec<DriftItem>),
    /// Drift that stops the run: the report's drift, and the error.
    Refused(Vec<DriftItem>, Error),
}

/// Judge `drift` under `policy`, forgiving what a `pending` no-transaction
/// migration's failed run left: the run drops it and tries again (validate
/// still lists it).
pub fn verdict(drift: Option<Drift>, pending: &[&Migration], policy: &DriftPolicy) -> Verdict {
    let Some(drift) = drift else {
        return Verdict::Clean;
    };
    let found: Vec<Difference> = drift
        .items
        .into_iter()
        .filter(|d| !is_leftover_of(d, pending))
        .collect();
    if found.is_empty() {
        return Verdict::Clean;
    }
    let found = items(&found);
    if policy.allow_drift {
        return Verdict::Accepted(found);
    }
    let error = drift_error(drift.reference, policy.context, &found, policy.next);
    Verdict::Refused(found, error)
}

/// Whether `d` is an INVALID index that a pending no-transaction migration
/// names: what its failed run left, dropped before it runs again.
pub fn is_leftover_of(d: &Difference, pending: &[&Migration]) -> bool {
    if d.kind != DriftKind::ExtraIndex
        || !d.actual.as_deref().is_some_and(|a| a.contains("INVALID"))
    {
        return false;
    }
    let name = catalog::key_parts(&d.object).pop().unwrap_or_default();
    pending
        .iter()
        .any(|m| m.directives.no_transaction && names_identifier(&m.sql, &name))
}

/// Whether a run with nothing to do records the live schema as the
/// reference: a database with a history but no recorded snapshot (migrated
/// by an older slipway) gets one now, once; so does drift `--allow-drift`
/// accepted. Never in a dry run, which changes nothing.
pub fn record_snapshot(
    has_history: bool,
    dry_run: bool,
    has_recorded: bool,
    drift_accepted: bool,
) -> bool {
    has_history && !dry_run && (!has_recorded || drift_accepted)
}

/// What comparing the schema the steps left with the expected snapshot
/// means for the run, before it commits.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpectedCheck {
    /// The schema is the expected one.
    Matches,
    /// It is not, and `--allow-drift` accepts it: the report's drift now.
    Allowed(Vec<DriftItem>),
    /// It is not: the report's drift now, which the error names.
    Refused(Vec<DriftItem>),
}

/// Compare `after` with `expected`; the report's `drift` gains the
/// differences it does not list yet.
pub fn check_expected(
    expected: &Snapshot,
    after: &Snapshot,
    drift: &[DriftItem],
    allow_drift: bool,
) -> ExpectedCheck {
    let found = items(&diff(expected, after, DiffOptions::default()));
    if found.is_empty() {
        return ExpectedCheck::Matches;
    }
    let mut all = drift.to_vec();
    for item in found {
        if !all.contains(&item) {
            all.push(item);
        }
    }
    if allow_drift {
        ExpectedCheck::Allowed(all)
    } else {
        ExpectedCheck::Refused(all)
    }
}

/// The `drift` error: how many items, the first three, what to do next.
pub fn drift_error(reference: &str, context: &str, items: &[DriftItem], next: &str) -> Error {
    let mut summary = items
        .iter()
        .take(3)
        .map(|d| format!("{} {}", d.kind, d.object))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 3 {
        summary.push_str(", ...");
    }
    Error::Drift {
        reference: reference.to_owned(),
        context: context.to_owned(),
        count: items.len(),
        summary,
        next: next.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_data::{set, snapshot, table_with_index};
    use crate::migrations::MigrationSet;

    const TABLE: &str = r#"{"public.t":{"kind":"table","owner":"o"}}"#;

    fn tables(names: &[&str]) -> Snapshot {
        let relations: Vec<String> = names
            .iter()
            .map(|n| format!(r#""public.{n}":{{"kind":"table","owner":"o"}}"#))
            .collect();
        snapshot(&format!("{{{}}}", relations.join(",")))
    }

    fn recorded(format: u32, of: &Snapshot) -> RecordedSnapshot {
        RecordedSnapshot {
            format,
            fingerprint: of.fingerprint(),
        }
    }

    #[test]
    fn the_reference_is_the_recorded_snapshot_else_the_expected_one() {
        let live = snapshot(TABLE);
        let other = tables(&["u"]);
        // (case, live catalog, recorded snapshot, has a history, nothing pending, reference)
        type Case<'a> = (
            &'a str,
            Option<&'a Snapshot>,
            Option<RecordedSnapshot>,
            bool,
            bool,
            Reference<'a>,
        );
        let cases: &[Case] = &[
            (
                "no drift check: no live catalog",
                None,
                Some(recorded(catalog::FORMAT, &other)),
                true,
                true,
                Reference::None,
            ),
            (
                "recorded in another format",
                Some(&live),
                Some(recorded(catalog::FORMAT + 1, &other)),
                true,
                true,
                Reference::OtherFormat(catalog::FORMAT + 1),
            ),
            (
                "recorded, same fingerprint",
                Some(&live),
                Some(recorded(catalog::FORMAT, &live)),
                true,
                false,
                Reference::Unchanged,
            ),
            (
                "recorded, other fingerprint",
                Some(&live),
                Some(recorded(catalog::FORMAT, &other)),
                true,
                false,
                Reference::Recorded(&live),
            ),
            (
                "not recorded, a history, nothing pending: expected",
                Some(&live),
                None,
                true,
                true,
                Reference::Expected(&live),
            ),
            (
                "not recorded, something pending",
                Some(&live),
                None,
                true,
                false,
                Reference::None,
            ),
            (
                "not recorded, no history",
                Some(&live),
                None,
                false,
                true,
                Reference::None,
            ),
        ];
        for (case, live, recorded, has_history, nothing_pending, expected) in cases {
            assert_eq!(
                reference(*live, recorded.as_ref(), *has_history, *nothing_pending),
                *expected,
                "{case}"
            );
        }
    }

    #[test]
    fn a_recorded_snapshot_of_other_schemas_is_not_compared() {
        let live = snapshot(TABLE);
        let drift = recorded_drift(&tables(&[]), &live).expect("same schemas compare");
        assert_eq!(drift.reference, RECORDED_REFERENCE);
        assert_eq!(drift.items.len(), 1);
        assert_eq!(drift.items[0].kind, DriftKind::ExtraTable);
        let elsewhere = Snapshot::empty(&["app".to_owned()]);
        assert_eq!(recorded_drift(&elsewhere, &live), None);
        assert_eq!(recorded_drift(&live, &live).map(|d| d.items.len()), Some(0));
        let expected = expected_drift(&tables(&[]), &live);
        assert_eq!(expected.reference, EXPECTED_REFERENCE);
        assert_eq!(expected.items.len(), 1);
        assert!(unchanged().items.is_empty());
    }

    #[test]
    fn the_expected_snapshot_must_fit_this_slipway_and_target() {
        let public = vec!["public".to_owned()];
        let good = tables(&["t"]).canonical_json();
        let other_format = good.replacen(
            &format!(r#""format":{}"#, catalog::FORMAT),
            r#""format":99"#,
            1,
        );
        // (case, committed text, managed schemas, what the refusal says)
        type Case<'a> = (&'a str, Option<&'a str>, &'a [String], Option<&'a str>);
        let cases: &[Case] = &[
            ("none committed", None, &public, None),
            ("fits", Some(&good), &public, None),
            (
                "fits, the managed schemas named twice",
                Some(&good),
                &["public".to_owned(), "public".to_owned()],
                None,
            ),
            (
                "another format",
                Some(&other_format),
                &public,
                Some("has snapshot format 99"),
            ),
            (
                "other schemas",
                Some(&good),
                &["app".to_owned()],
                Some("covers schema(s) public but this target manages app"),
            ),
            (
                "not a snapshot",
                Some("[]"),
                &public,
                Some("is not a slipway schema snapshot"),
            ),
        ];
        for (case, text, managed, refused) in cases {
            match (expected_snapshot(*text, managed), refused) {
                (Ok(found), None) => assert_eq!(found.is_some(), text.is_some(), "{case}"),
                (Err(Error::Config(message)), Some(part)) => {
                    assert!(message.contains(part), "{case}: {message}");
                    assert!(message.contains("slipway snapshot"), "{case}: {message}");
                }
                (outcome, _) => panic!("{case}: {outcome:?}"),
            }
        }
    }

    const APPLY: DriftPolicy = DriftPolicy {
        allow_drift: false,
        context: "schema drift before applying",
        next: "nothing was applied",
    };

    enum Expect {
        Clean,
        Accepted(&'static [&'static str]),
        Refused(&'static [&'static str], &'static str),
    }

    #[test]
    fn drift_stops_a_run_unless_allowed_or_left_by_a_pending_rerun() {
        let set: MigrationSet = set(&[
            ("0001_t.sql", "create table t (a int);"),
            (
                "0002_index.sql",
                "-- slipway:no-transaction\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);",
            ),
            ("0003_other_index.sql", "CREATE INDEX t_b_idx ON t (b);"),
        ]);
        let [_, rerun, transactional] = set.versioned() else {
            panic!("three migrations");
        };
        let table = snapshot(TABLE);
        let drift_to = |live: &str| recorded_drift(&table, &snapshot(live));
        let invalid = table_with_index("t_a_idx", false);
        let valid = table_with_index("t_a_idx", true);
        let invalid_other = table_with_index("t_b_idx", false);
        let allow = DriftPolicy {
            allow_drift: true,
            ..APPLY
        };
        let rollback = DriftPolicy {
            context: "schema drift before rolling back",
            ..APPLY
        };
        let extra_table = tables(&["t", "u"]);
        // (case, drift found, pending migrations, policy, verdict)
        type Case<'a> = (
            &'a str,
            Option<Drift>,
            Vec<&'a Migration>,
            &'a DriftPolicy,
            Expect,
        );
        let cases: Vec<Case> = vec![
            ("no reference", None, vec![], &APPLY, Expect::Clean),
            (
                "unchanged",
                Some(unchanged()),
                vec![],
                &APPLY,
                Expect::Clean,
            ),
            (
                "drift from the recorded snapshot",
                drift_to(&invalid),
                vec![],
                &APPLY,
                Expect::Refused(&["public.t.t_a_idx"], RECORDED_REFERENCE),
            ),
            (
                "the same drift before a rollback",
                recorded_drift(&table, &extra_table),
                vec![],
                &rollback,
                Expect::Refused(&["public.u"], RECORDED_REFERENCE),
            ),
            (
                "allow_drift accepts it",
                drift_to(&invalid),
                vec![],
                &allow,
                Expect::Accepted(&["public.t.t_a_idx"]),
            ),
            (
                "drift from the expected snapshot",
                Some(expected_drift(&table, &extra_table)),
                vec![],
                &APPLY,
                Expect::Refused(&["public.u"], EXPECTED_REFERENCE),
            ),
            (
                "leftover of a failed no-transaction migration, pending again",
                drift_to(&invalid),
                vec![rerun],
                &APPLY,
                Expect::Clean,
            ),
            (
                "an INVALID index a transactional migration names",
                drift_to(&invalid_other),
                vec![transactional],
                &APPLY,
                Expect::Refused(&["public.t.t_b_idx"], RECORDED_REFERENCE),
            ),
            (
                "an INVALID index no pending migration names",
                drift_to(&invalid_other),
                vec![rerun],
                &APPLY,
                Expect::Refused(&["public.t.t_b_idx"], RECORDED_REFERENCE),
            ),
            (
                "a valid index is drift, named or not",
                drift_to(&valid),
                vec![rerun],
                &APPLY,
                Expect::Refused(&["public.t.t_a_idx"], RECORDED_REFERENCE),
            ),
        ];
        for (case, drift, pending, policy, expect) in cases {
            match (verdict(drift, &pending, policy), expect) {
                (Verdict::Clean, Expect::Clean) => {}
                (Verdict::Accepted(found), Expect::Accepted(objects)) => {
                    let got: Vec<&str> = found.iter().map(|d| d.object.as_str()).collect();
                    assert_eq!(got, objects, "{case}");
                }
                (Verdict::Refused(found, error), Expect::Refused(objects, expected_reference)) => {
                    let got: Vec<&str> = found.iter().map(|d| d.object.as_str()).collect();
                    assert_eq!(got, objects, "{case}");
                    match error {
                        Error::Drift {
                            reference,
                            context,
                            count,
                            next,
                            ..
                        } => {
                            assert_eq!(reference, expected_reference, "{case}");
                            assert_eq!(context, policy.context, "{case}");
                            assert_eq!(count, objects.len(), "{case}");
                            assert_eq!(next, policy.next, "{case}");
                        }
                        other => panic!("{case}: {other:?}"),
                    }
                }
                (outcome, _) => panic!("{case}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn an_idle_run_records_the_live_schema_when_there_is_none_or_drift_was_accepted() {
        // (case, has_history, dry_run, has_recorded, drift_accepted, record)
        let cases = [
            (
                "no history: nothing to record",
                false,
                false,
                false,
                false,
                false,
            ),
            (
                "a history, no recorded snapshot",
                true,
                false,
                false,
                false,
                true,
            ),
            (
                "a recorded snapshot, no drift",
                true,
                false,
                true,
                false,
                false,
            ),
            (
                "a recorded snapshot, drift accepted",
                true,
                false,
                true,
                true,
                true,
            ),
            (
                "dry run, no recorded snapshot",
                true,
                true,
                false,
                false,
                false,
            ),
            ("dry run, drift accepted", true, true, true, true, false),
        ];
        for (case, has_history, dry_run, has_recorded, accepted, record) in cases {
            assert_eq!(
                record_snapshot(has_history, dry_run, has_recorded, accepted),
                record,
                "{case}"
            );
        }
    }

    #[test]
    fn the_schema_after_the_steps_must_be_the_expected_one() {
        let expected = tables(&["t"]);
        let extra = tables(&["t", "u"]);
        let before = items(&diff(&tables(&[]), &tables(&["x"]), DiffOptions::default()));
        let objects = |drift: &[DriftItem]| -> Vec<String> {
            drift.iter().map(|d| d.object.clone()).collect()
        };
        assert_eq!(
            check_expected(&expected, &expected, &before, false),
            ExpectedCheck::Matches
        );
        match check_expected(&expected, &extra, &before, false) {
            ExpectedCheck::Refused(drift) => {
                assert_eq!(objects(&drift), ["public.x", "public.u"]);
            }
            other => panic!("{other:?}"),
        }
        match check_expected(&expected, &extra, &[], true) {
            ExpectedCheck::Allowed(drift) => assert_eq!(objects(&drift), ["public.u"]),
            other => panic!("{other:?}"),
        }
        // An item the report lists already is not listed twice.
        let listed = items(&diff(&expected, &extra, DiffOptions::default()));
        match check_expected(&expected, &extra, &listed, false) {
            ExpectedCheck::Refused(drift) => assert_eq!(drift, listed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_drift_error_names_the_first_three_items() {
        let four = items(&diff(
            &tables(&[]),
            &tables(&["a", "b", "c", "d"]),
            DiffOptions::default(),
        ));
        for (count, ellipsis) in [(1, false), (3, false), (4, true)] {
            match drift_error(RECORDED_REFERENCE, "context", &four[..count], "next") {
                Error::Drift {
                    count: n, summary, ..
                } => {
                    assert_eq!(n, count);
                    assert_eq!(
                        summary.matches("public.").count(),
                        count.min(3),
                        "{summary}"
                    );
                    assert_eq!(summary.ends_with(", ..."), ellipsis, "{summary}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
