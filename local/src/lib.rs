//! `slipway-local`: the embedded, throw-away PostgreSQL cluster behind
//! `slipway --local`, `make run` and the test harness.
//!
//! A crate of its own so that the Lambda function, which never starts a
//! server, links none of it: the `slipway` library depends on it only behind
//! its `local` feature, and this crate depends on nothing of slipway's.
//!
//! It owns one folder (by default `.slipway/local`): `data/` (PGDATA),
//! `socket/` (the Unix socket), `server.log`, `password` (0600) and `.lock`.
//! It finds the server binaries of the installed PostgreSQL, runs `initdb` on
//! first use, starts the server on a free loopback port, and reuses a running
//! server on later calls, so a developer's second `slipway --local` costs a
//! `pg_ctl status`, not a new cluster.
//!
//! Why not `pgtemp` or `pgdo-lib`: both run `initdb` as the current user, and
//! `initdb`/`postgres` refuse to run as root, which is exactly how CI runs us;
//! neither reuses a cluster under a folder of our choosing. Here, under root,
//! the binaries run as the unprivileged `postgres` (else `nobody`) user, which
//! then owns the cluster folder.
//!
//! Under root, the server's user must be able to walk down to the folder. A
//! checkout in root's own 0700 home (`/root/slipway`) does not allow that,
//! so `start_or_reuse` then keeps the cluster under
//! `/var/tmp/slipway-<hash of the folder>/` instead (private to that user),
//! says so on stderr, and leaves a `LOCATION` file with the path in the
//! folder asked for; `stop_dir` finds it there.
//!
//! The server is tuned to lose data on a crash (`fsync=off`, ...): it only ever
//! holds databases a test or a developer can recreate.

use std::ffi::{CStr, CString};
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Everything that can go wrong with the embedded cluster. `slipway` maps
/// each variant to one of its own (`impl From<LocalError> for slipway::Error`),
/// and so to one report code; the messages are the report's.
// Exhaustive on purpose: a new variant must not compile in slipway until
// that mapping gives it its report code.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The PostgreSQL server binaries are missing (report code `config`).
    #[error("{0}")]
    NotInstalled(String),

    /// The cluster could not be created, started, stopped or reached
    /// (report code `connection`).
    #[error("local postgresql: {0}")]
    Cluster(String),

    /// A value the caller handed in cannot work, e.g. an empty database name
    /// (report code `config`).
    #[error("{0}")]
    Config(String),

    /// A statement on the cluster's own `postgres` database failed (report
    /// code `internal`).
    #[error("database error while {context}: {message}")]
    Database { context: String, message: String },
}

/// Shorthand used across the crate.
pub type Result<T, E = LocalError> = std::result::Result<T, E>;

/// The start-up `options` of the cluster's own connections: read committed
/// whatever the server's default, as every connection slipway makes. A copy
/// of slipway's `connect::READ_COMMITTED_OPTION` (a test there holds the two
/// equal), since this crate sits below slipway and cannot import it. The
/// space is backslash-escaped: the server splits `options` at unescaped
/// white space (`pg_split_opts`).
pub const READ_COMMITTED_OPTION: &str = r"-c default_transaction_isolation=read\ committed";

/// The superuser `initdb` creates; every connection to the cluster uses it.
const SUPERUSER: &str = "postgres";

/// `sun_path` holds 108 bytes including the NUL (unix(7)); PostgreSQL appends
/// `/.s.PGSQL.<port>` to the socket directory, at most 15 more bytes.
const MAX_SOCKET_DIR_LEN: usize = 107 - "/.s.PGSQL.65535".len();

/// Another process may grab the port between our probe and the server's bind.
const START_ATTEMPTS: u32 = 3;

/// How long `pg_ctl` may wait for start or stop, in seconds.
const PG_CTL_TIMEOUT_SECS: &str = "30";

/// How long we wait for a server that `pg_ctl` or a pid file calls running.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The server reads this file, which we rewrite before every start, through
/// an `include_if_exists` line appended to `postgresql.conf` by `init`.
const CONF_FILE: &str = "slipway.conf";

const INSTALL_HINT: &str = "install the server with `apt-get install postgresql` (Debian/Ubuntu) \
     or `brew install postgresql` (macOS), or run scripts/setup.sh";

/// A running PostgreSQL server that slipway started (or found running) under
/// a folder it owns.
#[derive(Clone)]
pub struct LocalCluster {
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    password: String,
    runner: Runner,
}

// Hand-written so the password never reaches a log line through `{:?}`.
impl fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCluster")
            .field("dir", &self.dir)
            .field("socket_dir", &self.socket_dir)
            .field("port", &self.port)
            .field("bin_dir", &self.runner.bin_dir)
            .field("run_as", &self.runner.run_as)
            .finish_non_exhaustive()
    }
}

