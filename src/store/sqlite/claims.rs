//! The claim life cycle: claim, heartbeat, start, finish (releases of claims whose
//! owner died or whose lease ran out are in `release`).
//!
//! Every owner write checks `(task, fence, status = 'running', owner)` in the WHERE of
//! the very statement that writes, so there is no window between the check and the
//! write; a miss becomes `StaleClaim` and the transaction rolls back untouched.

use super::handoffs::drop_handoffs;
use super::read::{self, claim_event, event, exec};
use super::release::interrupt_attempts_of;
use super::{handoffs, tasks, E, R};
use crate::outcome::Status;
use crate::store::*;
use rusqlite::{named_params, params, OptionalExtension, Transaction};
use serde_json::json;

/// Milliseconds of a duration, saturating (a lease of centuries is still a lease).
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Filters shared by both halves of the claim query. The dependency test is a NOT
/// EXISTS over task_deps joined to tasks; a LEFT JOIN so that a dependency on an id the
/// store does not know counts as not satisfied. A task made from a handoff that still
/// waits for a person (the handoff is `pending`) is not claimable (the same filter as
/// `agents::NOT_AWAITING`).
const CLAIMABLE: &str = "
      t.not_before_ms <= :now
  AND t.counted_attempts < t.max_attempts
  AND t.role IN (SELECT value FROM json_each(:roles))
  AND (t.instance IS NULL OR t.instance IN (SELECT value FROM json_each(:idle)))
  AND (:any_id OR t.id IN (SELECT value FROM json_each(:only)))
  AND (NOT :scoped OR EXISTS (SELECT 1 FROM run_scope s WHERE s.owner = :owner AND s.task = t.id))
  AND (t.from_handoff IS NULL OR NOT EXISTS
      (SELECT 1 FROM handoffs h WHERE h.id = t.from_handoff AND h.state = 'pending'))
  AND NOT EXISTS (SELECT 1 FROM task_deps d LEFT JOIN tasks p ON p.id = d.dep
                  WHERE d.task = t.id AND (p.status IS NULL OR p.status <> 'succeeded'))";

/// The claim query: the best pending task and the best task whose lease expired (lazy
/// takeover), then the better of the two. Two halves instead of one
/// `status = 'pending' OR ...` so SQLite can walk an index in order and stop at the
/// first claimable row: pending tasks through the partial index `tasks_ready` (pending
/// and no unmet dependency, a trigger-kept count), expired ones through `tasks_lease`.
/// The NOT EXISTS dependency test stays as the authoritative check; on rows of
/// `tasks_ready` it is a few index probes. Built once: it is the same for every claim.
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT id, status FROM (
           SELECT * FROM (SELECT t.id, t.status, t.priority, t.ord FROM tasks t INDEXED BY tasks_ready
                          WHERE t.status = 'pending' AND t.unmet = 0 AND {CLAIMABLE}
                          ORDER BY t.priority DESC, t.ord, t.id LIMIT 1)
           UNION ALL
           SELECT * FROM (SELECT t.id, t.status, t.priority, t.ord FROM tasks t
                          WHERE t.status = 'running' AND t.lease_expires_ms < :now AND {CLAIMABLE}
                          ORDER BY t.priority DESC, t.ord, t.id LIMIT 1))
         ORDER BY priority DESC, ord, id LIMIT 1"
    )
});

