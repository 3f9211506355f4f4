//! Handoffs over HTTP: `POST /api/claude/handoff` (an agent hands its claimed task's
//! work on to a role: it becomes a task when the agent completes the task), and a
//! person's `POST /api/handoffs/{id}/accept` and `/reject` (the dashboard's buttons),
//! plus `GET /api/handoffs`.

use super::iso;
use crate::serve::auth::Caller;
use crate::serve::error::{ok, ApiError, ApiResult};
use crate::serve::extract::{task_id, ApiJson, PathId};
use crate::serve::App;
use crate::store::agents::agent_owner;
use crate::store::{call, ClaimToken, HandoffRequest, HandoffRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The request body (seed 000's shape; `toAgent` names the target role).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    task_id: String,
    from_agent: Option<String>,
    to_agent: String,
    reason: String,
    current_state: Option<String>,
    #[serde(default)]
    next_steps: Vec<String>,
    fence: Option<i64>,
}

/// A person's rejection.
#[derive(Debug, Deserialize)]
pub struct Reject {
    #[serde(default)]
    reason: String,
}

/// The handoff as the API shows it.
pub fn handoff_json(h: &HandoffRow) -> Value {
    json!({
        "id": format!("handoff_{}", h.id),
        "number": h.id,
        "taskId": h.task,
        "fromAgent": h.from_instance.as_deref().map(super::holder).unwrap_or_else(|| h.from_role.clone()),
        "fromRole": h.from_role,
        "toAgent": h.request.to_role,
        "reason": h.request.reason,
        "currentState": h.request.state,
        "nextSteps": h.request.next_steps,
        "status": serde_json::to_value(h.state).unwrap_or(Value::Null),
        "newTaskId": h.new_task,
        "rejectReason": h.reject_reason,
        "createdAt": iso(h.created_ms),
    })
}

/// An agent asks for a handoff of the task it holds.
pub async fn request(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<Request>,
) -> ApiResult {
    let agent = caller.agent()?;
    let id = task_id(&body.task_id)?;
    if body.from_agent.as_deref().is_some_and(|f| f != agent.id) {
        return Err(ApiError::forbidden(format!(
            "fromAgent {:?} is not the agent of this token ({})",
            body.from_agent.unwrap_or_default(),
            agent.id
        )));
    }
    app.roles.get(&body.to_agent).map_err(|e| {
        ApiError::invalid(format!("toAgent must name a role: {e}")).code("UNKNOWN_ROLE")
    })?;
    if body.reason.trim().is_empty() || body.reason.len() > 10_000 {
        return Err(ApiError::invalid("reason: 1 to 10000 characters"));
    }
    let tid = id.clone();
    let task = call(&app.store, move |st| st.task(&tid))
        .await?
        .ok_or_else(|| ApiError::not_found("TASK_NOT_FOUND", format!("no task {id:?}")))?;
    let me = agent_owner(&agent.id);
    if body.fence.is_none() && task.owner.as_deref() != Some(me.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TASK_NOT_CLAIMED",
            format!(
                "{} holds no claim on task {id}; only the holder of a task hands it off",
                agent.id
            ),
        ));
    }
    let token = ClaimToken {
        task: id.clone(),
        fence: body.fence.unwrap_or(task.fence),
        owner: me.clone(),
    };
    let req = HandoffRequest {
        to_role: body.to_agent,
        reason: body.reason,
        state: body.current_state,
        next_steps: body.next_steps.into_iter().take(100).collect(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let hid = call(&app.store, move |st| {
        st.request_handoff(&token, Some(&me), &req, now)
    })
    .await?;
    let row = find(&app, hid).await?;
    Ok(ok(handoff_json(&row)))
}

async fn find(app: &App, id: i64) -> Result<HandoffRow, ApiError> {
    call(&app.store, |st| st.handoffs(None))
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(|| ApiError::not_found("HANDOFF_NOT_FOUND", format!("no handoff {id}")))
}

/// `handoff_7` or `7`.
fn handoff_id(s: &str) -> Result<i64, ApiError> {
    s.strip_prefix("handoff_")
        .unwrap_or(s)
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("HANDOFF_NOT_FOUND", format!("no handoff {s:?}")))
}

/// Every handoff, newest last.
pub async fn list(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> ApiResult {
    caller.may_read(&app)?;
    let rows = call(&app.store, |st| st.handoffs(None)).await?;
    Ok(ok(Value::Array(rows.iter().map(handoff_json).collect())))
}

/// A person accepts a handoff: its task (if already made) becomes claimable.
pub async fn accept(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
) -> ApiResult {
    caller.admin()?;
    let id = handoff_id(&id)?;
    find(&app, id).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let row = call(&app.store, move |st| st.accept_handoff(id, now)).await?;
    Ok(ok(handoff_json(&row)))
}

/// A person rejects a handoff: its task, if made and not started, is skipped.
pub async fn reject(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<Reject>,
) -> ApiResult {
    caller.admin()?;
    let id = handoff_id(&id)?;
    find(&app, id).await?;
    let reason = if body.reason.trim().is_empty() {
        "rejected from the dashboard".to_string()
    } else {
        body.reason.chars().take(2000).collect()
    };
    let now = chrono::Utc::now().timestamp_millis();
    let row = call(&app.store, move |st| st.reject_handoff(id, &reason, now)).await?;
    Ok(ok(handoff_json(&row)))
}
