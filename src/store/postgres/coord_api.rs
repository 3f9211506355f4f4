//! `CoordStore` and `CoordLog` on PostgreSQL: each method one transaction of `coord` (leases) or
//! `coord_log` (the rest), run on the engine like the `Store` methods of `api`.

use super::{coord, coord_log, coord_work, PgStore};
use crate::store::coord::*;
use crate::store::{NewTask, StoreError};
use std::time::Duration;

/// A write transaction running `$body` with `$tx` (the variables cloned into each run).
macro_rules! write {
    ($self:ident, [$($v:ident),*], |$tx:ident| $body:expr) => {
        $self.engine.write(move |$tx| {
            $(let $v = $v.clone();)*
            Box::pin(async move { $body.await })
        })
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

impl CoordStore for PgStore {
    fn lock_paths(
        &self,
        who: &Actor,
        req: &LockRequest,
        now_ms: i64,
    ) -> Result<LockOutcome, StoreError> {
        let (who, req) = (who.clone(), req.clone());
        write!(self, [who, req], |tx| coord::lock_paths(
            tx, &who, &req, now_ms
        ))
    }
    fn cancel_waits(&self, who: &Actor, paths: &[String]) -> Result<(), StoreError> {
        let (who, paths) = (who.clone(), paths.to_vec());
        write!(self, [who, paths], |tx| coord::drop_waits(tx, &who, &paths))
    }
    fn unlock_paths(
        &self,
        who: &Actor,
        paths: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (who, paths) = (who.clone(), paths.to_vec());
        write!(self, [who, paths], |tx| coord::unlock_paths(
            tx, &who, &paths, now_ms
        ))
    }
    fn check_write(
        &self,
        who: &Actor,
        path: &str,
        auto: Option<(&str, Duration)>,
        now_ms: i64,
    ) -> Result<WriteCheck, StoreError> {
        let (who, path) = (who.clone(), path.to_string());
        let auto = auto.map(|(r, t)| (r.to_string(), t));
        match auto {
            None => read!(self, [who, path], |tx| coord::check_write(
                tx, &who, &path, None, now_ms
            )),
            Some(a) => write!(self, [who, path, a], |tx| coord::check_write(
                tx,
                &who,
                &path,
                Some((a.0.as_str(), a.1)),
                now_ms
            )),
        }
    }
    fn leases(&self, now_ms: i64) -> Result<Vec<LeaseRow>, StoreError> {
        read!(self, [], |tx| coord::all_leases(tx, now_ms))
    }
    fn drop_leases(&self, ids: &[i64], now_ms: i64) -> Result<usize, StoreError> {
        let ids = ids.to_vec();
        write!(self, [ids], |tx| coord::drop_leases(tx, &ids, now_ms))
    }
    fn record_violations(
        &self,
        who: &Actor,
        found: &[Violation],
        now_ms: i64,
    ) -> Result<Vec<ViolationRow>, StoreError> {
        let (who, found) = (who.clone(), found.to_vec());
        write!(self, [who, found], |tx| coord_work::record_violations(
            tx, &who, &found, now_ms
        ))
    }
    fn violations(&self, task: &str, fence: Option<i64>) -> Result<Vec<ViolationRow>, StoreError> {
        let task = task.to_string();
        read!(self, [task], |tx| coord_work::violations(tx, &task, fence))
    }
}

impl CoordLog for PgStore {
    fn log_decision(
        &self,
        who: Option<&Actor>,
        d: &NewDecision,
        now_ms: i64,
    ) -> Result<DecisionRow, StoreError> {
        let (who, d) = (who.cloned(), d.clone());
        write!(self, [who, d], |tx| coord_log::log_decision(
            tx,
            who.as_ref(),
            &d,
            now_ms
        ))
    }
    fn decisions(
        &self,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        let category = category.map(String::from);
        read!(self, [category], |tx| coord_log::decisions(
            tx,
            category.as_deref(),
            None,
            limit
        ))
    }
    fn decisions_of(&self, task: &str) -> Result<Vec<DecisionRow>, StoreError> {
        let task = task.to_string();
        read!(self, [task], |tx| coord_log::decisions(
            tx,
            None,
            Some(&task),
            usize::MAX
        ))
    }
    fn send_message(
        &self,
        who: Option<&Actor>,
        m: &NewMessage,
        now_ms: i64,
    ) -> Result<MessageRow, StoreError> {
        let (who, m) = (who.cloned(), m.clone());
        write!(self, [who, m], |tx| coord_log::send_message(
            tx,
            who.as_ref(),
            &m,
            now_ms
        ))
    }
    fn unread_messages(
        &self,
        reader: &Reader,
        mark: bool,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let reader = reader.clone();
        if mark {
            write!(self, [reader], |tx| coord_log::unread(
                tx, &reader, true, limit, now_ms
            ))
        } else {
            read!(self, [reader], |tx| coord_log::unread(
                tx, &reader, false, limit, now_ms
            ))
        }
    }
    fn messages(&self, limit: usize) -> Result<Vec<MessageRow>, StoreError> {
        read!(self, [], |tx| coord_log::messages(tx, limit))
    }
    fn message_counts(&self, task: &str) -> Result<(u64, u64), StoreError> {
        let task = task.to_string();
        read!(self, [task], |tx| coord_log::message_counts(tx, &task))
    }
    fn save_context(
        &self,
        who: &Actor,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (who, key, value) = (who.clone(), key.to_string(), value.to_string());
        write!(self, [who, key, value], |tx| coord_log::save_context(
            tx, &who, &key, &value, now_ms
        ))
    }
    fn context(&self, key: &str) -> Result<Option<ContextEntry>, StoreError> {
        let key = key.to_string();
        read!(self, [key], |tx| coord_log::context(tx, &key))
    }
    fn record_activity(
        &self,
        who: &Actor,
        a: &Activity,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (who, a) = (who.clone(), a.clone());
        write!(self, [who, a], |tx| coord_work::record_activity(
            tx, &who, &a, lease, now_ms
        ))
    }
    fn activities(&self) -> Result<Vec<ActivityRow>, StoreError> {
        read!(self, [], |tx| coord_work::activities(tx))
    }
    fn create_agent_task(
        &self,
        who: &Actor,
        task: &NewTask,
        max_per_run: u32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (who, task) = (who.clone(), task.clone());
        write!(self, [who, task], |tx| coord_work::create_agent_task(
            tx,
            &who,
            &task,
            max_per_run,
            now_ms
        ))
    }
    fn agent_tasks(&self, parent: &str) -> Result<Vec<String>, StoreError> {
        let parent = parent.to_string();
        read!(self, [parent], |tx| coord_work::agent_tasks(tx, &parent))
    }
}