/// Claims the best ready task, in one transaction (the caller's BEGIN IMMEDIATE).
pub(crate) fn claim_next(tx: &Transaction<'_>, req: &ClaimRequest) -> R<Option<Claim>> {
    if req.roles.is_empty() {
        return Ok(None);
    }
    let Some((id, status)) = pick(tx, req)? else {
        return Ok(None);
    };
    if status == "running" {
        take_over(tx, &id, req)?;
    }
    let (fence, attempt) = mark_claimed(tx, &id, req)?;
    let task =
        read::task(tx, &id)?.ok_or_else(|| E::Store(StoreError::NotFound(format!("task {id}"))))?;
    let instance = match task.instance {
        None => reuse_instance(tx, &id, &task.role, req)?,
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

/// The best claimable task and its status (`pending`, or `running` with its lease
/// expired), if any.
fn pick(tx: &Transaction<'_>, req: &ClaimRequest) -> R<Option<(String, String)>> {
    let roles = serde_json::to_string(&req.roles)?;
    let idle = serde_json::to_string(&req.idle_instances)?;
    let only = serde_json::to_string(&req.only)?;
    let mut st = tx.prepare_cached(&CLAIM_SQL)?;
    Ok(st
        .query_row(
            named_params! {
                ":now": req.now_ms, ":roles": roles, ":idle": idle, ":only": only,
                ":any_id": req.only.is_empty(), ":scoped": req.scoped, ":owner": req.owner,
            },
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Lazy takeover: the previous claim's lease ran out. Its attempt (if it got as far as
/// starting) is over as far as the store is concerned, and so are the handoffs it
/// requested (as on `release_expired`: they only count if that attempt succeeds).
fn take_over(tx: &Transaction<'_>, id: &str, req: &ClaimRequest) -> R<()> {
    let (old_fence, old_owner): (i64, Option<String>) = tx
        .prepare_cached("SELECT fence, owner FROM tasks WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    interrupt_attempts_of(tx, id, req.now_ms, "lease expired", &req.owner)?;
    drop_handoffs(tx, id, req.now_ms, &req.owner)?;
    super::coord::end_claim_leases(tx, id, old_fence)?;
    event(
        tx,
        req.now_ms,
        Some(id),
        Some(old_fence),
        &req.owner,
        "lease-expired",
        &json!({ "previous_owner": old_owner, "taken_over_by": req.owner }),
    )
}

/// The task becomes the requester's claim: running, new fence, one more attempt, a
/// fresh lease. Returns (fence, attempt).
fn mark_claimed(tx: &Transaction<'_>, id: &str, req: &ClaimRequest) -> R<(i64, i64)> {
    let now = req.now_ms;
    let lease_until = now.saturating_add(ms(req.lease));
    let (fence, attempt): (i64, i64) = {
        let mut st = tx.prepare_cached(
            "UPDATE tasks SET status = 'running', owner = ?2, fence = fence + 1, attempts = attempts + 1,
                    lease_expires_ms = ?3, heartbeat_ms = ?4, updated_ms = ?4
             WHERE id = ?1 RETURNING fence, attempts",
        )?;
        st.query_row(params![id, req.owner, lease_until, now], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
    };
    event(
        tx,
        now,
        Some(id),
        Some(fence),
        &req.owner,
        "claimed",
        &json!({ "attempt": attempt, "lease_expires_ms": lease_until }),
    )?;
    Ok((fence, attempt))
}

/// The first idle instance of the task's role the requester offered that can be
/// taken for this task, taken.
fn reuse_instance(
    tx: &Transaction<'_>,
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
        if super::misc::acquire_instance(tx, &row)? {
            return Ok(Some(candidate.clone()));
        }
    }
    Ok(None)
}

/// Registers tasks in an owner's claim scope (idempotent).
pub(crate) fn add_scope(tx: &Transaction<'_>, owner: &str, ids: &[String]) -> R<()> {
    let mut st =
        tx.prepare_cached("INSERT OR IGNORE INTO run_scope (owner, task) VALUES (?1, ?2)")?;
    for id in ids {
        st.execute(params![owner, id])?;
    }
    Ok(())
}

/// Renews the lease of a live claim.
pub(crate) fn heartbeat(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    lease: Duration,
    now: i64,
) -> R<()> {
    let mut st = tx.prepare_cached(
        "UPDATE tasks SET lease_expires_ms = ?1, heartbeat_ms = ?2
         WHERE id = ?3 AND fence = ?4 AND status = 'running' AND owner = ?5",
    )?;
    let n = st.execute(params![
        now.saturating_add(ms(lease)),
        now,
        token.task,
        token.fence,
        token.owner
    ])?;
    if n == 0 {
        return Err(read::stale(tx, token));
    }
    // No event: a heartbeat every few seconds per task would drown the log; the lease
    // itself is in the task row.
    Ok(())
}

/// Records the start of the claim's attempt (again, if called twice: the shim pid first,
/// claude's pid later). The attempt number is the task's attempt counter, taken in the
/// same statement as the fence check.
pub(crate) fn start_attempt(tx: &Transaction<'_>, token: &ClaimToken, s: &AttemptStart) -> R<()> {
    let n = {
        let mut st = tx.prepare_cached(
            "INSERT INTO attempts (task, attempt, fence, owner, status, instance, uid, shim_pid, pid, pgid,
                                   start_time, boot_id, stdout_log, stderr_log, resume_session, started_ms)
             SELECT t.id, t.attempts, t.fence, t.owner, 'running', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14
             FROM tasks t WHERE t.id = ?1 AND t.fence = ?2 AND t.status = 'running' AND t.owner = ?3
             ON CONFLICT (task, attempt) DO UPDATE SET
                 instance = excluded.instance, uid = excluded.uid, shim_pid = excluded.shim_pid,
                 pid = excluded.pid, pgid = excluded.pgid, start_time = excluded.start_time,
                 boot_id = excluded.boot_id, stdout_log = excluded.stdout_log,
                 stderr_log = excluded.stderr_log, resume_session = excluded.resume_session
             WHERE attempts.fence = excluded.fence AND attempts.status = 'running'",
        )?;
        st.execute(params![
            token.task,
            token.fence,
            token.owner,
            s.instance,
            s.uid,
            s.shim_pid,
            s.pid,
            s.pgid,
            // clock ticks since boot: far below 2^63
            s.start_time as i64,
            s.boot_id,
            s.stdout_log,
            s.stderr_log,
            s.resume_session,
            s.now_ms,
        ])?
    };
    if n == 0 {
        return Err(read::stale(tx, token));
    }
    let attempt: i64 = tx
        .prepare_cached("SELECT attempts FROM tasks WHERE id = ?1")?
        .query_row([&token.task], |r| r.get(0))?;
    claim_event(
        tx,
        s.now_ms,
        token,
        "started",
        &json!({ "attempt": attempt, "instance": s.instance, "pid": s.pid, "pgid": s.pgid, "uid": s.uid }),
    )?;
    Ok(())
}

/// Ends the claim's attempt and moves the task on (see `Disposition`), all in the
/// caller's transaction: the task row (the fence check), the attempt row, the
/// instance, the event, then what the outcome means for other tasks and handoffs.
pub(crate) fn finish_attempt(tx: &Transaction<'_>, token: &ClaimToken, f: &AttemptFinish) -> R<()> {
    // Refuse nonsense before writing anything.
    let next = NextState::of(token, &f.disposition)?;
    let record = f.record.to_string();
    let Some(attempt) = end_claim(tx, token, f, &next, &record)? else {
        // The same finish sent twice (the caller did not hear the first answer, as a
        // PostgreSQL client can lose it with its connection) is done, not stale.
        if already_finished(tx, token, f)? {
            return Ok(());
        }
        return Err(read::stale(tx, token));
    };
    super::coord::end_claim_leases(tx, &token.task, token.fence)?;
    write_attempt_row(tx, token, f, attempt, &record)?;
    free_instance(tx, token, f.now_ms)?;
    let kind = match &f.disposition {
        Disposition::Retry { .. } => "retry",
        _ => next.status.as_str(),
    };
    claim_event(
        tx,
        f.now_ms,
        token,
        kind,
        &json!({ "attempt": attempt, "attempt_status": f.status, "cost_usd": f.cost_usd,
                 "not_before_ms": next.not_before, "counts": next.counts }),
    )?;
    apply_outcome(tx, token, f, next.status)
}

/// What a finish makes of the task.
struct NextState {
    /// The task's new status: a final one, or pending for a retry.
    status: Status,
    /// A retry waits until then.
    not_before: Option<i64>,
    /// Whether the attempt uses up one of the task's retries.
    counts: bool,
}

impl NextState {
    fn of(token: &ClaimToken, d: &Disposition) -> R<NextState> {
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
/// live one (else `None`: stale, or this finish already recorded). Returns the attempt number.
fn end_claim(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    f: &AttemptFinish,
    next: &NextState,
    record: &str,
) -> R<Option<i64>> {
    let attempt: Option<i64> = {
        let mut st = tx.prepare_cached(
            "UPDATE tasks SET status = ?1, owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
                    not_before_ms = COALESCE(?2, not_before_ms), counted_attempts = counted_attempts + ?3,
                    last_record = ?4, updated_ms = ?5
             WHERE id = ?6 AND fence = ?7 AND status = 'running' AND owner = ?8
             RETURNING attempts",
        )?;
        st.query_row(
            params![
                next.status.as_str(),
                next.not_before,
                i64::from(next.counts),
                record,
                f.now_ms,
                token.task,
                token.fence,
                token.owner
            ],
            |r| r.get(0),
        )
        .optional()?
    };
    Ok(attempt)
}

/// Whether this very finish is already recorded: the claim's fence is still the
/// task's, the task no longer runs, and the claim's attempt row ended at this finish's
/// time with its status.
fn already_finished(tx: &Transaction<'_>, token: &ClaimToken, f: &AttemptFinish) -> R<bool> {
    let mut st = tx.prepare_cached(
        "SELECT 1 FROM tasks t JOIN attempts a ON a.task = t.id AND a.fence = t.fence
         WHERE t.id = ?1 AND t.fence = ?2 AND t.status <> 'running'
           AND a.finished_ms = ?3 AND a.status = ?4",
    )?;
    Ok(st.exists(params![
        token.task,
        token.fence,
        f.now_ms,
        f.status.as_str()
    ])?)
}

/// The attempt row: normally written by start_attempt; an attempt that never started
/// (spawn failure before start was recorded) gets its row now.
fn write_attempt_row(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    f: &AttemptFinish,
    attempt: i64,
    record: &str,
) -> R<()> {
    let now = f.now_ms;
    let n = exec(
        tx,
        "UPDATE attempts SET status = ?1, record = ?2, finished_ms = ?3, cost_usd = ?4
         WHERE task = ?5 AND attempt = ?6 AND fence = ?7",
        params![
            f.status.as_str(),
            record,
            now,
            f.cost_usd,
            token.task,
            attempt,
            token.fence
        ],
    )?;
    if n == 0 {
        exec(tx,
            "INSERT INTO attempts (task, attempt, fence, owner, status, record, cost_usd, started_ms, finished_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![token.task, attempt, token.fence, token.owner, f.status.as_str(), record, f.cost_usd, now],
        )?;
    }
    Ok(())
}

/// The instance that ran it is free again, in the same commit (one fewer per attempt).
fn free_instance(tx: &Transaction<'_>, token: &ClaimToken, now: i64) -> R<()> {
    exec(
        tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = ?1
         WHERE current_task = ?2 AND owner = ?3 AND state = 'busy'",
        params![now, token.task, token.owner],
    )?;
    Ok(())
}

/// What the task's new status means for the rest: a success inserts the tasks its
/// handoffs became; a retry drops its handoff requests (the next attempt asks again),
/// except a usage-limited one's, whose session is resumed; any other end skips the
/// task's dependents and drops its handoffs.
fn apply_outcome(
    tx: &Transaction<'_>,
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
                tasks::insert_new(tx, nt, now, from, &token.owner, Some(&token.task))?;
            }
            for (h, new_task) in &f.converted_handoffs {
                let waits = f
                    .new_tasks
                    .iter()
                    .any(|t| t.id == *new_task && t.awaits_person);
                handoffs::accept_converted(tx, token, *h, new_task, now, waits)?;
            }
        }
        Status::Pending if f.status != Status::RateLimited => {
            handoffs::drop_handoffs(tx, &token.task, now, &token.owner)?;
        }
        Status::Pending => {}
        _ => {
            tasks::skip_dependents(
                tx,
                &token.task,
                &format!("dependency {} {}", token.task, status),
                now,
                &token.owner,
            )?;
            handoffs::drop_handoffs(tx, &token.task, now, &token.owner)?;
        }
    }
    Ok(())
}
