//! The migration set: the files under `migrations/`, parsed, checked and
//! checksummed, whether read from a directory (the CLI) or embedded at compile
//! time (the Lambda, so the artifact carries exactly its commit's migrations).
//!
//! Both sources produce the same [`MigrationSet`]: the file conventions of
//! DESIGN.md ("Migration files") are enforced here, once, before any database
//! is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What a script is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MigrationKind {
    /// `NNNN_description.sql`: runs once, in version order.
    Versioned,
    /// `repeatable/*.sql`: re-applied after the versioned ones whenever its checksum changes.
    Repeatable,
    /// `NNNN_description_rollback.sql`: undoes version NNNN (`slipway rollback`).
    Rollback,
}

impl MigrationKind {
    /// The name stored in the history table's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationKind::Versioned => "versioned",
            MigrationKind::Repeatable => "repeatable",
            MigrationKind::Rollback => "rollback",
        }
    }
}

/// `-- slipway:` directives read from a script's leading comment lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `-- slipway:no-transaction`: must run alone, outside the batch transaction.
    pub no_transaction: bool,
    /// `-- slipway:allow-destructive`: the linter accepts destructive statements.
    pub allow_destructive: bool,
}

/// A migration version: the digits of the file name, ordered numerically.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    number: u128,
}

impl Version {
    /// Parse a version as written in a file name or the history table.
    pub fn parse(text: &str) -> Option<Version> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number = text.parse().ok()?;
        Some(Version {
            text: text.to_owned(),
            number,
        })
    }

    /// The version as written (leading zeros kept).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.number == other.number
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.number.cmp(&other.number)
    }
}
impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One forward script (versioned or repeatable).
#[derive(Debug, Clone)]
pub struct Migration {
    pub kind: MigrationKind,
    /// `Some` for versioned scripts.
    pub version: Option<Version>,
    /// Human description from the file name, underscores as spaces.
    pub description: String,
    /// Path relative to the migrations directory, `/`-separated.
    pub script: String,
    pub sql: String,
    /// Hex SHA-256 of the file with CRLF normalised to LF.
    pub checksum: String,
    pub directives: Directives,
    /// The `_rollback.sql` script of a versioned migration, when there is one.
    pub rollback: Option<RollbackScript>,
}

impl Migration {
    /// The version as text, or `None` for repeatable scripts.
    pub fn version_str(&self) -> Option<&str> {
        self.version.as_ref().map(Version::as_str)
    }

    /// The step that undoes this migration: its rollback script, run and
    /// recorded (kind `rollback`) like a migration; `None` without one.
    pub fn rollback_step(&self) -> Option<Migration> {
        let rollback = self.rollback.as_ref()?;
        Some(Migration {
            kind: MigrationKind::Rollback,
            version: self.version.clone(),
            description: self.description.clone(),
            script: rollback.script.clone(),
            sql: rollback.sql.clone(),
            checksum: rollback.checksum.clone(),
            directives: rollback.directives,
            rollback: None,
        })
    }
}

/// The inverse of a versioned migration.
#[derive(Debug, Clone)]
pub struct RollbackScript {
    pub script: String,
    pub sql: String,
    pub checksum: String,
    pub directives: Directives,
}

/// The committed expected snapshot beside the migrations
/// (`slipway snapshot` writes it; apply checks the schema against it).
pub const EXPECTED_SNAPSHOT_FILE: &str = "schema.snapshot.json";

/// All migrations of one project, validated and ordered.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    versioned: Vec<Migration>,
    repeatable: Vec<Migration>,
    /// Text of [`EXPECTED_SNAPSHOT_FILE`], when the set has one.
    expected_snapshot: Option<String>,
}

/// One file handed to [`MigrationSet::from_files`]: its path relative to the
/// migrations directory (`/`-separated) and its bytes.
#[derive(Debug, Clone)]
pub struct SourceFile<'a> {
    pub path: String,
    pub contents: std::borrow::Cow<'a, [u8]>,
}

/// SHA-256 of the script with CRLF normalised to LF, as lower-case hex.
///
/// **This must never change**: it is compared with checksums recorded in
/// history tables of deployed databases; a different digest would report every
/// applied migration as modified. `tests::checksum_is_pinned` fixes it.
pub fn checksum(sql: &str) -> String {
    let mut hasher = Sha256::new();
    let mut rest = sql.as_bytes();
    // Feed the text in pieces, skipping the CR of every CRLF, so line endings
    // never cause a false mismatch between a Windows checkout and Linux CI.
    while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
        hasher.update(&rest[..pos]);
        rest = &rest[pos + 1..];
    }
    hasher.update(rest);
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

