//! The PostgreSQL client's engine room: a dedicated thread running its own tokio
//! runtime, the connection pool on it, and the way every synchronous `Store` call
//! reaches it (a job sent to that runtime, the caller blocked on a channel for the
//! answer, like the SQLite store's writer thread).
//!
//! Why a thread of its own: the `Store` trait is synchronous and is called from
//! `spawn_blocking` and, by some commands, straight from inside borg's runtime, where
//! `block_on` would panic. A runtime owned by a plain thread is never the caller's.
//!
//! Every call is one transaction. A call whose connection broke before its COMMIT was
//! sent (the server restarted, a pooled connection died) is run again on a fresh
//! connection, with backoff, for up to `retry_for`; so are deadlocks and serialization
//! failures. A failure at COMMIT itself is not retried: its outcome is unknown, and the
//! fence makes the caller's next write find out.

use super::errors::{classify, Kind, E};
use super::hot::{Conn, Hot};
use crate::store::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::IsolationLevel;

/// A transaction of the pool.
pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// The future of one transaction's work.
pub(crate) type TxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Longest one transaction may take before the server counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections kept at most: one per concurrent store call of this process is plenty
/// (the scheduler's calls, heartbeats, the change feed's reads).
const POOL_SIZE: usize = 16;

/// Connections a light store (a per-call helper) keeps at most.
const LIGHT_POOL_SIZE: usize = 2;

