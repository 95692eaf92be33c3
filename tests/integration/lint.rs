//! `slipway lint` as a black box: every rule against a fixture that must
//! trip it and one that must not (`tests/fixtures/lint/{flagged,clean}/`),
//! syntax errors located by line and column, the `--json` shape, the exit
//! codes, the shipped `migrations/`, and a cross-check with squawk, the
//! established PostgreSQL migration linter, on the same files.
//!
//! Each fixture runs as migration `0002_<rule>.sql` after
//! `fixtures/lint/base.sql` as `0001_base.sql`, which creates the tables
//! the fixtures change; a `<rule>_rollback.sql` beside a fixture becomes its
//! rollback. No database is involved.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{example_migrations, run_cli, Run};
use serde_json::Value;
use slipway::lint::{Rule, Severity};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A migrations directory: the base, then fixture `kind/name.sql` as 0002.
fn migration_set(kind: &str, name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("0001_base.sql"),
        read(&fixtures().join("base.sql")),
    )
    .expect("write base");
    let fixture = fixtures().join(kind).join(format!("{name}.sql"));
    std::fs::write(dir.path().join(format!("0002_{name}.sql")), read(&fixture))
        .expect("write fixture");
    let rollback = fixtures().join(kind).join(format!("{name}_rollback.sql"));
    if rollback.exists() {
        std::fs::write(
            dir.path().join(format!("0002_{name}_rollback.sql")),
            read(&rollback),
        )
        .expect("write rollback");
    }
    dir
}

/// `slipway lint --json` on fixture `kind/name.sql`; the rollback rule is
/// configured only for its own fixtures, so it never fires elsewhere.
fn lint_fixture(kind: &str, name: &str) -> Run {
    let set = migration_set(kind, name);
    let dir = set.path().to_str().expect("utf-8 path");
    let mut args = vec!["lint", "--json", "--migrations", dir];
    if name == Rule::MissingRollback.id() {
        args.extend(["--rollback-required-from", "0001"]);
    }
    run_cli(set.path(), &args)
}

/// `(rule, line)` of the report's findings in file `file`.
fn findings_in(run: &Run, file: &str) -> Vec<(String, u64)> {
    let report = run.report();
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings list{run}"))
        .iter()
        .filter(|f| f["file"] == file)
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["line"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn every_rule_trips_on_its_flagged_fixture_and_not_on_its_clean_one() {
    for rule in Rule::ALL {
        let id = rule.id();
        let file = format!("0002_{id}.sql");

        let run = lint_fixture("flagged", id);
        let found = findings_in(&run, &file);
        assert!(
            found.iter().any(|(r, _)| r == id),
            "flagged/{id}.sql did not trip {id}: {found:?}{run}"
        );
        let expected_code = if rule.severity() == Severity::Error {
            1
        } else {
            0
        };
        run.expect_code(expected_code);

        let run = lint_fixture("clean", id);
        let found = findings_in(&run, &file);
        assert!(
            !found.iter().any(|(r, _)| r == id),
            "clean/{id}.sql tripped {id}: {found:?}{run}"
        );
    }
}

#[test]
fn a_syntax_error_names_file_line_and_column() {
    let set = migration_set("flagged", "syntax-error");
    let dir = set.path().to_str().expect("utf-8 path");

    let run = run_cli(set.path(), &["lint", "--json", "--migrations", dir]);
    run.expect_code(1);
    let report = run.report();
    let finding = &report["findings"][0];
    assert_eq!(finding["rule"], "syntax-error", "{run}");
    assert_eq!(finding["file"], "0002_syntax-error.sql", "{run}");
    assert_eq!(
        (finding["line"].as_u64(), finding["column"].as_u64()),
        (Some(3), Some(49)),
        "{run}"
    );
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.contains("NUL")),
        "{run}"
    );

    let run = run_cli(set.path(), &["lint", "--migrations", dir]);
    run.expect_code(1);
    let location = format!("{dir}/0002_syntax-error.sql:3:49: error [syntax-error]");
    assert!(run.stdout().contains(&location), "{location}{run}");
}

