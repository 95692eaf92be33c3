//! Catalog introspection: the managed schemas of a database as a
//! deterministic, sorted, serialisable [`Snapshot`], and its SHA-256
//! fingerprint.
//!
//! This is the catalog seam, the part of [`crate::db`] (the folder that holds
//! the SQL slipway sends) that reads the schema. The snapshot is read with a **fixed number of queries**
//! ([`QUERY_COUNT`], one per object class, each answering one `json_agg` row),
//! whatever the size of the schema, and they travel in one simple-query
//! message with whatever else the caller sends (the history read, or the tail
//! of the apply batch): a drift check costs no extra round trip. Catalog
//! queries that loop per table are how introspection gets slow on big
//! schemas (one query per table is 1,000 round trips at 1,000 tables).
//!
//! The queries run with `search_path` set to empty for the rest of the
//! (implicit or explicit) transaction: `pg_get_indexdef`, `pg_get_viewdef`,
//! `format_type` and friends qualify a name only when it is not visible on the
//! search path, so an empty one makes every definition fully qualified and
//! the text independent of the session's settings
//! (<https://www.postgresql.org/docs/current/functions-info.html>, "the
//! result is schema-qualified only if needed").
//!
//! What a snapshot holds, per managed schema: tables, partitioned and foreign
//! tables (columns with type, nullability, default, identity, generated
//! expression and collation; constraints by definition; indexes by
//! `pg_get_indexdef` and validity; triggers; partitioning; inheritance; row
//! security), views and materialized views (definition), functions and
//! procedures (signature, language, result, volatility, security, a SHA-256
//! of `pg_get_functiondef`), sequences, enum / domain / composite / range
//! types, extensions installed into the schema, and owners and grants.
//! Objects that belong to an extension are left out (the extension stands
//! for them), as are slipway's own tables. Column order is not recorded:
//! migrations never depend on it, and a dropped-and-re-added column would
//! otherwise shift every later column.
//!
//! The deparsing functions take an `ACCESS SHARE` lock on each table they
//! describe, held to the end of the transaction (as `pg_dump` does): a table
//! held `ACCESS EXCLUSIVE` by a long transaction makes the read wait, so the
//! caller bounds it with `CatalogQuery::lock_timeout`, and one table per
//! lock slot counts against `max_locks_per_transaction`.
//!
//! Needs PostgreSQL 12 or later (`attgenerated`, `prokind`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::sql::{database_error, hex, quote_identifier, quote_literal};
use crate::error::{Error, Result};

/// Version of the snapshot's shape. A snapshot of another format is not
/// compared (new fields would show up as drift that is not there); it is
/// replaced at the next apply, or regenerated with `slipway snapshot`.
pub const FORMAT: u32 = 1;

/// How many catalog queries a snapshot takes — always, whatever the schema's
/// size. `tests/integration/drift.rs` counts them on a small and a large schema.
pub const QUERY_COUNT: usize = 9;

/// Name of the first column of every catalog query's row.
pub(super) const CATALOG_MARKER: &str = "slipway_catalog";

/// The catalog of the managed schemas at one moment.
///
/// Maps are keyed by qualified name (`public.users`, `public.f(integer)`),
/// quoted like `quote_ident` where needed, and sorted, so the JSON and the
/// fingerprint depend on the schema only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`FORMAT`] of the code that wrote it.
    pub format: u32,
    /// The managed schemas the snapshot covers, sorted.
    pub schemas: Vec<String>,
    /// Tables, partitioned and foreign tables, views and materialized views.
    #[serde(default)]
    pub relations: BTreeMap<String, Relation>,
    /// Functions, procedures and aggregates, keyed by signature.
    #[serde(default)]
    pub functions: BTreeMap<String, Function>,
    /// Free-standing and `serial` sequences (identity sequences belong to their column).
    #[serde(default)]
    pub sequences: BTreeMap<String, Sequence>,
    /// Enum, domain, composite and range types.
    #[serde(default)]
    pub types: BTreeMap<String, TypeDef>,
    /// Extensions installed into a managed schema, by name.
    #[serde(default)]
    pub extensions: BTreeMap<String, Extension>,
}

