//! TLS to PostgreSQL: which `sslmode` a connection uses, the CA that the
//! verifying modes trust (for RDS, the global bundle), the client certificate
//! a server may ask for, and opening the connection with the matching
//! connector.
//!
//! The modes mean what they mean to libpq (PostgreSQL docs, "SSL Support",
//! table "SSL Mode Descriptions"): `require` encrypts but does not check who
//! answers, which only defeats passive eavesdropping; `verify-ca` checks the
//! chain against the CA (the bundle, or the system roots without one);
//! `verify-full` also checks that the certificate names the host we dialled.
//! `prefer` uses TLS when the server offers it and plain text otherwise;
//! `allow` is served the same way (libpq tries plain text first and TLS on
//! refusal — the order is the only difference, and trying TLS first is never
//! less safe).
//!
//! Who decides: a flag or variable (`--sslmode`, `DB_SSLMODE`, `--ca-bundle`,
//! `DB_CA_BUNDLE`, in [`TlsOptions`]) wins over the connection string
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, in [`UrlTls`]). With
//! neither, `require` off loopback (docs/DESIGN.md, "AWS side") and `disable` on
//! loopback and Unix sockets, where TLS protects nothing and local servers
//! rarely have it on. As libpq does, a connection string's `sslrootcert` file
//! turns `require` into `verify-ca`, and `sslrootcert=system` means the
//! system roots and at least `verify-full`.
//!
//! Flags and variables accept only the modes that never fall back to plain
//! text; `allow` and `prefer` are there for connection strings written for
//! psql, where libpq compatibility is the point.
//!
//! Why `native-tls` (OpenSSL on Linux) through `postgres-native-tls`: it is
//! the TLS stack libpq uses, so a bundle and a host name that psql accepts are
//! accepted here too, and Lambda's provided.al2023 ships OpenSSL 3. The AWS SDK
//! keeps its own rustls client (src/secret.rs); the two never meet.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::error::{Error, Result};

/// How a connection uses TLS: libpq's six `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (or a Unix socket).
    Disable,
    /// libpq: plain text first, TLS if the server insists; here like `Prefer`.
    Allow,
    /// TLS when the server offers it, else plain text; no certificate check.
    Prefer,
    /// Encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted; the chain must lead to a trusted CA (any host name).
    VerifyCa,
    /// Encrypted; the chain must lead to a trusted CA and name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parse a flag's or variable's value: the modes that never fall back to
    /// plain text. Anything else is a `config` error naming `setting`.
    pub fn parse(text: &str, setting: &str) -> Result<SslMode> {
        match SslMode::parse_libpq(text) {
            Some(mode @ (SslMode::Allow | SslMode::Prefer)) => Err(Error::Config(format!(
                "{setting} is '{mode}'; use one of disable, require, verify-full, verify-ca \
                 ({mode} may fall back to plain text, so only a connection string's sslmode may ask for it)"
            ))),
            Some(mode) => Ok(mode),
            None => Err(Error::Config(format!(
                "{setting} is '{}'; use one of disable, require, verify-full, verify-ca",
                printable(text.trim())
            ))),
        }
    }

    /// A connection string's `sslmode`: all six libpq values, exact spelling.
    pub fn parse_libpq(text: &str) -> Option<SslMode> {
        Some(match text.trim() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the mode checks the server's certificate.
    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// A value worth echoing in a message: short and plain, else a placeholder.
/// Mode values are never secret, but a mistyped line might hold anything.
pub(crate) fn printable(text: &str) -> String {
    if text.len() <= 32
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        text.to_owned()
    } else {
        "(an unrecognised value)".to_owned()
    }
}

/// For clap (`--sslmode`); messages name the setting generically.
impl std::str::FromStr for SslMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<SslMode> {
        SslMode::parse(text, "sslmode")
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TLS settings of one target from flags or variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The mode; `None` means: the connection string's, else by host (see module docs).
    pub mode: Option<SslMode>,
    /// PEM file of the CA certificates the verifying modes trust instead of
    /// the system roots (the RDS global bundle).
    pub ca_bundle: Option<PathBuf>,
}

/// A connection string's `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `sslrootcert=system` (libpq 16): the system's trusted roots.
    System,
}

