//! `slipway lint`: what can be known about a migration set before any
//! database is touched — that every file parses, that nothing destroys data
//! by accident, which statements take locks that stall production traffic,
//! and that new migrations can be rolled back.
//!
//! The files are parsed by PostgreSQL's own grammar (libpg_query through the
//! `pg_query` crate, PostgreSQL 15), so a file that lints clean has no syntax
//! error on the server, and the rules look at parse trees, not at text.
//! [`lint`] is pure: it takes a [`MigrationSet`] and returns findings; the
//! CLI prints them.
//!
//! Lock rules only fire for tables that already hold data. Linting cannot
//! know what a database holds, so a table counts as new only when it was
//! created earlier in the same file: a table from an earlier migration has
//! usually been deployed and filled long before this one runs.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::time::Instant;

use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ConstrType, Constraint, NullTestType, ObjectType, RangeVar,
};
use pg_query::{NodeEnum, NodeRef};
use serde::Serialize;

use crate::error::Error;
use crate::migrations::{parse_directives, Directives, MigrationSet, Version};
use crate::report::ReportError;

/// What the caller decides, not the files.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// Versions above this one must have a `_rollback.sql`; older ones are
    /// legacy and exempt. `None`: no migration needs one.
    pub rollback_required_from: Option<Version>,
}

/// How bad a finding is: errors fail `slipway lint` (exit 1), warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    /// The severity as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One lint rule. The ids ([`Rule::id`]) are a contract: CI configurations
/// and the README name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    SyntaxError,
    DropTable,
    DropColumn,
    DropSchema,
    Truncate,
    DeleteWithoutWhere,
    UpdateWithoutWhere,
    ConcurrentlyInTransaction,
    VacuumInTransaction,
    MissingRollback,
    IndexWithoutConcurrently,
    DropIndexWithoutConcurrently,
    AlterColumnType,
    ForeignKeyWithoutNotValid,
    CheckWithoutNotValid,
    UniqueConstraintWithoutIndex,
    SetNotNull,
    VacuumFull,
    Cluster,
    RenameColumn,
    RenameTable,
}

impl Rule {
    /// Every rule, errors first.
    pub const ALL: [Rule; 21] = [
        Rule::SyntaxError,
        Rule::DropTable,
        Rule::DropColumn,
        Rule::DropSchema,
        Rule::Truncate,
        Rule::DeleteWithoutWhere,
        Rule::UpdateWithoutWhere,
        Rule::ConcurrentlyInTransaction,
        Rule::VacuumInTransaction,
        Rule::MissingRollback,
        Rule::IndexWithoutConcurrently,
        Rule::DropIndexWithoutConcurrently,
        Rule::AlterColumnType,
        Rule::ForeignKeyWithoutNotValid,
        Rule::CheckWithoutNotValid,
        Rule::UniqueConstraintWithoutIndex,
        Rule::SetNotNull,
        Rule::VacuumFull,
        Rule::Cluster,
        Rule::RenameColumn,
        Rule::RenameTable,
    ];

    /// The rule's id in reports.
    pub fn id(self) -> &'static str {
        match self {
            Rule::SyntaxError => "syntax-error",
            Rule::DropTable => "drop-table",
            Rule::DropColumn => "drop-column",
            Rule::DropSchema => "drop-schema",
            Rule::Truncate => "truncate",
            Rule::DeleteWithoutWhere => "delete-without-where",
            Rule::UpdateWithoutWhere => "update-without-where",
            Rule::ConcurrentlyInTransaction => "concurrently-in-transaction",
            Rule::VacuumInTransaction => "vacuum-in-transaction",
            Rule::MissingRollback => "missing-rollback",
            Rule::IndexWithoutConcurrently => "index-without-concurrently",
            Rule::DropIndexWithoutConcurrently => "drop-index-without-concurrently",
            Rule::AlterColumnType => "alter-column-type",
            Rule::ForeignKeyWithoutNotValid => "foreign-key-without-not-valid",
            Rule::CheckWithoutNotValid => "check-without-not-valid",
            Rule::UniqueConstraintWithoutIndex => "unique-constraint-without-index",
            Rule::SetNotNull => "set-not-null",
            Rule::VacuumFull => "vacuum-full",
            Rule::Cluster => "cluster",
            Rule::RenameColumn => "rename-column",
            Rule::RenameTable => "rename-table",
        }
    }

    /// Errors stop a deploy; warnings name a lock risk and its safer form.
    pub fn severity(self) -> Severity {
        match self {
            Rule::SyntaxError
            | Rule::DropTable
            | Rule::DropColumn
            | Rule::DropSchema
            | Rule::Truncate
            | Rule::DeleteWithoutWhere
            | Rule::UpdateWithoutWhere
            | Rule::ConcurrentlyInTransaction
            | Rule::VacuumInTransaction
            | Rule::MissingRollback => Severity::Error,
            Rule::IndexWithoutConcurrently
            | Rule::DropIndexWithoutConcurrently
            | Rule::AlterColumnType
            | Rule::ForeignKeyWithoutNotValid
            | Rule::CheckWithoutNotValid
            | Rule::UniqueConstraintWithoutIndex
            | Rule::SetNotNull
            | Rule::VacuumFull
            | Rule::Cluster
            | Rule::RenameColumn
            | Rule::RenameTable => Severity::Warning,
        }
    }

    /// Whether `-- slipway:allow-destructive` silences the rule.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Rule::DropTable
                | Rule::DropColumn
                | Rule::DropSchema
                | Rule::Truncate
                | Rule::DeleteWithoutWhere
                | Rule::UpdateWithoutWhere
        )
    }

    /// What to write instead. Lock levels are from the PostgreSQL 15 manual,
    /// "Explicit Locking" and the ALTER TABLE page.
    pub fn safer_form(self) -> Option<&'static str> {
        Some(match self {
            Rule::SyntaxError => return None,
            Rule::DropTable | Rule::DropSchema => {
                "stop using it in one release, drop it in a later one; then mark the file -- slipway:allow-destructive"
            }
            Rule::DropColumn => {
                "stop reading and writing the column in one release, drop it in a later one; then mark the file -- slipway:allow-destructive"
            }
            Rule::Truncate => {
                "if the data really is disposable, mark the file -- slipway:allow-destructive"
            }
            Rule::DeleteWithoutWhere | Rule::UpdateWithoutWhere => {
                "add a WHERE clause (WHERE true, if every row is meant), or mark the file -- slipway:allow-destructive"
            }
            Rule::ConcurrentlyInTransaction | Rule::VacuumInTransaction => {
                "put the statement in a migration of its own that starts with -- slipway:no-transaction"
            }
            Rule::MissingRollback => "add NNNN_description_rollback.sql with the inverse",
            Rule::IndexWithoutConcurrently => {
                "CREATE INDEX CONCURRENTLY, in a migration of its own with -- slipway:no-transaction"
            }
            Rule::DropIndexWithoutConcurrently => {
                "DROP INDEX CONCURRENTLY, in a migration of its own with -- slipway:no-transaction"
            }
            Rule::AlterColumnType => {
                "add a column of the new type, backfill it in batches, switch the application, drop the old column later (growing varchar(n) or varchar to text is catalog-only and safe)"
            }
            Rule::ForeignKeyWithoutNotValid => {
                "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later deploy (slipway runs one deploy in one transaction)"
            }
            Rule::CheckWithoutNotValid => {
                "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in a later deploy (slipway runs one deploy in one transaction)"
            }
            Rule::UniqueConstraintWithoutIndex => {
                "CREATE UNIQUE INDEX CONCURRENTLY in a migration of its own with -- slipway:no-transaction, then ADD CONSTRAINT ... UNIQUE (or PRIMARY KEY) USING INDEX in a later one"
            }
            Rule::SetNotNull => {
                "ADD CONSTRAINT ... CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a later deploy, then SET NOT NULL (it uses the valid check instead of scanning)"
            }
            Rule::VacuumFull => {
                "pg_repack, or plain VACUUM (it takes no exclusive lock), outside migrations"
            }
            Rule::Cluster => "pg_repack --order-by, outside migrations",
            Rule::RenameColumn | Rule::RenameTable => {
                "add the new name beside the old one (a new column kept in sync, or a view), move the application over, drop the old name in a later release"
            }
        })
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// One thing the linter found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    /// Script path relative to the migrations directory.
    pub file: String,
    /// 1-based line; 1 for findings about a whole file.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
    pub safer_form: Option<String>,
}

