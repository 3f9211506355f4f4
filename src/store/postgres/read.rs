//! Reading rows into the store's types, and the statement helpers every other file
//! uses (prepared once per connection, then reused: they run for every attempt).
//! The same rows and the same error texts as the SQLite store's `read`.

use super::engine::Tx;
use super::errors::{E, R};
use crate::outcome::Status;
use crate::store::*;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Parameters of a statement.
pub(crate) type P<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Task columns in the order `task_row` reads them.
pub(crate) const TASK_COLS: &str = "id, role, priority, ord, instance, status, fence, owner, lease_expires_ms, attempts, \
     counted_attempts, max_attempts, not_before_ms, spec, hash, from_handoff, last_record, updated_ms";

/// How many columns `TASK_COLS` names (a query's own columns follow them).
pub(crate) const TASK_COLS_LEN: usize = 18;

/// Attempt columns in the order `attempt_row` reads them.
pub(crate) const ATTEMPT_COLS: &str =
    "task, attempt, fence, owner, status, instance, uid, shim_pid, pid, pgid, start_time, \
     boot_id, stdout_log, stderr_log, resume_session, record, started_ms, finished_ms";

/// Handoff columns in the order `handoff_row` reads them.
const HANDOFF_COLS: &str =
    "id, task, fence, from_role, from_instance, to_role, reason, work_state, next_steps, state, \
     new_task, reject_reason, created_ms";

/// Runs one statement; the number of rows it changed.
pub(crate) async fn exec(tx: &Tx<'_>, sql: &str, params: P<'_>) -> R<u64> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&st, params).await?)
}

/// Every row of a query.
pub(crate) async fn rows(tx: &Tx<'_>, sql: &str, params: P<'_>) -> R<Vec<Row>> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query(&st, params).await?)
}

/// The row of a query that returns at most one.
pub(crate) async fn row(tx: &Tx<'_>, sql: &str, params: P<'_>) -> R<Option<Row>> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query_opt(&st, params).await?)
}

/// The first column of every row of `sql` run with one text parameter.
pub(crate) async fn column<T>(tx: &Tx<'_>, sql: &str, param: &str) -> R<Vec<T>>
where
    T: for<'r> tokio_postgres::types::FromSql<'r>,
{
    rows(tx, sql, &[&param])
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<_, T>(0)?))
        .collect()
}

/// Parses a status column; an unknown name means the table was edited by hand.
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
pub(crate) fn task_row(r: &Row) -> R<TaskRow> {
    Ok(TaskRow {
        id: r.try_get(0)?,
        role: r.try_get(1)?,
        priority: r.try_get(2)?,
        order: r.try_get(3)?,
        depends_on: Vec::new(),
        instance: r.try_get(4)?,
        status: status(r.try_get(5)?)?,
        fence: r.try_get(6)?,
        owner: r.try_get(7)?,
        lease_expires_ms: r.try_get(8)?,
        attempts: r.try_get(9)?,
        counted_attempts: r.try_get(10)?,
        max_attempts: r.try_get(11)?,
        not_before_ms: r.try_get(12)?,
        spec: json(r.try_get(13)?)?,
        hash: r.try_get(14)?,
        from_handoff: r.try_get(15)?,
        last_record: opt_json(r.try_get(16)?)?,
        updated_ms: r.try_get(17)?,
    })
}

/// Dependencies of one task, in list order.
pub(crate) async fn deps_of(tx: &Tx<'_>, id: &str) -> R<Vec<String>> {
    column(
        tx,
        "SELECT dep FROM task_deps WHERE task = $1 ORDER BY pos",
        id,
    )
    .await
}

/// One task with its dependencies.
pub(crate) async fn task(tx: &Tx<'_>, id: &str) -> R<Option<TaskRow>> {
    let sql = format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1");
    let Some(r) = row(tx, &sql, &[&id]).await? else {
        return Ok(None);
    };
    let mut t = task_row(&r)?;
    t.depends_on = deps_of(tx, id).await?;
    Ok(Some(t))
}

