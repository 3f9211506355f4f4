//! [`GitStore`] for SQLite: a claimed task handing its claim back to wait for a new
//! task (a resolve task), in the caller's `BEGIN IMMEDIATE` transaction.

use super::read::{self, claim_event, exec};
use super::{tasks, SqliteStore, R};
use crate::store::*;
use rusqlite::{params, Transaction};
use serde_json::json;

impl GitStore for SqliteStore {
    fn wait_for_new_task(
        &self,
        token: &ClaimToken,
        task: &NewTask,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (token, task, reason) = (token.clone(), task.clone(), reason.to_string());
        self.write(move |tx| wait_for_new_task(tx, &token, &task, &reason, now_ms))
    }
}

/// See [`GitStore::wait_for_new_task`].
fn wait_for_new_task(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    task: &NewTask,
    reason: &str,
    now: i64,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET status = 'pending', owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
                attempts = max(attempts - 1, 0), updated_ms = ?1
         WHERE id = ?2 AND fence = ?3 AND status = 'running' AND owner = ?4",
        params![now, token.task, token.fence, token.owner],
    )?;
    if n == 0 {
        return Err(read::stale(tx, token));
    }
    if !tasks::insert_new(tx, task, now, None, &token.owner, Some(&token.task))? {
        return Err(StoreError::Conflict(format!(
            "task {} exists already; {} cannot wait for it",
            task.id, token.task
        ))
        .into());
    }
    exec(
        tx,
        "INSERT INTO task_deps (task, dep, pos)
         VALUES (?1, ?2, (SELECT coalesce(max(pos), -1) + 1 FROM task_deps WHERE task = ?1))",
        params![token.task, task.id],
    )?;
    exec(
        tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = ?1
         WHERE current_task = ?2 AND owner = ?3 AND state = 'busy'",
        params![now, token.task, token.owner],
    )?;
    claim_event(
        tx,
        now,
        token,
        "waiting",
        &json!({ "on": task.id, "reason": reason }),
    )
}
