//! The rest of coordination in SQLite (semantics in `store::coord`): the decision log
//! (`DEC-YYYYMMDD-NNNN`), messages with per-instance read receipts, the shared
//! context, the activity of running attempts (which also renews the claim), lease
//! violations and tasks created by agents (bounded per run).

use super::claims::add_scope;
use super::coord::{fenced_role, ms};
use super::read::{event, exec};
use super::{tasks, E, R};
use crate::store::coord::*;
use crate::store::{NewTask, StoreError};
use rusqlite::{named_params, params, OptionalExtension, Row, Transaction};
use serde_json::json;
use std::time::Duration;

/// Decision columns in the order `decision_row` reads them.
const DECISION_COLS: &str =
    "id, category, title, description, scope, task, instance, role, author, created_ms";

fn decision_row(r: &Row<'_>) -> rusqlite::Result<DecisionRow> {
    Ok(DecisionRow {
        id: r.get(0)?,
        category: r.get(1)?,
        title: r.get(2)?,
        description: r.get(3)?,
        scope: r.get(4)?,
        task: r.get(5)?,
        instance: r.get(6)?,
        role: r.get(7)?,
        author: r.get(8)?,
        created_ms: r.get(9)?,
    })
}

/// Who wrote: (task, fence, instance, role) of an attempt, and the author's name.
type Author = (
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
);

/// The actor's (task, fence, instance, role), fenced; `None` for a person.
fn author(tx: &Transaction<'_>, who: Option<&Actor>) -> R<Author> {
    match who {
        None => Ok((None, None, None, None, "user".into())),
        Some(a) => {
            let role = fenced_role(tx, a)?;
            Ok((
                Some(a.task.clone()),
                Some(a.fence),
                Some(a.instance.clone()),
                Some(role),
                a.instance.clone(),
            ))
        }
    }
}

/// `CoordStore::log_decision`: the next number of the (UTC) day, in the transaction.
pub(crate) fn log_decision(
    tx: &Transaction<'_>,
    who: Option<&Actor>,
    d: &NewDecision,
    now: i64,
) -> R<DecisionRow> {
    let (task, fence, instance, role, by) = author(tx, who)?;
    let day = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y%m%d")
        .to_string();
    let num: i64 = tx
        .prepare_cached("SELECT coalesce(max(num), 0) + 1 FROM decisions WHERE day = ?1")?
        .query_row([&day], |r| r.get(0))?;
    let id = format!("DEC-{day}-{num:04}");
    exec(
        tx,
        "INSERT INTO decisions (id, day, num, category, title, description, scope, task, fence, instance, role, author, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![id, day, num, d.category, d.title, d.description, d.scope, task, fence, instance, role, by, now],
    )?;
    let data = json!({ "id": id, "category": d.category, "title": d.title });
    event(tx, now, task.as_deref(), fence, &by, "decision", &data)?;
    Ok(DecisionRow {
        id,
        category: d.category.clone(),
        title: d.title.clone(),
        description: d.description.clone(),
        scope: d.scope.clone(),
        task,
        instance,
        role,
        author: by,
        created_ms: now,
    })
}

