//! The store operations of the merge queue, a capability every backend implements
//! (see [`super::Store`]). Semantics, the same on every backend:
//!
//! - **A merge target** (a branch name, e.g. `borg/integration/tasks`) is a claimable
//!   resource: one row with an owner, a lease expiry and a fencing token. A claim
//!   ([`MergeStore::claim_target`]) succeeds when the row does not exist yet (it is
//!   created with fence 1), has no owner, its lease expired, its owner is the claimer,
//!   or its owner is no longer registered (a dead borg released by the owner sweep);
//!   it sets the owner, the lease expiry (`now + lease`) and fence + 1. Otherwise it
//!   fails with [`StoreError::Conflict`] naming the holder and when its lease ends, and
//!   nothing changes.
//! - **Every write of a claim holder** ([`MergeStore::renew_target`],
//!   [`MergeStore::record_merge`], [`MergeStore::release_target`]) runs in one
//!   transaction that first checks `(target, owner, fence)` against the row: when the
//!   fence moved on (another borg claimed the target) or the owner changed, it fails
//!   with [`StoreError::StaleClaim`] (its `task` field names the target) and nothing
//!   changes. Together with git's compare-and-swap of the branch (`update-ref NEW
//!   OLD`), this keeps two borgs from ever advancing one target at once.
//! - **The queue's memory**: one entry per (target, task), in state `landed`,
//!   `conflict` (waiting for its resolve task) or `rejected`; what is not in the
//!   table is still to do. The branch itself is the truth about what landed (a task's
//!   commit contained in the target has landed, whatever the table says), so a borg
//!   killed between moving the branch and recording it loses nothing and merges
//!   nothing twice: the next one records it from git.
//! - Each step appends an event (`merge_landed`, `merge_conflict`, `merge_rejected`)
//!   in its transaction, about the task, with the target as actor data.

use super::{NewTask, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A held claim on a merge target: the right to advance its branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetClaim {
    /// The target branch (short name, e.g. `borg/integration/tasks`).
    pub target: String,
    /// The holder (an owner id, as registered).
    pub owner: String,
    /// The fencing token of this claim.
    pub fence: i64,
}

/// A merge target as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRow {
    /// The target branch.
    pub target: String,
    /// The task list it integrates.
    pub list: String,
    /// The commit the target had when borg first claimed it.
    pub start: String,
    /// The last commit borg moved it to (None: not moved yet).
    pub head: Option<String>,
    /// The holder, if any.
    pub owner: Option<String>,
    /// The fencing token of the last claim.
    pub fence: i64,
    /// When the holder's lease ends, epoch ms.
    pub lease_expires_ms: Option<i64>,
    /// Integration gate runs spent on this target so far.
    pub gate_runs: i64,
}

impl TargetRow {
    /// The refusal of a claim on this target while another live borg holds it.
    pub fn held(&self, now_ms: i64) -> StoreError {
        let left = (self.lease_expires_ms.unwrap_or(now_ms) - now_ms).max(0);
        StoreError::Conflict(format!(
            "the merge target {} is being advanced by {} (its lease ends in {} s); run again when it is done",
            self.target,
            self.owner.as_deref().unwrap_or("another borg"),
            (left + 999) / 1000
        ))
    }
}

/// Where a task stands in a target's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeState {
    /// Its merge commit is on the target.
    Landed,
    /// Its branch conflicts with the target; it waits for its resolve task.
    Conflict,
    /// It broke the integration gates (or its conflict could not be resolved).
    Rejected,
}

impl MergeState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeState::Landed => "landed",
            MergeState::Conflict => "conflict",
            MergeState::Rejected => "rejected",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<MergeState> {
        Some(match s {
            "landed" => MergeState::Landed,
            "conflict" => MergeState::Conflict,
            "rejected" => MergeState::Rejected,
            _ => return None,
        })
    }
}

/// One task's entry in a target's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeEntry {
    /// The task.
    pub task: String,
    /// Its state.
    pub state: MergeState,
    /// The task's commit the entry is about.
    pub commit: String,
    /// Landed: the merge commit on the target.
    pub merged: Option<String>,
    /// Conflict: the resolve task.
    pub resolve_task: Option<String>,
    /// Conflict: the conflicting files.
    pub files: Vec<String>,
    /// Rejected: the gate that failed (or why it was rejected).
    pub gate: Option<String>,
    /// Rejected: the tail of the gate's output.
    pub output_tail: Option<String>,
    /// Rejected: the fix task created for it.
    pub fix_task: Option<String>,
    /// When the entry last changed, epoch ms.
    pub updated_ms: i64,
}

/// One landed task of a [`MergeStep::Landed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landing {
    /// The task.
    pub task: String,
    /// The task's commit that was merged.
    pub commit: String,
    /// The merge commit on the target.
    pub merged: String,
}

/// A step of the queue, recorded in one fenced transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeStep {
    /// The target's branch moved to `head`, landing `tasks` (entries become `landed`;
    /// an entry of another state for the task is replaced, keeping its resolve task
    /// and conflicting files: they say how it landed).
    Landed {
        /// The new head of the target.
        head: String,
        /// The tasks it landed, in order.
        tasks: Vec<Landing>,
    },
    /// `task`'s branch conflicts with the target: `resolve` is inserted as a new
    /// pending task (an id that exists already is [`StoreError::Conflict`] and nothing
    /// changes) and the entry becomes `conflict`.
    Conflict {
        /// The task.
        task: String,
        /// Its commit.
        commit: String,
        /// The conflicting files.
        files: Vec<String>,
        /// The resolve task.
        resolve: NewTask,
    },
    /// `task`'s work broke the integration gates: the entry becomes `rejected`; the
    /// task, when `succeeded`, becomes `integration_failed` (its last attempt's
    /// record gets `error` and `fault` = `integration`) and its pending dependents are
    /// skipped; `fix`, if any, is inserted as a new pending task.
    Rejected {
        /// The task.
        task: String,
        /// Its commit.
        commit: String,
        /// The gate that failed (or why).
        gate: String,
        /// The tail of its output.
        output_tail: String,
        /// The error recorded for the task.
        error: String,
        /// A fix task for the task's role.
        fix: Option<NewTask>,
    },
    /// Integration gate runs spent (added to the target's count).
    GateRuns(i64),
}

/// Store operations of the merge queue (see the module doc for the semantics).
pub trait MergeStore {
    /// Claims `target` for `owner` for `lease`. `list` and `start` (the commit the
    /// branch has now) are recorded when the row is created.
    fn claim_target(
        &self,
        target: &str,
        list: &str,
        start: &str,
        owner: &str,
        lease: Duration,
        now_ms: i64,
    ) -> Result<TargetClaim, StoreError>;

    /// Renews the claim's lease (fenced).
    fn renew_target(
        &self,
        claim: &TargetClaim,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Gives the claim up (fenced): owner and lease cleared, the fence kept.
    fn release_target(&self, claim: &TargetClaim, now_ms: i64) -> Result<(), StoreError>;

    /// Records one step of the queue (fenced); see [`MergeStep`].
    fn record_merge(
        &self,
        claim: &TargetClaim,
        step: &MergeStep,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The target's row and its entries (by task id); None for an unknown target.
    fn merge_target(
        &self,
        target: &str,
    ) -> Result<Option<(TargetRow, Vec<MergeEntry>)>, StoreError>;
}