#[test]
fn json_report_shape() {
    let run = lint_fixture("flagged", "drop-table");
    let report = run.report();
    let keys: Vec<&str> = report
        .as_object()
        .unwrap_or_else(|| panic!("not an object{run}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "success",
        "action",
        "files",
        "errors",
        "warnings",
        "findings",
        "duration_ms",
        "error",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "{run}");
    assert_eq!(report["success"], true);
    assert_eq!(report["action"], "lint");
    assert_eq!(report["files"], 2);
    assert_eq!(report["errors"], 1);
    assert_eq!(report["warnings"], 0);
    assert_eq!(report["error"], Value::Null);
    assert_eq!(
        report["findings"][0],
        serde_json::json!({
            "rule": "drop-table",
            "severity": "error",
            "file": "0002_drop-table.sql",
            "line": 1,
            "column": 1,
            "message": "DROP TABLE destroys data",
            "safer_form": Rule::DropTable.safer_form(),
        }),
        "{run}"
    );
    // Compact: one line, as the migration report.
    assert_eq!(run.stdout().trim_end().lines().count(), 1, "{run}");
}

#[test]
fn exit_codes() {
    // 0: clean.
    lint_fixture("clean", "delete-without-where").expect_code(0);
    // 0: warnings only.
    let run = lint_fixture("flagged", "index-without-concurrently");
    run.expect_code(0);
    assert_eq!(run.report()["warnings"], 1, "{run}");
    // 1: lint errors.
    lint_fixture("flagged", "truncate").expect_code(1);

    // 2: slipway could not lint.
    let cwd = tempfile::tempdir().expect("temp dir");
    let run = run_cli(
        cwd.path(),
        &["lint", "--json", "--migrations", "no-such-dir"],
    );
    run.expect_code(2);
    assert_eq!(run.report()["error"]["code"], "config", "{run}");
    let set = migration_set("clean", "truncate");
    let dir = set.path().to_str().expect("utf-8 path");
    let run = run_cli(
        cwd.path(),
        &[
            "lint",
            "--migrations",
            dir,
            "--rollback-required-from",
            "v5",
        ],
    );
    run.expect_code(2);
    assert!(
        run.stdout().contains("--rollback-required-from 'v5'"),
        "{run}"
    );
    std::fs::write(
        set.path().join("0003_bad.sql"),
        "-- slipway:bogus\nSELECT 1;",
    )
    .expect("write");
    run_cli(cwd.path(), &["lint", "--migrations", dir]).expect_code(2);
}

/// The shipped migrations lint without errors, with rollbacks required
/// for all of them (as `make test` runs it).
#[test]
fn shipped_migrations_pass() {
    let dir = example_migrations();
    let dir = dir.to_str().expect("utf-8 path");
    let cwd = tempfile::tempdir().expect("temp dir");
    let run = run_cli(
        cwd.path(),
        &[
            "lint",
            "--json",
            "--migrations",
            dir,
            "--rollback-required-from",
            "0",
        ],
    );
    run.expect_code(0);
    assert_eq!(run.report()["errors"], 0, "{run}");
}

// The cross-check with squawk --------------------------------------------------

/// squawk's rules and the slipway rules that cover them. squawk rules not
/// listed have no slipway counterpart: `require-lock-timeout` and
/// `require-statement-timeout` are what slipway's engine sets itself
/// (`--lock-timeout`, `--statement-timeout`), `prefer-robust-stmts` asks for
/// the transaction slipway always opens, the `prefer-*` type rules are style.
/// squawk also reports `constraint-missing-not-valid` on a UNIQUE or PRIMARY
/// KEY constraint, which has no NOT VALID form: what it warns of there, the
/// scan under the table lock, is the index build that
/// `unique-constraint-without-index` flags. squawk has no rule for what
/// `vacuum-in-transaction` flags.
const SQUAWK_TO_SLIPWAY: &[(&str, &[&str])] = &[
    ("syntax-error", &["syntax-error"]),
    ("ban-drop-table", &["drop-table"]),
    ("ban-drop-column", &["drop-column"]),
    ("ban-drop-schema", &["drop-schema"]),
    ("ban-truncate-cascade", &["truncate"]),
    ("changing-column-type", &["alter-column-type"]),
    (
        "require-concurrent-index-creation",
        &["index-without-concurrently"],
    ),
    (
        "require-concurrent-index-deletion",
        &["drop-index-without-concurrently"],
    ),
    (
        "adding-foreign-key-constraint",
        &["foreign-key-without-not-valid"],
    ),
    (
        "constraint-missing-not-valid",
        &[
            "check-without-not-valid",
            "foreign-key-without-not-valid",
            "unique-constraint-without-index",
        ],
    ),
    (
        "disallowed-unique-constraint",
        &["unique-constraint-without-index"],
    ),
    (
        "adding-serial-primary-key-field",
        &["unique-constraint-without-index"],
    ),
    ("adding-not-nullable-field", &["set-not-null"]),
    ("renaming-column", &["rename-column"]),
    ("renaming-table", &["rename-table"]),
    (
        "ban-concurrent-index-creation-in-transaction",
        &["concurrently-in-transaction"],
    ),
];

/// Where squawk flags and slipway deliberately does not: (fixture, squawk
/// rule, why). squawk reads neither slipway's directives nor its rollback
/// convention, and flags these two rules on a table the same file just
/// created, which is empty and already locked by that transaction.
const DELIBERATE_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "clean/drop-table.sql",
        "ban-drop-table",
        "-- slipway:allow-destructive",
    ),
    (
        "clean/drop-column.sql",
        "ban-drop-column",
        "-- slipway:allow-destructive",
    ),
    (
        "clean/drop-schema.sql",
        "ban-drop-schema",
        "-- slipway:allow-destructive",
    ),
    (
        "clean/truncate.sql",
        "ban-truncate-cascade",
        "-- slipway:allow-destructive",
    ),
    (
        "clean/missing-rollback_rollback.sql",
        "ban-drop-column",
        "rollbacks are destructive by nature",
    ),
    (
        "clean/alter-column-type.sql",
        "changing-column-type",
        "table created in the same file",
    ),
    (
        "clean/rename-column.sql",
        "renaming-column",
        "table created in the same file",
    ),
    (
        "clean/rename-table.sql",
        "renaming-table",
        "table created in the same file",
    ),
];