impl LocalCluster {
    /// Start the cluster under `dir` (e.g. `.slipway/local`), creating it with initdb on first use and reusing it (and its port) when it already runs.
    pub fn start_or_reuse(dir: &Path) -> Result<LocalCluster> {
        Self::start(dir, false)
    }

    /// Create a brand-new cluster in `dir` (which must be empty or absent) and start it — used by the test harness with a temp dir.
    pub fn start_fresh(dir: &Path) -> Result<LocalCluster> {
        Self::start(dir, true)
    }

    /// Stop the cluster of `dir` if it runs — under `dir`, or where
    /// [`LocalCluster::start_or_reuse`] put it instead (see [`LocalCluster::location`]);
    /// Ok(false) when nothing was running / no cluster.
    pub fn stop_dir(dir: &Path) -> Result<bool> {
        let Ok(requested) = fs::canonicalize(dir) else {
            return Ok(false);
        };
        let mut layout = Layout::new(&requested);
        if !layout.pid_file().exists() {
            let elsewhere = relocated_dir(&requested);
            if !Layout::new(&elsewhere).pid_file().exists() {
                return Ok(false);
            }
            announce(&requested, &elsewhere);
            layout = Layout::new(&elsewhere);
        }
        let _lock = DirLock::acquire(&layout.lock_file())?;
        let runner = Runner::for_existing(&layout.data_dir())?;
        stop_server(&layout, &runner)
    }

    /// Where the cluster of `dir` lives: `dir` itself, or, when the server's
    /// user could not reach `dir` (root with a checkout in a 0700 home), a
    /// folder of its own under /var/tmp named after `dir`. `dir` must exist.
    pub fn location(dir: &Path) -> Result<PathBuf> {
        let requested =
            fs::canonicalize(dir).map_err(io_error(format!("resolving {}", dir.display())))?;
        let elsewhere = relocated_dir(&requested);
        Ok(
            if is_initialised(&elsewhere) && !is_initialised(&requested) {
                elsewhere
            } else {
                requested
            },
        )
    }

    /// Stop this cluster (fast: `pg_ctl stop -m fast`); stopping a stopped cluster is not an error.
    pub fn stop(&self) -> Result<()> {
        let layout = Layout::new(&self.dir);
        let _lock = DirLock::acquire(&layout.lock_file())?;
        stop_server(&layout, &self.runner).map(|_| ())
    }