/// Decisions, newest first (of one category, or of one task oldest first).
pub(crate) fn decisions(
    tx: &Transaction<'_>,
    category: Option<&str>,
    task: Option<&str>,
    limit: usize,
) -> R<Vec<DecisionRow>> {
    let sql = format!(
        "SELECT {DECISION_COLS} FROM decisions
         WHERE (:cat IS NULL OR category = :cat) AND (:task IS NULL OR task = :task)
         ORDER BY CASE WHEN :task IS NULL THEN -created_ms ELSE created_ms END,
                  CASE WHEN :task IS NULL THEN -num ELSE num END LIMIT :limit"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = st.query_map(
        named_params! {":cat": category, ":task": task, ":limit": limit},
        decision_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Message columns in the order `message_row` reads them.
const MESSAGE_COLS: &str = "m.id, m.to_kind, m.to_name, m.subject, m.body, m.from_instance, m.from_task, m.from_role, m.author, m.created_ms,
     (SELECT json_group_array(reader) FROM message_reads r WHERE r.message = m.id)";

fn message_row(r: &Row<'_>) -> rusqlite::Result<MessageRow> {
    let (kind, name): (String, String) = (r.get(1)?, r.get(2)?);
    let to = match kind.as_str() {
        "instance" => Recipient::Instance(name),
        "role" => Recipient::Role(name),
        "task" => Recipient::Task(name),
        _ => Recipient::All,
    };
    let readers: String = r.get(10)?;
    Ok(MessageRow {
        id: r.get(0)?,
        to,
        subject: r.get(3)?,
        body: r.get(4)?,
        from_instance: r.get(5)?,
        from_task: r.get(6)?,
        from_role: r.get(7)?,
        author: r.get(8)?,
        created_ms: r.get(9)?,
        read_by: serde_json::from_str(&readers).unwrap_or_default(),
    })
}

/// `CoordStore::send_message`.
pub(crate) fn send_message(
    tx: &Transaction<'_>,
    who: Option<&Actor>,
    m: &NewMessage,
    now: i64,
) -> R<MessageRow> {
    let (task, fence, instance, role, by) = author(tx, who)?;
    let (kind, name) = match &m.to {
        Recipient::All => ("all", String::new()),
        Recipient::Instance(n) => ("instance", n.clone()),
        Recipient::Role(n) => ("role", n.clone()),
        Recipient::Task(n) => ("task", n.clone()),
    };
    exec(
        tx,
        "INSERT INTO messages (to_kind, to_name, subject, body, from_instance, from_task, from_role, author, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![kind, name, m.subject, m.body, instance, task, role, by, now],
    )?;
    let id = tx.last_insert_rowid();
    let data = json!({ "message": id, "to": m.to.label(), "subject": m.subject });
    event(tx, now, task.as_deref(), fence, &by, "message", &data)?;
    Ok(MessageRow {
        id,
        to: m.to.clone(),
        subject: m.subject.clone(),
        body: m.body.clone(),
        from_instance: instance,
        from_task: task,
        from_role: role,
        author: by,
        created_ms: now,
        read_by: Vec::new(),
    })
}

/// `CoordStore::unread_messages`.
pub(crate) fn unread(
    tx: &Transaction<'_>,
    reader: &Reader,
    mark: bool,
    limit: usize,
    now: i64,
) -> R<Vec<MessageRow>> {
    let sql = format!(
        "SELECT {MESSAGE_COLS} FROM messages m
         WHERE (m.to_kind = 'all' OR (m.to_kind = 'instance' AND m.to_name = :inst)
                OR (m.to_kind = 'role' AND m.to_name = :role) OR (m.to_kind = 'task' AND m.to_name = :task))
           AND coalesce(m.from_instance, '') <> :inst
           AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message = m.id AND r.reader = :inst)
         ORDER BY m.id LIMIT :limit"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<MessageRow> = {
        let mut st = tx.prepare_cached(&sql)?;
        let rows = st.query_map(
            named_params! {":inst": reader.instance, ":role": reader.role, ":task": reader.task, ":limit": limit},
            message_row,
        )?;
        rows.collect::<Result<_, _>>()?
    };
    if mark {
        for m in &rows {
            exec(
                tx,
                "INSERT OR IGNORE INTO message_reads (message, reader, task, read_ms) VALUES (?1, ?2, ?3, ?4)",
                params![m.id, reader.instance, reader.task, now],
            )?;
        }
    }
    Ok(rows)
}

/// Messages, newest first.
pub(crate) fn messages(tx: &Transaction<'_>, limit: usize) -> R<Vec<MessageRow>> {
    let sql = format!("SELECT {MESSAGE_COLS} FROM messages m ORDER BY m.id DESC LIMIT ?1");
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], message_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (sent by the task, read by its instance while it ran it or addressed to it).
pub(crate) fn message_counts(tx: &Transaction<'_>, task: &str) -> R<(u64, u64)> {
    let sent: i64 = tx
        .prepare_cached("SELECT count(*) FROM messages WHERE from_task = ?1")?
        .query_row([task], |r| r.get(0))?;
    let got: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM messages m WHERE (m.to_kind = 'task' AND m.to_name = ?1)
               OR EXISTS (SELECT 1 FROM message_reads r WHERE r.message = m.id AND r.task = ?1)",
        )?
        .query_row([task], |r| r.get(0))?;
    Ok((sent.max(0) as u64, got.max(0) as u64))
}

