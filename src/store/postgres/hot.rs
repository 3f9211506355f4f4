//! The one connection a store's one-statement calls (claim, start, finish: see `fast`)
//! share. tokio-postgres pipelines the requests of concurrent callers on one client:
//! eight attempts of one borg claiming and finishing at once send their statements
//! down one socket to one server process, which runs them one after the other, as
//! SQLite's single writer does, instead of eight server processes competing for the
//! CPU with the callers (on a small machine that competition, not the statements, is
//! what makes the slow tail).
//!
//! The connection is made by the pool's manager but kept outside the pool: it carries
//! a session setting of its own, `plan_cache_mode = force_generic_plan`. Why: the
//! claim statement's parameters (roles, instances, scope) make PostgreSQL plan it
//! afresh on every call (0.26 ms, three times its execution), while its generic plan,
//! the walk down the claim index to the first ready task, is the right one for every
//! call. The setting stays on this connection; no transaction of the pool sees it.
//! One that broke is dropped and the next call makes a fresh one.

use super::errors::E;
use deadpool_postgres::Pool;
use std::sync::Arc;

/// A connection for statements run outside a transaction block.
pub(crate) type Conn = deadpool_postgres::ClientWrapper;

/// The shared connection, made on first use and again after it broke.
pub(crate) struct Hot {
    pool: Pool,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl Hot {
    /// No connection yet.
    pub(crate) fn new(pool: Pool) -> Hot {
        Hot {
            pool,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The shared connection (a new one if there was none or it closed).
    pub(crate) async fn get(&self) -> Result<Arc<Conn>, E> {
        let mut held = self.conn.lock().await;
        if let Some(c) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let made = deadpool::managed::Manager::create(self.pool.manager());
        let c = made.await.map_err(E::Db)?;
        c.batch_execute("SET plan_cache_mode = force_generic_plan")
            .await
            .map_err(E::Db)?;
        let c = Arc::new(c);
        *held = Some(c.clone());
        Ok(c)
    }

    /// Forgets `c` if it is still the shared one (it failed with a connection error).
    pub(crate) async fn forget(&self, c: &Arc<Conn>) {
        let mut held = self.conn.lock().await;
        if held.as_ref().is_some_and(|h| Arc::ptr_eq(h, c)) {
            if let Some(mut gone) = held.take().and_then(|h| Arc::try_unwrap(h).ok()) {
                deadpool::managed::Manager::detach(self.pool.manager(), &mut gone);
            }
        }
    }
}
