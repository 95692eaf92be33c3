//! `slipway::secret` against moto's Secrets Manager with the real SDK: the
//! cache and its TTL, a forced refresh, the errors for a missing, binary or
//! malformed secret, and the one re-fetch on an authentication failure — the
//! code the Lambda and the CLI's `--secret-id` share.
//!
//! It lives here, not in the root crate, because the Python tools (moto)
//! belong to this crate's tests.

mod support;

use std::time::Duration;

use serde_json::json;
use slipway::secret::{with_secret, DbSecret, SecretSource};
use slipway::{ConnectOptions, ErrorCode, Report};
use support::Moto;

async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    use aws_sdk_codepipeline::config::{Credentials, Region};
    slipway::secret::aws_config_loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(moto.url())
        .load()
        .await
}

fn rds(password: &str) -> String {
    json!({
        "engine": "postgres", "host": "127.0.0.1", "port": 5432,
        "username": "app", "password": password, "dbname": "tutor"
    })
    .to_string()
}

fn put(moto: &Moto, name: &str, value: &str, create: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("value");
    std::fs::write(&file, value).expect("write the secret");
    let from_file = format!("file://{}", file.display());
    let (operation, key) = if create {
        ("create-secret", "--name")
    } else {
        ("put-secret-value", "--secret-id")
    };
    moto.aws(&[
        "secretsmanager",
        operation,
        key,
        name,
        "--secret-string",
        &from_file,
    ]);
}

#[tokio::test]
async fn fetch_cache_refresh_and_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(dir.path());
    let sdk = sdk(&moto).await;
    put(&moto, "db/one", &rds("first-pw"), true);

    // Cached for the TTL: a new value in Secrets Manager is not seen...
    let cached = SecretSource::new(&sdk, "db/one", Duration::from_secs(3600));
    assert_eq!(cached.get().await.expect("fetch").password(), "first-pw");
    put(&moto, "db/one", &rds("second-pw"), false);
    assert_eq!(cached.get().await.expect("cached").password(), "first-pw");
    // ...until a refresh, which also replaces the cache.
    assert_eq!(
        cached.refresh().await.expect("refresh").password(),
        "second-pw"
    );
    assert_eq!(cached.get().await.expect("cached").password(), "second-pw");

    // A zero TTL fetches every time.
    let uncached = SecretSource::new(&sdk, "db/one", Duration::ZERO);
    assert_eq!(uncached.get().await.expect("fetch").password(), "second-pw");
    put(&moto, "db/one", &rds("third-pw"), false);
    assert_eq!(uncached.get().await.expect("fetch").password(), "third-pw");

    // Errors are `secret`, name the secret, never quote it.
    let missing = SecretSource::new(&sdk, "db/none", Duration::ZERO);
    let err = missing.get().await.expect_err("no such secret");
    assert_eq!(err.code().as_str(), "secret", "{err}");
    assert!(err.to_string().contains("db/none"), "{err}");

    put(&moto, "db/not-json", "user=app password=leaky-pw", true);
    let err = SecretSource::new(&sdk, "db/not-json", Duration::ZERO)
        .get()
        .await
        .expect_err("not JSON");
    assert!(err.to_string().contains("is not JSON"), "{err}");
    assert!(!err.to_string().contains("leaky-pw"), "{err}");

    let mut hostless: serde_json::Value = serde_json::from_str(&rds("leaky-pw")).expect("JSON");
    hostless.as_object_mut().expect("object").remove("host");
    put(&moto, "db/hostless", &hostless.to_string(), true);
    let err = SecretSource::new(&sdk, "db/hostless", Duration::ZERO)
        .get()
        .await
        .expect_err("no host");
    assert!(err.to_string().contains("'host' is missing"), "{err}");
    assert!(!err.to_string().contains("leaky-pw"), "{err}");
}

/// A report as a migration run would give it, for a given password.
fn outcome(config: &tokio_postgres::Config, good: &str) -> Report {
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    if password.as_deref() == Some(good) {
        let mut report = Report::new("validate", false);
        report.success = true;
        report
    } else {
        Report::failure(
            "validate",
            false,
            &slipway::Error::Auth("password authentication failed".into()),
        )
    }
}

#[tokio::test]
async fn an_auth_failure_refetches_once_and_retries_only_when_the_secret_changed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(dir.path());
    let sdk = sdk(&moto).await;
    put(&moto, "db/rotating", &rds("old-pw"), true);
    let source = SecretSource::new(&sdk, "db/rotating", Duration::from_secs(3600));
    assert_eq!(
        source.get().await.expect("warm the cache").password(),
        "old-pw"
    );

    // Rotated: the database wants the new password, the cache has the old.
    put(&moto, "db/rotating", &rds("new-pw"), false);
    let mut attempts = Vec::new();
    let report = with_secret(&source, "validate", false, |config| {
        attempts.push(config.get_password().map(<[u8]>::to_vec));
        let report = outcome(&config, "new-pw");
        async move { report }
    })
    .await;
    assert!(report.success, "{report:?}");
    assert_eq!(
        attempts,
        [Some(b"old-pw".to_vec()), Some(b"new-pw".to_vec())]
    );

    // Simply wrong: the re-fetch finds the same secret, so no second run.
    let mut runs = 0;
    let report = with_secret(&source, "validate", false, |config| {
        runs += 1;
        let report = outcome(&config, "what-the-database-wants");
        async move { report }
    })
    .await;
    assert_eq!(runs, 1);
    assert_eq!(report.error.as_ref().map(|e| e.code), Some(ErrorCode::Auth));

    // Other failures are returned as they are, without a re-fetch.
    let report = with_secret(&source, "validate", false, |_| async {
        Report::failure(
            "validate",
            false,
            &slipway::Error::Connection("refused".into()),
        )
    })
    .await;
    assert_eq!(
        report.error.as_ref().map(|e| e.code),
        Some(ErrorCode::Connection)
    );

    // The options a caller builds from the secret carry its credentials.
    let secret = DbSecret::parse(&rds("x-pw"), "db").expect("parse");
    let options = ConnectOptions::new(secret.config());
    assert!(!format!("{options:?}").contains("x-pw"));
}
