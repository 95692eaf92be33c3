//! Drift: the differences between two catalog [`Snapshot`]s.
//!
//! A pure comparison, so every rule is a unit test; it imports nothing from
//! the report, which turns differences into its items and renders them. One out-of-band change is one item:
//! a dropped table is `missing_table` (not also a `missing_column` per
//! column), a dropped `NOT NULL` is `nullability_changed` only.
//!
//! The kinds — one list, also in README.md. `expected` is what the reference
//! snapshot holds (the snapshot recorded by the last apply, or the committed
//! `schema.snapshot.json`), `actual` what the database holds; `null` for an
//! absent object.
//!
//! | kind | object | expected / actual |
//! |---|---|---|
//! | `missing_table`, `extra_table` | `schema.table` | the table's kind |
//! | `table_changed` | `schema.table` | differing kind, partitioning, inheritance, `UNLOGGED`, row security |
//! | `missing_view`, `extra_view`, `view_changed` | `schema.view` | the definition |
//! | `missing_column`, `extra_column` | `schema.table.column` | type, `NOT NULL`, default, identity, generation, collation |
//! | `column_type_changed` | `schema.table.column` | the types |
//! | `nullability_changed` | `schema.table.column` | `NOT NULL` / `NULL` |
//! | `default_changed` | `schema.table.column` | the default expressions |
//! | `column_changed` | `schema.table.column` | identity, generation expression or collation |
//! | `missing_constraint`, `extra_constraint`, `constraint_changed` | `schema.table.constraint` | the definition |
//! | `missing_index`, `extra_index`, `index_changed` | `schema.table.index` | the definition (and `INVALID`) |
//! | `missing_trigger`, `extra_trigger`, `trigger_changed` | `schema.table.trigger` | the definition (and `DISABLED`) |
//! | `missing_function`, `extra_function`, `function_changed` | `schema.name(argument types)` | signature summary; for a change, the differing attributes (body as a SHA-256 prefix) |
//! | `missing_sequence`, `extra_sequence`, `sequence_changed` | `schema.sequence` | the options |
//! | `missing_type`, `extra_type`, `type_changed` | `schema.type` | kind and definition |
//! | `missing_extension`, `extra_extension`, `extension_changed` | extension name | schema (and version) |
//! | `owner_changed`, `grants_changed` | any of the above | the owner / the grants |
//!
//! Owners, grants and extension versions name roles and builds of one
//! server, so they are compared only against the same database's recorded
//! snapshot ([`DiffOptions::same_database`]), never against the committed
//! snapshot, which a superuser built in a throw-away cluster.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::db::catalog::{Column, Function, Relation, Sequence, Snapshot};

/// Every kind of drift item. See the module documentation for their meaning.
/// Serialised as [`DriftKind::as_str`] (a unit test holds the two together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    MissingTable,
    ExtraTable,
    TableChanged,
    MissingView,
    ExtraView,
    ViewChanged,
    MissingColumn,
    ExtraColumn,
    ColumnTypeChanged,
    NullabilityChanged,
    DefaultChanged,
    ColumnChanged,
    MissingConstraint,
    ExtraConstraint,
    ConstraintChanged,
    MissingIndex,
    ExtraIndex,
    IndexChanged,
    MissingTrigger,
    ExtraTrigger,
    TriggerChanged,
    MissingFunction,
    ExtraFunction,
    FunctionChanged,
    MissingSequence,
    ExtraSequence,
    SequenceChanged,
    MissingType,
    ExtraType,
    TypeChanged,
    MissingExtension,
    ExtraExtension,
    ExtensionChanged,
    OwnerChanged,
    GrantsChanged,
}

/// Whether an object is absent, unexpected, or different.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// In the reference, not in the database.
    Missing,
    /// In the database, not in the reference.
    Extra,
    /// In both, different.
    Changed,
}

impl DriftKind {
    /// Every kind, in documentation order.
    pub const ALL: [DriftKind; 35] = [
        DriftKind::MissingTable,
        DriftKind::ExtraTable,
        DriftKind::TableChanged,
        DriftKind::MissingView,
        DriftKind::ExtraView,
        DriftKind::ViewChanged,
        DriftKind::MissingColumn,
        DriftKind::ExtraColumn,
        DriftKind::ColumnTypeChanged,
        DriftKind::NullabilityChanged,
        DriftKind::DefaultChanged,
        DriftKind::ColumnChanged,
        DriftKind::MissingConstraint,
        DriftKind::ExtraConstraint,
        DriftKind::ConstraintChanged,
        DriftKind::MissingIndex,
        DriftKind::ExtraIndex,
        DriftKind::IndexChanged,
        DriftKind::MissingTrigger,
        DriftKind::ExtraTrigger,
        DriftKind::TriggerChanged,
        DriftKind::MissingFunction,
        DriftKind::ExtraFunction,
        DriftKind::FunctionChanged,
        DriftKind::MissingSequence,
        DriftKind::ExtraSequence,
        DriftKind::SequenceChanged,
        DriftKind::MissingType,
        DriftKind::ExtraType,
        DriftKind::TypeChanged,
        DriftKind::MissingExtension,
        DriftKind::ExtraExtension,
        DriftKind::ExtensionChanged,
        DriftKind::OwnerChanged,
        DriftKind::GrantsChanged,
    ];

