//! The durable claim and handoff table. Every state change of a task goes through a
//! `Store`, whose methods speak borg's language (claim_next, heartbeat, finish, handoff),
//! so the scheduler never sees SQL. Two backends: SQLite (`sqlite`, embedded, the
//! default) and PostgreSQL (`postgres`, shared by hosts); `location` picks one.
//!
//! Semantics (see ../shared/docs/state.md):
//! - a task is claimable when it is `pending`, its `not_before` has passed, all its
//!   dependencies `succeeded`, its role is in the request, its pin (if any) names an
//!   idle instance of the request, and it has no live claim; a claim whose lease expired
//!   is taken over lazily by the next claim (fence + 1);
//! - every claim increments the task's fence; owner writes carry `(task, fence)` and are
//!   refused with `StoreError::StaleClaim` when the fence moved on;
//! - each state change appends to the event log in the same transaction.

pub mod agents;
pub mod coord;
mod error;
pub mod feed;
mod git;
pub mod location;
pub mod merge;
pub mod postgres;
mod rows;
pub mod sessions;
pub mod sqlite;
mod verify;
pub mod view;

use crate::outcome::Status;
pub use agents::AgentStore;
pub use coord::{CoordLog, CoordStore};
pub use error::StoreError;
pub use git::GitStore;
pub use merge::MergeStore;
pub use rows::*;
pub use sessions::SessionStore;
use std::time::Duration;
pub use verify::VerifyStore;
pub use view::{FleetView, ViewStore};

/// The coordination store. All methods are synchronous and short; call them from
/// `spawn_blocking` in async code. Capabilities of later features are supertraits
/// ([`AgentStore`], [`CoordStore`], [`CoordLog`], [`GitStore`], [`ViewStore`], [`SessionStore`],
/// [`VerifyStore`], [`MergeStore`]), so every backend implements them.
pub trait Store:
    Send
    + Sync
    + AgentStore
    + coord::CoordStore
    + coord::CoordLog
    + GitStore
    + ViewStore
    + SessionStore
    + VerifyStore
    + MergeStore
{
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
    /// A person accepts a handoff. A task already made from it that waited for a person
    /// (`NewTask::awaits_person`) becomes claimable in the same commit.
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

    /// Fleet-wide key/value state (parked-until, breaker, run totals), JSON values. A
    /// change of `breaker` or `parked` appends a `fleet-breaker` / `fleet-parked` event
    /// (data: the new value, actor `borg`) in the same transaction.
    fn set_fleet(
        &self,
        key: &str,
        value: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Reads a fleet-wide value.
    fn fleet(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Change notes pushed by the backend, when it can push (PostgreSQL's
    /// LISTEN/NOTIFY): each note is the actor of a change that committed, or `""` when
    /// changes may have been missed (a reconnection). `None` (the default): the change
    /// feed polls `last_event_id` instead.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// Whether borgs on other machines may use this store (a database server). Then an
    /// owner is judged by its pid only when it also ran on this very boot of this
    /// machine (a host name alone may repeat across machines); else by its lease.
    fn shared_by_hosts(&self) -> bool {
        false
    }
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