    /// The loopback TCP port, also the number in the socket file name.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// PGDATA of the cluster.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the `initdb`, `pg_ctl` and `postgres` binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.runner.bin_dir
    }

    /// The folder the cluster lives in (the `dir` it was started with, made absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        Layout::new(&self.dir).log_file()
    }

    /// Connection settings for database `dbname` as superuser `postgres` over the Unix socket.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// The same as a libpq/psql URL, e.g. `postgresql://postgres@%2Fpath%2Fto%2Fsock:PORT/db`.
    pub fn url(&self, dbname: &str) -> String {
        // libpq and tokio-postgres both read a percent-encoded host that
        // decodes to an absolute path as a socket directory (libpq docs,
        // "Connection URIs"); `?host=` would work too but reads worse in logs.
        format!(
            "postgresql://{SUPERUSER}@{}:{}/{}",
            percent_encode(self.socket_dir.as_os_str().as_bytes()),
            self.port,
            percent_encode(dbname.as_bytes())
        )
    }

    /// URL over TCP on 127.0.0.1 with password auth (user `postgres`, the cluster's generated password) — used by tests of wrong-password handling.
    pub fn tcp_url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}:{}@127.0.0.1:{}/{}",
            percent_encode(self.password.as_bytes()),
            self.port,
            percent_encode(dbname.as_bytes())
        )
    }

    /// The generated password of `postgres`, needed only over TCP (`tcp_url`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Create database `name` unless it exists (connects to `postgres` db over the socket).
    pub async fn ensure_database(&self, name: &str) -> Result<()> {
        let client = self.admin_client().await?;
        let exists = client
            .query_opt("select 1 from pg_database where datname = $1", &[&name])
            .await
            .map_err(|e| db_error(&format!("looking up database {name}"), &e))?;
        if exists.is_some() {
            return Ok(());
        }
        let sql = format!("create database {}", quote_identifier(database_name(name)?));
        match client.batch_execute(&sql).await {
            Ok(()) => Ok(()),
            // Another caller created it between our lookup and our create.
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
            Err(e) => Err(db_error(&format!("creating database {name}"), &e)),
        }
    }

    /// Drop database `name` if it exists (WITH (FORCE)).
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let client = self.admin_client().await?;
        let sql = format!(
            "drop database if exists {} with (force)",
            quote_identifier(database_name(name)?)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| db_error(&format!("dropping database {name}"), &e))
    }

    async fn admin_client(&self) -> Result<tokio_postgres::Client> {
        let mut config = self.config("postgres");
        // Like every connection slipway makes (its `connect::session_options`):
        // `config` sets no options of its own, so these are all of them.
        config.options(READ_COMMITTED_OPTION);
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            LocalError::Cluster(format!(
                "cannot connect to the local cluster over {}: {}; see {}",
                socket_path(&self.socket_dir, self.port).display(),
                error_message(&e),
                self.log_file().display()
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "local cluster admin connection ended");
            }
        });
        Ok(client)
    }

    fn start(dir: &Path, fresh: bool) -> Result<LocalCluster> {
        if fresh && !is_empty_or_absent(dir)? {
            return Err(LocalError::Cluster(format!(
                "{} is not empty; a fresh cluster needs an empty or absent directory",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let dir =
            fs::canonicalize(dir).map_err(io_error(format!("resolving {}", dir.display())))?;
        // A fresh cluster (the test harness) lives exactly where it is told.
        let dir = if fresh { dir } else { placement(&dir)? };
        let layout = Layout::new(&dir);
        // Held until we return: two CLI processes racing on the same folder
        // must not both run initdb or both pick a port and start.
        let _lock = DirLock::acquire(&layout.lock_file())?;

        let data_dir = layout.data_dir();
        let initialised = data_dir.join("PG_VERSION").is_file();
        if fresh && initialised {
            return Err(LocalError::Cluster(format!(
                "another process created a cluster in {} meanwhile",
                dir.display()
            )));
        }
        let runner = if initialised {
            Runner::for_existing(&data_dir)?
        } else {
            if !is_empty_or_absent(&data_dir)? {
                return Err(LocalError::Cluster(format!(
                    "{} exists but holds no initialised cluster (an interrupted initdb?); delete {} and retry",
                    data_dir.display(),
                    dir.display()
                )));
            }
            Runner::for_new()?
        };
        if let Some(user) = &runner.run_as {
            check_traversable(&dir, user)?;
        }
        if !initialised {
            init(&layout, &runner)?;
        }
        let password = read_password(&layout)?;
        let socket_dir = prepare_socket_dir(&layout, &runner)?;

        let running = if is_running(&layout, &runner)? {
            wait_ready(&layout, READY_TIMEOUT)?
        } else {
            Readiness::Stopped
        };
        let port = match running {
            Readiness::Ready(pid) => {
                tracing::debug!(dir = %dir.display(), port = pid.port, "reusing the running local cluster");
                pid.port
            }
            Readiness::Dead(pid) => {
                // A killed postmaster that init has not reaped yet still
                // "runs" for pg_ctl and for the new server's stale-lock check.
                wait_reaped(pid, READY_TIMEOUT);
                start_server(&layout, &runner, &socket_dir)?
            }
            Readiness::Stopped => start_server(&layout, &runner, &socket_dir)?,
        };
        // The pid file tells where a running server really listens, even if
        // someone started it by hand with other settings.
        let socket_dir = PidFile::read(&layout.pid_file())
            .ok()
            .and_then(|pid| pid.socket_dir)
            .unwrap_or(socket_dir);
        Ok(LocalCluster {
            data_dir,
            dir,
            socket_dir,
            port,
            password,
            runner,
        })
    }
}

/// Where the cluster asked for in `requested` (canonical) goes. It stays
/// there unless we are root and the unprivileged user the server runs as
/// cannot walk down to it — a checkout in root's 0700 home, the usual case
/// on a fresh machine. Then it goes to a folder of its own under /var/tmp
/// (kept across reboots, unlike /tmp), named after a hash of `requested`, so
/// each project still has one cluster and finds it again next time.
fn placement(requested: &Path) -> Result<PathBuf> {
    let elsewhere = relocated_dir(requested);
    if is_initialised(requested) {
        return Ok(requested.to_path_buf());
    }
    let relocate = if is_initialised(&elsewhere) {
        true
    } else if is_root() {
        let user = unprivileged_user()?;
        check_traversable(requested, &user).is_err()
    } else {
        false
    };
    if !relocate {
        return Ok(requested.to_path_buf());
    }
    prepare_relocated(&elsewhere)?;
    // For people and scripts (`make clean-local`): where the cluster is.
    let pointer = requested.join(LOCATION_FILE);
    fs::write(&pointer, format!("{}\n", elsewhere.display()))
        .map_err(io_error(format!("writing {}", pointer.display())))?;
    announce(requested, &elsewhere);
    Ok(elsewhere)
}

/// Written into the requested folder of a relocated cluster: its location.
pub const LOCATION_FILE: &str = "LOCATION";

/// The one stderr line that says the cluster is not where it was asked for.
fn announce(requested: &Path, elsewhere: &Path) {
    tracing::warn!(
        "the local postgresql lives in {} (its user cannot enter {}); `slipway local stop` stops it there, delete that folder to discard it",
        elsewhere.display(),
        requested.display()
    );
}

fn relocated_dir(requested: &Path) -> PathBuf {
    let digest = Sha256::digest(requested.as_os_str().as_bytes());
    PathBuf::from(format!("/var/tmp/slipway-{}", hex(&digest[..6])))
}

fn is_initialised(dir: &Path) -> bool {
    dir.join("data").join("PG_VERSION").is_file()
}

/// Creates the relocated folder 0700, or checks that an existing one is
/// ours: /var/tmp is shared, and whoever controls the folder controls the
/// server (trust authentication on its socket). `init` hands it to the
/// server's user.
fn prepare_relocated(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error(format!("securing {}", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir)
                .map_err(io_error(format!("reading {}", dir.display())))?;
            let owner_ok =
                meta.uid() == 0 || unprivileged_user().is_ok_and(|user| user.uid == meta.uid());
            if !meta.is_dir() || !owner_ok || meta.permissions().mode() & 0o077 != 0 {
                return Err(LocalError::Cluster(format!(
                    "{} exists but is not a private directory of root or the postgres user; remove it and retry",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) => Err(io_error(format!("creating {}", dir.display()))(e)),
    }
}

/// Find initdb/pg_ctl/postgres: PATH, then `pg_config --bindir`, then `/usr/lib/postgresql/*/bin` (highest major first).
pub fn find_bin_dir() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // `/usr/local/bin/initdb` may be a lone symlink into the real
                // bin dir (it is on our CI image); the real dir has the rest.
                if let Some(real) = fs::canonicalize(&initdb)
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                {
                    candidates.push(real);
                }
                candidates.push(dir);
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !dir.is_empty() {
                candidates.push(PathBuf::from(dir));
            }
        }
    }
    candidates.extend(debian_bin_dirs());
    candidates
        .into_iter()
        .find(|dir| has_server_binaries(dir))
        .ok_or_else(|| {
            LocalError::NotInstalled(format!(
                "postgresql server binaries (initdb, pg_ctl, postgres) not found on PATH, \
                 through `pg_config --bindir` or under /usr/lib/postgresql/*/bin; {INSTALL_HINT}"
            ))
        })
}

/// Debian's versioned bin dirs, highest version first.
fn debian_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            let version: Option<Vec<u32>> = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect();
            Some((version?, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|name| dir.join(name).is_file())
}

/// The bin dir matching the major version an existing data dir was made with,
/// so a machine with several versions does not start 15's data with 16's server.
fn bin_dir_for_data(data_dir: &Path) -> Result<PathBuf> {
    if let Ok(version) = fs::read_to_string(data_dir.join("PG_VERSION")) {
        let dir = Path::new("/usr/lib/postgresql")
            .join(version.trim())
            .join("bin");
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
    }
    find_bin_dir()
}

/// Paths inside the cluster folder.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("data").join("postmaster.pid")
    }
    fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }
    fn lock_file(&self) -> PathBuf {
        self.dir.join(".lock")
    }
    fn conf_file(&self) -> PathBuf {
        self.dir.join("data").join(CONF_FILE)
    }

    /// `dir/socket` when short enough for `sun_path`, else a directory under
    /// /tmp named after a hash of `dir`, so every call finds the same one.
    fn socket_dir(&self) -> PathBuf {
        let local = self.dir.join("socket");
        if local.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            return local;
        }
        let digest = Sha256::digest(self.dir.as_os_str().as_bytes());
        PathBuf::from(format!("/tmp/slipway-{}", hex(&digest[..6])))
    }
}

