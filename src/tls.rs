//! TLS to PostgreSQL: which `sslmode` a connection uses (`disable`,
//! `require`, `verify-full`), the CA bundle that `verify-full` trusts (for RDS,
//! the global bundle), and opening the connection with the matching connector.
//!
//! The modes mean what they mean to libpq (PostgreSQL docs, "SSL Support",
//! table "SSL Mode Descriptions"): `require` encrypts but does not check who
//! answers, which only defeats passive eavesdropping; `verify-full` checks the
//! chain against the bundle (or the system roots without one) *and* that the
//! certificate names the host we dialled. With no mode given, a URL's own
//! `sslmode=disable|require` counts; otherwise `require` off loopback
//! (DESIGN.md, "AWS side") and `disable` on loopback and Unix sockets, where
//! TLS protects nothing and local servers rarely have it on.
//!
//! Why `native-tls` (OpenSSL on Linux) through `postgres-native-tls`: it is
//! the TLS stack libpq uses, so a bundle and a host name that psql accepts are
//! accepted here too, and Lambda's provided.al2023 ships OpenSSL 3. The AWS SDK
//! keeps its own rustls client (src/secret.rs); the two never meet.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::error::{Error, Result};

/// How a connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (or a Unix socket).
    Disable,
    /// Encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted; the chain must lead to a trusted CA and name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling: `disable`, `require`, `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parse a libpq spelling; anything else is a `config` error naming `setting`.
    pub fn parse(text: &str, setting: &str) -> Result<SslMode> {
        match text.trim() {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(Error::Config(format!(
                "{setting} is '{other}'; use one of disable, require, verify-full"
            ))),
        }
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

/// TLS settings of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The mode; `None` means: the URL's `sslmode`, else by host (see module docs).
    pub mode: Option<SslMode>,
    /// PEM file of the CA certificates `verify-full` trusts instead of the
    /// system roots (the RDS global bundle).
    pub ca_bundle: Option<PathBuf>,
}

impl TlsOptions {
    /// The mode a connection with `config` uses.
    pub fn effective_mode(&self, config: &Config) -> SslMode {
        if let Some(mode) = self.mode {
            return mode;
        }
        // `prefer` is tokio-postgres's default, so it cannot tell us whether
        // the URL asked for it; only the two explicit answers count.
        match config.get_ssl_mode() {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Require => SslMode::Require,
            _ if is_local(config) => SslMode::Disable,
            _ => SslMode::Require,
        }
    }
}

/// Whether every host of `config` is a Unix socket or a loopback address.
pub fn is_local(config: &Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|host| match host {
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

/// Connect to `config` with the TLS `options` ask for, within `timeout`, and
/// drive the connection on the runtime. A CA bundle that cannot be read or
/// parsed is a `tls` error before any packet is sent.
pub(crate) async fn connect(
    config: &mut Config,
    options: &TlsOptions,
    timeout: Duration,
) -> Result<Attempt> {
    let mode = options.effective_mode(config);
    tracing::debug!(sslmode = mode.as_str(), "connecting");
    match mode {
        SslMode::Disable => {
            config.ssl_mode(PgSslMode::Disable);
            Ok(attempt(config, NoTls, timeout).await)
        }
        SslMode::Require | SslMode::VerifyFull => {
            // `require` must fail on a server without TLS, not fall back.
            config.ssl_mode(PgSslMode::Require);
            let connector = connector(mode, options)?;
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

/// The OpenSSL connector for `require` or `verify-full`.
fn connector(mode: SslMode, options: &TlsOptions) -> Result<postgres_native_tls::MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    match mode {
        SslMode::VerifyFull => {
            if let Some(path) = &options.ca_bundle {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::Tls(format!(
                        "cannot read the CA bundle {}: {e}; set DB_CA_BUNDLE / --ca-bundle to a PEM file",
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
                        "the CA bundle {} holds no certificate",
                        path.display()
                    )));
                }
                // Like libpq's sslrootcert: the bundle replaces the system
                // roots, so only the CA the operator named can vouch for the server.
                builder.disable_built_in_roots(true);
                for cert in certs {
                    builder.add_root_certificate(cert);
                }
            }
        }
        SslMode::Require => {
            // libpq's `require`: encryption without authentication.
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        SslMode::Disable => {}
    }
    let connector = builder
        .build()
        .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))?;
    Ok(postgres_native_tls::MakeTlsConnector::new(connector))
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
        for mode in [SslMode::Disable, SslMode::Require, SslMode::VerifyFull] {
            assert_eq!(SslMode::parse(mode.as_str(), "DB_SSLMODE").unwrap(), mode);
        }
        for bad in ["prefer", "verify_full", "VERIFY-FULL", ""] {
            let err = SslMode::parse(bad, "DB_SSLMODE").unwrap_err();
            assert_eq!(err.code().as_str(), "config");
            assert!(err.to_string().contains("DB_SSLMODE"), "{err}");
        }
    }

    #[test]
    fn default_mode_is_require_off_loopback() {
        let default = TlsOptions::default();
        let cases = [
            ("postgresql://app@db.example.com/tutor", SslMode::Require),
            ("postgresql://app@10.0.0.7/tutor", SslMode::Require),
            ("postgresql://app@127.0.0.1:5433/tutor", SslMode::Disable),
            ("postgresql://app@localhost/tutor", SslMode::Disable),
            ("postgresql://app@[::1]/tutor", SslMode::Disable),
            ("postgresql://app@%2Ftmp%2Fsock/tutor", SslMode::Disable),
            // The URL's explicit answer wins over the host rule.
            (
                "postgresql://app@db.example.com/tutor?sslmode=disable",
                SslMode::Disable,
            ),
            (
                "postgresql://app@127.0.0.1/tutor?sslmode=require",
                SslMode::Require,
            ),
            // `prefer` is indistinguishable from "not said".
            (
                "postgresql://app@db.example.com/tutor?sslmode=prefer",
                SslMode::Require,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(default.effective_mode(&config(url)), want, "{url}");
        }
        let explicit = TlsOptions {
            mode: Some(SslMode::VerifyFull),
            ca_bundle: None,
        };
        assert_eq!(
            explicit.effective_mode(&config("postgresql://app@127.0.0.1/t?sslmode=disable")),
            SslMode::VerifyFull
        );
    }

    #[test]
    fn unreadable_or_empty_bundles_are_tls_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            let options = TlsOptions {
                mode: Some(SslMode::VerifyFull),
                ca_bundle: Some(path.clone()),
            };
            let err = connector(SslMode::VerifyFull, &options)
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", path.display()));
            assert_eq!(err.code().as_str(), "tls", "{err}");
        }
    }
}
