//! Connection strings as libpq reads them, end to end: the session settings
//! every connection gets (read committed whatever the database's default,
//! the user's `options` kept), the password sources a URL without a password
//! falls back to, and the parser under arbitrary and generated input — it
//! answers `Ok` or a `config` error, never panics, and never repeats a
//! password it was given.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use proptest::prelude::*;
use slipway::connect::{connect, parse_connection_string, PasswordSources};
use slipway::ConnectOptions;

use crate::common::{cluster, TestDb};

async fn show(options: &ConnectOptions, setting: &str) -> String {
    let client = connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let row = client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .expect("SHOW");
    row.get(0)
}

fn url_options(url: &str) -> ConnectOptions {
    ConnectOptions::from_url(url).unwrap_or_else(|e| panic!("parse: {e}"))
}

#[tokio::test]
async fn sessions_read_committed_even_when_the_database_defaults_otherwise() {
    let db = TestDb::new("isolation_forced").await;
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'repeatable read'",
            db.name
        ))
        .await
        .expect("alter database");
    // The setting is real: a plain session gets it.
    let plain = db.client().await;
    let row = plain
        .query_one("SHOW transaction_isolation", &[])
        .await
        .expect("SHOW");
    assert_eq!(row.get::<_, String>(0), "repeatable read");

    let options = url_options(&db.url());
    assert_eq!(
        show(&options, "transaction_isolation").await,
        "read committed"
    );
    // Through the harness's Config, not a URL, too.
    assert_eq!(
        show(&db.connect_options(), "transaction_isolation").await,
        "read committed"
    );

    let with_options = format!("{}?options=-c%20search_path%3Dfoo", db.url());
    let options = url_options(&with_options);
    assert_eq!(show(&options, "search_path").await, "foo");
    assert_eq!(
        show(&options, "transaction_isolation").await,
        "read committed"
    );
}

#[tokio::test]
async fn keyword_strings_and_libpq_parameters_connect() {
    let db = TestDb::new("keyword_string").await;
    let cluster = cluster();
    let keywords = format!(
        "host='{}' port={} user=postgres dbname='{}' application_name=kw-test \
         connect_timeout=5 sslmode=prefer target_session_attrs=read-write",
        cluster.socket_dir().display(),
        cluster.port(),
        db.name
    );
    let options = url_options(&keywords);
    assert_eq!(options.effective_connect_timeout(), Duration::from_secs(5));
    assert_eq!(show(&options, "application_name").await, "kw-test");

    // The RDS form over TCP: sslmode=disable here since the test server has no TLS.
    let tcp = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/{}?sslmode=disable&connect_timeout=4",
        cluster.password(),
        cluster.port(),
        db.name
    );
    assert_eq!(show(&url_options(&tcp), "server_encoding").await, "UTF8");
}

/// The TCP URL of `db` without its password.
fn passwordless(db: &TestDb) -> String {
    format!(
        "postgresql://postgres@127.0.0.1:{}/{}",
        cluster().port(),
        db.name
    )
}

#[tokio::test]
async fn a_url_without_a_password_takes_pgpassword_then_the_password_file() {
    let db = TestDb::new("password_sources").await;
    let cluster = cluster();
    let url = passwordless(&db);

    let err = connect(&url_options(&url))
        .await
        .expect_err("no password anywhere");
    assert_eq!(err.code().as_str(), "auth", "{err}");

    let env = url_options(&url).with_password_sources(PasswordSources {
        pgpassword: Some(cluster.password().to_owned()),
        pgpassfile: None,
    });
    assert_eq!(show(&env, "transaction_isolation").await, "read committed");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pgpass");
    std::fs::write(
        &file,
        format!(
            "# a comment\nother:*:*:*:wrong\n127.0.0.1:{}:*:postgres:{}\n",
            cluster.port(),
            cluster.password()
        ),
    )
    .expect("write pgpass");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let from_file = url_options(&url).with_password_sources(PasswordSources {
        pgpassword: None,
        pgpassfile: Some(file.clone()),
    });
    assert_eq!(
        show(&from_file, "transaction_isolation").await,
        "read committed"
    );

    // The URL's passfile beats PGPASSFILE.
    let with_passfile = format!("{url}?passfile={}", file.display());
    let by_param = url_options(&with_passfile).with_password_sources(PasswordSources {
        pgpassword: None,
        pgpassfile: Some(dir.path().join("absent")),
    });
    assert_eq!(
        show(&by_param, "transaction_isolation").await,
        "read committed"
    );

    // PGPASSWORD comes before the file: a wrong one fails, and is not echoed.
    let wrong = url_options(&url).with_password_sources(PasswordSources {
        pgpassword: Some("wrong-env-password-1234".into()),
        pgpassfile: Some(file.clone()),
    });
    let err = connect(&wrong).await.expect_err("wrong PGPASSWORD");
    assert_eq!(err.code().as_str(), "auth", "{err}");
    assert!(
        !err.to_string().contains("wrong-env-password-1234"),
        "{err}"
    );
    assert!(!format!("{wrong:?}").contains("wrong-env-password-1234"));

    // A file others can read is ignored, as libpq does.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = connect(&from_file)
        .await
        .expect_err("world-readable pgpass is ignored");
    assert_eq!(err.code().as_str(), "auth", "{err}");
    assert!(!err.to_string().contains(cluster.password()), "{err}");
}

