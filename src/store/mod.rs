//! The durable claim and handoff table. Every state change of a task goes through a
//! `Store`, whose methods speak borg's language (claim_next, heartbeat, finish, handoff),
//! so the scheduler never sees SQL and a PostgreSQL backend can follow.
//!
//! Semantics (see ../shared/docs/state.md):
//! - a task is claimable when it is `pending`, its `not_before` has passed, all its
//!   dependencies `succeeded`, its role is in the request, its pin (if any) names an
//!   idle instance of the request, and it has no live claim; a claim whose lease expired
//!   is taken over lazily by the next claim (fence + 1);
//! - every claim increments the task's fence; owner writes carry `(task, fence)` and are
//!   refused with `StoreError::StaleClaim` when the fence moved on;
//! - each state change appends to the event log in the same transaction.

pub mod feed;
pub mod sqlite;

use crate::outcome::Status;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Errors of the store. Locked/corrupt/newer-schema/network-fs are user-facing (exit 2).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The claim's fence is not the task's current fence: another claim took over.
    #[error("stale claim on task {task}: fence {fence} is no longer current (current {current}); another worker owns it now")]
    StaleClaim {
        /// Task id.
        task: String,
        /// The fence presented.
        fence: i64,
        /// The task's fence now.
        current: i64,
    },
    /// The database stayed locked longer than the busy timeout.
    #[error(
        "the store {path} stayed locked for more than {secs} s (another borg is writing to it?)"
    )]
    Locked {
        /// Database path.
        path: String,
        /// Busy timeout.
        secs: u64,
    },
    /// The file is not a database, or failed its integrity check.
    #[error("the store {path} is corrupted or not a borg database: {message}")]
    Corrupt {
        /// Database path.
        path: String,
        /// Details.
        message: String,
    },
    /// Written by a newer borg.
    #[error("the store {path} has schema version {found}, newer than this borg understands ({supported}); upgrade borg")]
    NewerSchema {
        /// Database path.
        path: String,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// On NFS/SMB/etc., where SQLite locking is unsafe.
    #[error("the store {path} is on a network filesystem ({fs}); SQLite needs a local disk: use --store on a local path")]
    NetworkFs {
        /// Database path.
        path: String,
        /// Filesystem kind.
        fs: String,
    },
    /// No such task / handoff / attempt.
    #[error("{0} not found")]
    NotFound(String),
    /// A request that does not fit the state (e.g. retry of a running task).
    #[error("{0}")]
    Conflict(String),
    /// Anything else from the database.
    #[error("store error: {0}")]
    Other(String),
}

/// Identity of one borg process, recorded so a later borg can tell it is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerInfo {
    /// Unique owner id for this process (e.g. `borg-<host>-<pid>-<hex>`).
    pub id: String,
    /// Host name.
    pub host: String,
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

