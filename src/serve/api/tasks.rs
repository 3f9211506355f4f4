//! `GET /api/claude/tasks?capabilities=a,b` (the ready tasks an agent may do) and
//! `POST /api/claude/tasks/{id}/claim`: the same claim a borg instance takes
//! (`Store::claim_next` with `only = [id]`), under a lease with a fencing token, so a
//! task claimed here is never started by a borg child, and the reverse.

use super::{can_do, holder, iso, required, task_json};
use crate::outcome::{AttemptRecord, Status};
use crate::run::prompt::{self, DepOutcome};
use crate::run::spec::StoredSpec;
use crate::serve::auth::Caller;
use crate::serve::error::{ok, ApiError, ApiResult};
use crate::serve::extract::{task_id, ApiQuery, PathId};
use crate::serve::App;
use crate::store::agents::{agent_owner, AgentRow};
use crate::store::{call, AttemptStart, Claim, ClaimRequest, TaskRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Lists ready tasks the caller may claim.
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    q: ApiQuery,
) -> ApiResult {
    let offered: Option<Vec<String>> = match &caller {
        Caller::Agent(a) => Some(a.capabilities.clone()),
        Caller::Admin => None,
        Caller::Anonymous => return Err(ApiError::unregistered()),
    };
    let asked: Option<Vec<String>> = q.0.get("capabilities").map(|c| {
        c.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let limit = match q.0.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit {l:?}: a whole number 1 to 1000")))?,
        None => 50,
    };
    // The roles whose every capability the agent (and the query) offers: the store
    // then reads only tasks the caller may claim, `limit` of them at most.
    let fits =
        |caps: &Option<Vec<String>>, req: &[String]| caps.as_ref().is_none_or(|c| can_do(c, req));
    let roles: Vec<String> = app
        .roles
        .roles
        .iter()
        .filter(|r| fits(&offered, &r.meta.capabilities) && fits(&asked, &r.meta.capabilities))
        .map(|r| r.name.clone())
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let ready = call(&app.store, move |st| st.ready_tasks(&roles, now, limit)).await?;
    let out: Vec<Value> = ready
        .iter()
        .map(|r| task_json(&app, &r.task, Some(r.created_ms)))
        .collect();
    Ok(ok(Value::Array(out)))
}

/// Claims one task for the calling agent.
pub async fn claim(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
) -> ApiResult {
    let agent = caller.agent()?.clone();
    let id = task_id(&id)?;
    let tid = id.clone();
    let task = call(&app.store, move |st| st.task(&tid))
        .await?
        .ok_or_else(|| ApiError::not_found("TASK_NOT_FOUND", format!("no task {id:?}")))?;
    permitted(&app, &agent, &task)?;
    let req = ClaimRequest {
        owner: agent_owner(&agent.id),
        roles: vec![task.role.clone()],
        idle_instances: vec![],
        reuse: vec![],
        only: vec![id.clone()],
        scoped: false,
        lease: app.settings.serve.lease,
        now_ms: chrono::Utc::now().timestamp_millis(),
    };
    let began = Instant::now();
    let claimed = call(&app.store, move |st| st.claim_next(&req)).await?;
    app.metrics.claim_latency(began.elapsed());
    let Some(c) = claimed else {
        return Err(why_not(&app, &id).await);
    };
    start(&app, &agent, &c).await?;
    let context = context(&app, &c.task).await;
    Ok(ok(json!({
        "id": c.task.id,
        "type": c.task.role,
        "description": c.task.spec.get("prompt").and_then(|p| p.as_str()).unwrap_or(""),
        "context": context,
        "claimedBy": agent.id,
        "claimedAt": iso(c.task.updated_ms),
        "fence": c.token.fence,
        "attempt": c.attempt,
        "leaseExpiresAt": c.task.lease_expires_ms.map(iso),
        "requiredCapabilities": required(&app, &c.task).unwrap_or_default(),
    })))
}

/// The seed's permission model: the agent declared every capability of the task's
/// role; a role this server does not know cannot be judged, so it is refused.
fn permitted(app: &App, agent: &AgentRow, task: &TaskRow) -> Result<(), ApiError> {
    let req = required(app, task).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "INVALID_CAPABILITIES",
            format!(
                "task {} is of role {:?}, which this server does not know; start borg serve with the roles folder of the run",
                task.id, task.role
            ),
        )
    })?;
    if can_do(&agent.capabilities, &req) {
        return Ok(());
    }
    let missing: Vec<&String> = req
        .iter()
        .filter(|c| !agent.capabilities.contains(c))
        .collect();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "INVALID_CAPABILITIES",
        format!(
            "task {} needs capabilities the agent {} did not register: {}",
            task.id,
            agent.id,
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .details(json!({ "required": req, "missing": missing })))
}

