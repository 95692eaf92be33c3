//! Getting a connection: reading a libpq connection string, finding the
//! password where libpq would, connecting with a bounded timeout, and turning
//! what went wrong into the report's error codes (`config`, `connection`,
//! `auth`, `tls`).
//!
//! Why a parser of our own rather than `tokio_postgres::Config::from_str`: a
//! URL written for psql (RDS documents `?sslmode=verify-full&sslrootcert=...`)
//! must work unchanged, and tokio-postgres refuses `sslrootcert`, `sslcert`,
//! `verify-ca` and the like with an anonymous "invalid connection string".
//! Here both forms libpq reads (PostgreSQL docs, "Connection Strings") are
//! split into keywords — percent-decoding through the `percent-encoding`
//! crate — and every keyword is either applied or refused by name. The URL
//! grammar is libpq's, not RFC 3986's: several `host:port` pairs, a
//! percent-encoded socket path as host, `[::1]`; the `url` crate would reject
//! the first and mangle the second.
//!
//! Nothing here ever formats the URL or the password into a message: errors
//! name the parameter that is wrong, and describe the target as
//! `host:port/database` only. As a last guard every parse error is scrubbed
//! of the password text it may have seen.

use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::{
    ChannelBinding, Host, LoadBalanceHosts, SslNegotiation, TargetSessionAttrs,
};
use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};
use crate::tls::{self, printable, Attempt, RootCert, SslMode, TlsOptions, UrlTls};

/// Default bound on establishing a connection (docs/DESIGN.md: 10 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Appended to the startup `options` of every connection (see
/// [`session_options`]). The space inside the value is backslash-escaped:
/// the server splits `options` at unescaped white space (`pg_split_opts`).
pub const READ_COMMITTED_OPTION: &str = r"-c default_transaction_isolation=read\ committed";

/// The libpq parameters slipway accepts, for the message that refuses another.
const ACCEPTED: &str = "host, hostaddr, port, user, password, dbname, passfile, sslmode, \
     sslrootcert, sslcert, sslkey, sslnegotiation, connect_timeout, application_name, \
     fallback_application_name, options, target_session_attrs, load_balance_hosts, \
     channel_binding, gssencmode, keepalives, keepalives_idle, keepalives_interval, \
     keepalives_count, tcp_user_timeout";

/// Where a password comes from when the connection string carries none, in
/// libpq's order: `PGPASSWORD`, then the password file (`passfile` in the
/// connection string, else `PGPASSFILE`, else `~/.pgpass`). The library
/// reads no environment: the binary passes these values in.
#[derive(Clone, Default)]
pub struct PasswordSources {
    /// The value of `PGPASSWORD`.
    pub pgpassword: Option<String>,
    /// `PGPASSFILE`, or the default `~/.pgpass` resolved by the caller.
    pub pgpassfile: Option<PathBuf>,
}

// Hand-written so a password never reaches a log line through `{:?}`.
impl fmt::Debug for PasswordSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordSources")
            .field(
                "pgpassword",
                &self.pgpassword.as_ref().map(|_| "<redacted>"),
            )
            .field("pgpassfile", &self.pgpassfile)
            .finish()
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    pub config: Config,
    /// The bound on connecting. While it is [`DEFAULT_CONNECT_TIMEOUT`], a
    /// connection string's `connect_timeout` takes its place (a flag set to
    /// exactly the default cannot be told from no flag).
    pub connect_timeout: Duration,
    /// `sslmode` and CA bundle from flags or variables ([`crate::tls`]);
    /// they win over the connection string's.
    pub tls: TlsOptions,
    /// What the connection string said about TLS.
    pub url_tls: UrlTls,
    /// The connection string's `connect_timeout`.
    pub url_connect_timeout: Option<Duration>,
    /// The connection string's `passfile`, which beats `PGPASSFILE`.
    pub url_passfile: Option<PathBuf>,
    /// Used only when the connection string has no password.
    pub passwords: PasswordSources,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("target", &describe(&self.config))
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("url_tls", &self.url_tls)
            .field("url_connect_timeout", &self.url_connect_timeout)
            .field("url_passfile", &self.url_passfile)
            .field("passwords", &self.passwords)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for `config` with the default timeout.
    pub fn new(config: Config) -> ConnectOptions {
        ConnectOptions {
            config,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: TlsOptions::default(),
            url_tls: UrlTls::default(),
            url_connect_timeout: None,
            url_passfile: None,
            passwords: PasswordSources::default(),
        }
    }

    /// Parse a `postgresql://` URL or a `key=value` connection string.
    pub fn from_url(url: &str) -> Result<ConnectOptions> {
        let parsed = parse_connection_string(url)?;
        let mut options = ConnectOptions::new(parsed.config);
        options.url_tls = parsed.tls;
        options.url_connect_timeout = parsed.connect_timeout;
        options.url_passfile = parsed.passfile;
        Ok(options)
    }

    /// The same options, looking for a missing password in `sources`.
    pub fn with_password_sources(mut self, sources: PasswordSources) -> ConnectOptions {
        self.passwords = sources;
        self
    }

    /// The bound on connecting: an explicit `connect_timeout` (flag or
    /// field) first, then the connection string's, then the default.
    pub fn effective_connect_timeout(&self) -> Duration {
        match self.url_connect_timeout {
            Some(url) if self.connect_timeout == DEFAULT_CONNECT_TIMEOUT => url,
            _ => self.connect_timeout,
        }
    }
}

