//! Where each SQL statement of a script starts, and what a script holds that
//! slipway must refuse before it reaches a server.
//!
//! slipway sends a whole migration as one simple-query message (fewer round
//! trips than psql's statement-at-a-time), and counts the statements the
//! server completed before the error; this module turns that count into a
//! line number, and cuts a no-transaction migration into the statements it
//! sends one message at a time.
//!
//! Everything here rests on one lexer that knows what decides statement
//! boundaries in PostgreSQL: quoted strings (`'...'`, `E'...'`), quoted
//! identifiers, dollar quotes, line and nested block comments, and the
//! `BEGIN ... END` bodies of SQL-standard functions (the same heuristic as
//! psql's). Checks that look at words (is this statement a `COMMIT`? a
//! `COPY ... FROM STDIN`?) read the lexer's tokens, never the raw text: a
//! word split on whitespace is fooled by `COMMIT/* x */;` or `COMMIT-- x`,
//! and finds a `commit` inside a `DO $$ ... $$` body that is no statement.

/// Why a script cannot be run as it is, and the line where that starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    pub kind: ProblemKind,
}

/// The things [`check`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A quote, dollar quote or block comment that never closes: the server
    /// would read the rest of the file as part of it.
    Unterminated(Unterminated),
    /// A psql meta-command (`\i`, `\connect`, `\set`, ...), as written.
    MetaCommand(String),
    /// `COPY ... FROM STDIN`: its data is streamed by a client such as psql.
    CopyFromStdin,
    /// A statement that controls the transaction, e.g. `COMMIT`,
    /// `PREPARE TRANSACTION`.
    TransactionControl(&'static str),
}

/// The construct an unterminated token opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unterminated {
    QuotedString,
    QuotedIdentifier,
    /// With its tag, e.g. `$$` or `$body$`.
    DollarQuote(String),
    BlockComment,
}

/// 1-based line numbers where each non-empty statement of `sql` starts.
pub fn statement_lines(sql: &str) -> Vec<usize> {
    let tokens = lex(sql).tokens;
    split(sql, &tokens).iter().map(|span| span.line).collect()
}

/// Each non-empty statement of `sql` with the line it starts on, for
/// running them one message at a time (a no-transaction migration). A
/// statement runs from its first token to its terminating `;` (included);
/// the whitespace, comments and empty statements between are left out.
pub fn statements(sql: &str) -> Vec<(usize, &str)> {
    let tokens = lex(sql).tokens;
    split(sql, &tokens)
        .iter()
        .map(|span| (span.line, sql.get(span.start..span.end).unwrap_or("")))
        .collect()
}

/// The first statement that controls the transaction (`BEGIN`, `COMMIT`,
/// `ROLLBACK`, `PREPARE TRANSACTION`, ...), as its line and form. slipway
/// owns the transaction: a `COMMIT` inside a migration would make everything
/// before it permanent and run the rest outside any transaction. (The
/// loader refuses them through [`check`]; this narrower question is what
/// the tests ask.)
#[cfg(test)]
pub fn transaction_control(sql: &str) -> Option<(usize, String)> {
    let tokens = lex(sql).tokens;
    split(sql, &tokens).iter().find_map(|span| {
        transaction_form(sql, &tokens[span.first..=span.last]).map(|f| (span.line, f.to_owned()))
    })
}