/// A table-like relation or a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// `table`, `partitioned table`, `foreign table`, `view` or `materialized view`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unlogged: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub row_security: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_row_security: bool,
    /// `PARTITION BY` of a partitioned table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// `FOR VALUES ...` of a partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_bound: Option<String>,
    /// Parents (partitioned table, or `INHERITS`), in inheritance order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherits: Vec<String>,
    /// Query of a view or materialized view (`pg_get_viewdef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    pub owner: String,
    /// Grants as `aclitem`s, sorted; `None` for the default privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, Column>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, Constraint>,
    /// Indexes not backing a primary-key, unique or exclusion constraint (the
    /// constraint stands for those).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub indexes: BTreeMap<String, Index>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers: BTreeMap<String, Trigger>,
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// `format_type` with modifiers, e.g. `character varying(20)`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub not_null: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Expression of a `GENERATED ALWAYS AS (...) STORED` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    /// `always` or `by default` for identity columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Collation, when it is not the type's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

/// A table constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// `primary key`, `foreign key`, `unique`, `check`, `exclusion` or `trigger`.
    #[serde(rename = "type")]
    pub constraint_type: String,
    /// `pg_get_constraintdef`.
    pub definition: String,
}

/// An index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// `pg_get_indexdef`.
    pub definition: String,
    /// False after a failed `CREATE INDEX CONCURRENTLY`.
    pub valid: bool,
}

/// A trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// `pg_get_triggerdef`.
    pub definition: String,
    /// `enabled`, `disabled`, `replica` or `always`.
    pub enabled: String,
}

/// A function, procedure or aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// `function`, `procedure`, `aggregate` or `window`.
    pub kind: String,
    /// Argument list with names and defaults' absence (identity arguments).
    pub arguments: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns: Option<String>,
    pub language: String,
    /// `volatile`, `stable` or `immutable`.
    pub volatility: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub security_definer: bool,
    /// SHA-256 of `pg_get_functiondef` (body, settings, attributes); `None`
    /// for aggregates, which have no such text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_sha256: Option<String>,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
}

/// A sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    #[serde(rename = "type")]
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
    /// `schema.table.column` of a `serial` column or `OWNED BY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
}

/// An enum, domain, composite or range type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDef {
    /// `enum`, `domain`, `composite` or `range`.
    pub kind: String,
    /// Labels, base type and constraints, attributes, or subtype.
    pub definition: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
}

/// An installed extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub schema: String,
    /// Differs between servers; compared only against the same database.
    pub version: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Snapshot {
    /// An empty snapshot of `schemas`.
    pub(crate) fn empty(schemas: &[String]) -> Snapshot {
        let mut schemas = schemas.to_vec();
        schemas.sort();
        schemas.dedup();
        Snapshot {
            format: FORMAT,
            schemas,
            relations: BTreeMap::new(),
            functions: BTreeMap::new(),
            sequences: BTreeMap::new(),
            types: BTreeMap::new(),
            extensions: BTreeMap::new(),
        }
    }

    /// The canonical form: compact JSON, maps sorted by key, fields in
    /// declaration order.
    pub fn canonical_json(&self) -> String {
        // Serialising plain structs and BTreeMaps of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 of [`Snapshot::canonical_json`], lower-case hex.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The committed form: pretty JSON with a trailing newline, byte-for-byte
    /// the same for the same schema (so `git diff` shows schema changes).
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parse a snapshot written by [`Snapshot::to_pretty_json`] or stored by
    /// an apply; `what` names it in the error.
    pub fn from_json(text: &str, what: &str) -> Result<Snapshot> {
        let snapshot: Snapshot = serde_json::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{what} is not a slipway schema snapshot ({e}); regenerate it with `slipway snapshot`"
            ))
        })?;
        Ok(snapshot)
    }

    /// Number of tables (not views).
    pub fn table_count(&self) -> usize {
        self.relations
            .values()
            .filter(|r| !r.kind.contains("view"))
            .count()
    }
}