/// A parsed connection string: what tokio-postgres takes, and what slipway
/// applies itself.
#[derive(Clone)]
pub struct ParsedUrl {
    pub config: Config,
    pub tls: UrlTls,
    /// `connect_timeout`; `None` when absent or zero (see [`parse_connect_timeout`]).
    pub connect_timeout: Option<Duration>,
    pub passfile: Option<PathBuf>,
}

impl fmt::Debug for ParsedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedUrl")
            .field("target", &describe(&self.config))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("passfile", &self.passfile)
            .finish_non_exhaustive()
    }
}

/// Parse a database URL into a tokio-postgres `Config`; a malformed one is a
/// `config` error that never repeats the URL (it may hold a password). The
/// TLS keywords tokio-postgres has no room for are dropped here; use
/// [`ConnectOptions::from_url`] to keep them.
pub fn parse_database_url(url: &str) -> Result<Config> {
    parse_connection_string(url).map(|parsed| parsed.config)
}

/// Parse a `postgresql://` (or `postgres://`) URL or a `key=value`
/// connection string, as libpq reads them.
pub fn parse_connection_string(text: &str) -> Result<ParsedUrl> {
    let mut secrets = Vec::new();
    parse_inner(text, &mut secrets).map_err(|error| match error {
        Error::Config(message) => Error::Config(scrub_all(&message, &secrets)),
        other => other,
    })
}

fn parse_inner(text: &str, secrets: &mut Vec<String>) -> Result<ParsedUrl> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Config(
            "the database URL is empty; expected postgresql://user:password@host:port/database"
                .into(),
        ));
    }
    let mut params = Params::default();
    if let Some(rest) = strip_scheme(text) {
        split_url(rest, &mut params, secrets)?;
    } else if text.contains('=') {
        split_keywords(text, &mut params, secrets)?;
    } else {
        return Err(Error::Config(
            "the database URL is neither a postgresql:// URL nor key=value settings; \
             expected postgresql://user:password@host:port/database"
                .into(),
        ));
    }
    params.build()
}

fn strip_scheme(text: &str) -> Option<&str> {
    ["postgresql://", "postgres://"].iter().find_map(|scheme| {
        text.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &text[scheme.len()..])
    })
}

/// A parameter name as it may appear in a message: a plain identifier, or a
/// placeholder (a mangled string may hold anything, a password included).
fn key_name(key: &str) -> String {
    if !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!("\"{key}\"")
    } else {
        "with a malformed name".to_owned()
    }
}

/// libpq's URL: `postgresql://[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`.
fn split_url(rest: &str, params: &mut Params, secrets: &mut Vec<String>) -> Result<()> {
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The last `@`: an unencoded `@` in a password still works.
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if let Some(password) = password {
            secrets.push(password.to_owned());
            let decoded = decode(password, "the password")?;
            secrets.push(String::from_utf8_lossy(&decoded).into_owned());
            params.set("password", decoded, secrets)?;
        }
        if !user.is_empty() {
            params.set("user", decode(user, "the user name")?, secrets)?;
        }
    }
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for (index, spec) in hostlist.split(',').enumerate() {
            let (host, port) = split_hostspec(spec, index + 1)?;
            hosts.push(host);
            ports.push(port);
        }
        params.hosts = Some(hosts);
        params.ports = if ports.iter().all(String::is_empty) {
            None
        } else {
            Some(ports)
        };
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let dbname = path.strip_prefix('/').unwrap_or(path);
    if !dbname.is_empty() {
        params.set("dbname", decode(dbname, "the database name")?, secrets)?;
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            let key = String::from_utf8_lossy(&decode(pair, "a parameter name")?).into_owned();
            return Err(Error::Config(format!(
                "connection parameter {} in the database URL has no value; write it as key=value",
                key_name(&key)
            )));
        };
        let key = decode(key, "a parameter name")?;
        let key = String::from_utf8(key).map_err(|_| {
            Error::Config(
                "a connection parameter name in the database URL is not UTF-8; check the URL's ?key=value part"
                    .into(),
            )
        })?;
        if is_password_like(&key) {
            secrets.push(value.to_owned());
        }
        let value = decode(value, &format!("the value of {}", key_name(&key)))?;
        params.set(&key, value, secrets)?;
    }
    Ok(())
}

/// One `host[:port]` or `[v6addr][:port]` of a URL's host list.
fn split_hostspec(spec: &str, index: usize) -> Result<(String, String)> {
    let (host, port) = if let Some(bracketed) = spec.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(Error::Config(format!(
                "host {index} of the database URL opens an IPv6 address with '[' but never closes it; write it as [::1]:5432"
            )));
        };
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => "",
            None => {
                return Err(Error::Config(format!(
                "host {index} of the database URL has text after its ']'; write it as [::1]:5432"
            )))
            }
        };
        (host, port)
    } else {
        spec.split_once(':').unwrap_or((spec, ""))
    };
    let host = decode(host, &format!("host {index}"))?;
    let host = String::from_utf8(host).map_err(|_| {
        Error::Config(format!(
            "host {index} of the database URL is not UTF-8 after percent-decoding; check its %XX escapes"
        ))
    })?;
    if host.is_empty() {
        return Err(Error::Config(format!(
            "host {index} of the database URL is empty; name every host of the list"
        )));
    }
    let port = decode(port, &format!("the port of host {index}"))?;
    Ok((host, String::from_utf8_lossy(&port).into_owned()))
}

