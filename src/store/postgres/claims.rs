//! The claim life cycle on PostgreSQL: claim, heartbeat, start, finish (releases are
//! in `release`). The same steps, checks and events as the SQLite store's `claims`.
//!
//! The claim picks its row with `FOR UPDATE SKIP LOCKED`: concurrent claimers never
//! wait for each other and never get the same row; a row whose claim or lease changed
//! under the lock is re-checked against the filters (a task taken over or renewed a
//! moment ago is passed over). Every owner write checks `(task, fence, status =
//! 'running', owner)` in the WHERE of the statement that writes.

use super::engine::Tx;
use super::errors::{E, R};
use super::read::{self, claim_event, event, exec, row};
use super::release::interrupt_attempts_of;
use super::{handoffs, misc, tasks};
use crate::outcome::Status;
use crate::store::*;
use serde_json::json;
use tokio_postgres::types::ToSql;

/// Milliseconds of a duration, saturating.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What makes a task claimable besides its status and dependencies: a task made from
/// a handoff that still waits for a person (the handoff is `pending`) is not.
const CLAIMABLE: &str = "t.not_before_ms <= $1
  AND t.counted_attempts < t.max_attempts
  AND t.role = ANY($2::text[])
  AND (t.instance IS NULL OR t.instance = ANY($3::text[]))
  AND (cardinality($4::text[]) = 0 OR t.id = ANY($4::text[]))
  AND (NOT $5::boolean OR EXISTS (SELECT 1 FROM run_scope s WHERE s.owner = $6 AND s.task = t.id))
  AND (t.from_handoff IS NULL OR NOT EXISTS
      (SELECT 1 FROM handoffs h WHERE h.id = t.from_handoff AND h.state = 'pending'))";

/// No dependency unmet, a dependency on an id the store does not know counting as
/// unmet (LEFT JOIN). The authoritative check beside the trigger-kept count; on ready
/// tasks a few index probes (an anti join, kept out of the `CASE` below so that it
/// stays one: inside, the planner hashes every unmet dependency of the store instead).
const DEPS_MET: &str = "NOT EXISTS (SELECT 1 FROM task_deps d LEFT JOIN tasks p ON p.id = d.dep
                  WHERE d.task = t.id AND (p.status IS NULL OR p.status <> 'succeeded'))";

/// The claim query: the best pending task and the best task whose lease expired (lazy
/// takeover), each locked with SKIP LOCKED, then the better of the two. Two halves so
/// each walks an index in order and stops at the first claimable row: pending tasks
/// through `tasks_ready` (pending, no unmet dependency: a trigger-kept count), expired
/// ones through `tasks_lease`. Returns `(id, status)`.
///
/// The claimable test is wrapped in one `CASE` on purpose. Run with a generic plan
/// (see `hot`), the planner cannot see the parameters, multiplies default
/// selectivities of the separate conditions down to "one row matches", and so sorts
/// every ready task instead of walking the index to the first (5 ms instead of 0.2 ms
/// at 10 000 tasks). One opaque condition is estimated to pass half the rows, which
/// makes the ordered walk the plan; each row it walks is tested the same way.
pub(super) static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let claimable = format!("CASE WHEN {CLAIMABLE} THEN true ELSE false END");
    format!(
        "WITH ready AS MATERIALIZED (
           SELECT t.id, t.status, t.priority, t.ord FROM tasks t
           WHERE t.status = 'pending' AND t.unmet = 0 AND {claimable} AND {DEPS_MET}
           ORDER BY t.priority DESC, t.ord, t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED),
         expired AS MATERIALIZED (
           SELECT t.id, t.status, t.priority, t.ord FROM tasks t
           WHERE t.status = 'running' AND t.lease_expires_ms < $1 AND {claimable} AND {DEPS_MET}
           ORDER BY t.priority DESC, t.ord, t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED)
         SELECT id, status FROM (SELECT * FROM ready UNION ALL SELECT * FROM expired) best
         ORDER BY priority DESC, ord, id LIMIT 1"
    )
});

