//! The report's `merge` section ([`MergeSummary`]), read back from the store and the
//! target branch (so it says the same after a resumed run): the target, its start
//! and end commits, the tasks landed in the order they landed with their merge
//! commits, the resolve tasks, the rejected tasks with their gate and its output's
//! tail, and the gate runs spent.

use crate::git::{GitError, Repo};
use crate::show::report::merge::{LandedTask, MergeSummary, RejectedTask, ResolveEntry};
use crate::store::merge::MergeState;
use crate::store::{Store, StoreError};

/// Why the section cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// git.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// The section of `target`; None when no queue ran on it.
pub fn read(
    store: &dyn Store,
    repo: &Repo,
    target: &str,
) -> Result<Option<MergeSummary>, SummaryError> {
    let Some((row, entries)) = store.merge_target(target)? else {
        return Ok(None);
    };
    let end = repo
        .ref_commit(&format!("refs/heads/{target}"))
        .or(row.head.clone())
        .unwrap_or_else(|| row.start.clone());
    let order: Vec<String> = repo
        .landed_between(Some(&row.start), &end, target)
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.task)
        .collect();
    let mut landed: Vec<_> = entries
        .iter()
        .filter(|e| e.state == MergeState::Landed)
        .collect();
    landed.sort_by_key(|e| {
        let at = order
            .iter()
            .position(|t| t == &e.task)
            .unwrap_or(usize::MAX);
        (at, e.updated_ms)
    });
    let landed_ids: Vec<&str> = landed.iter().map(|e| e.task.as_str()).collect();
    Ok(Some(MergeSummary {
        target: target.to_string(),
        start: row.start.clone(),
        end,
        landed: landed
            .iter()
            .map(|e| LandedTask {
                task: e.task.clone(),
                commit: e.merged.clone().unwrap_or_default(),
            })
            .collect(),
        resolve_tasks: entries
            .iter()
            .filter_map(|e| {
                Some(ResolveEntry {
                    task: e.task.clone(),
                    resolve_task: e.resolve_task.clone()?,
                    files: e.files.clone(),
                    landed: landed_ids.contains(&e.task.as_str()),
                })
            })
            .collect(),
        rejected: entries
            .iter()
            .filter(|e| e.state == MergeState::Rejected)
            .map(|e| RejectedTask {
                task: e.task.clone(),
                gate: e.gate.clone().unwrap_or_default(),
                output_tail: e.output_tail.clone().unwrap_or_default(),
                fix_task: e.fix_task.clone(),
            })
            .collect(),
        gate_runs: row.gate_runs,
    }))
}
