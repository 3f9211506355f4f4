//! Task definitions and their state outside a claim, on PostgreSQL: sync with the task
//! list, skip and retry (the SQLite store's `tasks`, the same rules and events).

use super::engine::Tx;
use super::errors::R;
use super::read::{self, event, exec, row, rows};
use crate::store::*;
use serde_json::json;

/// Terminal statuses other than `succeeded`: a dependency in one of them will never be
/// satisfied without a retry.
const BLOCKING: &str = "('failed','timed_out','skipped','interrupted','spawn_failed','killed',\
    'out_of_scope','verify_failed','integration_failed')";

async fn write_deps(tx: &Tx<'_>, id: &str, deps: &[String]) -> R<()> {
    exec(tx, "DELETE FROM task_deps WHERE task = $1", &[&id]).await?;
    for (i, d) in deps.iter().enumerate() {
        let pos = i as i64;
        exec(
            tx,
            "INSERT INTO task_deps (task, dep, pos) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&id, d, &pos],
        )
        .await?;
    }
    Ok(())
}

/// Inserts a task unless its id exists; returns whether it was inserted.
pub(crate) async fn insert_new(
    tx: &Tx<'_>,
    t: &NewTask,
    now: i64,
    from_handoff: Option<i64>,
    actor: &str,
    parent: Option<&str>,
) -> R<bool> {
    let n = exec(
        tx,
        "INSERT INTO tasks (id, role, priority, ord, instance, status, max_attempts, not_before_ms, spec, hash,
                            from_handoff, created_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, 0, $7, $8, $9, $10, $10)
         ON CONFLICT (id) DO NOTHING",
        &[
            &t.id,
            &t.role,
            &t.priority,
            &t.order,
            &t.instance,
            &t.max_attempts,
            &t.spec.to_string(),
            &t.hash,
            &from_handoff,
            &now,
        ],
    )
    .await?;
    if n == 0 {
        let data = json!({ "reason": "id exists", "parent": parent });
        event(tx, now, Some(&t.id), None, actor, "create-skipped", &data).await?;
        return Ok(false);
    }
    write_deps(tx, &t.id, &t.depends_on).await?;
    let data =
        json!({ "role": t.role, "hash": t.hash, "from_handoff": from_handoff, "parent": parent });
    event(tx, now, Some(&t.id), None, actor, "created", &data).await?;
    Ok(true)
}

