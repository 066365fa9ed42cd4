//! A PostgreSQL server from Debian's package, in a temporary directory, on loopback.
//!
//! PostgreSQL refuses to run as root; as root the server runs as the `postgres` user the
//! package creates (through `runuser`). A server is stopped when dropped; the one shared by a
//! test binary ([`Postgres::shared`]) is stopped by a watchdog once the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL server.
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    owned: bool,
    next_db: AtomicU32,
}

impl Postgres {
    /// Starts a server with a fresh cluster; it stops when dropped.
    pub fn start() -> Self {
        let mut pg = Self::boot(None);
        pg.owned = true;
        pg
    }

    /// One server for the whole test binary, stopped after the process exits.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Self::boot(Some(std::process::id())))
    }

    fn boot(watch_pid: Option<u32>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("countersign-pg-")
            .tempdir()
            .expect("temporary directory")
            .keep();
        let data = dir.join("data");
        let port = crate::free_port();
        let as_root = is_root();
        if as_root {
            // The server runs as `postgres`: it must be able to reach and own its directory.
            run(Command::new("chmod").arg("755").arg(&dir));
            run(Command::new("chown").arg("postgres:").arg(&dir));
        }
        run(pg(as_root, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C.UTF-8"]));
        run(pg(as_root, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
                dir.display()
            ))
            .arg("start"));
        if let Some(pid) = watch_pid {
            // Stops the server and removes its files once the test process is gone. The loop
            // runs as us (only the owner may probe the test process); pg_ctl as the server's.
            let pg_ctl = Path::new(PG_BIN).join("pg_ctl");
            let stop = if as_root {
                format!("runuser -u postgres -- {}", pg_ctl.display())
            } else {
                pg_ctl.display().to_string()
            };
            let script = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D {} stop -m immediate >/dev/null 2>&1; rm -rf {}",
                data.display(),
                dir.display()
            );
            // Never waited on, on purpose: it must outlive this process (init adopts it).
            #[allow(clippy::zombie_processes)]
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("watchdog");
        }
        Self {
            dir,
            port,
            owned: false,
            next_db: AtomicU32::new(0),
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for the `postgres` database.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::SeqCst));
        run(Command::new(Path::new(PG_BIN).join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name));
        self.url(&name)
    }

    /// Runs `sql` on the database at `url` as the superuser with `psql`; its unaligned output.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(Path::new(PG_BIN).join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A database seeded as a brokered connection's tests want it: `customers` (with PII in
    /// `email` and `phone`), `orders`, and a minting role `minter_<name>` that is not a
    /// superuser, holding what it may hand out. Returns the superuser's URL and the minting
    /// role's.
    pub fn crm_database(&self, name: &str) -> (String, String) {
        let url = self.fresh_database();
        let minter = format!("minter_{name}");
        self.psql(
            &url,
            &format!(
                "CREATE TABLE customers (id int PRIMARY KEY, email text, phone text, plan text);
                 CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total int);
                 CREATE TABLE api_keys (id int PRIMARY KEY, secret text);
                 INSERT INTO customers VALUES
                   (1, 'ada@example.com', '+44 1', 'free'),
                   (2, 'bo@example.com', '+44 2', 'free'),
                   (3, 'cy@example.com', '+44 3', 'pro');
                 INSERT INTO orders VALUES (10, 1, 5), (11, 3, 7);
                 CREATE ROLE {minter} LOGIN PASSWORD 'minter' CREATEROLE;
                 GRANT USAGE ON SCHEMA public TO {minter} WITH GRANT OPTION;
                 GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders, api_keys TO {minter} WITH GRANT OPTION;"
            ),
        );
        let minting = url.replacen("postgres@", &format!("{minter}:minter@"), 1);
        (url, minting)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill(&self) {
        let _ = pg(is_root(), "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts a stopped server again on the same port and data.
    pub fn restart(&self) {
        run(pg(is_root(), "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start"));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.owned {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL program, run as `postgres` when we are root.
fn pg(as_root: bool, program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(command: &mut Command) {
    let out = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{command:?}: {e} (apt install postgresql; scripts/setup.sh does)")
    });
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
