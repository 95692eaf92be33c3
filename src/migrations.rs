//! The migration set: the files under `migrations/`, parsed, checked and
//! checksummed, whether read from a directory (the CLI) or embedded at compile
//! time (the Lambda, so the artifact carries exactly its commit's migrations).
//!
//! Both sources produce the same [`MigrationSet`]: the file conventions of
//! docs/DESIGN.md ("Migration files") are enforced here, once, before any database
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
    /// Read every `*.sql` under `dir` (and `dir/repeatable/`), following
    /// symbolic links. Any other entry is an error unless it is harmless
    /// (dot-files, READMEs, `slipway.toml`), so a misplaced file never
    /// passes silently.
    pub fn from_dir(dir: &Path) -> Result<MigrationSet> {
        let mut files = Vec::new();
        read_dir_entries(dir, "", &mut files)?;
        MigrationSet::from_files(files)
    }

    /// Build the set from a directory embedded with `include_dir!`, by the
    /// same rules as [`MigrationSet::from_dir`].
    pub fn from_embedded(dir: &include_dir::Dir<'static>) -> Result<MigrationSet> {
        let mut files = Vec::new();
        collect_embedded(dir, &mut files)?;
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
            match classify_entry(&file.path, EntryType::File) {
                Ok(Entry::Ignored) => continue,
                Ok(_) => {}
                Err(reason) => return Err(invalid(&reason)),
            }
            if file.path == EXPECTED_SNAPSHOT_FILE {
                let text = std::str::from_utf8(&file.contents).map_err(|e| {
                    invalid(&format!(
                        "not valid UTF-8 ({e}); regenerate it with `slipway snapshot`"
                    ))
                })?;
                let text = text.strip_prefix(BOM).unwrap_or(text);
                expected_snapshot = Some(text.to_owned());
                continue;
            }
            let text = script_text(&file.contents).map_err(|reason| invalid(&reason))?;
            // The checksum is of the file as it is, byte-order mark and all,
            // as it always was; the server and the directives get the text.
            let sum = checksum(text);
            let sql = text.strip_prefix(BOM).unwrap_or(text).to_owned();
            if sql.trim().is_empty() {
                return Err(invalid("the file is empty; delete it or add SQL"));
            }
            let directives = parse_directives(&sql).map_err(|reason| invalid(&reason))?;
            if let Err(problem) = crate::statements::check(&sql) {
                return Err(invalid(&problem_reason(&problem)));
            }

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
    /// Whether `script` (a migration or a rollback script of the set) is a
    /// `-- slipway:no-transaction` one: its statements ran outside a
    /// transaction, so a failure in it may have left some of them done.
    pub fn runs_alone(&self, script: &str) -> bool {
        self.versioned.iter().chain(&self.repeatable).any(|m| {
            (m.script == script && m.directives.no_transaction)
                || m.rollback
                    .as_ref()
                    .is_some_and(|r| r.script == script && r.directives.no_transaction)
        })
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

/// A UTF-8 byte-order mark, which some Windows editors put first.
const BOM: &str = "\u{feff}";

/// What an entry of a migrations directory is, by its path relative to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// A `*.sql` script.
    Script,
    /// [`EXPECTED_SNAPSHOT_FILE`].
    Snapshot,
    /// `repeatable/`, to read.
    RepeatableDir,
    /// Harmless beside migrations: dot-files, READMEs, `slipway.toml`.
    Ignored,
}

/// What the file system says an entry is (after following links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryType {
    File,
    Dir,
    /// A socket, a FIFO, a device.
    Other,
}

const ALLOWED: &str = "a migrations directory holds NNNN_description.sql, NNNN_description_rollback.sql, repeatable/<name>.sql and schema.snapshot.json (README*, *.md, slipway.toml and dot-files are ignored)";

