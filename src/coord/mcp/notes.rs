//! The tools that share knowledge: the decision log (`log_decision`,
//! `list_decisions`), messages (`send_message`, `read_messages`) and the shared
//! context (`save_context`, `get_context`).

use super::leases::reader;
use super::{args, Ctx, Out};
use crate::coord::notes;
use crate::store::StoreError;
use serde::Deserialize;
use serde_json::{json, Value};

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A store error in words for the model (a lost claim says what to do).
fn said(ctx: &Ctx<'_>, e: StoreError) -> String {
    match e {
        StoreError::StaleClaim { .. } => format!(
            "this attempt's claim on task {} is no longer current; nothing was written. Stop working and end your turn",
            ctx.env.actor.task
        ),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct DecisionArgs {
    category: String,
    title: String,
    description: String,
    #[serde(default)]
    scope: Option<String>,
}

/// `log_decision`.
pub(super) fn log_decision(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: DecisionArgs = args("log_decision", v)?;
    let d = notes::decision(&a.category, &a.title, &a.description, a.scope.as_deref())
        .map_err(|e| e.0)?;
    let row = ctx
        .store
        .log_decision(Some(&ctx.env.actor), &d, now())
        .map_err(|e| said(ctx, e))?;
    Ok(json!({ "id": row.id, "message": format!("logged {}: {}", row.id, row.title) }))
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `list_decisions`.
pub(super) fn list_decisions(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: ListArgs = args("list_decisions", v)?;
    let limit = a.limit.unwrap_or(20);
    if limit == 0 || limit > 200 {
        return Err("limit must be between 1 and 200".into());
    }
    let rows = ctx
        .store
        .decisions(
            a.category.as_deref().filter(|c| !c.is_empty()),
            limit as usize,
        )
        .map_err(|e| e.to_string())?;
    let list: Vec<Value> = rows
        .iter()
        .map(|d| json!({ "id": d.id, "category": d.category, "title": d.title, "description": d.description,
                          "scope": d.scope, "by": d.author, "task": d.task }))
        .collect();
    Ok(json!({ "decisions": list, "count": list.len() }))
}

#[derive(Deserialize)]
struct SendArgs {
    to: String,
    #[serde(default)]
    subject: Option<String>,
    body: String,
}

/// `send_message`.
pub(super) fn send_message(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: SendArgs = args("send_message", v)?;
    let m = notes::message(
        ctx.store,
        &ctx.env.config.roles,
        &[],
        &a.to,
        a.subject.as_deref(),
        &a.body,
    )
    .map_err(|e| e.0)?;
    let row = ctx
        .store
        .send_message(Some(&ctx.env.actor), &m, now())
        .map_err(|e| said(ctx, e))?;
    Ok(
        json!({ "id": row.id, "to": row.to.label(), "message": format!("sent to {}", row.to.label()) }),
    )
}

/// `read_messages`: the unread ones, marked read.
pub(super) fn read_messages(ctx: &Ctx<'_>) -> Out {
    let rows = ctx
        .store
        .unread_messages(&reader(ctx), true, 50, now())
        .map_err(|e| e.to_string())?;
    let list: Vec<Value> = rows
        .iter()
        .map(|m| json!({ "id": m.id, "from": m.from_instance.clone().unwrap_or_else(|| m.author.clone()),
                          "from_task": m.from_task, "to": m.to.label(), "subject": m.subject, "body": m.body,
                          "at": crate::coord::leases::clock(m.created_ms) }))
        .collect();
    Ok(json!({ "messages": list, "count": list.len() }))
}

#[derive(Deserialize)]
struct SaveArgs {
    key: String,
    value: String,
}

/// `save_context`.
pub(super) fn save_context(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: SaveArgs = args("save_context", v)?;
    let key = notes::key(&a.key).map_err(|e| e.0)?;
    let value = notes::value(&a.value).map_err(|e| e.0)?;
    ctx.store
        .save_context(&ctx.env.actor, &key, &value, now())
        .map_err(|e| said(ctx, e))?;
    Ok(json!({ "key": key, "message": format!("saved {key}") }))
}

#[derive(Deserialize)]
struct GetArgs {
    key: String,
}

/// `get_context`.
pub(super) fn get_context(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: GetArgs = args("get_context", v)?;
    let key = notes::key(&a.key).map_err(|e| e.0)?;
    match ctx.store.context(&key).map_err(|e| e.to_string())? {
        Some(c) => Ok(
            json!({ "key": c.key, "value": c.value, "found": true, "by": c.instance, "task": c.task }),
        ),
        None => Ok(json!({ "key": key, "value": null, "found": false })),
    }
}