/// An object a repeatable script created. Repeatable scripts are written
/// against the latest schema, so a rollback drops these first (a view over a
/// table a rollback script drops would otherwise block it) and the next
/// apply to the latest version creates them again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedObject {
    /// `view`, `materialized view`, `table`, `partitioned table`, `foreign
    /// table`, `index`, `trigger`, `function`, `sequence`, `type` or `domain`.
    pub kind: String,
    /// As keyed in a [`Snapshot`]: `schema.name`, or a function's signature.
    pub object: String,
    /// The table (`schema.name`) of a trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Snapshot {
    /// The objects present here and absent from `before`: what the scripts
    /// run in between created. Indexes and triggers of a created table come
    /// with it and are not listed apart.
    pub(crate) fn created_since(&self, before: &Snapshot) -> Vec<OwnedObject> {
        let mut out = Vec::new();
        let owned = |kind: &str, object: &str, table: Option<&str>| OwnedObject {
            kind: kind.to_owned(),
            object: object.to_owned(),
            table: table.map(str::to_owned),
        };
        for (name, relation) in &self.relations {
            let Some(old) = before.relations.get(name) else {
                out.push(owned(&relation.kind, name, None));
                continue;
            };
            let schema = key_parts(name).into_iter().next().unwrap_or_default();
            for index in relation.indexes.keys() {
                if !old.indexes.contains_key(index) {
                    let index_name = key_parts(index).into_iter().next().unwrap_or_default();
                    out.push(owned("index", &qualified(&schema, &index_name), None));
                }
            }
            for trigger in relation.triggers.keys() {
                if !old.triggers.contains_key(trigger) {
                    out.push(owned("trigger", trigger, Some(name)));
                }
            }
        }
        for name in self.functions.keys() {
            if !before.functions.contains_key(name) {
                out.push(owned("function", name, None));
            }
        }
        for name in self.sequences.keys() {
            if !before.sequences.contains_key(name) {
                out.push(owned("sequence", name, None));
            }
        }
        for (name, def) in &self.types {
            if !before.types.contains_key(name) {
                let kind = if def.kind == "domain" {
                    "domain"
                } else {
                    "type"
                };
                out.push(owned(kind, name, None));
            }
        }
        out
    }

    /// Whether `object` exists in this snapshot.
    pub(crate) fn holds(&self, object: &OwnedObject) -> bool {
        match object.kind.as_str() {
            "index" => {
                let parts = key_parts(&object.object);
                let (Some(schema), Some(name)) = (parts.first(), parts.get(1)) else {
                    return false;
                };
                let prefix = format!("{}.", ident(schema));
                self.relations
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .any(|(_, r)| r.indexes.contains_key(&ident(name)))
            }
            "trigger" => object
                .table
                .as_ref()
                .and_then(|t| self.relations.get(t))
                .is_some_and(|r| r.triggers.contains_key(&object.object)),
            "function" => self.functions.contains_key(&object.object),
            "sequence" => self.sequences.contains_key(&object.object),
            "type" | "domain" => self.types.contains_key(&object.object),
            _ => self.relations.contains_key(&object.object),
        }
    }
}

