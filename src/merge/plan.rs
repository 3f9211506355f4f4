//! `borg merge --dry-run`: what the queue would do, in its order, without changing
//! any ref (merge commits are written as objects only, as `git merge-tree` does):
//! which tasks would land, which conflict (and would get a resolve task), which wait
//! and which cannot land. Gates are not run: the plan says which batch each task is
//! in, and the gates a batch would run.

use super::order::{standings, Standing};
use super::{MergeError, QueueSpec};
use crate::git::commit::Message;
use crate::git::merge::Step;
use crate::git::Repo;
use crate::store::Store;
use serde::Serialize;

/// One task in the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// The task.
    pub task: String,
    /// `land`, `conflict`, `waits` or `reject`.
    pub action: String,
    /// The batch it would be in (1-based; 0 when it would not be merged).
    pub batch: usize,
    /// Files (a conflict) or the reason.
    pub detail: String,
}

/// The plan of `spec`'s queue.
pub fn plan(spec: &QueueSpec, repo: &Repo, store: &dyn Store) -> Result<Vec<Planned>, MergeError> {
    // In a mirror: the remote's target and task branches, fetched.
    let mut head = repo
        .read_branch(&spec.refname())?
        .unwrap_or_else(|| spec.base.clone());
    let entries = store
        .merge_target(&spec.target)?
        .map(|(_, e)| e)
        .unwrap_or_default();
    let rows = store.tasks()?;
    let mut out = Vec::new();
    let mut n = 0;
    for s in standings(&rows, &spec.scope, &entries) {
        let p = match s {
            Standing::Ready(c) => {
                let msg = Message {
                    subject: c.subject.clone(),
                    trailers: c.trailers.clone(),
                };
                match repo.merge_no_ff(&head, &c.commit, &msg)? {
                    Step::Conflict(files) => Planned {
                        task: c.task,
                        action: "conflict".into(),
                        batch: 0,
                        detail: files.join(", "),
                    },
                    step => {
                        head = step.start(&head).to_string();
                        n += 1;
                        Planned {
                            task: c.task,
                            action: "land".into(),
                            batch: (n - 1) / spec.batch.max(1) + 1,
                            detail: String::new(),
                        }
                    }
                }
            }
            Standing::Waits { task, why } => Planned {
                task,
                action: "waits".into(),
                batch: 0,
                detail: why,
            },
            Standing::Reject { task, why, .. } => Planned {
                task,
                action: "reject".into(),
                batch: 0,
                detail: why,
            },
        };
        out.push(p);
    }
    Ok(out)
}

/// The plan as text.
pub fn text(spec: &QueueSpec, plan: &[Planned]) -> String {
    let mut t = format!(
        "merge into {} in batches of {}; gates: {}\n",
        spec.target,
        spec.batch,
        if spec.commands.is_empty() {
            "none".to_string()
        } else {
            spec.commands.join(" && ")
        }
    );
    if plan.is_empty() {
        t.push_str("nothing to merge\n");
    }
    for p in plan {
        let line = match p.action.as_str() {
            "land" => format!("  batch {}: {} would land\n", p.batch, p.task),
            "conflict" => format!(
                "  {} conflicts in {}: it would get a resolve task\n",
                p.task, p.detail
            ),
            other => format!("  {} {other}: {}\n", p.task, p.detail),
        };
        t.push_str(&line);
    }
    t
}
