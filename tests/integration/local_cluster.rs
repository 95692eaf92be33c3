//! The embedded cluster of `local/src/lib.rs` against real PostgreSQL servers:
//! start, connect three ways (config, URL, psql), reuse, stop, restart.
//!
//! Each test owns its temp dir and its server, so they run in parallel. They
//! also run as root (CI does), where the server runs as `postgres`.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use slipway_local::LocalCluster;
use tempfile::TempDir;
use tokio_postgres::NoTls;

/// Stops the server when the test ends, also on a failed assertion, so no
/// orphan postmaster outlives its deleted temp dir.
struct Running(LocalCluster);

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!("stopping the cluster in {}: {e}", self.0.dir().display());
        }
    }
}

async fn select_one(config: &tokio_postgres::Config) -> i32 {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    let row = client.query_one("select 1", &[]).await.expect("select 1");
    row.get(0)
}

fn server_pid(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    text.lines().next().expect("pid line").to_owned()
}

#[tokio::test]
async fn fresh_cluster_answers_over_config_url_tcp_and_psql() {
    let tmp = TempDir::new().expect("temp dir");
    let cluster = Running(LocalCluster::start_fresh(tmp.path()).expect("start_fresh"));
    let cluster = &cluster.0;

    cluster
        .ensure_database("app")
        .await
        .expect("ensure_database");
    cluster
        .ensure_database("app")
        .await
        .expect("ensure_database is idempotent");

    assert_eq!(select_one(&cluster.config("app")).await, 1);

    let url = cluster.url("app");
    let from_url = tokio_postgres::Config::from_str(&url).expect("url parses");
    assert_eq!(select_one(&from_url).await, 1, "{url}");

    let tcp = tokio_postgres::Config::from_str(&cluster.tcp_url("app")).expect("tcp url parses");
    assert_eq!(select_one(&tcp).await, 1);

    let out = Command::new("psql")
        .args(["-X", "-At", "-c", "select 1"])
        .arg(&url)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[tokio::test]
async fn tcp_with_a_wrong_password_is_refused() {
    let tmp = TempDir::new().expect("temp dir");
    let cluster = Running(LocalCluster::start_fresh(tmp.path()).expect("start_fresh"));
    let cluster = &cluster.0;

    let mut config =
        tokio_postgres::Config::from_str(&cluster.tcp_url("postgres")).expect("parses");
    config.password("not-the-password");
    let err = config
        .connect(NoTls)
        .await
        .err()
        .expect("wrong password must fail");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );
    assert_eq!(cluster.password().len(), 32);
}

#[tokio::test]
async fn databases_with_awkward_names_are_created_and_dropped() {
    let tmp = TempDir::new().expect("temp dir");
    let cluster = Running(LocalCluster::start_fresh(tmp.path()).expect("start_fresh"));
    let cluster = &cluster.0;
    let name = "Tenant \"one\"; drop";

    cluster.ensure_database(name).await.expect("create");
    assert_eq!(select_one(&cluster.config(name)).await, 1);
    let url = cluster.url(name);
    let from_url = tokio_postgres::Config::from_str(&url).expect("url parses");
    assert_eq!(select_one(&from_url).await, 1, "{url}");

    // An open session must not keep the drop from happening (WITH (FORCE)).
    let (client, connection) = cluster.config(name).connect(NoTls).await.expect("connect");
    let session = tokio::spawn(connection);
    cluster.drop_database(name).await.expect("drop");
    cluster
        .drop_database(name)
        .await
        .expect("drop is idempotent");
    drop(client);
    let _ = session.await;

    let err = cluster
        .config(name)
        .connect(NoTls)
        .await
        .err()
        .expect("dropped database is gone");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_DATABASE),
        "{err}"
    );
}