/// What a connection string said about TLS. Paths only: files are read when
/// connecting, so a parse never touches the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlTls {
    /// `sslmode`, when given.
    pub mode: Option<SslMode>,
    /// `sslrootcert`.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: PEM client certificate (and chain).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: its PKCS#8 PEM private key.
    pub client_key: Option<PathBuf>,
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trust {
    System,
    Bundle(PathBuf),
}

/// The settings a connection attempt actually uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    mode: SslMode,
    trust: Trust,
    identity: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// The mode a connection with `config` and the connection string's `url`
    /// settings uses.
    pub fn effective_mode(&self, url: &UrlTls, config: &Config) -> SslMode {
        self.resolve(url, config).mode
    }

    fn resolve(&self, url: &UrlTls, config: &Config) -> Resolved {
        let mode = self.mode.or(url.mode).unwrap_or_else(|| {
            if url.root_cert == Some(RootCert::System) {
                return SslMode::VerifyFull;
            }
            // A Config built elsewhere (`Config::from_str`) may carry an
            // explicit answer; `prefer` is its default, so it says nothing.
            match config.get_ssl_mode() {
                PgSslMode::Disable => SslMode::Disable,
                PgSslMode::Require => SslMode::Require,
                _ if is_local(config) => SslMode::Disable,
                _ => SslMode::Require,
            }
        });
        let url_bundle = match &url.root_cert {
            Some(RootCert::File(path)) => Some(path.clone()),
            _ => None,
        };
        // libpq: "if a root CA file exists, sslmode=require behaves like
        // verify-ca" — an operator who named a CA meant it to be checked.
        let mode = if mode == SslMode::Require && self.ca_bundle.is_none() && url_bundle.is_some() {
            SslMode::VerifyCa
        } else {
            mode
        };
        let trust = match self.ca_bundle.clone().or(url_bundle) {
            Some(path) => Trust::Bundle(path),
            None => Trust::System,
        };
        let identity = match (&url.client_cert, &url.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        Resolved {
            mode,
            trust,
            identity,
        }
    }
}

/// Whether every host of `config` is a Unix socket or a loopback address.
pub fn is_local(config: &Config) -> bool {
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        let addrs = config.get_hostaddrs();
        return !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback);
    }
    hosts.iter().all(|host| match host {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    })
}

/// The result of one connection attempt, before it is classified.
pub(crate) enum Attempt {
    Connected(Client),
    TimedOut,
    Failed(tokio_postgres::Error),
}

/// Connect to `config` with the TLS that `options` (flags) and `url` (the
/// connection string) ask for, within `timeout`, and drive the connection on
/// the runtime. A CA bundle or client certificate that cannot be read or
/// parsed is a `tls` error before any packet is sent.
pub(crate) async fn connect(
    config: &mut Config,
    options: &TlsOptions,
    url: &UrlTls,
    timeout: Duration,
) -> Result<Attempt> {
    let resolved = options.resolve(url, config);
    tracing::debug!(sslmode = resolved.mode.as_str(), "connecting");
    match resolved.mode {
        SslMode::Disable => {
            config.ssl_mode(PgSslMode::Disable);
            Ok(attempt(config, NoTls, timeout).await)
        }
        SslMode::Allow | SslMode::Prefer => {
            // TLS when the server says yes to SSLRequest, plain text when it
            // says no (tokio-postgres's `prefer`).
            config.ssl_mode(PgSslMode::Prefer);
            let connector = connector(&resolved)?;
            Ok(attempt(config, connector, timeout).await)
        }
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            // These must fail on a server without TLS, not fall back.
            config.ssl_mode(PgSslMode::Require);
            let connector = connector(&resolved)?;
            Ok(attempt(config, connector, timeout).await)
        }
    }
}