    /// The kind as it appears in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::MissingTable => "missing_table",
            DriftKind::ExtraTable => "extra_table",
            DriftKind::TableChanged => "table_changed",
            DriftKind::MissingView => "missing_view",
            DriftKind::ExtraView => "extra_view",
            DriftKind::ViewChanged => "view_changed",
            DriftKind::MissingColumn => "missing_column",
            DriftKind::ExtraColumn => "extra_column",
            DriftKind::ColumnTypeChanged => "column_type_changed",
            DriftKind::NullabilityChanged => "nullability_changed",
            DriftKind::DefaultChanged => "default_changed",
            DriftKind::ColumnChanged => "column_changed",
            DriftKind::MissingConstraint => "missing_constraint",
            DriftKind::ExtraConstraint => "extra_constraint",
            DriftKind::ConstraintChanged => "constraint_changed",
            DriftKind::MissingIndex => "missing_index",
            DriftKind::ExtraIndex => "extra_index",
            DriftKind::IndexChanged => "index_changed",
            DriftKind::MissingTrigger => "missing_trigger",
            DriftKind::ExtraTrigger => "extra_trigger",
            DriftKind::TriggerChanged => "trigger_changed",
            DriftKind::MissingFunction => "missing_function",
            DriftKind::ExtraFunction => "extra_function",
            DriftKind::FunctionChanged => "function_changed",
            DriftKind::MissingSequence => "missing_sequence",
            DriftKind::ExtraSequence => "extra_sequence",
            DriftKind::SequenceChanged => "sequence_changed",
            DriftKind::MissingType => "missing_type",
            DriftKind::ExtraType => "extra_type",
            DriftKind::TypeChanged => "type_changed",
            DriftKind::MissingExtension => "missing_extension",
            DriftKind::ExtraExtension => "extra_extension",
            DriftKind::ExtensionChanged => "extension_changed",
            DriftKind::OwnerChanged => "owner_changed",
            DriftKind::GrantsChanged => "grants_changed",
        }
    }

    /// The kind named `text` in a report.
    pub fn parse(text: &str) -> Option<DriftKind> {
        DriftKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Missing, extra or changed.
    pub fn change(self) -> Change {
        let name = self.as_str();
        if name.starts_with("missing_") {
            Change::Missing
        } else if name.starts_with("extra_") {
            Change::Extra
        } else {
            Change::Changed
        }
    }

    /// What part of a changed object differs, for the dry-run changes.
    pub fn aspect(self) -> Option<Aspect> {
        match self {
            DriftKind::ColumnTypeChanged => Some(Aspect::Type),
            DriftKind::NullabilityChanged => Some(Aspect::Nullability),
            DriftKind::DefaultChanged => Some(Aspect::Default),
            DriftKind::OwnerChanged => Some(Aspect::Owner),
            DriftKind::GrantsChanged => Some(Aspect::Grants),
            _ if self.change() == Change::Changed => Some(Aspect::Definition),
            _ => None,
        }
    }

    /// Whether the object is `schema.table.member` (columns, constraints,
    /// indexes, triggers), shown under its table.
    pub fn is_table_part(self) -> bool {
        matches!(
            self,
            DriftKind::MissingColumn
                | DriftKind::ExtraColumn
                | DriftKind::ColumnTypeChanged
                | DriftKind::NullabilityChanged
                | DriftKind::DefaultChanged
                | DriftKind::ColumnChanged
                | DriftKind::MissingConstraint
                | DriftKind::ExtraConstraint
                | DriftKind::ConstraintChanged
                | DriftKind::MissingIndex
                | DriftKind::ExtraIndex
                | DriftKind::IndexChanged
                | DriftKind::MissingTrigger
                | DriftKind::ExtraTrigger
                | DriftKind::TriggerChanged
        )
    }
}

impl fmt::Display for DriftKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of object a difference is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    Table,
    View,
    Column,
    Constraint,
    Index,
    Trigger,
    Function,
    Sequence,
    Type,
    Extension,
}

impl ObjectType {
    /// Every object type.
    pub const ALL: [ObjectType; 10] = [
        ObjectType::Table,
        ObjectType::View,
        ObjectType::Column,
        ObjectType::Constraint,
        ObjectType::Index,
        ObjectType::Trigger,
        ObjectType::Function,
        ObjectType::Sequence,
        ObjectType::Type,
        ObjectType::Extension,
    ];