/// Strict percent-decoding: a `%` must start `%XX`, and `%00` is refused
/// (libpq refuses both); the decoding itself is the `percent-encoding` crate's.
fn decode(text: &str, what: &str) -> Result<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'%') {
        let at = i + offset;
        let hex = bytes.get(at + 1..at + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err(Error::Config(format!(
                "{what} in the database URL has a '%' that does not start a %XX escape; encode '%' itself as %25"
            )));
        }
        if hex == Some(b"00") {
            return Err(Error::Config(format!(
                "{what} in the database URL contains %00, which postgresql cannot carry; remove it"
            )));
        }
        i = at + 3;
    }
    Ok(percent_encoding::percent_decode_str(text).collect())
}

/// libpq's `key=value` form: white space between pairs, optional white
/// space around `=`, single-quoted values with `\'` and `\\`, and a
/// backslash escaping the next character in unquoted values too.
fn split_keywords(text: &str, params: &mut Params, secrets: &mut Vec<String>) -> Result<()> {
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(());
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::Config(format!(
                "connection parameter {} has no \"=\" after it; write settings as key=value",
                key_name(&key)
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(escaped) => value.push(escaped),
                        None => break,
                    },
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(Error::Config(format!(
                    "the quoted value of connection parameter {} never ends; close it with ' (write \\' for a quote inside)",
                    key_name(&key)
                )));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if is_password_like(&key) {
            secrets.push(value.clone());
        }
        params.set(&key, value.into_bytes(), secrets)?;
    }
}

fn is_password_like(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret") || key.contains("token")
}

/// The keywords of one connection string, later ones replacing earlier ones
/// as in libpq, before they are checked together.
#[derive(Default)]
struct Params {
    hosts: Option<Vec<String>>,
    hostaddrs: Option<Vec<String>>,
    ports: Option<Vec<String>>,
    password: Option<Vec<u8>>,
    /// Every other accepted keyword, by name.
    values: std::collections::BTreeMap<&'static str, String>,
}

