//! The human rendering of a report, what the CLI prints by default: tables
//! of migrations, drift and dry-run schema changes grouped by table and read
//! like a diff, the error with its detail, a verdict. Colour only on a TTY.
//!
//! Kept apart from the report's types so that the diff ([`crate::drift`])
//! stays a pure comparison of snapshots: the renderer reads the report's
//! items, the diff knows nothing of how they are shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{DriftItem, Report, SchemaChange, SchemaChangeKind};
use crate::action::Action;
use crate::drift::{Aspect, Change, DriftKind};

impl Report {
    /// Human-readable text; ANSI colour when `color` is set (a TTY).
    pub fn render_human(&self, color: bool) -> String {
        self.render_human_with(color, false)
    }

    /// [`Report::render_human`], told whether the migration a failure names
    /// ran outside a transaction (`-- slipway:no-transaction`): then some of
    /// its statements may have stayed done, and the text must not say that
    /// nothing was changed.
    pub fn render_human_with(&self, color: bool, failed_step_ran_alone: bool) -> String {
        let paint = painter(color);
        let mut out = String::new();
        let database = self.database.as_deref().unwrap_or("?");
        let current = self.current_version.as_deref().unwrap_or("none");
        let target = self.target_version.as_deref().unwrap_or("none");
        if self.action == Action::Verify {
            let _ = writeln!(
                out,
                "verify on the throw-away database {database} (dropped afterwards)"
            );
        } else if self.database.is_some() {
            let _ = writeln!(
                out,
                "{}{} on database {database}: current version {current}, target {target}",
                self.action,
                if self.dry_run { " (dry run)" } else { "" },
            );
        }

        if let Some(migrations) = &self.migrations {
            let rows: Vec<[String; 5]> = migrations
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_else(|| "R".into()),
                        m.state.as_str().to_owned(),
                        m.description.clone(),
                        m.applied_at.clone().unwrap_or_default(),
                        m.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["version", "state", "description", "applied at", "took"],
                &rows,
            ));
        }
        if !self.applied.is_empty() {
            let _ = writeln!(out, "\n{}", paint("32", "applied:"));
            let rows: Vec<[String; 3]> = self
                .applied
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_else(|| "R".into()),
                        m.description.clone(),
                        format!("{} ms", m.duration_ms),
                    ]
                })
                .collect();
            out.push_str(&table(&["version", "description", "took"], &rows));
        }
        if let Some(rolled_back) = self.rolled_back.as_ref().filter(|r| !r.is_empty()) {
            let title = if self.dry_run {
                "would roll back (ran, then undone):"
            } else {
                "rolled back:"
            };
            let _ = writeln!(out, "\n{}", paint("32", title));
            let rows: Vec<[String; 4]> = rolled_back
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_default(),
                        m.description.clone(),
                        m.script.clone(),
                        format!("{} ms", m.duration_ms),
                    ]
                })
                .collect();
            out.push_str(&table(&["version", "description", "file", "took"], &rows));
        }
        if !self.dropped_invalid_indexes.is_empty() {
            let _ = writeln!(
                out,
                "\n{} {}",
                paint("33", "dropped INVALID index(es) a failed run left:"),
                self.dropped_invalid_indexes.join(", ")
            );
        }
        if let Some(steps) = &self.verify {
            let _ = writeln!(out, "\n{}", paint("36", "apply / rollback / re-apply:"));
            for step in steps {
                let verdict = if step.ok {
                    paint("32", "ok")
                } else {
                    paint("31", "FAILED")
                };
                let _ = writeln!(out, "  {}  {}  {verdict}", step.version, step.script);
                for problem in &step.problems {
                    let _ = writeln!(out, "      {problem}");
                }
            }
        }
        if !self.pending.is_empty() && self.migrations.is_none() {
            let title = if self.dry_run && self.success {
                "would apply (ran and rolled back):"
            } else {
                "pending:"
            };
            let _ = writeln!(out, "\n{}", paint("33", title));
            let rows: Vec<[String; 3]> = self
                .pending
                .iter()
                .map(|m| {
                    [
                        m.version.clone().unwrap_or_else(|| "R".into()),
                        m.description.clone(),
                        m.script.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(&["version", "description", "file"], &rows));
        }
        if !self.checksum_mismatches.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                paint("31", "modified after they were applied:")
            );
            for m in &self.checksum_mismatches {
                let _ = writeln!(
                    out,
                    "  {}  {}  recorded {}…, file {}…",
                    m.version,
                    m.script,
                    &m.recorded_checksum[..m.recorded_checksum.len().min(12)],
                    &m.file_checksum[..m.file_checksum.len().min(12)]
                );
            }
        }
        if !self.unknown_versions.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                paint("31", "applied but not in the migration files:")
            );
            for u in &self.unknown_versions {
                let _ = writeln!(out, "  {}  {}", u.version, u.description);
            }
        }
        // A dry run is asked for to see them; after a real apply they are
        // in the JSON report only, not to bury the summary under a
        // thousand-table first deploy.
        if let Some(changes) = self
            .schema_changes
            .as_ref()
            .filter(|c| self.dry_run && !c.is_empty())
        {
            let _ = writeln!(
                out,
                "\n{}",
                paint("36", "schema changes (made, then rolled back):")
            );
            out.push_str(&render_changes(changes, color));
        }
        if !self.drift.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                paint(
                    "31",
                    &format!(
                        "schema drift ({} difference(s); - expected but missing, + not expected, ~ expected → found):",
                        self.drift.len()
                    )
                )
            );
            out.push_str(&render_drift(&self.drift, color));
        }

        if !out.is_empty() {
            out.push('\n');
        }
        match &self.error {
            Some(error) => {
                let _ = writeln!(
                    out,
                    "{} [{}] {}",
                    paint("1;31", "error"),
                    error.code,
                    error.message
                );
                if let Some(detail) = error.detail.as_object() {
                    for key in ["file", "line", "sqlstate", "detail", "hint"] {
                        if let Some(value) = detail.get(key).filter(|v| !v.is_null()) {
                            let value = value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned);
                            let _ = writeln!(out, "  {key}: {value}");
                        }
                    }
                }
                if self.changed_nothing(failed_step_ran_alone)
                    && !error.message.contains("nothing was changed")
                {
                    let _ = writeln!(out, "nothing was changed");
                }
            }
            None => {
                let verdict = match (self.action.as_str(), self.schema_valid) {
                    ("apply", _) if self.dry_run => paint("32", "dry run ok: nothing was changed"),
                    ("apply", _) if self.applied.is_empty() => {
                        paint("32", "up to date: nothing to apply")
                    }
                    ("apply", _) => paint(
                        "32",
                        &format!("applied {} migration(s)", self.applied.len()),
                    ),
                    ("rollback", _) if self.dry_run => {
                        paint("32", "dry run ok: nothing was changed")
                    }
                    ("rollback", _) => paint(
                        "32",
                        &format!(
                            "rolled back {} migration(s); `slipway apply` applies them again",
                            self.rolled_back.as_ref().map_or(0, Vec::len)
                        ),
                    ),
                    ("verify", _) => paint(
                        "32",
                        "every migration round-trips: rollback restores the schema, re-apply rebuilds it",
                    ),
                    (_, true) => paint("32", "schema valid"),
                    (_, false) if !self.drift.is_empty() => paint(
                        "33",
                        "schema not valid: the schema drifted (above); `slipway apply` refuses until it is fixed, or runs with --allow-drift",
                    ),
                    (_, false) => paint("33", "schema not valid: run `slipway apply`"),
                };
                let _ = writeln!(out, "{verdict}");
            }
        }
        let _ = writeln!(out, "took {} ms", self.duration_ms);
        out
    }
}

