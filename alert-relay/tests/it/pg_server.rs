//! A PostgreSQL cluster of a test's own (Debian's postgresql, installed by the test command)
//! on a free loopback port, for tests that stop and start the server or configure it (TLS).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A cluster in a temporary directory; stopped when dropped.
pub struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Server options (`-c name=value ...`) added at every start.
    options: String,
}

fn as_owner(program: &Path) -> Command {
    // initdb refuses root: as root, the cluster belongs to the postgres user.
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Server {
    /// A new cluster, running, that trusts every local connection.
    pub fn start() -> Server {
        let server = Server::init();
        server.up();
        server
    }

    /// A new cluster, not running yet: configure it ([`Server::write_private`],
    /// [`Server::with_options`]), then [`Server::up`].
    pub fn init() -> Server {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql in /usr/lib/postgresql (scripts/test installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("tempdir");
        give_to_owner(dir.path());
        let data = dir.path().join("data");
        let ok = as_owner(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "relay", "--auth=trust", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        Server {
            bin,
            dir,
            port,
            options: String::new(),
        }
    }

    /// Adds server options (`-c name=value ...`) to every start.
    pub fn with_options(mut self, options: &str) -> Server {
        self.options = format!("{} {options}", self.options);
        self
    }

    /// Writes `name` (relative to the cluster's directory; `data/pg_hba.conf` is the data
    /// directory's) readable by the server's user alone, as PostgreSQL wants of a key file.
    pub fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write a file of the cluster");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        give_to_owner(&path);
        path
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn up(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off {}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        let log = self.dir.path().join("server.log");
        let started = self.pg_ctl(&["-w", "-o", &options, "-l", &log.to_string_lossy(), "start"]);
        assert!(
            started,
            "pg_ctl start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn down(&self) {
        assert!(self.pg_ctl(&["-w", "-m", "fast", "stop"]), "pg_ctl stop");
    }

    /// Runs `sql` as the superuser over the cluster's unix socket (which trusts it).
    pub fn psql(&self, sql: &str) {
        let out = as_owner(&self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "relay",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("postgres://relay@127.0.0.1:{}/postgres", self.port)
    }
}

/// As root, the server runs as postgres: its directory and files are that user's.
fn give_to_owner(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown {} to postgres", path.display());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}
