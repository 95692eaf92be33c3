//! TLS to a real PostgreSQL server with certificates made here: a CA, a
//! server certificate for `localhost` signed by it, and a second, unrelated
//! CA. Checks each `sslmode` of `slipway::tls` (library level), then the
//! function's `DB_SSLMODE` / `DB_CA_BUNDLE` through the handler.
//!
//! In this crate rather than the root one because it also drives the
//! handler; the server is this test's own, so turning `ssl` on touches no
//! other test.

mod support;

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lambda_runtime::{Context, LambdaEvent};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};
use serde_json::json;
use slipway::connect::{connect, parse_database_url};
use slipway::tls::{SslMode, TlsOptions};
use slipway::{ConnectOptions, ErrorCode, MigrationSet};
use slipway_lambda::config::Config;
use slipway_lambda::{handler, State};

const ROLE: &str = "tls_app";

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey")
}

fn name(common_name: &str) -> X509Name {
    let mut name = X509Name::builder().expect("name builder");
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .expect("CN");
    name.build()
}

/// A certificate for `subject`, signed by `issuer` (self-signed when `None`).
fn certificate(
    subject: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    serial: u32,
) -> X509 {
    let mut builder = X509::builder().expect("X509 builder");
    builder.set_version(2).expect("v3");
    let serial = BigNum::from_u32(serial)
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    builder.set_serial_number(&serial).expect("serial");
    builder.set_subject_name(&name(subject)).expect("subject");
    builder.set_pubkey(key).expect("public key");
    builder
        .set_not_before(&Asn1Time::days_from_now(0).expect("now"))
        .expect("not before");
    builder
        .set_not_after(&Asn1Time::days_from_now(2).expect("later"))
        .expect("not after");
    let (issuer_name, signing_key) = match issuer {
        Some((ca, ca_key)) => {
            let san = SubjectAlternativeName::new()
                .dns(subject)
                .build(&builder.x509v3_context(Some(ca), None))
                .expect("SAN");
            builder.append_extension(san).expect("SAN");
            builder
                .append_extension(BasicConstraints::new().build().expect("not a CA"))
                .expect("constraints");
            (ca.subject_name().to_owned().expect("issuer name"), ca_key)
        }
        None => {
            builder
                .append_extension(BasicConstraints::new().critical().ca().build().expect("CA"))
                .expect("constraints");
            builder
                .append_extension(
                    KeyUsage::new()
                        .critical()
                        .key_cert_sign()
                        .crl_sign()
                        .build()
                        .expect("usage"),
                )
                .expect("usage");
            (name(subject), key)
        }
    };
    builder.set_issuer_name(&issuer_name).expect("issuer");
    builder
        .sign(signing_key, MessageDigest::sha256())
        .expect("sign");
    builder.build()
}