impl Report {
    /// Whether a failed `apply` or `rollback` left the database as it was:
    /// it committed nothing (every transaction rolled back) and the failure
    /// is not of a step that ran outside a transaction, nor one that left
    /// INVALID indexes behind.
    fn changed_nothing(&self, failed_step_ran_alone: bool) -> bool {
        let left_indexes = self
            .error
            .as_ref()
            .and_then(|e| e.detail.get("invalid_indexes"))
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty());
        !self.success
            && (self.action == Action::Apply || self.action == Action::Rollback)
            && self.applied.is_empty()
            && self.rolled_back.as_ref().is_none_or(Vec::is_empty)
            && !failed_step_ran_alone
            && !left_indexes
    }
}

/// A plain, left-aligned text table.
fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let dashes = widths.map(|w| "-".repeat(w));
    let mut out = String::new();
    let mut push_line = |cells: [&str; N]| {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let _ = write!(line, "  {cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_line(*headers);
    push_line(dashes.each_ref().map(String::as_str));
    for row in rows {
        push_line(row.each_ref().map(String::as_str));
    }
    out
}

/// Wraps text in an ANSI colour `code` when `color` is set (a TTY), else
/// leaves it plain: the one colouring rule of every human rendering.
pub(crate) fn painter(color: bool) -> impl Fn(&str, &str) -> String {
    move |code, text| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Split an object name at its dots, keeping quoted identifiers whole:
/// `public."a.b".c` is `public`, `"a.b"`, `c`.
fn split_name(object: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in object.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => {
                parts.push(&object[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&object[start..]);
    parts
}

/// The heading an item is shown under (its table, for a `table_part`: a
/// column, constraint, index or trigger; else the object itself) and the
/// rest of its name.
fn group_of(table_part: bool, object: &str) -> (String, String) {
    let parts = split_name(object);
    // A function signature may hold dots in its argument types; only table
    // parts are split.
    if table_part && parts.len() >= 3 {
        (parts[..2].join("."), parts[2..].join("."))
    } else {
        (object.to_owned(), String::new())
    }
}

/// One line of the human rendering.
struct Line {
    sign: char,
    label: String,
    before: Option<String>,
    after: Option<String>,
}

/// Drift items grouped by table, like a diff: `-` missing, `+` extra, `~`
/// changed (expected → found).
fn render_drift(items: &[DriftItem], color: bool) -> String {
    let lines = items.iter().map(|item| {
        let (group, member) = group_of(item.kind.is_table_part(), &item.object);
        let word = object_word(item.kind, &item.object);
        let aspect = shown_aspect(item.kind.aspect());
        let label = [word, member.as_str(), aspect]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let sign = match item.kind.change() {
            Change::Missing => '-',
            Change::Extra => '+',
            Change::Changed => '~',
        };
        (
            group,
            Line {
                sign,
                label,
                before: item.expected.clone(),
                after: item.actual.clone(),
            },
        )
    });
    render_grouped(lines, color)
}

/// Dry-run schema changes grouped by table: `+` create, `-` drop, `~` alter.
fn render_changes(changes: &[SchemaChange], color: bool) -> String {
    let lines = changes.iter().map(|c| {
        let (group, member) = group_of(c.object_type.is_table_part(), &c.object);
        let aspect = shown_aspect(c.aspect);
        let label = [c.object_type.as_str(), member.as_str(), aspect]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let sign = match c.change {
            SchemaChangeKind::Create => '+',
            SchemaChangeKind::Drop => '-',
            SchemaChangeKind::Alter => '~',
        };
        (
            group,
            Line {
                sign,
                label,
                before: c.before.clone(),
                after: c.after.clone(),
            },
        )
    });
    render_grouped(lines, color)
}

/// The aspect named in a line: none for the definition as a whole, which
/// the values show.
fn shown_aspect(aspect: Option<Aspect>) -> &'static str {
    aspect
        .filter(|a| *a != Aspect::Definition)
        .map_or("", Aspect::as_str)
}

fn object_word(kind: DriftKind, object: &str) -> &'static str {
    use DriftKind as K;
    match kind {
        K::MissingTable | K::ExtraTable | K::TableChanged => "table",
        K::MissingView | K::ExtraView | K::ViewChanged => "view",
        K::MissingColumn
        | K::ExtraColumn
        | K::ColumnTypeChanged
        | K::NullabilityChanged
        | K::DefaultChanged
        | K::ColumnChanged => "column",
        K::MissingConstraint | K::ExtraConstraint | K::ConstraintChanged => "constraint",
        K::MissingIndex | K::ExtraIndex | K::IndexChanged => "index",
        K::MissingTrigger | K::ExtraTrigger | K::TriggerChanged => "trigger",
        K::MissingFunction | K::ExtraFunction | K::FunctionChanged => "function",
        K::MissingSequence | K::ExtraSequence | K::SequenceChanged => "sequence",
        K::MissingType | K::ExtraType | K::TypeChanged => "type",
        K::MissingExtension | K::ExtraExtension | K::ExtensionChanged => "extension",
        // The item does not say what kind of object changed owner or
        // grants; a signature at least shows a function.
        K::OwnerChanged | K::GrantsChanged if object.contains('(') => "function",
        K::OwnerChanged | K::GrantsChanged => "",
    }
}

fn render_grouped(lines: impl Iterator<Item = (String, Line)>, color: bool) -> String {
    let paint = painter(color);
    let mut groups: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for (group, line) in lines {
        groups.entry(group).or_default().push(line);
    }
    let mut out = String::new();
    for (group, lines) in groups {
        let _ = writeln!(out, "  {}", paint("1", &group));
        for line in lines {
            let code = match line.sign {
                '+' => "32",
                '-' => "31",
                _ => "33",
            };
            let head = format!("{} {}", line.sign, line.label);
            let multi_line = [&line.before, &line.after]
                .iter()
                .any(|v| v.as_deref().is_some_and(|t| t.trim_end().contains('\n')));
            match line.sign {
                '+' | '-' if !multi_line => {
                    let value = if line.sign == '+' {
                        &line.after
                    } else {
                        &line.before
                    };
                    let value = value.as_deref().unwrap_or("");
                    // `+ table (3 columns)`, not `+ table  table (3 columns)`.
                    if !line.label.is_empty() && value.starts_with(&line.label) {
                        let whole = format!("{} {value}", line.sign);
                        let _ = writeln!(out, "    {}", paint(code, &whole));
                    } else {
                        let _ = writeln!(out, "    {}  {value}", paint(code, &head));
                    }
                }
                _ if !multi_line => {
                    let _ = writeln!(
                        out,
                        "    {}  {} → {}",
                        paint(code, &head),
                        line.before.as_deref().unwrap_or("(none)"),
                        line.after.as_deref().unwrap_or("(none)")
                    );
                }
                _ => {
                    let _ = writeln!(out, "    {}", paint(code, &head));
                    out.push_str(&line_diff(
                        line.before.as_deref().unwrap_or(""),
                        line.after.as_deref().unwrap_or(""),
                        &paint,
                    ));
                }
            }
        }
    }
    out
}

/// The lines between the common head and tail of two texts, `-` then `+`.
fn line_diff(before: &str, after: &str, paint: &dyn Fn(&str, &str) -> String) -> String {
    let a: Vec<&str> = before.trim_end().lines().collect();
    let b: Vec<&str> = after.trim_end().lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = String::new();
    for line in &a[head..a.len() - tail] {
        let _ = writeln!(out, "      {}", paint("31", &format!("- {line}")));
    }
    for line in &b[head..b.len() - tail] {
        let _ = writeln!(out, "      {}", paint("32", &format!("+ {line}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::fixtures::{self, base, column, users};
    use crate::drift::{diff, DiffOptions, ObjectType};
    use crate::error::Error;

    #[test]
    fn error_detail_is_rendered() {
        let error = Error::MigrationFailed(Box::new(crate::error::MigrationFailure {
            file: "0003_c.sql".into(),
            version: Some("0003".into()),
            line: Some(4),
            sqlstate: "42601".into(),
            message: "syntax error at or near \"TABL\"".into(),
            detail: None,
            hint: Some("check it".into()),
            invalid_indexes: Vec::new(),
        }));
        let report = Report::failure("apply", false, &error);
        let text = report.render_human(false);
        assert!(text.contains("[migration_failed]"), "{text}");
        assert!(
            text.contains("file: 0003_c.sql") && text.contains("line: 4"),
            "{text}"
        );
        assert!(
            text.contains("sqlstate: 42601") && text.contains("hint: check it"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["error"]["code"], "migration_failed");
        assert_eq!(json["error"]["detail"]["line"], 4);
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&["a", "bb"], &[["xxx".into(), "y".into()]]);
        assert_eq!(text, "  a    bb\n  ---  --\n  xxx  y\n");
    }

    #[test]
    fn objects_group_under_their_table() {
        assert_eq!(
            group_of(
                DriftKind::MissingColumn.is_table_part(),
                "public.users.email"
            ),
            ("public.users".into(), "email".into())
        );
        assert_eq!(
            group_of(
                DriftKind::ExtraIndex.is_table_part(),
                "public.\"Odd.Name\".\"idx.1\""
            ),
            ("public.\"Odd.Name\"".into(), "\"idx.1\"".into())
        );
        assert_eq!(
            group_of(
                DriftKind::FunctionChanged.is_table_part(),
                "public.f(numeric(5,2))"
            ),
            ("public.f(numeric(5,2))".into(), String::new())
        );
        assert_eq!(
            group_of(DriftKind::ExtraTable.is_table_part(), "public.users"),
            ("public.users".into(), String::new())
        );
    }

    #[test]
    fn human_rendering_reads_like_a_diff() {
        let mut actual = base();
        users(&mut actual)
            .columns
            .insert("nickname".into(), column("text", false, None));
        users(&mut actual).indexes.clear();
        users(&mut actual).columns.get_mut("role").unwrap().default = None;
        actual
            .relations
            .get_mut("public.user_ids")
            .unwrap()
            .definition = Some(" SELECT users.email\n   FROM public.users;".into());
        let items: Vec<DriftItem> = diff(&base(), &actual, DiffOptions::default())
            .iter()
            .map(DriftItem::from)
            .collect();
        let text = render_drift(&items, false);
        assert_eq!(
            text,
            "  public.user_ids
    ~ view
      -  SELECT users.id
      +  SELECT users.email
  public.users
    + column nickname  text
    ~ column role default  'student'::character varying → (none)
    - index users_email_idx  CREATE INDEX users_email_idx ON public.users USING btree (email)
",
        );
    }

    #[test]
    fn dry_run_changes_read_as_create_drop_alter() {
        let before = base();
        let mut after = base();
        after.relations.insert(
            "public.audit".into(),
            fixtures::table(&[("id", column("bigint", true, None))]),
        );
        users(&mut after)
            .columns
            .get_mut("email")
            .unwrap()
            .data_type = "citext".into();
        let changes: Vec<SchemaChange> = diff(
            &before,
            &after,
            DiffOptions {
                same_database: true,
            },
        )
        .iter()
        .map(SchemaChange::from)
        .collect();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].change, SchemaChangeKind::Create);
        assert_eq!(changes[0].object_type, ObjectType::Table);
        assert_eq!(changes[1].change, SchemaChangeKind::Alter);
        assert_eq!(changes[1].aspect, Some(Aspect::Type));
        assert_eq!(changes[1].before.as_deref(), Some("text"));
        let text = render_changes(&changes, false);
        assert!(
            text.contains("  public.audit\n    + table (1 column)\n"),
            "{text}"
        );
        assert!(
            text.contains("    ~ column email type  text → citext\n"),
            "{text}"
        );
    }
}