impl MigrationSet {
    /// Read every `*.sql` under `dir` (and `dir/repeatable/`).
    pub fn from_dir(dir: &Path) -> Result<MigrationSet> {
        let read_err = |path: &Path, source| Error::ReadMigrations {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| read_err(dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let file_type = entry.file_type().map_err(|e| read_err(&path, e))?;
            if file_type.is_dir() && name == "repeatable" {
                for inner in std::fs::read_dir(&path).map_err(|e| read_err(&path, e))? {
                    let inner = inner.map_err(|e| read_err(&path, e))?;
                    let inner_name = inner.file_name().to_string_lossy().into_owned();
                    if inner_name.ends_with(".sql") {
                        let contents =
                            std::fs::read(inner.path()).map_err(|e| read_err(&inner.path(), e))?;
                        files.push(SourceFile {
                            path: format!("repeatable/{inner_name}"),
                            contents: contents.into(),
                        });
                    }
                }
            } else if file_type.is_file()
                && (name.ends_with(".sql") || name == EXPECTED_SNAPSHOT_FILE)
            {
                let contents = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
                files.push(SourceFile {
                    path: name,
                    contents: contents.into(),
                });
            }
        }
        MigrationSet::from_files(files)
    }

    /// Build the set from a directory embedded with `include_dir!`.
    pub fn from_embedded(dir: &include_dir::Dir<'static>) -> Result<MigrationSet> {
        let mut files = Vec::new();
        collect_embedded(dir, &mut files);
        MigrationSet::from_files(files)
    }

    /// Build the set from already-read files; the single place the naming
    /// rules, directives and checksums are applied.
    pub fn from_files<'a>(files: impl IntoIterator<Item = SourceFile<'a>>) -> Result<MigrationSet> {
        let mut versioned: BTreeMap<Version, Migration> = BTreeMap::new();
        let mut rollbacks: Vec<(Version, String, RollbackScript)> = Vec::new();
        let mut repeatable = Vec::new();
        let mut expected_snapshot = None;

        for file in files {
            let invalid = |reason: &str| Error::InvalidMigrationFile {
                file: PathBuf::from(&file.path),
                reason: reason.to_owned(),
            };
            if file.path == EXPECTED_SNAPSHOT_FILE {
                let text = std::str::from_utf8(&file.contents).map_err(|e| {
                    invalid(&format!(
                        "not valid UTF-8 ({e}); regenerate it with `slipway snapshot`"
                    ))
                })?;
                expected_snapshot = Some(text.to_owned());
                continue;
            }
            let sql = std::str::from_utf8(&file.contents)
                .map_err(|e| invalid(&format!("not valid UTF-8 ({e}); save it as UTF-8")))?
                .to_owned();
            if sql.trim().is_empty() {
                return Err(invalid("the file is empty; delete it or add SQL"));
            }
            let directives = parse_directives(&sql).map_err(|reason| invalid(&reason))?;
            if let Some((line, statement)) = crate::statements::transaction_control(&sql) {
                return Err(invalid(&format!(
                    "line {line}: {statement} controls the transaction, which slipway owns (every migration runs inside one transaction); remove it"
                )));
            }
            let sum = checksum(&sql);

            if let Some(name) = file.path.strip_prefix("repeatable/") {
                let stem = name.strip_suffix(".sql").unwrap_or(name);
                if stem.is_empty() || name.contains('/') {
                    return Err(invalid(
                        "repeatable scripts are named repeatable/<name>.sql",
                    ));
                }
                // Repeatables run in the last transaction of an apply, which
                // records the objects they create so that a rollback can drop
                // them; outside a transaction there is nothing to record in.
                if directives.no_transaction {
                    return Err(invalid(
                        "repeatable scripts cannot be -- slipway:no-transaction; move the statement to a versioned migration",
                    ));
                }
                repeatable.push(Migration {
                    kind: MigrationKind::Repeatable,
                    version: None,
                    description: stem.replace('_', " "),
                    script: file.path.clone(),
                    sql,
                    checksum: sum,
                    directives,
                    rollback: None,
                });
                continue;
            }

            let (version, description, is_rollback) =
                parse_versioned_name(&file.path).map_err(|reason| invalid(&reason))?;
            if is_rollback {
                rollbacks.push((
                    version,
                    description,
                    RollbackScript {
                        script: file.path.clone(),
                        sql,
                        checksum: sum,
                        directives,
                    },
                ));
                continue;
            }
            let migration = Migration {
                kind: MigrationKind::Versioned,
                version: Some(version.clone()),
                description,
                script: file.path.clone(),
                sql,
                checksum: sum,
                directives,
                rollback: None,
            };
            if let Some(existing) = versioned.get(&version) {
                let (first, second) = ordered(&existing.script, &migration.script);
                return Err(Error::DuplicateVersion {
                    version: version.to_string(),
                    first,
                    second,
                });
            }
            versioned.insert(version, migration);
        }

        for (version, description, script) in rollbacks {
            let Some(forward) = versioned.get_mut(&version) else {
                return Err(Error::InvalidMigrationFile {
                    file: PathBuf::from(&script.script),
                    reason: format!(
                        "rollback for version {version} but there is no {version}_{}.sql",
                        description.replace(' ', "_")
                    ),
                });
            };
            if let Some(existing) = &forward.rollback {
                let (first, second) = ordered(&existing.script, &script.script);
                return Err(Error::DuplicateVersion {
                    version: version.to_string(),
                    first,
                    second,
                });
            }
            forward.rollback = Some(script);
        }

        repeatable.sort_by(|a, b| a.script.cmp(&b.script));
        Ok(MigrationSet {
            versioned: versioned.into_values().collect(),
            repeatable,
            expected_snapshot,
        })
    }

