//! The SQLite backend of the store: WAL, synchronous=FULL, every write in
//! `BEGIN IMMEDIATE`, a busy timeout on every connection, schema migrations by
//! `PRAGMA user_version`.
//!
//! Layout: this file opens the database and maps errors; `schema` the migration steps;
//! `netfs` refuses network filesystems; `read` turns rows into the store's types; `claims`
//! the claim/lease/attempt life cycle; `release` hands back dead owners' and expired
//! claims; `tasks` task-list sync, retry and skip; `handoffs` the handoff life cycle;
//! `misc` owners, instances, fleet values; `coord*` coordination; `view` the fleet view;
//! `agents` borg serve's outside agents; `merge` the merge queue and gates' baselines.
//!
//! Every read runs in one transaction; every write in a `BEGIN IMMEDIATE` transaction (no
//! lock upgrade that could fail with SQLITE_BUSY), grouped with the writes queued meanwhile
//! into one commit (`batch`). Errors are converted where the path is known.

mod agents;
mod batch;
mod claims;
mod coord;
mod coord_impl;
mod coord_log;
mod git;
mod handoffs;
mod merge;
mod misc;
mod netfs;
mod read;
mod release;
mod schema;
mod sessions;
mod tasks;
mod view;

use super::*;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use schema::SCHEMA_VERSION;

/// Default busy timeout: long enough for another borg's write transaction (a few ms)
/// even under heavy fsync load, short enough that a stuck lock is reported.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite store: a read connection behind a mutex (so the store is `Send + Sync`)
/// and a write connection owned by the store's writer thread (group commit, see
/// `batch`). Several processes (or several `SqliteStore`s) may open the same file.
pub struct SqliteStore {
    path: PathBuf,
    busy: Duration,
    conn: Mutex<Connection>,
    /// Every write goes through it (see `batch`).
    writer: batch::Writer,
    reads: std::sync::atomic::AtomicU64,
}

/// Internal error: either a database error (converted with the path at the boundary)
/// or an already-formed store error (stale claim, not found ...).
#[derive(Debug)]
pub(crate) enum E {
    /// From rusqlite.
    Db(rusqlite::Error),
    /// Already a store error.
    Store(StoreError),
    /// A JSON value that could not be (de)serialised.
    Json(String),
}

impl From<rusqlite::Error> for E {
    fn from(e: rusqlite::Error) -> E {
        E::Db(e)
    }
}

impl From<StoreError> for E {
    fn from(e: StoreError) -> E {
        E::Store(e)
    }
}

impl From<serde_json::Error> for E {
    fn from(e: serde_json::Error) -> E {
        E::Json(e.to_string())
    }
}

