//! `slipway-infra [FILE]`: writes the rendered template (default
//! `infra/template.json` beside this crate) — `make template`. The crate's
//! only I/O.

use std::path::PathBuf;
use std::process::ExitCode;

use slipway_infra::{render, to_file_text, StackConfig};

fn main() -> ExitCode {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("template.json"),
        PathBuf::from,
    );
    let text = to_file_text(&render(&StackConfig::default()));
    match std::fs::write(&path, &text) {
        Ok(()) => {
            println!("{}: {} bytes", path.display(), text.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slipway-infra: cannot write {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}
