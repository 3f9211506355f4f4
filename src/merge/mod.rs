//! The merge queue: the run's finished work landed on a target branch by code, not by
//! an agent, deterministically, durably and resumably.
//!
//! 1. take the ready branches in dependency order, then priority, then finish time
//!    ([`order`]), in batches of `[merge] batch`;
//! 2. merge each onto the candidate with `git merge-tree --write-tree`, one merge
//!    commit per task carrying its trailers; a branch that conflicts leaves the batch
//!    and gets a resolve task whose result re-enters the queue ([`steps`]);
//! 3. run the integration gates once on the batch's result in borg's integration
//!    worktree, judged against the same gates at the target's start ([`gate`]);
//! 4. pass: move the target by compare-and-swap; fail: bisect by halves, reject the
//!    branches that break it (`integration_failed`), land the rest ([`batch`]).
//!
//! Every step is one fenced transaction in the store (`store::merge`), taken while
//! holding the target's lease ([`queue`]); the branch is the truth about what landed
//! (its merge commits carry `Borg-Task` and `Borg-Queue` trailers), so a borg killed
//! anywhere and run again merges nothing twice and loses nothing. [`plan`] is the dry
//! run; [`summary`] the report's `merge` section.

mod batch;
pub mod gate;
pub mod order;
pub mod plan;
mod queue;
mod remote;
mod steps;
pub mod summary;

use crate::git::{GitError, Repo};
use crate::store::{Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::show::report::merge::MergeSummary;

/// The queue's failures (bad input is checked before, by the command).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The store failed, or another borg holds the target.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target branch moved under the queue (someone else changed it).
    #[error("the branch {0} moved while the merge queue advanced it; nothing more was changed. Run `borg merge` again")]
    Moved(String),
    /// The remote refused the target's push for another reason than a move (a hook,
    /// permissions).
    #[error("the remote refused the merge queue's push: {0}; nothing more was changed")]
    Push(String),
    /// borg was stopped while a gate ran: nothing was judged from it.
    #[error("stopped while an integration gate ran; nothing was rejected. Run `borg merge` again to continue")]
    Stopped,
    /// A task's stored definition cannot be read.
    #[error("task {0}: its stored definition cannot be read: {1}")]
    Spec(String, String),
}

/// What one run of the queue works on.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// The target branch (short name).
    pub target: String,
    /// The task list it integrates.
    pub list: String,
    /// The list's task ids (with the tasks borg created from them).
    pub scope: Vec<String>,
    /// Where a new target starts: the run's base.
    pub base: String,
    /// This borg's owner id in the store.
    pub owner: String,
    /// Branches per batch.
    pub batch: usize,
    /// The integration gates (resolved command lines; empty: none).
    pub commands: Vec<String>,
    /// Judge gate failures against the target's start.
    pub baseline: bool,
    /// A rejected task gets a fix task.
    pub fix: bool,
    /// Retries of the tasks the queue creates.
    pub retries: u32,
    /// borg's integration worktree.
    pub dir: PathBuf,
    /// How gates run.
    pub gates: gate::GateEnv,
}

impl QueueSpec {
    /// `refs/heads/<target>`.
    pub fn refname(&self) -> String {
        format!("refs/heads/{}", self.target)
    }

    /// The target as a file name, for logs.
    pub fn log_stem(&self) -> String {
        self.target.replace('/', "-")
    }
}

/// What a run of the queue did: the tasks it created (resolve and fix tasks).
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// Tasks created, to be run.
    pub created: Vec<String>,
}

/// Runs the queue on `spec.target` until a pass changes nothing.
pub fn run(spec: &QueueSpec, repo: &Repo, store: &Arc<dyn Store>) -> Result<Ran, MergeError> {
    let q = queue::Queue::open(spec, repo, store)?;
    Ok(Ran { created: q.run()? })
}