/// Brings the store in line with a task list (see `Store::sync_tasks`). The tasks the
/// store knows are read (and locked) in one query and the new ones written in three
/// (tasks, dependencies, events), whatever the list's length: statement by statement a
/// 10 000-task list took 55 000 round trips, 2.5 s.
pub(crate) async fn sync_tasks(tx: &Tx<'_>, list: &[NewTask], now: i64) -> R<SyncReport> {
    let ids: Vec<&str> = list.iter().map(|t| t.id.as_str()).collect();
    let mut known = std::collections::HashMap::new();
    for r in rows(
        tx,
        "SELECT id, hash, status FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?
    {
        let id: String = r.try_get(0)?;
        known.insert(id, (r.try_get::<_, String>(1)?, r.try_get::<_, String>(2)?));
    }
    let mut rep = SyncReport::default();
    let mut fresh = Vec::new();
    for t in list {
        let known = known.remove(&t.id);
        let changed = |old: String| json!({ "old_hash": old, "new_hash": t.hash });
        match known {
            None => {
                fresh.push(t);
                rep.added.push(t.id.clone());
            }
            Some((hash, _)) if hash == t.hash => rep.unchanged.push(t.id.clone()),
            Some((_, status)) if status == "succeeded" => {
                rep.changed_after_success.push(t.id.clone())
            }
            Some((old, status)) if status == "running" => {
                let data = changed(old);
                event(tx, now, Some(&t.id), None, "sync", "update-deferred", &data).await?;
            }
            Some((old, _)) => {
                exec(tx,
                    "UPDATE tasks SET role = $1, priority = $2, ord = $3, instance = $4, max_attempts = $5, spec = $6,
                            hash = $7, updated_ms = $8
                     WHERE id = $9 AND status NOT IN ('running', 'succeeded')",
                    &[&t.role, &t.priority, &t.order, &t.instance, &t.max_attempts, &t.spec.to_string(), &t.hash, &now, &t.id],
                ).await?;
                write_deps(tx, &t.id, &t.depends_on).await?;
                let data = changed(old);
                event(tx, now, Some(&t.id), None, "sync", "updated", &data).await?;
                rep.updated.push(t.id.clone());
            }
        }
    }
    insert_many(tx, &fresh, now).await?;
    if rep.added.len() + rep.updated.len() >= ANALYZE_AFTER {
        tx.batch_execute("ANALYZE tasks, task_deps").await?;
    }
    Ok(rep)
}

/// Inserts the new tasks of a sync, their dependencies and their events, in three
/// statements; the same rows and events as `insert_new` for each (`created`, or
/// `create-skipped` for an id another sync inserted meanwhile).
async fn insert_many(tx: &Tx<'_>, list: &[&NewTask], now: i64) -> R<()> {
    if list.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewTask) -> String| list.iter().map(|t| f(t)).collect::<Vec<String>>();
    let num = |f: fn(&NewTask) -> i64| list.iter().map(|t| f(t)).collect::<Vec<i64>>();
    let instances: Vec<Option<&str>> = list.iter().map(|t| t.instance.as_deref()).collect();
    let inserted: std::collections::HashSet<String> = rows(
        tx,
        "INSERT INTO tasks (id, role, priority, ord, instance, status, max_attempts, not_before_ms, spec, hash,
                            created_ms, updated_ms)
         SELECT u.id, u.role, u.priority, u.ord, u.instance, 'pending', u.max_attempts, 0, u.spec, u.hash, $9, $9
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::text[])
              WITH ORDINALITY AS u(id, role, priority, ord, instance, max_attempts, spec, hash, n)
         ORDER BY u.n
         ON CONFLICT (id) DO NOTHING RETURNING id",
        &[&col(|t| t.id.clone()), &col(|t| t.role.clone()), &num(|t| t.priority), &num(|t| t.order),
          &instances, &num(|t| t.max_attempts), &col(|t| t.spec.to_string()), &col(|t| t.hash.clone()), &now],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let (mut task, mut dep, mut pos) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ev_task, mut ev_kind, mut ev_data) = (Vec::new(), Vec::new(), Vec::new());
    for t in list {
        let made = inserted.contains(&t.id);
        if made {
            for (i, d) in t.depends_on.iter().enumerate() {
                task.push(t.id.as_str());
                dep.push(d.as_str());
                pos.push(i as i64);
            }
        }
        let (kind, data) = match made {
            true => (
                "created",
                json!({ "role": t.role, "hash": t.hash, "from_handoff": null, "parent": null }),
            ),
            false => (
                "create-skipped",
                json!({ "reason": "id exists", "parent": null }),
            ),
        };
        ev_task.push(t.id.as_str());
        ev_kind.push(kind);
        ev_data.push(data.to_string());
    }
    exec(
        tx,
        "INSERT INTO task_deps (task, dep, pos) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
         ON CONFLICT DO NOTHING",
        &[&task, &dep, &pos],
    )
    .await?;
    exec(
        tx,
        "INSERT INTO events (at_ms, task, fence, actor, kind, data)
         SELECT $1, u.task, NULL, 'sync', u.kind, u.data
         FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(task, kind, data, n) ORDER BY u.n",
        &[&now, &ev_task, &ev_kind, &ev_data],
    )
    .await?;
    Ok(())
}

/// Rows a sync adds or changes before it refreshes the planner's statistics. Why: a
/// fresh list of thousands of tasks has none until autovacuum comes by (up to a
/// minute later), and meanwhile the planner, believing the table empty, sorts every
/// pending task on each claim instead of walking the claim index to the first one:
/// claims then cost time proportional to the list (47 ms each at 8 000 tasks).
const ANALYZE_AFTER: usize = 100;

/// Skips every pending task that depends, directly or through tasks that did not
/// succeed, on `root`; records `root` as the cause so a retry of it can un-skip them.
pub(crate) async fn skip_dependents(
    tx: &Tx<'_>,
    root: &str,
    reason: &str,
    now: i64,
    actor: &str,
) -> R<Vec<String>> {
    let found = rows(
        tx,
        "WITH RECURSIVE down(id) AS (
             SELECT d.task FROM task_deps d WHERE d.dep = $1
             UNION
             SELECT d.task FROM down JOIN tasks x ON x.id = down.id AND x.status <> 'succeeded'
                                      JOIN task_deps d ON d.dep = down.id
         )
         SELECT t.id, t.fence FROM tasks t JOIN down ON down.id = t.id
         WHERE t.status = 'pending' AND t.id <> $1 ORDER BY t.ord, t.id",
        &[&root],
    )
    .await?;
    let mut out = Vec::new();
    for r in found {
        let (id, fence): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        let n = exec(tx,
            "UPDATE tasks SET status = 'skipped', skipped_by = $1, updated_ms = $2 WHERE id = $3 AND status = 'pending'",
            &[&root, &now, &id],
        ).await?;
        if n == 0 {
            // Claimed by another worker since the scan: it runs, it is not skipped.
            continue;
        }
        let data = json!({ "reason": reason, "because": root });
        event(tx, now, Some(&id), Some(fence), actor, "skipped", &data).await?;
        out.push(id);
    }
    Ok(out)
}