async fn attempt<T>(config: &Config, tls: T, timeout: Duration) -> Attempt
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    match tokio::time::timeout(timeout, config.connect(tls)).await {
        Err(_) => Attempt::TimedOut,
        Ok(Err(e)) => Attempt::Failed(e),
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "database connection closed");
                }
            });
            Attempt::Connected(client)
        }
    }
}

/// The OpenSSL connector for every mode but `disable`.
fn connector(resolved: &Resolved) -> Result<postgres_native_tls::MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    if resolved.mode.verifies() {
        if let Trust::Bundle(path) = &resolved.trust {
            // Like libpq's sslrootcert: the bundle replaces the system
            // roots, so only the CA the operator named can vouch for the server.
            builder.disable_built_in_roots(true);
            for cert in read_bundle(path)? {
                builder.add_root_certificate(cert);
            }
        }
        if resolved.mode == SslMode::VerifyCa {
            // verify-ca: the chain is checked, the name is not (a server
            // reached through an address its certificate does not list).
            builder.danger_accept_invalid_hostnames(true);
        }
    } else {
        // libpq's `allow`, `prefer`, `require`: encryption without authentication.
        builder
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    if let Some((cert, key)) = &resolved.identity {
        builder.identity(read_identity(cert, key)?);
    }
    builder
        .build()
        .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))
        .map(postgres_native_tls::MakeTlsConnector::new)
}

fn read_bundle(path: &Path) -> Result<Vec<native_tls::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::Tls(format!(
            "cannot read the CA bundle {}: {e}; point sslrootcert, DB_CA_BUNDLE or --ca-bundle at a PEM file",
            path.display()
        ))
    })?;
    let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
        Error::Tls(format!(
            "the CA bundle {} is not PEM certificates: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "the CA bundle {} holds no certificate; point it at a PEM file of CA certificates",
            path.display()
        )));
    }
    Ok(certs)
}