fn squawk() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/squawk");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (make test does), which installs squawk-cli from scripts/requirements.txt",
        path.display()
    );
    path
}

/// squawk's findings in one fixture as `(rule, 1-based line)`. slipway runs
/// every migration in a transaction unless the file says
/// `-- slipway:no-transaction`, so squawk gets such a file between `BEGIN;`
/// and `COMMIT;`, as the server does (its `--assume-in-transaction` does
/// not make it apply its in-transaction rules).
fn squawk_findings(fixture: &Path) -> Vec<(String, u64)> {
    let sql = read(fixture);
    let transactional = !sql.contains("-- slipway:no-transaction");
    let mut command = Command::new(squawk());
    command.args(["--reporter", "json"]);
    let output = if transactional {
        let label = fixture.to_str().expect("utf-8 path");
        let mut child = command
            .args(["--stdin-filepath", label])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run squawk");
        child
            .stdin
            .take()
            .expect("squawk stdin")
            .write_all(format!("BEGIN;\n{sql}\nCOMMIT;\n").as_bytes())
            .expect("write to squawk");
        child.wait_with_output().expect("wait for squawk")
    } else {
        command.arg(fixture).output().expect("run squawk")
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let violations: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "squawk printed no JSON for {} ({e}): {text}\n{}",
            fixture.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    // squawk counts lines from 0; the BEGIN line shifts them by one more.
    let shift = u64::from(!transactional);
    violations
        .as_array()
        .unwrap_or_else(|| panic!("squawk JSON is not a list: {violations}"))
        .iter()
        .map(|v| {
            (
                v["rule_name"].as_str().unwrap_or_default().to_owned(),
                v["line"].as_u64().unwrap_or_default() + shift,
            )
        })
        .collect()
}

#[test]
fn slipway_flags_at_least_what_squawk_flags() {
    let mapping: BTreeMap<&str, &[&str]> = SQUAWK_TO_SLIPWAY.iter().copied().collect();
    let mut deliberate_seen = Vec::new();
    let mut compared = 0;
    for kind in ["flagged", "clean"] {
        let mut names: Vec<String> = std::fs::read_dir(fixtures().join(kind))
            .expect("read fixtures")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        for name in names {
            let fixture = fixtures().join(kind).join(&name);
            let label = format!("{kind}/{name}");
            let stem = name.trim_end_matches(".sql");
            // A rollback fixture is linted as the rollback of its forward one.
            let (forward, file) = match stem.strip_suffix("_rollback") {
                Some(forward) => (forward, format!("0002_{stem}.sql")),
                None => (stem, format!("0002_{stem}.sql")),
            };
            let run = lint_fixture(kind, forward);
            let ours = findings_in(&run, &file);
            for (squawk_rule, line) in squawk_findings(&fixture) {
                let Some(covering) = mapping.get(squawk_rule.as_str()) else {
                    continue;
                };
                if let Some(difference) = DELIBERATE_DIFFERENCES
                    .iter()
                    .find(|(f, r, _)| *f == label && *r == squawk_rule)
                {
                    deliberate_seen.push(difference.0);
                    continue;
                }
                compared += 1;
                assert!(
                    ours.iter()
                        .any(|(rule, l)| covering.contains(&rule.as_str()) && *l == line),
                    "squawk flags {squawk_rule} at {label}:{line}; slipway should flag one of {covering:?} there, found {ours:?}{run}"
                );
            }
        }
    }
    // Both lists stay true: every deliberate difference still occurs, and
    // the comparison covered something.
    for (fixture, rule, _) in DELIBERATE_DIFFERENCES {
        assert!(
            deliberate_seen.contains(fixture),
            "squawk no longer flags {rule} in {fixture}: remove it from DELIBERATE_DIFFERENCES"
        );
    }
    assert!(
        compared >= 15,
        "only {compared} squawk findings were compared"
    );
}

/// The README's rule tables are the user's reference: every rule is there.
#[test]
fn readme_lists_every_rule() {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    for rule in Rule::ALL {
        assert!(
            readme.contains(&format!("`{}`", rule.id())),
            "README.md does not list lint rule {}",
            rule.id()
        );
    }
}