/// `CoordStore::save_context`.
pub(crate) fn save_context(
    tx: &Transaction<'_>,
    who: &Actor,
    key: &str,
    value: &str,
    now: i64,
) -> R<()> {
    fenced_role(tx, who)?;
    exec(
        tx,
        "INSERT INTO coord_context (key, value, task, instance, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, task = excluded.task,
             instance = excluded.instance, updated_ms = excluded.updated_ms",
        params![key, value, who.task, who.instance, now],
    )?;
    let data = json!({ "key": key, "bytes": value.len() });
    event(
        tx,
        now,
        Some(&who.task),
        Some(who.fence),
        &who.instance,
        "context-saved",
        &data,
    )
}

/// `CoordStore::context`.
pub(crate) fn context(tx: &Transaction<'_>, key: &str) -> R<Option<ContextEntry>> {
    let mut st = tx.prepare_cached(
        "SELECT key, value, task, instance, updated_ms FROM coord_context WHERE key = ?1",
    )?;
    Ok(st
        .query_row([key], |r| {
            Ok(ContextEntry {
                key: r.get(0)?,
                value: r.get(1)?,
                task: r.get(2)?,
                instance: r.get(3)?,
                updated_ms: r.get(4)?,
            })
        })
        .optional()?)
}

/// `CoordStore::record_activity`: merges the activity and renews the claim.
pub(crate) fn record_activity(
    tx: &Transaction<'_>,
    who: &Actor,
    a: &Activity,
    lease: Duration,
    now: i64,
) -> R<()> {
    let n = exec(
        tx,
        "UPDATE tasks SET lease_expires_ms = max(coalesce(lease_expires_ms, 0), ?1), heartbeat_ms = ?2
         WHERE id = ?3 AND fence = ?4 AND status = 'running'",
        params![now.saturating_add(ms(lease)), now, who.task, who.fence],
    )?;
    if n == 0 {
        fenced_role(tx, who)?;
    }
    let old: Option<String> = tx
        .prepare_cached("SELECT activity FROM attempt_activity WHERE task = ?1 AND fence = ?2")?
        .query_row(params![who.task, who.fence], |r| r.get(0))
        .optional()?;
    let mut merged: Activity = old
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or_default();
    merge(&mut merged, a);
    exec(
        tx,
        "INSERT INTO attempt_activity (task, fence, instance, activity, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (task, fence) DO UPDATE SET activity = excluded.activity, updated_ms = excluded.updated_ms",
        params![who.task, who.fence, who.instance, serde_json::to_string(&merged)?, now],
    )?;
    Ok(())
}

/// Takes every field `new` sets.
fn merge(into: &mut Activity, new: &Activity) {
    if new.percent.is_some() {
        into.percent = new.percent;
    }
    for (slot, v) in [
        (&mut into.step, &new.step),
        (&mut into.message, &new.message),
        (&mut into.current_file, &new.current_file),
        (&mut into.last_tool, &new.last_tool),
    ] {
        if v.is_some() {
            slot.clone_from(v);
        }
    }
}

