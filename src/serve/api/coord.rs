//! Seed 000's file access and shared context over the coordination store, the same
//! leases and context the MCP tools of borg's children use: `POST /api/claude/locks
//! {path, operation}` (a lease: a lock token, or `FILE_LOCKED` with `lockedBy`),
//! `DELETE /api/claude/locks/{token}`, `GET|PUT /api/claude/context/{id}`.
//!
//! Leases and context writes are made for an attempt, fenced by its claim: an agent
//! makes them for a task it holds (`taskId`, or its only claim), as `agent:<id>`.

use super::{holder, iso};
use crate::coord::{notes, paths};
use crate::serve::auth::Caller;
use crate::serve::error::{ok, ApiError, ApiResult};
use crate::serve::extract::{task_id, ApiJson, PathId};
use crate::serve::App;
use crate::store::agents::{agent_owner, AgentRow};
use crate::store::call;
use crate::store::coord::{Actor, LockRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Outside agents name paths relative to the repository root; no absolute path is
/// inside this one.
const ROOT: &str = "/.borg-repository-root";

/// A lock request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    path: String,
    #[serde(default)]
    operation: Option<String>,
    reason: Option<String>,
    ttl_seconds: Option<u64>,
    task_id: Option<String>,
}

/// The attempt an agent acts for: the claim it holds on `task` (or its only claim).
async fn actor(app: &App, agent: &AgentRow, task: Option<&str>) -> Result<Actor, ApiError> {
    let me = agent_owner(&agent.id);
    let mine = me.clone();
    let held: Vec<(String, i64)> = call(&app.store, move |st| st.tasks())
        .await?
        .into_iter()
        .filter(|t| t.owner.as_deref() == Some(mine.as_str()))
        .map(|t| (t.id, t.fence))
        .collect();
    let pick = match task {
        Some(id) => held.iter().find(|(t, _)| t == id),
        None if held.len() == 1 => held.first(),
        None if held.len() > 1 => {
            return Err(ApiError::invalid(format!(
                "{} holds several tasks ({}): say which with taskId",
                agent.id,
                held.iter()
                    .map(|h| h.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        None => None,
    };
    let (task, fence) = pick.cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "TASK_NOT_CLAIMED",
            format!(
                "{} holds no claim{}: leases and context are taken for a task you hold",
                agent.id,
                task.map(|t| format!(" on task {t}")).unwrap_or_default()
            ),
        )
    })?;
    Ok(Actor {
        task,
        fence,
        instance: me,
        uid: String::new(),
    })
}

/// Takes a lease on one path for the agent's claim.
pub async fn lock(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<Lock>,
) -> ApiResult {
    let agent = caller.agent()?.clone();
    let op = body.operation.as_deref().unwrap_or("write");
    if !matches!(op, "read" | "write") {
        return Err(ApiError::invalid(format!(
            "operation {op:?}: read or write"
        )));
    }
    let path = paths::pattern(Path::new(ROOT), &body.path)
        .map_err(|e| ApiError::invalid(format!("path: {e}")))?;
    let task = body.task_id.as_deref().map(task_id).transpose()?;
    let who = actor(&app, &agent, task.as_deref()).await?;
    let ttl = match body.ttl_seconds {
        Some(s) if (1..=86_400).contains(&s) => Duration::from_secs(s),
        Some(_) => return Err(ApiError::invalid("ttlSeconds: 1 to 86400")),
        None => app.settings.coord.lease_ttl,
    };
    let reason = body
        .reason
        .unwrap_or_else(|| format!("{op} by outside agent {}", agent.id));
    let req = LockRequest {
        paths: vec![path.clone()],
        reason: notes::text("reason", &reason, notes::MAX_TITLE, true)
            .map_err(|e| ApiError::invalid(e.0))?,
        ttl,
        auto: false,
        queue: None,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let w = who.clone();
    let out = call(&app.store, move |st| st.lock_paths(&w, &req, now)).await?;
    if let Some(b) = out.refused.first() {
        let by = holder(&b.held.instance);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "FILE_LOCKED",
            format!(
                "{} is locked by {by} (task {}): {}",
                b.path, b.held.task, b.held.reason
            ),
        )
        .retryable()
        .details(
            json!({ "lockedBy": by, "task": b.held.task, "role": b.held.role,
                         "since": iso(b.held.since_ms), "lease": b.held.path }),
        ));
    }
    let (p, w) = (path.clone(), who.clone());
    let row = call(&app.store, move |st| st.leases(now))
        .await?
        .into_iter()
        .find(|l| l.path == p && l.task == w.task && l.fence == w.fence)
        .ok_or_else(|| ApiError::server("the lease was granted but cannot be read back"))?;
    Ok(ok(json!({
        "lockToken": format!("lock_{}", row.id),
        "path": row.path,
        "operation": op,
        "taskId": row.task,
        "expiresAt": iso(row.expires_ms),
    })))
}

/// Gives a lease back by its token.
pub async fn unlock(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(token): PathId,
) -> ApiResult {
    let agent = caller.agent()?.clone();
    let not_found = || ApiError::not_found("LOCK_NOT_FOUND", format!("no lock {token:?}"));
    let id: i64 = token
        .strip_prefix("lock_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(not_found)?;
    let now = chrono::Utc::now().timestamp_millis();
    let row = call(&app.store, move |st| st.leases(now))
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(not_found)?;
    if row.instance != agent_owner(&agent.id) {
        return Err(ApiError::forbidden(format!(
            "lock {token} is held by {}, not by {}",
            holder(&row.instance),
            agent.id
        )));
    }
    let who = Actor {
        task: row.task.clone(),
        fence: row.fence,
        instance: row.instance.clone(),
        uid: String::new(),
    };
    let path = row.path.clone();
    let released = call(&app.store, move |st| st.unlock_paths(&who, &[path], now)).await?;
    Ok(ok(
        json!({ "lockToken": token, "path": row.path, "released": !released.is_empty() }),
    ))
}

/// A context key from the path.
fn key(id: &str) -> Result<String, ApiError> {
    notes::key(id).map_err(|e| ApiError::invalid(e.0))
}

/// `GET /api/claude/context/{id}`: the entry; a JSON object's fields are also at the
/// top level (seed 000's `messages`, `metadata` ...).
pub async fn get_context(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
) -> ApiResult {
    caller.may_read(&app)?;
    let k = key(&id)?;
    let kk = k.clone();
    let c = call(&app.store, move |st| st.context(&kk))
        .await?
        .ok_or_else(|| ApiError::not_found("CONTEXT_NOT_FOUND", format!("no context {k:?}")))?;
    let value: Value = serde_json::from_str(&c.value).unwrap_or(Value::String(c.value.clone()));
    let mut data = match &value {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    data["id"] = json!(c.key);
    data["taskId"] = json!(c.task);
    data["agent"] = json!(c.instance.as_deref().map(holder));
    data["updatedAt"] = json!(iso(c.updated_ms));
    data["value"] = value;
    Ok(ok(data))
}

/// `PUT /api/claude/context/{id}` with a JSON object: saved for the agent's claim.
pub async fn put_context(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult {
    let agent = caller.agent()?.clone();
    let k = key(&id)?;
    if !body.is_object() {
        return Err(ApiError::invalid("the context is a JSON object"));
    }
    let task = body
        .get("taskId")
        .and_then(|t| t.as_str())
        .map(task_id)
        .transpose()?;
    let who = actor(&app, &agent, task.as_deref()).await?;
    let value = notes::value(&body.to_string()).map_err(|e| ApiError::invalid(e.0))?;
    let now = chrono::Utc::now().timestamp_millis();
    let kk = k.clone();
    call(&app.store, move |st| {
        st.save_context(&who, &kk, &value, now)
    })
    .await?;
    Ok(ok(
        json!({ "id": k, "updatedAt": iso(now), "agent": agent.id }),
    ))
}