/// The unprivileged account the server binaries run as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// How to run the server binaries: from which dir, and as whom.
#[derive(Debug, Clone)]
struct Runner {
    bin_dir: PathBuf,
    /// `None`: as ourselves.
    run_as: Option<RunAs>,
}

impl Runner {
    fn for_new() -> Result<Runner> {
        let bin_dir = find_bin_dir()?;
        let run_as = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        Ok(Runner { bin_dir, run_as })
    }

    /// Runs as the owner of the data dir, which is whom `init` ran initdb as.
    fn for_existing(data_dir: &Path) -> Result<Runner> {
        let bin_dir = bin_dir_for_data(data_dir)?;
        if !is_root() {
            return Ok(Runner {
                bin_dir,
                run_as: None,
            });
        }
        let meta =
            fs::metadata(data_dir).map_err(io_error(format!("reading {}", data_dir.display())))?;
        if meta.uid() == 0 {
            return Err(LocalError::Cluster(format!(
                "{} is owned by root, and postgresql refuses to run as root; delete it so slipway can recreate it for an unprivileged user",
                data_dir.display()
            )));
        }
        let run_as = lookup_user(UserQuery::Uid(meta.uid())).unwrap_or_else(|| RunAs {
            name: meta.uid().to_string(),
            uid: meta.uid(),
            gid: meta.gid(),
        });
        Ok(Runner {
            bin_dir,
            run_as: Some(run_as),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // English messages: `start_server` reads the log to spot a taken port.
        cmd.env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT");
        if let Some(user) = &self.run_as {
            // std drops the supplementary groups itself when it switches
            // uid as root (setgroups(0) unless `groups` was called), so
            // root's groups do not leak into the server.
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn run(&self, program: &str, cmd: &mut Command) -> Result<Output> {
        cmd.output().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                LocalError::NotInstalled(format!(
                    "{} not found in {}; {INSTALL_HINT}",
                    program,
                    self.bin_dir.display()
                ))
            } else {
                LocalError::Cluster(format!("cannot run {program}: {e}"))
            }
        })
    }

    /// Hands a path we created as root to the account the server runs as.
    fn chown(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(io_error(
                format!("handing {} to user {}", path.display(), user.name),
            ))?;
        }
        Ok(())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn unprivileged_user() -> Result<RunAs> {
    ["postgres", "nobody"]
        .into_iter()
        .filter_map(|name| lookup_user(UserQuery::Name(name)))
        .find(|user| user.uid != 0)
        .ok_or_else(|| {
            LocalError::Cluster(
                "running as root, and postgresql refuses to run as root, but there is no `postgres` or `nobody` user to run it as; \
                 create one (`useradd --system postgres`) or run slipway as a regular user"
                    .into(),
            )
        })
}

enum UserQuery<'a> {
    Name(&'a str),
    Uid(u32),
}

/// getpwnam_r/getpwuid_r: the reentrant forms, since tests start clusters
/// from several threads at once.
fn lookup_user(query: UserQuery<'_>) -> Option<RunAs> {
    let name = match &query {
        UserQuery::Name(name) => Some(CString::new(*name).ok()?),
        UserQuery::Uid(_) => None,
    };
    let mut buf_len = 4096;
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; buf_len];
        // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf_len` is the
        // true length of `buf`; results point into `buf`, read before it drops.
        let rc = unsafe {
            match (&query, &name) {
                (UserQuery::Name(_), Some(name)) => libc::getpwnam_r(
                    name.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                (UserQuery::Uid(uid), _) => {
                    libc::getpwuid_r(*uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
                }
                (UserQuery::Name(_), None) => return None,
            }
        };
        if rc == libc::ERANGE && buf_len < 1 << 20 {
            buf_len *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success pw_name is a NUL-terminated string inside `buf`.
        let user_name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Some(RunAs {
            name: user_name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// The server, running as another user, must be able to walk down to `dir`;
/// we only own `dir` itself, so say which ancestor blocks rather than change it.
fn check_traversable(dir: &Path, user: &RunAs) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            fs::metadata(ancestor).map_err(io_error(format!("reading {}", ancestor.display())))?;
        let mode = meta.permissions().mode();
        // Supplementary groups are dropped (see `Runner::command`), so only
        // the primary group counts.
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(LocalError::Cluster(format!(
                "postgresql runs as user {} because it refuses to run as root, and {} cannot enter {} (mode {:o}); \
                 put the cluster elsewhere or `chmod o+x {}`",
                user.name,
                user.name,
                ancestor.display(),
                mode & 0o7777,
                ancestor.display()
            )));
        }
    }
    Ok(())
}

/// Runs initdb and wires our settings file into `postgresql.conf`.
fn init(layout: &Layout, runner: &Runner) -> Result<()> {
    runner.chown(&layout.dir)?;
    let password_file = layout.password_file();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&password_file)
        .map_err(io_error(format!("creating {}", password_file.display())))?;
    // `mode` applies only when the file is new; an old one may be wider.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| writeln!(file, "{}", random_password()?))
        .map_err(io_error(format!("writing {}", password_file.display())))?;
    drop(file);
    // initdb, as the server's user, reads it.
    runner.chown(&password_file)?;

    let data_dir = layout.data_dir();
    let mut cmd = runner.command("initdb");
    cmd.arg("-D")
        .arg(&data_dir)
        .arg(format!("--username={SUPERUSER}"))
        .arg("--auth-local=trust")
        .arg("--auth-host=scram-sha-256")
        .arg(format!("--pwfile={}", password_file.display()))
        .arg("--encoding=UTF8")
        .arg("--locale=C")
        // A throw-away cluster need not survive a power cut.
        .arg("--no-sync")
        .current_dir(&layout.dir);
    tracing::info!(dir = %layout.dir.display(), "creating a local postgresql cluster");
    let out = runner.run("initdb", &mut cmd)?;
    if !out.status.success() {
        return Err(LocalError::Cluster(format!(
            "initdb failed ({}): {}",
            out.status,
            tail(&output_text(&out), 20)
        )));
    }
    let conf = data_dir.join("postgresql.conf");
    OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| {
            writeln!(
                f,
                "\n# Added by slipway.\ninclude_if_exists = '{CONF_FILE}'"
            )
        })
        .map_err(io_error(format!("writing {}", conf.display())))
}

fn random_password() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex(&bytes))
}

