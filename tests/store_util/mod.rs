//! Helpers shared by the store integration tests, and the two backends every store
//! test runs against: `conformance!` turns one test body into a test on SQLite (the
//! test's own name) and one on PostgreSQL (`NAME::postgres`), each on a fresh store.
#![allow(dead_code)]

#[path = "../support/pg.rs"]
pub mod pg;

use borg::outcome::Status;
use borg::store::postgres::PgStore;
use borg::store::sqlite::SqliteStore;
use borg::store::*;
use std::path::PathBuf;
use std::time::Duration;

/// One test body, two tests: `NAME` on SQLite and `NAME::postgres` on PostgreSQL.
/// The body gets the backend as `$b`.
#[macro_export]
macro_rules! conformance {
    ($(#[$m:meta])* fn $name:ident($b:ident) $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            $name::body(&$crate::store_util::Backend::Sqlite)
        }
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            pub(super) fn body($b: &$crate::store_util::Backend) $body
            $(#[$m])*
            #[test]
            fn postgres() {
                if $crate::store_util::pg::admin_url().is_some() {
                    body(&$crate::store_util::Backend::Postgres)
                }
            }
        }
    };
}

/// A store backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in a temp dir.
    Sqlite,
    /// A fresh database on the server of `BORG_TEST_PG_URL`.
    Postgres,
}

/// Where a test's store lives; dropping it removes it (the temp dir, the database).
pub struct TestDb {
    /// The backend.
    pub backend: Backend,
    /// The SQLite file.
    pub path: PathBuf,
    /// The PostgreSQL URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _db: Option<pg::PgDb>,
}

/// A store of either backend; derefs to the `Store` trait.
pub enum TestStore {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            TestStore::Sqlite(s) => s,
            TestStore::Postgres(s) => s,
        }
    }
}

impl TestStore {
    /// The backend's own consistency check (empty = sound).
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        match self {
            TestStore::Sqlite(s) => s.integrity_check(),
            TestStore::Postgres(s) => s.integrity_check(),
        }
    }
}

impl Backend {
    /// An empty place for a store (nothing opened yet).
    pub fn db(&self) -> TestDb {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                TestDb {
                    backend: *self,
                    path: dir.path().join("sub/borg.db"),
                    url: String::new(),
                    _dir: Some(dir),
                    _db: None,
                }
            }
            Backend::Postgres => {
                let db = pg::PgDb::create().expect("BORG_TEST_PG_URL");
                TestDb {
                    backend: *self,
                    path: PathBuf::new(),
                    url: db.url.clone(),
                    _dir: None,
                    _db: Some(db),
                }
            }
        }
    }

    /// A fresh store (the db must outlive the store).
    pub fn fresh(&self) -> (TestDb, TestStore) {
        let db = self.db();
        let s = db.open();
        (db, s)
    }
}

impl TestDb {
    /// An SQLite store file in `dir` (kept as long as this).
    pub fn sqlite_in(dir: tempfile::TempDir) -> TestDb {
        TestDb {
            backend: Backend::Sqlite,
            path: dir.path().join("borg.db"),
            url: String::new(),
            _dir: Some(dir),
            _db: None,
        }
    }

    /// The store's location as `--store` takes it: the file, or the URL.
    pub fn location(&self) -> String {
        match self.backend {
            Backend::Sqlite => self.path.display().to_string(),
            Backend::Postgres => self.url.clone(),
        }
    }

    /// Opens (another handle on) the store.
    pub fn open(&self) -> TestStore {
        match self.backend {
            Backend::Sqlite => TestStore::Sqlite(SqliteStore::open(&self.path).unwrap()),
            Backend::Postgres => TestStore::Postgres(PgStore::open(&self.url).unwrap()),
        }
    }

