//! Reading rows into the store's types, shared by the read methods and by the write
//! paths that return rows (a claim returns its task, a release its attempts).

use super::{E, R};
use crate::outcome::Status;
use crate::store::*;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use std::collections::HashMap;

/// Task columns in the order `task_row` reads them.
pub(crate) const TASK_COLS: &str = "id, role, priority, ord, instance, status, fence, owner, lease_expires_ms, attempts, \
     counted_attempts, max_attempts, not_before_ms, spec, hash, from_handoff, last_record, updated_ms";

/// How many columns `TASK_COLS` names (a query may select more after them).
pub(crate) const TASK_COLS_LEN: usize = 18;

/// Attempt columns in the order `attempt_row` reads them.
pub(crate) const ATTEMPT_COLS: &str =
    "task, attempt, fence, owner, status, instance, uid, shim_pid, pid, pgid, start_time, \
     boot_id, stdout_log, stderr_log, resume_session, record, started_ms, finished_ms";

/// Handoff columns in the order `handoff_row` reads them.
const HANDOFF_COLS: &str =
    "id, task, fence, from_role, from_instance, to_role, reason, work_state, next_steps, state, \
     new_task, reject_reason, created_ms";

/// Parses a status column; an unknown name means the file was edited by hand.
pub(crate) fn status(s: &str) -> R<Status> {
    Status::parse(s).ok_or_else(|| E::Json(format!("unknown status {s:?}")))
}

/// Parses a JSON text column.
pub(crate) fn json(s: &str) -> R<serde_json::Value> {
    Ok(serde_json::from_str(s)?)
}

fn opt_json(s: Option<String>) -> R<Option<serde_json::Value>> {
    s.as_deref().map(json).transpose()
}

/// One task row (without its dependencies, which the caller fills in).
pub(crate) fn task_row(r: &Row<'_>) -> R<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        role: r.get(1)?,
        priority: r.get(2)?,
        order: r.get(3)?,
        depends_on: Vec::new(),
        instance: r.get(4)?,
        status: status(&r.get::<_, String>(5)?)?,
        fence: r.get(6)?,
        owner: r.get(7)?,
        lease_expires_ms: r.get(8)?,
        attempts: r.get(9)?,
        counted_attempts: r.get(10)?,
        max_attempts: r.get(11)?,
        not_before_ms: r.get(12)?,
        spec: json(&r.get::<_, String>(13)?)?,
        hash: r.get(14)?,
        from_handoff: r.get(15)?,
        last_record: opt_json(r.get(16)?)?,
        updated_ms: r.get(17)?,
    })
}

/// Dependencies of one task, in list order.
pub(crate) fn deps_of(tx: &Transaction<'_>, id: &str) -> R<Vec<String>> {
    let mut st = tx.prepare_cached("SELECT dep FROM task_deps WHERE task = ?1 ORDER BY pos")?;
    let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One task with its dependencies.
pub(crate) fn task(tx: &Transaction<'_>, id: &str) -> R<Option<TaskRow>> {
    let sql = format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1");
    let mut st = tx.prepare_cached(&sql)?;
    let mut rows = st.query([id])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let mut t = task_row(r)?;
    t.depends_on = deps_of(tx, id)?;
    Ok(Some(t))
}

/// Every task, in (order, id) order.
pub(crate) fn tasks(tx: &Transaction<'_>) -> R<Vec<TaskRow>> {
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    {
        let mut st = tx.prepare_cached("SELECT task, dep FROM task_deps ORDER BY task, pos")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            deps.entry(r.get(0)?).or_default().push(r.get(1)?);
        }
    }
    let sql = format!("SELECT {TASK_COLS} FROM tasks ORDER BY ord, id");
    let mut st = tx.prepare_cached(&sql)?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut t = task_row(r)?;
        t.depends_on = deps.remove(&t.id).unwrap_or_default();
        out.push(t);
    }
    Ok(out)
}

/// One attempt row.
pub(crate) fn attempt_row(r: &Row<'_>) -> R<AttemptRow> {
    let started_ms: i64 = r.get(16)?;
    Ok(AttemptRow {
        task: r.get(0)?,
        attempt: r.get(1)?,
        fence: r.get(2)?,
        owner: r.get(3)?,
        status: status(&r.get::<_, String>(4)?)?,
        start: AttemptStart {
            instance: r.get(5)?,
            uid: r.get(6)?,
            shim_pid: r.get(7)?,
            pid: r.get(8)?,
            pgid: r.get(9)?,
            // Stored as a signed 64-bit integer; clock ticks since boot never reach 2^63.
            start_time: r.get::<_, i64>(10)? as u64,
            boot_id: r.get(11)?,
            stdout_log: r.get(12)?,
            stderr_log: r.get(13)?,
            resume_session: r.get(14)?,
            now_ms: started_ms,
        },
        record: opt_json(r.get(15)?)?,
        started_ms,
        finished_ms: r.get(17)?,
    })
}

/// Attempts of one task (oldest first), or with `None` every running attempt.
pub(crate) fn attempts(tx: &Transaction<'_>, task: Option<&str>) -> R<Vec<AttemptRow>> {
    let sql = match task {
        Some(_) => format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE task = ?1 ORDER BY attempt"),
        None => format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE status = 'running' ORDER BY started_ms, task"),
    };
    rows_of(tx, &sql, task, attempt_row)
}

