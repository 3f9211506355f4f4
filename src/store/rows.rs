//! The rows and requests of the claim and handoff table: what the `Store` trait takes
//! and returns (tasks, claims and their tokens, attempts, handoffs, events, instances,
//! owners), the same for every backend.

use crate::outcome::Status;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Identity of one borg process, recorded so a later borg can tell it is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerInfo {
    /// Unique owner id for this process (e.g. `borg-<host>-<pid>-<hex>`).
    pub id: String,
    /// Host name (of the machine: owners on the same host can check each other's pid).
    pub host: String,
    /// The host's name in the fleet (`borg worker --host-id`; the host name by default).
    #[serde(default)]
    pub host_id: String,
    /// Process id.
    pub pid: i64,
    /// Process start time (field 22 of /proc/PID/stat, clock ticks since boot).
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// When it registered, epoch ms.
    pub started_at_ms: i64,
    /// Last sign of life, epoch ms.
    pub heartbeat_ms: i64,
}

/// A task definition as stored (from the task list or from a handoff).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Task id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Priority (higher first).
    pub priority: i64,
    /// Position in the list (tie-breaker).
    pub order: i64,
    /// Dependencies (task ids).
    pub depends_on: Vec<String>,
    /// Pinned instance, if any.
    pub instance: Option<String>,
    /// Max attempts that count (retries + 1).
    pub max_attempts: i64,
    /// The full task spec as JSON (prompt, timeouts, env, handoff context ...).
    pub spec: serde_json::Value,
    /// Hash of the definition, to notice a changed definition between runs.
    pub hash: String,
    /// A task made from a handoff that must wait for a person: inserted with its
    /// source's success, its handoff left `pending` (linked to it), and not claimable
    /// until a person accepts the handoff (`[handoff] approval = "person"`). Only
    /// meaningful for tasks in `AttemptFinish::new_tasks` named by `converted_handoffs`.
    #[serde(default)]
    pub awaits_person: bool,
}

/// What `sync_tasks` did with a task list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Ids inserted now.
    pub added: Vec<String>,
    /// Ids already known with the same definition.
    pub unchanged: Vec<String>,
    /// Ids whose definition changed while not yet succeeded: updated in place.
    pub updated: Vec<String>,
    /// Ids whose definition changed after they succeeded: reported, not re-run.
    pub changed_after_success: Vec<String>,
}

/// A request for the best ready task.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// The claiming borg (owner id).
    pub owner: String,
    /// Roles that have a free slot now.
    pub roles: Vec<String>,
    /// Instance ids that are idle now (for pinned tasks).
    pub idle_instances: Vec<String>,
    /// `(role, instance id)` of idle instances the claimer would run the task on, best
    /// first: an unpinned task is given the first of its role that no other borg holds,
    /// acquired in the claim's own transaction (one commit instead of two per attempt).
    pub reuse: Vec<(String, String)>,
    /// Restrict to these task ids; empty = any. Costs O(ids) per claim: a run uses
    /// `scoped` instead.
    pub only: Vec<String>,
    /// Restrict to the tasks registered for `owner` with [`Store::add_scope`] (the
    /// run's task list plus its handoffs).
    pub scoped: bool,
    /// Lease length.
    pub lease: Duration,
    /// Now, epoch ms (passed in so tests can move time).
    pub now_ms: i64,
}

/// A claim: the right to run one attempt of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToken {
    /// Task id.
    pub task: String,
    /// Fencing token.
    pub fence: i64,
    /// The owner that holds it.
    pub owner: String,
}

/// A claimed task.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The token for every later write.
    pub token: ClaimToken,
    /// The task row as it is now.
    pub task: TaskRow,
    /// Attempt number this claim will run (1-based, counts every attempt).
    pub attempt: i64,
    /// The instance acquired for it from `ClaimRequest::reuse`, if any.
    pub instance: Option<String>,
}

/// Recorded when a child starts (before it is reported running).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptStart {
    /// Instance running it.
    pub instance: String,
    /// Unique cookie in the child's environment (`BORG_ATTEMPT_UID`).
    pub uid: String,
    /// Pid of the shim (borg's direct child).
    pub shim_pid: i64,
    /// Pid of claude.
    pub pid: i64,
    /// Process group of claude.
    pub pgid: i64,
    /// Start time of claude (field 22 of /proc/PID/stat).
    pub start_time: u64,
    /// Boot id.
    pub boot_id: String,
    /// Raw stdout log path.
    pub stdout_log: String,
    /// Stderr log path.
    pub stderr_log: String,
    /// Session id being resumed, if any.
    pub resume_session: Option<String>,
    /// Now, epoch ms.
    pub now_ms: i64,
}