/// The coordination store. All methods are synchronous and short; call them from
/// `spawn_blocking` in async code.
pub trait Store: Send + Sync {
    /// Registers (or refreshes) a borg process.
    fn register_owner(&self, owner: &OwnerInfo) -> Result<(), StoreError>;
    /// Updates an owner's heartbeat.
    fn heartbeat_owner(&self, owner: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Every registered owner.
    fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError>;
    /// An owner is provably gone: its claims are released at once (tasks back to
    /// pending, fence + 1), its running attempts marked `interrupted`, and it is removed.
    /// Returns the attempts it had running (for the process sweep).
    fn release_owner(&self, owner: &str, now_ms: i64) -> Result<Vec<AttemptRow>, StoreError>;
    /// Leases that expired: same as `release_owner` for those claims only.
    fn release_expired(&self, now_ms: i64) -> Result<Vec<AttemptRow>, StoreError>;

    /// Inserts new tasks, updates changed pending ones, reports changed succeeded ones.
    fn sync_tasks(&self, tasks: &[NewTask], now_ms: i64) -> Result<SyncReport, StoreError>;
    /// Adds tasks to the set an owner's `scoped` claims may take (kept until the owner
    /// is released).
    fn add_scope(&self, owner: &str, tasks: &[String]) -> Result<(), StoreError>;
    /// Claims the best ready task (priority desc, order asc), or None.
    fn claim_next(&self, req: &ClaimRequest) -> Result<Option<Claim>, StoreError>;
    /// Renews the lease; `StaleClaim` when the fence moved on.
    fn heartbeat(&self, token: &ClaimToken, lease: Duration, now_ms: i64)
        -> Result<(), StoreError>;
    /// Records the start of the attempt of this claim.
    fn start_attempt(&self, token: &ClaimToken, start: &AttemptStart) -> Result<(), StoreError>;
    /// Records the end of the attempt and moves the task on; releases the claim and
    /// marks idle the instance this owner holds for the task.
    fn finish_attempt(&self, token: &ClaimToken, finish: &AttemptFinish) -> Result<(), StoreError>;
    /// Marks pending tasks skipped (e.g. after a failed dependency outside a claim).
    fn skip_tasks(&self, ids: &[String], reason: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Records a handoff request of the running claim (checked against the fence).
    fn request_handoff(
        &self,
        token: &ClaimToken,
        from_instance: Option<&str>,
        req: &HandoffRequest,
        now_ms: i64,
    ) -> Result<i64, StoreError>;
    /// Handoffs, newest last; `task` filters by source task.
    fn handoffs(&self, task: Option<&str>) -> Result<Vec<HandoffRow>, StoreError>;
    /// A person accepts a handoff.
    fn accept_handoff(&self, id: i64, now_ms: i64) -> Result<HandoffRow, StoreError>;
    /// A person rejects a handoff (its task, if created and not started, is skipped).
    fn reject_handoff(&self, id: i64, reason: &str, now_ms: i64) -> Result<HandoffRow, StoreError>;

    /// Re-queues a task on purpose (any terminal state → pending, attempts kept in history).
    fn retry_task(&self, id: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Every task, in (order, id) order.
    fn tasks(&self) -> Result<Vec<TaskRow>, StoreError>;
    /// Every task's id and status, and nothing else: cheap enough to call often.
    fn statuses(&self) -> Result<Vec<(String, Status)>, StoreError>;
    /// One task.
    fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError>;
    /// Attempts of one task, oldest first.
    fn attempts(&self, task: &str) -> Result<Vec<AttemptRow>, StoreError>;
    /// Attempts still marked running (any owner).
    fn running_attempts(&self) -> Result<Vec<AttemptRow>, StoreError>;
    /// Events with id > `after`, at most `limit`.
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, StoreError>;
    /// The id of the newest event (0 when there is none): a cheap change detector,
    /// since every state change appends an event in its own transaction.
    fn last_event_id(&self) -> Result<i64, StoreError>;

    /// Registers or updates an instance's state.
    fn upsert_instance(&self, row: &InstanceRow) -> Result<(), StoreError>;
    /// Marks an instance busy for `row.owner`, unless another owner is using it now.
    /// Returns whether it was acquired. This is what keeps two borg processes sharing a
    /// workspaces folder out of each other's instances.
    fn acquire_instance(&self, row: &InstanceRow) -> Result<bool, StoreError>;
    /// Every registered instance.
    fn instances(&self) -> Result<Vec<InstanceRow>, StoreError>;
    /// Removes an instance row.
    fn remove_instance(&self, id: &str) -> Result<(), StoreError>;

    /// Fleet-wide key/value state (parked-until, breaker, run totals), JSON values.
    fn set_fleet(
        &self,
        key: &str,
        value: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Reads a fleet-wide value.
    fn fleet(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError>;
}

/// Runs a store call on tokio's blocking pool, so a commit waiting for the disk never
/// stalls the async runtime (which is also reading children's pipes).
pub async fn call<T: Send + 'static>(
    store: &std::sync::Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> T + Send + 'static,
) -> T {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || f(s.as_ref())).await {
        Ok(v) => v,
        // A panic inside a store call is a bug; surface it rather than hide it.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