struct Pki {
    ca_bundle: PathBuf,
    wrong_ca_bundle: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// Write the CA bundles into `dir` and the server's pair into the data
/// directory, owned by the server's user (PostgreSQL refuses a key file
/// that others can read).
fn make_pki(dir: &Path, data_dir: &Path) -> Pki {
    let ca_key = key();
    let ca = certificate("slipway test CA", &ca_key, None, 1);
    let server_key = key();
    let server = certificate("localhost", &server_key, Some((&ca, &ca_key)), 2);
    let other_key = key();
    let other_ca = certificate("some other CA", &other_key, None, 3);

    let write = |path: PathBuf, bytes: Vec<u8>| -> PathBuf {
        std::fs::write(&path, bytes).expect("write PEM");
        path
    };
    let pki = Pki {
        ca_bundle: write(dir.join("ca.pem"), ca.to_pem().expect("PEM")),
        wrong_ca_bundle: write(dir.join("other-ca.pem"), other_ca.to_pem().expect("PEM")),
        server_cert: write(data_dir.join("server.crt"), server.to_pem().expect("PEM")),
        server_key: write(
            data_dir.join("server.key"),
            server_key.private_key_to_pem_pkcs8().expect("PEM"),
        ),
    };
    let owner = std::fs::metadata(data_dir).expect("data dir");
    for path in [&pki.server_cert, &pki.server_key] {
        chown(path, Some(owner.uid()), Some(owner.gid())).expect("chown to the server's user");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    pki
}

fn options(url: &str, mode: SslMode, ca_bundle: Option<&Path>) -> ConnectOptions {
    let mut options = ConnectOptions::new(parse_database_url(url).expect("URL"));
    options.connect_timeout = Duration::from_secs(5);
    options.tls = TlsOptions {
        mode: Some(mode),
        ca_bundle: ca_bundle.map(Path::to_path_buf),
    };
    options
}

/// Connect and say whether the session is encrypted (`pg_stat_ssl`).
async fn encrypted(options: &ConnectOptions) -> Result<bool, slipway::Error> {
    let client = connect(options).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

fn code(result: &Result<bool, slipway::Error>) -> String {
    match result {
        Ok(ssl) => format!("ok (ssl={ssl})"),
        Err(e) => format!("{}: {e}", e.code().as_str()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_a_real_server() {
    let postgres = tokio::task::spawn_blocking(support::Postgres::start)
        .await
        .expect("start PostgreSQL");
    let password = support::unique("tls-pw");
    postgres.create_app_database(ROLE, &password).await;
    let port = postgres.cluster.port();
    let by_name = format!("postgresql://{ROLE}:{password}@localhost:{port}/{ROLE}");
    let by_ip = format!("postgresql://{ROLE}:{password}@127.0.0.1:{port}/{ROLE}");

    // Before the server has TLS: `require` must fail, not fall back.
    let result = encrypted(&options(&by_ip, SslMode::Require, None)).await;
    assert!(code(&result).starts_with("tls:"), "{}", code(&result));

    let dir = tempfile::tempdir().expect("temp dir");
    let pki = make_pki(dir.path(), postgres.cluster.data_dir());
    // SSL settings take effect on reload (PostgreSQL docs, "ssl"); the
    // server may take a moment to apply it, so poll.
    // One statement each: ALTER SYSTEM refuses to run in a transaction.
    for sql in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            pki.server_cert.display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            pki.server_key.display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
    ] {
        postgres.admin(&sql).await;
    }
    postgres.admin("SELECT pg_reload_conf()").await;
    let started = Instant::now();
    while encrypted(&options(&by_ip, SslMode::Require, None))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not turn TLS on; its log:\n{}",
            std::fs::read_to_string(postgres.cluster.log_file()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cases = [
        (
            "require, any certificate",
            &by_ip,
            SslMode::Require,
            None,
            "ok (ssl=true)",
        ),
        ("disable", &by_ip, SslMode::Disable, None, "ok (ssl=false)"),
        (
            "verify-full, right CA and name",
            &by_name,
            SslMode::VerifyFull,
            Some(&pki.ca_bundle),
            "ok (ssl=true)",
        ),
        (
            "verify-full, wrong CA",
            &by_name,
            SslMode::VerifyFull,
            Some(&pki.wrong_ca_bundle),
            "tls:",
        ),
        (
            "verify-full, certificate for another name",
            &by_ip,
            SslMode::VerifyFull,
            Some(&pki.ca_bundle),
            "tls:",
        ),
        (
            "verify-full, system roots only",
            &by_name,
            SslMode::VerifyFull,
            None,
            "tls:",
        ),
    ];
    for (what, url, mode, bundle, want) in cases {
        let result = encrypted(&options(url, mode, bundle.map(PathBuf::as_path))).await;
        let got = code(&result);
        eprintln!("{what}: {got}");
        assert!(got.starts_with(want), "{what}: {got}");
        assert!(!got.contains(&password), "{what}: password leaked: {got}");
    }

    // The function's settings, through the handler.
    let sdk = {
        use aws_sdk_cloudwatch::config::{Credentials, Region};
        slipway::secret::aws_config_loader()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .load()
            .await
    };
    for (bundle, want) in [
        (&pki.ca_bundle, None),
        (&pki.wrong_ca_bundle, Some(ErrorCode::Tls)),
    ] {
        let bundle = bundle.display().to_string();
        let config = Config::from_lookup(|name| match name {
            "DATABASE_URL" => Some(by_name.clone()),
            "SLIPWAY_ENVIRONMENT" => Some("tls-test".into()),
            "DB_SSLMODE" => Some("verify-full".into()),
            "DB_CA_BUNDLE" => Some(bundle.clone()),
            _ => None,
        });
        let state = State::new(config, MigrationSet::from_files(Vec::new()), &sdk).await;
        let report = handler(
            &state,
            LambdaEvent::new(json!({"action": "validate"}), Context::default()),
        )
        .await
        .expect("a report");
        let json = report.to_json();
        assert_eq!(
            report.error.as_ref().map(|e| e.code),
            want,
            "{bundle}: {json}"
        );
        assert!(!json.contains(&password), "password leaked: {json}");
    }
}
