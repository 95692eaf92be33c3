//! The command line when clap refuses it: whether `--json` was asked for
//! (stdout then owes one report), the message with every password blanked,
//! a hint for a URL given as an argument, and the action to name in the
//! report.

use std::ffi::OsString;
use std::process::ExitCode;

use slipway::{redact, Error, Report};

use crate::output;

/// Whether the command line asks for JSON, read from the raw arguments: when
/// parsing fails there is no `Cli` to ask, and `--json` still owes stdout
/// its one report.
pub fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .map(|a| a.to_str())
        .take_while(|a| *a != Some("--"))
        .any(|a| a.is_some_and(|a| a == "--json" || a.starts_with("--json=")))
}

/// A command line clap refused (or `--help`, `--version`): its message, with
/// every password blanked, on stderr — or, with `--json`, a `bad_request`
/// report on stdout. Exit 2, as for every error.
pub fn argument_error(error: &clap::Error, args: &[OsString], json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let text = redact::redact(&error.render().to_string());
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        output::out(&text);
        return ExitCode::SUCCESS;
    }
    // A psql habit: the URL as an argument. Say where it goes.
    let url_hint = stray_database_url(args).then_some(
        "a database URL was given as an argument; use --database-url URL or DATABASE_URL",
    );
    if json {
        let mut message: Vec<String> =
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                // clap's text is the whole help; the usage line says enough.
                let usage = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Usage:"))
                    .map_or_else(String::new, |u| format!(", as in: {}", u.trim()));
                vec![format!("a subcommand is missing{usage}")]
            } else {
                text.lines()
                    .map(str::trim)
                    .filter(|l| {
                        !l.is_empty()
                            && !l.starts_with("Usage:")
                            && !l.starts_with("For more information")
                    })
                    .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_owned())
                    .collect()
            };
        message.extend(url_hint.map(str::to_owned));
        message.push("see slipway --help".into());
        let (action, dry_run) = guess_action(args);
        let error = Error::BadRequest(message.join("; "));
        output::report_json(&Report::failure(action, dry_run, &error));
    } else {
        output::err(&text);
        if let Some(hint) = url_hint {
            output::err(&format!("\n  hint: {hint}\n"));
        }
    }
    ExitCode::from(2)
}

/// Whether an argument other than the value of `--database-url` looks
/// like a connection URL (`postgresql://...`) or a `key=value` connection
/// string.
fn stray_database_url(args: &[OsString]) -> bool {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    words.iter().enumerate().any(|(i, word)| {
        let value_of_flag = i > 0 && words[i - 1] == "--database-url";
        let lower = word.to_ascii_lowercase();
        !value_of_flag
            && !lower.starts_with("--database-url=")
            && (lower.contains("://")
                || lower.starts_with("postgres")
                || lower.contains("host=")
                || lower.contains("dbname=")
                || lower.contains("password="))
    })
}

/// The action and dry-run of a command line clap refused, for the report:
/// the first subcommand named, else `unknown` (as the Lambda says for an
/// event it cannot read).
fn guess_action(args: &[OsString]) -> (&'static str, bool) {
    const ACTIONS: [(&str, &str); 10] = [
        ("validate", "validate"),
        ("--validate", "validate"),
        ("apply", "apply"),
        ("--apply", "apply"),
        ("rollback", "rollback"),
        ("status", "status"),
        ("verify", "verify"),
        ("snapshot", "snapshot"),
        ("lint", "lint"),
        ("local", "local"),
    ];
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .collect();
    let action = words
        .iter()
        .find_map(|word| ACTIONS.iter().find(|(w, _)| w == word).map(|(_, a)| *a))
        .unwrap_or("unknown");
    let dry_run = (action == "apply" || action == "rollback") && words.contains(&"--dry-run");
    (action, dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_read_from_the_raw_arguments() {
        let args = |list: &[&str]| -> Vec<OsString> {
            std::iter::once("slipway")
                .chain(list.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert!(wants_json(&args(&["apply", "--json"])));
        assert!(wants_json(&args(&["--json=x"])));
        assert!(!wants_json(&args(&["apply", "--", "--json"])));
        assert!(!wants_json(&args(&["--jsonx"])));
        assert_eq!(
            guess_action(&args(&["--dry-run", "apply", "--to"])),
            ("apply", true)
        );
        assert_eq!(
            guess_action(&args(&["--dry-run", "status"])),
            ("status", false)
        );
        assert_eq!(guess_action(&args(&["migrate"])), ("unknown", false));
    }
}