/// Claims the best ready task, in the caller's transaction.
pub(crate) async fn claim_next(tx: &Tx<'_>, req: &ClaimRequest) -> R<Option<Claim>> {
    if req.roles.is_empty() {
        return Ok(None);
    }
    let Some((id, status)) = pick(tx, req).await? else {
        return Ok(None);
    };
    if status == "running" {
        take_over(tx, &id, req).await?;
    }
    let (fence, attempt) = mark_claimed(tx, &id, req).await?;
    let task = read::task(tx, &id)
        .await?
        .ok_or_else(|| E::Store(StoreError::NotFound(format!("task {id}"))))?;
    let instance = match task.instance {
        None => reuse_instance(tx, &id, &task.role, req).await?,
        Some(_) => None,
    };
    Ok(Some(Claim {
        token: ClaimToken {
            task: id,
            fence,
            owner: req.owner.clone(),
        },
        task,
        attempt,
        instance,
    }))
}

/// The parameters `$1`..`$6` of `CLAIM_SQL`.
pub(super) fn claim_params(req: &ClaimRequest) -> [&(dyn ToSql + Sync); 6] {
    [
        &req.now_ms,
        &req.roles,
        &req.idle_instances,
        &req.only,
        &req.scoped,
        &req.owner,
    ]
}

/// The best claimable task and its status, locked for this transaction.
async fn pick(tx: &Tx<'_>, req: &ClaimRequest) -> R<Option<(String, String)>> {
    let found = row(tx, &CLAIM_SQL, &claim_params(req)).await?;
    match found {
        Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
        None => Ok(None),
    }
}

/// Lazy takeover: the previous claim's lease ran out; its attempt is over.
async fn take_over(tx: &Tx<'_>, id: &str, req: &ClaimRequest) -> R<()> {
    let r = row(tx, "SELECT fence, owner FROM tasks WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| E::Store(StoreError::NotFound(format!("task {id}"))))?;
    let (old_fence, old_owner): (i64, Option<String>) = (r.try_get(0)?, r.try_get(1)?);
    interrupt_attempts_of(tx, id, req.now_ms, "lease expired", &req.owner).await?;
    // As on release_expired: the old attempt's requested handoffs go with it.
    handoffs::drop_handoffs(tx, id, req.now_ms, &req.owner).await?;
    super::coord::end_claim_leases(tx, id, old_fence).await?;
    event(
        tx,
        req.now_ms,
        Some(id),
        Some(old_fence),
        &req.owner,
        "lease-expired",
        &json!({ "previous_owner": old_owner, "taken_over_by": req.owner }),
    )
    .await
}

/// The task becomes the requester's claim. Returns (fence, attempt).
async fn mark_claimed(tx: &Tx<'_>, id: &str, req: &ClaimRequest) -> R<(i64, i64)> {
    let now = req.now_ms;
    let lease_until = now.saturating_add(ms(req.lease));
    let r = row(
        tx,
        "UPDATE tasks SET status = 'running', owner = $2, fence = fence + 1, attempts = attempts + 1,
                lease_expires_ms = $3, heartbeat_ms = $4, updated_ms = $4
         WHERE id = $1 RETURNING fence, attempts",
        &[&id, &req.owner, &lease_until, &now],
    )
    .await?
    .ok_or_else(|| E::Store(StoreError::NotFound(format!("task {id}"))))?;
    let (fence, attempt): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    event(
        tx,
        now,
        Some(id),
        Some(fence),
        &req.owner,
        "claimed",
        &json!({ "attempt": attempt, "lease_expires_ms": lease_until }),
    )
    .await?;
    Ok((fence, attempt))
}

/// The first offered idle instance of the task's role that can be taken, taken.
async fn reuse_instance(
    tx: &Tx<'_>,
    id: &str,
    role: &str,
    req: &ClaimRequest,
) -> R<Option<String>> {
    for (r, candidate) in req.reuse.iter().filter(|(r, _)| r == role) {
        let row = InstanceRow {
            id: candidate.clone(),
            role: r.clone(),
            state: "busy".into(),
            current_task: Some(id.to_string()),
            owner: Some(req.owner.clone()),
            updated_ms: req.now_ms,
        };
        if misc::acquire_instance(tx, &row).await? {
            return Ok(Some(candidate.clone()));
        }
    }
    Ok(None)
}

/// Registers tasks in an owner's claim scope (idempotent).
pub(crate) async fn add_scope(tx: &Tx<'_>, owner: &str, ids: &[String]) -> R<()> {
    exec(
        tx,
        "INSERT INTO run_scope (owner, task) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        &[&owner, &ids],
    )
    .await?;
    Ok(())
}

/// Renews the lease of a live claim.
pub(crate) async fn heartbeat(tx: &Tx<'_>, token: &ClaimToken, lease: Duration, now: i64) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET lease_expires_ms = $1, heartbeat_ms = $2
         WHERE id = $3 AND fence = $4 AND status = 'running' AND owner = $5",
        &[
            &now.saturating_add(ms(lease)),
            &now,
            &token.task,
            &token.fence,
            &token.owner,
        ],
    )
    .await?;
    if n == 0 {
        return Err(read::stale(tx, token).await);
    }
    Ok(())
}

