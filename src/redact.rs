//! Passwords out of every text slipway prints: `scheme://user:PASSWORD@`
//! becomes `scheme://user:****@`, a `password=...` value `****`, and any
//! password the caller registered (from the command line, the environment)
//! `****` wherever it shows up — clap quotes arguments in its errors, and a
//! panic message may quote anything. Pure text work: the binaries hand in
//! what they read, so the library still reads no environment variable.

use std::sync::OnceLock;

const MASK: &str = "****";
/// Shorter known passwords are left to the patterns: blanking every
/// `ab` in a message would make it unreadable, and the patterns catch
/// them where they stand in a URL or a `password=` pair.
const MIN_EXACT: usize = 4;

static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

/// Note the passwords that `texts` carry (arguments, a `DATABASE_URL`)
/// and the bare `passwords` (a `PGPASSWORD`), for [`redact`]; the first call
/// wins.
pub fn remember(texts: &[String], passwords: &[String]) {
    let mut secrets: Vec<String> = texts.iter().flat_map(|t| passwords_in(t)).collect();
    secrets.extend(passwords.iter().cloned());
    secrets.retain(|s| s.len() >= MIN_EXACT && s != MASK);
    // Longest first, so a password containing another is blanked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let _ = SECRETS.set(secrets);
}

/// The passwords a text carries: URL userinfo (as written and
/// percent-decoded) and `password=` values.
pub fn passwords_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let tail = &rest[at + 3..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let segment = &tail[..end];
        if let Some(at) = segment.rfind('@') {
            if let Some((_, password)) = segment[..at].split_once(':') {
                found.push(password.to_owned());
                if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                    found.push(decoded.into_owned());
                }
            }
        }
        rest = &tail[end..];
    }
    for (start, end) in keyword_values(text) {
        found.push(text[start..end].trim_matches('\'').to_owned());
    }
    found.retain(|s| !s.is_empty());
    found
}

/// `text` with every password blanked.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for secret in SECRETS.get().map_or(&[][..], Vec::as_slice) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    redact_keywords(&redact_urls(&out))
}

/// `scheme://user:PASSWORD@host` → `scheme://user:****@host`. The
/// userinfo ends at the last `@` before a space or a quote, so a password
/// holding `@` or `/` is blanked whole (at worst, more than the password).
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`'))
            .unwrap_or(tail.len());
        let segment = &tail[..end];
        match segment
            .rfind('@')
            .and_then(|at| segment[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&segment[..=colon]);
                out.push_str(MASK);
                out.push_str(&segment[at..]);
            }
            None => out.push_str(segment),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Byte ranges of the values of `password=...` pairs (any case, with
/// libpq's optional spaces and single quotes).
fn keyword_values(text: &str) -> Vec<(usize, usize)> {
    // ASCII lower-casing keeps every byte offset.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let mut i = from + found + "password".len();
        from = i;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let start = i;
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else {
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && !matches!(bytes[i], b'&' | b'\'' | b'"' | b'`')
            {
                i += 1;
            }
        }
        if i > start {
            ranges.push((start, i));
        }
        from = i.max(from);
    }
    ranges
}

fn redact_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in keyword_values(text) {
        out.push_str(&text[last..start]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keywords_lose_their_passwords() {
        let cases = [
            (
                "unrecognized subcommand 'postgresql://u:pw@h/db'",
                "unrecognized subcommand 'postgresql://u:****@h/db'",
            ),
            (
                "postgres://u:p@ss/w0rd@h:5432/db",
                "postgres://u:****@h:5432/db",
            ),
            (
                "postgres://u@h/db and postgres://h:5432/db",
                "postgres://u@h/db and postgres://h:5432/db",
            ),
            (
                "host=h password=s3cret dbname=d",
                "host=h password=**** dbname=d",
            ),
            (
                "host=h PASSWORD = 's3 cr\\'et' dbname=d",
                "host=h PASSWORD = **** dbname=d",
            ),
            (
                "?user=u&password=s3cret&sslmode=require",
                "?user=u&password=****&sslmode=require",
            ),
            ("PGPASSWORD=s3cret slipway", "PGPASSWORD=**** slipway"),
            (
                "no secrets here: password, passwords",
                "no secrets here: password, passwords",
            ),
            ("trailing password=", "trailing password="),
            (
                "ünï://ü:pässwörd@h/δ password='ä",
                "ünï://ü:****@h/δ password=****",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redact(text), expected, "{text}");
        }
    }

    #[test]
    fn passwords_are_found_as_written_and_decoded() {
        let found = passwords_in("postgresql://u:a%40b%20c@h/db password='x y'");
        assert!(found.contains(&"a%40b%20c".to_owned()), "{found:?}");
        assert!(found.contains(&"a@b c".to_owned()), "{found:?}");
        assert!(found.contains(&"x y".to_owned()), "{found:?}");
    }
}
