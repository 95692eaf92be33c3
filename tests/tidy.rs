//! Tidiness of the repository itself, checked on every `make test`: each
//! Rust file says why it exists (`//!`), and no text points a newcomer at a
//! file the repository does not hold.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tracked text files: everything under the project except build
/// output, the local server and the Python environment.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "fixtures" {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else if [".rs", ".md", ".yml", ".sh", ".toml"]
            .iter()
            .any(|ext| name.ends_with(ext))
            || name == "Makefile"
        {
            out.push(path);
        }
    }
}

fn all_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&root(), &mut out);
    out.sort();
    out
}

#[test]
fn every_rust_file_starts_by_saying_why_it_exists() {
    let missing: Vec<String> = all_files()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:?}");
}

/// Words that look like a path inside the repository: a `/` or a `.md`
/// ending, made of path characters.
fn path_like(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .map(|w| w.trim_end_matches(['.', '/']).trim_start_matches("./"))
        .filter(|w| {
            let file = [".md", ".rs", ".sh", ".yml", ".json", ".toml"]
                .iter()
                .any(|ext| w.ends_with(ext));
            file && (w.contains('/') || w.ends_with(".md"))
                && !w.starts_with(['/', '.'])
                && !w.starts_with("..")
                && !w.contains("//")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_text_refers_to_a_file_the_repository_does_not_hold() {
    let root = root();
    let mut dangling = Vec::new();
    for file in all_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // In Rust, only what people read: comments (string literals are
        // test data, such as the names of files a test makes).
        let text = if file.extension().is_some_and(|e| e == "rs") {
            text.lines()
                .filter_map(|l| l.trim_start().strip_prefix("//"))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        let dir = file.parent().unwrap_or(&root);
        // A crate's files speak relative to the crate (lambda/, infra/).
        let krate = file
            .strip_prefix(&root)
            .ok()
            .and_then(|p| p.components().next())
            .map(|c| root.join(c.as_os_str()));
        for word in path_like(&text) {
            let exists = [Some(root.clone()), Some(dir.to_path_buf()), krate.clone()]
                .into_iter()
                .flatten()
                .any(|base| base.join(&word).exists());
            // Paths made at run or build time, or inside other projects.
            let generated = word.contains("target/")
                || word.contains(".slipway/")
                || word.contains("<")
                || word.contains("NAME")
                || word.starts_with("tmp/")
                || word.starts_with("var/")
                || word.starts_with("etc/")
                || word.starts_with("docs/dev/");
            if !exists && !generated {
                dangling.push(format!(
                    "{}: {word}",
                    file.strip_prefix(&root).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        dangling.is_empty(),
        "references to files that do not exist:\n{}",
        dangling.join("\n")
    );
}