    /// The object type as it appears in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Table => "table",
            ObjectType::View => "view",
            ObjectType::Column => "column",
            ObjectType::Constraint => "constraint",
            ObjectType::Index => "index",
            ObjectType::Trigger => "trigger",
            ObjectType::Function => "function",
            ObjectType::Sequence => "sequence",
            ObjectType::Type => "type",
            ObjectType::Extension => "extension",
        }
    }

    /// Whether the object is `schema.table.member`, shown under its table.
    pub fn is_table_part(self) -> bool {
        matches!(
            self,
            ObjectType::Column | ObjectType::Constraint | ObjectType::Index | ObjectType::Trigger
        )
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What part of a changed object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    Type,
    Nullability,
    Default,
    Owner,
    Grants,
    /// Anything else: the object's definition as a whole.
    Definition,
}

impl Aspect {
    /// Every aspect.
    pub const ALL: [Aspect; 6] = [
        Aspect::Type,
        Aspect::Nullability,
        Aspect::Default,
        Aspect::Owner,
        Aspect::Grants,
        Aspect::Definition,
    ];

    /// The aspect as it appears in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Aspect::Type => "type",
            Aspect::Nullability => "nullability",
            Aspect::Default => "default",
            Aspect::Owner => "owner",
            Aspect::Grants => "grants",
            Aspect::Definition => "definition",
        }
    }
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between a reference snapshot and the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: DriftKind,
    pub object_type: ObjectType,
    pub object: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// What a comparison looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Both snapshots come from the same database: compare owners, grants
    /// and extension versions too.
    pub same_database: bool,
}

/// Every difference between `expected` and `actual`, in a stable order
/// (relations and their parts by name, then functions, sequences, types,
/// extensions).
pub fn diff(expected: &Snapshot, actual: &Snapshot, options: DiffOptions) -> Vec<Difference> {
    let mut out = Differences {
        items: Vec::new(),
        options,
    };
    for (name, side) in pair(&expected.relations, &actual.relations) {
        match side {
            Side::Missing(e) => {
                let (kind, object_type) = if is_view(e) {
                    (DriftKind::MissingView, ObjectType::View)
                } else {
                    (DriftKind::MissingTable, ObjectType::Table)
                };
                out.push(kind, object_type, name, Some(describe_relation(e)), None);
            }
            Side::Extra(a) => {
                let (kind, object_type) = if is_view(a) {
                    (DriftKind::ExtraView, ObjectType::View)
                } else {
                    (DriftKind::ExtraTable, ObjectType::Table)
                };
                out.push(kind, object_type, name, None, Some(describe_relation(a)));
            }
            Side::Both(e, a) => out.relation(name, e, a),
        }
    }
    for (name, side) in pair(&expected.functions, &actual.functions) {
        match side {
            Side::Missing(e) => out.push(
                DriftKind::MissingFunction,
                ObjectType::Function,
                name,
                Some(describe_function(e)),
                None,
            ),
            Side::Extra(a) => out.push(
                DriftKind::ExtraFunction,
                ObjectType::Function,
                name,
                None,
                Some(describe_function(a)),
            ),
            Side::Both(e, a) => {
                let mut attrs = vec![
                    ("", e.kind.clone(), a.kind.clone()),
                    ("arguments", e.arguments.clone(), a.arguments.clone()),
                    (
                        "returns",
                        e.returns.clone().unwrap_or_default(),
                        a.returns.clone().unwrap_or_default(),
                    ),
                    ("language", e.language.clone(), a.language.clone()),
                    ("", e.volatility.clone(), a.volatility.clone()),
                    (
                        "",
                        security(e.security_definer).into(),
                        security(a.security_definer).into(),
                    ),
                ];
                // The definition covers all of the above; name it only when
                // nothing more telling differs (a replaced body).
                if attrs.iter().all(|(_, x, y)| x == y) {
                    attrs.push((
                        "body sha256",
                        short_hash(e.definition_sha256.as_deref()),
                        short_hash(a.definition_sha256.as_deref()),
                    ));
                }
                if let Some((x, y)) = differing(&attrs) {
                    out.push(
                        DriftKind::FunctionChanged,
                        ObjectType::Function,
                        name,
                        Some(x),
                        Some(y),
                    );
                }
                out.ownership(
                    ObjectType::Function,
                    name,
                    (&e.owner, &a.owner),
                    (&e.acl, &a.acl),
                );
            }
        }
    }
    for (name, side) in pair(&expected.sequences, &actual.sequences) {
        match side {
            Side::Missing(e) => out.push(
                DriftKind::MissingSequence,
                ObjectType::Sequence,
                name,
                Some(describe_sequence(e)),
                None,
            ),
            Side::Extra(a) => out.push(
                DriftKind::ExtraSequence,
                ObjectType::Sequence,
                name,
                None,
                Some(describe_sequence(a)),
            ),
            Side::Both(e, a) => {
                let attrs = sequence_attrs(e)
                    .into_iter()
                    .zip(sequence_attrs(a))
                    .map(|((label, x), (_, y))| (label, x, y))
                    .collect::<Vec<_>>();
                if let Some((x, y)) = differing(&attrs) {
                    out.push(
                        DriftKind::SequenceChanged,
                        ObjectType::Sequence,
                        name,
                        Some(x),
                        Some(y),
                    );
                }
                out.ownership(
                    ObjectType::Sequence,
                    name,
                    (&e.owner, &a.owner),
                    (&e.acl, &a.acl),
                );
            }
        }
    }
    for (name, side) in pair(&expected.types, &actual.types) {
        let describe = |t: &crate::db::catalog::TypeDef| format!("{} {}", t.kind, t.definition);
        match side {
            Side::Missing(e) => out.push(
                DriftKind::MissingType,
                ObjectType::Type,
                name,
                Some(describe(e)),
                None,
            ),
            Side::Extra(a) => out.push(
                DriftKind::ExtraType,
                ObjectType::Type,
                name,
                None,
                Some(describe(a)),
            ),
            Side::Both(e, a) => {
                if e.kind != a.kind || e.definition != a.definition {
                    out.push(
                        DriftKind::TypeChanged,
                        ObjectType::Type,
                        name,
                        Some(describe(e)),
                        Some(describe(a)),
                    );
                }
                out.ownership(
                    ObjectType::Type,
                    name,
                    (&e.owner, &a.owner),
                    (&e.acl, &a.acl),
                );
            }
        }
    }
    for (name, side) in pair(&expected.extensions, &actual.extensions) {
        let describe = |x: &crate::db::catalog::Extension, version: bool| {
            if version {
                format!("schema {}, version {}", x.schema, x.version)
            } else {
                format!("schema {}", x.schema)
            }
        };
        let versions = options.same_database;
        match side {
            Side::Missing(e) => out.push(
                DriftKind::MissingExtension,
                ObjectType::Extension,
                name,
                Some(describe(e, versions)),
                None,
            ),
            Side::Extra(a) => out.push(
                DriftKind::ExtraExtension,
                ObjectType::Extension,
                name,
                None,
                Some(describe(a, versions)),
            ),
            Side::Both(e, a) => {
                if describe(e, versions) != describe(a, versions) {
                    out.push(
                        DriftKind::ExtensionChanged,
                        ObjectType::Extension,
                        name,
                        Some(describe(e, versions)),
                        Some(describe(a, versions)),
                    );
                }
            }
        }
    }
    out.items
}