#[tokio::test]
async fn start_or_reuse_reuses_then_stop_dir_stops_then_it_restarts() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path();

    let first = Running(LocalCluster::start_or_reuse(dir).expect("first start"));
    let pid = server_pid(first.0.data_dir());
    assert_eq!(select_one(&first.0.config("postgres")).await, 1);

    let second = LocalCluster::start_or_reuse(dir).expect("reuse");
    assert_eq!(second.port(), first.0.port());
    assert_eq!(second.socket_dir(), first.0.socket_dir());
    assert_eq!(second.password(), first.0.password());
    assert_eq!(server_pid(second.data_dir()), pid, "no second server");

    assert!(
        LocalCluster::stop_dir(dir).expect("stop_dir"),
        "was running"
    );
    assert!(!LocalCluster::stop_dir(dir).expect("stop_dir again"));
    assert!(!second.data_dir().join("postmaster.pid").exists());
    assert!(
        select_one_fails(&first.0.config("postgres")).await,
        "server still answers after stop_dir"
    );

    let third = LocalCluster::start_or_reuse(dir).expect("restart");
    assert_eq!(third.password(), first.0.password());
    assert_eq!(select_one(&third.config("postgres")).await, 1);
    assert_ne!(server_pid(third.data_dir()), pid, "a new server process");
    // `first`'s guard stops `third`'s server: same folder.
}

async fn select_one_fails(config: &tokio_postgres::Config) -> bool {
    config.connect(NoTls).await.is_err()
}

#[tokio::test]
async fn concurrent_starts_on_one_dir_share_one_server() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().to_path_buf();

    let handles: Vec<_> = (0..3)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || LocalCluster::start_or_reuse(&dir))
        })
        .collect();
    let clusters: Vec<LocalCluster> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("start_or_reuse"))
        .collect();
    let guard = Running(clusters[0].clone());

    for cluster in &clusters {
        assert_eq!(cluster.port(), guard.0.port());
        assert_eq!(cluster.password(), guard.0.password());
    }
    assert_eq!(select_one(&guard.0.config("postgres")).await, 1);
}

#[test]
fn start_fresh_refuses_a_non_empty_dir() {
    let tmp = TempDir::new().expect("temp dir");
    std::fs::write(tmp.path().join("keep.txt"), "mine").expect("write");
    let err = LocalCluster::start_fresh(tmp.path()).expect_err("non-empty dir");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(tmp.path().join("keep.txt").exists());
}

#[test]
fn stop_dir_without_a_cluster_is_false() {
    let tmp = TempDir::new().expect("temp dir");
    assert!(!LocalCluster::stop_dir(tmp.path()).expect("empty dir"));
    assert!(!LocalCluster::stop_dir(&tmp.path().join("absent")).expect("absent dir"));
}

/// Removes a relocated cluster's folder when the test ends.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_project_the_server_user_cannot_enter_gets_its_cluster_elsewhere() {
    use std::os::unix::fs::PermissionsExt;

    let tmp = TempDir::new().expect("temp dir");
    let private = |path: &Path| {
        std::fs::create_dir_all(path).expect("create dir");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    };
    // Like /root/slipway: a 0700 project directory under a 0700 parent.
    let parent = tmp.path().join("home");
    let project = parent.join("slipway");
    private(&parent);
    private(&project);
    let requested = project.join(".slipway").join("local");

    let cluster = LocalCluster::start_or_reuse(&requested).expect("start_or_reuse");
    let _cleanup = RemoveDir(cluster.dir().to_path_buf());
    let cluster = Running(cluster);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let requested = std::fs::canonicalize(&requested).expect("canonical");
    if root {
        assert_ne!(cluster.0.dir(), requested, "relocated when run as root");
        assert!(
            cluster.0.dir().starts_with("/var/tmp"),
            "{}",
            cluster.0.dir().display()
        );
        let pointer = std::fs::read_to_string(requested.join(slipway_local::LOCATION_FILE))
            .expect("LOCATION file");
        assert_eq!(Path::new(pointer.trim()), cluster.0.dir());
    }
    assert_eq!(
        LocalCluster::location(&requested).expect("location"),
        cluster.0.dir()
    );
    assert_eq!(select_one(&cluster.0.config("postgres")).await, 1);

    // The next start finds the same server; stop finds it too.
    let again = LocalCluster::start_or_reuse(&requested).expect("reuse");
    assert_eq!(again.dir(), cluster.0.dir());
    assert_eq!(again.port(), cluster.0.port());
    assert!(
        LocalCluster::stop_dir(&requested).expect("stop_dir"),
        "was running"
    );
    assert!(!LocalCluster::stop_dir(&requested).expect("stop_dir again"));
}
