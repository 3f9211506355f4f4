//! Attempt activity (which renews the claim), lease violations and agent-created
//! tasks bounded per run, on PostgreSQL (semantics in `store::coord`, statements those
//! of the SQLite store's `coord_log`).

use super::claims::add_scope;
use super::coord::{fenced_role, ms, serialise};
use super::engine::Tx;
use super::errors::{E, R};
use super::read::{event, exec, row, rows};
use super::tasks;
use crate::store::coord::*;
use crate::store::{NewTask, StoreError};
use serde_json::json;
use std::time::Duration;

/// `CoordStore::record_activity`: merges the activity and renews the claim.
pub(crate) async fn record_activity(
    tx: &Tx<'_>,
    who: &Actor,
    a: &Activity,
    lease: Duration,
    now: i64,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET lease_expires_ms = greatest(coalesce(lease_expires_ms, 0), $1), heartbeat_ms = $2
         WHERE id = $3 AND fence = $4 AND status = 'running'",
        &[&now.saturating_add(ms(lease)), &now, &who.task, &who.fence],
    )
    .await?;
    if n == 0 {
        fenced_role(tx, who).await?;
    }
    let old: Option<String> = row(
        tx,
        "SELECT activity FROM attempt_activity WHERE task = $1 AND fence = $2 FOR UPDATE",
        &[&who.task, &who.fence],
    )
    .await?
    .map(|r| r.try_get(0))
    .transpose()?;
    let mut merged: Activity = old
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or_default();
    if a.percent.is_some() {
        merged.percent = a.percent;
    }
    for (slot, v) in [
        (&mut merged.step, &a.step),
        (&mut merged.message, &a.message),
        (&mut merged.current_file, &a.current_file),
        (&mut merged.last_tool, &a.last_tool),
    ] {
        if v.is_some() {
            slot.clone_from(v);
        }
    }
    exec(
        tx,
        "INSERT INTO attempt_activity (task, fence, instance, activity, updated_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (task, fence) DO UPDATE SET activity = excluded.activity, updated_ms = excluded.updated_ms",
        &[&who.task, &who.fence, &who.instance, &serde_json::to_string(&merged)?, &now],
    )
    .await?;
    Ok(())
}

/// The activity of every attempt whose claim is current.
pub(crate) async fn activities(tx: &Tx<'_>) -> R<Vec<ActivityRow>> {
    rows(
        tx,
        "SELECT a.task, a.fence, a.instance, a.activity, a.updated_ms FROM attempt_activity a
         JOIN tasks t ON t.id = a.task AND t.fence = a.fence AND t.status = 'running' ORDER BY a.task",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let text: String = r.try_get(3)?;
        Ok(ActivityRow {
            task: r.try_get(0)?,
            fence: r.try_get(1)?,
            instance: r.try_get(2)?,
            activity: serde_json::from_str(&text).unwrap_or_default(),
            updated_ms: r.try_get(4)?,
        })
    })
    .collect()
}

/// `CoordStore::record_violations`.
pub(crate) async fn record_violations(
    tx: &Tx<'_>,
    who: &Actor,
    found: &[Violation],
    now: i64,
) -> R<Vec<ViolationRow>> {
    fenced_role(tx, who).await?;
    let mut new = Vec::new();
    for v in found {
        let l = &v.lease;
        let n = exec(
            tx,
            "INSERT INTO lease_violations (task, fence, instance, path, lease_path, holder_instance, holder_task,
                                           holder_role, tool, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            &[&who.task, &who.fence, &who.instance, &v.path, &l.path, &l.instance, &l.task, &l.role, &v.tool, &now],
        )
        .await?;
        if n == 0 {
            continue;
        }
        let data =
            json!({ "path": v.path, "holder": l.instance, "holder_task": l.task, "tool": v.tool });
        event(
            tx,
            now,
            Some(&who.task),
            Some(who.fence),
            &who.instance,
            "lease-violation",
            &data,
        )
        .await?;
        new.push(ViolationRow {
            task: who.task.clone(),
            fence: who.fence,
            instance: who.instance.clone(),
            path: v.path.clone(),
            lease_path: l.path.clone(),
            holder_instance: l.instance.clone(),
            holder_task: l.task.clone(),
            holder_role: l.role.clone(),
            tool: v.tool.clone(),
            at_ms: now,
        });
    }
    Ok(new)
}

/// Violations of a task (of one claim when `fence` is given), oldest first.
pub(crate) async fn violations(
    tx: &Tx<'_>,
    task: &str,
    fence: Option<i64>,
) -> R<Vec<ViolationRow>> {
    rows(
        tx,
        "SELECT task, fence, instance, path, lease_path, holder_instance, holder_task, holder_role, tool, at_ms
         FROM lease_violations WHERE task = $1 AND ($2::bigint IS NULL OR fence = $2) ORDER BY id",
        &[&task, &fence],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ViolationRow {
            task: r.try_get(0)?,
            fence: r.try_get(1)?,
            instance: r.try_get(2)?,
            path: r.try_get(3)?,
            lease_path: r.try_get(4)?,
            holder_instance: r.try_get(5)?,
            holder_task: r.try_get(6)?,
            holder_role: r.try_get(7)?,
            tool: r.try_get(8)?,
            at_ms: r.try_get(9)?,
        })
    })
    .collect()
}

/// `CoordStore::create_agent_task`.
pub(crate) async fn create_agent_task(
    tx: &Tx<'_>,
    who: &Actor,
    task: &NewTask,
    max: u32,
    now: i64,
) -> R<()> {
    serialise(tx).await?;
    fenced_role(tx, who).await?;
    let owner: String = row(tx, "SELECT owner FROM tasks WHERE id = $1", &[&who.task])
        .await?
        .map(|r| r.try_get::<_, Option<String>>(0))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let made: i64 = row(
        tx,
        "SELECT count(*) FROM agent_tasks WHERE owner = $1",
        &[&owner],
    )
    .await?
    .map(|r| r.try_get(0))
    .transpose()?
    .unwrap_or(0);
    if made >= i64::from(max) {
        return Err(E::Store(StoreError::Conflict(format!(
            "this run's agents have already created {made} tasks, the most [coord] max_agent_tasks allows ({max}); no more can be created"
        ))));
    }
    if !tasks::insert_new(tx, task, now, None, &who.instance, Some(&who.task)).await? {
        return Err(E::Store(StoreError::Conflict(format!(
            "a task with the id {} exists already; choose another id (or leave it out)",
            task.id
        ))));
    }
    exec(
        tx,
        "INSERT INTO agent_tasks (id, parent, fence, owner, instance, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&task.id, &who.task, &who.fence, &owner, &who.instance, &now],
    )
    .await?;
    add_scope(tx, &owner, std::slice::from_ref(&task.id)).await
}

/// Ids of the tasks one task's agents created, oldest first.
pub(crate) async fn agent_tasks(tx: &Tx<'_>, parent: &str) -> R<Vec<String>> {
    super::read::column(
        tx,
        "SELECT id FROM agent_tasks WHERE parent = $1 ORDER BY created_ms, id",
        parent,
    )
    .await
}