/// The unquoted parts of a dotted key written with [`ident`] / [`qualified`].
pub(crate) fn key_parts(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = key.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// The catalog queries for one set of managed schemas.
#[derive(Debug, Clone)]
pub struct CatalogQuery {
    schemas: Vec<String>,
    /// Relations left out: slipway's own tables when they live in a managed schema.
    excluded: Vec<String>,
    /// `SET LOCAL lock_timeout` for the read; `None` keeps the session's.
    lock_timeout: Option<Duration>,
}

impl CatalogQuery {
    /// Queries covering `schemas`, leaving out slipway's tables in `history_schema`.
    pub fn new(schemas: &[String], history_schema: &str) -> CatalogQuery {
        let mut schemas = schemas.to_vec();
        schemas.sort();
        schemas.dedup();
        let excluded = ["history", "schema_snapshot", "repeatable_objects"]
            .iter()
            .map(|table| qualified(history_schema, table))
            .collect();
        CatalogQuery {
            schemas,
            excluded,
            lock_timeout: None,
        }
    }

    /// Give up on a table lock after `timeout` (see the module docs).
    pub(crate) fn lock_timeout(mut self, timeout: Duration) -> CatalogQuery {
        self.lock_timeout = Some(timeout);
        self
    }

    /// The statements, `;`-terminated, to append to a simple-query message:
    /// the `search_path` setting, then [`QUERY_COUNT`] queries, each
    /// answering one row `(slipway_catalog, json)`.
    pub(super) fn sql(&self) -> String {
        let schemas = format!(
            "ARRAY[{}]::text[]",
            self.schemas
                .iter()
                .map(|s| quote_literal(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut sql = String::with_capacity(9000);
        // Local to the transaction, so the migrations of a batch (which run
        // before) and the session after it keep their own search_path.
        sql.push_str("SELECT set_config('search_path', '', true) AS slipway_search_path");
        if let Some(timeout) = self.lock_timeout {
            sql.push_str(&format!(
                ", set_config('lock_timeout', '{}', true)",
                timeout.as_millis()
            ));
        }
        sql.push_str(";\n");
        for query in QUERIES {
            sql.push_str(&query.replace("$SCHEMAS", &schemas));
            sql.push_str(";\n");
        }
        sql
    }

    /// A collector for the rows of [`CatalogQuery::sql`].
    pub(super) fn collector(&self) -> Collector {
        Collector {
            schemas: self.schemas.clone(),
            excluded: self.excluded.clone(),
            parts: Parts::default(),
            queries: 0,
        }
    }
}

/// A snapshot read on its own, with what it cost.
#[derive(Debug, Clone)]
pub struct CatalogRead {
    pub snapshot: Snapshot,
    /// Catalog queries the server answered.
    pub queries: usize,
    /// Messages sent to the server.
    pub round_trips: usize,
}

/// Read the catalog of `query`'s schemas in one round trip.
pub async fn read(client: &Client, query: &CatalogQuery) -> Result<CatalogRead> {
    let mut collector = query.collector();
    let stream = client
        .simple_query_raw(&query.sql())
        .await
        .map_err(|e| database_error("reading the catalog", &e))?;
    futures_util::pin_mut!(stream);
    while let Some(message) = stream.next().await {
        match message {
            Ok(SimpleQueryMessage::Row(row)) if is_catalog_row(&row) => collector.accept(&row)?,
            Ok(_) => {}
            Err(e) => return Err(database_error("reading the catalog", &e)),
        }
    }
    let queries = collector.queries();
    Ok(CatalogRead {
        snapshot: collector.finish()?,
        queries,
        round_trips: 1,
    })
}

/// Whether a row of a mixed message answers a catalog query.
fn is_catalog_row(row: &SimpleQueryRow) -> bool {
    row.columns().first().map(|c| c.name()) == Some(CATALOG_MARKER)
}

/// Gathers the answers of the catalog queries into a [`Snapshot`].
#[derive(Debug)]
pub(super) struct Collector {
    schemas: Vec<String>,
    excluded: Vec<String>,
    parts: Parts,
    queries: usize,
}

#[derive(Debug, Default)]
struct Parts {
    relations: Option<Vec<RelationRow>>,
    columns: Option<Vec<ColumnRow>>,
    constraints: Option<Vec<ConstraintRow>>,
    indexes: Option<Vec<IndexRow>>,
    triggers: Option<Vec<TriggerRow>>,
    functions: Option<Vec<FunctionRow>>,
    sequences: Option<Vec<SequenceRow>>,
    types: Option<Vec<TypeRow>>,
    extensions: Option<Vec<ExtensionRow>>,
}

impl Collector {
    /// Take one `(slipway_catalog, json)` row.
    pub(super) fn accept(&mut self, row: &SimpleQueryRow) -> Result<()> {
        self.accept_text(row.get(0).unwrap_or_default(), row.get(1).unwrap_or("[]"))
    }

    /// Take the answer `json` of the query for `class`.
    pub(super) fn accept_text(&mut self, class: &str, json: &str) -> Result<()> {
        fn parse<T: for<'de> Deserialize<'de>>(class: &str, json: &str) -> Result<Option<T>> {
            serde_json::from_str(json).map(Some).map_err(|e| {
                Error::Internal(format!(
                    "the catalog query for {class} answered unexpected JSON: {e}"
                ))
            })
        }
        let parts = &mut self.parts;
        match class {
            "relations" => parts.relations = parse(class, json)?,
            "columns" => parts.columns = parse(class, json)?,
            "constraints" => parts.constraints = parse(class, json)?,
            "indexes" => parts.indexes = parse(class, json)?,
            "triggers" => parts.triggers = parse(class, json)?,
            "functions" => parts.functions = parse(class, json)?,
            "sequences" => parts.sequences = parse(class, json)?,
            "types" => parts.types = parse(class, json)?,
            "extensions" => parts.extensions = parse(class, json)?,
            other => {
                return Err(Error::Internal(format!(
                    "unexpected catalog result '{other}'"
                )))
            }
        }
        self.queries += 1;
        Ok(())
    }

    /// Catalog queries answered so far.
    fn queries(&self) -> usize {
        self.queries
    }

    /// Whether every catalog query has answered.
    fn is_complete(&self) -> bool {
        let p = &self.parts;
        p.relations.is_some()
            && p.columns.is_some()
            && p.constraints.is_some()
            && p.indexes.is_some()
            && p.triggers.is_some()
            && p.functions.is_some()
            && p.sequences.is_some()
            && p.types.is_some()
            && p.extensions.is_some()
    }

    /// Assemble the snapshot; an error when a query did not answer.
    pub(super) fn finish(self) -> Result<Snapshot> {
        if !self.is_complete() {
            return Err(Error::Internal(format!(
                "only {} of {QUERY_COUNT} catalog queries answered",
                self.queries
            )));
        }
        let p = self.parts;
        let mut snapshot = Snapshot::empty(&self.schemas);
        for r in p.relations.unwrap_or_default() {
            snapshot
                .relations
                .insert(qualified(&r.schema, &r.name), r.into_relation());
        }
        // Columns, constraints, indexes and triggers of a relation the first
        // query did not list (created concurrently, between two queries of
        // the message) are left out with it.
        for c in p.columns.unwrap_or_default() {
            if let Some(r) = snapshot.relations.get_mut(&qualified(&c.schema, &c.table)) {
                r.columns.insert(
                    ident(&c.name),
                    Column {
                        data_type: c.data_type,
                        not_null: c.not_null,
                        default: c.default,
                        generated: c.generated,
                        identity: c.identity,
                        collation: c.collation,
                    },
                );
            }
        }
        for c in p.constraints.unwrap_or_default() {
            if let Some(r) = snapshot.relations.get_mut(&qualified(&c.schema, &c.table)) {
                r.constraints.insert(
                    ident(&c.name),
                    Constraint {
                        constraint_type: constraint_type(&c.constraint_type).to_owned(),
                        definition: c.definition,
                    },
                );
            }
        }
        for i in p.indexes.unwrap_or_default() {
            if let Some(r) = snapshot.relations.get_mut(&qualified(&i.schema, &i.table)) {
                r.indexes.insert(
                    ident(&i.name),
                    Index {
                        definition: i.definition,
                        valid: i.valid,
                    },
                );
            }
        }
        for t in p.triggers.unwrap_or_default() {
            if let Some(r) = snapshot.relations.get_mut(&qualified(&t.schema, &t.table)) {
                r.triggers.insert(
                    ident(&t.name),
                    Trigger {
                        definition: t.definition,
                        enabled: trigger_enabled(&t.enabled).to_owned(),
                    },
                );
            }
        }
        for f in p.functions.unwrap_or_default() {
            snapshot.functions.insert(
                f.signature,
                Function {
                    kind: function_kind(&f.kind).to_owned(),
                    arguments: f.arguments,
                    returns: f.returns,
                    language: f.language,
                    volatility: volatility(&f.volatility).to_owned(),
                    security_definer: f.security_definer,
                    definition_sha256: f.definition_sha256,
                    owner: f.owner,
                    acl: f.acl,
                },
            );
        }
        for s in p.sequences.unwrap_or_default() {
            snapshot.sequences.insert(
                qualified(&s.schema, &s.name),
                Sequence {
                    data_type: s.data_type,
                    start: s.start,
                    increment: s.increment,
                    min: s.min,
                    max: s.max,
                    cache: s.cache,
                    cycle: s.cycle,
                    owned_by: s.owned_by,
                    owner: s.owner,
                    acl: s.acl,
                },
            );
        }
        for t in p.types.unwrap_or_default() {
            snapshot.types.insert(
                qualified(&t.schema, &t.name),
                TypeDef {
                    kind: type_kind(&t.kind).to_owned(),
                    definition: t.definition.unwrap_or_default(),
                    owner: t.owner,
                    acl: t.acl,
                },
            );
        }
        for e in p.extensions.unwrap_or_default() {
            snapshot.extensions.insert(
                e.name,
                Extension {
                    schema: e.schema,
                    version: e.version,
                },
            );
        }
        for excluded in &self.excluded {
            snapshot.relations.remove(excluded);
        }
        Ok(snapshot)
    }
}

/// `name` quoted like PostgreSQL's `quote_ident` when it is not a plain
/// lower-case identifier (keywords aside), so a key splits unambiguously on dots.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_owned()
    } else {
        quote_identifier(name)
    }
}

/// `schema.name`, each part quoted when needed.
pub(super) fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

fn relation_kind(relkind: &str) -> &'static str {
    match relkind {
        "p" => "partitioned table",
        "f" => "foreign table",
        "v" => "view",
        "m" => "materialized view",
        _ => "table",
    }
}

fn constraint_type(contype: &str) -> &'static str {
    match contype {
        "p" => "primary key",
        "f" => "foreign key",
        "u" => "unique",
        "c" => "check",
        "x" => "exclusion",
        _ => "trigger",
    }
}