/// What `slipway lint` prints (`--json`): stable field names, like the
/// migration report's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LintReport {
    /// False only when slipway itself failed (`error` says why); lint
    /// errors are findings, not failures.
    pub success: bool,
    pub action: String,
    /// The number of files parsed.
    pub files: usize,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
    pub duration_ms: u64,
    pub error: Option<ReportError>,
}

impl LintReport {
    /// The report of a finished lint.
    pub fn new(outcome: LintOutcome, duration_ms: u64) -> LintReport {
        let count = |severity| {
            outcome
                .findings
                .iter()
                .filter(|f| f.severity == severity)
                .count()
        };
        LintReport {
            success: true,
            action: "lint".into(),
            files: outcome.files,
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            findings: outcome.findings,
            duration_ms,
            error: None,
        }
    }

    /// The report when slipway could not lint at all (unreadable directory,
    /// a misnamed file, a bad option).
    pub fn failure(error: &Error, duration_ms: u64) -> LintReport {
        LintReport {
            success: false,
            action: "lint".into(),
            files: 0,
            errors: 0,
            warnings: 0,
            findings: Vec::new(),
            duration_ms,
            error: Some(ReportError::from(error)),
        }
    }

    /// 0 clean or warnings only, 1 lint errors, 2 slipway failed.
    pub fn exit_code(&self) -> u8 {
        if !self.success {
            2
        } else if self.errors > 0 {
            1
        } else {
            0
        }
    }

    /// Compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"success\":false,\"action\":\"lint\",\"error\":{{\"code\":\"internal\",\"message\":\"report serialisation failed: {}\",\"detail\":null}}}}",
                e.to_string().escape_default()
            )
        })
    }

    /// `dir/file:line:column: severity [rule] message`, the form editors
    /// and CI annotations jump to; `dir` is the migrations directory.
    pub fn render_human(&self, dir: &str, color: bool) -> String {
        let paint = crate::report::painter(color);
        let mut out = String::new();
        if let Some(error) = &self.error {
            let _ = writeln!(
                out,
                "{} [{}] {}",
                paint("1;31", "error"),
                error.code,
                error.message
            );
            return out;
        }
        let prefix = dir.trim_end_matches('/');
        for f in &self.findings {
            let severity = match f.severity {
                Severity::Error => paint("1;31", "error"),
                Severity::Warning => paint("33", "warning"),
            };
            let _ = writeln!(
                out,
                "{prefix}/{}:{}:{}: {severity} [{}] {}",
                f.file,
                f.line,
                f.column,
                f.rule.id(),
                f.message
            );
            if let Some(safer) = &f.safer_form {
                let _ = writeln!(out, "    safer: {safer}");
            }
        }
        let verdict = format!(
            "{} file(s): {} error(s), {} warning(s)",
            self.files, self.errors, self.warnings
        );
        let verdict = if self.errors > 0 {
            paint("31", &verdict)
        } else if self.warnings > 0 {
            paint("33", &verdict)
        } else {
            paint("32", &verdict)
        };
        if !self.findings.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{verdict}");
        let _ = writeln!(out, "took {} ms", self.duration_ms);
        out
    }
}

/// `slipway lint` as a whole: read the migrations in `dir`, lint them, time
/// it. `rollback_required_from` is the version as the user wrote it.
pub fn lint_dir(dir: &Path, rollback_required_from: Option<&str>) -> LintReport {
    let started = Instant::now();
    let elapsed = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let options = match rollback_required_from.map(|text| {
        Version::parse(text).ok_or_else(|| {
            Error::Config(format!(
                "--rollback-required-from '{text}' is not a version; give the digits of a migration's file name, e.g. 0005"
            ))
        })
    }) {
        Some(Err(error)) => return LintReport::failure(&error, elapsed()),
        Some(Ok(version)) => LintOptions {
            rollback_required_from: Some(version),
        },
        None => LintOptions::default(),
    };
    match MigrationSet::from_dir(dir) {
        Ok(set) => {
            let outcome = lint(&set, &options);
            LintReport::new(outcome, elapsed())
        }
        Err(error) => LintReport::failure(&error, elapsed()),
    }
}

/// Findings and the number of files they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct LintOutcome {
    pub files: usize,
    pub findings: Vec<Finding>,
}