/// Result of the internal functions.
pub(crate) type R<T> = Result<T, E>;

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`, with the default
    /// busy timeout of 10 s.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// Opens the store with a given busy timeout: how long a statement waits for another
    /// connection's lock before failing with `StoreError::Locked`.
    ///
    /// Creates parent directories, refuses network filesystems (unless
    /// `BORG_ALLOW_NETWORK_FS=1`), sets the pragmas, runs `PRAGMA quick_check` and
    /// migrates the schema to [`SCHEMA_VERSION`].
    pub fn open_with(path: &Path, busy: Duration) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Check the filesystem before creating anything on it: the nearest existing
        // ancestor is on the same filesystem as the directories about to be made.
        let existing = parent
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"));
        netfs::check(existing, &shown)?;
        std::fs::create_dir_all(&parent).map_err(|e| {
            StoreError::Other(format!(
                "cannot create the directory {} for the store {shown}: {e}",
                parent.display()
            ))
        })?;
        let conv = |e: E| convert(e, &shown, busy);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| conv(e.into()))?;
        setup(&conn, &shown, busy, true).map_err(conv)?;
        schema::migrate(&mut conn, &shown).map_err(conv)?;
        // The write connection is opened once the file is known good and migrated.
        let wconn = Connection::open_with_flags(path, flags).map_err(|e| conv(e.into()))?;
        setup(&wconn, &shown, busy, false).map_err(conv)?;
        let named = shown.clone();
        let writer = batch::Writer::start(
            wconn,
            move || enter(busy),
            move |e| convert(e, &named, busy),
        )
        .map_err(|e| {
            StoreError::Other(format!("cannot start the writer of the store {shown}: {e}"))
        })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            busy,
            conn: Mutex::new(conn),
            writer,
            reads: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `PRAGMA integrity_check` (full, slower than the quick check done on open)
    /// and checks the store's own invariant, the trigger-kept count of unmet
    /// dependencies; returns the problems found, empty when the file is sound.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut problems = pragma_problems(c, "integrity_check")?;
            let mut st = c.prepare(
                "SELECT id, unmet, (SELECT count(*) FROM task_deps d LEFT JOIN tasks p ON p.id = d.dep
                                    WHERE d.task = t.id AND (p.status IS NULL OR p.status <> 'succeeded'))
                 FROM tasks t ORDER BY id",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let (id, kept, truth): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                if kept != truth {
                    problems.push(format!(
                        "task {id}: {kept} unmet dependencies recorded, {truth} in fact"
                    ));
                }
            }
            Ok(problems)
        })
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, grouped with the writes that queue
    /// up meanwhile (one commit, one fsync for all of them; see `batch`). `f`'s changes
    /// are kept on Ok and rolled back on Err; the call returns once they are durable.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> R<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot = Arc::new(batch::TypedSlot::<T>::new());
        let mine = slot.clone();
        let work: batch::Work = Box::new(move |tx, convert| match f(tx) {
            Ok(v) => {
                mine.set(Ok(v));
                true
            }
            Err(e) => {
                mine.set(Err(convert(e)));
                false
            }
        });
        let job = batch::Job {
            work,
            slot: slot.clone(),
        };
        if !self.writer.submit(job) {
            return Err(StoreError::Other(format!(
                "the writer of the store {} has stopped",
                self.path.display()
            )));
        }
        slot.wait()
    }

    /// Runs `f` in a deferred (read) transaction, so multi-statement reads see one
    /// snapshot.
    fn read<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> R<T>) -> Result<T, StoreError> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        enter(self.busy);
        let res = (|| {
            let tx = guard.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        res.map_err(|e| self.convert(e))
    }

    fn convert(&self, e: E) -> StoreError {
        convert(e, &self.path.display().to_string(), self.busy)
    }
}

thread_local! {
    /// Busy timeout of the connection this thread is using now, and when the current
    /// wait for a lock began. A thread-local because SQLite's busy handler is a plain
    /// function; a connection is only ever used by the thread holding its mutex, which
    /// sets its timeout first (`enter`).
    static BUSY: Cell<(Duration, Option<Instant>)> = const { Cell::new((DEFAULT_BUSY_TIMEOUT, None)) };
}

/// The busy handler: wait up to the busy timeout for another connection's lock, polling
/// every 0.1–1 ms.
///
/// Why not SQLite's own `busy_timeout` handler: it backs off to sleeps of up to 100 ms,
/// so under contention a waiter keeps waking up after the lock was taken again by
/// someone else; with 8 writers on one file that gave claim latencies of seconds at the
/// tail. Short, jittered polls keep the same timeout semantics with a far shorter tail.
fn busy_handler(attempt: i32) -> bool {
    BUSY.with(|b| {
        let (limit, began) = b.get();
        let began = match began {
            Some(t) if attempt > 0 => t,
            _ => {
                let now = Instant::now();
                b.set((limit, Some(now)));
                now
            }
        };
        if began.elapsed() >= limit {
            return false;
        }
        let us = rand::Rng::gen_range(&mut rand::thread_rng(), 100..1000);
        std::thread::sleep(Duration::from_micros(us));
        true
    })
}

/// Makes `busy` the timeout for the connection about to be used on this thread.
fn enter(busy: Duration) {
    BUSY.with(|b| b.set((busy, None)));
}

/// Pragmas every connection needs, readers included: a busy timeout first (so even the
/// journal-mode switch waits for other openers), WAL, FULL sync, foreign keys.
/// `check` runs `PRAGMA quick_check` (once per store is enough).
fn setup(conn: &Connection, shown: &str, busy: Duration, check: bool) -> R<()> {
    enter(busy);
    conn.busy_handler(Some(busy_handler))?;
    // journal_mode returns the resulting mode as a row; a text file fails here with
    // SQLITE_NOTADB, which `convert` reports as Corrupt.
    // SQLite does not call the busy handler when the journal-mode switch finds another
    // connection switching or creating the same fresh file: it fails at once with
    // SQLITE_BUSY. Retry it ourselves within the busy timeout.
    let began = Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && began.elapsed() < busy =>
            {
                let us = rand::Rng::gen_range(&mut rand::thread_rng(), 500..5000);
                std::thread::sleep(Duration::from_micros(us));
            }
            r => break r?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(E::Store(StoreError::Other(format!(
            "could not switch the store to WAL mode (got {mode})"
        ))));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    // Every statement of an attempt's life cycle stays prepared (see `read::exec`).
    conn.set_prepared_statement_cache_capacity(64);
    if !check {
        return Ok(());
    }
    let problems = pragma_problems(conn, "quick_check")?;
    if !problems.is_empty() {
        return Err(E::Store(StoreError::Corrupt {
            path: shown.to_string(),
            message: problems.join("; "),
        }));
    }
    Ok(())
}

/// The rows of an integrity pragma (`quick_check`, `integrity_check`) other than "ok".
fn pragma_problems(conn: &Connection, pragma: &str) -> R<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA {pragma}"))?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

/// Maps an internal error to a `StoreError` naming the database file.
fn convert(e: E, path: &str, busy: Duration) -> StoreError {
    match e {
        E::Store(s) => s,
        E::Json(m) => StoreError::Other(format!("bad JSON in the store {path}: {m}")),
        E::Db(err) => match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Locked {
                path: path.to_string(),
                secs: busy.as_secs_f64().ceil() as u64,
            },
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt {
                    path: path.to_string(),
                    message: err.to_string(),
                }
            }
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(format!(
                "the store {path} refused a write (constraint): {err}"
            )),
            Some(ErrorCode::CannotOpen) => {
                StoreError::Other(format!("cannot open the store {path}: {err}"))
            }
            Some(ErrorCode::ReadOnly) => {
                StoreError::Other(format!("the store {path} is read-only: {err}"))
            }
            Some(ErrorCode::DiskFull) => {
                StoreError::Other(format!("the disk holding the store {path} is full: {err}"))
            }
            _ => StoreError::Other(format!("{path}: {err}")),
        },
    }
}

impl Store for SqliteStore {
    fn register_owner(&self, owner: &OwnerInfo) -> Result<(), StoreError> {
        let owner = owner.clone();
        self.write(move |tx| misc::register_owner(tx, &owner))
    }
    fn heartbeat_owner(&self, owner: &str, now_ms: i64) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.write(move |tx| misc::heartbeat_owner(tx, &owner, now_ms))
    }
    fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        self.read(misc::owners)
    }
    fn release_owner(&self, owner: &str, now_ms: i64) -> Result<Vec<AttemptRow>, StoreError> {
        let owner = owner.to_string();
        self.write(move |tx| release::release_owner(tx, &owner, now_ms))
    }
    fn release_expired(&self, now_ms: i64) -> Result<Vec<AttemptRow>, StoreError> {
        self.write(move |tx| release::release_expired(tx, now_ms))
    }
    fn sync_tasks(&self, list: &[NewTask], now_ms: i64) -> Result<SyncReport, StoreError> {
        let list = list.to_vec();
        self.write(move |tx| tasks::sync_tasks(tx, &list, now_ms))
    }
    fn add_scope(&self, owner: &str, tasks: &[String]) -> Result<(), StoreError> {
        let (owner, tasks) = (owner.to_string(), tasks.to_vec());
        self.write(move |tx| claims::add_scope(tx, &owner, &tasks))
    }
    fn claim_next(&self, req: &ClaimRequest) -> Result<Option<Claim>, StoreError> {
        let req = req.clone();
        self.write(move |tx| claims::claim_next(tx, &req))
    }
    fn heartbeat(
        &self,
        token: &ClaimToken,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let token = token.clone();
        self.write(move |tx| claims::heartbeat(tx, &token, lease, now_ms))
    }
    fn start_attempt(&self, token: &ClaimToken, start: &AttemptStart) -> Result<(), StoreError> {
        let (token, start) = (token.clone(), start.clone());
        self.write(move |tx| claims::start_attempt(tx, &token, &start))
    }
    fn finish_attempt(&self, token: &ClaimToken, finish: &AttemptFinish) -> Result<(), StoreError> {
        let (token, finish) = (token.clone(), finish.clone());
        self.write(move |tx| claims::finish_attempt(tx, &token, &finish))
    }
    fn skip_tasks(&self, ids: &[String], reason: &str, now_ms: i64) -> Result<(), StoreError> {
        let (ids, reason) = (ids.to_vec(), reason.to_string());
        self.write(move |tx| tasks::skip_tasks(tx, &ids, &reason, now_ms))
    }
    fn request_handoff(
        &self,
        token: &ClaimToken,
        from_instance: Option<&str>,
        req: &HandoffRequest,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let (token, from, req) = (token.clone(), from_instance.map(String::from), req.clone());
        self.write(move |tx| handoffs::request_handoff(tx, &token, from.as_deref(), &req, now_ms))
    }
    fn handoffs(&self, task: Option<&str>) -> Result<Vec<HandoffRow>, StoreError> {
        self.read(|tx| read::handoffs(tx, task))
    }
    fn accept_handoff(&self, id: i64, now_ms: i64) -> Result<HandoffRow, StoreError> {
        self.write(move |tx| handoffs::accept_handoff(tx, id, now_ms))
    }
    fn reject_handoff(&self, id: i64, reason: &str, now_ms: i64) -> Result<HandoffRow, StoreError> {
        let reason = reason.to_string();
        self.write(move |tx| handoffs::reject_handoff(tx, id, &reason, now_ms))
    }
    fn retry_task(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |tx| tasks::retry_task(tx, &id, now_ms))
    }
    fn tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        self.read(read::tasks)
    }
    fn statuses(&self) -> Result<Vec<(String, Status)>, StoreError> {
        self.read(|tx| {
            let mut st = tx.prepare_cached("SELECT id, status FROM tasks ORDER BY ord, id")?;
            let mut rows = st.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let status: String = r.get(1)?;
                out.push((r.get(0)?, Status::parse(&status).unwrap_or(Status::Pending)));
            }
            Ok(out)
        })
    }
    fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        self.read(|tx| read::task(tx, id))
    }
    fn attempts(&self, task: &str) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(|tx| read::attempts(tx, Some(task)))
    }
    fn running_attempts(&self) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(|tx| read::attempts(tx, None))
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.read(|tx| read::events_since(tx, after, limit))
    }
    fn last_event_id(&self) -> Result<i64, StoreError> {
        self.read(|tx| {
            let mut st = tx.prepare_cached("SELECT coalesce(max(id), 0) FROM events")?;
            Ok(st.query_row([], |r| r.get(0))?)
        })
    }
    fn upsert_instance(&self, row: &InstanceRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.write(move |tx| misc::upsert_instance(tx, &row))
    }
    fn acquire_instance(&self, row: &InstanceRow) -> Result<bool, StoreError> {
        let row = row.clone();
        self.write(move |tx| misc::acquire_instance(tx, &row))
    }
    fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.read(misc::instances)
    }
    fn remove_instance(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |tx| misc::remove_instance(tx, &id))
    }
    fn set_fleet(
        &self,
        key: &str,
        value: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.clone());
        self.write(move |tx| misc::set_fleet(tx, &key, &value, now_ms))
    }
    fn fleet(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.read(|tx| misc::fleet(tx, key))
    }
}