impl Params {
    fn set(&mut self, key: &str, value: Vec<u8>, secrets: &mut Vec<String>) -> Result<()> {
        if is_password_like(key) {
            secrets.push(String::from_utf8_lossy(&value).into_owned());
        }
        if key == "password" {
            // Empty means "none", as in libpq: the other sources are tried.
            self.password = Some(value).filter(|v| !v.is_empty());
            return Ok(());
        }
        let known: &'static str = match key {
            "host" => "host",
            "hostaddr" => "hostaddr",
            "port" => "port",
            "user" => "user",
            "dbname" => "dbname",
            "passfile" => "passfile",
            "sslmode" => "sslmode",
            "sslrootcert" => "sslrootcert",
            "sslcert" => "sslcert",
            "sslkey" => "sslkey",
            "sslnegotiation" => "sslnegotiation",
            "connect_timeout" => "connect_timeout",
            "application_name" => "application_name",
            "fallback_application_name" => "fallback_application_name",
            "options" => "options",
            "target_session_attrs" => "target_session_attrs",
            "load_balance_hosts" => "load_balance_hosts",
            "channel_binding" => "channel_binding",
            "gssencmode" => "gssencmode",
            "keepalives" => "keepalives",
            "keepalives_idle" => "keepalives_idle",
            "keepalives_interval" => "keepalives_interval",
            "keepalives_count" => "keepalives_count",
            "tcp_user_timeout" => "tcp_user_timeout",
            _ => {
                return Err(Error::Config(format!(
                    "unsupported connection parameter {}; remove it from the database URL (slipway accepts {ACCEPTED})",
                    key_name(key)
                )))
            }
        };
        let value = String::from_utf8(value).map_err(|_| {
            Error::Config(format!(
                "connection parameter \"{known}\" is not UTF-8 after percent-decoding; check its %XX escapes"
            ))
        })?;
        if value.contains('\0') {
            return Err(Error::Config(format!(
                "connection parameter \"{known}\" contains a NUL character, which postgresql cannot carry; remove it"
            )));
        }
        let list = |value: &str| value.split(',').map(|s| s.trim().to_owned()).collect();
        match known {
            "host" => self.hosts = Some(list(&value)),
            "hostaddr" => self.hostaddrs = Some(list(&value)),
            "port" => self.ports = Some(list(&value)),
            _ => {
                self.values.insert(known, value);
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Check the keywords together and build the `Config`.
    fn build(self) -> Result<ParsedUrl> {
        let mut config = Config::new();
        let hosts = self.hosts.clone().unwrap_or_default();
        for (index, host) in hosts.iter().enumerate() {
            if host.is_empty() {
                return Err(Error::Config(format!(
                    "host {} of connection parameter \"host\" is empty; name every host of the list",
                    index + 1
                )));
            }
            // A leading `/` is a socket directory (tokio-postgres, as libpq).
            config.host(host);
        }
        let hostaddrs = self.hostaddrs.clone().unwrap_or_default();
        for (index, addr) in hostaddrs.iter().enumerate() {
            let ip: IpAddr = addr.parse().map_err(|_| {
                Error::Config(format!(
                    "entry {} of connection parameter \"hostaddr\" is not a numeric IP address; hostaddr takes addresses like 10.0.0.7, host takes names",
                    index + 1
                ))
            })?;
            config.hostaddr(ip);
        }
        if hosts.is_empty() && hostaddrs.is_empty() {
            return Err(Error::Config(
                "the database URL names no host; expected postgresql://user:password@host:port/database \
                 (for a Unix socket: ?host=/var/run/postgresql)"
                    .into(),
            ));
        }
        if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
            return Err(Error::Config(format!(
                "connection parameters \"host\" and \"hostaddr\" list {} and {} entries; give one hostaddr per host",
                hosts.len(),
                hostaddrs.len()
            )));
        }
        let count = hosts.len().max(hostaddrs.len());
        if let Some(ports) = &self.ports {
            if ports.len() != 1 && ports.len() != count {
                return Err(Error::Config(format!(
                    "connection parameter \"port\" lists {} ports for {count} hosts; give one port, or one per host",
                    ports.len()
                )));
            }
            for (index, port) in ports.iter().enumerate() {
                let port = if port.is_empty() {
                    5432
                } else {
                    port.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                        Error::Config(format!(
                            "port {} of connection parameter \"port\" is not a number from 1 to 65535",
                            index + 1
                        ))
                    })?
                };
                config.port(port);
            }
        }
        if let Some(user) = self.get("user") {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password.clone());
        }
        if let Some(dbname) = self.get("dbname") {
            config.dbname(dbname);
        }
        if let Some(options) = self.get("options") {
            config.options(options);
        }
        if let Some(name) = self
            .get("application_name")
            .or(self.get("fallback_application_name"))
        {
            config.application_name(name);
        }
        let tls = self.tls(&mut config)?;
        let connect_timeout = self
            .get("connect_timeout")
            .map(parse_connect_timeout)
            .transpose()?
            .flatten();
        if let Some(value) = self.get("target_session_attrs") {
            config.target_session_attrs(match value {
                "any" => TargetSessionAttrs::Any,
                "read-write" => TargetSessionAttrs::ReadWrite,
                "read-only" => TargetSessionAttrs::ReadOnly,
                "primary" | "standby" | "prefer-standby" => {
                    return Err(Error::Config(format!(
                        "connection parameter \"target_session_attrs\" is '{value}', which slipway does not support; \
                         use any, read-write (what migrations need: it finds the writable server) or read-only"
                    )))
                }
                other => return Err(bad_choice("target_session_attrs", other, "any, read-write, read-only")),
            });
        }
        if let Some(value) = self.get("load_balance_hosts") {
            config.load_balance_hosts(match value {
                "disable" => LoadBalanceHosts::Disable,
                "random" => LoadBalanceHosts::Random,
                other => return Err(bad_choice("load_balance_hosts", other, "disable, random")),
            });
        }
        if let Some(value) = self.get("channel_binding") {
            config.channel_binding(match value {
                "disable" => ChannelBinding::Disable,
                "prefer" => ChannelBinding::Prefer,
                "require" => ChannelBinding::Require,
                other => {
                    return Err(bad_choice(
                        "channel_binding",
                        other,
                        "disable, prefer, require",
                    ))
                }
            });
        }
        match self.get("gssencmode") {
            // slipway never speaks GSSAPI encryption: libpq's `prefer`
            // without a Kerberos ticket, the same as `disable`.
            None | Some("disable" | "prefer") => {}
            Some("require") => {
                return Err(Error::Config(
                    "connection parameter \"gssencmode\" is 'require', which slipway does not support; \
                     use TLS instead (sslmode=verify-full) and drop gssencmode"
                        .into(),
                ))
            }
            Some(other) => return Err(bad_choice("gssencmode", other, "disable, prefer")),
        }
        if let Some(value) = self.get("keepalives") {
            config.keepalives(match value.trim() {
                "1" => true,
                "0" => false,
                _ => {
                    return Err(Error::Config(
                        "connection parameter \"keepalives\" must be 0 or 1".into(),
                    ))
                }
            });
        }
        if let Some(value) = self.get("keepalives_idle") {
            config.keepalives_idle(Duration::from_secs(whole("keepalives_idle", value)?));
        }
        if let Some(value) = self.get("keepalives_interval") {
            config.keepalives_interval(Duration::from_secs(whole("keepalives_interval", value)?));
        }
        if let Some(value) = self.get("keepalives_count") {
            let count = u32::try_from(whole("keepalives_count", value)?).map_err(|_| {
                Error::Config("connection parameter \"keepalives_count\" is too large".into())
            })?;
            config.keepalives_retries(count);
        }
        if let Some(value) = self.get("tcp_user_timeout") {
            // libpq: milliseconds; 0 means the system default.
            let ms = whole("tcp_user_timeout", value)?;
            if ms > 0 {
                config.tcp_user_timeout(Duration::from_millis(ms));
            }
        }
        Ok(ParsedUrl {
            config,
            tls,
            connect_timeout,
            passfile: self.get("passfile").map(PathBuf::from),
        })
    }

    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslnegotiation`.
    fn tls(&self, config: &mut Config) -> Result<UrlTls> {
        let mode = match self.get("sslmode") {
            None => None,
            Some(text) => Some(SslMode::parse_libpq(text).ok_or_else(|| {
                bad_choice(
                    "sslmode",
                    text,
                    "disable, allow, prefer, require, verify-ca, verify-full",
                )
            })?),
        };
        // For callers that keep only the Config (`parse_database_url`): the
        // nearest tokio-postgres mode, never a weaker one.
        match mode {
            Some(SslMode::Disable) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            }
            Some(SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
            _ => {}
        }
        let root_cert = self.get("sslrootcert").map(|path| match path {
            "system" => RootCert::System,
            path => RootCert::File(PathBuf::from(path)),
        });
        if root_cert == Some(RootCert::System) {
            if let Some(weak) = mode.filter(|m| *m != SslMode::VerifyFull) {
                return Err(Error::Config(format!(
                    "connection parameter \"sslmode\" is '{weak}', which cannot be used with sslrootcert=system; use sslmode=verify-full"
                )));
            }
        }
        let client_cert = self.get("sslcert").map(PathBuf::from);
        let client_key = self.get("sslkey").map(PathBuf::from);
        match (&client_cert, &client_key) {
            (Some(_), None) => {
                return Err(Error::Config(
                    "connection parameter \"sslcert\" is set but \"sslkey\" is not; give the client certificate's key file too"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "connection parameter \"sslkey\" is set but \"sslcert\" is not; give the client certificate file too"
                        .into(),
                ))
            }
            _ => {}
        }
        if let Some(value) = self.get("sslnegotiation") {
            config.ssl_negotiation(match value {
                "postgres" => SslNegotiation::Postgres,
                "direct" => SslNegotiation::Direct,
                other => return Err(bad_choice("sslnegotiation", other, "postgres, direct")),
            });
        }
        Ok(UrlTls {
            mode,
            root_cert,
            client_cert,
            client_key,
        })
    }
}

fn bad_choice(key: &str, value: &str, choices: &str) -> Error {
    Error::Config(format!(
        "connection parameter \"{key}\" is '{}'; use one of {choices}",
        printable(value.trim())
    ))
}

fn whole(key: &str, value: &str) -> Result<u64> {
    value.trim().parse().map_err(|_| {
        Error::Config(format!(
            "connection parameter \"{key}\" must be a whole number, e.g. {key}=10"
        ))
    })
}

/// libpq's `connect_timeout`: whole seconds, 1 counting as 2 (libpq's
/// minimum). Zero or a negative number means "wait forever" to libpq; slipway
/// keeps its bound then, since a deploy that hangs on a dropped packet is
/// worse than one that fails — so those give `None` and the default applies.
pub fn parse_connect_timeout(value: &str) -> Result<Option<Duration>> {
    let seconds: i64 = value.trim().parse().map_err(|_| {
        Error::Config(
            "connection parameter \"connect_timeout\" must be a whole number of seconds, e.g. connect_timeout=10"
                .into(),
        )
    })?;
    Ok(match seconds {
        i64::MIN..=0 => None,
        1 => Some(Duration::from_secs(2)),
        n => Some(Duration::from_secs(n.unsigned_abs())),
    })
}

/// `host:port/database as user`, for messages; never the password.
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => match config.get_hostaddrs().first() {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(ip) => ip.to_string(),
            None => "?".into(),
        },
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    match config.get_user() {
        Some(user) => format!("{host}:{port}/{db} as {user}"),
        None => format!("{host}:{port}/{db}"),
    }
}

/// The startup `options` slipway connects with: the user's, then
/// [`READ_COMMITTED_OPTION`] (the last `-c` of a setting wins, so ours holds).
///
/// Why force read committed: slipway takes its advisory lock and then reads
/// the migration history. Under a database or role whose
/// `default_transaction_isolation` is `repeatable read` or `serializable`,
/// that read would use a snapshot taken before the lock was granted, so a
/// deploy that waited for a concurrent one would not see the history rows the
/// other just committed, and would run the same migrations a second time.
pub fn session_options(user_options: Option<&str>) -> String {
    match user_options.map(str::trim).filter(|o| !o.is_empty()) {
        Some(theirs) if theirs.ends_with(READ_COMMITTED_OPTION) => theirs.to_owned(),
        Some(theirs) => format!("{theirs} {READ_COMMITTED_OPTION}"),
        None => READ_COMMITTED_OPTION.to_owned(),
    }
}

/// Connect within the timeout and drive the connection on the runtime.
pub async fn connect(options: &ConnectOptions) -> Result<Client> {
    let mut config = options.config.clone();
    if config.get_user().is_none() {
        return Err(Error::Config(format!(
            "{}: the database URL names no user; add one, e.g. postgresql://app@host/database",
            describe(&config)
        )));
    }
    if config.get_application_name().is_none() {
        // Makes a waiting or long-running slipway easy to spot in pg_stat_activity.
        config.application_name("slipway");
    }
    config.options(session_options(config.get_options()));
    if let Some(password) = missing_password(options, &config) {
        config.password(password);
    }
    let timeout = options.effective_connect_timeout();
    config.connect_timeout(timeout);
    let target = describe(&config);
    match tls::connect(&mut config, &options.tls, &options.url_tls, timeout).await? {
        Attempt::Connected(client) => Ok(client),
        Attempt::TimedOut => Err(Error::Connection(format!(
            "{target}: no answer within {}s; check the host, port, security groups and that the server is running",
            timeout.as_secs_f32()
        ))),
        Attempt::Failed(e) => Err(classify_connect_error(&e, &target, config.get_password())),
    }
}

/// The password libpq would use when the connection string has none:
/// `PGPASSWORD`, else the password file's first matching line.
fn missing_password(options: &ConnectOptions, config: &Config) -> Option<String> {
    if config.get_password().is_some_and(|p| !p.is_empty()) {
        return None;
    }
    if let Some(password) = options
        .passwords
        .pgpassword
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        return Some(password.to_owned());
    }
    let file = options
        .url_passfile
        .as_ref()
        .or(options.passwords.pgpassfile.as_ref())?;
    let user = config.get_user()?;
    let dbname = config.get_dbname().unwrap_or(user);
    let entries = read_pgpass(file)?;
    // One password serves every host of the Config (tokio-postgres has one
    // slot): the first host with a matching line decides.
    pgpass_targets(config)
        .iter()
        .find_map(|(host, port)| pgpass_lookup(&entries, host, port, dbname, user))
}

/// `(host, port)` per host as libpq matches them against the password file.
fn pgpass_targets(config: &Config) -> Vec<(String, String)> {
    let ports = config.get_ports();
    let port_of = |index: usize| {
        ports
            .get(index)
            .or(ports.first())
            .copied()
            .unwrap_or(5432)
            .to_string()
    };
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, ip)| (ip.to_string(), port_of(i)))
            .collect();
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                // libpq: `localhost` matches a socket in the default directory.
                #[cfg(unix)]
                Host::Unix(path) if is_default_socket_dir(path) => "localhost".to_owned(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            (name, port_of(i))
        })
        .collect()
}

fn is_default_socket_dir(path: &Path) -> bool {
    [
        Path::new("/tmp"),
        Path::new("/var/run/postgresql"),
        Path::new("/run/postgresql"),
    ]
    .contains(&path)
}

/// One line of a password file: four match fields and the password.
struct PgpassEntry {
    fields: [Option<String>; 4],
    password: String,
}

/// The password file's entries, or `None` when it is absent, unsafe or
/// unreadable. Like libpq, a file that is not a plain file, or that its
/// group or others may access, is ignored with a warning: a password in a
/// world-readable file is no longer a secret.
fn read_pgpass(path: &Path) -> Option<Vec<PgpassEntry>> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!(
            path = %path.display(),
            "the password file is not a plain file; ignoring it"
        );
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the password file has group or world access and is ignored; \
                 permissions should be u=rw (0600) or less (chmod 0600 it)"
            );
            return None;
        }
    }
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the password file; ignoring it");
            return None;
        }
    };
    Some(text.lines().filter_map(parse_pgpass_line).collect())
}

/// `hostname:port:database:username:password`; `*` alone matches anything,
/// `\:` and `\\` are a literal colon and backslash, `#` starts a comment line.
fn parse_pgpass_line(line: &str) -> Option<PgpassEntry> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields: [Option<String>; 4] = Default::default();
    let mut chars = line.chars();
    for field in &mut fields {
        let mut value = String::new();
        let mut escaped_any = false;
        loop {
            match chars.next()? {
                '\\' => {
                    escaped_any = true;
                    value.push(chars.next()?);
                }
                ':' => break,
                c => value.push(c),
            }
        }
        *field = if value == "*" && !escaped_any {
            None
        } else {
            Some(value)
        };
    }
    // The rest, colons included, is the password, de-escaped (libpq).
    let mut password = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    password.push(next);
                }
            }
            c => password.push(c),
        }
    }
    Some(PgpassEntry { fields, password })
}

