//! `POST /api/claude/tasks/{id}/progress` (renews the lease) and
//! `POST /api/claude/tasks/{id}/complete`, which finishes the attempt exactly like a
//! borg child's finish: the record, the task's new status, its dependents ready (or
//! skipped), its handoffs turned into tasks, all in one commit fenced by the claim. A
//! stale claim changes nothing.

use super::{holder, iso};
use crate::outcome::{AttemptRecord, ChangeKind, FileChange, FileDiff, Status};
use crate::run::handoff::{follow_ups, Approval, Source};
use crate::run::spec::StoredSpec;
use crate::serve::auth::Caller;
use crate::serve::error::{ok, ApiError, ApiResult};
use crate::serve::extract::{task_id, ApiJson, PathId};
use crate::serve::App;
use crate::store::agents::{agent_owner, AgentRow, ProgressReport};
use crate::store::{call, AttemptFinish, ClaimToken, Disposition, TaskRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The progress body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    percent_complete: f64,
    #[serde(default)]
    current_step: String,
    #[serde(default)]
    files_modified: Vec<String>,
    #[serde(default)]
    blockers: Vec<String>,
    notes: Option<String>,
    /// The claim's fencing token; default: the agent's current claim of the task.
    fence: Option<i64>,
}

/// The completion body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Complete {
    success: bool,
    #[serde(default)]
    output: String,
    #[serde(default)]
    files_modified: Vec<String>,
    notes: Option<String>,
    metrics: Option<Value>,
    error: Option<String>,
    fence: Option<i64>,
}

/// Longest text kept from a field.
const TEXT: usize = 64 * 1024;

/// The claim the agent holds on `id` (with `fence`, that one; the store checks it).
async fn token_of(
    app: &App,
    agent: &AgentRow,
    id: &str,
    fence: Option<i64>,
) -> Result<(ClaimToken, TaskRow), ApiError> {
    let tid = id.to_string();
    let task = call(&app.store, move |st| st.task(&tid))
        .await?
        .ok_or_else(|| ApiError::not_found("TASK_NOT_FOUND", format!("no task {id:?}")))?;
    let me = agent_owner(&agent.id);
    if fence.is_none() && task.owner.as_deref() != Some(me.as_str()) {
        return Err(match &task.owner {
            Some(o) => ApiError::new(
                StatusCode::CONFLICT,
                "TASK_ALREADY_CLAIMED",
                format!("Task {id} is claimed by {}, not by {}", holder(o), agent.id),
            )
            .details(json!({ "claimedBy": holder(o), "claimedAt": iso(task.updated_ms) })),
            None => ApiError::new(
                StatusCode::CONFLICT,
                "TASK_NOT_CLAIMED",
                format!("{} holds no claim on task {id}; claim it first", agent.id),
            ),
        });
    }
    let token = ClaimToken {
        task: id.to_string(),
        fence: fence.unwrap_or(task.fence),
        owner: me,
    };
    Ok((token, task))
}