/// Why a claim of `id` found nothing to take.
async fn why_not(app: &App, id: &str) -> ApiError {
    let tid = id.to_string();
    let task = match call(&app.store, move |st| st.task(&tid)).await {
        Ok(Some(t)) => t,
        Ok(None) => return ApiError::not_found("TASK_NOT_FOUND", format!("no task {id:?}")),
        Err(e) => return e.into(),
    };
    if task.status == Status::Running {
        let by = holder(task.owner.as_deref().unwrap_or(""));
        return ApiError::new(
            StatusCode::CONFLICT,
            "TASK_ALREADY_CLAIMED",
            format!("Task {id} already claimed by {by}"),
        )
        .details(json!({ "claimedBy": by, "claimedAt": iso(task.updated_ms) }));
    }
    if task.status.is_terminal() {
        return ApiError::new(
            StatusCode::CONFLICT,
            "TASK_NOT_AVAILABLE",
            format!("task {id} is {}; nothing to claim", task.status),
        );
    }
    let hid = task.from_handoff;
    let waits = match hid {
        Some(h) => call(&app.store, move |st| st.handoffs(None))
            .await
            .unwrap_or_default()
            .iter()
            .any(|x| x.id == h && x.state == crate::store::HandoffState::Pending),
        None => false,
    };
    if waits {
        return ApiError::new(
            StatusCode::CONFLICT,
            "TASK_AWAITING_APPROVAL",
            format!("task {id} waits for a person to accept its handoff"),
        )
        .retryable();
    }
    ApiError::new(
        StatusCode::CONFLICT,
        "TASK_NOT_READY",
        format!("task {id} is not ready: a dependency has not succeeded, it waits for a retry backoff, or it is pinned to an instance"),
    )
    .retryable()
}

/// Records the attempt's start, so that it shows as running (instance `agent:<id>`).
async fn start(app: &App, agent: &AgentRow, c: &Claim) -> Result<(), ApiError> {
    let s = AttemptStart {
        instance: agent_owner(&agent.id),
        now_ms: chrono::Utc::now().timestamp_millis(),
        ..AttemptStart::default()
    };
    let token = c.token.clone();
    call(&app.store, move |st| st.start_attempt(&token, &s)).await?;
    Ok(())
}

/// What a child would receive: the role context, the prompt, the dependencies'
/// outcomes and the handoff's context.
async fn context(app: &App, task: &TaskRow) -> String {
    let spec: Option<StoredSpec> = serde_json::from_value(task.spec.clone()).ok();
    let Some(spec) = spec else {
        return String::new();
    };
    let mut deps = Vec::new();
    for d in &spec.task.depends_on {
        let id = d.clone();
        let Ok(Some(row)) = call(&app.store, move |st| st.task(&id)).await else {
            continue;
        };
        let rec = AttemptRecord::from_stored(row.last_record.as_ref());
        deps.push(DepOutcome {
            id: row.id.clone(),
            role: row.role.clone(),
            status: row.status,
            files_changed: rec.as_ref().map(|r| r.changes()).unwrap_or_default(),
            result_text: rec.and_then(|r| r.result_text.or(r.error)),
        });
    }
    match app.roles.get(&task.role) {
        Ok(role) => prompt::build(role, &[], &spec.task.prompt, &deps, spec.handoff.as_ref()),
        Err(_) => spec.task.prompt.clone(),
    }
}