/// The client certificate of `sslcert` and `sslkey`.
fn read_identity(cert: &Path, key: &Path) -> Result<native_tls::Identity> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            Error::Tls(format!(
                "cannot read the client {what} {} ({}): {e}; fix the path or its permissions",
                path.display(),
                if what == "certificate" {
                    "sslcert"
                } else {
                    "sslkey"
                }
            ))
        })
    };
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "key")?;
    if !key_pem
        .trim_ascii_start()
        .starts_with(b"-----BEGIN PRIVATE KEY-----")
    {
        return Err(Error::Tls(format!(
            "the client key {} (sslkey) is not an unencrypted PKCS#8 PEM key; convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8` and point sslkey at the result",
            key.display()
        )));
    }
    native_tls::Identity::from_pkcs8(&cert_pem, key_pem.trim_ascii_start()).map_err(|e| {
        Error::Tls(format!(
            "the client certificate {} (sslcert) and key {} (sslkey) do not load: {e}; \
             sslcert must be PEM certificates and sslkey their PKCS#8 PEM key",
            cert.display(),
            key.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn config(url: &str) -> Config {
        Config::from_str(url).unwrap()
    }

    #[test]
    fn modes_parse_in_libpq_spelling_only() {
        for mode in [
            SslMode::Disable,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse(mode.as_str(), "DB_SSLMODE").unwrap(), mode);
        }
        for bad in ["prefer", "allow", "verify_full", "VERIFY-FULL", ""] {
            let err = SslMode::parse(bad, "DB_SSLMODE").unwrap_err();
            assert_eq!(err.code().as_str(), "config");
            assert!(err.to_string().contains("DB_SSLMODE"), "{err}");
        }
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse_libpq(mode.as_str()), Some(mode));
        }
        assert_eq!(SslMode::parse_libpq("Prefer"), None);
    }

    #[test]
    fn default_mode_is_require_off_loopback() {
        let default = TlsOptions::default();
        let none = UrlTls::default();
        let cases = [
            ("postgresql://app@db.example.com/tutor", SslMode::Require),
            ("postgresql://app@10.0.0.7/tutor", SslMode::Require),
            ("postgresql://app@127.0.0.1:5433/tutor", SslMode::Disable),
            ("postgresql://app@localhost/tutor", SslMode::Disable),
            ("postgresql://app@[::1]/tutor", SslMode::Disable),
            ("postgresql://app@%2Ftmp%2Fsock/tutor", SslMode::Disable),
            (
                "postgresql://app@db.example.com/tutor?sslmode=disable",
                SslMode::Disable,
            ),
            (
                "postgresql://app@127.0.0.1/tutor?sslmode=require",
                SslMode::Require,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(default.effective_mode(&none, &config(url)), want, "{url}");
        }
        let explicit = TlsOptions {
            mode: Some(SslMode::VerifyFull),
            ca_bundle: None,
        };
        let url_disable = UrlTls {
            mode: Some(SslMode::Disable),
            ..UrlTls::default()
        };
        assert_eq!(
            explicit.effective_mode(&url_disable, &config("postgresql://app@127.0.0.1/t")),
            SslMode::VerifyFull,
            "a flag beats the connection string"
        );
    }

    #[test]
    fn connection_string_modes_and_root_certs_follow_libpq() {
        let remote = config("postgresql://app@db.example.com/t");
        let flags = TlsOptions::default();
        let url = |mode, root_cert| UrlTls {
            mode,
            root_cert,
            ..UrlTls::default()
        };
        let file = Some(RootCert::File("/ca.pem".into()));
        let cases = [
            (url(Some(SslMode::Prefer), None), SslMode::Prefer),
            (url(Some(SslMode::Allow), None), SslMode::Allow),
            (url(Some(SslMode::VerifyCa), None), SslMode::VerifyCa),
            // A named CA turns require into verify-ca.
            (url(Some(SslMode::Require), file.clone()), SslMode::VerifyCa),
            (url(None, Some(RootCert::System)), SslMode::VerifyFull),
            (
                url(Some(SslMode::VerifyFull), file.clone()),
                SslMode::VerifyFull,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(flags.effective_mode(&url, &remote), want, "{url:?}");
        }
        let resolved = flags.resolve(&url(Some(SslMode::VerifyFull), file), &remote);
        assert_eq!(resolved.trust, Trust::Bundle("/ca.pem".into()));
        let with_flag = TlsOptions {
            mode: None,
            ca_bundle: Some("/flag.pem".into()),
        };
        let resolved = with_flag.resolve(
            &url(
                Some(SslMode::VerifyFull),
                Some(RootCert::File("/url.pem".into())),
            ),
            &remote,
        );
        assert_eq!(resolved.trust, Trust::Bundle("/flag.pem".into()));
    }

    #[test]
    fn unreadable_or_empty_bundles_are_tls_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            let resolved = Resolved {
                mode: SslMode::VerifyFull,
                trust: Trust::Bundle(path.clone()),
                identity: None,
            };
            let err = connector(&resolved)
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", path.display()));
            assert_eq!(err.code().as_str(), "tls", "{err}");
        }
    }

    #[test]
    fn client_keys_must_be_pkcs8() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.crt");
        let key = dir.path().join("client.key");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&key, "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        let resolved = Resolved {
            mode: SslMode::Require,
            trust: Trust::System,
            identity: Some((cert, key)),
        };
        let err = connector(&resolved).err().expect("a PKCS#1 key is refused");
        assert_eq!(err.code().as_str(), "tls", "{err}");
        assert!(err.to_string().contains("sslkey"), "{err}");
        assert!(err.to_string().contains("pkcs8"), "{err}");
    }
}
