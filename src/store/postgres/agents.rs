//! Outside agents on PostgreSQL (`AgentStore`, schema v2): the same tables, statements
//! and events as the SQLite store's `agents` (token hashes only; progress renews the
//! lease under the fence check; the ready-task listing of `borg serve`).

use super::engine::Tx;
use super::errors::R;
use super::read::{self, claim_event, event, exec, row, rows, TASK_COLS};
use super::{misc, PgStore};
use crate::store::agents::*;
use crate::store::{ClaimToken, OwnerInfo, StoreError};
use serde_json::json;
use std::time::Duration;

const AGENT_COLS: &str = "id, capabilities, version, token_sha256, registered_ms";

fn agent_row(r: &tokio_postgres::Row) -> R<AgentRow> {
    let caps: String = r.try_get(1)?;
    Ok(AgentRow {
        id: r.try_get(0)?,
        capabilities: serde_json::from_str(&caps).unwrap_or_default(),
        version: r.try_get(2)?,
        token_sha256: r.try_get(3)?,
        registered_ms: r.try_get(4)?,
    })
}

impl AgentStore for PgStore {
    fn register_agent(&self, reg: &AgentRegistration, now_ms: i64) -> Result<AgentRow, StoreError> {
        let reg = reg.clone();
        self.engine.write(move |tx| {
            let reg = reg.clone();
            Box::pin(async move { register(tx, &reg, now_ms).await })
        })
    }
    fn agent_by_token(&self, token_sha256: &str) -> Result<Option<AgentRow>, StoreError> {
        let hash = token_sha256.to_string();
        self.engine.read(move |tx| {
            let hash = hash.clone();
            Box::pin(async move {
                let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE token_sha256 = $1");
                row(tx, &sql, &[&hash])
                    .await?
                    .as_ref()
                    .map(agent_row)
                    .transpose()
            })
        })
    }
    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        self.engine.read(move |tx| {
            Box::pin(async move {
                let sql = format!("SELECT {AGENT_COLS} FROM agents ORDER BY id");
                rows(tx, &sql, &[]).await?.iter().map(agent_row).collect()
            })
        })
    }
    fn record_progress(
        &self,
        token: &ClaimToken,
        report: &ProgressReport,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (token, report) = (token.clone(), report.clone());
        self.engine.write(move |tx| {
            let (token, report) = (token.clone(), report.clone());
            Box::pin(async move { progress(tx, &token, &report, lease, now_ms).await })
        })
    }
    fn progress(&self) -> Result<Vec<ProgressRow>, StoreError> {
        self.engine
            .read(move |tx| Box::pin(async move { progress_rows(tx).await }))
    }
    fn ready_tasks(
        &self,
        roles: &[String],
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ReadyTask>, StoreError> {
        let roles = roles.to_vec();
        self.engine.read(move |tx| {
            let roles = roles.clone();
            Box::pin(async move { ready(tx, &roles, now_ms, limit).await })
        })
    }
}

/// Inserts or replaces the agent's row and registers its owner.
async fn register(tx: &Tx<'_>, reg: &AgentRegistration, now: i64) -> R<AgentRow> {
    let caps = serde_json::to_string(&reg.capabilities)?;
    exec(
        tx,
        "INSERT INTO agents (id, capabilities, version, token_sha256, registered_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET capabilities = excluded.capabilities, version = excluded.version,
             token_sha256 = excluded.token_sha256, registered_ms = excluded.registered_ms",
        &[&reg.id, &caps, &reg.version, &reg.token_sha256, &now],
    )
    .await?;
    let owner = OwnerInfo {
        id: agent_owner(&reg.id),
        host: AGENT_HOST.into(),
        host_id: AGENT_HOST.into(),
        pid: 0,
        start_time: 0,
        boot_id: String::new(),
        started_at_ms: now,
        heartbeat_ms: now,
    };
    misc::register_owner(tx, &owner).await?;
    let data = json!({ "agent": reg.id, "capabilities": reg.capabilities, "version": reg.version });
    event(tx, now, None, None, &owner.id, "agent-registered", &data).await?;
    Ok(AgentRow {
        id: reg.id.clone(),
        capabilities: reg.capabilities.clone(),
        version: reg.version.clone(),
        token_sha256: reg.token_sha256.clone(),
        registered_ms: now,
    })
}

/// Renews the lease under the fence check, then the progress row and its event.
async fn progress(
    tx: &Tx<'_>,
    token: &ClaimToken,
    report: &ProgressReport,
    lease: Duration,
    now: i64,
) -> R<()> {
    let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let n = exec(
        tx,
        "UPDATE tasks SET lease_expires_ms = $1, heartbeat_ms = $2
         WHERE id = $3 AND fence = $4 AND status = 'running' AND owner = $5",
        &[&until, &now, &token.task, &token.fence, &token.owner],
    )
    .await?;
    if n == 0 {
        return Err(read::stale(tx, token).await);
    }
    let text = serde_json::to_string(report)?;
    exec(
        tx,
        "INSERT INTO task_progress (task, fence, owner, report, updated_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (task) DO UPDATE SET fence = excluded.fence, owner = excluded.owner,
             report = excluded.report, updated_ms = excluded.updated_ms",
        &[&token.task, &token.fence, &token.owner, &text, &now],
    )
    .await?;
    claim_event(tx, now, token, "progress", &serde_json::to_value(report)?).await
}

/// The latest progress report of each claim an outside agent holds now.
pub(super) async fn progress_rows(tx: &Tx<'_>) -> R<Vec<ProgressRow>> {
    let found = rows(
        tx,
        "SELECT p.task, p.fence, p.owner, p.report, p.updated_ms FROM task_progress p
         JOIN tasks t ON t.id = p.task AND t.fence = p.fence AND t.status = 'running'
         ORDER BY p.task",
        &[],
    )
    .await?;
    let mut out = Vec::new();
    for r in found {
        let text: String = r.try_get(3)?;
        out.push(ProgressRow {
            task: r.try_get(0)?,
            fence: r.try_get(1)?,
            owner: r.try_get(2)?,
            report: serde_json::from_str(&text)?,
            updated_ms: r.try_get(4)?,
        });
    }
    Ok(out)
}

/// What a claim could take now (see `AgentStore::ready_tasks`), through the same
/// partial index of ready tasks as the claim.
async fn ready(tx: &Tx<'_>, roles: &[String], now: i64, limit: usize) -> R<Vec<ReadyTask>> {
    let sql = format!(
        "SELECT {TASK_COLS}, t.created_ms FROM tasks t
         WHERE t.status = 'pending' AND t.unmet = 0 AND t.not_before_ms <= $1
           AND t.counted_attempts < t.max_attempts AND t.instance IS NULL
           AND t.role = ANY($3::text[])
           AND (t.from_handoff IS NULL OR NOT EXISTS
               (SELECT 1 FROM handoffs h WHERE h.id = t.from_handoff AND h.state = 'pending'))
           AND NOT EXISTS (SELECT 1 FROM task_deps d LEFT JOIN tasks p ON p.id = d.dep
                           WHERE d.task = t.id AND (p.status IS NULL OR p.status <> 'succeeded'))
         ORDER BY t.priority DESC, t.ord, t.id LIMIT $2"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for r in rows(tx, &sql, &[&now, &limit, &roles]).await? {
        let mut task = read::task_row(&r)?;
        let created_ms: i64 = r.try_get(read::TASK_COLS_LEN)?;
        task.depends_on = read::deps_of(tx, &task.id).await?;
        out.push(ReadyTask { task, created_ms });
    }
    Ok(out)
}
