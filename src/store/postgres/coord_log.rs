//! Decisions, messages and the shared context on PostgreSQL (semantics in
//! `store::coord`, statements those of the SQLite store's `coord_log`): decisions
//! numbered per UTC day, messages with per-instance read receipts. Writes that number
//! or bound take the coordination advisory lock (`coord::serialise`), so they hold
//! across hosts. Activity, violations and agent tasks are in `coord_work`.

use super::coord::{fenced_role, serialise};
use super::engine::Tx;
use super::errors::{E, R};
use super::read::{event, exec, row, rows};
use crate::store::coord::*;
use crate::store::StoreError;
use serde_json::json;
use tokio_postgres::Row;

/// Who wrote: (task, fence, instance, role) of an attempt, and the author's name.
type Author = (
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
);

async fn author(tx: &Tx<'_>, who: Option<&Actor>) -> R<Author> {
    match who {
        None => Ok((None, None, None, None, "user".into())),
        Some(a) => {
            let role = fenced_role(tx, a).await?;
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

const DECISION_COLS: &str =
    "id, category, title, description, scope, task, instance, role, author, created_ms";

fn decision_row(r: &Row) -> R<DecisionRow> {
    Ok(DecisionRow {
        id: r.try_get(0)?,
        category: r.try_get(1)?,
        title: r.try_get(2)?,
        description: r.try_get(3)?,
        scope: r.try_get(4)?,
        task: r.try_get(5)?,
        instance: r.try_get(6)?,
        role: r.try_get(7)?,
        author: r.try_get(8)?,
        created_ms: r.try_get(9)?,
    })
}

/// `CoordStore::log_decision`.
pub(crate) async fn log_decision(
    tx: &Tx<'_>,
    who: Option<&Actor>,
    d: &NewDecision,
    now: i64,
) -> R<DecisionRow> {
    serialise(tx).await?;
    let (task, fence, instance, role, by) = author(tx, who).await?;
    let day = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y%m%d")
        .to_string();
    let num: i64 = row(
        tx,
        "SELECT coalesce(max(num), 0) + 1 FROM decisions WHERE day = $1",
        &[&day],
    )
    .await?
    .map(|r| r.try_get(0))
    .transpose()?
    .unwrap_or(1);
    let id = format!("DEC-{day}-{num:04}");
    exec(
        tx,
        "INSERT INTO decisions (id, day, num, category, title, description, scope, task, fence, instance, role, author, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[&id, &day, &num, &d.category, &d.title, &d.description, &d.scope, &task, &fence, &instance, &role, &by, &now],
    )
    .await?;
    let data = json!({ "id": id, "category": d.category, "title": d.title });
    event(tx, now, task.as_deref(), fence, &by, "decision", &data).await?;
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

/// Decisions, newest first (of one category), or of one task oldest first.
pub(crate) async fn decisions(
    tx: &Tx<'_>,
    category: Option<&str>,
    task: Option<&str>,
    limit: usize,
) -> R<Vec<DecisionRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let order = if task.is_some() {
        "created_ms, day, num"
    } else {
        "created_ms DESC, day DESC, num DESC"
    };
    let sql = format!(
        "SELECT {DECISION_COLS} FROM decisions WHERE ($1::text IS NULL OR category = $1)
           AND ($2::text IS NULL OR task = $2) ORDER BY {order} LIMIT $3"
    );
    rows(tx, &sql, &[&category, &task, &limit])
        .await?
        .iter()
        .map(decision_row)
        .collect()
}

const MESSAGE_COLS: &str = "m.id, m.to_kind, m.to_name, m.subject, m.body, m.from_instance, m.from_task, m.from_role, m.author, m.created_ms,
     coalesce((SELECT array_agg(reader ORDER BY read_ms, reader) FROM message_reads r WHERE r.message = m.id), '{}')";

fn message_row(r: &Row) -> R<MessageRow> {
    let (kind, name): (String, String) = (r.try_get(1)?, r.try_get(2)?);
    let to = match kind.as_str() {
        "instance" => Recipient::Instance(name),
        "role" => Recipient::Role(name),
        "task" => Recipient::Task(name),
        _ => Recipient::All,
    };
    Ok(MessageRow {
        id: r.try_get(0)?,
        to,
        subject: r.try_get(3)?,
        body: r.try_get(4)?,
        from_instance: r.try_get(5)?,
        from_task: r.try_get(6)?,
        from_role: r.try_get(7)?,
        author: r.try_get(8)?,
        created_ms: r.try_get(9)?,
        read_by: r.try_get(10)?,
    })
}

/// `CoordStore::send_message`.
pub(crate) async fn send_message(
    tx: &Tx<'_>,
    who: Option<&Actor>,
    m: &NewMessage,
    now: i64,
) -> R<MessageRow> {
    let (task, fence, instance, role, by) = author(tx, who).await?;
    let (kind, name) = match &m.to {
        Recipient::All => ("all", String::new()),
        Recipient::Instance(n) => ("instance", n.clone()),
        Recipient::Role(n) => ("role", n.clone()),
        Recipient::Task(n) => ("task", n.clone()),
    };
    let r = row(
        tx,
        "INSERT INTO messages (to_kind, to_name, subject, body, from_instance, from_task, from_role, author, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        &[&kind, &name, &m.subject, &m.body, &instance, &task, &role, &by, &now],
    )
    .await?
    .ok_or_else(|| E::Store(StoreError::Other("the message was not stored".into())))?;
    let id: i64 = r.try_get(0)?;
    let data = json!({ "message": id, "to": m.to.label(), "subject": m.subject });
    event(tx, now, task.as_deref(), fence, &by, "message", &data).await?;
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
pub(crate) async fn unread(
    tx: &Tx<'_>,
    reader: &Reader,
    mark: bool,
    limit: usize,
    now: i64,
) -> R<Vec<MessageRow>> {
    let sql = format!(
        "SELECT {MESSAGE_COLS} FROM messages m
         WHERE (m.to_kind = 'all' OR (m.to_kind = 'instance' AND m.to_name = $1)
                OR (m.to_kind = 'role' AND m.to_name = $2) OR (m.to_kind = 'task' AND m.to_name = $3))
           AND coalesce(m.from_instance, '') <> $1
           AND NOT EXISTS (SELECT 1 FROM message_reads r WHERE r.message = m.id AND r.reader = $1)
         ORDER BY m.id LIMIT $4"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let task = reader.task.clone().unwrap_or_default();
    let out: Vec<MessageRow> = rows(tx, &sql, &[&reader.instance, &reader.role, &task, &limit])
        .await?
        .iter()
        .map(message_row)
        .collect::<R<_>>()?;
    if mark {
        for m in &out {
            exec(
                tx,
                "INSERT INTO message_reads (message, reader, task, read_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&m.id, &reader.instance, &reader.task, &now],
            )
            .await?;
        }
    }
    Ok(out)
}

/// Messages, newest first.
pub(crate) async fn messages(tx: &Tx<'_>, limit: usize) -> R<Vec<MessageRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!("SELECT {MESSAGE_COLS} FROM messages m ORDER BY m.id DESC LIMIT $1");
    rows(tx, &sql, &[&limit])
        .await?
        .iter()
        .map(message_row)
        .collect()
}

/// (sent by the task, addressed to it or read by its instance while it ran it).
pub(crate) async fn message_counts(tx: &Tx<'_>, task: &str) -> R<(u64, u64)> {
    let one = |r: Option<Row>| -> R<i64> { Ok(r.map(|r| r.try_get(0)).transpose()?.unwrap_or(0)) };
    let sent = one(row(
        tx,
        "SELECT count(*) FROM messages WHERE from_task = $1",
        &[&task],
    )
    .await?)?;
    let got = one(row(
        tx,
        "SELECT count(*) FROM messages m WHERE (m.to_kind = 'task' AND m.to_name = $1)
               OR EXISTS (SELECT 1 FROM message_reads r WHERE r.message = m.id AND r.task = $1)",
        &[&task],
    )
    .await?)?;
    Ok((sent.max(0) as u64, got.max(0) as u64))
}

/// `CoordStore::save_context`.
pub(crate) async fn save_context(
    tx: &Tx<'_>,
    who: &Actor,
    key: &str,
    value: &str,
    now: i64,
) -> R<()> {
    fenced_role(tx, who).await?;
    exec(
        tx,
        "INSERT INTO coord_context (key, value, task, instance, updated_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, task = excluded.task,
             instance = excluded.instance, updated_ms = excluded.updated_ms",
        &[&key, &value, &who.task, &who.instance, &now],
    )
    .await?;
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
    .await
}

/// `CoordStore::context`.
pub(crate) async fn context(tx: &Tx<'_>, key: &str) -> R<Option<ContextEntry>> {
    let r = row(
        tx,
        "SELECT key, value, task, instance, updated_ms FROM coord_context WHERE key = $1",
        &[&key],
    )
    .await?;
    r.map(|r| {
        Ok(ContextEntry {
            key: r.try_get(0)?,
            value: r.try_get(1)?,
            task: r.try_get(2)?,
            instance: r.try_get(3)?,
            updated_ms: r.try_get(4)?,
        })
    })
    .transpose()
}