/// A password unlike any other part of the generated input.
fn password() -> impl Strategy<Value = String> {
    "[A-Za-z0-9@:/?#%&=' \\\\]{6,24}".prop_map(|p| format!("Pw{p}Zq"))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn param() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        Just("sslmode".to_owned()),
        Just("sslrootcert".to_owned()),
        Just("connect_timeout".to_owned()),
        Just("target_session_attrs".to_owned()),
        Just("application_name".to_owned()),
        Just("options".to_owned()),
        Just("port".to_owned()),
        Just("host".to_owned()),
        Just("hostaddr".to_owned()),
        Just("sslcert".to_owned()),
        Just("sslkey".to_owned()),
        Just("channel_binding".to_owned()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        Just("verify-full".to_owned()),
        Just("verify-ca".to_owned()),
        Just("prefer".to_owned()),
        Just("standby".to_owned()),
        Just("read-write".to_owned()),
        Just("10".to_owned()),
        Just("-1".to_owned()),
        Just("/path/rds-ca.pem".to_owned()),
        Just("::1".to_owned()),
        "[a-z0-9 ./%-]{0,12}",
    ];
    (key, value)
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("db.example.com".to_owned()),
        Just("[::1]".to_owned()),
        Just("[::1".to_owned()),
        Just("%2Ftmp%2Fsock".to_owned()),
        Just("10.0.0.7".to_owned()),
        "[a-z0-9.]{0,10}",
    ]
    .prop_flat_map(|host| {
        (
            Just(host),
            prop::option::of(prop_oneof![Just("5432".to_owned()), "[0-9a-z]{0,6}"]),
        )
    })
    .prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn url() -> impl Strategy<Value = (String, String)> {
    (
        password(),
        any::<bool>(),
        prop::collection::vec(host(), 0..3),
        "[a-z%0-9]{0,8}",
        prop::collection::vec(param(), 0..4),
    )
        .prop_map(|(password, encode, hosts, db, params)| {
            let secret = if encode {
                percent_encode(&password)
            } else {
                password.clone()
            };
            let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let url = format!(
                "postgresql://app:{secret}@{}/{db}?{}",
                hosts.join(","),
                query.join("&")
            );
            (url, password)
        })
}

fn keywords() -> impl Strategy<Value = (String, String)> {
    (
        password(),
        prop::collection::vec(param(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(password, params, quoted)| {
            let escaped = password.replace('\\', "\\\\").replace('\'', "\\'");
            let mut text = format!("user=app password='{escaped}'");
            if !quoted {
                // Unquoted and unescaped: the parser must still not echo it.
                text = format!("user=app password={password}");
            }
            for (key, value) in params {
                text.push_str(&format!(" {key}='{value}'"));
            }
            (text, password)
        })
}

/// The example the messages show; an input that is part of it may appear.
const HINT: &str = "postgresql://user:password@host:port/database";

fn check(input: &str, password: Option<&str>) -> Result<(), TestCaseError> {
    match parse_connection_string(input) {
        Ok(parsed) => {
            let debug = format!("{parsed:?}");
            if let Some(password) = password {
                prop_assert!(
                    !debug.contains(password),
                    "Debug shows the password: {debug}"
                );
            }
        }
        Err(e) => {
            prop_assert_eq!(e.code().as_str(), "config", "{}", e);
            let text = e.to_string();
            let input = input.trim();
            prop_assert!(
                input.len() < 12 || HINT.contains(input) || !text.contains(input),
                "the input is repeated: {}",
                text
            );
            if let Some(password) = password {
                prop_assert!(
                    !text.contains(password),
                    "the password is repeated: {}",
                    text
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        // Shrunk failures are printed; no regression file in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_strings_parse_or_fail_as_config(input in any::<String>()) {
        check(&input, None)?;
    }

    #[test]
    fn url_like_strings_parse_or_fail_as_config(input in "(postgres(ql)?://)?[ -~]{0,60}") {
        check(&input, None)?;
    }

    #[test]
    fn generated_urls_never_repeat_their_password((url, password) in url()) {
        check(&url, Some(&password))?;
    }

    #[test]
    fn generated_keyword_strings_never_repeat_their_password((text, password) in keywords()) {
        check(&text, Some(&password))?;
    }
}
