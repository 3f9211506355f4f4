//! The report's `merge` section (what the merge queue did to its target: landed
//! tasks in order, conflicts and their resolve tasks, rejected tasks with their gate,
//! gate runs spent) and its lines under the table.

use crate::git::short;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The report's `merge` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeSummary {
    /// The target branch.
    pub target: String,
    /// Its commit when the queue first claimed it.
    pub start: String,
    /// Its commit now.
    pub end: String,
    /// The tasks landed, in order, with their merge commits.
    pub landed: Vec<LandedTask>,
    /// Conflicts and their resolve tasks.
    pub resolve_tasks: Vec<ResolveEntry>,
    /// The tasks rejected.
    pub rejected: Vec<RejectedTask>,
    /// Integration gate runs spent on this target.
    pub gate_runs: i64,
}

/// A landed task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LandedTask {
    /// The task.
    pub task: String,
    /// Its merge commit on the target.
    pub commit: String,
}

/// A conflict with the target and the task resolving it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolveEntry {
    /// The task whose branch conflicted.
    pub task: String,
    /// The resolve task.
    pub resolve_task: String,
    /// The conflicting files.
    pub files: Vec<String>,
    /// Whether the task has landed since.
    pub landed: bool,
}

/// A rejected task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectedTask {
    /// The task.
    pub task: String,
    /// The gate that failed (or why it could not land).
    pub gate: String,
    /// The tail of the gate's output.
    pub output_tail: String,
    /// The fix task created for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_task: Option<String>,
}

impl MergeSummary {
    /// The section as text, for the table.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "merge into {}: {} -> {}; {} landed, {} rejected, {} resolve task(s), {} gate run(s)",
            self.target,
            short(&self.start),
            short(&self.end),
            self.landed.len(),
            self.rejected.len(),
            self.resolve_tasks.len(),
            self.gate_runs
        );
        for l in &self.landed {
            let _ = writeln!(t, "  landed    {} ({})", l.task, short(&l.commit));
        }
        for r in &self.resolve_tasks {
            let state = if r.landed { "landed" } else { "waits" };
            let _ = writeln!(
                t,
                "  conflict  {} in {}: resolve task {} ({state})",
                r.task,
                r.files.join(", "),
                r.resolve_task
            );
        }
        for r in &self.rejected {
            let last = r.output_tail.lines().last().unwrap_or("").trim();
            let _ = writeln!(t, "  rejected  {}: {} ({last})", r.task, r.gate);
            if let Some(f) = &r.fix_task {
                let _ = writeln!(t, "            fix task {f}");
            }
        }
        t
    }
}
