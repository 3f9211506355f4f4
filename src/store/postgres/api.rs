//! The `Store` trait on PostgreSQL: each method is one transaction on the engine
//! (writes at READ COMMITTED with row locks and fence checks, reads on one snapshot),
//! running the statements of the file named for its topic.

use super::fast::{self, Fast};
use super::{claims, handoffs, listen, misc, read, release, tasks, PgStore};
use crate::outcome::Status;
use crate::store::*;

/// A write transaction running `$body` with `$tx`; the listed variables are cloned
/// into each run (a run lost to a dropped connection is made again).
macro_rules! write {
    ($self:ident, [$($v:ident),*], |$tx:ident| $body:expr) => {
        $self.engine.write(move |$tx| {
            $(let $v = $v.clone();)*
            Box::pin(async move { $body.await })
        })
    };
}

/// One statement outside a transaction block (`Engine::single`), as `write!`.
macro_rules! single {
    ($self:ident, [$($v:ident),*], |$c:ident| $body:expr) => {
        {
            // The caller keeps its values for the slow path.
            $(let $v = $v.clone();)*
            $self.engine.single(move |$c| {
                $(let $v = $v.clone();)*
                Box::pin(async move { $body.await })
            })
        }
    };
}

/// A read transaction, as `write!`.
macro_rules! read {
    ($self:ident, [$($v:ident),*], |$tx:ident| $body:expr) => {
        $self.engine.read(move |$tx| {
            $(let $v = $v.clone();)*
            Box::pin(async move { $body.await })
        })
    };
}

