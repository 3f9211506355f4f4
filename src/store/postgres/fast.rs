//! The claim life cycle's hot path on PostgreSQL: a claim, a start and a finish each as
//! one statement run outside a transaction block, so one round trip each instead of
//! the five to eight of the step-by-step versions in `claims` (BEGIN, a statement per
//! step, COMMIT). The statement is still one transaction: its data-modifying `WITH`
//! parts all happen or none does.
//!
//! Each covers the common case and answers `Slow` for the rest, which the caller then
//! runs step by step in a transaction as before: a claim that would take over an
//! expired lease (it interrupts attempts, drops handoffs, ends file leases); a finish
//! whose outcome touches other rows (new tasks, converted or dropped handoffs, skipped
//! dependents); a finish whose claim is no longer live (the slow path words the
//! error). A start has no slow path: it is always this one statement. The events
//! written are the same kinds with the same data.

use super::claims::{self, NextState, CLAIM_SQL};
use super::errors::R;
use super::hot::Conn;
use super::read::{task_row, TASK_COLS, TASK_COLS_LEN};
use crate::outcome::Status;
use crate::store::*;
use serde_json::json;
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;

/// What a fast path did: all of it, or nothing (the caller runs the slow path).
pub(crate) enum Fast<T> {
    /// Done in one statement.
    Done(T),
    /// Not a case for one statement; nothing was written.
    Slow,
}

/// Pick, claim, take an offered idle instance and write the `claimed` event, in one
/// statement. A picked task whose lease expired (status running) is left alone: the
/// row comes back with `pick_status = 'running'` and no task columns.
static CLAIM_FAST: LazyLock<String> = LazyLock::new(|| {
    let pick = CLAIM_SQL.replacen(
        "SELECT id, status FROM",
        "SELECT id AS pick_id, status AS pick_status FROM",
        1,
    );
    format!(
        "WITH pick AS ({pick}),
         upd AS (
           UPDATE tasks SET status = 'running', owner = $6, fence = fence + 1, attempts = attempts + 1,
                  lease_expires_ms = $7, heartbeat_ms = $1, updated_ms = $1
           FROM pick WHERE tasks.id = pick.pick_id AND pick.pick_status = 'pending'
           RETURNING {TASK_COLS}),
         cand AS (
           SELECT c.iid, c.irole FROM upd
           CROSS JOIN unnest($8::text[], $9::text[]) WITH ORDINALITY AS c(irole, iid, n)
           LEFT JOIN instances i ON i.id = c.iid
           WHERE upd.instance IS NULL AND c.irole = upd.role
             AND (i.id IS NULL OR i.state <> 'busy' OR i.owner IS NULL OR i.owner = $6)
           ORDER BY c.n LIMIT 1),
         inst AS (
           INSERT INTO instances (id, role, state, current_task, owner, updated_ms)
           SELECT cand.iid, cand.irole, 'busy', upd.id, $6, $1 FROM cand CROSS JOIN upd
           ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = 'busy',
               current_task = excluded.current_task, owner = excluded.owner, updated_ms = excluded.updated_ms
           WHERE instances.state <> 'busy' OR instances.owner IS NULL OR instances.owner = excluded.owner
           RETURNING id),
         ev AS (
           INSERT INTO events (at_ms, task, fence, actor, kind, data)
           SELECT $1, upd.id, upd.fence, $6, 'claimed',
                  jsonb_build_object('attempt', upd.attempts, 'lease_expires_ms', $7::bigint)::text
           FROM upd)
         SELECT upd.*, pick.pick_status, (SELECT id FROM inst),
                ARRAY(SELECT dep FROM task_deps WHERE task = pick.pick_id ORDER BY pos)
         FROM pick LEFT JOIN upd ON true"
    )
});

/// Claims the best ready task in one statement, unless it is a takeover.
pub(crate) async fn claim(c: &Conn, req: &ClaimRequest) -> R<Fast<Option<Claim>>> {
    let lease_until = req
        .now_ms
        .saturating_add(i64::try_from(req.lease.as_millis()).unwrap_or(i64::MAX));
    let (reuse_roles, reuse_ids): (Vec<&str>, Vec<&str>) = req
        .reuse
        .iter()
        .map(|(r, i)| (r.as_str(), i.as_str()))
        .unzip();
    let st = c.prepare_cached(&CLAIM_FAST).await?;
    let mut params = claims::claim_params(req).to_vec();
    params.extend([
        &lease_until as &(dyn ToSql + Sync),
        &reuse_roles,
        &reuse_ids,
    ]);
    let found = c.query_opt(&st, &params).await?;
    let Some(r) = found else {
        return Ok(Fast::Done(None));
    };
    let n = TASK_COLS_LEN;
    let pick_status: String = r.try_get(n)?;
    if pick_status != "pending" {
        return Ok(Fast::Slow);
    }
    let mut task = task_row(&r)?;
    let reused: Option<String> = r.try_get(n + 1)?;
    task.depends_on = r.try_get(n + 2)?;
    Ok(Fast::Done(Some(Claim {
        token: ClaimToken {
            task: task.id.clone(),
            fence: task.fence,
            owner: req.owner.clone(),
        },
        attempt: task.attempts,
        instance: if task.instance.is_none() {
            reused
        } else {
            None
        },
        task,
    })))
}