struct Differences {
    items: Vec<Difference>,
    options: DiffOptions,
}

impl Differences {
    fn push(
        &mut self,
        kind: DriftKind,
        object_type: ObjectType,
        object: &str,
        expected: Option<String>,
        actual: Option<String>,
    ) {
        self.items.push(Difference {
            kind,
            object_type,
            object: object.to_owned(),
            expected,
            actual,
        });
    }

    fn ownership(
        &mut self,
        object_type: ObjectType,
        object: &str,
        owners: (&String, &String),
        acls: (&Option<String>, &Option<String>),
    ) {
        if !self.options.same_database {
            return;
        }
        if owners.0 != owners.1 {
            self.push(
                DriftKind::OwnerChanged,
                object_type,
                object,
                Some(owners.0.clone()),
                Some(owners.1.clone()),
            );
        }
        if acls.0 != acls.1 {
            self.push(
                DriftKind::GrantsChanged,
                object_type,
                object,
                acls.0.clone(),
                acls.1.clone(),
            );
        }
    }

    fn relation(&mut self, name: &str, e: &Relation, a: &Relation) {
        let object_type = if is_view(e) {
            ObjectType::View
        } else {
            ObjectType::Table
        };
        if is_view(e) || is_view(a) {
            if e.kind != a.kind || e.definition != a.definition {
                let describe = |r: &Relation| {
                    if e.kind == a.kind {
                        r.definition.clone().unwrap_or_default()
                    } else {
                        describe_relation(r)
                    }
                };
                self.push(
                    DriftKind::ViewChanged,
                    object_type,
                    name,
                    Some(describe(e)),
                    Some(describe(a)),
                );
            }
        } else {
            let attrs = table_attrs(e)
                .into_iter()
                .zip(table_attrs(a))
                .map(|((label, x), (_, y))| (label, x, y))
                .collect::<Vec<_>>();
            if let Some((x, y)) = differing(&attrs) {
                self.push(DriftKind::TableChanged, object_type, name, Some(x), Some(y));
            }
        }
        self.ownership(object_type, name, (&e.owner, &a.owner), (&e.acl, &a.acl));

        for (column, side) in pair(&e.columns, &a.columns) {
            let object = format!("{name}.{column}");
            match side {
                Side::Missing(x) => self.push(
                    DriftKind::MissingColumn,
                    ObjectType::Column,
                    &object,
                    Some(describe_column(x)),
                    None,
                ),
                Side::Extra(y) => self.push(
                    DriftKind::ExtraColumn,
                    ObjectType::Column,
                    &object,
                    None,
                    Some(describe_column(y)),
                ),
                Side::Both(x, y) => self.column(&object, x, y),
            }
        }
        for (constraint, side) in pair(&e.constraints, &a.constraints) {
            let describe = |c: &crate::db::catalog::Constraint| c.definition.clone();
            self.part(
                [
                    DriftKind::MissingConstraint,
                    DriftKind::ExtraConstraint,
                    DriftKind::ConstraintChanged,
                ],
                ObjectType::Constraint,
                &format!("{name}.{constraint}"),
                side,
                describe,
            );
        }
        for (index, side) in pair(&e.indexes, &a.indexes) {
            let describe = |i: &crate::db::catalog::Index| {
                if i.valid {
                    i.definition.clone()
                } else {
                    format!("{} (INVALID)", i.definition)
                }
            };
            self.part(
                [
                    DriftKind::MissingIndex,
                    DriftKind::ExtraIndex,
                    DriftKind::IndexChanged,
                ],
                ObjectType::Index,
                &format!("{name}.{index}"),
                side,
                describe,
            );
        }
        for (trigger, side) in pair(&e.triggers, &a.triggers) {
            let describe = |t: &crate::db::catalog::Trigger| {
                if t.enabled == "enabled" {
                    t.definition.clone()
                } else {
                    format!("{} ({})", t.definition, t.enabled.to_uppercase())
                }
            };
            self.part(
                [
                    DriftKind::MissingTrigger,
                    DriftKind::ExtraTrigger,
                    DriftKind::TriggerChanged,
                ],
                ObjectType::Trigger,
                &format!("{name}.{trigger}"),
                side,
                describe,
            );
        }
    }