impl Store for PgStore {
    fn register_owner(&self, owner: &OwnerInfo) -> Result<(), StoreError> {
        let owner = owner.clone();
        write!(self, [owner], |tx| misc::register_owner(tx, &owner))
    }
    fn heartbeat_owner(&self, owner: &str, now_ms: i64) -> Result<(), StoreError> {
        let owner = owner.to_string();
        write!(self, [owner], |tx| misc::heartbeat_owner(
            tx, &owner, now_ms
        ))
    }
    fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        read!(self, [], |tx| misc::owners(tx))
    }
    fn release_owner(&self, owner: &str, now_ms: i64) -> Result<Vec<AttemptRow>, StoreError> {
        let owner = owner.to_string();
        write!(self, [owner], |tx| release::release_owner(
            tx, &owner, now_ms
        ))
    }
    fn release_expired(&self, now_ms: i64) -> Result<Vec<AttemptRow>, StoreError> {
        write!(self, [], |tx| release::release_expired(tx, now_ms))
    }
    fn sync_tasks(&self, list: &[NewTask], now_ms: i64) -> Result<SyncReport, StoreError> {
        let list = list.to_vec();
        write!(self, [list], |tx| tasks::sync_tasks(tx, &list, now_ms))
    }
    fn add_scope(&self, owner: &str, ids: &[String]) -> Result<(), StoreError> {
        let (owner, ids) = (owner.to_string(), ids.to_vec());
        write!(self, [owner, ids], |tx| claims::add_scope(tx, &owner, &ids))
    }
    fn claim_next(&self, req: &ClaimRequest) -> Result<Option<Claim>, StoreError> {
        if req.roles.is_empty() {
            return Ok(None);
        }
        let req = req.clone();
        if let Fast::Done(c) = single!(self, [req], |c| fast::claim(c, &req))? {
            return Ok(c);
        }
        write!(self, [req], |tx| claims::claim_next(tx, &req))
    }
    fn heartbeat(
        &self,
        token: &ClaimToken,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let token = token.clone();
        write!(self, [token], |tx| claims::heartbeat(
            tx, &token, lease, now_ms
        ))
    }
    fn start_attempt(&self, token: &ClaimToken, start: &AttemptStart) -> Result<(), StoreError> {
        let (token, start) = (token.clone(), start.clone());
        if let Fast::Done(()) = single!(self, [token, start], |c| fast::start(c, &token, &start))? {
            return Ok(());
        }
        write!(self, [token], |tx| claims::start_refused(tx, &token))
    }
    fn finish_attempt(&self, token: &ClaimToken, finish: &AttemptFinish) -> Result<(), StoreError> {
        let (token, finish) = (token.clone(), finish.clone());
        if let Fast::Done(()) =
            single!(self, [token, finish], |c| fast::finish(c, &token, &finish))?
        {
            return Ok(());
        }
        write!(self, [token, finish], |tx| claims::finish_attempt(
            tx, &token, &finish
        ))
    }
    fn skip_tasks(&self, ids: &[String], reason: &str, now_ms: i64) -> Result<(), StoreError> {
        let (ids, reason) = (ids.to_vec(), reason.to_string());
        write!(self, [ids, reason], |tx| tasks::skip_tasks(
            tx, &ids, &reason, now_ms
        ))
    }
    fn request_handoff(
        &self,
        token: &ClaimToken,
        from_instance: Option<&str>,
        req: &HandoffRequest,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let (token, from, req) = (token.clone(), from_instance.map(String::from), req.clone());
        write!(self, [token, from, req], |tx| handoffs::request_handoff(
            tx,
            &token,
            from.as_deref(),
            &req,
            now_ms
        ))
    }
    fn handoffs(&self, task: Option<&str>) -> Result<Vec<HandoffRow>, StoreError> {
        let task = task.map(String::from);
        read!(self, [task], |tx| read::handoffs(tx, task.as_deref()))
    }
    fn accept_handoff(&self, id: i64, now_ms: i64) -> Result<HandoffRow, StoreError> {
        write!(self, [], |tx| handoffs::accept_handoff(tx, id, now_ms))
    }
    fn reject_handoff(&self, id: i64, reason: &str, now_ms: i64) -> Result<HandoffRow, StoreError> {
        let reason = reason.to_string();
        write!(self, [reason], |tx| handoffs::reject_handoff(
            tx, id, &reason, now_ms
        ))
    }
    fn retry_task(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        write!(self, [id], |tx| tasks::retry_task(tx, &id, now_ms))
    }
    fn tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        read!(self, [], |tx| read::tasks(tx))
    }
    fn statuses(&self) -> Result<Vec<(String, Status)>, StoreError> {
        read!(self, [], |tx| read::statuses(tx))
    }
    fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        let id = id.to_string();
        read!(self, [id], |tx| read::task(tx, &id))
    }
    fn attempts(&self, task: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let task = task.to_string();
        read!(self, [task], |tx| read::attempts(tx, Some(&task)))
    }
    fn running_attempts(&self) -> Result<Vec<AttemptRow>, StoreError> {
        read!(self, [], |tx| read::attempts(tx, None))
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        read!(self, [], |tx| read::events_since(tx, after, limit))
    }
    fn last_event_id(&self) -> Result<i64, StoreError> {
        read!(self, [], |tx| async move {
            let r = read::row(tx, "SELECT coalesce(max(id), 0)::bigint FROM events", &[]).await?;
            Ok(match r {
                Some(r) => r.try_get::<_, i64>(0)?,
                None => 0,
            })
        })
    }
    fn upsert_instance(&self, row: &InstanceRow) -> Result<(), StoreError> {
        let row = row.clone();
        write!(self, [row], |tx| misc::upsert_instance(tx, &row))
    }
    fn acquire_instance(&self, row: &InstanceRow) -> Result<bool, StoreError> {
        let row = row.clone();
        write!(self, [row], |tx| misc::acquire_instance(tx, &row))
    }
    fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        read!(self, [], |tx| misc::instances(tx))
    }
    fn remove_instance(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        write!(self, [id], |tx| misc::remove_instance(tx, &id))
    }
    fn set_fleet(
        &self,
        key: &str,
        value: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.clone());
        write!(self, [key, value], |tx| misc::set_fleet(
            tx, &key, &value, now_ms
        ))
    }
    fn fleet(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let key = key.to_string();
        read!(self, [key], |tx| misc::fleet(tx, &key))
    }
    fn shared_by_hosts(&self) -> bool {
        true
    }
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = notes.as_ref() {
            return Some(tx.subscribe());
        }
        let (tx, rx) = tokio::sync::broadcast::channel(1024);
        listen::start(self.engine.handle(), self.config.clone(), tx.clone());
        *notes = Some(tx);
        Some(rx)
    }
}