fn read_password(layout: &Layout) -> Result<String> {
    let path = layout.password_file();
    let text = fs::read_to_string(&path).map_err(io_error(format!(
        "reading the cluster password from {} (delete {} to recreate the cluster)",
        path.display(),
        layout.dir.display()
    )))?;
    Ok(text.trim().to_owned())
}

/// Creates the socket dir if needed (a /tmp one may have been cleaned away
/// since the last start) and makes sure nobody else controls it.
fn prepare_socket_dir(layout: &Layout, runner: &Runner) -> Result<PathBuf> {
    let dir = layout.socket_dir();
    match fs::create_dir(&dir) {
        Ok(()) => {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error(format!("securing {}", dir.display())))?;
            runner.chown(&dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(&dir)
                .map_err(io_error(format!("reading {}", dir.display())))?;
            let owner = runner.run_as.as_ref().map_or_else(
                || {
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    unsafe { libc::geteuid() }
                },
                |user| user.uid,
            );
            // Trust auth means whoever controls the socket dir controls
            // the server; a shared /tmp name must be ours.
            if !meta.is_dir() || meta.uid() != owner {
                return Err(LocalError::Cluster(format!(
                    "socket directory {} exists but is not a directory owned by uid {owner}; remove it",
                    dir.display()
                )));
            }
        }
        Err(e) => return Err(io_error(format!("creating {}", dir.display()))(e)),
    }
    Ok(dir)
}