    /// The text of the committed expected snapshot, when there is one.
    pub fn expected_snapshot(&self) -> Option<&str> {
        self.expected_snapshot.as_deref()
    }

    /// The same set without its expected snapshot (to build a new one).
    pub fn without_expected_snapshot(mut self) -> MigrationSet {
        self.expected_snapshot = None;
        self
    }

    /// Versioned migrations in version order.
    pub fn versioned(&self) -> &[Migration] {
        &self.versioned
    }

    /// Repeatable scripts in name order.
    pub fn repeatable(&self) -> &[Migration] {
        &self.repeatable
    }

    /// The versioned migration with this version.
    pub fn find(&self, version: &Version) -> Option<&Migration> {
        self.versioned
            .binary_search_by(|m| {
                m.version
                    .as_ref()
                    .map_or(std::cmp::Ordering::Less, |v| v.cmp(version))
            })
            .ok()
            .map(|i| &self.versioned[i])
    }

    /// The highest versioned migration, if any.
    pub fn latest_version(&self) -> Option<&Version> {
        self.versioned.last().and_then(|m| m.version.as_ref())
    }
}

fn collect_embedded(dir: &include_dir::Dir<'static>, files: &mut Vec<SourceFile<'static>>) {
    for file in dir.files() {
        let path = file.path().to_string_lossy().replace('\\', "/");
        if path.ends_with(".sql") || path == EXPECTED_SNAPSHOT_FILE {
            files.push(SourceFile {
                path,
                contents: std::borrow::Cow::Borrowed(file.contents()),
            });
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, files);
    }
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Split `0004_add_difficulty_level.sql` into version, description and
/// whether it is a `_rollback.sql`.
fn parse_versioned_name(name: &str) -> std::result::Result<(Version, String, bool), String> {
    const RULE: &str = "versioned migrations are named NNNN_description.sql (digits, underscore, description), rollbacks NNNN_description_rollback.sql";
    if name.contains('/') {
        return Err(format!("unexpected sub-directory; {RULE}"));
    }
    let stem = name
        .strip_suffix(".sql")
        .ok_or_else(|| format!("not a .sql file; {RULE}"))?;
    let (digits, rest) = stem
        .split_once('_')
        .ok_or_else(|| format!("bad name; {RULE}"))?;
    let version =
        Version::parse(digits).ok_or_else(|| format!("bad version '{digits}'; {RULE}"))?;
    let (description, is_rollback) = match rest.strip_suffix("_rollback") {
        Some(d) => (d, true),
        None if rest == "rollback" => ("", true),
        None => (rest, false),
    };
    if description.is_empty() && !is_rollback {
        return Err(format!("missing description; {RULE}"));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !description.chars().all(valid) {
        return Err(format!(
            "description may use letters, digits, '_' and '-' only; {RULE}"
        ));
    }
    Ok((version, description.replace('_', " "), is_rollback))
}

/// Read `-- slipway:<name>` directives from the leading comment block.
pub(crate) fn parse_directives(sql: &str) -> std::result::Result<Directives, String> {
    let mut directives = Directives::default();
    for line in sql.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let Some(directive) = comment.trim().strip_prefix("slipway:") else {
            continue;
        };
        match directive.trim() {
            "no-transaction" => directives.no_transaction = true,
            "allow-destructive" => directives.allow_destructive = true,
            other => {
                return Err(format!(
                "unknown directive '-- slipway:{other}'; known: no-transaction, allow-destructive"
            ))
            }
        }
    }
    Ok(directives)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str) -> SourceFile<'static> {
        SourceFile {
            path: path.to_owned(),
            contents: contents.as_bytes().to_vec().into(),
        }
    }

    fn error_text(files: Vec<SourceFile<'static>>) -> String {
        match MigrationSet::from_files(files) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn checksum_is_pinned() {
        // Known digests: never change these values (see `checksum`).
        assert_eq!(
            checksum("select 1;\n"),
            "4a45092ccf992ea92250053a80b931b787924ba61648f420555511b84f10ab6c"
        );
        assert_eq!(
            checksum("select 1;\r\n"),
            "4a45092ccf992ea92250053a80b931b787924ba61648f420555511b84f10ab6c"
        );
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            checksum("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn crlf_does_not_change_the_checksum() {
        assert_eq!(checksum("a\r\nb\r\n"), checksum("a\nb\n"));
        assert_ne!(checksum("a\rb"), checksum("ab"));
        assert_eq!(checksum("\r\n\r\n"), checksum("\n\n"));
    }

    #[test]
    fn versions_order_numerically_and_pair_rollbacks() {
        let set = MigrationSet::from_files(vec![
            file("10_ten.sql", "select 10;"),
            file("9_nine.sql", "select 9;"),
            file("9_nine_rollback.sql", "select -9;"),
            file("repeatable/views.sql", "select 'v';"),
        ])
        .unwrap();
        let versions: Vec<_> = set.versioned().iter().map(|m| m.script.as_str()).collect();
        assert_eq!(versions, ["9_nine.sql", "10_ten.sql"]);
        assert_eq!(set.versioned()[0].description, "nine");
        assert_eq!(
            set.versioned()[0].rollback.as_ref().unwrap().script,
            "9_nine_rollback.sql"
        );
        assert!(set.versioned()[1].rollback.is_none());
        assert_eq!(set.repeatable()[0].description, "views");
        assert_eq!(set.latest_version().unwrap().as_str(), "10");
    }

    #[test]
    fn duplicate_version_names_both_files() {
        let text = error_text(vec![
            file("0002_b.sql", "select 1;"),
            file("002_a.sql", "select 1;"),
        ]);
        assert!(
            text.contains("002_a.sql") && text.contains("0002_b.sql"),
            "{text}"
        );
    }

    #[test]
    fn bad_files_are_named() {
        for (name, contents, needle) in [
            ("abc.sql", "select 1;", "bad name"),
            ("x1_a.sql", "select 1;", "bad version"),
            ("0001_.sql", "select 1;", "missing description"),
            ("0001_a b.sql", "select 1;", "description may use"),
            ("0001_a.sql", "  \n ", "empty"),
            (
                "0001_a.sql",
                "-- slipway:bogus\nselect 1;",
                "unknown directive",
            ),
            ("0001_a_rollback.sql", "select 1;", "no 0001_a.sql"),
            (
                "0001_a.sql",
                "create table t ();\ncommit;",
                "line 2: COMMIT",
            ),
        ] {
            let text = error_text(vec![file(name, contents)]);
            assert!(text.contains(name), "{text}");
            assert!(text.contains(needle), "{name}: {text}");
        }
        let bad_utf8 = SourceFile {
            path: "0001_a.sql".into(),
            contents: vec![0xff, 0xfe, b'x'].into(),
        };
        let text = error_text(vec![bad_utf8]);
        assert!(
            text.contains("0001_a.sql") && text.contains("UTF-8"),
            "{text}"
        );
    }

    #[test]
    fn directives_are_read_from_leading_comments_only() {
        let set = MigrationSet::from_files(vec![file(
            "0001_a.sql",
            "-- build the index\n-- slipway:no-transaction\n\nCREATE INDEX CONCURRENTLY i ON t (c);\n-- slipway:allow-destructive\n",
        )])
        .unwrap();
        let d = set.versioned()[0].directives;
        assert!(d.no_transaction);
        assert!(!d.allow_destructive);
    }

    #[test]
    fn a_rollback_script_becomes_a_rollback_step_with_its_directives() {
        let set = MigrationSet::from_files([
            file("0001_index.sql", "CREATE INDEX i ON t (c);\n"),
            file(
                "0001_index_rollback.sql",
                "-- slipway:no-transaction\nDROP INDEX CONCURRENTLY i;\n",
            ),
        ])
        .unwrap();
        let step = set.versioned()[0].rollback_step().unwrap();
        assert_eq!(step.kind, MigrationKind::Rollback);
        assert_eq!(step.kind.as_str(), "rollback");
        assert_eq!(step.version_str(), Some("0001"));
        assert_eq!(step.script, "0001_index_rollback.sql");
        assert!(step.directives.no_transaction);
        assert!(step.rollback.is_none());
    }

    #[test]
    fn a_repeatable_script_cannot_be_no_transaction() {
        let err = MigrationSet::from_files([file(
            "repeatable/v.sql",
            "-- slipway:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n",
        )])
        .unwrap_err();
        assert!(err.to_string().contains("no-transaction"), "{err}");
    }
}
