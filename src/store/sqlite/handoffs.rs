//! Handoffs in the store: requested under a live claim, accepted or rejected by a
//! person, accepted by borg when the task that asked succeeds (the new task is
//! inserted in the same commit), dropped when it does not.
//!
//! Claims and releases both end a task's handoffs, so the statements that do it live
//! here, below both.

use super::read::{self, claim_event, event, exec};
use super::tasks::skip_pending;
use super::{E, R};
use crate::store::*;
use rusqlite::{params, Transaction};
use serde_json::json;

/// Records a handoff request of a live claim; the fence check is the INSERT's WHERE.
pub(crate) fn request_handoff(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    from_instance: Option<&str>,
    req: &HandoffRequest,
    now: i64,
) -> R<i64> {
    let steps = serde_json::to_string(&req.next_steps)?;
    let n = {
        let mut st = tx.prepare_cached(
            "INSERT INTO handoffs (task, fence, from_role, from_instance, to_role, reason, work_state, next_steps,
                                   state, created_ms, updated_ms)
             SELECT t.id, t.fence, t.role, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9
             FROM tasks t WHERE t.id = ?1 AND t.fence = ?2 AND t.status = 'running' AND t.owner = ?3",
        )?;
        st.execute(params![
            token.task,
            token.fence,
            token.owner,
            from_instance,
            req.to_role,
            req.reason,
            req.state,
            steps,
            now
        ])?
    };
    if n == 0 {
        return Err(read::stale(tx, token));
    }
    let id = tx.last_insert_rowid();
    claim_event(
        tx,
        now,
        token,
        "handoff-requested",
        &json!({ "handoff": id, "to_role": req.to_role, "reason": req.reason }),
    )?;
    Ok(id)
}

fn load_handoff(tx: &Transaction<'_>, id: i64) -> R<HandoffRow> {
    read::handoff(tx, id)?.ok_or_else(|| E::Store(StoreError::NotFound(format!("handoff {id}"))))
}

/// A person accepts a handoff (idempotent for an accepted one).
pub(crate) fn accept_handoff(tx: &Transaction<'_>, id: i64, now: i64) -> R<HandoffRow> {
    let h = load_handoff(tx, id)?;
    match h.state {
        HandoffState::Accepted => return Ok(h),
        HandoffState::Pending => {}
        s => {
            return Err(StoreError::Conflict(
                format!("handoff {id} is {s:?}, it cannot be accepted").to_lowercase(),
            )
            .into())
        }
    }
    exec(
        tx,
        "UPDATE handoffs SET state = 'accepted', updated_ms = ?1 WHERE id = ?2",
        params![now, id],
    )?;
    event(
        tx,
        now,
        Some(&h.task),
        Some(h.fence),
        "user",
        "handoff-accepted",
        &json!({ "handoff": id }),
    )?;
    load_handoff(tx, id)
}

/// A person rejects a handoff; the task made from it, if it has not started, is skipped
/// (with its dependents).
pub(crate) fn reject_handoff(
    tx: &Transaction<'_>,
    id: i64,
    reason: &str,
    now: i64,
) -> R<HandoffRow> {
    let h = load_handoff(tx, id)?;
    match h.state {
        HandoffState::Rejected => return Ok(h),
        HandoffState::Pending | HandoffState::Accepted => {}
        HandoffState::Dropped => {
            return Err(StoreError::Conflict(format!(
                "handoff {id} was dropped (its task did not succeed)"
            ))
            .into())
        }
    }
    exec(
        tx,
        "UPDATE handoffs SET state = 'rejected', reject_reason = ?1, updated_ms = ?2 WHERE id = ?3",
        params![reason, now, id],
    )?;
    event(
        tx,
        now,
        Some(&h.task),
        Some(h.fence),
        "user",
        "handoff-rejected",
        &json!({ "handoff": id, "reason": reason }),
    )?;
    if let Some(t) = &h.new_task {
        let why = format!("handoff {id} rejected: {reason}");
        skip_pending(
            tx,
            t,
            &why,
            &json!({ "reason": why, "handoff": id }),
            now,
            "user",
        )?;
    }
    load_handoff(tx, id)
}

/// A handoff of the task that just succeeded became task `new_task`, in the same
/// commit as the success: accepted, or, when the task `waits` for a person, linked to
/// it and left pending (the task is not claimable until `accept_handoff`).
pub(crate) fn accept_converted(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    h: i64,
    new_task: &str,
    now: i64,
    waits: bool,
) -> R<()> {
    // A handoff a person accepted before the source finished stays accepted.
    let state = if waits { "state" } else { "'accepted'" };
    let n = exec(
        tx,
        &format!(
            "UPDATE handoffs SET state = {state}, new_task = ?1, updated_ms = ?2
             WHERE id = ?3 AND task = ?4 AND state IN ('pending', 'accepted')"
        ),
        params![new_task, now, h, token.task],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "handoff {h} is not a pending handoff of task {}",
            token.task
        ))
        .into());
    }
    let kind = if waits {
        "handoff-awaiting"
    } else {
        "handoff-accepted"
    };
    claim_event(
        tx,
        now,
        token,
        kind,
        &json!({ "handoff": h, "new_task": new_task }),
    )
}

/// Pending handoffs of a task whose attempt did not succeed are dropped.
pub(crate) fn drop_handoffs(tx: &Transaction<'_>, task: &str, now: i64, actor: &str) -> R<()> {
    let ids: Vec<i64> = read::column(
        tx,
        "SELECT id FROM handoffs WHERE task = ?1 AND state = 'pending' ORDER BY id",
        task,
    )?;
    for h in ids {
        exec(
            tx,
            "UPDATE handoffs SET state = 'dropped', updated_ms = ?1 WHERE id = ?2",
            params![now, h],
        )?;
        event(
            tx,
            now,
            Some(task),
            None,
            actor,
            "handoff-dropped",
            &json!({ "handoff": h }),
        )?;
    }
    Ok(())
}