/// Records progress and renews the lease.
pub async fn progress(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<Progress>,
) -> ApiResult {
    let agent = caller.agent()?;
    let id = task_id(&id)?;
    if !(0.0..=100.0).contains(&body.percent_complete) {
        return Err(ApiError::invalid(
            "percentComplete must be a number from 0 to 100",
        ));
    }
    let (token, _) = token_of(&app, agent, &id, body.fence).await?;
    let report = ProgressReport {
        percent: body.percent_complete,
        step: clip(body.current_step),
        files: body
            .files_modified
            .into_iter()
            .take(1000)
            .map(clip)
            .collect(),
        blockers: body.blockers.into_iter().take(100).map(clip).collect(),
        notes: body.notes.map(clip),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let (lease, r) = (app.settings.serve.lease, report.clone());
    call(&app.store, move |st| {
        st.record_progress(&token, &r, lease, now)
    })
    .await?;
    Ok(ok(json!({
        "taskId": id,
        "percentComplete": report.percent,
        "currentStep": report.step,
        "lastUpdated": iso(now),
        "leaseExpiresAt": iso(now + lease.as_millis() as i64),
    })))
}

fn clip(mut s: String) -> String {
    if s.len() > TEXT {
        let mut end = TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Finishes the agent's attempt.
pub async fn complete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<Complete>,
) -> ApiResult {
    let agent = caller.agent()?.clone();
    let id = task_id(&id)?;
    let (token, task) = token_of(&app, &agent, &id, body.fence).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let tid = id.clone();
    let started = call(&app.store, move |st| st.attempts(&tid))
        .await?
        .into_iter()
        .rfind(|a| a.fence == token.fence)
        .map(|a| a.started_ms)
        .unwrap_or(task.updated_ms);
    let completion = format!("comp_{}", uuid::Uuid::new_v4());
    let status = if body.success {
        Status::Succeeded
    } else {
        Status::Failed
    };
    let record = record_of(&agent, &task, &body, status, started, now);
    let mut record_json = serde_json::to_value(&record).unwrap_or_default();
    record_json["outside"] = json!({
        "agent": agent.id, "completion_id": completion,
        "notes": body.notes.clone().map(clip), "metrics": body.metrics,
    });
    let fin = finish_of(&app, &token, &task, &record, record_json, now).await;
    call(&app.store, move |st| st.finish_attempt(&token, &fin)).await?;
    Ok(ok(json!({
        "taskId": id,
        "completionId": completion,
        "completedAt": iso(now),
        "totalDuration": humantime::format_duration(std::time::Duration::from_secs(((now - started).max(0) / 1000) as u64)).to_string(),
        "agentId": agent.id,
        "status": status.as_str(),
    })))
}

/// The attempt record of an outside agent's attempt.
fn record_of(
    agent: &AgentRow,
    task: &TaskRow,
    body: &Complete,
    status: Status,
    started: i64,
    now: i64,
) -> AttemptRecord {
    let error = match status {
        Status::Succeeded => None,
        _ => Some(clip(body.error.clone().unwrap_or_else(|| {
            format!("the agent {} reported failure: {}", agent.id, body.output)
        }))),
    };
    AttemptRecord {
        task: task.id.clone(),
        attempt: u32::try_from(task.attempts).unwrap_or(0),
        instance: agent_owner(&agent.id),
        role: task.role.clone(),
        status: Some(status),
        error,
        files_changed: body
            .files_modified
            .iter()
            .take(1000)
            .map(|p| {
                FileDiff::from(FileChange {
                    path: clip(p.clone()),
                    change: ChangeKind::Modified,
                })
            })
            .collect(),
        result_text: Some(clip(body.output.clone())),
        started_at: iso(started),
        duration_ms: (now - started).max(0) as u64,
        ..AttemptRecord::default()
    }
}

/// What the store does with the task: succeeded (its handoffs become tasks, waiting
/// for a person where approval says so) or failed (its dependents are skipped).
async fn finish_of(
    app: &App,
    token: &ClaimToken,
    task: &TaskRow,
    record: &AttemptRecord,
    record_json: Value,
    now: i64,
) -> AttemptFinish {
    let status = record.status.unwrap_or(Status::Failed);
    let mut fin = AttemptFinish {
        status,
        record: record_json,
        disposition: Disposition::Final(status),
        new_tasks: vec![],
        converted_handoffs: vec![],
        cost_usd: 0.0,
        now_ms: now,
    };
    if status == Status::Succeeded {
        let spec: Option<StoredSpec> = serde_json::from_value(task.spec.clone()).ok();
        let approval = Approval::new(&app.settings.handoff, &app.roles);
        let src = Source {
            task,
            spec: spec.as_ref(),
            instance: &record.instance,
            record,
            approval: &approval,
        };
        let next = follow_ups(&app.store, token, &src).await;
        fin.disposition = Disposition::Succeeded;
        fin.new_tasks = next.new_tasks;
        fin.converted_handoffs = next.converted;
    }
    fin
}
