//! What the repeatable scripts own: the objects they created, recorded
//! with each commit that runs them. Repeatable scripts are written against
//! the latest schema, so a rollback drops these first and the next apply
//! to the latest version creates them again.

use crate::db::catalog::{OwnedObject, Snapshot};
use crate::migrations::{Migration, MigrationKind};

/// The step before which a batch also reads the catalog — its first
/// repeatable script — when the run tracks what they create.
pub fn catalog_before(steps: &[&Migration], tracking: bool) -> Option<usize> {
    if !tracking {
        return None;
    }
    steps
        .iter()
        .position(|m| m.kind == MigrationKind::Repeatable)
}

/// What the repeatable scripts own once a batch commits: nothing after it
/// dropped their objects first; else what they owned before (`previous`,
/// when the run tracks them), plus what they created between the catalogs
/// `before` and `after` them, less what no longer exists. `None` leaves
/// the record as it is.
pub fn owned_after(
    dropped_first: bool,
    previous: Option<&[OwnedObject]>,
    before: Option<&Snapshot>,
    after: Option<&Snapshot>,
) -> Option<Vec<OwnedObject>> {
    if dropped_first {
        return Some(Vec::new());
    }
    let (Some(previous), Some(before), Some(after)) = (previous, before, after) else {
        return None;
    };
    let mut all = previous.to_vec();
    all.extend(after.created_since(before));
    all.retain(|o| after.holds(o));
    all.sort();
    all.dedup();
    Some(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_data::{set, snapshot};

    fn object(json: &str) -> OwnedObject {
        serde_json::from_str(json).expect("a test object")
    }

    #[test]
    fn the_catalog_is_read_before_the_first_repeatable_script() {
        let set = set(&[
            ("0001_a.sql", "select 1;"),
            ("repeatable/v.sql", "select 'v';"),
            ("repeatable/w.sql", "select 'w';"),
        ]);
        let steps: Vec<&Migration> = set.versioned().iter().chain(set.repeatable()).collect();
        let cases: [(&str, &[&Migration], bool, Option<usize>); 4] = [
            (
                "tracking, a repeatable after a migration",
                &steps,
                true,
                Some(1),
            ),
            ("tracking, only repeatables", &steps[1..], true, Some(0)),
            (
                "tracking, no repeatable in this batch",
                &steps[..1],
                true,
                None,
            ),
            ("not tracking", &steps, false, None),
        ];
        for (case, steps, tracking, expected) in cases {
            assert_eq!(catalog_before(steps, tracking), expected, "{case}");
        }
    }

    #[test]
    fn the_owned_objects_follow_what_the_repeatables_created() {
        let table = r#""public.t":{"kind":"table","owner":"o"}"#;
        let view = |name: &str| {
            format!(r#""public.{name}":{{"kind":"view","owner":"o","definition":"SELECT 1"}}"#)
        };
        let before = snapshot(&format!("{{{table},{}}}", view("old")));
        let after = snapshot(&format!("{{{table},{},{}}}", view("old"), view("v")));
        let without_old = snapshot(&format!("{{{table},{}}}", view("v")));
        let old = object(r#"{"kind":"view","object":"public.old"}"#);
        let v = object(r#"{"kind":"view","object":"public.v"}"#);
        let gone = object(r#"{"kind":"view","object":"public.gone"}"#);
        let previous = [old.clone(), gone];
        // (case, dropped first, previous, before, after, owned)
        type Case<'a> = (
            &'a str,
            bool,
            Option<&'a [OwnedObject]>,
            Option<&'a Snapshot>,
            Option<&'a Snapshot>,
            Option<Vec<OwnedObject>>,
        );
        let cases: Vec<Case> = vec![
            (
                "a rollback dropped them: nothing",
                true,
                Some(&previous),
                Some(&before),
                Some(&after),
                Some(vec![]),
            ),
            (
                "kept, created, gone dropped, sorted",
                false,
                Some(&previous),
                Some(&before),
                Some(&after),
                Some(vec![old.clone(), v.clone()]),
            ),
            (
                "created again: listed once; what was there before is not theirs",
                false,
                Some(std::slice::from_ref(&v)),
                Some(&before),
                Some(&after),
                Some(vec![v.clone()]),
            ),
            (
                "a repeatable dropped what it made before",
                false,
                Some(std::slice::from_ref(&old)),
                Some(&before),
                Some(&without_old),
                Some(vec![v.clone()]),
            ),
            (
                "not tracking",
                false,
                None,
                Some(&before),
                Some(&after),
                None,
            ),
            (
                "no repeatable in this batch: no catalog before",
                false,
                Some(&previous),
                None,
                Some(&after),
                None,
            ),
            (
                "no catalog after",
                false,
                Some(&previous),
                Some(&before),
                None,
                None,
            ),
        ];
        for (case, dropped_first, previous, before, after, owned) in cases {
            assert_eq!(
                owned_after(dropped_first, previous, before, after),
                owned,
                "{case}"
            );
        }
    }
}
