//! The tools about the work itself: `report_progress` (seed 000's percentComplete and
//! currentStep), `request_handoff` (the same record as `borg handoff request`) and
//! `create_task` (bounded per run).

use super::{args, Ctx, Out};
use crate::coord::notes::{text, MAX_TEXT, MAX_TITLE};
use crate::coord::tasks::{self, TaskAsk};
use crate::store::coord::Activity;
use crate::store::{ClaimToken, HandoffRequest, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

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
struct ProgressArgs {
    percent: i64,
    step: String,
    #[serde(default)]
    message: Option<String>,
}

/// `report_progress`.
pub(super) fn report_progress(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: ProgressArgs = args("report_progress", v)?;
    if !(0..=100).contains(&a.percent) {
        return Err(format!(
            "percent is {}; give a number from 0 to 100",
            a.percent
        ));
    }
    let step = text("step", &a.step, MAX_TITLE, true).map_err(|e| e.0)?;
    let message = a
        .message
        .filter(|m| !m.trim().is_empty())
        .map(|m| text("message", &m, MAX_TITLE, false))
        .transpose()
        .map_err(|e| e.0)?;
    let act = Activity {
        percent: Some(a.percent as u8),
        step: Some(step),
        message,
        ..Activity::default()
    };
    let lease = Duration::from_millis(ctx.env.config.claim_lease_ms.max(1000));
    ctx.store
        .record_activity(&ctx.env.actor, &act, lease, now())
        .map_err(|e| said(ctx, e))?;
    Ok(json!({ "message": format!("progress {}% recorded", a.percent) }))
}

#[derive(Deserialize)]
struct HandoffArgs {
    to_role: String,
    reason: String,
    #[serde(default)]
    state: Option<String>,
    next_steps: Vec<String>,
}

/// `request_handoff`.
pub(super) fn request_handoff(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: HandoffArgs = args("request_handoff", v)?;
    let roles = &ctx.env.config.roles;
    if !roles.contains(&a.to_role) {
        return Err(format!(
            "role {:?} does not exist; roles: {}",
            a.to_role,
            roles.join(", ")
        ));
    }
    if a.next_steps.len() > 50 {
        return Err("next_steps has more than 50 entries".into());
    }
    let steps = a
        .next_steps
        .iter()
        .map(|s| text("a next step", s, MAX_TITLE * 4, false))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.0)?;
    let req = HandoffRequest {
        to_role: a.to_role.clone(),
        reason: text("reason", &a.reason, MAX_TEXT, false).map_err(|e| e.0)?,
        state: a
            .state
            .filter(|s| !s.trim().is_empty())
            .map(|s| text("state", &s, MAX_TEXT, false))
            .transpose()
            .map_err(|e| e.0)?,
        next_steps: steps,
    };
    let actor = &ctx.env.actor;
    let owner = ctx
        .store
        .task(&actor.task)
        .map_err(|e| e.to_string())?
        .and_then(|t| t.owner)
        .unwrap_or_default();
    let token = ClaimToken {
        task: actor.task.clone(),
        fence: actor.fence,
        owner,
    };
    let id = ctx
        .store
        .request_handoff(&token, Some(&actor.instance), &req, now())
        .map_err(|e| said(ctx, e))?;
    Ok(json!({ "handoff": id, "message": format!(
        "handoff {id} recorded: {} → {} (it becomes a task when this one succeeds)", actor.task, a.to_role) }))
}

#[derive(Deserialize)]
struct CreateArgs {
    prompt: String,
    role: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    priority: Option<i64>,
}

/// `create_task`.
pub(super) fn create_task(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: CreateArgs = args("create_task", v)?;
    let ask = TaskAsk {
        prompt: a.prompt,
        role: a.role,
        id: a.id.filter(|i| !i.is_empty()),
        depends_on: a.depends_on,
        priority: a.priority,
    };
    let task = tasks::build(ctx.store, ctx.env, &ask).map_err(|e| e.0)?;
    let max = ctx.env.config.max_agent_tasks;
    ctx.store
        .create_agent_task(&ctx.env.actor, &task, max, now())
        .map_err(|e| said(ctx, e))?;
    Ok(
        json!({ "id": task.id, "message": format!("task {} created for the {} role; it runs in this run", task.id, task.role) }),
    )
}
