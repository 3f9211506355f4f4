//! `CoordStore` and `CoordLog` for `SqliteStore`: each method is one transaction of `coord` (leases)
//! or `coord_log` (the rest); reads run on the read connection, writes through the
//! writer thread (group commit).

use super::{coord, coord_log, SqliteStore, E};
use crate::store::coord::*;
use crate::store::{NewTask, StoreError};
use std::time::Duration;

impl SqliteStore {
    /// Opens an existing store at the current schema version without the integrity
    /// check or migrations: for `borg hook` and `borg mcp`, which run for every tool
    /// call and must start fast. A missing file or another schema version is an error
    /// (the caller fails closed).
    ///
    /// Its connections commit with `synchronous=NORMAL`: in WAL mode a commit is then
    /// visible to every other connection at once and survives a crash of the process,
    /// but waits for no fsync (the next FULL commit of `borg run` makes it durable).
    /// What these helpers write (leases, activity, notes of running agents) lives with
    /// the attempts, which a power loss ends anyway; the claim table keeps FULL.
    pub fn open_light(path: &std::path::Path) -> Result<SqliteStore, StoreError> {
        open_light(path)
    }
}
/// Opens an existing, current store without the integrity check or migrations (the
/// helpers that run for every tool call: `borg hook`, `borg mcp`).
fn open_light(path: &std::path::Path) -> Result<SqliteStore, StoreError> {
    use rusqlite::{Connection, OpenFlags};
    let shown = path.display().to_string();
    let busy = super::DEFAULT_BUSY_TIMEOUT;
    let conv = |e: E| super::convert(e, &shown, busy);
    if !path.is_file() {
        return Err(StoreError::NotFound(format!("the store {shown}")));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open = || -> Result<Connection, StoreError> {
        let c = Connection::open_with_flags(path, flags).map_err(|e| conv(e.into()))?;
        super::setup(&c, &shown, busy, false).map_err(conv)?;
        c.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(|e| conv(e.into()))?;
        Ok(c)
    };
    let conn = open()?;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| conv(e.into()))?;
    if found != super::SCHEMA_VERSION {
        return Err(StoreError::Other(format!(
            "the store {shown} has schema version {found}, this borg expects {}; run this borg's `borg run` (or `borg status`) on it once",
            super::SCHEMA_VERSION
        )));
    }
    let wconn = open()?;
    let named = shown.clone();
    let writer = super::batch::Writer::start(
        wconn,
        move || super::enter(busy),
        move |e| super::convert(e, &named, busy),
    )
    .map_err(|e| StoreError::Other(format!("cannot start the writer of the store {shown}: {e}")))?;
    Ok(SqliteStore {
        path: path.to_path_buf(),
        busy,
        conn: std::sync::Mutex::new(conn),
        writer,
        reads: std::sync::atomic::AtomicU64::new(0),
    })
}

impl CoordStore for SqliteStore {
    fn lock_paths(
        &self,
        who: &Actor,
        req: &LockRequest,
        now_ms: i64,
    ) -> Result<LockOutcome, StoreError> {
        let (who, req) = (who.clone(), req.clone());
        self.write(move |tx| coord::lock_paths(tx, &who, &req, now_ms))
    }
    fn cancel_waits(&self, who: &Actor, paths: &[String]) -> Result<(), StoreError> {
        let (who, paths) = (who.clone(), paths.to_vec());
        self.write(move |tx| coord::drop_waits(tx, &who, &paths))
    }
    fn unlock_paths(
        &self,
        who: &Actor,
        paths: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (who, paths) = (who.clone(), paths.to_vec());
        self.write(move |tx| coord::unlock_paths(tx, &who, &paths, now_ms))
    }
    fn check_write(
        &self,
        who: &Actor,
        path: &str,
        auto: Option<(&str, Duration)>,
        now_ms: i64,
    ) -> Result<WriteCheck, StoreError> {
        match auto {
            None => self.read(|tx| coord::check_write(tx, who, path, None, now_ms)),
            Some((reason, ttl)) => {
                let (who, path, reason) = (who.clone(), path.to_string(), reason.to_string());
                self.write(move |tx| {
                    coord::check_write(tx, &who, &path, Some((&reason, ttl)), now_ms)
                })
            }
        }
    }
    fn leases(&self, now_ms: i64) -> Result<Vec<LeaseRow>, StoreError> {
        self.read(|tx| coord::all_leases(tx, now_ms))
    }
    fn drop_leases(&self, ids: &[i64], now_ms: i64) -> Result<usize, StoreError> {
        let ids = ids.to_vec();
        self.write(move |tx| coord::drop_leases(tx, &ids, now_ms))
    }
    fn record_violations(
        &self,
        who: &Actor,
        found: &[Violation],
        now_ms: i64,
    ) -> Result<Vec<ViolationRow>, StoreError> {
        let (who, found) = (who.clone(), found.to_vec());
        self.write(move |tx| coord_log::record_violations(tx, &who, &found, now_ms))
    }
    fn violations(&self, task: &str, fence: Option<i64>) -> Result<Vec<ViolationRow>, StoreError> {
        self.read(|tx| coord_log::violations(tx, task, fence))
    }
}