/// The attempt row of a started child and the `started` event, in one statement.
const START_FAST: &str = "
WITH ins AS (
  INSERT INTO attempts (task, attempt, fence, owner, status, instance, uid, shim_pid, pid, pgid,
                        start_time, boot_id, stdout_log, stderr_log, resume_session, started_ms)
  SELECT t.id, t.attempts, t.fence, t.owner, 'running', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
  FROM tasks t WHERE t.id = $1 AND t.fence = $2 AND t.status = 'running' AND t.owner = $3
  ON CONFLICT (task, attempt) DO UPDATE SET
      instance = excluded.instance, uid = excluded.uid, shim_pid = excluded.shim_pid,
      pid = excluded.pid, pgid = excluded.pgid, start_time = excluded.start_time,
      boot_id = excluded.boot_id, stdout_log = excluded.stdout_log,
      stderr_log = excluded.stderr_log, resume_session = excluded.resume_session
  WHERE attempts.fence = excluded.fence AND attempts.status = 'running'
  RETURNING attempt),
ev AS (
  INSERT INTO events (at_ms, task, fence, actor, kind, data)
  SELECT $14, $1, $2, $3, 'started', ($15::text::jsonb || jsonb_build_object('attempt', ins.attempt))::text
  FROM ins)
SELECT attempt FROM ins";

/// Records the start of the claim's attempt in one statement (again, if called twice);
/// `Slow` if the claim is not live (`claims::start_refused` says why). The only way a
/// start is recorded.
pub(crate) async fn start(c: &Conn, token: &ClaimToken, s: &AttemptStart) -> R<Fast<()>> {
    let start_time = s.start_time as i64;
    let data =
        json!({ "instance": s.instance, "pid": s.pid, "pgid": s.pgid, "uid": s.uid }).to_string();
    let st = c.prepare_cached(START_FAST).await?;
    let n = c
        .query(
            &st,
            &[
                &token.task,
                &token.fence,
                &token.owner,
                &s.instance,
                &s.uid,
                &s.shim_pid,
                &s.pid,
                &s.pgid,
                &start_time,
                &s.boot_id,
                &s.stdout_log,
                &s.stderr_log,
                &s.resume_session,
                &s.now_ms,
                &data,
            ],
        )
        .await?
        .len();
    Ok(if n == 0 { Fast::Slow } else { Fast::Done(()) })
}

/// End the claim, its file leases and waits, the attempt row (written now if the
/// attempt never started), free its instance and write the event, in one statement.
const FINISH_FAST: &str = "
WITH fin AS (
  UPDATE tasks SET status = $1, owner = NULL, lease_expires_ms = NULL, heartbeat_ms = NULL,
         not_before_ms = COALESCE($2, not_before_ms), counted_attempts = counted_attempts + $3,
         last_record = $4, updated_ms = $5
  WHERE id = $6 AND fence = $7 AND status = 'running' AND owner = $8
  RETURNING attempts),
fl AS (DELETE FROM file_leases WHERE task = $6 AND fence = $7 AND EXISTS (SELECT 1 FROM fin)),
lw AS (DELETE FROM lease_waits WHERE task = $6 AND fence = $7 AND EXISTS (SELECT 1 FROM fin)),
att AS (
  UPDATE attempts a SET status = $9, record = $4, finished_ms = $5, cost_usd = $10
  FROM fin WHERE a.task = $6 AND a.attempt = fin.attempts AND a.fence = $7
  RETURNING a.attempt),
newatt AS (
  INSERT INTO attempts (task, attempt, fence, owner, status, record, cost_usd, started_ms, finished_ms)
  SELECT $6, fin.attempts, $7, $8, $9, $4, $10, $5, $5 FROM fin WHERE NOT EXISTS (SELECT 1 FROM att)),
inst AS (
  UPDATE instances SET state = 'idle', current_task = NULL, owner = NULL, updated_ms = $5
  WHERE current_task = $6 AND owner = $8 AND state = 'busy' AND EXISTS (SELECT 1 FROM fin)),
ev AS (
  INSERT INTO events (at_ms, task, fence, actor, kind, data)
  SELECT $5, $6, $7, $8, $11, ($12::text::jsonb || jsonb_build_object('attempt', fin.attempts))::text
  FROM fin)
SELECT attempts FROM fin";

/// Whether a finish is one statement: its outcome changes no other task or handoff.
fn finish_is_simple(f: &AttemptFinish, next: Status) -> bool {
    match next {
        Status::Succeeded => f.new_tasks.is_empty() && f.converted_handoffs.is_empty(),
        Status::Pending => f.status == Status::RateLimited,
        _ => false,
    }
}

/// Ends the claim's attempt in one statement when `finish_is_simple`. A finish that
/// finds its claim gone but its own earlier finish recorded (the answer to a first
/// try was lost with the connection) is done.
pub(crate) async fn finish(c: &Conn, token: &ClaimToken, f: &AttemptFinish) -> R<Fast<()>> {
    let next = NextState::of(token, &f.disposition)?;
    if !finish_is_simple(f, next.status) {
        return Ok(Fast::Slow);
    }
    let data = json!({ "attempt_status": f.status, "cost_usd": f.cost_usd,
                       "not_before_ms": next.not_before, "counts": next.counts })
    .to_string();
    let record = f.record.to_string();
    let st = c.prepare_cached(FINISH_FAST).await?;
    let n = c
        .query(
            &st,
            &[
                &next.status.as_str(),
                &next.not_before,
                &i64::from(next.counts),
                &record,
                &f.now_ms,
                &token.task,
                &token.fence,
                &token.owner,
                &f.status.as_str(),
                &f.cost_usd,
                &next.event_kind(&f.disposition),
                &data,
            ],
        )
        .await?
        .len();
    if n == 1 || claims::already_finished(&**c, token, f).await? {
        return Ok(Fast::Done(()));
    }
    Ok(Fast::Slow)
}