/// Marks pending tasks skipped, and their pending dependents with them.
pub(crate) async fn skip_tasks(tx: &Tx<'_>, ids: &[String], reason: &str, now: i64) -> R<()> {
    for id in ids {
        let data = json!({ "reason": reason });
        skip_pending(tx, id, reason, &data, now, "borg").await?;
    }
    Ok(())
}

/// Skips a task that is still pending, logs it with `data` and skips its pending
/// dependents with it; a task no longer pending is left alone.
pub(crate) async fn skip_pending(
    tx: &Tx<'_>,
    id: &str,
    reason: &str,
    data: &serde_json::Value,
    now: i64,
    actor: &str,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET status = 'skipped', updated_ms = $1 WHERE id = $2 AND status = 'pending'",
        &[&now, &id],
    )
    .await?;
    if n > 0 {
        event(tx, now, Some(id), None, actor, "skipped", data).await?;
        skip_dependents(tx, id, reason, now, actor).await?;
    }
    Ok(())
}

/// Re-queues a finished task, and un-skips what was skipped because of it.
pub(crate) async fn retry_task(tx: &Tx<'_>, id: &str, now: i64) -> R<()> {
    requeue(tx, id, now).await?;
    let unskipped = unskip_skipped_by(tx, id, now).await?;
    while reskip_blocked(tx, &unskipped, now).await? {}
    Ok(())
}

/// Puts a task that is not running back to pending with its retries restored.
async fn requeue(tx: &Tx<'_>, id: &str, now: i64) -> R<()> {
    let status = match row(
        tx,
        "SELECT status FROM tasks WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    {
        Some(r) => r.try_get::<_, String>(0)?,
        None => return Err(StoreError::NotFound(format!("task {id}")).into()),
    };
    if status == "running" {
        return Err(StoreError::Conflict(format!(
            "task {id} is running; stop it before retrying it"
        ))
        .into());
    }
    exec(tx,
        "UPDATE tasks SET status = 'pending', counted_attempts = 0, not_before_ms = $1, skipped_by = NULL, updated_ms = $1
         WHERE id = $2",
        &[&now, &id],
    ).await?;
    let data = json!({ "from": status });
    event(tx, now, Some(id), None, "user", "retry-requested", &data).await
}

/// Un-skips the tasks skipped because of `id`; returns them.
async fn unskip_skipped_by(tx: &Tx<'_>, id: &str, now: i64) -> R<Vec<String>> {
    let unskipped: Vec<String> = read::column(
        tx,
        "SELECT id FROM tasks WHERE skipped_by = $1 AND status = 'skipped' ORDER BY ord, id",
        id,
    )
    .await?;
    for t in &unskipped {
        exec(
            tx,
            "UPDATE tasks SET status = 'pending', skipped_by = NULL, updated_ms = $1 WHERE id = $2",
            &[&now, t],
        )
        .await?;
        let data = json!({ "because": id });
        event(tx, now, Some(t), None, "user", "unskipped", &data).await?;
    }
    Ok(unskipped)
}

/// One pass over the un-skipped tasks: each still pending with a blocking dependency
/// is skipped again, blaming the task that started the chain. Returns whether any was.
async fn reskip_blocked(tx: &Tx<'_>, unskipped: &[String], now: i64) -> R<bool> {
    let blocker_sql = format!(
        "SELECT p.id, p.status, p.skipped_by FROM task_deps d JOIN tasks p ON p.id = d.dep
         WHERE d.task = $1 AND p.status IN {BLOCKING} ORDER BY d.dep LIMIT 1"
    );
    let mut changed = false;
    for t in unskipped {
        let pending = row(
            tx,
            "SELECT status = 'pending' FROM tasks WHERE id = $1",
            &[t],
        )
        .await?
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()?
        .unwrap_or(false);
        if !pending {
            continue;
        }
        let Some(b) = row(tx, &blocker_sql, &[t]).await? else {
            continue;
        };
        let (dep, dep_status, dep_by): (String, String, Option<String>) =
            (b.try_get(0)?, b.try_get(1)?, b.try_get(2)?);
        let cause = if dep_status == "skipped" {
            dep_by.unwrap_or(dep.clone())
        } else {
            dep.clone()
        };
        exec(
            tx,
            "UPDATE tasks SET status = 'skipped', skipped_by = $1, updated_ms = $2 WHERE id = $3",
            &[&cause, &now, t],
        )
        .await?;
        let data = json!({ "reason": format!("dependency {dep} {dep_status}"), "because": cause });
        event(tx, now, Some(t), None, "user", "skipped", &data).await?;
        changed = true;
    }
    Ok(changed)
}