    /// Rows of the claim-scope table as `owner:task`, sorted.
    pub fn scope_rows(&self) -> Vec<String> {
        let q = "SELECT owner || ':' || task FROM run_scope ORDER BY 1";
        match self.backend {
            Backend::Sqlite => {
                let c = rusqlite::Connection::open(&self.path).unwrap();
                let mut st = c.prepare(q).unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.collect::<Result<_, _>>().unwrap()
            }
            Backend::Postgres => pg::query(&self.url, q),
        }
    }
}

/// A fresh SQLite store in a temp dir (the dir must outlive the store).
pub fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sub/borg.db")).unwrap();
    (dir, store)
}

/// A task definition.
pub fn nt(id: &str, role: &str, priority: i64, order: i64, deps: &[&str]) -> NewTask {
    NewTask {
        id: id.into(),
        role: role.into(),
        priority,
        order,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        instance: None,
        max_attempts: 3,
        spec: serde_json::json!({ "prompt": format!("do {id}") }),
        hash: format!("h-{id}"),
        awaits_person: false,
    }
}

/// A claim request for `roles` at `now`, lease 60 s.
pub fn req(owner: &str, roles: &[&str], now: i64) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        idle_instances: vec![],
        reuse: vec![],
        only: vec![],
        scoped: false,
        lease: Duration::from_secs(60),
        now_ms: now,
    }
}

/// A finish with the given disposition.
pub fn fin(status: Status, disposition: Disposition, now: i64) -> AttemptFinish {
    AttemptFinish {
        status,
        record: serde_json::json!({ "status": status.as_str() }),
        disposition,
        new_tasks: vec![],
        converted_handoffs: vec![],
        cost_usd: 0.01,
        now_ms: now,
    }
}

/// A finish whose status is also the task's final status (failed, timed out ...).
pub fn fin_final(status: Status, now: i64) -> AttemptFinish {
    fin(status, Disposition::Final(status), now)
}

/// A finish that puts the task back to be retried from `not_before_ms`, the attempt
/// counted against `max_attempts` or not (a park).
pub fn fin_retry(status: Status, not_before_ms: i64, counts: bool, now: i64) -> AttemptFinish {
    fin(
        status,
        Disposition::Retry {
            not_before_ms,
            counts,
        },
        now,
    )
}

/// Succeeded finish.
pub fn ok(now: i64) -> AttemptFinish {
    fin(Status::Succeeded, Disposition::Succeeded, now)
}

/// An attempt start record.
pub fn start(instance: &str, pid: i64, now: i64) -> AttemptStart {
    AttemptStart {
        instance: instance.into(),
        uid: format!("uid-{pid}"),
        shim_pid: pid - 1,
        pid,
        pgid: pid,
        start_time: 12345,
        boot_id: "boot".into(),
        stdout_log: "out.jsonl".into(),
        stderr_log: "err.log".into(),
        resume_session: None,
        now_ms: now,
    }
}

/// Anything the helpers can use as a store: a test store, either backend's store, an
/// `Arc` of one.
pub trait AsStore {
    /// The store.
    fn st(&self) -> &dyn Store;
}

impl AsStore for TestStore {
    fn st(&self) -> &dyn Store {
        &**self
    }
}

impl AsStore for SqliteStore {
    fn st(&self) -> &dyn Store {
        self
    }
}

impl AsStore for PgStore {
    fn st(&self) -> &dyn Store {
        self
    }
}

impl<T: AsStore + ?Sized> AsStore for std::sync::Arc<T> {
    fn st(&self) -> &dyn Store {
        (**self).st()
    }
}

/// Claims, or panics with a message.
pub fn claim(s: &(impl AsStore + ?Sized), r: &ClaimRequest) -> Claim {
    s.st().claim_next(r).unwrap().expect("a claimable task")
}

/// Claimed id or None.
pub fn claim_id(s: &(impl AsStore + ?Sized), r: &ClaimRequest) -> Option<String> {
    s.st().claim_next(r).unwrap().map(|c| c.task.id)
}

/// Status of a task.
pub fn status(s: &(impl AsStore + ?Sized), id: &str) -> Status {
    s.st().task(id).unwrap().unwrap().status
}
