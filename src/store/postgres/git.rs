//! [`GitStore`] on PostgreSQL: a claimed task handing its claim back to wait for a new
//! task (a resolve task), in one transaction, as the SQLite store does it (same rules,
//! events and errors).

use super::engine::Tx;
use super::errors::R;
use super::read::{self, claim_event, exec};
use super::{tasks, PgStore};
use crate::store::*;
use serde_json::json;

impl GitStore for PgStore {
    fn wait_for_new_task(
        &self,
        token: &ClaimToken,
        task: &NewTask,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (token, task, reason) = (token.clone(), task.clone(), reason.to_string());
        self.engine.write(move |tx| {
            let (token, task, reason) = (token.clone(), task.clone(), reason.clone());
            Box::pin(async move { wait_for_new_task(tx, &token, &task, &reason, now_ms).await })
        })
    }
}

/// See [`GitStore::wait_for_new_task`].
async fn wait_for_new_task(
    tx: &Tx<'_>,
    token: &ClaimToken,
    task: &NewTask,
    reason: &str,
    now: i64,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET status = 'pending', owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
                attempts = greatest(attempts - 1, 0), updated_ms = $1
         WHERE id = $2 AND fence = $3 AND status = 'running' AND owner = $4",
        &[&now, &token.task, &token.fence, &token.owner],
    )
    .await?;
    if n == 0 {
        return Err(read::stale(tx, token).await);
    }
    if !tasks::insert_new(tx, task, now, None, &token.owner, Some(&token.task)).await? {
        return Err(StoreError::Conflict(format!(
            "task {} exists already; {} cannot wait for it",
            task.id, token.task
        ))
        .into());
    }
    exec(
        tx,
        "INSERT INTO task_deps (task, dep, pos)
         VALUES ($1, $2, (SELECT coalesce(max(pos), -1) + 1 FROM task_deps WHERE task = $1))",
        &[&token.task, &task.id],
    )
    .await?;
    exec(
        tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = $1
         WHERE current_task = $2 AND owner = $3 AND state = 'busy'",
        &[&now, &token.task, &token.owner],
    )
    .await?;
    claim_event(
        tx,
        now,
        token,
        "waiting",
        &json!({ "on": task.id, "reason": reason }),
    )
    .await
}
