//! Releases of claims whose owner died or whose lease ran out, on PostgreSQL: the
//! tasks go back to the pool at once, fenced, and their running attempts are marked
//! interrupted (the SQLite store's `release`, statement for statement). The rows are
//! locked first (`FOR UPDATE`), so a release and a claim of the same task never both
//! act on it.

use super::engine::Tx;
use super::errors::R;
use super::handoffs::drop_handoffs;
use super::read::{self, event, exec, rows};
use crate::store::*;
use serde_json::json;

/// Marks the running attempts of a task interrupted; returns them as they are now.
pub(crate) async fn interrupt_attempts_of(
    tx: &Tx<'_>,
    task: &str,
    now: i64,
    reason: &str,
    actor: &str,
) -> R<Vec<AttemptRow>> {
    let found = rows(
        tx,
        "SELECT attempt, fence FROM attempts WHERE task = $1 AND status = 'running' ORDER BY attempt",
        &[&task],
    )
    .await?;
    let mut out = Vec::new();
    for r in found {
        let (n, fence): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        let record = json!({ "reason": reason }).to_string();
        exec(
            tx,
            "UPDATE attempts SET status = 'interrupted', record = $1, finished_ms = $2 WHERE task = $3 AND attempt = $4",
            &[&record, &now, &task, &n],
        )
        .await?;
        event(
            tx,
            now,
            Some(task),
            Some(fence),
            actor,
            "interrupted",
            &json!({ "attempt": n, "reason": reason }),
        )
        .await?;
        if let Some(a) = read::attempt(tx, task, n).await? {
            out.push(a);
        }
    }
    Ok(out)
}

/// How a set of claims is being released, for the events.
struct Why<'a> {
    reason: &'a str,
    kind: &'a str,
    actor: &'a str,
}

/// Hands the given running tasks back to the pool: pending, claim cleared, fence + 1.
async fn release_tasks(
    tx: &Tx<'_>,
    ids: &[(String, i64)],
    now: i64,
    why: &Why<'_>,
    previous_owner: Option<&str>,
) -> R<Vec<AttemptRow>> {
    let mut out = Vec::new();
    for (id, fence) in ids {
        exec(
            tx,
            "UPDATE tasks SET status = 'pending', owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
                    fence = fence + 1, updated_ms = $1
             WHERE id = $2 AND status = 'running'",
            &[&now, &id],
        )
        .await?;
        event(
            tx,
            now,
            Some(id),
            Some(*fence),
            why.actor,
            why.kind,
            &json!({ "reason": why.reason, "previous_owner": previous_owner }),
        )
        .await?;
        out.extend(interrupt_attempts_of(tx, id, now, why.reason, why.actor).await?);
        super::coord::end_claim_leases(tx, id, *fence).await?;
        drop_handoffs(tx, id, now, why.actor).await?;
    }
    Ok(out)
}

/// An owner is gone: release its claims, interrupt its attempts, free its instances,
/// forget it.
pub(crate) async fn release_owner(tx: &Tx<'_>, owner: &str, now: i64) -> R<Vec<AttemptRow>> {
    let ids: Vec<(String, i64)> = rows(
        tx,
        "SELECT id, fence FROM tasks WHERE status = 'running' AND owner = $1 ORDER BY ord, id FOR UPDATE",
        &[&owner],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<R<_>>()?;
    let why = Why {
        reason: "owner gone",
        kind: "owner-gone",
        actor: owner,
    };
    let mut out = release_tasks(tx, &ids, now, &why, Some(owner)).await?;
    let stray: Vec<String> = read::column(
        tx,
        "SELECT DISTINCT task FROM attempts WHERE status = 'running' AND owner = $1 ORDER BY task",
        owner,
    )
    .await?;
    for t in stray {
        out.extend(interrupt_attempts_of(tx, &t, now, "owner gone", owner).await?);
    }
    exec(
        tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = $1 WHERE owner = $2",
        &[&now, &owner],
    )
    .await?;
    exec(tx, "DELETE FROM run_scope WHERE owner = $1", &[&owner]).await?;
    if exec(tx, "DELETE FROM owners WHERE id = $1", &[&owner]).await? > 0 {
        event(
            tx,
            now,
            None,
            None,
            owner,
            "owner-removed",
            &json!({ "owner": owner, "released": ids.len() }),
        )
        .await?;
    }
    Ok(out)
}

/// Releases every claim whose lease expired before `now` (owners stay registered).
/// Rows another transaction holds (a claim taking one over right now) are left to it.
pub(crate) async fn release_expired(tx: &Tx<'_>, now: i64) -> R<Vec<AttemptRow>> {
    let ids: Vec<(String, i64, Option<String>)> = rows(
        tx,
        "SELECT id, fence, owner FROM tasks WHERE status = 'running' AND lease_expires_ms < $1
         ORDER BY ord, id FOR UPDATE SKIP LOCKED",
        &[&now],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
    .collect::<R<_>>()?;
    let why = Why {
        reason: "lease expired",
        kind: "lease-expired",
        actor: "borg",
    };
    let mut out = Vec::new();
    for (id, fence, owner) in ids {
        out.extend(release_tasks(tx, &[(id, fence)], now, &why, owner.as_deref()).await?);
    }
    Ok(out)
}