fn trigger_enabled(tgenabled: &str) -> &'static str {
    match tgenabled {
        "D" => "disabled",
        "R" => "replica",
        "A" => "always",
        _ => "enabled",
    }
}

fn function_kind(prokind: &str) -> &'static str {
    match prokind {
        "p" => "procedure",
        "a" => "aggregate",
        "w" => "window",
        _ => "function",
    }
}

fn volatility(provolatile: &str) -> &'static str {
    match provolatile {
        "i" => "immutable",
        "s" => "stable",
        _ => "volatile",
    }
}

fn type_kind(typtype: &str) -> &'static str {
    match typtype {
        "e" => "enum",
        "d" => "domain",
        "r" => "range",
        _ => "composite",
    }
}

#[derive(Debug, Deserialize)]
struct RelationRow {
    schema: String,
    name: String,
    kind: String,
    unlogged: bool,
    row_security: bool,
    force_row_security: bool,
    partition_key: Option<String>,
    partition_bound: Option<String>,
    parents: Option<Vec<String>>,
    definition: Option<String>,
    owner: String,
    acl: Option<String>,
}

impl RelationRow {
    fn into_relation(self) -> Relation {
        Relation {
            kind: relation_kind(&self.kind).to_owned(),
            unlogged: self.unlogged,
            row_security: self.row_security,
            force_row_security: self.force_row_security,
            partition_key: self.partition_key,
            partition_bound: self.partition_bound,
            inherits: self.parents.unwrap_or_default(),
            definition: self.definition,
            owner: self.owner,
            acl: self.acl,
            columns: BTreeMap::new(),
            constraints: BTreeMap::new(),
            indexes: BTreeMap::new(),
            triggers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ColumnRow {
    schema: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    not_null: bool,
    default: Option<String>,
    generated: Option<String>,
    identity: Option<String>,
    collation: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConstraintRow {
    schema: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    constraint_type: String,
    definition: String,
}

#[derive(Debug, Deserialize)]
struct IndexRow {
    schema: String,
    table: String,
    name: String,
    definition: String,
    valid: bool,
}

#[derive(Debug, Deserialize)]
struct TriggerRow {
    schema: String,
    table: String,
    name: String,
    definition: String,
    enabled: String,
}

#[derive(Debug, Deserialize)]
struct FunctionRow {
    signature: String,
    kind: String,
    arguments: String,
    returns: Option<String>,
    language: String,
    volatility: String,
    security_definer: bool,
    definition_sha256: Option<String>,
    owner: String,
    acl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SequenceRow {
    schema: String,
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    start: i64,
    increment: i64,
    min: i64,
    max: i64,
    cache: i64,
    cycle: bool,
    owned_by: Option<String>,
    owner: String,
    acl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TypeRow {
    schema: String,
    name: String,
    kind: String,
    definition: Option<String>,
    owner: String,
    acl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ExtensionRow {
    name: String,
    schema: String,
    version: String,
}

/// Leaves out objects that belong to an extension (`deptype 'e'`).
macro_rules! not_in_extension {
    ($catalog:literal, $oid:literal) => {
        concat!(
            "NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = '",
            $catalog,
            "'::regclass AND e.objid = ",
            $oid,
            " AND e.deptype = 'e')"
        )
    };
}

/// Grants as sorted text: `aclitem` has no ordering of its own, and grant
/// order must not matter.
macro_rules! acl {
    ($column:literal) => {
        concat!(
            "(SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(",
            $column,
            ") a)"
        )
    };
}

/// The catalog queries; `$SCHEMAS` becomes the managed schemas' text array.
/// Each answers exactly one row, so their number never depends on the schema.
const QUERIES: [&str; QUERY_COUNT] = [
    concat!(
        "SELECT 'relations' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'name', c.relname, 'kind', c.relkind,
    'unlogged', c.relpersistence = 'u',
    'row_security', c.relrowsecurity, 'force_row_security', c.relforcerowsecurity,
    'partition_key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
    'partition_bound', CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
    'parents', (SELECT json_agg(i.inhparent::regclass::text ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid),
    'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
    'owner', pg_get_userbyid(c.relowner),
    'acl', ",
        acl!("c.relacl"),
        "
  ) ORDER BY n.nspname, c.relname), '[]')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($SCHEMAS) AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND ",
        not_in_extension!("pg_class", "c.oid")
    ),
    concat!(
        "SELECT 'columns' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'table', c.relname, 'name', a.attname,
    'type', format_type(a.atttypid, a.atttypmod),
    'not_null', a.attnotnull,
    'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
    'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
    'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
    'collation', CASE WHEN a.attcollation <> t.typcollation THEN
        (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co
           JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END
  ) ORDER BY n.nspname, c.relname, a.attnum), '[]')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = ANY ($SCHEMAS) AND c.relkind IN ('r', 'p', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND ",
        not_in_extension!("pg_class", "c.oid")
    ),
    // NOT NULL constraints (contype 'n', PostgreSQL 18) are the columns'
    // `not_null`; listing them too would report one change twice.
    concat!(
        "SELECT 'constraints' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'table', c.relname, 'name', k.conname, 'type', k.contype,
    'definition', pg_get_constraintdef(k.oid)
  ) ORDER BY n.nspname, c.relname, k.conname), '[]')
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($SCHEMAS) AND k.contype IN ('p', 'f', 'u', 'c', 'x', 't')
  AND ",
        not_in_extension!("pg_class", "c.oid")
    ),
    concat!(
        "SELECT 'indexes' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'table', c.relname, 'name', ic.relname,
    'definition', pg_get_indexdef(i.indexrelid), 'valid', i.indisvalid
  ) ORDER BY n.nspname, c.relname, ic.relname), '[]')
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($SCHEMAS)
  AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid
                  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
  AND ",
        not_in_extension!("pg_class", "c.oid")
    ),
    concat!(
        "SELECT 'triggers' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'table', c.relname, 'name', g.tgname,
    'definition', pg_get_triggerdef(g.oid), 'enabled', g.tgenabled
  ) ORDER BY n.nspname, c.relname, g.tgname), '[]')
FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($SCHEMAS) AND NOT g.tgisinternal
  AND ",
        not_in_extension!("pg_class", "c.oid")
    ),
    // Functions a range type creates for itself (deptype 'i') are the type's.
    concat!(
        "SELECT 'functions' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'signature', p.oid::regprocedure::text, 'kind', p.prokind,
    'arguments', pg_get_function_identity_arguments(p.oid),
    'returns', pg_get_function_result(p.oid), 'language', l.lanname,
    'volatility', p.provolatile, 'security_definer', p.prosecdef,
    'definition_sha256', CASE WHEN p.prokind <> 'a' THEN
        encode(sha256(convert_to(pg_get_functiondef(p.oid), 'UTF8')), 'hex') END,
    'owner', pg_get_userbyid(p.proowner),
    'acl', ",
        acl!("p.proacl"),
        "
  ) ORDER BY p.oid::regprocedure::text), '[]')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = ANY ($SCHEMAS)
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                  AND e.objid = p.oid AND e.deptype IN ('e', 'i'))"
    ),
    // Identity sequences (deptype 'i') are part of their column.
    concat!(
        "SELECT 'sequences' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'name', c.relname,
    'type', format_type(s.seqtypid, NULL), 'start', s.seqstart, 'increment', s.seqincrement,
    'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache, 'cycle', s.seqcycle,
    'owned_by', (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname)
                 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a' LIMIT 1),
    'owner', pg_get_userbyid(c.relowner),
    'acl', ",
        acl!("c.relacl"),
        "
  ) ORDER BY n.nspname, c.relname), '[]')
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($SCHEMAS)
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                  AND e.objid = c.oid AND e.deptype IN ('e', 'i'))"
    ),
    concat!(
        "SELECT 'types' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'schema', n.nspname, 'name', t.typname, 'kind', t.typtype,
    'definition', CASE t.typtype
        WHEN 'e' THEN (SELECT string_agg(quote_literal(v.enumlabel), ', ' ORDER BY v.enumsortorder)
                       FROM pg_enum v WHERE v.enumtypid = t.oid)
        WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
            || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
            || coalesce(' DEFAULT ' || t.typdefault, '')
            || coalesce((SELECT string_agg(' CONSTRAINT ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid), '' ORDER BY k.conname)
                         FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype <> 'n'), '')
        WHEN 'c' THEN (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                       FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
        WHEN 'r' THEN (SELECT 'subtype ' || format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
      END,
    'owner', pg_get_userbyid(t.typowner),
    'acl', ",
        acl!("t.typacl"),
        "
  ) ORDER BY n.nspname, t.typname), '[]')
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = ANY ($SCHEMAS)
  AND (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_class r WHERE r.oid = t.typrelid AND r.relkind = 'c')))
  AND ",
        not_in_extension!("pg_type", "t.oid")
    ),
    "SELECT 'extensions' AS slipway_catalog, coalesce(json_agg(json_build_object(
    'name', x.extname, 'schema', n.nspname, 'version', x.extversion
  ) ORDER BY x.extname), '[]')