    /// A constraint, index or trigger: compared by its description.
    fn part<T>(
        &mut self,
        [missing, extra, changed]: [DriftKind; 3],
        object_type: ObjectType,
        object: &str,
        side: Side<'_, T>,
        describe: impl Fn(&T) -> String,
    ) {
        match side {
            Side::Missing(x) => self.push(missing, object_type, object, Some(describe(x)), None),
            Side::Extra(y) => self.push(extra, object_type, object, None, Some(describe(y))),
            Side::Both(x, y) => {
                let (x, y) = (describe(x), describe(y));
                if x != y {
                    self.push(changed, object_type, object, Some(x), Some(y));
                }
            }
        }
    }

    fn column(&mut self, object: &str, e: &Column, a: &Column) {
        if e.data_type != a.data_type {
            self.push(
                DriftKind::ColumnTypeChanged,
                ObjectType::Column,
                object,
                Some(e.data_type.clone()),
                Some(a.data_type.clone()),
            );
        }
        if e.not_null != a.not_null {
            let text = |not_null: bool| if not_null { "NOT NULL" } else { "NULL" }.to_owned();
            self.push(
                DriftKind::NullabilityChanged,
                ObjectType::Column,
                object,
                Some(text(e.not_null)),
                Some(text(a.not_null)),
            );
        }
        if e.default != a.default {
            self.push(
                DriftKind::DefaultChanged,
                ObjectType::Column,
                object,
                e.default.clone(),
                a.default.clone(),
            );
        }
        let extras = |c: &Column| {
            vec![
                (
                    "",
                    c.identity
                        .as_ref()
                        .map(|i| format!("GENERATED {} AS IDENTITY", i.to_uppercase()))
                        .unwrap_or_else(|| "no identity".into()),
                ),
                (
                    "",
                    c.generated
                        .as_ref()
                        .map(|g| format!("GENERATED ALWAYS AS ({g}) STORED"))
                        .unwrap_or_else(|| "not generated".into()),
                ),
                (
                    "collation",
                    c.collation.clone().unwrap_or_else(|| "default".into()),
                ),
            ]
        };
        let attrs = extras(e)
            .into_iter()
            .zip(extras(a))
            .map(|((label, x), (_, y))| (label, x, y))
            .collect::<Vec<_>>();
        if let Some((x, y)) = differing(&attrs) {
            self.push(
                DriftKind::ColumnChanged,
                ObjectType::Column,
                object,
                Some(x),
                Some(y),
            );
        }
    }
}