fn is_running(layout: &Layout, runner: &Runner) -> Result<bool> {
    if !layout.pid_file().exists() {
        return Ok(false);
    }
    let mut cmd = runner.command("pg_ctl");
    cmd.arg("status")
        .arg("-D")
        .arg(layout.data_dir())
        .current_dir(&layout.dir);
    let out = runner.run("pg_ctl", &mut cmd)?;
    // pg_ctl(1): status exits 0 when running, 3 when not, 4 without a data dir.
    match out.status.code() {
        Some(0) => Ok(true),
        Some(3) | Some(4) => Ok(false),
        _ => Err(LocalError::Cluster(format!(
            "pg_ctl status failed ({}): {}",
            out.status,
            tail(&output_text(&out), 10)
        ))),
    }
}

fn start_server(layout: &Layout, runner: &Runner, socket_dir: &Path) -> Result<u16> {
    // The same port as last time keeps URLs a developer copied valid.
    let mut port = match previous_port(layout).filter(|&port| port_is_free(port)) {
        Some(port) => port,
        None => free_port()?,
    };
    let log_file = layout.log_file();
    for attempt in 1..=START_ATTEMPTS {
        write_conf(layout, runner, port, socket_dir)?;
        let log_start = fs::metadata(&log_file).map_or(0, |m| m.len());
        let mut cmd = runner.command("pg_ctl");
        cmd.arg("start")
            .arg("-w")
            .arg("-t")
            .arg(PG_CTL_TIMEOUT_SECS)
            .arg("-D")
            .arg(layout.data_dir())
            .arg("-l")
            .arg(&log_file)
            .current_dir(&layout.dir);
        tracing::info!(dir = %layout.dir.display(), port, "starting the local postgresql cluster");
        // With -l the postmaster writes to the log, not to our pipes, so
        // `output` returns once pg_ctl does.
        let out = runner.run("pg_ctl", &mut cmd)?;
        if out.status.success() {
            return match wait_ready(layout, READY_TIMEOUT)? {
                Readiness::Ready(pid) => Ok(pid.port),
                Readiness::Dead(_) | Readiness::Stopped => Err(LocalError::Cluster(format!(
                    "the local cluster exited right after it started; last lines of {}:\n{}",
                    log_file.display(),
                    tail(&read_from(&log_file, log_start), 20)
                ))),
            };
        }
        let log = read_from(&log_file, log_start);
        if port_taken(&log) && attempt < START_ATTEMPTS {
            tracing::warn!(
                port,
                "port taken before the server could bind it; trying another"
            );
            port = free_port()?;
            continue;
        }
        return Err(LocalError::Cluster(format!(
            "pg_ctl start failed ({}): {}\nlast lines of {}:\n{}",
            out.status,
            tail(&output_text(&out), 5),
            log_file.display(),
            tail(&log, 20)
        )));
    }
    Err(LocalError::Cluster(format!(
        "could not find a free port in {START_ATTEMPTS} attempts"
    )))
}

fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
}

fn previous_port(layout: &Layout) -> Option<u16> {
    let conf = fs::read_to_string(layout.conf_file()).ok()?;
    conf.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "port")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port the kernel just handed out; someone may take it before the server
/// binds it, which `start_server` retries.
fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_error("finding a free loopback port"))
}

fn write_conf(layout: &Layout, runner: &Runner, port: u16, socket_dir: &Path) -> Result<()> {
    // A list element in double quotes may hold commas (postgresql.conf docs,
    // unix_socket_directories); the server splits the list as it splits a
    // list of identifiers (`SplitDirectoriesString`), so the quoting is an
    // identifier's.
    let socket_list = quote_identifier(&socket_dir.to_string_lossy());
    let text = format!(
        "# Written by slipway before every start of this throw-away cluster; edits are lost.\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = {}\n\
         max_connections = 200\n\
         # Durability buys nothing for data we recreate at will, and costs seconds per test run.\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n",
        conf_quote(&socket_list)
    );
    let path = layout.conf_file();
    fs::write(&path, text).map_err(io_error(format!("writing {}", path.display())))?;
    runner.chown(&path)
}

/// A postgresql.conf string literal: quotes doubled, backslashes escaped.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// What `postmaster.pid` says about a running server.
struct PidFile {
    pid: libc::pid_t,
    port: u16,
    socket_dir: Option<PathBuf>,
    ready: bool,
}

impl PidFile {
    /// Lines 1, 4, 5 and 8 of the file: pid, port, first socket dir, status
    /// (`src/include/utils/pidfile.h`).
    fn read(path: &Path) -> io::Result<PidFile> {
        let text = fs::read_to_string(path)?;
        let lines: Vec<&str> = text.lines().collect();
        let pid = lines
            .first()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| io::Error::other("no pid in postmaster.pid"))?;
        let port = lines
            .get(3)
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| io::Error::other("no port in postmaster.pid yet"))?;
        let socket_dir = lines
            .get(4)
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .map(PathBuf::from);
        let ready = lines.get(7).is_some_and(|line| line.trim() == "ready");
        Ok(PidFile {
            pid,
            port,
            socket_dir,
            ready,
        })
    }
}

enum Readiness {
    Ready(PidFile),
    /// The pid file names a postmaster that is gone or a zombie.
    Dead(libc::pid_t),
    /// No pid file: the server stopped cleanly meanwhile.
    Stopped,
}