/// The one decision of which entries a migration set may hold, for the
/// directory and the embedded loader alike (so the CLI and the Lambda
/// agree): `Err` says why an entry is refused and what to do.
fn classify_entry(path: &str, kind: EntryType) -> std::result::Result<Entry, String> {
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, path),
    };
    // Dot-files come from editors and tools (`.gitkeep`, `.DS_Store`, an
    // editor's lock link, which dangles): never read, never refused.
    if name.starts_with('.') && matches!(parent, None | Some("repeatable")) {
        return Ok(Entry::Ignored);
    }
    let lower = name.to_ascii_lowercase();
    let documentation = lower.starts_with("readme") || lower.ends_with(".md");
    match (parent, kind) {
        (_, EntryType::Other) => Err(format!(
            "not a regular file or directory; remove it — {ALLOWED}"
        )),
        (None, EntryType::Dir) if name == "repeatable" => Ok(Entry::RepeatableDir),
        (None, EntryType::Dir) => Err(format!(
            "unknown directory; slipway reads only repeatable/ below the migrations directory — move it elsewhere ({ALLOWED})"
        )),
        (None, EntryType::File) if name == EXPECTED_SNAPSHOT_FILE => Ok(Entry::Snapshot),
        (None, EntryType::File) if name.ends_with(".sql") => Ok(Entry::Script),
        (None, EntryType::File) if documentation || name == "slipway.toml" => Ok(Entry::Ignored),
        (None, EntryType::File) => Err(format!(
            "slipway does not know this file; rename it or move it elsewhere — {ALLOWED}"
        )),
        (Some("repeatable"), EntryType::Dir) => Err(
            "repeatable/ holds no sub-directories; put each script directly in repeatable/ as <name>.sql".to_owned(),
        ),
        (Some("repeatable"), EntryType::File) if name.ends_with(".sql") => Ok(Entry::Script),
        (Some("repeatable"), EntryType::File) if documentation => Ok(Entry::Ignored),
        (Some("repeatable"), EntryType::File) => Err(
            "repeatable/ holds only <name>.sql scripts (README*, *.md and dot-files are ignored); rename it or move it elsewhere".to_owned(),
        ),
        (Some(_), _) => Err(format!(
            "unexpected sub-directory; slipway reads only repeatable/ below the migrations directory — {ALLOWED}"
        )),
    }
}

/// How an entry refused by [`classify_entry`] is named: its relative path,
/// with a `/` for a directory.
fn refused(path: &str, kind: EntryType, reason: String) -> Error {
    let file = if kind == EntryType::Dir {
        format!("{path}/")
    } else {
        path.to_owned()
    };
    Error::InvalidMigrationFile {
        file: PathBuf::from(file),
        reason,
    }
}

/// Read the entries of `dir` (relative path `prefix`, empty or ending in
/// `/`) into `files`, in name order so the first error is always the same.
fn read_dir_entries(dir: &Path, prefix: &str, files: &mut Vec<SourceFile<'static>>) -> Result<()> {
    let read_err = |path: &Path, source| Error::ReadMigrations {
        path: path.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        entries.push((entry.file_name(), entry.path()));
    }
    entries.sort();
    for (name, path) in entries {
        let Some(name) = name.to_str() else {
            return Err(Error::InvalidMigrationFile {
                file: PathBuf::from(format!("{prefix}{}", name.to_string_lossy())),
                reason: "the name is not valid UTF-8; rename it".to_owned(),
            });
        };
        let relative = format!("{prefix}{name}");
        // Dot-entries are ignored whatever they are; decide before following
        // them, as an editor's lock file is a dangling link.
        if name.starts_with('.') {
            continue;
        }
        // `metadata` follows symbolic links: a linked script or a linked
        // `repeatable/` is read like the real thing.
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(source) => {
                if let Ok(target) = std::fs::read_link(&path) {
                    return Err(Error::Config(format!(
                        "{} is a symbolic link to {}, which cannot be read ({source}); fix or remove the link",
                        path.display(),
                        target.display()
                    )));
                }
                return Err(read_err(&path, source));
            }
        };
        let kind = if metadata.is_dir() {
            EntryType::Dir
        } else if metadata.is_file() {
            EntryType::File
        } else {
            EntryType::Other
        };
        match classify_entry(&relative, kind).map_err(|reason| refused(&relative, kind, reason))? {
            Entry::Ignored => {}
            Entry::RepeatableDir => read_dir_entries(&path, "repeatable/", files)?,
            Entry::Script | Entry::Snapshot => {
                let contents = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
                files.push(SourceFile {
                    path: relative,
                    contents: contents.into(),
                });
            }
        }
    }
    Ok(())
}