enum Side<'a, T> {
    Missing(&'a T),
    Extra(&'a T),
    Both(&'a T, &'a T),
}

/// Walk two sorted maps together.
fn pair<'a, T>(
    expected: &'a BTreeMap<String, T>,
    actual: &'a BTreeMap<String, T>,
) -> Vec<(&'a str, Side<'a, T>)> {
    let mut out = Vec::new();
    for (name, e) in expected {
        match actual.get(name) {
            Some(a) => out.push((name.as_str(), Side::Both(e, a))),
            None => out.push((name.as_str(), Side::Missing(e))),
        }
    }
    for (name, a) in actual {
        if !expected.contains_key(name) {
            out.push((name.as_str(), Side::Extra(a)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// The differing attributes of an object, `label value; ...` per side.
fn differing(attrs: &[(&str, String, String)]) -> Option<(String, String)> {
    let render = |label: &str, value: &str| {
        if label.is_empty() {
            value.to_owned()
        } else {
            format!("{label} {value}")
        }
    };
    let changed: Vec<_> = attrs.iter().filter(|(_, x, y)| x != y).collect();
    if changed.is_empty() {
        return None;
    }
    let side = |expected: bool| {
        changed
            .iter()
            .map(|(label, x, y)| render(label, if expected { x } else { y }))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some((side(true), side(false)))
}

fn is_view(r: &Relation) -> bool {
    r.kind.ends_with("view")
}

fn security(definer: bool) -> &'static str {
    if definer {
        "SECURITY DEFINER"
    } else {
        "SECURITY INVOKER"
    }
}

fn short_hash(hash: Option<&str>) -> String {
    hash.map_or_else(|| "none".to_owned(), |h| h.chars().take(12).collect())
}

fn describe_relation(r: &Relation) -> String {
    match (&r.definition, r.columns.len()) {
        (Some(_), _) => r.kind.clone(),
        (None, 1) => format!("{} (1 column)", r.kind),
        (None, n) => format!("{} ({n} columns)", r.kind),
    }
}

fn table_attrs(r: &Relation) -> Vec<(&'static str, String)> {
    let flag = |on: bool, text: &str| {
        if on {
            text.to_owned()
        } else {
            format!("not {text}")
        }
    };
    vec![
        ("", r.kind.clone()),
        ("", flag(r.unlogged, "UNLOGGED")),
        ("", flag(r.row_security, "ROW LEVEL SECURITY")),
        ("", flag(r.force_row_security, "FORCE ROW LEVEL SECURITY")),
        (
            "partition by",
            r.partition_key.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "partition",
            r.partition_bound.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "inherits",
            if r.inherits.is_empty() {
                "none".into()
            } else {
                r.inherits.join(", ")
            },
        ),
    ]
}

/// A column as it would be declared: type, `NOT NULL`, default, identity,
/// generation, collation.
pub fn describe_column(c: &Column) -> String {
    let mut text = c.data_type.clone();
    if let Some(collation) = &c.collation {
        let _ = write!(text, " COLLATE {collation}");
    }
    if c.not_null {
        text.push_str(" NOT NULL");
    }
    if let Some(default) = &c.default {
        let _ = write!(text, " DEFAULT {default}");
    }
    if let Some(identity) = &c.identity {
        let _ = write!(text, " GENERATED {} AS IDENTITY", identity.to_uppercase());
    }
    if let Some(generated) = &c.generated {
        let _ = write!(text, " GENERATED ALWAYS AS ({generated}) STORED");
    }
    text
}

fn describe_function(f: &Function) -> String {
    let mut text = format!("{} ({})", f.kind, f.arguments);
    if let Some(returns) = &f.returns {
        let _ = write!(text, " returns {returns}");
    }
    let _ = write!(text, " language {} {}", f.language, f.volatility);
    if f.security_definer {
        text.push_str(" SECURITY DEFINER");
    }
    text
}

fn sequence_attrs(s: &Sequence) -> Vec<(&'static str, String)> {
    vec![
        ("as", s.data_type.clone()),
        ("start", s.start.to_string()),
        ("increment", s.increment.to_string()),
        ("minvalue", s.min.to_string()),
        ("maxvalue", s.max.to_string()),
        ("cache", s.cache.to_string()),
        ("", if s.cycle { "CYCLE" } else { "NO CYCLE" }.to_owned()),
        (
            "owned by",
            s.owned_by.clone().unwrap_or_else(|| "none".into()),
        ),
    ]
}

fn describe_sequence(s: &Sequence) -> String {
    sequence_attrs(s)
        .into_iter()
        .map(|(label, value)| {
            if label.is_empty() {
                value
            } else {
                format!("{label} {value}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Snapshots the diff's tests and the report's rendering tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::db::catalog::{Constraint, Extension, Index, Trigger, TypeDef};

    pub(crate) fn column(data_type: &str, not_null: bool, default: Option<&str>) -> Column {
        Column {
            data_type: data_type.into(),
            not_null,
            default: default.map(str::to_owned),
            generated: None,
            identity: None,
            collation: None,
        }
    }

    pub(crate) fn table(columns: &[(&str, Column)]) -> Relation {
        Relation {
            kind: "table".into(),
            unlogged: false,
            row_security: false,
            force_row_security: false,
            partition_key: None,
            partition_bound: None,
            inherits: Vec::new(),
            definition: None,
            owner: "app".into(),
            acl: None,
            columns: columns
                .iter()
                .map(|(n, c)| ((*n).to_owned(), c.clone()))
                .collect(),
            constraints: BTreeMap::new(),
            indexes: BTreeMap::new(),
            triggers: BTreeMap::new(),
        }
    }

    pub(crate) fn function(body: &str) -> Function {
        Function {
            kind: "function".into(),
            arguments: "x integer".into(),
            returns: Some("integer".into()),
            language: "sql".into(),
            volatility: "volatile".into(),
            security_definer: false,
            definition_sha256: Some(body.into()),
            owner: "app".into(),
            acl: None,
        }
    }

    /// A small schema: users (id, email, role), an index, a check, a view,
    /// a function, a sequence, a type and an extension.
    pub(crate) fn base() -> Snapshot {
        let mut users = table(&[
            ("id", column("uuid", true, Some("gen_random_uuid()"))),
            ("email", column("text", true, None)),
            (
                "role",
                column(
                    "character varying(20)",
                    true,
                    Some("'student'::character varying"),
                ),
            ),
        ]);
        users.constraints.insert(
            "users_pkey".into(),
            Constraint {
                constraint_type: "primary key".into(),
                definition: "PRIMARY KEY (id)".into(),
            },
        );
        users.indexes.insert(
            "users_email_idx".into(),
            Index {
                definition: "CREATE INDEX users_email_idx ON public.users USING btree (email)"
                    .into(),
                valid: true,
            },
        );
        users.triggers.insert(
            "users_touch".into(),
            Trigger {
                definition: "CREATE TRIGGER users_touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.touch()".into(),
                enabled: "enabled".into(),
            },
        );
        let mut view = table(&[]);
        view.kind = "view".into();
        view.definition = Some(" SELECT users.id\n   FROM public.users;".into());
        let mut s = Snapshot::empty(&["public".to_owned()]);
        s.relations.insert("public.users".into(), users);
        s.relations.insert("public.user_ids".into(), view);
        s.functions
            .insert("public.f(integer)".into(), function("aaaaaaaaaaaaaaaa"));
        s.sequences.insert(
            "public.ticket_seq".into(),
            Sequence {
                data_type: "bigint".into(),
                start: 1,
                increment: 1,
                min: 1,
                max: i64::MAX,
                cache: 1,
                cycle: false,
                owned_by: None,
                owner: "app".into(),
                acl: None,
            },
        );
        s.types.insert(
            "public.mood".into(),
            TypeDef {
                kind: "enum".into(),
                definition: "'happy', 'sad'".into(),
                owner: "app".into(),
                acl: None,
            },
        );
        s.extensions.insert(
            "pg_trgm".into(),
            Extension {
                schema: "public".into(),
                version: "1.6".into(),
            },
        );
        s
    }

    pub(crate) fn users(s: &mut Snapshot) -> &mut Relation {
        s.relations.get_mut("public.users").unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::db::catalog::Constraint;

    fn kinds(expected: &Snapshot, actual: &Snapshot) -> Vec<(String, String)> {
        diff(expected, actual, DiffOptions::default())
            .into_iter()
            .map(|d| (d.kind.as_str().to_owned(), d.object))
            .collect()
    }

    #[test]
    fn identical_snapshots_have_no_drift() {
        assert!(diff(
            &base(),
            &base(),
            DiffOptions {
                same_database: true
            }
        )
        .is_empty());
    }

    #[test]
    fn each_change_is_exactly_one_item() {
        type Edit = fn(&mut Snapshot);
        let cases: Vec<(&str, Edit, &str, &str)> = vec![
            (
                "add a column",
                |s| {
                    users(s)
                        .columns
                        .insert("nickname".into(), column("text", false, None));
                },
                "extra_column",
                "public.users.nickname",
            ),
            (
                "drop a column",
                |s| {
                    users(s).columns.remove("email");
                },
                "missing_column",
                "public.users.email",
            ),
            (
                "change a type",
                |s| {
                    users(s).columns.get_mut("email").unwrap().data_type =
                        "character varying(200)".into()
                },
                "column_type_changed",
                "public.users.email",
            ),
            (
                "drop NOT NULL",
                |s| users(s).columns.get_mut("email").unwrap().not_null = false,
                "nullability_changed",
                "public.users.email",
            ),
            (
                "change a default",
                |s| {
                    users(s).columns.get_mut("role").unwrap().default =
                        Some("'tutor'::character varying".into())
                },
                "default_changed",
                "public.users.role",
            ),
            (
                "change a collation",
                |s| {
                    users(s).columns.get_mut("id").unwrap().collation =
                        Some("pg_catalog.\"C\"".into())
                },
                "column_changed",
                "public.users.id",
            ),
            (
                "drop an index",
                |s| {
                    users(s).indexes.remove("users_email_idx");
                },
                "missing_index",
                "public.users.users_email_idx",
            ),
            (
                "an index left invalid",
                |s| users(s).indexes.get_mut("users_email_idx").unwrap().valid = false,
                "index_changed",
                "public.users.users_email_idx",
            ),
            (
                "add a check constraint",
                |s| {
                    users(s).constraints.insert(
                        "users_email_check".into(),
                        Constraint {
                            constraint_type: "check".into(),
                            definition: "CHECK ((email <> ''::text))".into(),
                        },
                    );
                },
                "extra_constraint",
                "public.users.users_email_check",
            ),
            (
                "disable a trigger",
                |s| users(s).triggers.get_mut("users_touch").unwrap().enabled = "disabled".into(),
                "trigger_changed",
                "public.users.users_touch",
            ),
            (
                "add a table",
                |s| {
                    s.relations.insert(
                        "public.audit".into(),
                        table(&[("id", column("bigint", true, None))]),
                    );
                },
                "extra_table",
                "public.audit",
            ),
            (
                "drop a table",
                |s| {
                    s.relations.remove("public.users");
                },
                "missing_table",
                "public.users",
            ),
            (
                "enable row level security",
                |s| users(s).row_security = true,
                "table_changed",
                "public.users",
            ),
            (
                "replace a view",
                |s| {
                    s.relations.get_mut("public.user_ids").unwrap().definition =
                        Some(" SELECT users.email\n   FROM public.users;".into())
                },
                "view_changed",
                "public.user_ids",
            ),
            (
                "replace a function body",
                |s| {
                    s.functions
                        .get_mut("public.f(integer)")
                        .unwrap()
                        .definition_sha256 = Some("bbbbbbbbbbbbbbbb".into())
                },
                "function_changed",
                "public.f(integer)",
            ),
            (
                "add an overload",
                |s| {
                    s.functions.insert("public.f(text)".into(), function("c"));
                },
                "extra_function",
                "public.f(text)",
            ),
            (
                "restart a sequence's increment",
                |s| s.sequences.get_mut("public.ticket_seq").unwrap().increment = 10,
                "sequence_changed",
                "public.ticket_seq",
            ),
            (
                "add an enum label",
                |s| {
                    s.types.get_mut("public.mood").unwrap().definition =
                        "'happy', 'sad', 'meh'".into()
                },
                "type_changed",
                "public.mood",
            ),
            (
                "drop an extension",
                |s| {
                    s.extensions.remove("pg_trgm");
                },
                "missing_extension",
                "pg_trgm",
            ),
        ];
        for (what, edit, kind, object) in cases {
            let mut actual = base();
            edit(&mut actual);
            assert_eq!(
                kinds(&base(), &actual),
                [(kind.to_owned(), object.to_owned())],
                "{what}"
            );
        }
    }

    #[test]
    fn a_replaced_body_names_the_hashes_and_other_attributes_replace_them() {
        let mut actual = base();
        actual
            .functions
            .get_mut("public.f(integer)")
            .unwrap()
            .definition_sha256 = Some("bbbbbbbbbbbbbbbb".into());
        let d = &diff(&base(), &actual, DiffOptions::default())[0];
        assert_eq!(d.expected.as_deref(), Some("body sha256 aaaaaaaaaaaa"));
        assert_eq!(d.actual.as_deref(), Some("body sha256 bbbbbbbbbbbb"));

        let f = actual.functions.get_mut("public.f(integer)").unwrap();
        f.volatility = "stable".into();
        let d = &diff(&base(), &actual, DiffOptions::default())[0];
        assert_eq!(d.expected.as_deref(), Some("volatile"));
        assert_eq!(d.actual.as_deref(), Some("stable"));
    }

    #[test]
    fn owners_grants_and_versions_count_only_within_one_database() {
        let mut actual = base();
        users(&mut actual).owner = "postgres".into();
        users(&mut actual).acl = Some("app=arwdDxt/app,report=r/app".into());
        actual.extensions.get_mut("pg_trgm").unwrap().version = "1.5".into();
        assert!(kinds(&base(), &actual).is_empty());
        let same = diff(
            &base(),
            &actual,
            DiffOptions {
                same_database: true,
            },
        );
        let kinds: Vec<&str> = same.iter().map(|d| d.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["owner_changed", "grants_changed", "extension_changed"]
        );
    }

    #[test]
    fn a_dropped_table_is_one_item_not_one_per_part() {
        let mut actual = base();
        actual.relations.remove("public.users");
        let items = diff(&base(), &actual, DiffOptions::default());
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].expected.as_deref(), Some("table (3 columns)"));
    }

    #[test]
    fn every_kind_has_a_unique_name_that_parses_back() {
        let mut names: Vec<&str> = DriftKind::ALL.iter().map(|k| k.as_str()).collect();
        for kind in DriftKind::ALL {
            assert_eq!(DriftKind::parse(kind.as_str()), Some(kind));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DriftKind::ALL.len());
    }

    #[test]
    fn the_report_spells_each_value_as_its_name() {
        let json = |value: serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        for kind in DriftKind::ALL {
            assert_eq!(json(serde_json::json!(kind)), kind.as_str());
        }
        for object_type in ObjectType::ALL {
            assert_eq!(json(serde_json::json!(object_type)), object_type.as_str());
        }
        for aspect in Aspect::ALL {
            assert_eq!(json(serde_json::json!(aspect)), aspect.as_str());
        }
    }

    #[test]
    fn every_kind_is_documented() {
        let docs = include_str!("drift.rs");
        let table = docs.split("//! | kind |").nth(1).unwrap_or_default();
        for kind in DriftKind::ALL {
            assert!(
                table.contains(&format!("`{}`", kind.as_str())),
                "{} is missing from the module documentation",
                kind.as_str()
            );
        }
    }
}
