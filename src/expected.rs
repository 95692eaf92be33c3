//! `slipway snapshot`: the committed expected snapshot
//! (`migrations/schema.snapshot.json`), built by applying the migrations to
//! a throw-away database, then written — or, with `--check`, only compared
//! with the file, so CI fails while the committed one is stale.

use std::path::Path;
use std::time::Instant;

use crate::action::Action;
use crate::engine::{build_expected_snapshot, finish, Database};
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::report::{Report, SnapshotFile};

/// Build the expected snapshot on `server` and write it to `path`, or with
/// `check` only say whether `path` holds it already (`schema_valid`).
pub async fn write_or_check(
    set: &MigrationSet,
    server: &Database,
    path: &Path,
    check: bool,
) -> Report {
    let started = Instant::now();
    let mut report = Report::new(Action::Snapshot, false);
    let outcome = write_or_check_into(set, server, path, check, &mut report).await;
    finish(report, outcome, started)
}

async fn write_or_check_into(
    set: &MigrationSet,
    server: &Database,
    path: &Path,
    check: bool,
    report: &mut Report,
) -> Result<()> {
    let snapshot = build_expected_snapshot(set, server).await?;
    let text = snapshot.to_pretty_json();
    let up_to_date = std::fs::read_to_string(path).is_ok_and(|current| current == text);
    if !check {
        std::fs::write(path, &text)
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    }
    report.schema_valid = up_to_date || !check;
    report.snapshot = Some(SnapshotFile {
        path: path.display().to_string(),
        written: !check,
        tables: snapshot.table_count(),
        fingerprint: snapshot.fingerprint(),
    });
    Ok(())
}