/// The embedded twin of [`read_dir_entries`] (`include_dir!` has already
/// followed the links, at compile time).
fn collect_embedded(
    dir: &include_dir::Dir<'static>,
    files: &mut Vec<SourceFile<'static>>,
) -> Result<()> {
    let mut entries: Vec<(String, &include_dir::DirEntry<'static>)> = dir
        .entries()
        .iter()
        .map(|entry| (entry.path().to_string_lossy().replace('\\', "/"), entry))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (relative, entry) in entries {
        let kind = match entry {
            include_dir::DirEntry::Dir(_) => EntryType::Dir,
            include_dir::DirEntry::File(_) => EntryType::File,
        };
        match classify_entry(&relative, kind).map_err(|reason| refused(&relative, kind, reason))? {
            Entry::Ignored => {}
            Entry::RepeatableDir => {
                if let include_dir::DirEntry::Dir(sub) = entry {
                    collect_embedded(sub, files)?;
                }
            }
            Entry::Script | Entry::Snapshot => {
                if let include_dir::DirEntry::File(file) = entry {
                    files.push(SourceFile {
                        path: relative,
                        contents: std::borrow::Cow::Borrowed(file.contents()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The text of a script, or why PostgreSQL could not be given it.
fn script_text(bytes: &[u8]) -> std::result::Result<&str, String> {
    let line_at = |offset: usize| bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(
            "is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8".to_owned(),
        );
    }
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(format!(
            "contains a NUL byte at line {}; PostgreSQL cannot take it — remove it (if the file was saved as UTF-16, save it as UTF-8)",
            line_at(offset)
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (the first bad byte is at line {}); save it as UTF-8",
            line_at(e.valid_up_to())
        )
    })
}

/// Why [`crate::statements::check`] refused a script, and what to do.
fn problem_reason(problem: &crate::statements::Problem) -> String {
    use crate::statements::{ProblemKind, Unterminated};
    const PLAIN_SQL: &str = "slipway runs plain SQL, not psql scripts (meta-commands and COPY FROM stdin data blocks are psql features)";
    let line = problem.line;
    match &problem.kind {
        ProblemKind::Unterminated(what) => {
            let (construct, fix) = match what {
                Unterminated::QuotedString => (
                    "quoted string".to_owned(),
                    "close it with ' (a quote inside a string is written '')".to_owned(),
                ),
                Unterminated::QuotedIdentifier => (
                    "quoted identifier".to_owned(),
                    "close it with \" (a \" inside an identifier is written \"\")".to_owned(),
                ),
                Unterminated::DollarQuote(tag) => (
                    format!("dollar-quoted string {tag}"),
                    format!("close it with the same tag, {tag}"),
                ),
                Unterminated::BlockComment => (
                    "block comment".to_owned(),
                    "close it with */ (block comments nest: each /* needs its own */)".to_owned(),
                ),
            };
            format!("unterminated {construct} starting at line {line}; {fix}")
        }
        ProblemKind::MetaCommand(name) => format!(
            "line {line}: {name} is a psql meta-command; {PLAIN_SQL} — write the SQL it stands for in the file, and load data with INSERT or COPY FROM a server file"
        ),
        ProblemKind::CopyFromStdin => format!(
            "line {line}: COPY ... FROM STDIN needs a client to stream its data; {PLAIN_SQL} — load data with INSERT or COPY FROM a server file"
        ),
        ProblemKind::TransactionControl(form) => format!(
            "line {line}: {form} controls the transaction, which slipway owns (each run's migrations share one transaction, committed with their history rows); remove the BEGIN/COMMIT, and for a statement that cannot run inside a transaction (e.g. CREATE INDEX CONCURRENTLY) put -- slipway:no-transaction at the top of the file"
        ),
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

    fn invalid_reason(files: Vec<SourceFile<'static>>) -> (PathBuf, String) {
        match MigrationSet::from_files(files) {
            Err(Error::InvalidMigrationFile { file, reason }) => (file, reason),
            other => panic!("expected an invalid migration file, got {other:?}"),
        }
    }

    #[test]
    fn transaction_control_is_refused_however_it_is_written() {
        for (contents, needle) in [
            ("create table t ();\nCOMMIT/* x */;", "line 2: COMMIT"),
            ("create table t ();\nCOMMIT-- done", "line 2: COMMIT"),
            ("commit\t/*a*/and chain;", "line 1: COMMIT"),
            (
                "select 1;\n\nPrepare Transaction 'x';",
                "line 3: PREPARE TRANSACTION",
            ),
            ("rollback prepared 'x';", "line 1: ROLLBACK PREPARED"),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE;", "line 1: BEGIN"),
        ] {
            let (named, reason) = invalid_reason(vec![file("0001_a.sql", contents)]);
            assert_eq!(named, PathBuf::from("0001_a.sql"));
            assert!(reason.contains(needle), "{contents:?}: {reason}");
            assert!(reason.contains("slipway owns"), "{reason}");
            assert!(reason.contains("-- slipway:no-transaction"), "{reason}");
            assert!(reason.contains("remove the BEGIN/COMMIT"), "{reason}");
        }
        MigrationSet::from_files(vec![file(
            "0001_a.sql",
            "savepoint s;\nrollback to savepoint s;\nrelease s;\nprepare q as select 1;\ndo $$ begin commit; end $$;\n",
        )])
        .unwrap();
    }

    #[test]
    fn unterminated_constructs_name_the_file_and_line() {
        for (contents, needle) in [
            (
                "create table t ();\ninsert into t values ('it);\n",
                "unterminated quoted string starting at line 2",
            ),
            (
                "select 1;\nselect \"id from t;\n",
                "unterminated quoted identifier starting at line 2",
            ),
            (
                "\n\n\ndo $fn$ begin end $$;",
                "unterminated dollar-quoted string $fn$ starting at line 4",
            ),
            (
                "/* header /* nested */\nselect 1;",
                "unterminated block comment starting at line 1",
            ),
        ] {
            let (named, reason) = invalid_reason(vec![file("0007_x.sql", contents)]);
            assert_eq!(named, PathBuf::from("0007_x.sql"));
            assert!(reason.contains(needle), "{contents:?}: {reason}");
        }
        let err = MigrationSet::from_files(vec![file("0001_a.sql", "select 'x")]).unwrap_err();
        assert_eq!(err.code().as_str(), "config", "{err}");
    }

    #[test]
    fn psql_scripts_are_refused() {
        for (contents, needle) in [
            ("\\i other.sql\n", "line 1: \\i is a psql meta-command"),
            (
                "select 1;\n  \\connect db\n",
                "line 2: \\connect is a psql meta-command",
            ),
            ("\\set x 1\n", "line 1: \\set is a psql meta-command"),
            (
                "create table t (a int);\ncopy t (a) from STDIN;\n1\n\\.\n",
                "line 2: COPY ... FROM STDIN",
            ),
            (
                "COPY t FROM /* x */ stdin with (format csv);\n",
                "line 1: COPY ... FROM STDIN",
            ),
        ] {
            let (named, reason) = invalid_reason(vec![file("0002_data.sql", contents)]);
            assert_eq!(named, PathBuf::from("0002_data.sql"));
            assert!(reason.contains(needle), "{contents:?}: {reason}");
            assert!(reason.contains("plain SQL, not psql scripts"), "{reason}");
            assert!(
                reason.contains("INSERT or COPY FROM a server file"),
                "{reason}"
            );
        }
        MigrationSet::from_files(vec![file(
            "0002_data.sql",
            "copy t from '/srv/t.csv';\ncopy t to stdout;\nselect E'\\\\i x', '\n\\i y';\n",
        )])
        .unwrap();
    }

    #[test]
    fn nul_bytes_and_bad_encodings_are_named_with_the_line() {
        let bytes = |path: &str, contents: &[u8]| SourceFile {
            path: path.to_owned(),
            contents: contents.to_vec().into(),
        };
        let (file, reason) =
            invalid_reason(vec![bytes("0001_a.sql", b"select 1;\nselect '\0';\n")]);
        assert_eq!(file, PathBuf::from("0001_a.sql"));
        assert!(
            reason.contains("contains a NUL byte at line 2; PostgreSQL cannot take it"),
            "{reason}"
        );
        let (_, reason) =
            invalid_reason(vec![bytes("0001_a.sql", b"select 1;\n\nselect '\xe9';\n")]);
        assert!(
            reason.contains("not valid UTF-8") && reason.contains("line 3"),
            "{reason}"
        );
        let (_, reason) = invalid_reason(vec![bytes("0001_a.sql", b"\xff\xfes\0e\0l\0")]);
        assert!(reason.contains("UTF-16"), "{reason}");
    }

    #[test]
    fn a_byte_order_mark_is_stripped_but_stays_in_the_checksum() {
        let text = "\u{feff}-- slipway:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n";
        let set = MigrationSet::from_files(vec![
            file("0001_a.sql", text),
            file("repeatable/v.sql", "\u{feff}create view v as select 1;\n"),
            file(EXPECTED_SNAPSHOT_FILE, "\u{feff}{}"),
        ])
        .unwrap();
        let migration = &set.versioned()[0];
        assert!(migration.directives.no_transaction);
        assert!(migration.sql.starts_with("-- slipway:no-transaction"));
        // The digest of a file never changes: it is of the bytes as they are.
        assert_eq!(migration.checksum, checksum(text));
        assert_eq!(
            migration.checksum,
            "1e92debc7ee65431d97fb122f5be0a6a321d2aa8aa51c1a881854c249e856f9c"
        );
        assert_eq!(set.repeatable()[0].sql, "create view v as select 1;\n");
        assert_eq!(set.expected_snapshot(), Some("{}"));
        let (_, reason) = invalid_reason(vec![file("0002_b.sql", "\u{feff}\n")]);
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn entries_are_allowed_or_refused_by_one_rule() {
        use EntryType::{Dir, File, Other};
        for (path, kind, expected) in [
            ("0001_a.sql", File, Some(Entry::Script)),
            ("0001_a_rollback.sql", File, Some(Entry::Script)),
            ("schema.snapshot.json", File, Some(Entry::Snapshot)),
            ("repeatable", Dir, Some(Entry::RepeatableDir)),
            ("repeatable/views.sql", File, Some(Entry::Script)),
            (".gitkeep", File, Some(Entry::Ignored)),
            (".DS_Store", File, Some(Entry::Ignored)),
            (".git", Dir, Some(Entry::Ignored)),
            ("README", File, Some(Entry::Ignored)),
            ("README.txt", File, Some(Entry::Ignored)),
            ("notes.md", File, Some(Entry::Ignored)),
            ("slipway.toml", File, Some(Entry::Ignored)),
            ("repeatable/.gitkeep", File, Some(Entry::Ignored)),
            ("repeatable/README.md", File, Some(Entry::Ignored)),
            ("checks", Dir, None),
            ("old", Dir, None),
            ("README", Dir, None),
            ("0001_a.sql.bak", File, None),
            ("0001_a.SQL", File, None),
            ("notes.txt", File, None),
            ("fifo.sql", Other, None),
            ("repeatable/sub", Dir, None),
            ("repeatable/slipway.toml", File, None),
            ("repeatable/schema.snapshot.json", File, None),
            ("repeatable/v.txt", File, None),
            ("checks/a.sql", File, None),
            ("a/b/c.sql", File, None),
        ] {
            let got = classify_entry(path, kind);
            match expected {
                Some(entry) => assert_eq!(got, Ok(entry), "{path}"),
                None => {
                    let reason = got.expect_err(path);
                    assert!(!reason.is_empty());
                }
            }
        }
        let reason = classify_entry("notes.txt", File).unwrap_err();
        assert!(
            reason.contains("NNNN_description.sql") && reason.contains("repeatable/<name>.sql"),
            "{reason}"
        );
    }

    static EMBEDDED_OK: include_dir::Dir<'static> = include_dir::Dir::new(
        "",
        &[
            include_dir::DirEntry::File(include_dir::File::new("0001_a.sql", b"select 1;\n")),
            include_dir::DirEntry::File(include_dir::File::new(".gitkeep", b"")),
            include_dir::DirEntry::File(include_dir::File::new("README.md", b"# notes\n")),
            include_dir::DirEntry::File(include_dir::File::new(EXPECTED_SNAPSHOT_FILE, b"{}")),
            include_dir::DirEntry::Dir(include_dir::Dir::new(
                "repeatable",
                &[
                    include_dir::DirEntry::File(include_dir::File::new(
                        "repeatable/v.sql",
                        b"create view v as select 1;\n",
                    )),
                    include_dir::DirEntry::File(include_dir::File::new(
                        "repeatable/README",
                        b"views\n",
                    )),
                ],
            )),
        ],
    );

    static EMBEDDED_CHECKS: include_dir::Dir<'static> = include_dir::Dir::new(
        "",
        &[
            include_dir::DirEntry::File(include_dir::File::new("0001_a.sql", b"select 1;\n")),
            include_dir::DirEntry::Dir(include_dir::Dir::new(
                "checks",
                &[include_dir::DirEntry::File(include_dir::File::new(
                    "checks/c.sql",
                    b"select 1;\n",
                ))],
            )),
        ],
    );

    static EMBEDDED_STRAY: include_dir::Dir<'static> = include_dir::Dir::new(
        "",
        &[
            include_dir::DirEntry::File(include_dir::File::new("0001_a.sql", b"select 1;\n")),
            include_dir::DirEntry::File(include_dir::File::new("0002_b.sql.orig", b"select 2;\n")),
        ],
    );

    static EMBEDDED_NESTED: include_dir::Dir<'static> = include_dir::Dir::new(
        "",
        &[include_dir::DirEntry::Dir(include_dir::Dir::new(
            "repeatable",
            &[include_dir::DirEntry::Dir(include_dir::Dir::new(
                "repeatable/old",
                &[include_dir::DirEntry::File(include_dir::File::new(
                    "repeatable/old/v.sql",
                    b"select 1;\n",
                ))],
            ))],
        ))],
    );

    #[test]
    fn the_embedded_set_follows_the_directory_rules() {
        let set = MigrationSet::from_embedded(&EMBEDDED_OK).unwrap();
        assert_eq!(set.versioned().len(), 1);
        assert_eq!(set.repeatable().len(), 1);
        assert_eq!(set.repeatable()[0].script, "repeatable/v.sql");
        assert_eq!(set.expected_snapshot(), Some("{}"));
        for (dir, named) in [
            (&EMBEDDED_CHECKS, "checks/"),
            (&EMBEDDED_STRAY, "0002_b.sql.orig"),
            (&EMBEDDED_NESTED, "repeatable/old/"),
        ] {
            match MigrationSet::from_embedded(dir) {
                Err(Error::InvalidMigrationFile { file, .. }) => {
                    assert_eq!(file, PathBuf::from(named));
                }
                other => panic!("{named}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn stray_paths_handed_to_from_files_are_refused_or_ignored() {
        let (named, reason) = invalid_reason(vec![file("notes.txt", "x")]);
        assert_eq!(named, PathBuf::from("notes.txt"));
        assert!(reason.contains("does not know this file"), "{reason}");
        let set = MigrationSet::from_files(vec![
            file("README.md", "# not sql"),
            file("0001_a.sql", "select 1;"),
        ])
        .unwrap();
        assert_eq!(set.versioned().len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            ..proptest::prelude::ProptestConfig::default()
        })]

        #[test]
        fn the_name_parser_never_panics(name in proptest::prelude::any::<String>()) {
            let _ = parse_versioned_name(&name);
        }

        #[test]
        fn sqlish_names_parse_or_say_why(
            name in "(repeatable/)?[0-9]{0,40}_?[a-z_ -]{0,12}(_rollback)?(\\.sql|\\.SQL|\\.md|)?"
        ) {
            if let Err(reason) = parse_versioned_name(&name) {
                proptest::prop_assert!(reason.contains("NNNN_description.sql"), "{}", reason);
            }
        }

        #[test]
        fn loading_any_file_never_panics(
            name in proptest::prelude::any::<String>(),
            contents in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let _ = MigrationSet::from_files(vec![SourceFile { path: name, contents: contents.into() }]);
        }

        #[test]
        fn loading_sqlish_files_never_panics(
            name in "(repeatable/)?[0-9]{1,5}_[a-z]{1,5}(_rollback)?\\.sql",
            contents in "[\\x00-\\x7f\u{feff}é;'\"$\\\\/*-]{0,80}",
        ) {
            match MigrationSet::from_files(vec![file(&name, &contents)]) {
                Ok(_) => {}
                Err(error) => {
                    let code = error.code().as_str();
                    proptest::prop_assert!(matches!(code, "config" | "duplicate_version"), "{}", error);
                }
            }
        }
    }
}
