//! Outside agents in SQLite (`AgentStore`, schema v4): the `agents` table (token
//! hashes, never tokens), the `task_progress` table (the latest report of each task),
//! and the ready-task listing agents choose from.

use super::read::{self, claim_event, event, exec, TASK_COLS};
use super::{misc, SqliteStore, R};
use crate::store::agents::*;
use crate::store::{ClaimToken, OwnerInfo, StoreError};
use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde_json::json;
use std::time::Duration;

impl AgentStore for SqliteStore {
    fn register_agent(&self, reg: &AgentRegistration, now_ms: i64) -> Result<AgentRow, StoreError> {
        let reg = reg.clone();
        self.write(move |tx| register(tx, &reg, now_ms))
    }
    fn agent_by_token(&self, token_sha256: &str) -> Result<Option<AgentRow>, StoreError> {
        self.read(|tx| {
            let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE token_sha256 = ?1");
            let mut st = tx.prepare_cached(&sql)?;
            Ok(st.query_row([token_sha256], agent_row).optional()?)
        })
    }
    fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        self.read(|tx| {
            let sql = format!("SELECT {AGENT_COLS} FROM agents ORDER BY id");
            let mut st = tx.prepare_cached(&sql)?;
            let rows = st.query_map([], agent_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
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
        self.write(move |tx| progress(tx, &token, &report, lease, now_ms))
    }
    fn progress(&self) -> Result<Vec<ProgressRow>, StoreError> {
        self.read(progress_rows)
    }
    fn ready_tasks(
        &self,
        roles: &[String],
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ReadyTask>, StoreError> {
        self.read(|tx| ready(tx, roles, now_ms, limit))
    }
}

const AGENT_COLS: &str = "id, capabilities, version, token_sha256, registered_ms";

fn agent_row(r: &Row<'_>) -> rusqlite::Result<AgentRow> {
    let caps: String = r.get(1)?;
    Ok(AgentRow {
        id: r.get(0)?,
        capabilities: serde_json::from_str(&caps).unwrap_or_default(),
        version: r.get(2)?,
        token_sha256: r.get(3)?,
        registered_ms: r.get(4)?,
    })
}

/// Inserts or replaces the agent's row and registers its owner.
fn register(tx: &Transaction<'_>, reg: &AgentRegistration, now: i64) -> R<AgentRow> {
    exec(
        tx,
        "INSERT INTO agents (id, capabilities, version, token_sha256, registered_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET capabilities = excluded.capabilities, version = excluded.version,
             token_sha256 = excluded.token_sha256, registered_ms = excluded.registered_ms",
        params![
            reg.id,
            serde_json::to_string(&reg.capabilities)?,
            reg.version,
            reg.token_sha256,
            now
        ],
    )?;
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
    misc::register_owner(tx, &owner)?;
    event(
        tx,
        now,
        None,
        None,
        &owner.id,
        "agent-registered",
        &json!({ "agent": reg.id, "capabilities": reg.capabilities, "version": reg.version }),
    )?;
    Ok(AgentRow {
        id: reg.id.clone(),
        capabilities: reg.capabilities.clone(),
        version: reg.version.clone(),
        token_sha256: reg.token_sha256.clone(),
        registered_ms: now,
    })
}

/// Renews the lease (the fence check is the UPDATE's WHERE), then the progress row
/// and its event.
fn progress(
    tx: &Transaction<'_>,
    token: &ClaimToken,
    report: &ProgressReport,
    lease: Duration,
    now: i64,
) -> R<()> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let n = exec(
        tx,
        "UPDATE tasks SET lease_expires_ms = ?1, heartbeat_ms = ?2
         WHERE id = ?3 AND fence = ?4 AND status = 'running' AND owner = ?5",
        params![
            now.saturating_add(lease_ms),
            now,
            token.task,
            token.fence,
            token.owner
        ],
    )?;
    if n == 0 {
        return Err(read::stale(tx, token));
    }
    let text = serde_json::to_string(report)?;
    exec(
        tx,
        "INSERT INTO task_progress (task, fence, owner, report, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (task) DO UPDATE SET fence = excluded.fence, owner = excluded.owner,
             report = excluded.report, updated_ms = excluded.updated_ms",
        params![token.task, token.fence, token.owner, text, now],
    )?;
    claim_event(tx, now, token, "progress", &serde_json::to_value(report)?)
}

/// What a claim could take now (see `AgentStore::ready_tasks`), through the same
/// partial index as the claim.
fn ready(tx: &Transaction<'_>, roles: &[String], now: i64, limit: usize) -> R<Vec<ReadyTask>> {
    let sql = format!(
        "SELECT {TASK_COLS}, created_ms FROM tasks t INDEXED BY tasks_ready
         WHERE t.status = 'pending' AND t.unmet = 0 AND t.not_before_ms <= ?1
           AND t.counted_attempts < t.max_attempts AND t.instance IS NULL
           AND t.role IN (SELECT value FROM json_each(?3))
           AND {NOT_AWAITING}
         ORDER BY t.priority DESC, t.ord, t.id LIMIT ?2"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let roles = serde_json::to_string(roles)?;
    let mut rows = st.query(params![now, limit, roles])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut task = read::task_row(r)?;
        let created_ms: i64 = r.get(read::TASK_COLS_LEN)?;
        task.depends_on = read::deps_of(tx, &task.id)?;
        out.push(ReadyTask { task, created_ms });
    }
    Ok(out)
}

/// The claim filter that keeps back a task made from a handoff still waiting for a
/// person (its handoff is `pending`): see `Store::accept_handoff`.
pub(crate) const NOT_AWAITING: &str = "(t.from_handoff IS NULL OR NOT EXISTS
      (SELECT 1 FROM handoffs h WHERE h.id = t.from_handoff AND h.state = 'pending'))";

/// The latest progress report of each claim an outside agent holds now (reports of
/// claims that ended or changed hands are left out).
pub(super) fn progress_rows(tx: &Transaction<'_>) -> R<Vec<ProgressRow>> {
    let mut st = tx.prepare_cached(
        "SELECT p.task, p.fence, p.owner, p.report, p.updated_ms FROM task_progress p
         JOIN tasks t ON t.id = p.task AND t.fence = p.fence AND t.status = 'running'
         ORDER BY p.task",
    )?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let text: String = r.get(3)?;
        out.push(ProgressRow {
            task: r.get(0)?,
            fence: r.get(1)?,
            owner: r.get(2)?,
            report: serde_json::from_str(&text)?,
            updated_ms: r.get(4)?,
        });
    }
    Ok(out)
}