/// What to do with the task after an attempt ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Disposition {
    /// Done, succeeded. Dependents become claimable; `new_tasks` are inserted.
    Succeeded,
    /// Done, not succeeded (status says how). Dependents are skipped, transitively.
    Final(Status),
    /// Back to pending, claimable again after `not_before_ms`.
    Retry {
        /// Epoch ms.
        not_before_ms: i64,
        /// Whether this attempt uses up one of the task's retries (parking does not).
        counts: bool,
    },
}

/// Recorded when an attempt ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptFinish {
    /// Attempt status.
    pub status: Status,
    /// The full attempt record (outcome, error, files, tests, cost ...), as JSON.
    pub record: serde_json::Value,
    /// What happens to the task.
    pub disposition: Disposition,
    /// Tasks to insert in the same transaction (handoffs becoming tasks).
    pub new_tasks: Vec<NewTask>,
    /// Requested handoffs (ids) that became tasks: (handoff id, new task id).
    pub converted_handoffs: Vec<(i64, String)>,
    /// Cost of the attempt (for run totals).
    pub cost_usd: f64,
    /// Now, epoch ms.
    pub now_ms: i64,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    /// Task id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Priority.
    pub priority: i64,
    /// List order.
    pub order: i64,
    /// Dependencies.
    pub depends_on: Vec<String>,
    /// Pinned instance.
    pub instance: Option<String>,
    /// Status (pending, running, succeeded, failed, ...).
    pub status: Status,
    /// Current fence.
    pub fence: i64,
    /// Current claim owner, if claimed.
    pub owner: Option<String>,
    /// Lease expiry, epoch ms, if claimed.
    pub lease_expires_ms: Option<i64>,
    /// Attempts started (all).
    pub attempts: i64,
    /// Attempts that counted against retries.
    pub counted_attempts: i64,
    /// Max counted attempts.
    pub max_attempts: i64,
    /// Not claimable before this, epoch ms.
    pub not_before_ms: i64,
    /// The spec JSON.
    pub spec: serde_json::Value,
    /// Definition hash.
    pub hash: String,
    /// Handoff id this task came from, if any.
    pub from_handoff: Option<i64>,
    /// Last attempt record JSON, if any.
    pub last_record: Option<serde_json::Value>,
    /// Epoch ms of creation / last update.
    pub updated_ms: i64,
}

/// One attempt as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRow {
    /// Task id.
    pub task: String,
    /// 1-based attempt number.
    pub attempt: i64,
    /// Fence of the claim that ran it.
    pub fence: i64,
    /// Owner that ran it.
    pub owner: String,
    /// What was recorded at start.
    pub start: AttemptStart,
    /// Status (running until finished).
    pub status: Status,
    /// Record JSON once finished.
    pub record: Option<serde_json::Value>,
    /// Epoch ms.
    pub started_ms: i64,
    /// Epoch ms, when finished.
    pub finished_ms: Option<i64>,
}

/// State of a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffState {
    /// Requested; waits for the source attempt to succeed (or for a person).
    Pending,
    /// Turned into a task (or accepted by a person).
    Accepted,
    /// Rejected by a person; does not run.
    Rejected,
    /// The source attempt did not succeed.
    Dropped,
}

/// A handoff request from an agent (or declared in the list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoffRequest {
    /// Target role.
    pub to_role: String,
    /// Why.
    pub reason: String,
    /// Current state of the work.
    pub state: Option<String>,
    /// Next steps.
    pub next_steps: Vec<String>,
}

/// A handoff as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoffRow {
    /// Id.
    pub id: i64,
    /// Source task.
    pub task: String,
    /// Fence of the claim that asked.
    pub fence: i64,
    /// Source role.
    pub from_role: String,
    /// Source instance, if known.
    pub from_instance: Option<String>,
    /// The request.
    pub request: HandoffRequest,
    /// State.
    pub state: HandoffState,
    /// Task created from it.
    pub new_task: Option<String>,
    /// Reason given on rejection.
    pub reject_reason: Option<String>,
    /// Epoch ms.
    pub created_ms: i64,
}

/// One line of the append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Monotonic id.
    pub id: i64,
    /// Epoch ms.
    pub at_ms: i64,
    /// Task id, if about a task.
    pub task: Option<String>,
    /// Fence, if about a claim.
    pub fence: Option<i64>,
    /// Who did it (owner id or "user").
    pub actor: String,
    /// created, claimed, started, heartbeat-lost, succeeded, failed, retry, skipped, handoff ...
    pub kind: String,
    /// Details.
    pub data: serde_json::Value,
}

/// An instance as registered in the store (the folder is the truth for files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Instance id.
    pub id: String,
    /// Role.
    pub role: String,
    /// idle | busy.
    pub state: String,
    /// Task it runs now.
    pub current_task: Option<String>,
    /// Owner using it now.
    pub owner: Option<String>,
    /// Epoch ms.
    pub updated_ms: i64,
}