/// Lint every script of `set`: versioned migrations in version order (each
/// followed by its rollback), then the repeatable scripts.
pub fn lint(set: &MigrationSet, options: &LintOptions) -> LintOutcome {
    let mut state = SetState::default();
    let mut findings = Vec::new();
    let mut files = 0;
    for migration in set.versioned() {
        files += 1;
        findings.extend(lint_script(
            &migration.script,
            &migration.sql,
            migration.directives,
            ScriptRole::Forward,
            &mut state,
        ));
        match &migration.rollback {
            Some(rollback) => {
                files += 1;
                // Loading already rejected unknown directives in every file.
                let directives = parse_directives(&rollback.sql).unwrap_or_default();
                findings.extend(lint_script(
                    &rollback.script,
                    &rollback.sql,
                    directives,
                    ScriptRole::Rollback,
                    &mut state,
                ));
            }
            None => {
                let required = match (&options.rollback_required_from, &migration.version) {
                    (Some(from), Some(version)) => version > from,
                    _ => false,
                };
                if required {
                    let version = migration.version_str().unwrap_or_default();
                    findings.push(finding(
                        Rule::MissingRollback,
                        &migration.script,
                        (1, 1),
                        format!(
                            "no rollback for version {version}: versions above {} need {}",
                            options
                                .rollback_required_from
                                .as_ref()
                                .map(Version::as_str)
                                .unwrap_or_default(),
                            migration.script.replace(".sql", "_rollback.sql")
                        ),
                    ));
                }
            }
        }
    }
    for script in set.repeatable() {
        files += 1;
        findings.extend(lint_script(
            &script.script,
            &script.sql,
            script.directives,
            ScriptRole::Forward,
            &mut state,
        ));
    }
    LintOutcome { files, findings }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptRole {
    Forward,
    /// Destructive by nature: exempt from the destructive rules.
    Rollback,
}

/// `schema.table`, with an unqualified name taken as `public`'s (the
/// migrations of one project normally use the default search path).
type TableKey = (String, String);

fn table_key(relation: &RangeVar) -> TableKey {
    let schema = if relation.schemaname.is_empty() {
        "public".to_owned()
    } else {
        relation.schemaname.clone()
    };
    (schema, relation.relname.clone())
}

/// What the forward scripts established, in order, that later scripts
/// rely on.
#[derive(Debug, Default)]
struct SetState {
    /// `CHECK (column IS NOT NULL) NOT VALID` constraints awaiting
    /// `VALIDATE CONSTRAINT`: (table, constraint) → column.
    unvalidated_not_null: HashMap<(TableKey, String), String>,
    /// Columns with a valid `CHECK (column IS NOT NULL)`, which lets
    /// `SET NOT NULL` skip its full-table scan (PostgreSQL 12+).
    validated_not_null: HashSet<(TableKey, String)>,
}

/// Lint one script; `state` carries what earlier forward scripts did.
fn lint_script(
    file: &str,
    sql: &str,
    directives: Directives,
    role: ScriptRole,
    state: &mut SetState,
) -> Vec<Finding> {
    let parsed = match parse(sql) {
        Ok(parsed) => parsed,
        Err(syntax) => {
            return vec![finding(
                Rule::SyntaxError,
                file,
                line_column(sql, syntax.offset),
                syntax.message,
            )]
        }
    };
    let mut linter = ScriptLinter {
        file,
        sql,
        transactional: !directives.no_transaction,
        created: HashSet::new(),
        created_indexes: HashSet::new(),
        not_valid_here: HashMap::new(),
        findings: Vec::new(),
        record: role == ScriptRole::Forward,
        state,
    };
    for raw in &parsed.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
            continue;
        };
        let start = statement_start(sql, raw.stmt_location);
        linter.statement(node, start);
    }
    let mut findings = linter.findings;
    if role == ScriptRole::Rollback || directives.allow_destructive {
        findings.retain(|f| !f.rule.is_destructive());
    }
    if role == ScriptRole::Rollback {
        // A rollback undoes its migration in the one rollback transaction,
        // usually dropping the indexes together with their tables; asking for
        // DROP INDEX CONCURRENTLY there would split that transaction for a
        // lock the DROP TABLE beside it takes anyway.
        findings.retain(|f| f.rule != Rule::DropIndexWithoutConcurrently);
    }
    findings
}

struct ScriptLinter<'a> {
    file: &'a str,
    sql: &'a str,
    transactional: bool,
    /// Tables created earlier in this file: new, empty, already locked by us.
    created: HashSet<TableKey>,
    /// Indexes created earlier in this file, as `(schema, index)`: dropping
    /// one undoes this file's own work, and its CREATE INDEX was already
    /// judged on its lock.
    created_indexes: HashSet<TableKey>,
    /// Constraints this file added `NOT VALID`: (table, name) → their rule.
    not_valid_here: HashMap<(TableKey, String), Rule>,
    findings: Vec<Finding>,
    /// Whether this script's constraints count for later scripts (rollbacks
    /// run in the other direction, so they do not).
    record: bool,
    state: &'a mut SetState,
}

