//! Handoffs on PostgreSQL: requested under a live claim, accepted or rejected by a
//! person, accepted when the task that asked succeeds, dropped when it does not (the
//! SQLite store's `handoffs`, the same states, errors and events).

use super::engine::Tx;
use super::errors::{E, R};
use super::read::{self, claim_event, event, exec, row};
use super::tasks::skip_pending;
use crate::store::*;
use serde_json::json;

/// Records a handoff request of a live claim; the fence check is the INSERT's WHERE.
pub(crate) async fn request_handoff(
    tx: &Tx<'_>,
    token: &ClaimToken,
    from_instance: Option<&str>,
    req: &HandoffRequest,
    now: i64,
) -> R<i64> {
    let steps = serde_json::to_string(&req.next_steps)?;
    let found = row(
        tx,
        "INSERT INTO handoffs (task, fence, from_role, from_instance, to_role, reason, work_state, next_steps,
                               state, created_ms, updated_ms)
         SELECT t.id, t.fence, t.role, $4, $5, $6, $7, $8, 'pending', $9, $9
         FROM tasks t WHERE t.id = $1 AND t.fence = $2 AND t.status = 'running' AND t.owner = $3
         RETURNING id",
        &[
            &token.task,
            &token.fence,
            &token.owner,
            &from_instance,
            &req.to_role,
            &req.reason,
            &req.state,
            &steps,
            &now,
        ],
    )
    .await?;
    let Some(r) = found else {
        return Err(read::stale(tx, token).await);
    };
    let id: i64 = r.try_get(0)?;
    let data = json!({ "handoff": id, "to_role": req.to_role, "reason": req.reason });
    claim_event(tx, now, token, "handoff-requested", &data).await?;
    Ok(id)
}

/// One handoff, locked for the rest of the transaction.
async fn load_handoff(tx: &Tx<'_>, id: i64) -> R<HandoffRow> {
    exec(
        tx,
        "SELECT 1 FROM handoffs WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?;
    read::handoff(tx, id)
        .await?
        .ok_or_else(|| E::Store(StoreError::NotFound(format!("handoff {id}"))))
}

/// A person accepts a handoff (idempotent for an accepted one).
pub(crate) async fn accept_handoff(tx: &Tx<'_>, id: i64, now: i64) -> R<HandoffRow> {
    let h = load_handoff(tx, id).await?;
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
        "UPDATE handoffs SET state = 'accepted', updated_ms = $1 WHERE id = $2",
        &[&now, &id],
    )
    .await?;
    let data = json!({ "handoff": id });
    event(
        tx,
        now,
        Some(&h.task),
        Some(h.fence),
        "user",
        "handoff-accepted",
        &data,
    )
    .await?;
    load_handoff(tx, id).await
}

/// A person rejects a handoff; the task made from it, if it has not started, is skipped.
pub(crate) async fn reject_handoff(tx: &Tx<'_>, id: i64, reason: &str, now: i64) -> R<HandoffRow> {
    let h = load_handoff(tx, id).await?;
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
        "UPDATE handoffs SET state = 'rejected', reject_reason = $1, updated_ms = $2 WHERE id = $3",
        &[&reason, &now, &id],
    )
    .await?;
    let data = json!({ "handoff": id, "reason": reason });
    event(
        tx,
        now,
        Some(&h.task),
        Some(h.fence),
        "user",
        "handoff-rejected",
        &data,
    )
    .await?;
    if let Some(t) = &h.new_task {
        let why = format!("handoff {id} rejected: {reason}");
        let data = json!({ "reason": why, "handoff": id });
        skip_pending(tx, t, &why, &data, now, "user").await?;
    }
    load_handoff(tx, id).await
}

/// A handoff of the task that just succeeded became task `new_task`.
pub(crate) async fn accept_converted(
    tx: &Tx<'_>,
    token: &ClaimToken,
    h: i64,
    new_task: &str,
    now: i64,
    waits: bool,
) -> R<()> {
    // A task that waits for a person leaves its handoff as it is (pending, or accepted
    // by a person before the source finished): see the SQLite store.
    let state = if waits { "state" } else { "'accepted'" };
    let n = exec(
        tx,
        &format!(
            "UPDATE handoffs SET state = {state}, new_task = $1, updated_ms = $2
             WHERE id = $3 AND task = $4 AND state IN ('pending', 'accepted')"
        ),
        &[&new_task, &now, &h, &token.task],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "handoff {h} is not a pending handoff of task {}",
            token.task
        ))
        .into());
    }
    let data = json!({ "handoff": h, "new_task": new_task });
    let kind = if waits {
        "handoff-awaiting"
    } else {
        "handoff-accepted"
    };
    claim_event(tx, now, token, kind, &data).await
}

/// Pending handoffs of a task whose attempt did not succeed are dropped.
pub(crate) async fn drop_handoffs(tx: &Tx<'_>, task: &str, now: i64, actor: &str) -> R<()> {
    let ids: Vec<i64> = read::column(
        tx,
        "SELECT id FROM handoffs WHERE task = $1 AND state = 'pending' ORDER BY id",
        task,
    )
    .await?;
    for h in ids {
        exec(
            tx,
            "UPDATE handoffs SET state = 'dropped', updated_ms = $1 WHERE id = $2",
            &[&now, &h],
        )
        .await?;
        let data = json!({ "handoff": h });
        event(tx, now, Some(task), None, actor, "handoff-dropped", &data).await?;
    }
    Ok(())
}
