//! Task definitions and their state outside a claim: sync with the task list, skip
//! and retry (handoffs are in `handoffs`).

use super::read::{self, event, exec};
use super::R;
use crate::store::*;
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;

/// Terminal statuses other than `succeeded`: a dependency in one of them will never be
/// satisfied without a retry.
const BLOCKING: &str =
    "('failed','timed_out','skipped','interrupted','spawn_failed','killed','out_of_scope',\
      'verify_failed','integration_failed')";

fn write_deps(tx: &Transaction<'_>, id: &str, deps: &[String]) -> R<()> {
    exec(tx, "DELETE FROM task_deps WHERE task = ?1", [id])?;
    let mut st =
        tx.prepare_cached("INSERT OR IGNORE INTO task_deps (task, dep, pos) VALUES (?1, ?2, ?3)")?;
    for (i, d) in deps.iter().enumerate() {
        st.execute(params![id, d, i as i64])?;
    }
    Ok(())
}

/// Inserts a task unless its id exists; returns whether it was inserted. `parent` names
/// the task whose success created it (for the event).
pub(crate) fn insert_new(
    tx: &Transaction<'_>,
    t: &NewTask,
    now: i64,
    from_handoff: Option<i64>,
    actor: &str,
    parent: Option<&str>,
) -> R<bool> {
    let n = {
        let mut st = tx.prepare_cached(
            "INSERT INTO tasks (id, role, priority, ord, instance, status, max_attempts, not_before_ms, spec, hash,
                                from_handoff, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, 0, ?7, ?8, ?9, ?10, ?10)
             ON CONFLICT (id) DO NOTHING",
        )?;
        st.execute(params![
            t.id,
            t.role,
            t.priority,
            t.order,
            t.instance,
            t.max_attempts,
            t.spec.to_string(),
            t.hash,
            from_handoff,
            now
        ])?
    };
    if n == 0 {
        event(
            tx,
            now,
            Some(&t.id),
            None,
            actor,
            "create-skipped",
            &json!({ "reason": "id exists", "parent": parent }),
        )?;
        return Ok(false);
    }
    write_deps(tx, &t.id, &t.depends_on)?;
    event(
        tx,
        now,
        Some(&t.id),
        None,
        actor,
        "created",
        &json!({ "role": t.role, "hash": t.hash, "from_handoff": from_handoff, "parent": parent }),
    )?;
    Ok(true)
}