impl ScriptLinter<'_> {
    fn push(&mut self, rule: Rule, offset: usize, message: String) {
        self.findings.push(finding(
            rule,
            self.file,
            line_column(self.sql, offset),
            message,
        ));
    }

    fn is_existing(&self, relation: Option<&RangeVar>) -> bool {
        relation.is_some_and(|r| !self.created.contains(&table_key(r)))
    }

    /// Whether every table a `DROP TABLE` names was created in this file
    /// (a scratch table: no data of anyone's is lost).
    fn all_created_here(&self, objects: &[pg_query::protobuf::Node]) -> bool {
        all_in(&self.created, objects)
    }

    fn statement(&mut self, node: &NodeEnum, start: usize) {
        // Data-changing statements anywhere in the tree, CTEs included.
        for (inner, _, _) in node.nodes() {
            match inner {
                NodeRef::DeleteStmt(d)
                    if d.where_clause.is_none() && self.is_existing(d.relation.as_ref()) =>
                {
                    self.push(
                        Rule::DeleteWithoutWhere,
                        start,
                        format!(
                            "DELETE without WHERE removes every row of {}",
                            relation_name(d.relation.as_ref())
                        ),
                    )
                }
                NodeRef::UpdateStmt(u)
                    if u.where_clause.is_none() && self.is_existing(u.relation.as_ref()) =>
                {
                    self.push(
                        Rule::UpdateWithoutWhere,
                        start,
                        format!(
                            "UPDATE without WHERE rewrites every row of {}",
                            relation_name(u.relation.as_ref())
                        ),
                    )
                }
                _ => {}
            }
        }
        match node {
            NodeEnum::CreateStmt(create) => {
                if let Some(relation) = &create.relation {
                    self.created.insert(table_key(relation));
                }
            }
            NodeEnum::CreateTableAsStmt(create) => {
                if let Some(relation) = create.into.as_ref().and_then(|i| i.rel.as_ref()) {
                    self.created.insert(table_key(relation));
                }
            }
            NodeEnum::IndexStmt(index) => {
                if let (Some(relation), false) = (&index.relation, index.idxname.is_empty()) {
                    // An index lives in its table's schema.
                    let (schema, _) = table_key(relation);
                    self.created_indexes.insert((schema, index.idxname.clone()));
                }
                let table = relation_name(index.relation.as_ref());
                if index.concurrent {
                    self.concurrently(start, &format!("CREATE INDEX CONCURRENTLY on {table}"));
                } else if self.is_existing(index.relation.as_ref()) {
                    self.push(
                        Rule::IndexWithoutConcurrently,
                        start,
                        format!("CREATE INDEX without CONCURRENTLY blocks writes to {table} (SHARE lock) while the index builds"),
                    );
                }
            }
            NodeEnum::DropStmt(drop) => {
                let what = match ObjectType::from_i32(drop.remove_type) {
                    Some(ObjectType::ObjectTable) if !self.all_created_here(&drop.objects) => {
                        Some((Rule::DropTable, "DROP TABLE"))
                    }
                    Some(ObjectType::ObjectSchema) => Some((Rule::DropSchema, "DROP SCHEMA")),
                    _ => None,
                };
                if let Some((rule, text)) = what {
                    self.push(rule, start, format!("{text} destroys data"));
                }
                if drop.concurrent {
                    self.concurrently(start, "DROP INDEX CONCURRENTLY");
                } else if ObjectType::from_i32(drop.remove_type) == Some(ObjectType::ObjectIndex)
                    && !all_in(&self.created_indexes, &drop.objects)
                {
                    let names: Vec<String> = drop.objects.iter().map(|o| object_names(o).join(".")).collect();
                    self.push(
                        Rule::DropIndexWithoutConcurrently,
                        start,
                        format!("DROP INDEX {} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: no reads or writes while it waits for running queries and drops", names.join(", ")),
                    );
                }
            }
            NodeEnum::TruncateStmt(truncate) => {
                let existing = truncate.relations.iter().any(|r| match r.node.as_ref() {
                    Some(NodeEnum::RangeVar(r)) => self.is_existing(Some(r)),
                    _ => true,
                });
                if existing {
                    self.push(Rule::Truncate, start, "TRUNCATE removes every row".into());
                }
            }
            NodeEnum::AlterTableStmt(alter) => {
                if ObjectType::from_i32(alter.objtype) != Some(ObjectType::ObjectTable) {
                    return;
                }
                let relation = alter.relation.as_ref();
                for cmd in &alter.cmds {
                    if let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() {
                        self.alter_table_cmd(relation, cmd, start);
                    }
                }
            }
            NodeEnum::RenameStmt(rename) => {
                let relation = rename.relation.as_ref();
                let is_table = ObjectType::from_i32(rename.relation_type) == Some(ObjectType::ObjectTable);
                let table = relation_name(relation);
                match ObjectType::from_i32(rename.rename_type) {
                    Some(ObjectType::ObjectColumn) if is_table && self.is_existing(relation) => self.push(
                        Rule::RenameColumn,
                        start,
                        format!("renaming column {table}.{} breaks every client still using the old name", rename.subname),
                    ),
                    Some(ObjectType::ObjectTable) if !self.is_existing(relation) => {
                        // The new name is as new as the old one.
                        if let Some(r) = relation {
                            let (schema, _) = table_key(r);
                            self.created.insert((schema, rename.newname.clone()));
                        }
                    }
                    Some(ObjectType::ObjectTable) => self.push(
                        Rule::RenameTable,
                        start,
                        format!("renaming table {table} to {} breaks every client still using the old name", rename.newname),
                    ),
                    _ => {}
                }
            }
            NodeEnum::VacuumStmt(vacuum) => {
                let full = vacuum.options.iter().any(|o| match o.node.as_ref() {
                    Some(NodeEnum::DefElem(d)) => d.defname == "full" && !is_false(d.arg.as_deref()),
                    _ => false,
                });
                // ANALYZE alone may run in a transaction; every VACUUM may not.
                if vacuum.is_vacuumcmd && self.transactional {
                    self.push(
                        Rule::VacuumInTransaction,
                        start,
                        "VACUUM cannot run inside a transaction block, and slipway runs this migration in one".into(),
                    );
                }
                if vacuum.is_vacuumcmd && full {
                    self.push(
                        Rule::VacuumFull,
                        start,
                        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: no reads or writes until it ends".into(),
                    );
                }
            }
            NodeEnum::ClusterStmt(_) => self.push(
                Rule::Cluster,
                start,
                "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: no reads or writes until it ends".into(),
            ),
            NodeEnum::ReindexStmt(reindex) => {
                let concurrently = reindex.params.iter().any(|p| match p.node.as_ref() {
                    Some(NodeEnum::DefElem(d)) => d.defname == "concurrently" && !is_false(d.arg.as_deref()),
                    _ => false,
                });
                if concurrently {
                    self.concurrently(start, "REINDEX CONCURRENTLY");
                }
            }
            _ => {}
        }
    }

    fn concurrently(&mut self, start: usize, what: &str) {
        if self.transactional {
            self.push(
                Rule::ConcurrentlyInTransaction,
                start,
                format!("{what} cannot run inside a transaction block, and slipway runs this migration in one"),
            );
        }
    }

    fn alter_table_cmd(&mut self, relation: Option<&RangeVar>, cmd: &AlterTableCmd, start: usize) {
        let table = relation_name(relation);
        let existing = self.is_existing(relation);
        let key = relation.map(table_key);
        let constraint = match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::Constraint(c)) => Some(c),
            _ => None,
        };
        match AlterTableType::from_i32(cmd.subtype) {
            Some(AlterTableType::AtDropColumn) if existing => self.push(
                Rule::DropColumn,
                start,
                format!("DROP COLUMN {table}.{} destroys data", cmd.name),
            ),
            Some(AlterTableType::AtAlterColumnType) if existing => self.push(
                Rule::AlterColumnType,
                start,
                format!(
                    "changing the type of {table}.{} usually rewrites the table under an ACCESS EXCLUSIVE lock",
                    cmd.name
                ),
            ),
            Some(AlterTableType::AtAddConstraint) => {
                if let Some(c) = constraint {
                    self.add_constraint(key, &table, c, existing, start);
                }
            }
            Some(AlterTableType::AtAddColumn) => {
                if let Some(NodeEnum::ColumnDef(column)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                    for c in &column.constraints {
                        if let Some(NodeEnum::Constraint(c)) = c.node.as_ref() {
                            if existing && ConstrType::from_i32(c.contype) == Some(ConstrType::ConstrForeign) {
                                let offset = self.constraint_offset(c, start);
                                self.push(
                                    Rule::ForeignKeyWithoutNotValid,
                                    offset,
                                    format!("a foreign key on new column {table}.{} is checked at once, locking {table} and the referenced table", column.colname),
                                );
                            }
                            if let (true, Some(kind)) = (existing, builds_index(c)) {
                                let offset = self.constraint_offset(c, start);
                                self.push(
                                    Rule::UniqueConstraintWithoutIndex,
                                    offset,
                                    format!("a {kind} constraint on new column {table}.{} builds its index under an ACCESS EXCLUSIVE lock: no reads or writes until it ends", column.colname),
                                );
                            }
                        }
                    }
                }
            }
            Some(AlterTableType::AtValidateConstraint) => {
                // The ADD CONSTRAINT's lock is held until the transaction
                // ends, so validating in the same one scans under it anyway.
                let added_here = key
                    .as_ref()
                    .and_then(|k| self.not_valid_here.get(&(k.clone(), cmd.name.clone())).copied());
                if let Some(rule) = added_here {
                    let lock = if rule == Rule::ForeignKeyWithoutNotValid {
                        "SHARE ROW EXCLUSIVE lock (no writes)"
                    } else {
                        "ACCESS EXCLUSIVE lock (no reads or writes)"
                    };
                    self.push(
                        rule,
                        start,
                        format!("VALIDATE CONSTRAINT {} in the same transaction as its NOT VALID ADD CONSTRAINT scans {table} under the ADD's {lock}", cmd.name),
                    );
                }
                if let Some(key) = key.filter(|_| self.record) {
                    if let Some(column) = self.state.unvalidated_not_null.remove(&(key.clone(), cmd.name.clone())) {
                        self.state.validated_not_null.insert((key, column));
                    }
                }
            }
            Some(AlterTableType::AtSetNotNull) if existing => {
                let validated = key.is_some_and(|k| self.state.validated_not_null.contains(&(k, cmd.name.clone())));
                if !validated {
                    self.push(
                        Rule::SetNotNull,
                        start,
                        format!("SET NOT NULL on {table}.{} scans the whole table under an ACCESS EXCLUSIVE lock", cmd.name),
                    );
                }
            }
            Some(AlterTableType::AtDetachPartition) => {
                if let Some(NodeEnum::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                    if p.concurrent {
                        self.concurrently(start, "DETACH PARTITION CONCURRENTLY");
                    }
                }
            }
            _ => {}
        }
    }

    fn add_constraint(
        &mut self,
        key: Option<TableKey>,
        table: &str,
        c: &Constraint,
        existing: bool,
        start: usize,
    ) {
        let offset = self.constraint_offset(c, start);
        let name = if c.conname.is_empty() {
            String::new()
        } else {
            format!(" {}", c.conname)
        };
        let rule = match ConstrType::from_i32(c.contype) {
            Some(ConstrType::ConstrForeign) => Some(Rule::ForeignKeyWithoutNotValid),
            Some(ConstrType::ConstrCheck) => Some(Rule::CheckWithoutNotValid),
            _ => None,
        };
        if let (Some(key), Some(rule), true) = (&key, rule, c.skip_validation) {
            self.not_valid_here
                .insert((key.clone(), c.conname.clone()), rule);
        }
        match ConstrType::from_i32(c.contype) {
            Some(ConstrType::ConstrForeign) if existing && !c.skip_validation => self.push(
                Rule::ForeignKeyWithoutNotValid,
                offset,
                format!(
                    "foreign key{name} without NOT VALID checks every row of {table} while holding a SHARE ROW EXCLUSIVE lock on it and on {}",
                    relation_name(c.pktable.as_ref())
                ),
            ),
            Some(ConstrType::ConstrUnique | ConstrType::ConstrPrimary) if existing => {
                if let Some(kind) = builds_index(c) {
                    self.push(
                        Rule::UniqueConstraintWithoutIndex,
                        offset,
                        format!("{kind} constraint{name} without USING INDEX builds its index on {table} under an ACCESS EXCLUSIVE lock: no reads or writes until it ends"),
                    );
                }
            }
            Some(ConstrType::ConstrCheck) => {
                if existing && !c.skip_validation {
                    self.push(
                        Rule::CheckWithoutNotValid,
                        offset,
                        format!("check constraint{name} without NOT VALID scans every row of {table} under an ACCESS EXCLUSIVE lock"),
                    );
                }
                let column = not_null_column(c);
                if let (Some(key), Some(column), true) = (key, column, self.record) {
                    if c.skip_validation {
                        self.state.unvalidated_not_null.insert((key, c.conname.clone()), column);
                    } else {
                        self.state.validated_not_null.insert((key, column));
                    }
                }
            }
            _ => {}
        }
    }

    /// Where the constraint's own text starts, else the statement's.
    fn constraint_offset(&self, c: &Constraint, start: usize) -> usize {
        usize::try_from(c.location)
            .ok()
            .filter(|o| *o < self.sql.len())
            .unwrap_or(start)
    }
}

