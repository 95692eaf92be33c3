//! What the decision tests build their cases from: migration sets from
//! file texts, history rows, snapshots from JSON, an empty report. One
//! place, so that each table reads as its cases and a change to one of
//! these types is one edit here.

use crate::db::catalog::Snapshot;
use crate::migrations::{checksum, MigrationSet, SourceFile};
use crate::plan::HistoryRow;
use crate::report::Report;

/// A migration set of `(path, contents)` files.
pub fn set(files: &[(&str, &str)]) -> MigrationSet {
    MigrationSet::from_files(files.iter().map(|(path, contents)| SourceFile {
        path: (*path).to_owned(),
        contents: contents.as_bytes().to_vec().into(),
    }))
    .expect("the test files are a valid migration set")
}

/// A history row of `kind` for `script`, whose checksum is that of `sql`.
pub fn row(id: i64, kind: &str, version: Option<&str>, script: &str, sql: &str) -> HistoryRow {
    HistoryRow {
        id,
        version: version.map(str::to_owned),
        description: script.to_owned(),
        kind: crate::plan::HistoryKind::parse(kind),
        script: script.to_owned(),
        checksum: checksum(sql),
        applied_at: format!("at {id}"),
        applied_by: "migrator".to_owned(),
        client: "cli:test".to_owned(),
        execution_ms: id * 10,
    }
}

/// A snapshot of schema `public` holding `relations` (a JSON object).
pub fn snapshot(relations: &str) -> Snapshot {
    let text = format!(r#"{{"format":1,"schemas":["public"],"relations":{relations}}}"#);
    Snapshot::from_json(&text, "the test snapshot").expect("the test snapshot is valid")
}

/// Table `public.t` with one index, valid or not.
pub fn table_with_index(index: &str, valid: bool) -> String {
    format!(
        r#"{{"public.t":{{"kind":"table","owner":"o","indexes":{{"{index}":{{"definition":"CREATE INDEX {index} ON public.t USING btree (a)","valid":{valid}}}}}}}}}"#
    )
}

/// An empty report of an apply, as a run starts with.
pub fn report() -> Report {
    Report::new(crate::action::Action::Apply, false)
}
