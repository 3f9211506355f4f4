//! Outside agents: the processes that join the fleet over `borg serve` (seed 000's
//! coordination API) instead of being started by borg. Their registrations, their
//! progress reports, and the ready tasks they may list.
//!
//! Semantics every backend keeps:
//! - an agent is registered under its agent id with its capabilities and the SHA-256
//!   (lowercase hex) of its token; registering the same id again replaces the token
//!   and the capabilities (the old token stops working). The plain token is never
//!   stored. Registering also registers the agent's owner ([`agent_owner`]), with host
//!   [`AGENT_HOST`] and pid 0, so that no borg ever judges it dead by its pid: its
//!   claims come back only when their lease expires;
//! - an agent's claim is an ordinary claim (`Store::claim_next` with `only = [task]`,
//!   `roles = [its role]`, `owner = agent_owner(id)`), fenced like any other: a task an
//!   agent holds is never started by a borg child, and the reverse;
//! - a progress report renews the claim's lease and replaces the task's progress row,
//!   in one transaction that also appends a `progress` event; a stale fence changes
//!   nothing and is `StaleClaim`, like every owner write;
//! - `ready_tasks` lists what a claim could take now: pending, every dependency
//!   succeeded, `not_before` passed, retries left, not pinned to an instance, and not
//!   waiting for a person to accept the handoff it came from.

use super::{ClaimToken, StoreError, TaskRow};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The host recorded for an agent's owner row: no machine is called that, so the
/// pid-based dead-borg check of `borg run` never applies to it.
pub const AGENT_HOST: &str = "(outside agent)";

/// The owner id under which an agent's claims are held.
pub fn agent_owner(agent_id: &str) -> String {
    format!("agent:{agent_id}")
}

/// The agent id of an owner id, when the owner is an outside agent.
pub fn agent_of_owner(owner: &str) -> Option<&str> {
    owner.strip_prefix("agent:")
}

/// A registration to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistration {
    /// The agent id (`[A-Za-z0-9._-]`, 1 to 64).
    pub id: String,
    /// Capabilities it declared (at least one).
    pub capabilities: Vec<String>,
    /// The version it declared.
    pub version: Option<String>,
    /// SHA-256 of its token, lowercase hex.
    pub token_sha256: String,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRow {
    /// The agent id.
    pub id: String,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Its version.
    pub version: Option<String>,
    /// SHA-256 of its token, lowercase hex.
    pub token_sha256: String,
    /// When it (last) registered, epoch ms.
    pub registered_ms: i64,
}

/// What an agent reports while it works on a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// 0 to 100.
    pub percent: f64,
    /// What it is doing now.
    pub step: String,
    /// Files it changed so far.
    pub files: Vec<String>,
    /// What holds it up.
    pub blockers: Vec<String>,
    /// Free text.
    pub notes: Option<String>,
}

/// The latest progress of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressRow {
    /// Task id.
    pub task: String,
    /// Fence of the claim that reported it.
    pub fence: i64,
    /// The owner that reported it.
    pub owner: String,
    /// The report.
    pub report: ProgressReport,
    /// When, epoch ms.
    pub updated_ms: i64,
}

/// A task a claim could take now, with its creation time.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyTask {
    /// The task.
    pub task: TaskRow,
    /// When it was created, epoch ms.
    pub created_ms: i64,
}

/// The store's side of outside agents (see the module doc for the semantics).
pub trait AgentStore {
    /// Registers an agent (or re-registers it: new token, new capabilities) and its
    /// owner row; appends an `agent-registered` event (without the token hash).
    fn register_agent(&self, reg: &AgentRegistration, now_ms: i64) -> Result<AgentRow, StoreError>;
    /// The agent whose token has this SHA-256, if any.
    fn agent_by_token(&self, token_sha256: &str) -> Result<Option<AgentRow>, StoreError>;
    /// Every registered agent, by id.
    fn agents(&self) -> Result<Vec<AgentRow>, StoreError>;
    /// Renews the claim's lease and records its progress (see the module doc).
    fn record_progress(
        &self,
        token: &ClaimToken,
        report: &ProgressReport,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The latest progress of every task that is running under the claim that
    /// reported it.
    fn progress(&self) -> Result<Vec<ProgressRow>, StoreError>;
    /// Up to `limit` tasks of these roles a claim could take now, best first (priority
    /// desc, list order).
    fn ready_tasks(
        &self,
        roles: &[String],
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ReadyTask>, StoreError>;
}