fn pgpass_lookup(
    entries: &[PgpassEntry],
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let wanted = [host, port, dbname, user];
    entries
        .iter()
        .find(|entry| {
            entry
                .fields
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.as_deref().is_none_or(|f| f == want))
        })
        .map(|entry| entry.password.clone())
}

/// Map a failed connection attempt to `auth`, `tls` or `connection`.
pub fn classify_connect_error(
    error: &tokio_postgres::Error,
    target: &str,
    password: Option<&[u8]>,
) -> Error {
    // tokio-postgres's Display names only the kind ("error performing TLS
    // handshake"); the why (e.g. "certificate verify failed") is in the sources.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // native-tls repeats its inner OpenSSL error in its own text.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let text = match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) => scrub(&text, p),
        None => text,
    };
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return match code {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => Error::Auth(format!(
                "{target}: {} (SQLSTATE {code}); check the user name and password (was the secret rotated?)",
                db.message()
            )),
            _ => Error::Connection(format!("{target}: {} (SQLSTATE {code})", db.message())),
        };
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("tls") || lower.contains("ssl") {
        return Error::Tls(format!(
            "{target}: {text}; check the sslmode (sslmode in the URL, DB_SSLMODE, --sslmode) and, for verify-ca and verify-full, the CA bundle (sslrootcert, DB_CA_BUNDLE, --ca-bundle)"
        ));
    }
    if lower.contains("password missing") {
        return Error::Auth(format!(
            "{target}: the server asks for a password and none was given; put it in the URL, PGPASSWORD or the password file (~/.pgpass, PGPASSFILE)"
        ));
    }
    Error::Connection(format!("{target}: {text}"))
}

