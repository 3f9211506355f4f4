//! PostgreSQL for the tests: a fresh database per test on the shared throwaway server
//! that `scripts/with-postgres.sh` starts (`BORG_TEST_PG_URL`), and private servers a
//! test can stop and start again (initdb into a temporary folder, loopback only, run
//! as an unprivileged user when the tests run as root).
//!
//! Without `BORG_TEST_PG_URL` the PostgreSQL halves of the tests say so and pass,
//! unless `BORG_REQUIRE_PG=1` (CI), where a missing database is a failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a missing PostgreSQL is a failure (CI).
pub fn required() -> bool {
    std::env::var("BORG_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// The shared server's URL (a superuser on its `postgres` database), or None (and a
/// note) when the tests run without one.
pub fn admin_url() -> Option<String> {
    match std::env::var("BORG_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if required() => panic!(
            "BORG_TEST_PG_URL is not set but BORG_REQUIRE_PG=1: run the tests through scripts/with-postgres.sh"
        ),
        _ => {
            eprintln!("note: BORG_TEST_PG_URL is not set; the PostgreSQL half of this test did not run (use scripts/with-postgres.sh)");
            None
        }
    }
}

/// Runs SQL statements on `url`, from outside any runtime.
pub fn sql(url: &str, stmts: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let r = client.batch_execute(stmts).await.map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        r
    })
}

/// The first column of every row of a query on `url`, as text.
pub fn query(url: &str, q: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let rows = client.simple_query(q).await.unwrap();
        drop(client);
        let _ = driver.await;
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
                _ => None,
            })
            .collect()
    })
}

/// `url` with its database name replaced.
pub fn with_db(url: &str, db: &str) -> String {
    let (head, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let after_scheme = head.find("://").map(|i| i + 3).unwrap_or(0);
    match head[after_scheme..].find('/') {
        Some(slash) => format!("{}/{db}{query}", &head[..after_scheme + slash]),
        None => format!("{head}/{db}{query}"),
    }
}

/// A database of its own on the shared server, dropped when this goes out of scope.
pub struct PgDb {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    admin: String,
}

impl PgDb {
    /// A fresh empty database, or None without a server (see `admin_url`).
    pub fn create() -> Option<PgDb> {
        let admin = admin_url()?;
        Some(Self::create_on(&admin))
    }

    /// A fresh empty database on the server of `admin`.
    pub fn create_on(admin: &str) -> PgDb {
        let name = format!(
            "borg_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sql(admin, &format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        PgDb {
            url: with_db(admin, &name),
            name,
            admin: admin.to_string(),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The folder of the PostgreSQL server binaries.
pub fn bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("BORG_TEST_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    for d in ["/usr/local/bin", "/usr/bin"] {
        if Path::new(d).join("initdb").exists() && Path::new(d).join("pg_ctl").exists() {
            return Some(PathBuf::from(d));
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// A PostgreSQL server of the test's own, which it may stop and start again (same
/// data, same port). Stopped and deleted when dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    user: Option<String>,
    running: bool,
}

impl PgServer {
    /// Initialises and starts a server, or None (and a note) when there are no
    /// PostgreSQL binaries and PostgreSQL is not required.
    pub fn start() -> Option<PgServer> {
        let Some(bin) = bin_dir() else {
            assert!(!required(), "no PostgreSQL server binaries (initdb) found");
            eprintln!("note: no PostgreSQL binaries; this test did not run");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("borg-pgsrv.")
            .tempdir_in("/tmp")
            .unwrap();
        let user = nix::unistd::geteuid().is_root().then(|| {
            if nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .is_some()
            {
                "postgres".to_string()
            } else {
                "nobody".to_string()
            }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = PgServer {
            dir,
            bin,
            port,
            user,
            running: false,
        };
        s.init();
        s.resume();
        Some(s)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn init(&self) {
        std::fs::create_dir_all(self.data()).unwrap();
        if let Some(u) = &self.user {
            let st = Command::new("chown")
                .args(["-R", u])
                .arg(self.dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let out = self
            .cmd("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "borg", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of its `postgres` database (user borg, no password).
    pub fn admin_url(&self) -> String {
        format!("postgres://borg@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn resume(&mut self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    /// Stops it (fast shutdown: connections are cut) and waits until it is gone.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output();
        let t0 = Instant::now();
        while self.data().join("postmaster.pid").exists() && t0.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.running = false;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