/// The rows of `sql`, bound to `task` when there is one (`?1`), each built by `row`.
fn rows_of<T>(
    tx: &Transaction<'_>,
    sql: &str,
    task: Option<&str>,
    row: impl Fn(&Row<'_>) -> R<T>,
) -> R<Vec<T>> {
    let mut st = tx.prepare_cached(sql)?;
    let mut rows = match task {
        Some(t) => st.query([t])?,
        None => st.query([])?,
    };
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row(r)?);
    }
    Ok(out)
}

/// One attempt by key.
pub(crate) fn attempt(tx: &Transaction<'_>, task: &str, n: i64) -> R<Option<AttemptRow>> {
    let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE task = ?1 AND attempt = ?2");
    let mut st = tx.prepare_cached(&sql)?;
    let mut rows = st.query(params![task, n])?;
    match rows.next()? {
        Some(r) => Ok(Some(attempt_row(r)?)),
        None => Ok(None),
    }
}

fn handoff_state(s: &str) -> R<HandoffState> {
    Ok(match s {
        "pending" => HandoffState::Pending,
        "accepted" => HandoffState::Accepted,
        "rejected" => HandoffState::Rejected,
        "dropped" => HandoffState::Dropped,
        other => return Err(E::Json(format!("unknown handoff state {other:?}"))),
    })
}

fn handoff_row(r: &Row<'_>) -> R<HandoffRow> {
    let next_steps: Vec<String> = serde_json::from_str(&r.get::<_, String>(8)?)?;
    Ok(HandoffRow {
        id: r.get(0)?,
        task: r.get(1)?,
        fence: r.get(2)?,
        from_role: r.get(3)?,
        from_instance: r.get(4)?,
        request: HandoffRequest {
            to_role: r.get(5)?,
            reason: r.get(6)?,
            state: r.get(7)?,
            next_steps,
        },
        state: handoff_state(&r.get::<_, String>(9)?)?,
        new_task: r.get(10)?,
        reject_reason: r.get(11)?,
        created_ms: r.get(12)?,
    })
}

/// Handoffs, oldest first, optionally of one source task.
pub(crate) fn handoffs(tx: &Transaction<'_>, task: Option<&str>) -> R<Vec<HandoffRow>> {
    let sql = match task {
        Some(_) => format!("SELECT {HANDOFF_COLS} FROM handoffs WHERE task = ?1 ORDER BY id"),
        None => format!("SELECT {HANDOFF_COLS} FROM handoffs ORDER BY id"),
    };
    rows_of(tx, &sql, task, handoff_row)
}

/// One handoff.
pub(crate) fn handoff(tx: &Transaction<'_>, id: i64) -> R<Option<HandoffRow>> {
    let sql = format!("SELECT {HANDOFF_COLS} FROM handoffs WHERE id = ?1");
    let mut st = tx.prepare_cached(&sql)?;
    let mut rows = st.query([id])?;
    match rows.next()? {
        Some(r) => Ok(Some(handoff_row(r)?)),
        None => Ok(None),
    }
}

/// Events after `after`, oldest first.
pub(crate) fn events_since(tx: &Transaction<'_>, after: i64, limit: usize) -> R<Vec<EventRow>> {
    let mut st = tx.prepare_cached("SELECT id, at_ms, task, fence, actor, kind, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = st.query(params![after, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(EventRow {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            task: r.get(2)?,
            fence: r.get(3)?,
            actor: r.get(4)?,
            kind: r.get(5)?,
            data: json(&r.get::<_, String>(6)?)?,
        });
    }
    Ok(out)
}

/// Appends one event by the holder of a claim, about its task and fence.
pub(crate) fn claim_event(
    tx: &Transaction<'_>,
    at_ms: i64,
    token: &ClaimToken,
    kind: &str,
    data: &serde_json::Value,
) -> R<()> {
    event(
        tx,
        at_ms,
        Some(&token.task),
        Some(token.fence),
        &token.owner,
        kind,
        data,
    )
}

/// Appends one event. Called inside the transaction of the change it describes, so the
/// log and the tables can never disagree.
pub(crate) fn event(
    tx: &Transaction<'_>,
    at_ms: i64,
    task: Option<&str>,
    fence: Option<i64>,
    actor: &str,
    kind: &str,
    data: &serde_json::Value,
) -> R<()> {
    let mut st = tx.prepare_cached("INSERT INTO events (at_ms, task, fence, actor, kind, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    st.execute(params![at_ms, task, fence, actor, kind, data.to_string()])?;
    Ok(())
}

/// The current fence and status of a task, for StaleClaim reports.
pub(crate) fn fence_status(tx: &Transaction<'_>, id: &str) -> R<Option<(i64, String)>> {
    let mut st = tx.prepare_cached("SELECT fence, status FROM tasks WHERE id = ?1")?;
    Ok(st
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The error for an owner write whose `(task, fence, running)` check matched no row.
pub(crate) fn stale(tx: &Transaction<'_>, token: &ClaimToken) -> E {
    match fence_status(tx, &token.task) {
        Ok(Some((current, _))) => E::Store(StoreError::StaleClaim {
            task: token.task.clone(),
            fence: token.fence,
            current,
        }),
        Ok(None) => E::Store(StoreError::NotFound(format!("task {}", token.task))),
        Err(e) => e,
    }
}

/// The first column of every row of `sql` run with one text parameter.
pub(crate) fn column<T: rusqlite::types::FromSql>(
    tx: &Transaction<'_>,
    sql: &str,
    param: &str,
) -> R<Vec<T>> {
    let mut st = tx.prepare_cached(sql)?;
    let rows = st.query_map([param], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Runs one statement through the connection's statement cache: parsing the SQL costs
/// more than running these small statements, and they run for every attempt.
pub(crate) fn exec<P: rusqlite::Params>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}