/// Every task, in (order, id) order.
pub(crate) async fn tasks(tx: &Tx<'_>) -> R<Vec<TaskRow>> {
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows(
        tx,
        "SELECT task, dep FROM task_deps ORDER BY task, pos",
        &[],
    )
    .await?
    {
        deps.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    let sql = format!("SELECT {TASK_COLS} FROM tasks ORDER BY ord, id");
    let mut out = Vec::new();
    for r in rows(tx, &sql, &[]).await? {
        let mut t = task_row(&r)?;
        t.depends_on = deps.remove(&t.id).unwrap_or_default();
        out.push(t);
    }
    Ok(out)
}

/// Every task's id and status.
pub(crate) async fn statuses(tx: &Tx<'_>) -> R<Vec<(String, Status)>> {
    let mut out = Vec::new();
    for r in rows(tx, "SELECT id, status FROM tasks ORDER BY ord, id", &[]).await? {
        let s: &str = r.try_get(1)?;
        out.push((r.try_get(0)?, Status::parse(s).unwrap_or(Status::Pending)));
    }
    Ok(out)
}

/// One attempt row.
pub(crate) fn attempt_row(r: &Row) -> R<AttemptRow> {
    let started_ms: i64 = r.try_get(16)?;
    Ok(AttemptRow {
        task: r.try_get(0)?,
        attempt: r.try_get(1)?,
        fence: r.try_get(2)?,
        owner: r.try_get(3)?,
        status: status(r.try_get(4)?)?,
        start: AttemptStart {
            instance: r.try_get(5)?,
            uid: r.try_get(6)?,
            shim_pid: r.try_get(7)?,
            pid: r.try_get(8)?,
            pgid: r.try_get(9)?,
            // Stored as a signed 64-bit integer; clock ticks since boot never reach 2^63.
            start_time: r.try_get::<_, i64>(10)? as u64,
            boot_id: r.try_get(11)?,
            stdout_log: r.try_get(12)?,
            stderr_log: r.try_get(13)?,
            resume_session: r.try_get(14)?,
            now_ms: started_ms,
        },
        record: opt_json(r.try_get(15)?)?,
        started_ms,
        finished_ms: r.try_get(17)?,
    })
}

/// Attempts of one task (oldest first), or with `None` every running attempt.
pub(crate) async fn attempts(tx: &Tx<'_>, task: Option<&str>) -> R<Vec<AttemptRow>> {
    let found = match task {
        Some(t) => {
            let sql =
                format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE task = $1 ORDER BY attempt");
            rows(tx, &sql, &[&t]).await?
        }
        None => {
            let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE status = 'running' ORDER BY started_ms, task");
            rows(tx, &sql, &[]).await?
        }
    };
    found.iter().map(attempt_row).collect()
}

/// One attempt by key.
pub(crate) async fn attempt(tx: &Tx<'_>, task: &str, n: i64) -> R<Option<AttemptRow>> {
    let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE task = $1 AND attempt = $2");
    row(tx, &sql, &[&task, &n])
        .await?
        .as_ref()
        .map(attempt_row)
        .transpose()
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

fn handoff_row(r: &Row) -> R<HandoffRow> {
    let next_steps: Vec<String> = serde_json::from_str(r.try_get(8)?)?;
    Ok(HandoffRow {
        id: r.try_get(0)?,
        task: r.try_get(1)?,
        fence: r.try_get(2)?,
        from_role: r.try_get(3)?,
        from_instance: r.try_get(4)?,
        request: HandoffRequest {
            to_role: r.try_get(5)?,
            reason: r.try_get(6)?,
            state: r.try_get(7)?,
            next_steps,
        },
        state: handoff_state(r.try_get(9)?)?,
        new_task: r.try_get(10)?,
        reject_reason: r.try_get(11)?,
        created_ms: r.try_get(12)?,
    })
}

/// Handoffs, oldest first, optionally of one source task.
pub(crate) async fn handoffs(tx: &Tx<'_>, task: Option<&str>) -> R<Vec<HandoffRow>> {
    let found = match task {
        Some(t) => {
            let sql = format!("SELECT {HANDOFF_COLS} FROM handoffs WHERE task = $1 ORDER BY id");
            rows(tx, &sql, &[&t]).await?
        }
        None => {
            let sql = format!("SELECT {HANDOFF_COLS} FROM handoffs ORDER BY id");
            rows(tx, &sql, &[]).await?
        }
    };
    found.iter().map(handoff_row).collect()
}

/// One handoff.
pub(crate) async fn handoff(tx: &Tx<'_>, id: i64) -> R<Option<HandoffRow>> {
    let sql = format!("SELECT {HANDOFF_COLS} FROM handoffs WHERE id = $1");
    row(tx, &sql, &[&id])
        .await?
        .as_ref()
        .map(handoff_row)
        .transpose()
}

/// Events after `after`, oldest first.
pub(crate) async fn events_since(tx: &Tx<'_>, after: i64, limit: usize) -> R<Vec<EventRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found = rows(
        tx,
        "SELECT id, at_ms, task, fence, actor, kind, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &limit],
    )
    .await?;
    found
        .iter()
        .map(|r| {
            Ok(EventRow {
                id: r.try_get(0)?,
                at_ms: r.try_get(1)?,
                task: r.try_get(2)?,
                fence: r.try_get(3)?,
                actor: r.try_get(4)?,
                kind: r.try_get(5)?,
                data: json(r.try_get(6)?)?,
            })
        })
        .collect()
}

/// Appends one event by the holder of a claim, about its task and fence.
pub(crate) async fn claim_event(
    tx: &Tx<'_>,
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
    .await
}

/// Appends one event, inside the transaction of the change it describes (its NOTIFY
/// goes out with the commit).
pub(crate) async fn event(
    tx: &Tx<'_>,
    at_ms: i64,
    task: Option<&str>,
    fence: Option<i64>,
    actor: &str,
    kind: &str,
    data: &serde_json::Value,
) -> R<()> {
    exec(
        tx,
        "INSERT INTO events (at_ms, task, fence, actor, kind, data) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&at_ms, &task, &fence, &actor, &kind, &data.to_string()],
    )
    .await?;
    Ok(())
}

/// The current fence and status of a task, for StaleClaim reports.
pub(crate) async fn fence_status(tx: &Tx<'_>, id: &str) -> R<Option<(i64, String)>> {
    match row(tx, "SELECT fence, status FROM tasks WHERE id = $1", &[&id]).await? {
        Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
        None => Ok(None),
    }
}

/// The error for an owner write whose `(task, fence, running)` check matched no row.
pub(crate) async fn stale(tx: &Tx<'_>, token: &ClaimToken) -> E {
    match fence_status(tx, &token.task).await {
        Ok(Some((current, _))) => E::Store(StoreError::StaleClaim {
            task: token.task.clone(),
            fence: token.fence,
            current,
        }),
        Ok(None) => E::Store(StoreError::NotFound(format!("task {}", token.task))),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_cols_len_counts_task_cols() {
        assert_eq!(super::TASK_COLS.split(',').count(), super::TASK_COLS_LEN);
    }
}
