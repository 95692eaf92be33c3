//! The migration loaders from the outside: what a directory on disk may
//! hold, how symbolic links are followed, and that the embedded set (the
//! Lambda's) is the same as the one read from disk (the CLI's). No database.

use std::path::{Path, PathBuf};

use slipway::error::Error;
use slipway::migrations::MigrationSet;

fn example_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// A migrations directory holding `files` (paths relative to it).
fn migrations_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, contents) in files {
        let path = dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(path, contents).expect("write file");
    }
    dir
}

/// The file an `InvalidMigrationFile` names and its reason.
fn refusal(dir: &Path) -> (PathBuf, String) {
    match MigrationSet::from_dir(dir) {
        Err(Error::InvalidMigrationFile { file, reason }) => (file, reason),
        other => panic!("expected an invalid migration file, got {other:?}"),
    }
}

#[test]
fn the_shipped_migrations_load_from_disk_and_embedded_alike() {
    static EMBEDDED: include_dir::Dir<'static> =
        include_dir::include_dir!("$CARGO_MANIFEST_DIR/migrations");
    let on_disk = MigrationSet::from_dir(&example_migrations()).expect("load migrations/");
    let embedded = MigrationSet::from_embedded(&EMBEDDED).expect("load embedded migrations/");
    assert!(!on_disk.versioned().is_empty());
    assert!(!on_disk.repeatable().is_empty());
    assert!(on_disk.expected_snapshot().is_some());
    let summary = |set: &MigrationSet| {
        set.versioned()
            .iter()
            .chain(set.repeatable())
            .map(|m| (m.script.clone(), m.checksum.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&on_disk), summary(&embedded));
    assert_eq!(on_disk.expected_snapshot(), embedded.expected_snapshot());
}

#[test]
fn harmless_files_beside_the_migrations_are_ignored() {
    let dir = migrations_dir(&[
        ("0001_a.sql", b"select 1;\n"),
        (".gitkeep", b""),
        (".DS_Store", b"\0\0\x01"),
        ("README.md", b"# migrations\n"),
        ("NOTES.md", b"notes\n"),
        ("slipway.toml", b"schema = \"slipway\"\n"),
        ("repeatable/v.sql", b"create view v as select 1;\n"),
        ("repeatable/.gitkeep", b""),
        ("repeatable/README", b"views\n"),
    ]);
    let set = MigrationSet::from_dir(dir.path()).expect("load");
    assert_eq!(set.versioned().len(), 1);
    assert_eq!(set.repeatable().len(), 1);
}

#[test]
fn unknown_entries_are_refused_by_name() {
    for (files, named, needle) in [
        (
            &[
                ("0001_a.sql", &b"select 1;\n"[..]),
                ("checks/c.sql", b"select 1;\n"),
            ][..],
            "checks/",
            "unknown directory",
        ),
        (
            &[
                ("0001_a.sql", &b"select 1;\n"[..]),
                ("old/0000_x.sql", b"select 1;\n"),
            ][..],
            "old/",
            "unknown directory",
        ),
        (
            &[
                ("0001_a.sql", &b"select 1;\n"[..]),
                ("0002_b.sql.bak", b"select 2;\n"),
            ][..],
            "0002_b.sql.bak",
            "does not know this file",
        ),
        (
            &[("0001_a.SQL", &b"select 1;\n"[..])][..],
            "0001_a.SQL",
            "does not know this file",
        ),
        (
            &[("repeatable/old/v.sql", &b"select 1;\n"[..])][..],
            "repeatable/old/",
            "no sub-directories",
        ),
        (
            &[("repeatable/v.sql.txt", &b"select 1;\n"[..])][..],
            "repeatable/v.sql.txt",
            "only <name>.sql",
        ),
    ] {
        let dir = migrations_dir(files);
        let error = MigrationSet::from_dir(dir.path()).unwrap_err();
        assert_eq!(error.code().as_str(), "config", "{error}");
        let (file, reason) = refusal(dir.path());
        assert_eq!(file, PathBuf::from(named), "{reason}");
        assert!(reason.contains(needle), "{named}: {reason}");
    }
    let (_, reason) =
        refusal(migrations_dir(&[("0001_a.sql", b"select 1;\n"), ("notes.txt", b"x")]).path());
    for allowed in [
        "NNNN_description.sql",
        "NNNN_description_rollback.sql",
        "repeatable/<name>.sql",
        "schema.snapshot.json",
        "README*",
        "slipway.toml",
        "dot-files",
    ] {
        assert!(reason.contains(allowed), "{allowed}: {reason}");
    }
}

#[cfg(unix)]
#[test]
fn symbolic_links_are_followed() {
    use std::os::unix::fs::symlink;
    let real = migrations_dir(&[
        ("0002_b.sql", b"create table b ();\n"),
        ("shared/v.sql", b"create view v as select 1;\n"),
    ]);
    let dir = migrations_dir(&[("0001_a.sql", b"create table a ();\n")]);
    symlink(
        real.path().join("0002_b.sql"),
        dir.path().join("0002_b.sql"),
    )
    .expect("link file");
    symlink(real.path().join("shared"), dir.path().join("repeatable")).expect("link dir");
    let set = MigrationSet::from_dir(dir.path()).expect("load");
    let scripts: Vec<&str> = set.versioned().iter().map(|m| m.script.as_str()).collect();
    assert_eq!(scripts, ["0001_a.sql", "0002_b.sql"]);
    assert_eq!(set.repeatable()[0].script, "repeatable/v.sql");
    assert_eq!(set.repeatable()[0].sql, "create view v as select 1;\n");
}

#[cfg(unix)]
#[test]
fn a_dangling_link_is_an_error_naming_it_unless_it_is_a_dot_file() {
    use std::os::unix::fs::symlink;
    let dir = migrations_dir(&[("0001_a.sql", b"select 1;\n")]);
    // An editor's lock file: a dot-file, and a dangling link.
    symlink("user@host.1234", dir.path().join(".#0001_a.sql")).expect("link");
    MigrationSet::from_dir(dir.path()).expect("a dangling dot-file is ignored");

    symlink(dir.path().join("gone.sql"), dir.path().join("0002_b.sql")).expect("link");
    let error = MigrationSet::from_dir(dir.path()).unwrap_err();
    assert_eq!(error.code().as_str(), "config", "{error}");
    let message = error.to_string();
    assert!(
        message.contains("0002_b.sql") && message.contains("gone.sql"),
        "{message}"
    );
    assert!(message.contains("symbolic link"), "{message}");
}

#[test]
fn file_contents_slipway_cannot_run_are_refused_from_disk() {
    for (contents, needle) in [
        (
            &b"select 1;\nselect '\0';\n"[..],
            "contains a NUL byte at line 2",
        ),
        (b"\\connect other\nselect 1;\n", "not psql scripts"),
        (b"copy t from stdin;\n1\n\\.\n", "COPY ... FROM STDIN"),
        (
            b"select 1;\nselect 'unclosed;\n",
            "unterminated quoted string starting at line 2",
        ),
        (
            b"create table t ();\nCOMMIT/* done */;\n",
            "line 2: COMMIT controls the transaction",
        ),
    ] {
        let dir = migrations_dir(&[("0001_a.sql", contents)]);
        let (file, reason) = refusal(dir.path());
        assert_eq!(file, PathBuf::from("0001_a.sql"));
        assert!(reason.contains(needle), "{reason}");
    }
}

#[test]
fn a_byte_order_mark_does_not_hide_a_directive() {
    let dir = migrations_dir(&[(
        "0001_index.sql",
        "\u{feff}-- slipway:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n".as_bytes(),
    )]);
    let set = MigrationSet::from_dir(dir.path()).expect("load");
    let migration = &set.versioned()[0];
    assert!(migration.directives.no_transaction);
    assert!(!migration.sql.starts_with('\u{feff}'));
}