/// The first thing in `sql`, by position, that slipway refuses to run: an
/// unterminated quote or comment, a psql meta-command, a `COPY ... FROM
/// STDIN`, or a statement that controls the transaction.
pub fn check(sql: &str) -> Result<(), Problem> {
    let lexed = lex(sql);
    let mut first: Option<(usize, Problem)> = None;
    let mut note = |offset: usize, problem: Problem| {
        if first.as_ref().is_none_or(|(seen, _)| offset < *seen) {
            first = Some((offset, problem));
        }
    };
    if let Some(open) = &lexed.unterminated {
        note(
            open.offset,
            Problem {
                line: open.line,
                kind: ProblemKind::Unterminated(open.what.clone()),
            },
        );
    }
    if let Some(meta) = lexed.tokens.iter().find(|t| t.kind == Kind::MetaCommand) {
        let text = token_text(sql, meta);
        let name: String = text
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or(text)
            .chars()
            .take(32)
            .collect();
        note(
            meta.start,
            Problem {
                line: meta.line,
                kind: ProblemKind::MetaCommand(name),
            },
        );
    }
    for span in split(sql, &lexed.tokens) {
        let tokens = &lexed.tokens[span.first..=span.last];
        let kind = if let Some(form) = transaction_form(sql, tokens) {
            ProblemKind::TransactionControl(form)
        } else if copy_from_stdin(sql, tokens) {
            ProblemKind::CopyFromStdin
        } else {
            continue;
        };
        note(
            span.start,
            Problem {
                line: span.line,
                kind,
            },
        );
        break;
    }
    match first {
        Some((_, problem)) => Err(problem),
        None => Ok(()),
    }
}

/// What a token is; only as fine as the statement checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Comment,
    /// An unquoted identifier or keyword.
    Word,
    Number,
    /// A string literal, `E'...'` included.
    Literal,
    QuotedIdentifier,
    DollarQuoted,
    Semicolon,
    /// From a backslash to the end of its line.
    MetaCommand,
    /// Any other single character: operators, parentheses, commas.
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// 1-based line of `start`.
    line: usize,
}

/// Where an unterminated construct starts.
#[derive(Debug, Clone)]
struct Open {
    offset: usize,
    line: usize,
    what: Unterminated,
}

struct Lexed {
    /// Every byte of the input belongs to exactly one token, in order.
    tokens: Vec<Token>,
    /// The unterminated construct, when there is one (it runs to the end,
    /// so there is at most one).
    unterminated: Option<Open>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// PostgreSQL's `ident_start`: letters, `_` and every non-ASCII byte.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Cut `sql` into tokens. Never fails: an unterminated construct becomes a
/// token running to the end, and is reported beside the tokens.
///
/// Token boundaries always fall on character boundaries: every non-ASCII
/// byte belongs to a word, a quote or a comment, which only end on ASCII.
fn lex(sql: &str) -> Lexed {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut unterminated = None;
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let start_line = line;
        let mut open = |what: Unterminated| {
            unterminated.get_or_insert(Open {
                offset: start,
                line: start_line,
                what,
            });
        };
        let kind = match bytes[i] {
            b if is_space(b) => {
                while i < bytes.len() && is_space(bytes[i]) {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                Kind::Space
            }
            // The server ends a line comment at a CR as well as at a LF.
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && !matches!(bytes[i], b'\n' | b'\r') {
                    i += 1;
                }
                Kind::Comment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let (end, closed) = skip_block_comment(bytes, i, &mut line);
                i = end;
                if !closed {
                    open(Unterminated::BlockComment);
                }
                Kind::Comment
            }
            b';' => {
                i += 1;
                Kind::Semicolon
            }
            b'\'' => {
                let (end, closed) = skip_quoted(bytes, i, b'\'', false, &mut line);
                i = end;
                if !closed {
                    open(Unterminated::QuotedString);
                }
                Kind::Literal
            }
            b'"' => {
                let (end, closed) = skip_quoted(bytes, i, b'"', false, &mut line);
                i = end;
                if !closed {
                    open(Unterminated::QuotedIdentifier);
                }
                Kind::QuotedIdentifier
            }
            b'$' => match dollar_tag(bytes, i) {
                Some(tag_len) => {
                    let tag = &bytes[i..i + tag_len];
                    i += tag_len;
                    let mut closed = false;
                    while i < bytes.len() {
                        if bytes[i..].starts_with(tag) {
                            i += tag_len;
                            closed = true;
                            break;
                        }
                        if bytes[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    if !closed {
                        open(Unterminated::DollarQuote(
                            String::from_utf8_lossy(tag).into_owned(),
                        ));
                    }
                    Kind::DollarQuoted
                }
                // `$1`, a parameter.
                None => {
                    i += 1;
                    Kind::Punct
                }
            },
            // A backslash is no token of PostgreSQL's; psql reads it, and
            // the rest of its line, as a meta-command.
            b'\\' => {
                while i < bytes.len() && !matches!(bytes[i], b'\n' | b'\r') {
                    i += 1;
                }
                Kind::MetaCommand
            }
            b if is_ident_start(b) => {
                i += 1;
                while i < bytes.len() && is_ident_cont(bytes[i]) {
                    i += 1;
                }
                // `E'...'` is one token, a string with backslash escapes.
                if i == start + 1 && matches!(b, b'e' | b'E') && bytes.get(i) == Some(&b'\'') {
                    let (end, closed) = skip_quoted(bytes, i, b'\'', true, &mut line);
                    i = end;
                    if !closed {
                        open(Unterminated::QuotedString);
                    }
                    Kind::Literal
                } else {
                    Kind::Word
                }
            }
            b if b.is_ascii_digit() => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.'))
                {
                    i += 1;
                }
                Kind::Number
            }
            _ => {
                i += 1;
                Kind::Punct
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
            line: start_line,
        });
    }
    Lexed {
        tokens,
        unterminated,
    }
}

/// Skip a (nested) block comment starting at `start`; returns the index
/// after it and whether it was closed.
fn skip_block_comment(bytes: &[u8], start: usize, line: &mut usize) -> (usize, bool) {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return (i, true);
            }
        } else {
            if bytes[i] == b'\n' {
                *line += 1;
            }
            i += 1;
        }
    }
    (bytes.len(), false)
}