/// The activity of every attempt whose claim is current.
pub(crate) fn activities(tx: &Transaction<'_>) -> R<Vec<ActivityRow>> {
    let mut st = tx.prepare_cached(
        "SELECT a.task, a.fence, a.instance, a.activity, a.updated_ms FROM attempt_activity a
         JOIN tasks t ON t.id = a.task AND t.fence = a.fence AND t.status = 'running' ORDER BY a.task",
    )?;
    let rows = st.query_map([], |r| {
        let text: String = r.get(3)?;
        Ok(ActivityRow {
            task: r.get(0)?,
            fence: r.get(1)?,
            instance: r.get(2)?,
            activity: serde_json::from_str(&text).unwrap_or_default(),
            updated_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Violation columns in the order `violation_row` reads them.
const VIOLATION_COLS: &str = "task, fence, instance, path, lease_path, holder_instance, holder_task, holder_role, tool, at_ms";

fn violation_row(r: &Row<'_>) -> rusqlite::Result<ViolationRow> {
    Ok(ViolationRow {
        task: r.get(0)?,
        fence: r.get(1)?,
        instance: r.get(2)?,
        path: r.get(3)?,
        lease_path: r.get(4)?,
        holder_instance: r.get(5)?,
        holder_task: r.get(6)?,
        holder_role: r.get(7)?,
        tool: r.get(8)?,
        at_ms: r.get(9)?,
    })
}

/// `CoordStore::record_violations`.
pub(crate) fn record_violations(
    tx: &Transaction<'_>,
    who: &Actor,
    found: &[Violation],
    now: i64,
) -> R<Vec<ViolationRow>> {
    fenced_role(tx, who)?;
    let mut new = Vec::new();
    for v in found {
        let l = &v.lease;
        let n = exec(
            tx,
            "INSERT OR IGNORE INTO lease_violations (task, fence, instance, path, lease_path, holder_instance,
                                                     holder_task, holder_role, tool, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![who.task, who.fence, who.instance, v.path, l.path, l.instance, l.task, l.role, v.tool, now],
        )?;
        if n == 0 {
            continue;
        }
        let data =
            json!({ "path": v.path, "holder": l.instance, "holder_task": l.task, "tool": v.tool });
        event(
            tx,
            now,
            Some(&who.task),
            Some(who.fence),
            &who.instance,
            "lease-violation",
            &data,
        )?;
        new.push(ViolationRow {
            task: who.task.clone(),
            fence: who.fence,
            instance: who.instance.clone(),
            path: v.path.clone(),
            lease_path: l.path.clone(),
            holder_instance: l.instance.clone(),
            holder_task: l.task.clone(),
            holder_role: l.role.clone(),
            tool: v.tool.clone(),
            at_ms: now,
        });
    }
    Ok(new)
}

/// Violations of a task (of one claim when `fence` is given), oldest first.
pub(crate) fn violations(
    tx: &Transaction<'_>,
    task: &str,
    fence: Option<i64>,
) -> R<Vec<ViolationRow>> {
    let sql = format!(
        "SELECT {VIOLATION_COLS} FROM lease_violations WHERE task = ?1 AND (?2 IS NULL OR fence = ?2) ORDER BY id"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(params![task, fence], violation_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `CoordStore::create_agent_task`.
pub(crate) fn create_agent_task(
    tx: &Transaction<'_>,
    who: &Actor,
    task: &NewTask,
    max: u32,
    now: i64,
) -> R<()> {
    fenced_role(tx, who)?;
    let owner: String = tx
        .prepare_cached("SELECT owner FROM tasks WHERE id = ?1")?
        .query_row([&who.task], |r| r.get(0))?;
    let made: i64 = tx
        .prepare_cached("SELECT count(*) FROM agent_tasks WHERE owner = ?1")?
        .query_row([&owner], |r| r.get(0))?;
    if made >= i64::from(max) {
        return Err(E::Store(StoreError::Conflict(format!(
            "this run's agents have already created {made} tasks, the most [coord] max_agent_tasks allows ({max}); no more can be created"
        ))));
    }
    if !tasks::insert_new(tx, task, now, None, &who.instance, Some(&who.task))? {
        return Err(E::Store(StoreError::Conflict(format!(
            "a task with the id {} exists already; choose another id (or leave it out)",
            task.id
        ))));
    }
    exec(
        tx,
        "INSERT INTO agent_tasks (id, parent, fence, owner, instance, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![task.id, who.task, who.fence, owner, who.instance, now],
    )?;
    add_scope(tx, &owner, std::slice::from_ref(&task.id))
}

/// Ids of the tasks one task's agents created, oldest first.
pub(crate) fn agent_tasks(tx: &Transaction<'_>, parent: &str) -> R<Vec<String>> {
    super::read::column(
        tx,
        "SELECT id FROM agent_tasks WHERE parent = ?1 ORDER BY created_ms, id",
        parent,
    )
}