/// Brings the store in line with a task list (see `Store::sync_tasks`). A changed
/// definition of a running task is left alone (it is in no list of the report; an
/// `update-deferred` event records it): the next sync after it ends will apply it.
pub(crate) fn sync_tasks(tx: &Transaction<'_>, list: &[NewTask], now: i64) -> R<SyncReport> {
    let mut rep = SyncReport::default();
    for t in list {
        // A definition that changed: logged with both hashes.
        let changed = |old: String, kind: &str| {
            let data = json!({ "old_hash": old, "new_hash": t.hash });
            event(tx, now, Some(&t.id), None, "sync", kind, &data)
        };
        let known: Option<(String, String)> = tx
            .prepare_cached("SELECT hash, status FROM tasks WHERE id = ?1")?
            .query_row([&t.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match known {
            None => {
                insert_new(tx, t, now, None, "sync", None)?;
                rep.added.push(t.id.clone());
            }
            Some((hash, _)) if hash == t.hash => rep.unchanged.push(t.id.clone()),
            Some((_, status)) if status == "succeeded" => {
                rep.changed_after_success.push(t.id.clone())
            }
            Some((old, status)) if status == "running" => {
                changed(old, "update-deferred")?;
            }
            Some((old, _)) => {
                exec(tx,
                    "UPDATE tasks SET role = ?1, priority = ?2, ord = ?3, instance = ?4, max_attempts = ?5, spec = ?6,
                            hash = ?7, updated_ms = ?8
                     WHERE id = ?9 AND status NOT IN ('running', 'succeeded')",
                    params![t.role, t.priority, t.order, t.instance, t.max_attempts, t.spec.to_string(), t.hash, now, t.id],
                )?;
                write_deps(tx, &t.id, &t.depends_on)?;
                changed(old, "updated")?;
                rep.updated.push(t.id.clone());
            }
        }
    }
    Ok(rep)
}

/// Skips every pending task that depends, directly or through tasks that did not
/// succeed, on `root`; records `root` as the cause so a retry of it can un-skip them.
pub(crate) fn skip_dependents(
    tx: &Transaction<'_>,
    root: &str,
    reason: &str,
    now: i64,
    actor: &str,
) -> R<Vec<String>> {
    let found: Vec<(String, i64)> = {
        let mut st = tx.prepare_cached(
            "WITH RECURSIVE down(id) AS (
                 SELECT d.task FROM task_deps d WHERE d.dep = ?1
                 UNION
                 SELECT d.task FROM down JOIN tasks x ON x.id = down.id AND x.status <> 'succeeded'
                                          JOIN task_deps d ON d.dep = down.id
             )
             SELECT t.id, t.fence FROM tasks t JOIN down ON down.id = t.id
             WHERE t.status = 'pending' AND t.id <> ?1 ORDER BY t.ord, t.id",
        )?;
        let rows = st.query_map([root], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for (id, fence) in found {
        exec(tx,
            "UPDATE tasks SET status = 'skipped', skipped_by = ?1, updated_ms = ?2 WHERE id = ?3 AND status = 'pending'",
            params![root, now, id],
        )?;
        event(
            tx,
            now,
            Some(&id),
            Some(fence),
            actor,
            "skipped",
            &json!({ "reason": reason, "because": root }),
        )?;
        out.push(id);
    }
    Ok(out)
}

/// Marks pending tasks skipped, and their pending dependents with them.
pub(crate) fn skip_tasks(tx: &Transaction<'_>, ids: &[String], reason: &str, now: i64) -> R<()> {
    for id in ids {
        skip_pending(tx, id, reason, &json!({ "reason": reason }), now, "borg")?;
    }
    Ok(())
}

/// Skips a task that is still pending, logs it with `data` and skips its pending
/// dependents with it (because of `reason`); a task no longer pending is left alone.
pub(crate) fn skip_pending(
    tx: &Transaction<'_>,
    id: &str,
    reason: &str,
    data: &serde_json::Value,
    now: i64,
    actor: &str,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET status = 'skipped', updated_ms = ?1 WHERE id = ?2 AND status = 'pending'",
        params![now, id],
    )?;
    if n > 0 {
        event(tx, now, Some(id), None, actor, "skipped", data)?;
        skip_dependents(tx, id, reason, now, actor)?;
    }
    Ok(())
}

/// Re-queues a finished task, and un-skips what was skipped because of it.
pub(crate) fn retry_task(tx: &Transaction<'_>, id: &str, now: i64) -> R<()> {
    requeue(tx, id, now)?;
    let unskipped = unskip_skipped_by(tx, id, now)?;
    // A task un-skipped here may also depend on another task that failed on its own:
    // skip it again, blaming that one, until nothing changes (bounded by the set size).
    while reskip_blocked(tx, &unskipped, now)? {}
    Ok(())
}

/// Puts a task that is not running back to pending with its retries restored.
fn requeue(tx: &Transaction<'_>, id: &str, now: i64) -> R<()> {
    let Some((_, status)) = read::fence_status(tx, id)? else {
        return Err(StoreError::NotFound(format!("task {id}")).into());
    };
    if status == "running" {
        return Err(StoreError::Conflict(format!(
            "task {id} is running; stop it before retrying it"
        ))
        .into());
    }
    exec(tx,
        "UPDATE tasks SET status = 'pending', counted_attempts = 0, not_before_ms = ?1, skipped_by = NULL, updated_ms = ?1
         WHERE id = ?2",
        params![now, id],
    )?;
    event(
        tx,
        now,
        Some(id),
        None,
        "user",
        "retry-requested",
        &json!({ "from": status }),
    )
}

/// Un-skips the tasks skipped because of `id`; returns them.
fn unskip_skipped_by(tx: &Transaction<'_>, id: &str, now: i64) -> R<Vec<String>> {
    let unskipped: Vec<String> = read::column(
        tx,
        "SELECT id FROM tasks WHERE skipped_by = ?1 AND status = 'skipped' ORDER BY ord, id",
        id,
    )?;
    for t in &unskipped {
        exec(
            tx,
            "UPDATE tasks SET status = 'pending', skipped_by = NULL, updated_ms = ?1 WHERE id = ?2",
            params![now, t],
        )?;
        event(
            tx,
            now,
            Some(t),
            None,
            "user",
            "unskipped",
            &json!({ "because": id }),
        )?;
    }
    Ok(unskipped)
}

/// A dependency of a task that blocks it for good: (id, status, what skipped it).
static BLOCKER_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT p.id, p.status, p.skipped_by FROM task_deps d JOIN tasks p ON p.id = d.dep
         WHERE d.task = ?1 AND p.status IN {BLOCKING} LIMIT 1"
    )
});

/// One pass over the un-skipped tasks: each still pending with a blocking dependency
/// is skipped again, blaming the task that started the chain. Returns whether any was.
fn reskip_blocked(tx: &Transaction<'_>, unskipped: &[String], now: i64) -> R<bool> {
    let mut changed = false;
    for t in unskipped {
        let still_pending: bool = tx
            .prepare_cached("SELECT status = 'pending' FROM tasks WHERE id = ?1")?
            .query_row([t], |r| r.get(0))?;
        if !still_pending {
            continue;
        }
        let blocker: Option<(String, String, Option<String>)> = {
            let mut st = tx.prepare_cached(&BLOCKER_SQL)?;
            st.query_row([t], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?
        };
        let Some((dep, dep_status, dep_by)) = blocker else {
            continue;
        };
        let cause = if dep_status == "skipped" {
            dep_by.unwrap_or(dep.clone())
        } else {
            dep.clone()
        };
        exec(
            tx,
            "UPDATE tasks SET status = 'skipped', skipped_by = ?1, updated_ms = ?2 WHERE id = ?3",
            params![cause, now, t],
        )?;
        event(
            tx,
            now,
            Some(t),
            None,
            "user",
            "skipped",
            &json!({ "reason": format!("dependency {dep} {dep_status}"), "because": cause }),
        )?;
        changed = true;
    }
    Ok(changed)
}