/// Skip a quoted token whose opening quote is at `start`; returns the index
/// after it and whether it was closed.
fn skip_quoted(
    bytes: &[u8],
    start: usize,
    quote: u8,
    backslash: bool,
    line: &mut usize,
) -> (usize, bool) {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => {
                if bytes.get(i + 1) == Some(&b'\n') {
                    *line += 1;
                }
                i += 2;
            }
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return (i + 1, true);
                }
            }
            b'\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    (bytes.len(), false)
}

/// Length of a dollar-quote tag (`$$`, `$body$`) starting at `start`.
/// (`a$b` never gets here: the lexer reads it as one word.)
fn dollar_tag(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'$' => return Some(i - start + 1),
            b if is_ident_start(b) || (b.is_ascii_digit() && i > start + 1) => i += 1,
            _ => return None,
        }
    }
    None
}

/// One statement: where it starts and ends in the text, and its tokens.
#[derive(Debug, Clone, Copy)]
struct Span {
    line: usize,
    start: usize,
    /// After the terminating `;`, or after the last token without one.
    end: usize,
    /// Index of its first and last token (the terminating `;` excluded).
    first: usize,
    last: usize,
}

/// The statements of `tokens`: a `;` ends one, except inside the body of a
/// `CREATE [OR REPLACE] FUNCTION | PROCEDURE ... BEGIN ATOMIC ... END`.
///
/// Like psql, a body is recognised by the statement's first words, and
/// `BEGIN`, `CASE` and `END` are counted only outside parentheses (so a
/// parameter named `begin` does not open one).
fn split(sql: &str, tokens: &[Token]) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut current: Option<Span> = None;
    let mut words = 0usize;
    let mut routine = [0u8; 4];
    let mut parens = 0usize;
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::Space | Kind::Comment => continue,
            Kind::Semicolon if depth == 0 => {
                if let Some(mut span) = current.take() {
                    span.end = token.end;
                    spans.push(span);
                }
                continue;
            }
            _ => {}
        }
        let span = current.get_or_insert_with(|| {
            words = 0;
            routine = [0; 4];
            parens = 0;
            depth = 0;
            Span {
                line: token.line,
                start: token.start,
                end: token.end,
                first: index,
                last: index,
            }
        });
        span.end = token.end;
        span.last = index;
        match token.kind {
            Kind::Punct if sql.as_bytes().get(token.start) == Some(&b'(') => parens += 1,
            Kind::Punct if sql.as_bytes().get(token.start) == Some(&b')') => {
                parens = parens.saturating_sub(1);
            }
            Kind::Word => {
                let word = token_text(sql, token);
                if let Some(slot) = routine.get_mut(words) {
                    if ["create", "function", "procedure", "or", "replace"]
                        .iter()
                        .any(|w| word.eq_ignore_ascii_case(w))
                    {
                        *slot = word.as_bytes()[0].to_ascii_lowercase();
                    }
                }
                words += 1;
                let in_routine = routine[0] == b'c'
                    && (matches!(routine[1], b'f' | b'p')
                        || (routine[1] == b'o'
                            && routine[2] == b'r'
                            && matches!(routine[3], b'f' | b'p')));
                if in_routine && parens == 0 {
                    if word.eq_ignore_ascii_case("begin") {
                        depth += 1;
                    } else if word.eq_ignore_ascii_case("case") {
                        if depth > 0 {
                            depth += 1;
                        }
                    } else if word.eq_ignore_ascii_case("end") {
                        depth = depth.saturating_sub(1);
                    }
                }
            }
            _ => {}
        }
    }
    spans.extend(current);
    spans
}

