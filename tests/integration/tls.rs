//! TLS chosen by the connection string, against a real server of this
//! test's own with `ssl = on`: the form RDS documents
//! (`?sslmode=verify-full&sslrootcert=...`) uses that CA file, `verify-ca`
//! checks the chain but not the name, a named CA turns `require` into
//! `verify-ca` (libpq), `prefer` encrypts when it can, and `sslcert` /
//! `sslkey` present a client certificate to a `cert` pg_hba rule.
//!
//! Certificates come from the `openssl` command, which every machine with
//! PostgreSQL has; the server is this test's, so turning TLS on touches no
//! other test.

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use slipway::connect::connect;
use slipway::ConnectOptions;
use slipway_local::LocalCluster;
use tempfile::TempDir;

struct Running(LocalCluster);

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!("stopping the cluster in {}: {e}", self.0.dir().display());
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `name` in `dir/name.pem` (key `name.key`).
fn ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A certificate for `cn` signed by CA `ca` (`dir/cn.crt`, PKCS#8 key `dir/cn.key`).
fn leaf(dir: &Path, ca: &str, cn: &str, san: Option<&str>) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{cn}.key"),
            "-out",
            &format!("{cn}.csr"),
        ],
    );
    let ext = dir.join(format!("{cn}.ext"));
    let mut text = "basicConstraints=CA:FALSE\n".to_owned();
    if let Some(san) = san {
        text.push_str(&format!("subjectAltName={san}\n"));
    }
    std::fs::write(&ext, text).expect("write ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{cn}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{cn}.crt"),
            "-extfile",
            &format!("{cn}.ext"),
        ],
    );
    (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")))
}

/// Connect and say whether the session is encrypted, or the error's code.
async fn outcome(url: &str) -> String {
    let options = match ConnectOptions::from_url(url) {
        Ok(options) => options,
        Err(e) => return format!("{}: {e}", e.code().as_str()),
    };
    match connect(&options).await {
        Ok(client) => {
            let row = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .expect("pg_stat_ssl");
            format!("ok (ssl={})", row.get::<_, bool>(0))
        }
        Err(e) => format!("{}: {e}", e.code().as_str()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_string_tls_parameters_against_a_real_server() {
    let tmp = TempDir::new().expect("temp dir");
    let pki = tmp.path().join("pki");
    std::fs::create_dir(&pki).expect("pki dir");
    let cluster = Running(LocalCluster::start_fresh(&tmp.path().join("pg")).expect("start"));
    let cluster = &cluster.0;

    let ca_pem = ca(&pki, "testca");
    let wrong_ca = ca(&pki, "otherca");
    let (server_crt, server_key) = leaf(&pki, "testca", "localhost", Some("DNS:localhost"));
    let (client_crt, client_key) = leaf(&pki, "testca", "certuser", None);

    // The server's files, owned by its user; it refuses a key others can read.
    let data = cluster.data_dir();
    let owner = std::fs::metadata(data).expect("data dir");
    for (from, name) in [
        (&server_crt, "server.crt"),
        (&server_key, "server.key"),
        (&ca_pem, "root.crt"),
    ] {
        let to = data.join(name);
        std::fs::copy(from, &to).expect("copy into the data dir");
        chown(&to, Some(owner.uid()), Some(owner.gid())).expect("chown");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(
        &hba,
        format!("hostssl all certuser 127.0.0.1/32 cert\nhost all certuser 127.0.0.1/32 reject\n{rules}"),
    )
    .expect("write pg_hba.conf");
    let admin = {
        let options = ConnectOptions::new(cluster.config("postgres"));
        connect(&options).await.expect("admin connection")
    };
    // One statement per message: ALTER SYSTEM refuses an implicit transaction.
    for sql in [
        "ALTER SYSTEM SET ssl = on",
        "ALTER SYSTEM SET ssl_ca_file = 'root.crt'",
        "CREATE ROLE certuser LOGIN",
        "SELECT pg_reload_conf()",
    ] {
        admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // The reload is asynchronous: wait until new sessions get TLS.
    let base = format!(
        "postgresql://postgres:{}@localhost:{}/postgres?hostaddr=127.0.0.1",
        cluster.password(),
        cluster.port()
    );
    let mut ready = false;
    for _ in 0..100 {
        if outcome(&format!("{base}&sslmode=require")).await == "ok (ssl=true)" {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the server never offered TLS");

    let ca = ca_pem.display();
    let wrong = wrong_ca.display();
    let by_ip = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/postgres?",
        cluster.password(),
        cluster.port()
    );
    let cases = [
        // The form RDS documents: the named CA file is what is trusted.
        (
            format!("{base}&sslmode=verify-full&sslrootcert={ca}"),
            "ok (ssl=true)",
        ),
        (
            format!("{base}&sslmode=verify-full&sslrootcert={wrong}"),
            "tls",
        ),
        // verify-ca: the certificate names localhost, not 127.0.0.1.
        (
            format!("{by_ip}sslmode=verify-ca&sslrootcert={ca}"),
            "ok (ssl=true)",
        ),
        (
            format!("{by_ip}sslmode=verify-full&sslrootcert={ca}"),
            "tls",
        ),
        (
            format!("{by_ip}sslmode=verify-ca&sslrootcert={wrong}"),
            "tls",
        ),
        // libpq: a named CA makes require check the chain.
        (format!("{by_ip}sslmode=require&sslrootcert={wrong}"), "tls"),
        (format!("{by_ip}sslmode=require"), "ok (ssl=true)"),
        (format!("{by_ip}sslmode=prefer"), "ok (ssl=true)"),
        (format!("{by_ip}sslmode=allow"), "ok (ssl=true)"),
        (format!("{by_ip}sslmode=disable"), "ok (ssl=false)"),
    ];
    for (url, want) in &cases {
        let got = outcome(url).await;
        assert!(got.starts_with(want), "{url}: {got}");
        assert!(!got.contains(cluster.password()), "{got}");
    }

    // A client certificate for the `cert` rule.
    let cert_base = format!(
        "postgresql://certuser@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}",
        cluster.port()
    );
    let with_cert = format!(
        "{cert_base}&sslcert={}&sslkey={}",
        client_crt.display(),
        client_key.display()
    );
    assert_eq!(outcome(&with_cert).await, "ok (ssl=true)", "{with_cert}");
    let without = outcome(&cert_base).await;
    assert!(
        !without.starts_with("ok"),
        "no certificate, no entry: {without}"
    );
    let missing_key = outcome(&format!("{cert_base}&sslcert={}", client_crt.display())).await;
    assert!(
        missing_key.starts_with("config") && missing_key.contains("sslkey"),
        "{missing_key}"
    );
}
