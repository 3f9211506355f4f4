//! Releases of claims whose owner died or whose lease ran out: the tasks go back to the
//! pool at once, fenced, and their running attempts are marked interrupted.

use super::handoffs::drop_handoffs;
use super::read::{self, event, exec};
use super::R;
use crate::store::*;
use rusqlite::{params, Transaction};
use serde_json::json;

/// Marks the running attempts of a task interrupted (its claim is being released or
/// taken over); returns them as they are now.
pub(crate) fn interrupt_attempts_of(
    tx: &Transaction<'_>,
    task: &str,
    now: i64,
    reason: &str,
    actor: &str,
) -> R<Vec<AttemptRow>> {
    let numbers: Vec<(i64, i64)> = {
        let mut st = tx.prepare_cached(
            "SELECT attempt, fence FROM attempts WHERE task = ?1 AND status = 'running'",
        )?;
        let rows = st.query_map([task], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for (n, fence) in numbers {
        exec(tx,
            "UPDATE attempts SET status = 'interrupted', record = ?1, finished_ms = ?2 WHERE task = ?3 AND attempt = ?4",
            params![json!({ "reason": reason }).to_string(), now, task, n],
        )?;
        event(
            tx,
            now,
            Some(task),
            Some(fence),
            actor,
            "interrupted",
            &json!({ "attempt": n, "reason": reason }),
        )?;
        if let Some(a) = read::attempt(tx, task, n)? {
            out.push(a);
        }
    }
    Ok(out)
}

/// Hands the given running tasks back to the pool at once: pending, claim cleared,
/// fence + 1 so whatever is still running for the old claim is fenced off.
fn release_tasks(
    tx: &Transaction<'_>,
    ids: &[(String, i64)],
    now: i64,
    reason: &str,
    kind: &str,
    actor: &str,
    previous_owner: Option<&str>,
) -> R<Vec<AttemptRow>> {
    let mut out = Vec::new();
    for (id, fence) in ids {
        exec(tx,
            "UPDATE tasks SET status = 'pending', owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
                    fence = fence + 1, updated_ms = ?1
             WHERE id = ?2 AND status = 'running'",
            params![now, id],
        )?;
        event(
            tx,
            now,
            Some(id),
            Some(*fence),
            actor,
            kind,
            &json!({ "reason": reason, "previous_owner": previous_owner }),
        )?;
        out.extend(interrupt_attempts_of(tx, id, now, reason, actor)?);
        super::coord::end_claim_leases(tx, id, *fence)?;
        drop_handoffs(tx, id, now, actor)?;
    }
    Ok(out)
}

/// An owner is gone: release its claims, interrupt its attempts, free its instances,
/// forget it.
pub(crate) fn release_owner(tx: &Transaction<'_>, owner: &str, now: i64) -> R<Vec<AttemptRow>> {
    let ids: Vec<(String, i64)> = {
        let mut st = tx.prepare_cached(
            "SELECT id, fence FROM tasks WHERE status = 'running' AND owner = ?1 ORDER BY ord, id",
        )?;
        let rows = st.query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = release_tasks(
        tx,
        &ids,
        now,
        "owner gone",
        "owner-gone",
        owner,
        Some(owner),
    )?;
    // Attempts of this owner still marked running whose task is no longer its claim
    // (should not happen, but a sweep must see every process it may have left).
    let stray: Vec<String> = read::column(
        tx,
        "SELECT DISTINCT task FROM attempts WHERE status = 'running' AND owner = ?1",
        owner,
    )?;
    for t in stray {
        out.extend(interrupt_attempts_of(tx, &t, now, "owner gone", owner)?);
    }
    exec(tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = ?1 WHERE owner = ?2",
        params![now, owner],
    )?;
    exec(tx, "DELETE FROM run_scope WHERE owner = ?1", [owner])?;
    if exec(tx, "DELETE FROM owners WHERE id = ?1", [owner])? > 0 {
        event(
            tx,
            now,
            None,
            None,
            owner,
            "owner-removed",
            &json!({ "owner": owner, "released": ids.len() }),
        )?;
    }
    Ok(out)
}

/// Releases every claim whose lease expired before `now` (owners stay registered).
pub(crate) fn release_expired(tx: &Transaction<'_>, now: i64) -> R<Vec<AttemptRow>> {
    let ids: Vec<(String, i64, Option<String>)> = {
        let mut st = tx.prepare_cached(
            "SELECT id, fence, owner FROM tasks WHERE status = 'running' AND lease_expires_ms < ?1 ORDER BY ord, id",
        )?;
        let rows = st.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for (id, fence, owner) in ids {
        // The sweeping borg is not known here; the old owner goes in the event data.
        out.extend(release_tasks(
            tx,
            &[(id, fence)],
            now,
            "lease expired",
            "lease-expired",
            "borg",
            owner.as_deref(),
        )?);
    }
    Ok(out)
}