fn token_text<'a>(sql: &'a str, token: &Token) -> &'a str {
    sql.get(token.start..token.end).unwrap_or("")
}

/// The tokens that carry meaning: no whitespace, no comments.
fn significant<'t>(tokens: &'t [Token]) -> impl Iterator<Item = &'t Token> + 't {
    tokens
        .iter()
        .filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
}

fn is_word(sql: &str, token: Option<&Token>, word: &str) -> bool {
    token.is_some_and(|t| t.kind == Kind::Word && token_text(sql, t).eq_ignore_ascii_case(word))
}

/// The transaction-control form of the statement made of `tokens`, if it
/// is one: every form PostgreSQL accepts that begins, ends or hands over a
/// transaction. Savepoints (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`) stay
/// inside it and are fine.
fn transaction_form(sql: &str, tokens: &[Token]) -> Option<&'static str> {
    let mut words = significant(tokens);
    let (first, second, third) = (words.next(), words.next(), words.next());
    let is = |token: Option<&Token>, word: &str| is_word(sql, token, word);
    if is(first, "begin") {
        // `BEGIN ATOMIC` opens a function body, which is no statement of
        // its own.
        (!is(second, "atomic")).then_some("BEGIN")
    } else if is(first, "start") {
        is(second, "transaction").then_some("START TRANSACTION")
    } else if is(first, "commit") {
        Some(if is(second, "prepared") {
            "COMMIT PREPARED"
        } else {
            "COMMIT"
        })
    } else if is(first, "end") {
        Some("END")
    } else if is(first, "abort") {
        Some("ABORT")
    } else if is(first, "rollback") {
        // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name
        let to_savepoint = is(second, "to")
            || ((is(second, "work") || is(second, "transaction")) && is(third, "to"));
        if is(second, "prepared") {
            Some("ROLLBACK PREPARED")
        } else if to_savepoint {
            None
        } else {
            Some("ROLLBACK")
        }
    } else if is(first, "prepare") {
        // `PREPARE transaction AS ...` prepares a statement named so.
        let opens = third.is_some_and(|t| t.kind == Kind::Punct && token_text(sql, t) == "(");
        (is(second, "transaction") && !is(third, "as") && !opens).then_some("PREPARE TRANSACTION")
    } else {
        None
    }
}

