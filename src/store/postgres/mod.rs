//! The PostgreSQL backend of the store, for a fleet spread over several hosts: the same
//! `Store` trait, the same semantics and error texts as the SQLite store, over a pool
//! of connections (`deadpool-postgres` over `tokio-postgres`).
//!
//! Layout: this file opens the store (URL, migration, first connection) and holds the
//! `PgStore`; `engine` is the client's own thread and runtime, the pool, and the
//! retry of calls that lost their connection; `errors` classifies failures and words
//! them; `git` is the git-mode capability (`GitStore`); `schema` is the versioned
//! migrations; `read` turns rows into the store's
//! types; `claims`, `release`, `tasks`, `handoffs` and `misc` are the SQLite store's
//! files of the same names, in PostgreSQL; `fast` is the claim, start and finish of
//! the common case as one statement (one round trip) each, pipelined on the one
//! connection of `hot`; `listen` turns NOTIFY into change notes;
//! `api` is the `Store` impl, `view` its whole-fleet view and sessions; `agents` the
//! `AgentStore` impl (outside agents of `borg serve`).
//!
//! Differences that do not change semantics: claims lock their row with `FOR UPDATE
//! SKIP LOCKED` instead of SQLite's single writer; every call is one transaction at
//! READ COMMITTED (reads: one REPEATABLE READ snapshot), with deadlocks retried; time
//! is the caller's `now_ms`, as for SQLite, so the hosts' clocks must agree to well
//! within a lease (NTP does that).

mod agents;
mod api;
mod claims;
mod coord;
mod coord_api;
mod coord_log;
mod coord_work;
mod engine;
mod errors;
mod fast;
mod git;
mod handoffs;
mod hot;
mod listen;
mod merge;
mod misc;
mod read;
mod release;
mod schema;
mod tasks;
mod view;

use crate::store::StoreError;
use engine::Engine;
use std::str::FromStr;
use std::time::Duration;

pub use schema::{CHANNEL, SCHEMA_VERSION};

/// How long a call keeps trying to reach a server that went away before it reports
/// the store unreachable (the caller decides what a pause means for it).
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(5);

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store. Several processes on several hosts may open the same database.
pub struct PgStore {
    engine: Engine,
    config: tokio_postgres::Config,
    notes: std::sync::Mutex<Option<tokio::sync::broadcast::Sender<String>>>,
}

/// Whether `s` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// The URL with its password (in the authority or as a `password=` parameter)
/// replaced by `***`: what borg shows and logs.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let (a, b) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
                out.replace_range(a..b, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", parts.join("&"));
    }
    out
}

impl PgStore {
    /// Opens the store at `url` (creating and migrating its tables if needed), with
    /// the default retry window.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        Self::open_with(url, DEFAULT_RETRY_FOR)
    }

    /// Opens the store; `retry_for` is how long a call keeps retrying a lost
    /// connection. The first connection is not retried: a wrong host, port, user,
    /// password or database, another program's database and a newer schema are
    /// reported at once (`Unreachable`, `Refused`, `Corrupt`, `NewerSchema`).
    pub fn open_with(url: &str, retry_for: Duration) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let config = config_of(url, &shown)?;
        let engine = Engine::start(config.clone(), shown.clone(), retry_for, false)?;
        let cfg = config.clone();
        engine.block(async move {
            let (mut client, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| errors::E::Db(e).into_store(&shown))?;
            let driver = tokio::spawn(conn);
            let res = schema::migrate(&mut client, &shown).await;
            drop(client);
            let _ = driver.await;
            res.map_err(|e| e.into_store(&shown))
        })?;
        // One pooled connection now: the first claim need not pay for connecting.
        let pool = engine.pool().clone();
        let _ = engine.block(async move { Ok(pool.get().await.is_ok()) });
        Ok(PgStore {
            engine,
            config,
            notes: std::sync::Mutex::new(None),
        })
    }

    /// Opens a store that a `borg run` or `borg worker` of this same program already
    /// opened (and migrated), for the helpers claude starts per tool call or per child
    /// (`borg hook`, `borg mcp`): no migration check and its advisory lock, no
    /// connection made ahead, a single-threaded client with at most two connections.
    /// The first call connects; a server that cannot be reached fails that call with
    /// the same errors as [`PgStore::open`] (`Unreachable`, `Refused`).
    pub fn open_light(url: &str) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let config = config_of(url, &shown)?;
        let engine = Engine::start(config.clone(), shown, DEFAULT_RETRY_FOR, true)?;
        Ok(PgStore {
            engine,
            config,
            notes: std::sync::Mutex::new(None),
        })
    }

    /// The URL as shown to people (no password).
    pub fn shown(&self) -> &str {
        &self.engine.shown
    }

    /// Checks the store's invariants the schema cannot state; returns the problems
    /// found, empty when the tables are consistent.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.engine.read(|tx| {
            Box::pin(async move {
                let mut problems = Vec::new();
                let bad = read::rows(
                    tx,
                    "SELECT a.task, a.attempt FROM attempts a LEFT JOIN tasks t ON t.id = a.task
                     WHERE a.status = 'running'
                       AND (t.status IS DISTINCT FROM 'running' OR t.fence <> a.fence)
                     ORDER BY 1, 2",
                    &[],
                )
                .await?;
                for r in bad {
                    let (task, n): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
                    problems.push(format!(
                        "task {task}: attempt {n} is marked running but its claim is not live"
                    ));
                }
                let unleased = read::rows(
                    tx,
                    "SELECT id FROM tasks WHERE status = 'running' AND lease_expires_ms IS NULL ORDER BY id",
                    &[],
                )
                .await?;
                for r in unleased {
                    let id: String = r.try_get(0)?;
                    problems.push(format!("task {id}: running without a lease"));
                }
                Ok(problems)
            })
        })
    }
}

/// The client settings of `url`: borg's connect timeout, application name and
/// keepalives unless the URL says otherwise.
fn config_of(url: &str, shown: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config =
        tokio_postgres::Config::from_str(url.trim()).map_err(|e| StoreError::Refused {
            store: shown.to_string(),
            message: format!(
                "not a valid PostgreSQL URL ({e}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ),
        })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("borg");
    }
    // A peer that vanished without closing (a host or network gone) is noticed in
    // under a minute rather than the system's two hours.
    config.keepalives_idle(Duration::from_secs(20));
    Ok(config)
}