/// Waits until the pid file says `ready` and the socket accepts a connection;
/// a server found running may still be starting (started by hand, or racing).
fn wait_ready(layout: &Layout, timeout: Duration) -> Result<Readiness> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_problem = match PidFile::read(&layout.pid_file()) {
            Ok(pid) if !process_alive(pid.pid) => return Ok(Readiness::Dead(pid.pid)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Readiness::Stopped),
            Ok(pid) if pid.ready => {
                let socket = socket_path(
                    pid.socket_dir.as_deref().unwrap_or(&layout.socket_dir()),
                    pid.port,
                );
                match UnixStream::connect(&socket) {
                    Ok(_) => return Ok(Readiness::Ready(pid)),
                    Err(e) => format!("cannot connect to {}: {e}", socket.display()),
                }
            }
            Ok(_) => "the server is still starting".to_owned(),
            Err(e) => format!("cannot read postmaster.pid: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(LocalError::Cluster(format!(
                "the local cluster in {} did not become ready within {}s: {last_problem}; \
                 if no postgres process serves it, delete {}\nlast lines of {}:\n{}",
                layout.dir.display(),
                timeout.as_secs(),
                layout.pid_file().display(),
                layout.log_file().display(),
                tail(&read_from(&layout.log_file(), 0), 20)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` runs and is not a zombie; a zombie's socket is closed.
fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists; EPERM means it
    // does, under another user.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // Linux only; elsewhere a zombie counts as alive, which costs a timeout.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => true,
    }
}

fn wait_reaped(pid: libc::pid_t, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // SAFETY: as in `process_alive`.
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_server(layout: &Layout, runner: &Runner) -> Result<bool> {
    if !is_running(layout, runner)? {
        return Ok(false);
    }
    let mut cmd = runner.command("pg_ctl");
    cmd.arg("stop")
        .arg("-D")
        .arg(layout.data_dir())
        // Fast: roll back sessions instead of waiting for them; nothing
        // here is worth waiting for.
        .arg("-m")
        .arg("fast")
        .arg("-w")
        .arg("-t")
        .arg(PG_CTL_TIMEOUT_SECS)
        .current_dir(&layout.dir);
    tracing::info!(dir = %layout.dir.display(), "stopping the local postgresql cluster");
    let out = runner.run("pg_ctl", &mut cmd)?;
    if out.status.success() {
        return Ok(true);
    }
    // Stopped by someone else between our status and our stop.
    if !is_running(layout, runner)? {
        return Ok(false);
    }
    Err(LocalError::Cluster(format!(
        "pg_ctl stop failed ({}): {}",
        out.status,
        tail(&output_text(&out), 10)
    )))
}

/// An exclusive `flock` on `dir/.lock`, released when dropped (the fd closes).
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(path: &Path) -> Result<DirLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            // flock needs no write access; another user may own the file.
            .or_else(|_| File::open(path))
            .map_err(io_error(format!("opening lock file {}", path.display())))?;
        loop {
            // SAFETY: the fd is open for as long as `file` lives.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(DirLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(io_error(format!("locking {}", path.display()))(err));
            }
        }
    }
}

fn is_empty_or_absent(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_error(format!("reading {}", dir.display()))(e)),
    }
}

fn socket_path(socket_dir: &Path, port: u16) -> PathBuf {
    socket_dir.join(format!(".s.PGSQL.{port}"))
}

/// `name`, when PostgreSQL can take it as a database name: quoting handles
/// everything else, but not an empty name or a NUL.
fn database_name(name: &str) -> Result<&str> {
    if name.is_empty() || name.contains('\0') {
        return Err(LocalError::Config(format!(
            "invalid database name {name:?}: it must be non-empty and contain no NUL"
        )));
    }
    Ok(name)
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `"name"`: an SQL identifier in double quotes, quotes doubled. A copy of
/// slipway's own quoting (`db::sql`), which this crate cannot import.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `bytes` as lower-case hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    // A shorter file than before was truncated: read all of it.
    let offset = if offset > len { 0 } else { offset };
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_ok() {
        let _ = file.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        text.push('\n');
        text.push_str(&stdout);
    }
    text.trim().to_owned()
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> LocalError {
    let context = context.into();
    move |e| LocalError::Cluster(format!("{context}: {e}"))
}

/// The server's own words when there are some; `Display` of a
/// tokio-postgres error alone is just "db error".
fn error_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

fn db_error(context: &str, e: &tokio_postgres::Error) -> LocalError {
    LocalError::Database {
        context: context.to_owned(),
        message: error_message(e),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn url_encodes_the_socket_dir_so_tokio_postgres_reads_it_as_a_path() {
        let cluster = LocalCluster {
            dir: "/w/.slipway/local".into(),
            data_dir: "/w/.slipway/local/data".into(),
            socket_dir: "/w/.slipway/local/socket".into(),
            port: 54321,
            password: "secret".into(),
            runner: Runner {
                bin_dir: "/usr/lib/postgresql/15/bin".into(),
                run_as: None,
            },
        };
        let url = cluster.url("my db");
        assert_eq!(
            url,
            "postgresql://postgres@%2Fw%2F.slipway%2Flocal%2Fsocket:54321/my%20db"
        );
        let config = tokio_postgres::Config::from_str(&url).expect("url parses");
        assert_eq!(
            config.get_hosts(),
            &[tokio_postgres::config::Host::Unix(
                "/w/.slipway/local/socket".into()
            )]
        );
        assert_eq!(config.get_ports(), &[54321]);
        assert_eq!(config.get_dbname(), Some("my db"));
        assert_eq!(config.get_user(), Some("postgres"));
        assert!(!format!("{cluster:?}").contains("secret"));
    }

    #[test]
    fn long_dirs_get_a_short_stable_socket_dir() {
        let long = PathBuf::from(format!("/{}", "x".repeat(120)));
        let a = Layout::new(&long).socket_dir();
        assert!(
            a.to_string_lossy().starts_with("/tmp/slipway-"),
            "{}",
            a.display()
        );
        assert_eq!(a, Layout::new(&long).socket_dir());
        assert_eq!(
            Layout::new(Path::new("/w/l")).socket_dir(),
            PathBuf::from("/w/l/socket")
        );
    }

    #[test]
    fn identifiers_and_conf_strings_are_quoted() {
        assert_eq!(
            database_name("a\"b").ok().map(quote_identifier),
            Some("\"a\"\"b\"".to_owned())
        );
        assert!(database_name("").is_err());
        assert!(database_name("a\0b").is_err());
        assert_eq!(conf_quote("it's \\"), "'it''s \\\\'");
    }

    #[test]
    fn pid_file_lines_give_port_socket_and_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postmaster.pid");
        fs::write(
            &path,
            "123\n/d\n1700000000\n5433\n/s\n127.0.0.1\n  1 2\nready   \n",
        )
        .expect("write");
        let pid = PidFile::read(&path).expect("parses");
        assert_eq!(pid.port, 5433);
        assert_eq!(pid.socket_dir, Some(PathBuf::from("/s")));
        assert!(pid.ready);
    }
}