/// Why a start was refused (`fast::start` found no live claim): `StaleClaim` with the
/// task's current fence, or `NotFound`.
pub(crate) async fn start_refused(tx: &Tx<'_>, token: &ClaimToken) -> R<()> {
    Err(read::stale(tx, token).await)
}

/// Ends the claim's attempt and moves the task on, all in the caller's transaction.
pub(crate) async fn finish_attempt(tx: &Tx<'_>, token: &ClaimToken, f: &AttemptFinish) -> R<()> {
    let next = NextState::of(token, &f.disposition)?;
    let record = f.record.to_string();
    let Some(attempt) = end_claim(tx, token, f, &next, &record).await? else {
        // This very finish may have committed on a connection lost before it answered.
        if already_finished(&**tx, token, f).await? {
            return Ok(());
        }
        return Err(read::stale(tx, token).await);
    };
    super::coord::end_claim_leases(tx, &token.task, token.fence).await?;
    write_attempt_row(tx, token, f, attempt, &record).await?;
    exec(
        tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = $1
         WHERE current_task = $2 AND owner = $3 AND state = 'busy'",
        &[&f.now_ms, &token.task, &token.owner],
    )
    .await?;
    let kind = next.event_kind(&f.disposition);
    claim_event(
        tx,
        f.now_ms,
        token,
        kind,
        &json!({ "attempt": attempt, "attempt_status": f.status, "cost_usd": f.cost_usd,
                 "not_before_ms": next.not_before, "counts": next.counts }),
    )
    .await?;
    apply_outcome(tx, token, f, next.status).await
}

/// What a finish makes of the task.
pub(super) struct NextState {
    /// The task's new status: a final one, or pending for a retry.
    pub status: Status,
    /// A retry waits until then.
    pub not_before: Option<i64>,
    /// Whether the attempt uses up one of the task's retries.
    pub counts: bool,
}

impl NextState {
    /// The kind of the finish's event: `retry`, or the final status.
    pub(super) fn event_kind(&self, d: &Disposition) -> &'static str {
        match d {
            Disposition::Retry { .. } => "retry",
            _ => self.status.as_str(),
        }
    }

    /// The next state a disposition asks for; a non-final status given as final is
    /// refused.
    pub(super) fn of(token: &ClaimToken, d: &Disposition) -> R<NextState> {
        let (status, not_before, counts) = match d {
            Disposition::Succeeded | Disposition::Final(Status::Succeeded) => {
                (Status::Succeeded, None, false)
            }
            Disposition::Final(s) if s.is_terminal() => (*s, None, false),
            Disposition::Final(s) => {
                return Err(StoreError::Conflict(format!(
                    "finish of task {}: {s} is not a final status",
                    token.task
                ))
                .into());
            }
            Disposition::Retry {
                not_before_ms,
                counts,
            } => (Status::Pending, Some(*not_before_ms), *counts),
        };
        Ok(NextState {
            status,
            not_before,
            counts,
        })
    }
}