FROM pg_extension x
JOIN pg_namespace n ON n.oid = x.extnamespace
WHERE n.nspname = ANY ($SCHEMAS)",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Relation {
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
            columns: BTreeMap::from([(
                "id".to_owned(),
                Column {
                    data_type: "integer".into(),
                    not_null: true,
                    default: None,
                    generated: None,
                    identity: Some("always".into()),
                    collation: None,
                },
            )]),
            constraints: BTreeMap::new(),
            indexes: BTreeMap::new(),
            triggers: BTreeMap::new(),
        }
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(ident("users"), "users");
        assert_eq!(ident("_x$1"), "_x$1");
        assert_eq!(ident("Users"), "\"Users\"");
        assert_eq!(ident("a.b"), "\"a.b\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(ident("1st"), "\"1st\"");
        assert_eq!(qualified("public", "Mixed"), "public.\"Mixed\"");
    }

    #[test]
    fn pretty_json_round_trips_and_ends_with_a_newline() {
        let mut snapshot = Snapshot::empty(&["public".to_owned()]);
        snapshot.relations.insert("public.t".into(), table());
        let text = snapshot.to_pretty_json();
        assert!(text.ends_with("}\n"), "{text}");
        assert!(
            !text.contains("\"unlogged\""),
            "false flags are left out: {text}"
        );
        let back = Snapshot::from_json(&text, "test").unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(back.to_pretty_json(), text);
        assert_eq!(back.fingerprint(), snapshot.fingerprint());
    }

    #[test]
    fn fingerprint_is_the_sha256_of_the_canonical_form() {
        let snapshot = Snapshot::empty(&["public".to_owned()]);
        assert_eq!(
            snapshot.canonical_json(),
            r#"{"format":1,"schemas":["public"],"relations":{},"functions":{},"sequences":{},"types":{},"extensions":{}}"#
        );
        assert_eq!(
            snapshot.fingerprint(),
            hex(&Sha256::digest(snapshot.canonical_json().as_bytes()))
        );
        let mut other = snapshot.clone();
        other.relations.insert("public.t".into(), table());
        assert_ne!(other.fingerprint(), snapshot.fingerprint());
    }

    #[test]
    fn schemas_are_sorted_and_order_does_not_matter() {
        let a = Snapshot::empty(&["b".to_owned(), "a".to_owned()]);
        let b = Snapshot::empty(&["a".to_owned(), "b".to_owned(), "a".to_owned()]);
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn the_query_text_has_a_fixed_number_of_statements() {
        let few = CatalogQuery::new(&["public".to_owned()], "slipway").sql();
        let many = CatalogQuery::new(
            &["public".to_owned(), "sales".to_owned(), "hr".to_owned()],
            "slipway",
        )
        .sql();
        for sql in [&few, &many] {
            assert_eq!(sql.matches(CATALOG_MARKER).count(), QUERY_COUNT);
            assert!(!sql.contains("$SCHEMAS"));
        }
        assert!(
            many.contains("ARRAY['hr', 'public', 'sales']::text[]"),
            "{many}"
        );
    }

    #[test]
    fn malformed_snapshot_files_are_config_errors() {
        let error = Snapshot::from_json("{", "migrations/schema.snapshot.json").unwrap_err();
        assert_eq!(error.code().as_str(), "config");
        assert!(error.to_string().contains("slipway snapshot"), "{error}");
    }

    #[test]
    fn key_parts_undo_the_quoting() {
        assert_eq!(key_parts("public.users"), ["public", "users"]);
        assert_eq!(key_parts("\"My.Schema\".\"a\"\"b\""), ["My.Schema", "a\"b"]);
        for (schema, name) in [("public", "Odd Name"), ("s.x", "t")] {
            assert_eq!(key_parts(&qualified(schema, name)), [schema, name]);
        }
    }

    #[test]
    fn created_objects_are_listed_and_found_again() {
        let relation = |kind: &str| Relation {
            kind: kind.into(),
            unlogged: false,
            row_security: false,
            force_row_security: false,
            partition_key: None,
            partition_bound: None,
            inherits: Vec::new(),
            definition: None,
            owner: "o".into(),
            acl: None,
            columns: BTreeMap::new(),
            constraints: BTreeMap::new(),
            indexes: BTreeMap::new(),
            triggers: BTreeMap::new(),
        };
        let mut before = Snapshot::empty(&["public".to_owned()]);
        before
            .relations
            .insert("public.t".into(), relation("table"));
        let mut after = before.clone();
        after.relations.insert("public.v".into(), relation("view"));
        after.relations.get_mut("public.t").unwrap().indexes.insert(
            "t_x_idx".into(),
            Index {
                definition: "CREATE INDEX t_x_idx ON public.t USING btree (x)".into(),
                valid: true,
            },
        );
        let created = after.created_since(&before);
        let names: Vec<(&str, &str)> = created
            .iter()
            .map(|o| (o.kind.as_str(), o.object.as_str()))
            .collect();
        assert_eq!(names, [("index", "public.t_x_idx"), ("view", "public.v")]);
        assert!(created.iter().all(|o| after.holds(o)));
        assert!(created.iter().all(|o| !before.holds(o)));
        assert!(before.created_since(&after).is_empty());
    }
}