/// The column of `CHECK (column IS NOT NULL)`, the form that lets
/// `SET NOT NULL` trust the constraint.
fn not_null_column(c: &Constraint) -> Option<String> {
    let Some(NodeEnum::NullTest(test)) = c.raw_expr.as_ref().and_then(|e| e.node.as_ref()) else {
        return None;
    };
    if NullTestType::from_i32(test.nulltesttype) != Some(NullTestType::IsNotNull) {
        return None;
    }
    let Some(NodeEnum::ColumnRef(column)) = test.arg.as_ref().and_then(|a| a.node.as_ref()) else {
        return None;
    };
    match column.fields.last().and_then(|f| f.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

/// `"unique"` or `"primary key"` when the constraint builds a new index;
/// `None` for other constraints and for `USING INDEX`, which adopts an
/// index built beforehand (concurrently, without the table lock).
fn builds_index(c: &Constraint) -> Option<&'static str> {
    if !c.indexname.is_empty() {
        return None;
    }
    match ConstrType::from_i32(c.contype) {
        Some(ConstrType::ConstrUnique) => Some("unique"),
        Some(ConstrType::ConstrPrimary) => Some("primary key"),
        _ => None,
    }
}

/// The dotted name of one object of a `DROP`, e.g. `["public", "t"]`.
fn object_names(object: &pg_query::protobuf::Node) -> Vec<&str> {
    let Some(NodeEnum::List(list)) = object.node.as_ref() else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter_map(|item| match item.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect()
}

/// Whether `set` holds every object a `DROP` names, an unqualified name
/// taken as `public`'s.
fn all_in(set: &HashSet<TableKey>, objects: &[pg_query::protobuf::Node]) -> bool {
    objects.iter().all(|object| {
        let key = match object_names(object).as_slice() {
            [name] => ("public".to_owned(), (*name).to_owned()),
            [.., schema, name] => ((*schema).to_owned(), (*name).to_owned()),
            [] => return false,
        };
        set.contains(&key)
    })
}

/// `FULL false` / `CONCURRENTLY false` switch the option off.
fn is_false(arg: Option<&pg_query::protobuf::Node>) -> bool {
    match arg.and_then(|a| a.node.as_ref()) {
        Some(NodeEnum::String(s)) => matches!(s.sval.as_str(), "false" | "off" | "0"),
        Some(NodeEnum::Integer(i)) => i.ival == 0,
        _ => false,
    }
}

fn relation_name(relation: Option<&RangeVar>) -> String {
    match relation {
        Some(r) if r.schemaname.is_empty() => r.relname.clone(),
        Some(r) => format!("{}.{}", r.schemaname, r.relname),
        None => "the table".into(),
    }
}

fn finding(rule: Rule, file: &str, (line, column): (usize, usize), message: String) -> Finding {
    Finding {
        rule,
        severity: rule.severity(),
        file: file.to_owned(),
        line,
        column,
        message,
        safer_form: rule.safer_form().map(str::to_owned),
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The first byte of the statement proper: PostgreSQL's statement location
/// includes the whitespace and comments before it.
fn statement_start(sql: &str, location: i32) -> usize {
    let bytes = sql.as_bytes();
    let mut i = usize::try_from(location).unwrap_or(0).min(bytes.len());
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes[i..].starts_with(b"--") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let mut depth = 0usize;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            return i;
        }
    }
}

/// A syntax error: PostgreSQL's message and the byte offset it points at.
#[derive(Debug, Clone, PartialEq)]
struct SyntaxError {
    message: String,
    offset: usize,
}

/// Parse `sql` with PostgreSQL's grammar.
fn parse(sql: &str) -> Result<pg_query::protobuf::ParseResult, SyntaxError> {
    if let Some(nul) = sql.find('\0') {
        return Err(SyntaxError {
            message: "the file contains a NUL byte, which PostgreSQL never accepts in SQL text"
                .into(),
            offset: nul,
        });
    }
    pg_query::parse(sql)
        .map(|parsed| parsed.protobuf)
        .map_err(|e| {
            // The crate's error keeps the message but drops the position;
            // libpg_query's own result has both.
            located_error(sql).unwrap_or_else(|| SyntaxError {
                message: e.to_string(),
                offset: 0,
            })
        })
}

/// libpg_query's C interface (`pg_query.h` of libpg_query 15-4.2.3), for the
/// error position that the `pg_query` crate does not pass on. The library is
/// linked by the `pg_query` crate.
#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    /// 1-based *character* index into the input (PostgreSQL's
    /// `scanner_errposition` counts characters, not bytes); 0 when unknown.
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

fn located_error(sql: &str) -> Option<SyntaxError> {
    let input = CString::new(sql).ok()?;
    // SAFETY: `input` is a valid NUL-terminated string that outlives the
    // call; the result is read only before it is freed, exactly once, by
    // the library's own function.
    unsafe {
        let result = pg_query_parse(input.as_ptr());
        let located = result.error.as_ref().map(|error| {
            let message = if error.message.is_null() {
                "syntax error".to_owned()
            } else {
                CStr::from_ptr(error.message).to_string_lossy().into_owned()
            };
            let chars_before = usize::try_from(error.cursorpos)
                .unwrap_or(0)
                .saturating_sub(1);
            let offset = sql
                .char_indices()
                .nth(chars_before)
                .map_or(sql.len(), |(i, _)| i);
            SyntaxError { message, offset }
        });
        pg_query_free_parse_result(result);
        located
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::SourceFile;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(files.iter().map(|(path, sql)| SourceFile {
            path: (*path).to_owned(),
            contents: sql.as_bytes().to_vec().into(),
        }))
        .unwrap()
    }

    fn lint_files(files: &[(&str, &str)]) -> Vec<Finding> {
        lint(&set(files), &LintOptions::default()).findings
    }

    /// `(rule id, line)` of every finding in `sql` as migration 0002,
    /// after a 0001 that creates `existing (id int, note text)`.
    fn rules(sql: &str) -> Vec<(&'static str, usize)> {
        lint_files(&[
            (
                "0001_base.sql",
                "CREATE TABLE existing (id int PRIMARY KEY, note text);",
            ),
            ("0002_change.sql", sql),
        ])
        .into_iter()
        .map(|f| (f.rule.id(), f.line))
        .collect()
    }

    #[test]
    fn each_rule_fires_and_its_safe_form_does_not() {
        // (rule, firing SQL, safe SQL)
        let cases: &[(&str, &str, &str)] = &[
            ("drop-table", "DROP TABLE existing;", "-- slipway:allow-destructive\nDROP TABLE existing;"),
            ("drop-column", "ALTER TABLE existing DROP COLUMN note;", "-- slipway:allow-destructive\nALTER TABLE existing DROP COLUMN note;"),
            ("drop-schema", "DROP SCHEMA old CASCADE;", "DROP INDEX existing_pkey;"),
            ("truncate", "TRUNCATE existing;", "-- slipway:allow-destructive\nTRUNCATE existing;"),
            ("delete-without-where", "WITH d AS (DELETE FROM existing RETURNING id) SELECT count(*) FROM d;", "DELETE FROM existing WHERE id < 0;"),
            ("update-without-where", "UPDATE existing SET note = '';", "UPDATE existing SET note = '' WHERE note IS NULL;"),
            ("concurrently-in-transaction", "CREATE INDEX CONCURRENTLY i ON existing (note);", "-- slipway:no-transaction\nCREATE INDEX CONCURRENTLY i ON existing (note);"),
            ("vacuum-in-transaction", "VACUUM existing;", "-- slipway:no-transaction\nVACUUM existing;"),
            ("index-without-concurrently", "CREATE INDEX i ON existing (note);", "CREATE TABLE fresh (a int);\nCREATE INDEX i ON fresh (a);"),
            ("drop-index-without-concurrently", "DROP INDEX IF EXISTS existing_note_idx;", "-- slipway:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS existing_note_idx;"),
            ("alter-column-type", "ALTER TABLE existing ALTER COLUMN note TYPE varchar(10);", "CREATE TABLE fresh (a int);\nALTER TABLE fresh ALTER COLUMN a TYPE bigint;"),
            ("foreign-key-without-not-valid", "ALTER TABLE existing ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES existing (id);", "ALTER TABLE existing ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES existing (id) NOT VALID;"),
            ("check-without-not-valid", "ALTER TABLE existing ADD CONSTRAINT c CHECK (id > 0);", "ALTER TABLE existing ADD CONSTRAINT c CHECK (id > 0) NOT VALID;"),
            ("unique-constraint-without-index", "ALTER TABLE existing ADD CONSTRAINT u UNIQUE (note);", "ALTER TABLE existing ADD CONSTRAINT u UNIQUE USING INDEX existing_note_key;"),
            ("set-not-null", "ALTER TABLE existing ALTER COLUMN note SET NOT NULL;", "ALTER TABLE existing ADD CONSTRAINT nn CHECK (note IS NOT NULL) NOT VALID;\nALTER TABLE existing VALIDATE CONSTRAINT nn;\nALTER TABLE existing ALTER COLUMN note SET NOT NULL;"),
            ("vacuum-full", "VACUUM FULL existing;", "VACUUM (FULL false) existing;"),
            ("cluster", "CLUSTER existing USING existing_pkey;", "ANALYZE existing;"),
            ("rename-column", "ALTER TABLE existing RENAME COLUMN note TO remark;", "CREATE TABLE fresh (a int);\nALTER TABLE fresh RENAME COLUMN a TO b;"),
            ("rename-table", "ALTER TABLE existing RENAME TO old_existing;", "CREATE TABLE fresh (a int);\nALTER TABLE fresh RENAME TO newer;"),
        ];
        for (rule, firing, safe) in cases {
            let found = rules(firing);
            assert!(
                found.iter().any(|(r, _)| r == rule),
                "{rule} not found in {firing:?}: {found:?}"
            );
            let found = rules(safe);
            assert!(
                !found.iter().any(|(r, _)| r == rule),
                "{rule} found in safe {safe:?}: {found:?}"
            );
        }
    }

    #[test]
    fn every_rule_is_listed_once() {
        let ids: HashSet<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        for rule in Rule::ALL {
            assert_eq!(
                rule.safer_form().is_none(),
                rule == Rule::SyntaxError,
                "{rule:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let findings = lint_files(&[(
            "0001_a.sql",
            "-- héllo wörld\nCREATE TABLE t (a int);\nSELEC 1;\n",
        )]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let f = &findings[0];
        assert_eq!(
            (f.rule, f.line, f.column),
            (Rule::SyntaxError, 3, 1),
            "{f:?}"
        );
        assert!(f.message.contains("SELEC"), "{f:?}");

        // Multi-byte characters before the error on the same line: the
        // column counts characters.
        let findings = lint_files(&[("0001_a.sql", "SELECT 'ünïcödé', 1 2;")]);
        assert_eq!(
            (findings[0].line, findings[0].column),
            (1, 21),
            "{findings:?}"
        );
    }

    #[test]
    fn findings_point_at_the_statement_not_the_comment_before_it() {
        let found = rules("-- a comment\n/* and /* nested */ one */\n\n  TRUNCATE existing;");
        assert_eq!(found, [("truncate", 4)]);
        let f = &lint_files(&[("0001_a.sql", "SELECT 1;\n  -- why\n  TRUNCATE t;")])[0];
        assert_eq!((f.line, f.column), (3, 3));
    }

    #[test]
    fn rollbacks_may_destroy_but_are_still_checked() {
        let findings = lint_files(&[
            ("0001_a.sql", "CREATE TABLE t (a int);"),
            (
                "0001_a_rollback.sql",
                "DROP TABLE t;\nCREATE INDEX CONCURRENTLY i ON u (a);",
            ),
        ]);
        let ids: Vec<_> = findings
            .iter()
            .map(|f| (f.rule.id(), f.file.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("concurrently-in-transaction", "0001_a_rollback.sql")]
        );
    }

    #[test]
    fn missing_rollbacks_count_from_the_configured_version() {
        let files = [
            ("0001_a.sql", "SELECT 1;"),
            ("0002_b.sql", "SELECT 1;"),
            ("0003_c.sql", "SELECT 1;"),
            ("0003_c_rollback.sql", "SELECT 1;"),
        ];
        let options = LintOptions {
            rollback_required_from: Version::parse("1"),
        };
        let found: Vec<_> = lint(&set(&files), &options)
            .findings
            .into_iter()
            .map(|f| (f.rule.id(), f.file))
            .collect();
        assert_eq!(found, [("missing-rollback", "0002_b.sql".to_owned())]);
        assert!(lint(&set(&files), &LintOptions::default())
            .findings
            .is_empty());
    }

    #[test]
    fn a_check_validated_in_an_earlier_migration_allows_set_not_null() {
        let findings = lint_files(&[
            ("0001_a.sql", "CREATE TABLE t (a int);"),
            (
                "0002_b.sql",
                "ALTER TABLE t ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;",
            ),
            ("0003_c.sql", "ALTER TABLE t VALIDATE CONSTRAINT a_nn;"),
            ("0004_d.sql", "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
        ]);
        assert!(findings.is_empty(), "{findings:?}");
        // Not validated: still a scan.
        let findings = lint_files(&[
            ("0001_a.sql", "CREATE TABLE t (a int);"),
            (
                "0002_b.sql",
                "ALTER TABLE t ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;",
            ),
            ("0003_c.sql", "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
        ]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, Rule::SetNotNull);
    }

    #[test]
    fn tables_created_in_the_same_file_hold_no_data_yet() {
        let found = rules(
            "CREATE TABLE scratch (a int);\nINSERT INTO scratch VALUES (1);\nUPDATE scratch SET a = 2;\nDELETE FROM scratch;\nTRUNCATE scratch;\nALTER TABLE scratch DROP COLUMN a;\nALTER TABLE scratch RENAME TO scratch2;\nALTER TABLE scratch2 RENAME COLUMN a TO b;\nDROP TABLE public.scratch2;",
        );
        assert!(found.is_empty(), "{found:?}");
        let found = rules("CREATE TABLE scratch (a int);\nDROP TABLE scratch, existing;\nTRUNCATE scratch, existing;");
        assert_eq!(found, [("drop-table", 2), ("truncate", 3)]);
    }

    #[test]
    fn every_concurrently_form_needs_no_transaction() {
        for sql in [
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON existing (note);",
            "DROP INDEX CONCURRENTLY IF EXISTS existing_pkey;",
            "REINDEX INDEX CONCURRENTLY existing_pkey;",
            "REINDEX (CONCURRENTLY) TABLE existing;",
            "ALTER TABLE existing DETACH PARTITION existing_2020 CONCURRENTLY;",
        ] {
            assert_eq!(rules(sql), [("concurrently-in-transaction", 1)], "{sql}");
            let alone = format!("-- slipway:no-transaction\n{sql}");
            assert!(rules(&alone).is_empty(), "{alone}");
        }
        // Allowed inside a transaction: not flagged.
        assert!(rules("REFRESH MATERIALIZED VIEW CONCURRENTLY mv;").is_empty());
    }

    #[test]
    fn every_vacuum_needs_no_transaction() {
        for sql in [
            "VACUUM;",
            "VACUUM existing;",
            "VACUUM (ANALYZE, VERBOSE) existing;",
            "VACUUM (FULL false) existing;",
        ] {
            assert_eq!(rules(sql), [("vacuum-in-transaction", 1)], "{sql}");
            let alone = format!("-- slipway:no-transaction\n{sql}");
            assert!(rules(&alone).is_empty(), "{alone}");
        }
        // VACUUM FULL fails in a transaction and locks the table outside one.
        assert_eq!(
            rules("VACUUM FULL existing;"),
            [("vacuum-in-transaction", 1), ("vacuum-full", 1)]
        );
        assert_eq!(
            rules("-- slipway:no-transaction\nVACUUM FULL existing;"),
            [("vacuum-full", 2)]
        );
        // ANALYZE alone runs in a transaction.
        assert!(rules("ANALYZE existing;").is_empty());
    }

    #[test]
    fn dropping_an_index_created_in_the_same_file_is_not_flagged() {
        let found = rules(
            "CREATE TABLE scratch (a int);\nCREATE INDEX scratch_a_idx ON scratch (a);\nDROP INDEX public.scratch_a_idx;",
        );
        assert!(found.is_empty(), "{found:?}");
        // One index from an earlier migration among them: flagged. An
        // index lives in its table's schema.
        let found = rules(
            "CREATE INDEX existing_note_idx ON existing (note);\nDROP INDEX existing_note_idx;\nDROP INDEX existing_note_idx, existing_pkey;\nCREATE INDEX s_idx ON other.t (a);\nDROP INDEX other.s_idx;\nDROP INDEX s_idx;",
        );
        assert_eq!(
            found,
            [
                ("index-without-concurrently", 1),
                ("drop-index-without-concurrently", 3),
                ("index-without-concurrently", 4),
                ("drop-index-without-concurrently", 6),
            ]
        );
        // Rollback scripts drop indexes inside the rollback transaction.
        let findings = lint_files(&[
            ("0001_a.sql", "CREATE TABLE t (a int);"),
            ("0002_b.sql", "CREATE INDEX t_a_idx ON t (a);"),
            ("0002_b_rollback.sql", "DROP INDEX t_a_idx;"),
        ]);
        let ids: Vec<_> = findings
            .iter()
            .map(|f| (f.rule.id(), f.file.as_str()))
            .collect();
        assert_eq!(ids, [("index-without-concurrently", "0002_b.sql")]);
    }

    #[test]
    fn unique_and_primary_key_constraints_need_an_index_built_beforehand() {
        let found = rules(
            "ALTER TABLE existing ADD PRIMARY KEY (id);\nALTER TABLE existing ADD COLUMN code text UNIQUE;\nALTER TABLE existing ADD COLUMN n bigint\n    PRIMARY KEY;",
        );
        assert_eq!(
            found,
            [
                ("unique-constraint-without-index", 1),
                ("unique-constraint-without-index", 2),
                ("unique-constraint-without-index", 4),
            ]
        );
        let found = rules(
            "ALTER TABLE existing ADD CONSTRAINT existing_pkey PRIMARY KEY USING INDEX existing_id_idx;\nCREATE TABLE fresh (a int UNIQUE, b int, PRIMARY KEY (b));\nALTER TABLE fresh ADD CONSTRAINT fresh_a_b_key UNIQUE (a, b);\nALTER TABLE fresh ADD COLUMN c int UNIQUE;",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn validating_in_the_same_migration_gains_nothing() {
        let found = rules(
            "ALTER TABLE existing ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES existing (id) NOT VALID;\nALTER TABLE existing VALIDATE CONSTRAINT fk;",
        );
        assert_eq!(found, [("foreign-key-without-not-valid", 2)]);
        let findings = lint_files(&[
            ("0001_a.sql", "CREATE TABLE t (a int);"),
            (
                "0002_b.sql",
                "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;",
            ),
            ("0003_c.sql", "ALTER TABLE t VALIDATE CONSTRAINT c;"),
        ]);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn a_foreign_key_on_an_added_column_is_flagged() {
        let found = rules("ALTER TABLE existing ADD COLUMN parent int REFERENCES existing (id);");
        assert_eq!(found, [("foreign-key-without-not-valid", 1)]);
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 3), (2, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\néé x", 8), (2, 4));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn exit_codes_and_counts() {
        let outcome = LintOutcome {
            files: 1,
            findings: lint_files(&[("0001_a.sql", "SELECT 1;\nTRUNCATE t;")]),
        };
        let report = LintReport::new(outcome, 3);
        assert_eq!(
            (report.errors, report.warnings, report.exit_code()),
            (1, 0, 1)
        );
        let clean = LintReport::new(
            LintOutcome {
                files: 1,
                findings: vec![],
            },
            1,
        );
        assert_eq!(clean.exit_code(), 0);
        let failed = LintReport::failure(&Error::Config("x".into()), 1);
        assert_eq!(failed.exit_code(), 2);
    }

    #[test]
    fn json_field_names_are_stable() {
        let outcome = LintOutcome {
            files: 1,
            findings: lint_files(&[("0001_a.sql", "TRUNCATE t;")]),
        };
        let json = LintReport::new(outcome, 3).to_json();
        assert!(json.starts_with("{\"success\":true,\"action\":\"lint\",\"files\":1,\"errors\":1,\"warnings\":0,\"findings\":[{\"rule\":\"truncate\",\"severity\":\"error\",\"file\":\"0001_a.sql\",\"line\":1,\"column\":1,\"message\":"), "{json}");
        assert!(
            json.ends_with(",\"duration_ms\":3,\"error\":null}"),
            "{json}"
        );
    }
}
