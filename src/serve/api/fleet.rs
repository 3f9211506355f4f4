//! What the dashboard (and any reader) gets: `GET /api/status` (the fleet view of
//! `borg status --json`, plus the registered agents), `GET /api/dashboard/panels` (the
//! dashboard's panels as server-rendered HTML, fetched again on each event) and
//! `GET /api/tasks/{id}/tail` (the rendered end of a task's newest log, as `borg logs`
//! shows it).

use crate::serve::auth::Caller;
use crate::serve::dashboard;
use crate::serve::error::{ok, ApiError, ApiResult};
use crate::serve::extract::{task_id, PathId};
use crate::serve::App;
use crate::show::fleet::{view, StatusView};
use crate::show::render::Renderer;
use crate::store::agents::AgentRow;
use crate::store::{call, Store, StoreError};
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Extension;
use serde_json::json;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// Bytes read from the end of a log for its tail.
const TAIL_BYTES: u64 = 256 * 1024;
/// Rendered lines sent.
const TAIL_LINES: usize = 60;
/// The newest decisions and messages shown.
const RECENT: usize = 20;

/// The fleet view and the agents, read in one go on the blocking pool.
pub async fn snapshot(app: &App) -> Result<(StatusView, Vec<AgentRow>), StoreError> {
    let external = app.roles.external();
    call(&app.store, move |st: &dyn Store| {
        let v = view(st, &external, RECENT, chrono::Utc::now().timestamp_millis())?;
        Ok((v, st.agents()?))
    })
    .await
}

/// `GET /api/status`.
pub async fn status(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    caller.may_read(&app)?;
    let (v, agents) = snapshot(&app).await?;
    let agents: Vec<_> = agents
        .iter()
        .map(|a| json!({"agentId": a.id, "capabilities": a.capabilities, "version": a.version}))
        .collect();
    let mut data = serde_json::to_value(&v).unwrap_or_default();
    data["agents"] = json!(agents);
    Ok(ok(data))
}

/// `GET /api/dashboard/panels`: the panels' HTML.
pub async fn panels(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    caller.may_read(&app)?;
    let (v, agents) = snapshot(&app).await?;
    let html = dashboard::panels(
        &v,
        &agents,
        &app.roles.external(),
        app.settings.run.timeout.as_millis() as i64,
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// `GET /api/tasks/{id}/tail`: `{task, attempt, running, lines}`.
pub async fn tail(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    PathId(id): PathId,
) -> ApiResult {
    caller.may_read(&app)?;
    let id = task_id(&id)?;
    let tid = id.clone();
    let attempts = call(&app.store, move |st| st.attempts(&tid)).await?;
    let Some(a) = attempts.last() else {
        return Err(ApiError::not_found(
            "TASK_NOT_FOUND",
            format!("no attempt of task {id:?} yet"),
        ));
    };
    let path = a.start.stdout_log.clone();
    let lines = tokio::task::spawn_blocking(move || render_tail(&path))
        .await
        .unwrap_or_default();
    Ok(ok(json!({
        "task": id,
        "attempt": a.attempt,
        "running": a.status == crate::outcome::Status::Running,
        "lines": lines,
    })))
}

/// The last rendered lines of a stdout log (empty when there is none: an outside
/// agent's attempt has no log).
fn render_tail(path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL_BYTES);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    // A tail that starts mid-line drops its first, partial line.
    let start = if from > 0 {
        buf.iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |p| p + 1)
    } else {
        0
    };
    let mut r = Renderer::new(false);
    let mut out: Vec<String> = Vec::new();
    for line in buf[start..].split(|&b| b == b'\n') {
        out.extend(r.line(line));
    }
    let skip = out.len().saturating_sub(TAIL_LINES);
    out.split_off(skip)
}