/// Moves the task to its next state and clears the claim, if the claim is still the
/// live one (else `None`). Returns the attempt number.
async fn end_claim(
    tx: &Tx<'_>,
    token: &ClaimToken,
    f: &AttemptFinish,
    next: &NextState,
    record: &str,
) -> R<Option<i64>> {
    let counted = i64::from(next.counts);
    let found = row(
        tx,
        "UPDATE tasks SET status = $1, owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
                not_before_ms = COALESCE($2, not_before_ms), counted_attempts = counted_attempts + $3,
                last_record = $4, updated_ms = $5
         WHERE id = $6 AND fence = $7 AND status = 'running' AND owner = $8
         RETURNING attempts",
        &[
            &next.status.as_str(),
            &next.not_before,
            &counted,
            &record,
            &f.now_ms,
            &token.task,
            &token.fence,
            &token.owner,
        ],
    )
    .await?;
    Ok(match found {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// The attempt row: normally written by start_attempt; an attempt that never started
/// gets its row now.
async fn write_attempt_row(
    tx: &Tx<'_>,
    token: &ClaimToken,
    f: &AttemptFinish,
    attempt: i64,
    record: &str,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE attempts SET status = $1, record = $2, finished_ms = $3, cost_usd = $4
         WHERE task = $5 AND attempt = $6 AND fence = $7",
        &[
            &f.status.as_str(),
            &record,
            &f.now_ms,
            &f.cost_usd,
            &token.task,
            &attempt,
            &token.fence,
        ],
    )
    .await?;
    if n == 0 {
        exec(tx,
            "INSERT INTO attempts (task, attempt, fence, owner, status, record, cost_usd, started_ms, finished_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            &[&token.task, &attempt, &token.fence, &token.owner, &f.status.as_str(), &record, &f.cost_usd, &f.now_ms],
        ).await?;
    }
    Ok(())
}

/// What the task's new status means for the rest (see the SQLite store's
/// `apply_outcome`: the same three cases).
async fn apply_outcome(
    tx: &Tx<'_>,
    token: &ClaimToken,
    f: &AttemptFinish,
    status: Status,
) -> R<()> {
    let now = f.now_ms;
    match status {
        Status::Succeeded => {
            for nt in &f.new_tasks {
                let from = f
                    .converted_handoffs
                    .iter()
                    .find(|(_, t)| *t == nt.id)
                    .map(|(h, _)| *h);
                tasks::insert_new(tx, nt, now, from, &token.owner, Some(&token.task)).await?;
            }
            for (h, new_task) in &f.converted_handoffs {
                let waits = f
                    .new_tasks
                    .iter()
                    .any(|t| t.id == *new_task && t.awaits_person);
                handoffs::accept_converted(tx, token, *h, new_task, now, waits).await?;
            }
        }
        Status::Pending if f.status != Status::RateLimited => {
            handoffs::drop_handoffs(tx, &token.task, now, &token.owner).await?;
        }
        Status::Pending => {}
        _ => {
            let why = format!("dependency {} {}", token.task, status);
            tasks::skip_dependents(tx, &token.task, &why, now, &token.owner).await?;
            handoffs::drop_handoffs(tx, &token.task, now, &token.owner).await?;
        }
    }
    Ok(())
}

/// Whether this very finish is already recorded: the claim's fence is still the
/// task's, the task no longer runs, and the claim's attempt row ended at this finish's
/// time with its status. A finish retried after its first answer was lost then
/// reports success instead of a stale claim.
pub(crate) async fn already_finished<C: tokio_postgres::GenericClient>(
    c: &C,
    token: &ClaimToken,
    f: &AttemptFinish,
) -> R<bool> {
    // Rare (a lost answer, a stale claim): not worth a cached statement.
    let found = c
        .query_opt(
            "SELECT 1 FROM tasks t JOIN attempts a ON a.task = t.id AND a.fence = t.fence
             WHERE t.id = $1 AND t.fence = $2 AND t.status <> 'running'
               AND a.finished_ms = $3 AND a.status = $4",
            &[&token.task, &token.fence, &f.now_ms, &f.status.as_str()],
        )
        .await?;
    Ok(found.is_some())
}