impl CoordLog for SqliteStore {
    fn log_decision(
        &self,
        who: Option<&Actor>,
        d: &NewDecision,
        now_ms: i64,
    ) -> Result<DecisionRow, StoreError> {
        let (who, d) = (who.cloned(), d.clone());
        self.write(move |tx| coord_log::log_decision(tx, who.as_ref(), &d, now_ms))
    }
    fn decisions(
        &self,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        self.read(|tx| coord_log::decisions(tx, category, None, limit))
    }
    fn decisions_of(&self, task: &str) -> Result<Vec<DecisionRow>, StoreError> {
        self.read(|tx| coord_log::decisions(tx, None, Some(task), usize::MAX))
    }
    fn send_message(
        &self,
        who: Option<&Actor>,
        m: &NewMessage,
        now_ms: i64,
    ) -> Result<MessageRow, StoreError> {
        let (who, m) = (who.cloned(), m.clone());
        self.write(move |tx| coord_log::send_message(tx, who.as_ref(), &m, now_ms))
    }
    fn unread_messages(
        &self,
        reader: &Reader,
        mark: bool,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        if !mark {
            return self.read(|tx| coord_log::unread(tx, reader, false, limit, now_ms));
        }
        let reader = reader.clone();
        self.write(move |tx| coord_log::unread(tx, &reader, true, limit, now_ms))
    }
    fn messages(&self, limit: usize) -> Result<Vec<MessageRow>, StoreError> {
        self.read(|tx| coord_log::messages(tx, limit))
    }
    fn message_counts(&self, task: &str) -> Result<(u64, u64), StoreError> {
        self.read(|tx| coord_log::message_counts(tx, task))
    }
    fn save_context(
        &self,
        who: &Actor,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (who, key, value) = (who.clone(), key.to_string(), value.to_string());
        self.write(move |tx| coord_log::save_context(tx, &who, &key, &value, now_ms))
    }
    fn context(&self, key: &str) -> Result<Option<ContextEntry>, StoreError> {
        self.read(|tx| coord_log::context(tx, key))
    }
    fn record_activity(
        &self,
        who: &Actor,
        a: &Activity,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (who, a) = (who.clone(), a.clone());
        self.write(move |tx| coord_log::record_activity(tx, &who, &a, lease, now_ms))
    }
    fn activities(&self) -> Result<Vec<ActivityRow>, StoreError> {
        self.read(coord_log::activities)
    }
    fn create_agent_task(
        &self,
        who: &Actor,
        task: &NewTask,
        max_per_run: u32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (who, task) = (who.clone(), task.clone());
        self.write(move |tx| coord_log::create_agent_task(tx, &who, &task, max_per_run, now_ms))
    }
    fn agent_tasks(&self, parent: &str) -> Result<Vec<String>, StoreError> {
        self.read(|tx| coord_log::agent_tasks(tx, parent))
    }
}