/// Whether the statement made of `tokens` is `COPY ... FROM STDIN`.
fn copy_from_stdin(sql: &str, tokens: &[Token]) -> bool {
    let mut words = significant(tokens).peekable();
    if !is_word(sql, words.next(), "copy") {
        return false;
    }
    // `COPY (SELECT ... FROM stdin) TO ...` reads a table named stdin:
    // only FROM outside parentheses names the source.
    let mut parens = 0usize;
    while let Some(token) = words.next() {
        match (token.kind, token_text(sql, token)) {
            (Kind::Punct, "(") => parens += 1,
            (Kind::Punct, ")") => parens = parens.saturating_sub(1),
            (Kind::Word, word)
                if parens == 0
                    && word.eq_ignore_ascii_case("from")
                    && is_word(sql, words.peek().copied(), "stdin") =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{
        check, statement_lines, statements, transaction_control, Problem, ProblemKind, Unterminated,
    };
    use proptest::prelude::*;

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
            Some((1, "START TRANSACTION".into()))
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

    /// Every form PostgreSQL accepts, however it is commented or cased.
    #[test]
    fn every_transaction_control_form_is_found() {
        for (sql, form) in [
            ("COMMIT/* x */;", "COMMIT"),
            ("COMMIT-- x", "COMMIT"),
            ("commit\t/*a*/and chain;", "COMMIT"),
            ("CoMmIt WORK;", "COMMIT"),
            ("commit transaction and no chain", "COMMIT"),
            ("/* a /* nested */ comment */ end;", "END"),
            ("eNd work", "END"),
            ("BEGIN;", "BEGIN"),
            ("begin transaction isolation level serializable;", "BEGIN"),
            ("BEGIN WORK;", "BEGIN"),
            ("begin isolation level read committed, read only;", "BEGIN"),
            ("start/**/transaction read write;", "START TRANSACTION"),
            ("ROLLBACK;", "ROLLBACK"),
            ("rollback and chain;", "ROLLBACK"),
            ("rollback work;", "ROLLBACK"),
            ("abort;", "ABORT"),
            ("ABORT TRANSACTION", "ABORT"),
            ("prepare transaction 'x';", "PREPARE TRANSACTION"),
            ("PREPARE--c\nTRANSACTION'x'", "PREPARE TRANSACTION"),
            ("commit prepared 'x';", "COMMIT PREPARED"),
            ("ROLLBACK PREPARED 'x';", "ROLLBACK PREPARED"),
            ("-- x\rCOMMIT;", "COMMIT"),
        ] {
            let sql = format!("create table t (id int);\n{sql}");
            assert_eq!(
                transaction_control(&sql),
                Some((2, form.to_owned())),
                "{sql:?}"
            );
        }
    }

    #[test]
    fn savepoints_prepared_statements_and_bodies_are_not_transaction_control() {
        for sql in [
            "savepoint a; rollback to a; release savepoint a;",
            "rollback to savepoint a;",
            "ROLLBACK WORK TO SAVEPOINT a;",
            "rollback transaction to a;",
            "prepare q (int) as select $1;",
            "prepare transaction as select 1;",
            "prepare transaction(int) as select $1;",
            "do $$ begin commit; end $$;",
            "do $body$ begin rollback; end $body$;",
            "select 'commit;'; select \"commit\";",
            "select E'\\';commit;';",
            "-- commit;\n/* begin; */ select 1;",
            "create procedure p() language sql begin atomic select 1; end;",
            "create or replace function f() returns int language sql\nbegin atomic\n  select case when true then 1 end;\nend;",
            "select 1 as begin; select commit from t;",
        ] {
            assert_eq!(transaction_control(sql), None, "{sql:?}");
            assert_eq!(check(sql), Ok(()), "{sql:?}");
        }
    }

    #[test]
    fn unterminated_constructs_are_named_with_their_line() {
        for (sql, line, what) in [
            ("select 1;\nselect 'abc;\n", 2, Unterminated::QuotedString),
            ("select\n\nE'abc\\';", 3, Unterminated::QuotedString),
            ("select \"id;\n", 1, Unterminated::QuotedIdentifier),
            (
                "select 1;\n\ndo $body$ begin end $$;",
                3,
                Unterminated::DollarQuote("$body$".into()),
            ),
            (
                "select 1; /* a /* b */\n select 2;",
                1,
                Unterminated::BlockComment,
            ),
        ] {
            assert_eq!(
                check(sql),
                Err(Problem {
                    line,
                    kind: ProblemKind::Unterminated(what)
                }),
                "{sql:?}"
            );
        }
    }

    #[test]
    fn psql_meta_commands_are_refused() {
        for (sql, line, name) in [
            ("\\i other.sql\n", 1, "\\i"),
            ("select 1;\n  \\connect db\nselect 2;", 2, "\\connect"),
            ("\\set ON_ERROR_STOP on\n", 1, "\\set"),
            ("select 1 \\gset\n", 1, "\\gset"),
        ] {
            assert_eq!(
                check(sql),
                Err(Problem {
                    line,
                    kind: ProblemKind::MetaCommand(name.into())
                }),
                "{sql:?}"
            );
        }
        // A backslash in a quote or comment is text.
        assert_eq!(
            check("select '\n\\i x', E'\\\\';\n-- \\i y\n/* \\set */"),
            Ok(())
        );
    }

    #[test]
    fn copy_from_stdin_is_refused_and_other_copies_are_not() {
        for (sql, line) in [
            ("copy t from stdin;\n1\t2\n\\.\n", 1),
            ("select 1;\nCOPY t (a, b) FROM STDIN WITH (FORMAT csv);", 2),
            ("Copy/* x */t\nfrom -- y\n StdIn;", 1),
            ("copy binary t from stdin;", 1),
        ] {
            assert_eq!(
                check(sql),
                Err(Problem {
                    line,
                    kind: ProblemKind::CopyFromStdin
                }),
                "{sql:?}"
            );
        }
        for sql in [
            "copy t from '/srv/data.csv';",
            "copy t to stdout;",
            "copy (select * from stdin) to '/tmp/x';",
            "copy t from program 'cat x';",
            "select 1 from stdin;",
        ] {
            assert_eq!(check(sql), Ok(()), "{sql:?}");
        }
    }

    #[test]
    fn the_first_problem_by_position_is_reported() {
        // The data after COPY would lex as an unterminated quote.
        assert_eq!(
            check("copy t from stdin;\nit's\n\\.\n").map_err(|p| p.kind),
            Err(ProblemKind::CopyFromStdin)
        );
        assert_eq!(
            check("commit;\nselect 'x").map_err(|p| p.kind),
            Err(ProblemKind::TransactionControl("COMMIT"))
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
        let sql = "create or replace procedure p(begin int) language sql\nbegin atomic\n  select 1;\nend;\nselect 2;";
        assert_eq!(statement_lines(sql), [1, 5]);
    }

    #[test]
    fn statements_are_split_with_their_lines() {
        let sql = "-- build it\nCREATE INDEX CONCURRENTLY a ON t (x);\n\nCREATE INDEX CONCURRENTLY b\n  ON t (y); -- trailing\n";
        let parts = statements(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0].0, 2);
        assert_eq!(parts[0].1, "CREATE INDEX CONCURRENTLY a ON t (x);");
        assert_eq!(parts[1].0, 4);
        assert_eq!(parts[1].1, "CREATE INDEX CONCURRENTLY b\n  ON t (y);");
        assert!(statements("-- nothing\n").is_empty());
        // Not PostgreSQL whitespace: an identifier character.
        assert_eq!(statements("\u{2000}"), [(1, "\u{2000}")]);
        assert_eq!(statements("select 1 -- no semicolon\n"), [(1, "select 1")]);
    }

    /// Strip what may separate statements — whitespace, `;`, line and
    /// (nested) block comments — written independently of the lexer;
    /// `None` when anything else is left.
    fn only_separators(mut gap: &str) -> bool {
        loop {
            let trimmed = gap.trim_start_matches(|c: char| {
                matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | ';')
            });
            if trimmed.is_empty() {
                return true;
            }
            if let Some(rest) = trimmed.strip_prefix("--") {
                gap = rest.find(['\n', '\r']).map_or("", |at| &rest[at..]);
            } else if trimmed.starts_with("/*") {
                let mut depth = 0usize;
                let mut at = 0;
                let bytes = trimmed.as_bytes();
                loop {
                    if at + 1 >= bytes.len() {
                        // Unterminated: the rest is comment.
                        return true;
                    }
                    if &bytes[at..at + 2] == b"/*" {
                        depth += 1;
                        at += 2;
                    } else if &bytes[at..at + 2] == b"*/" {
                        depth -= 1;
                        at += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        at += 1;
                    }
                }
                gap = &trimmed[at..];
            } else {
                return false;
            }
        }
    }

    /// SQL-ish text: the characters the lexer treats specially, often.
    fn sqlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("'"),
                Just("\""),
                Just("$$"),
                Just("$a$"),
                Just("E'"),
                Just("\\"),
                Just(";"),
                Just("--"),
                Just("/*"),
                Just("*/"),
                Just("\n"),
                Just("\r"),
                Just(" "),
                Just("("),
                Just(")"),
                Just("begin"),
                Just("atomic"),
                Just("end"),
                Just("case"),
                Just("create function"),
                Just("commit"),
                Just("copy"),
                Just("from stdin"),
                Just("x"),
                Just("é"),
                Just("1"),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    fn split_invariants(sql: &str) -> Result<(), TestCaseError> {
        let _ = check(sql);
        let _ = transaction_control(sql);
        let parts = statements(sql);
        let lines = statement_lines(sql);
        prop_assert_eq!(parts.len(), lines.len());
        let base = sql.as_ptr() as usize;
        let mut cursor = 0;
        for ((line, piece), expected_line) in parts.iter().zip(&lines) {
            let offset = piece.as_ptr() as usize - base;
            prop_assert!(offset >= cursor, "statements overlap or go backwards");
            prop_assert!(!piece.is_empty());
            prop_assert_eq!(&sql[offset..offset + piece.len()], *piece);
            prop_assert!(
                only_separators(&sql[cursor..offset]),
                "gap {:?}",
                &sql[cursor..offset]
            );
            // PostgreSQL's whitespace is ASCII: U+2000 is an identifier character.
            prop_assert!(!piece.starts_with([' ', '\t', '\n', '\r', '\x0b', '\x0c']));
            prop_assert!(!piece.starts_with("--") && !piece.starts_with("/*"));
            prop_assert_eq!(*line, sql[..offset].matches('\n').count() + 1);
            prop_assert_eq!(line, expected_line);
            cursor = offset + piece.len();
        }
        prop_assert!(only_separators(&sql[cursor..]), "tail {:?}", &sql[cursor..]);
        Ok(())
    }

    /// Random casing of an ASCII keyword.
    fn cased(word: &'static str) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
            word.chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                .collect()
        })
    }

    /// What may stand between two tokens: at least one whitespace or
    /// comment (a line comment always ends with its newline).
    fn gap() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just(" ".to_owned()),
                Just("\t".to_owned()),
                Just("\n".to_owned()),
                Just("\r\n".to_owned()),
                "[a-z ;'$]{0,8}".prop_map(|t| format!("/*{t}*/")),
                "[a-z ;'$]{0,8}".prop_map(|t| format!("/* /*{t}*/ */")),
                "[a-z ;'$*/]{0,8}".prop_map(|t| format!("--{t}\n")),
            ],
            1..4,
        )
        .prop_map(|parts| parts.concat())
    }

    /// A gap that may also be empty (before `;`, or before a quote).
    fn maybe_gap() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), gap()]
    }

    /// A transaction-control statement as words, with its form.
    fn control() -> impl Strategy<Value = (Vec<String>, &'static str)> {
        fn words(
            parts: Vec<BoxedStrategy<String>>,
            form: &'static str,
        ) -> BoxedStrategy<(Vec<String>, &'static str)> {
            parts.prop_map(move |w| (w, form)).boxed()
        }
        let lit = || Just("'x'".to_owned()).boxed();
        prop_oneof![
            words(vec![cased("commit").boxed()], "COMMIT"),
            words(
                vec![
                    cased("commit").boxed(),
                    cased("and").boxed(),
                    cased("chain").boxed()
                ],
                "COMMIT"
            ),
            words(vec![cased("end").boxed()], "END"),
            words(vec![cased("rollback").boxed()], "ROLLBACK"),
            words(
                vec![cased("rollback").boxed(), cased("work").boxed()],
                "ROLLBACK"
            ),
            words(vec![cased("begin").boxed()], "BEGIN"),
            words(
                vec![cased("begin").boxed(), cased("transaction").boxed()],
                "BEGIN"
            ),
            words(
                vec![cased("start").boxed(), cased("transaction").boxed()],
                "START TRANSACTION"
            ),
            words(
                vec![
                    cased("prepare").boxed(),
                    cased("transaction").boxed(),
                    lit()
                ],
                "PREPARE TRANSACTION"
            ),
            words(
                vec![cased("commit").boxed(), cased("prepared").boxed(), lit()],
                "COMMIT PREPARED"
            ),
            words(
                vec![cased("rollback").boxed(), cased("prepared").boxed(), lit()],
                "ROLLBACK PREPARED"
            ),
            words(vec![cased("abort").boxed()], "ABORT"),
        ]
    }

    fn harmless() -> impl Strategy<Value = Vec<&'static str>> {
        proptest::collection::vec(
            prop_oneof![
                Just("create table t (id int);"),
                Just("insert into t values (1, 'commit;');"),
                Just("do $$ begin commit; end $$;"),
                Just("-- rollback;\n"),
                Just("/* begin; */"),
                Just("savepoint s; rollback to savepoint s; release s;"),
                Just("create function f() returns int language sql begin atomic select 1; end;"),
                Just("select \"end\" from t;"),
            ],
            0..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_lexer_never_panics_and_statements_cover_the_input(sql in any::<String>()) {
            split_invariants(&sql)?;
        }

        #[test]
        fn statements_cover_sqlish_input(sql in sqlish()) {
            split_invariants(&sql)?;
        }

        #[test]
        fn transaction_control_is_found_however_it_is_written(
            before in harmless(),
            (words, form) in control(),
            gaps in proptest::collection::vec(gap(), 3),
            lead in maybe_gap(),
            tail in maybe_gap(),
            terminated in any::<bool>(),
        ) {
            let mut statement = String::new();
            for (i, word) in words.iter().enumerate() {
                if i > 0 {
                    statement.push_str(&gaps[i - 1]);
                }
                statement.push_str(word);
            }
            statement.push_str(&tail);
            if terminated {
                statement.push(';');
            }
            let prefix = before.join("\n");
            let sql = format!("{prefix}\n{lead}{statement}\nselect 1;");
            let start = prefix.len() + 1 + lead.len();
            let line = sql[..start].matches('\n').count() + 1;
            prop_assert_eq!(transaction_control(&sql), Some((line, form.to_owned())), "{:?}", sql);
            prop_assert_eq!(
                check(&sql),
                Err(Problem { line, kind: ProblemKind::TransactionControl(form) }),
                "{:?}", sql
            );
        }

        #[test]
        fn hidden_transaction_control_is_not_found(
            before in harmless(),
            (words, _form) in control(),
            wrap in 0..5usize,
        ) {
            let statement = words.join(" ");
            let hidden = match wrap {
                0 => format!("select '{}';", statement.replace('\'', "''")),
                1 => format!("do $$ begin {statement}; end $$;"),
                2 => format!("-- {statement};\n"),
                3 => format!("/* {statement}; /* {statement}; */ */"),
                _ => format!("select \"{statement}\";"),
            };
            let sql = format!("{}\n{hidden}\n{}\n", before.join("\n"), "rollback to savepoint s;");
            prop_assert_eq!(transaction_control(&sql), None, "{:?}", sql);
            prop_assert_eq!(check(&sql), Ok(()), "{:?}", sql);
        }
    }
}
