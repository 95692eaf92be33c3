//! Where each SQL statement of a script starts, so an error that PostgreSQL
//! reports without a character position can still be pinned to a line.
//!
//! slipway sends a whole migration as one simple-query message (fewer round
//! trips than psql's statement-at-a-time), and counts the statements the
//! server completed before the error; this module turns that count into a
//! line number. It understands what decides statement boundaries in
//! PostgreSQL's lexer: quoted strings (`'...'`, `E'...'`), quoted identifiers,
//! dollar quotes, line and nested block comments, and `BEGIN ATOMIC ... END`
//! bodies.

/// 1-based line numbers where each non-empty statement of `sql` starts.
pub fn statement_lines(sql: &str) -> Vec<usize> {
    statement_starts(sql)
        .into_iter()
        .map(|(line, _)| line)
        .collect()
}

/// Each non-empty statement of `sql` with the line it starts on, for
/// running them one message at a time (a no-transaction migration).
pub fn statements(sql: &str) -> Vec<(usize, &str)> {
    let starts = statement_starts(sql);
    starts
        .iter()
        .enumerate()
        .map(|(i, &(line, offset))| {
            let end = starts.get(i + 1).map_or(sql.len(), |&(_, next)| next);
            (line, &sql[offset..end])
        })
        .collect()
}

/// The first statement that controls the transaction (`BEGIN`, `COMMIT`,
/// `ROLLBACK`, ...), as its line and text. slipway owns the transaction: a
/// `COMMIT` inside a migration would make everything before it permanent
/// and run the rest outside any transaction.
pub fn transaction_control(sql: &str) -> Option<(usize, String)> {
    statement_starts(sql)
        .into_iter()
        .find_map(|(line, offset)| {
            let mut words = sql[offset..]
                .split(|c: char| c.is_whitespace() || c == ';')
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase);
            let first = words.next()?;
            let second = words.next().unwrap_or_default();
            let control = match first.as_str() {
                "commit" | "end" | "abort" => true,
                "begin" => second != "atomic",
                "start" => second == "transaction",
                "rollback" => second != "to",
                _ => false,
            };
            control.then(|| (line, first.to_ascii_uppercase()))
        })
}

/// Line and byte offset where each non-empty statement of `sql` starts.
fn statement_starts(sql: &str) -> Vec<(usize, usize)> {
    let bytes = sql.as_bytes();
    let mut lines = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let mut statement_started = false;
    let mut atomic_depth = 0usize;
    let mut previous_word = String::new();

    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if bytes[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b';' => {
                if atomic_depth == 0 {
                    statement_started = false;
                }
                i += 1;
            }
            _ => {
                if !statement_started {
                    statement_started = true;
                    lines.push((line, i));
                    previous_word.clear();
                }
                match c {
                    b'\'' => {
                        let backslash_escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E');
                        i = skip_quoted(bytes, i, b'\'', backslash_escapes, &mut line);
                    }
                    b'"' => i = skip_quoted(bytes, i, b'"', false, &mut line),
                    b'$' => match dollar_tag(bytes, i) {
                        Some(tag_len) => {
                            let tag = &bytes[i..i + tag_len];
                            i += tag_len;
                            while i < bytes.len() && !bytes[i..].starts_with(tag) {
                                if bytes[i] == b'\n' {
                                    line += 1;
                                }
                                i += 1;
                            }
                            i = (i + tag_len).min(bytes.len());
                        }
                        None => i += 1,
                    },
                    c if c.is_ascii_alphabetic() || c == b'_' => {
                        let start = i;
                        while i < bytes.len()
                            && (bytes[i].is_ascii_alphanumeric()
                                || bytes[i] == b'_'
                                || bytes[i] == b'$')
                        {
                            i += 1;
                        }
                        let word = sql[start..i].to_ascii_lowercase();
                        // A SQL-standard function body (PostgreSQL 14+) holds
                        // semicolons that do not end the statement.
                        let opens_atomic = word == "atomic" && previous_word == "begin";
                        let opens_nested = atomic_depth > 0 && (word == "case" || word == "begin");
                        if opens_atomic || opens_nested {
                            atomic_depth += 1;
                        } else if atomic_depth > 0 && word == "end" {
                            atomic_depth -= 1;
                        }
                        previous_word = word;
                    }
                    _ => i += 1,
                }
            }
        }
    }
    lines
}

/// Skip a quoted token starting at `start`; returns the index after it.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, backslash: bool, line: &mut usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            b'\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Length of a dollar-quote tag (`$$`, `$body$`) starting at `start`.
fn dollar_tag(bytes: &[u8], start: usize) -> Option<usize> {
    // `$1` is a parameter, and `a$b` an identifier: neither opens a quote.
    if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
        return None;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'$' => return Some(i - start + 1),
            b if b.is_ascii_alphabetic() || b == b'_' || (b.is_ascii_digit() && i > start + 1) => {
                i += 1
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{statement_lines, statements, transaction_control};

    #[test]
    fn transaction_control_is_found() {
        assert_eq!(
            transaction_control("create table a();\nCOMMIT;"),
            Some((2, "COMMIT".into()))
        );
        assert_eq!(
            transaction_control("begin;\nselect 1;"),
            Some((1, "BEGIN".into()))
        );
        assert_eq!(
            transaction_control("start transaction;"),
            Some((1, "START".into()))
        );
        assert_eq!(transaction_control("rollback to savepoint a;"), None);
        assert_eq!(
            transaction_control(
                "create function f() returns int language sql\nbegin atomic select 1; end;"
            ),
            None
        );
        assert_eq!(
            transaction_control("do $$ begin perform 1; commit; end $$;\n-- commit;"),
            None
        );
    }

    #[test]
    fn plain_statements() {
        assert_eq!(
            statement_lines("select 1;\nselect 2;\n\nselect 3"),
            [1, 2, 4]
        );
    }

    #[test]
    fn comments_and_empty_statements_are_not_statements() {
        let sql =
            "-- header; with a semicolon\n/* block; /* nested; */ */\n;;\nselect 1; -- trailing;\n";
        assert_eq!(statement_lines(sql), [4]);
    }

    #[test]
    fn quotes_hide_semicolons_and_count_lines() {
        let sql = "insert into t values ('a;\nb', E'c\\';d', \"we;ird\");\nselect 2;";
        assert_eq!(statement_lines(sql), [1, 3]);
    }

    #[test]
    fn dollar_quoted_bodies() {
        let sql = "create function f() returns int as $body$\nbegin\n  return 1;\nend;\n$body$ language plpgsql;\nselect $1, a$b;\nselect 3;";
        assert_eq!(statement_lines(sql), [1, 6, 7]);
    }

    #[test]
    fn begin_atomic_bodies() {
        let sql = "create function f() returns int language sql\nbegin atomic\n  select case when true then 1 end;\n  select 2;\nend;\nselect 3;";
        assert_eq!(statement_lines(sql), [1, 6]);
    }

    #[test]
    fn statements_are_split_with_their_lines() {
        let sql = "-- build it\nCREATE INDEX CONCURRENTLY a ON t (x);\n\nCREATE INDEX CONCURRENTLY b\n  ON t (y); -- trailing\n";
        let parts = statements(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0].0, 2);
        assert!(parts[0].1.starts_with("CREATE INDEX CONCURRENTLY a"));
        assert_eq!(parts[1].0, 4);
        assert!(parts[1].1.contains("ON t (y);"));
        assert!(statements("-- nothing\n").is_empty());
    }
}
