//! The git-mode part of a task's report (branch, start and final commits, diffstat,
//! resolve links) and the table's LINES column, which only a report with git-mode
//! tasks has.

use super::{Report, TaskReport};
use crate::outcome::{AttemptRecord, Diffstat};
use crate::store::TaskRow;
use serde::{Deserialize, Serialize};

/// A task's git-mode facts in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GitReport {
    /// Git mode: the task's branch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
    /// Git mode: the start commit of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base: Option<String>,
    /// Git mode: the final commit of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub commit: Option<String>,
    /// Git mode: the totals of the diff from `base` to `commit`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub diffstat: Option<Diffstat>,
    /// Git mode: the task whose dependencies' merge this resolve task resolves.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolve_of: Option<String>,
    /// Git mode: the resolve tasks created for this task's start.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub resolve_tasks: Vec<String>,
}

impl GitReport {
    /// From the task's row (a resolve task names the task it resolves for) and its
    /// last attempt's record.
    pub fn of(t: &TaskRow, last: Option<&AttemptRecord>) -> GitReport {
        let g = last.map(|r| r.git.clone()).unwrap_or_default();
        GitReport {
            branch: g.branch,
            base: g.base,
            commit: g.commit,
            diffstat: g.diffstat,
            resolve_of: t
                .spec
                .get("resolve")
                .and_then(|r| r.get("of"))
                .and_then(|v| v.as_str())
                .map(String::from),
            resolve_tasks: Vec::new(),
        }
    }
}

/// Whether any task of the report ran in git mode (the table then shows lines).
pub(super) fn has_git(r: &Report) -> bool {
    r.tasks.iter().any(|t| t.git.diffstat.is_some())
}

/// The git-mode cells of a task's row: `+ins -del`.
pub(super) fn git_cells(r: &Report, t: &TaskReport) -> Vec<String> {
    if !has_git(r) {
        return Vec::new();
    }
    vec![t
        .git
        .diffstat
        .map(|d| format!("+{} -{}", d.insertions, d.deletions))
        .unwrap_or_else(|| "-".into())]
}