/// The engine of one `PgStore`.
pub(crate) struct Engine {
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// The connection the one-statement calls share (see `hot`).
    hot: Arc<Hot>,
    /// The URL as shown to people (no password).
    pub shown: String,
    /// How long a call keeps retrying a lost connection before it reports the store
    /// unreachable.
    pub retry_for: Duration,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Starts the thread and its runtime, and a pool for `config` (no connection yet).
    ///
    /// `light` (the per-call helpers, see `PgStore::open_light`): a single-threaded
    /// runtime and at most two connections, since such a process makes a handful of
    /// calls one after the other and then exits.
    pub(crate) fn start(
        config: tokio_postgres::Config,
        shown: String,
        retry_for: Duration,
        light: bool,
    ) -> Result<Engine, StoreError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (give, take) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("borg-postgres".into())
            .spawn(move || {
                let mut builder = if light {
                    tokio::runtime::Builder::new_current_thread()
                } else {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(2).thread_name("borg-postgres-rt");
                    b
                };
                let rt = match builder.enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = give.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = give.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Other(format!("cannot start the PostgreSQL client: {e}")))?;
        let handle = match take.recv() {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                return Err(StoreError::Other(format!(
                    "cannot start the PostgreSQL client: {e}"
                )))
            }
            Err(_) => {
                return Err(StoreError::Other(
                    "cannot start the PostgreSQL client: its thread ended".into(),
                ))
            }
        };
        let pool = {
            let _guard = handle.enter();
            build_pool(config, if light { LIGHT_POOL_SIZE } else { POOL_SIZE })?
        };
        Ok(Engine {
            handle,
            hot: Arc::new(Hot::new(pool.clone())),
            pool,
            shown,
            retry_for,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `fut` on the engine's runtime and waits for it (from any thread, inside
    /// a runtime or not).
    pub(crate) fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Other(
                "the PostgreSQL client thread has stopped".into(),
            ))
        })
    }

    /// The runtime's handle (for the listener task).
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `f` in a read-write transaction (READ COMMITTED; the fence checks and
    /// `FOR UPDATE` do the serialising), retried as the module doc says.
    pub(crate) fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'b> Fn(&'a Tx<'b>) -> TxFut<'a, T> + Send + Sync + 'static,
    {
        self.transact(f, false)
    }

    /// Runs `f` in a read-only REPEATABLE READ transaction: one snapshot for every
    /// statement of the read.
    pub(crate) fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'b> Fn(&'a Tx<'b>) -> TxFut<'a, T> + Send + Sync + 'static,
    {
        self.transact(f, true)
    }

    /// Runs `f` on the shared connection of `hot`, outside a transaction block: each
    /// statement it sends is a transaction of its own, one round trip instead of
    /// BEGIN, the statement and COMMIT, pipelined with the other callers'. For the hot
    /// paths (claim, start, finish) written as one statement each.
    ///
    /// A lost connection is retried as in `write`, also when the statement may have
    /// committed: the callers' statements are safe to run twice (a start is an
    /// upsert; a finish run again finds its own earlier finish and reports success; a
    /// claim whose answer was lost stays with this owner until its lease runs out and
    /// is then taken over, which costs time but never correctness).
    pub(crate) fn single<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a> Fn(&'a Conn) -> TxFut<'a, T> + Send + Sync + 'static,
    {
        let (hot, shown, retry_for) = (self.hot.clone(), self.shown.clone(), self.retry_for);
        let f = Arc::new(f);
        self.block(retrying(shown, retry_for, move || {
            let (hot, f) = (hot.clone(), f.clone());
            async move {
                let client = hot.get().await.map_err(|e| (e, false))?;
                let res = f(&client).await;
                if matches!(&res, Err(e) if matches!(classify(e), Kind::Connection)) {
                    hot.forget(&client).await;
                }
                // Safe to run again even if it committed (see above): never "committing".
                res.map_err(|e| (e, false))
            }
        }))
    }

    fn transact<T, F>(&self, f: F, read_only: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'b> Fn(&'a Tx<'b>) -> TxFut<'a, T> + Send + Sync + 'static,
    {
        let (pool, shown, retry_for) = (self.pool.clone(), self.shown.clone(), self.retry_for);
        let f = Arc::new(f);
        self.block(retrying(shown, retry_for, move || {
            let (pool, f) = (pool.clone(), f.clone());
            async move { once(&pool, &*f, read_only).await }
        }))
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `retry_for` has passed: a
/// deadlock or serialization failure is tried again, and so is a lost connection
/// unless the error says it came at COMMIT (outcome unknown), with backoff from 50 ms
/// to 2 s. A call with no answer for `CALL_TIMEOUT` is the store unreachable.
async fn retrying<T, Fut>(
    shown: String,
    retry_for: Duration,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, (E, bool)>>,
{
    let began = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let Ok(res) = tokio::time::timeout(CALL_TIMEOUT, attempt()).await else {
            // A server that stopped answering (a network partition): the outcome is
            // unknown, so no retry; the fence sorts it out.
            return Err(StoreError::Unreachable {
                store: shown.clone(),
                message: format!("no answer for {} s", CALL_TIMEOUT.as_secs()),
            });
        };
        let (e, committing) = match res {
            Ok(v) => return Ok(v),
            Err(failed) => failed,
        };
        let kind = classify(&e);
        let again =
            matches!(kind, Kind::Retry) || (matches!(kind, Kind::Connection) && !committing);
        if !again || began.elapsed() >= retry_for {
            return Err(e.into_store(&shown));
        }
        tracing::debug!("store {shown}: {}; trying again", e.describe());
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One run of `f` in its own transaction on a pooled connection. The error carries
/// whether it happened at COMMIT (outcome unknown).
async fn once<T, F>(pool: &Pool, f: &F, read_only: bool) -> Result<T, (E, bool)>
where
    F: for<'a, 'b> Fn(&'a Tx<'b>) -> TxFut<'a, T>,
{
    let mut client = pool.get().await.map_err(|e| (E::Pool(e), false))?;
    let builder = client.build_transaction();
    let builder = if read_only {
        builder
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
    } else {
        builder
    };
    let tx = builder.start().await.map_err(|e| (E::Db(e), false))?;
    let v = f(&tx).await.map_err(|e| (e, false))?;
    tx.commit().await.map_err(|e| (E::Db(e), true))?;
    Ok(v)
}

/// The pool: connections made on demand, checked with a cheap test on reuse (a
/// connection the server closed is dropped, not handed out), bounded waits.
fn build_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let mgr = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Other(format!("cannot set up the PostgreSQL pool: {e}")))
}