/// Remove every occurrence of `secret` from `text`.
fn scrub(text: &str, secret: &str) -> String {
    if secret.len() < 2 {
        return text.to_owned();
    }
    text.replace(secret, "***")
}

fn scrub_all(text: &str, secrets: &[String]) -> String {
    // Longest first, so a secret that contains another goes as a whole.
    let mut sorted: Vec<&String> = secrets.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    sorted
        .iter()
        .fold(text.to_owned(), |text, secret| scrub(&text, secret))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn malformed_urls_are_config_errors_without_the_password() {
        for url in [
            "postgres://user:hunter2secret@host:notaport/db",
            "postgres://user:hunter2secret@host:99999/db",
            "postgres://user:hunter2secret@host/db?sslmode=bogus",
            "postgres://user:hunter2secret@host/db?sslmode=hunter2secret",
            "postgres://user:hunter2secret@[::1/db",
            "postgres://user:hunter2%zzsecret@host/db",
            "postgres://user:hunter2secret@/db",
            "host=h password='hunter2secret",
            "host=h password=hunter2secret bogus",
            "host=h sslpassword=hunter2secret",
            "not a url at all",
            "",
        ] {
            let err = parse_database_url(url).unwrap_err();
            assert_eq!(err.code().as_str(), "config", "{url}: {err}");
            assert!(!err.to_string().contains("hunter2secret"), "{err}");
        }
    }

    #[test]
    fn libpq_parameters_are_accepted() {
        let parsed = parse_connection_string(
            "postgresql://u:p%40ss@h1:6432,[::1]:6433/my%20db?sslmode=verify-full\
             &sslrootcert=/path/rds-ca.pem&connect_timeout=7&application_name=deploy\
             &options=-c%20search_path%3Dfoo&target_session_attrs=read-write\
             &sslcert=/c.pem&sslkey=/k.pem&keepalives=1&load_balance_hosts=random",
        )
        .unwrap();
        let config = &parsed.config;
        assert_eq!(
            config.get_hosts(),
            &[Host::Tcp("h1".into()), Host::Tcp("::1".into())]
        );
        assert_eq!(config.get_ports(), &[6432, 6433]);
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(config.get_dbname(), Some("my db"));
        assert_eq!(config.get_application_name(), Some("deploy"));
        assert_eq!(config.get_options(), Some("-c search_path=foo"));
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(parsed.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(parsed.tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            parsed.tls.root_cert,
            Some(RootCert::File("/path/rds-ca.pem".into()))
        );
        assert_eq!(parsed.tls.client_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(parsed.tls.client_key, Some(PathBuf::from("/k.pem")));

        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let url = format!("postgresql://u@h/db?sslmode={mode}");
            let parsed = parse_connection_string(&url).unwrap();
            assert_eq!(parsed.tls.mode.map(SslMode::as_str), Some(mode));
            let keywords = format!("host=h user=u sslmode={mode}");
            let parsed = parse_connection_string(&keywords).unwrap();
            assert_eq!(parsed.tls.mode.map(SslMode::as_str), Some(mode));
        }
    }

    #[test]
    fn keyword_strings_follow_libpq_quoting() {
        let parsed = parse_connection_string(
            r"host=/var/run/postgresql port = 5433 user=app password='it''s' dbname='my \'db\'' options='-c search_path=a\\b'",
        );
        // libpq has no '' escape inside quotes: the first quote closes.
        assert!(parsed.is_err());
        let parsed = parse_connection_string(
            r"host=/var/run/postgresql port = 5433 user=app password='it\'s' dbname='my db' options='-c x=a\\b' hostaddr=127.0.0.1",
        )
        .unwrap();
        let config = &parsed.config;
        assert_eq!(
            config.get_hosts(),
            &[Host::Unix("/var/run/postgresql".into())]
        );
        assert_eq!(
            config.get_hostaddrs(),
            &["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(config.get_ports(), &[5433]);
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
        assert_eq!(config.get_dbname(), Some("my db"));
        assert_eq!(config.get_options(), Some(r"-c x=a\b"));
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases = [
            ("postgresql://u@h/db?foo=1", "\"foo\""),
            ("postgresql://u@h/db?sslmode=bogus", "\"sslmode\""),
            (
                "postgresql://u@h/db?target_session_attrs=standby",
                "standby",
            ),
            (
                "postgresql://u@h/db?target_session_attrs=primary",
                "target_session_attrs",
            ),
            (
                "postgresql://u@h/db?connect_timeout=soon",
                "\"connect_timeout\"",
            ),
            ("postgresql://u@h/db?sslcert=/c.pem", "\"sslkey\""),
            (
                "postgresql://u@h/db?sslrootcert=system&sslmode=require",
                "sslrootcert=system",
            ),
            ("postgresql://u@h/db?service=prod", "\"service\""),
            ("postgresql://u@h/db?hostaddr=db.example", "\"hostaddr\""),
            ("postgresql://u@h1,h2/db?port=1,2,3", "\"port\""),
            ("host=h gssencmode=require", "\"gssencmode\""),
        ];
        for (url, named) in cases {
            let err = parse_connection_string(url).unwrap_err();
            assert_eq!(err.code().as_str(), "config", "{url}");
            assert!(err.to_string().contains(named), "{url}: {err}");
            assert!(!err.to_string().contains("postgresql://"), "{err}");
        }
    }

    #[test]
    fn connect_timeout_has_libpq_semantics_and_flags_win() {
        assert_eq!(parse_connect_timeout("0").unwrap(), None);
        assert_eq!(parse_connect_timeout("-3").unwrap(), None);
        assert_eq!(
            parse_connect_timeout("1").unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_connect_timeout(" 30 ").unwrap(),
            Some(Duration::from_secs(30))
        );
        let mut options =
            ConnectOptions::from_url("postgresql://u@h/db?connect_timeout=3").unwrap();
        assert_eq!(options.effective_connect_timeout(), Duration::from_secs(3));
        options.connect_timeout = Duration::from_secs(20);
        assert_eq!(options.effective_connect_timeout(), Duration::from_secs(20));
        let plain = ConnectOptions::from_url("postgresql://u@h/db").unwrap();
        assert_eq!(plain.effective_connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn session_options_keep_the_users_and_add_read_committed() {
        assert_eq!(session_options(None), READ_COMMITTED_OPTION);
        assert_eq!(
            session_options(Some("-c search_path=foo")),
            format!("-c search_path=foo {READ_COMMITTED_OPTION}")
        );
        let once = session_options(Some("-c a=b"));
        assert_eq!(session_options(Some(&once)), once);
    }

    /// The embedded server's own connections carry a copy of the option,
    /// since its crate cannot import this one.
    #[cfg(feature = "local")]
    #[test]
    fn the_local_cluster_connects_read_committed_too() {
        assert_eq!(slipway_local::READ_COMMITTED_OPTION, READ_COMMITTED_OPTION);
    }

    #[test]
    fn describe_never_shows_the_password() {
        let config =
            parse_database_url("postgres://app:hunter2secret@db.example:6432/tutor").unwrap();
        assert_eq!(describe(&config), "db.example:6432/tutor as app");
        let options = ConnectOptions::new(config).with_password_sources(PasswordSources {
            pgpassword: Some("envsecret99".into()),
            pgpassfile: None,
        });
        let debug = format!("{options:?}");
        assert!(!debug.contains("hunter2secret"), "{debug}");
        assert!(!debug.contains("envsecret99"), "{debug}");
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        let entries: Vec<PgpassEntry> = [
            "# comment",
            "",
            r"db.example:5432:tutor:app:first\:pw",
            r"*:*:*:other:wild\\card",
            r"\*:5432:*:star:literal-star",
            "short:line",
            "*:6432:*:app:pool:with:colons",
        ]
        .iter()
        .filter_map(|line| parse_pgpass_line(line))
        .collect();
        assert_eq!(entries.len(), 4);
        let look = |h, p, d, u| pgpass_lookup(&entries, h, p, d, u);
        assert_eq!(
            look("db.example", "5432", "tutor", "app").as_deref(),
            Some("first:pw")
        );
        assert_eq!(look("db.example", "5432", "other", "app"), None);
        assert_eq!(look("x", "1", "y", "other").as_deref(), Some(r"wild\card"));
        assert_eq!(
            look("*", "5432", "d", "star").as_deref(),
            Some("literal-star")
        );
        assert_eq!(look("h", "5432", "d", "star"), None);
        assert_eq!(
            look("h", "6432", "d", "app").as_deref(),
            Some("pool:with:colons")
        );
    }

    #[test]
    fn password_sources_follow_libpq_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        fs::write(&file, "h:5432:db:u:from-file\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let options = |url: &str, pgpassword: Option<&str>| {
            ConnectOptions::from_url(url)
                .unwrap()
                .with_password_sources(PasswordSources {
                    pgpassword: pgpassword.map(str::to_owned),
                    pgpassfile: Some(file.clone()),
                })
        };
        let get = |o: &ConnectOptions| missing_password(o, &o.config);
        assert_eq!(
            get(&options("postgresql://u:inurl@h/db", Some("env"))),
            None
        );
        assert_eq!(
            get(&options("postgresql://u@h/db", Some("env"))).as_deref(),
            Some("env")
        );
        assert_eq!(
            get(&options("postgresql://u@h/db", None)).as_deref(),
            Some("from-file")
        );
        assert_eq!(get(&options("postgresql://u@h:5433/db", None)), None);
        // Group- or world-readable: ignored, as libpq does.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(get(&options("postgresql://u@h/db", None)), None);
    }
}
