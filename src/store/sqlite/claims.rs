//! The claim life cycle: claim, heartbeat, start, finish (releases of claims whose
//! owner died or whose lease ran out are in `release`).
//!
//! Every owner write checks `(task, fence, status = 'running', owner)` in the WHERE of
//! the very statement that writes, so there is no window between the check and the
//! write; a miss becomes `StaleClaim` and the transaction rolls back untouched.

use super::read::{self, claim_event, event, exec};
use super::release::interrupt_attempts_of;
use super::{tasks, E, R};
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
/// store does not know counts as not satisfied.
const CLAIMABLE: &str = "
      t.not_before_ms <= :now
  AND t.counted_attempts < t.max_attempts
  AND t.role IN (SELECT value FROM json_each(:roles))
  AND (t.instance IS NULL OR t.instance IN (SELECT value FROM json_each(:idle)))
  AND (:any_id OR t.id IN (SELECT value FROM json_each(:only)))
  AND (NOT :scoped OR EXISTS (SELECT 1 FROM run_scope s WHERE s.owner = :owner AND s.task = t.id))
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
    let now = req.now_ms;
    let roles = serde_json::to_string(&req.roles)?;
    let idle = serde_json::to_string(&req.idle_instances)?;
    let only = serde_json::to_string(&req.only)?;
    let picked: Option<(String, String)> = {
        let mut st = tx.prepare_cached(&CLAIM_SQL)?;
        st.query_row(
            named_params! {
                ":now": now, ":roles": roles, ":idle": idle, ":only": only,
                ":any_id": req.only.is_empty(), ":scoped": req.scoped, ":owner": req.owner,
            },
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    };
    let Some((id, status)) = picked else {
        return Ok(None);
    };
    if status == "running" {
        // Lazy takeover: the previous claim's lease ran out. Its attempt (if it got as
        // far as starting) is over as far as the store is concerned.
        let (old_fence, old_owner): (i64, Option<String>) = tx
            .prepare_cached("SELECT fence, owner FROM tasks WHERE id = ?1")?
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        interrupt_attempts_of(tx, &id, now, "lease expired", &req.owner)?;
        event(
            tx,
            now,
            Some(&id),
            Some(old_fence),
            &req.owner,
            "lease-expired",
            &json!({ "previous_owner": old_owner, "taken_over_by": req.owner }),
        )?;
    }
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
        Some(&id),
        Some(fence),
        &req.owner,
        "claimed",
        &json!({ "attempt": attempt, "lease_expires_ms": lease_until }),
    )?;
    let task =
        read::task(tx, &id)?.ok_or_else(|| E::Store(StoreError::NotFound(format!("task {id}"))))?;
    let mut instance = None;
    if task.instance.is_none() {
        for (role, candidate) in req.reuse.iter().filter(|(r, _)| *r == task.role) {
            let row = InstanceRow {
                id: candidate.clone(),
                role: role.clone(),
                state: "busy".into(),
                current_task: Some(id.clone()),
                owner: Some(req.owner.clone()),
                updated_ms: now,
            };
            if super::misc::acquire_instance(tx, &row)? {
                instance = Some(candidate.clone());
                break;
            }
        }
    }
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

/// Ends the claim's attempt and moves the task on (see `Disposition`).
pub(crate) fn finish_attempt(tx: &Transaction<'_>, token: &ClaimToken, f: &AttemptFinish) -> R<()> {
    let now = f.now_ms;
    // What the task becomes; refuse nonsense before writing anything.
    let (task_status, not_before, counts) = match &f.disposition {
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
    let record = f.record.to_string();
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
                task_status.as_str(),
                not_before,
                i64::from(counts),
                record,
                now,
                token.task,
                token.fence,
                token.owner
            ],
            |r| r.get(0),
        )
        .optional()?
    };
    let Some(attempt) = attempt else {
        return Err(read::stale(tx, token));
    };

    // The attempt row: normally written by start_attempt; an attempt that never started
    // (spawn failure before start was recorded) gets its row now.
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
    // The instance that ran it is free again, in the same commit (one fewer per attempt).
    exec(
        tx,
        "UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = ?1
         WHERE current_task = ?2 AND owner = ?3 AND state = 'busy'",
        params![now, token.task, token.owner],
    )?;

    let kind = match &f.disposition {
        Disposition::Retry { .. } => "retry",
        _ => task_status.as_str(),
    };
    claim_event(
        tx,
        now,
        token,
        kind,
        &json!({ "attempt": attempt, "attempt_status": f.status, "cost_usd": f.cost_usd,
                 "not_before_ms": not_before, "counts": counts }),
    )?;

    match task_status {
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
                let n = exec(
                    tx,
                    "UPDATE handoffs SET state = 'accepted', new_task = ?1, updated_ms = ?2
                     WHERE id = ?3 AND task = ?4 AND state IN ('pending', 'accepted')",
                    params![new_task, now, h, token.task],
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict(format!(
                        "handoff {h} is not a pending handoff of task {}",
                        token.task
                    ))
                    .into());
                }
                claim_event(
                    tx,
                    now,
                    token,
                    "handoff-accepted",
                    &json!({ "handoff": h, "new_task": new_task }),
                )?;
            }
        }
        // A retried attempt did not succeed: its handoff requests are dropped (the next
        // attempt asks again), except a usage-limited one's, whose session is resumed.
        Status::Pending if f.status != Status::RateLimited => {
            drop_handoffs(tx, &token.task, now, &token.owner)?;
        }
        Status::Pending => {}
        _ => {
            tasks::skip_dependents(
                tx,
                &token.task,
                &format!("dependency {} {}", token.task, task_status),
                now,
                &token.owner,
            )?;
            drop_handoffs(tx, &token.task, now, &token.owner)?;
        }
    }
    Ok(())
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
