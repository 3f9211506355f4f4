//! A task's refs on the shared remote, fenced by its claim, so that a host whose claim
//! was taken over (its lease expired, another host claimed the task: fence + 1) can
//! push nothing that lands.
//!
//! Every task has a **fence ref** on the remote, `refs/borg/fences/<task>`: a small
//! commit (empty tree) naming the claim that holds it (task, fence, owner, attempt).
//! The protocol, with the store's claim as the authority:
//!
//! 1. **Taking the fence** (when the attempt starts, right after the claim): read the
//!    task's refs on the remote ([`Repo::task_refs`]); confirm the claim is still live
//!    in the store (the caller's heartbeat); then one atomic push that moves the fence
//!    ref from the value just read to this claim's object (a lease: if another host
//!    moved it meanwhile, the push is refused and the steps start again), and deletes
//!    whatever of the task's refs the store does not account for: a branch that is not
//!    the task's recorded result, attempt refs of attempts that never finished.
//! 2. **Pushing the result** (after the attempt, before the store records it): one
//!    atomic push that moves the fence ref from this claim's object to a child of it
//!    (a lease) and sets the branch and the attempt's ref. When another host has taken
//!    the fence since, the lease fails on the remote, under its ref lock, and nothing
//!    of the push lands; the attempt's result is then discarded as a lost claim.
//!
//! Why both steps: the remote cannot see the store. A host that lost its claim but
//! has not noticed can still push between the moment the store gives the task to
//! another host and the moment that host takes the fence (step 1, milliseconds
//! later); step 1 then deletes what it pushed. A stale host cannot take the fence
//! back either: it confirms its claim in the store after reading the fence it would
//! replace, so once the new holder's fence is there, the stale one's confirmation
//! fails. Only refs of borg's own (`refs/heads/<prefix>*`, `refs/borg/*`) are ever
//! pushed.

use super::remote::{Expect, Update};
use super::{GitError, Repo, BORG_EMAIL, BORG_NAME};
use std::collections::BTreeMap;

/// The fence ref of a task on the remote.
pub fn fence_ref(task: &str) -> String {
    format!("refs/borg/fences/{task}")
}

/// The ref, on the remote and in mirrors, of a resolve task's starting point (the
/// merge of the waiting task's dependencies so far, made on the host that found the
/// conflict).
pub fn resolve_ref(resolve_task: &str) -> String {
    format!("refs/borg/resolve/{resolve_task}")
}

/// One task's refs on the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRefs {
    /// The fence ref's object.
    pub fence: Option<String>,
    /// The task's branch.
    pub branch: Option<String>,
    /// Attempt number → the attempt ref's commit.
    pub attempts: BTreeMap<u32, String>,
}

/// Who holds a claim, as written into fence objects.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The task.
    pub task: String,
    /// The claim's fencing token.
    pub fence: i64,
    /// The store's owner id of the claim.
    pub owner: String,
    /// The attempt number the claim runs.
    pub attempt: u32,
}

/// What a claim holds on the remote once it took the fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The fence object this claim put on the remote.
    pub fence: String,
    /// The task's branch on the remote after the claim push.
    pub branch: Option<String>,
}

impl Repo {
    /// The remote branch of a task (`refs/heads/<prefix><task>`).
    pub fn remote_branch(&self, task: &str) -> String {
        format!("refs/heads/{}", self.branch(task))
    }

    /// Where a task's branch, fetched from the remote, is kept in a mirror.
    pub fn fetched_branch(&self, task: &str) -> String {
        format!("refs/remotes/origin/{}", self.branch(task))
    }

    /// The task's fence ref, branch and attempt refs on the remote (one `ls-remote`).
    pub fn task_refs(&self, task: &str) -> Result<TaskRefs, GitError> {
        let (fence, branch) = (fence_ref(task), self.remote_branch(task));
        let attempts = format!("refs/borg/attempts/{task}/");
        let refs = self.ls_remote(&[fence.clone(), branch.clone(), format!("{attempts}*")])?;
        let mut out = TaskRefs::default();
        for (name, oid) in refs {
            if name == fence {
                out.fence = Some(oid);
            } else if name == branch {
                out.branch = Some(oid);
            } else if let Some(n) = name.strip_prefix(&attempts).and_then(|n| n.parse().ok()) {
                out.attempts.insert(n, oid);
            }
        }
        Ok(out)
    }

    /// A new fence object (a commit of the empty tree, never checked out) naming
    /// `holder` and `what` happened; a child of `parent` when given.
    pub fn fence_object(
        &self,
        holder: &Holder,
        parent: Option<&str>,
        what: &str,
    ) -> Result<String, GitError> {
        let tree = self
            .git
            .at(&self.dir)
            .arg("mktree")
            .stdin(Vec::new())
            .ok()?
            .text();
        let msg = format!(
            "borg fence: {} {what}\n\nBorg-Task: {}\nBorg-Fence: {}\nBorg-Owner: {}\nBorg-Attempt: {}\n",
            holder.task, holder.task, holder.fence, holder.owner, holder.attempt
        );
        let mut args = vec!["commit-tree".to_string(), tree];
        if let Some(p) = parent {
            args.extend(["-p".to_string(), p.to_string()]);
        }
        args.extend(["-F".to_string(), "-".to_string()]);
        let out = self
            .git
            .at(&self.dir)
            .env("GIT_AUTHOR_NAME", BORG_NAME)
            .env("GIT_AUTHOR_EMAIL", BORG_EMAIL)
            .args(&args)
            .stdin(msg.into_bytes())
            .ok()?;
        Ok(out.text())
    }
}

/// The claim push of step 1: the fence from `seen` to `mine`, and the task's refs the
/// store does not account for deleted. `branch` is the task's recorded result (the
/// branch the remote may keep), `finished` the attempts whose results the store
/// recorded (their refs stay).
pub fn claim_updates(
    task: &str,
    repo: &Repo,
    seen: &TaskRefs,
    mine: &str,
    branch: Option<&str>,
    finished: &[u32],
) -> Vec<Update> {
    let lease = seen.fence.clone().map_or(Expect::Absent, Expect::Is);
    let mut ups = vec![Update::set(&fence_ref(task), mine, lease)];
    if let Some(b) = seen.branch.as_deref().filter(|b| Some(*b) != branch) {
        ups.push(Update::delete(&repo.remote_branch(task), b));
    }
    for (n, oid) in &seen.attempts {
        if !finished.contains(n) {
            ups.push(Update::delete(&Repo::attempt_ref(task, *n), oid));
        }
    }
    ups
}

/// The result push of step 2: the fence from `held` to `done`; the branch to
/// `branch` (when the attempt's result is the task's branch); the attempt's ref.
pub fn result_updates(
    task: &str,
    repo: &Repo,
    held: &Held,
    done: &str,
    branch: Option<&str>,
    attempt: Option<(u32, &str)>,
) -> Vec<Update> {
    let mut ups = vec![Update::set(
        &fence_ref(task),
        done,
        Expect::Is(held.fence.clone()),
    )];
    if let Some(c) = branch.filter(|c| held.branch.as_deref() != Some(*c)) {
        let lease = held.branch.clone().map_or(Expect::Absent, Expect::Is);
        ups.push(Update::set(&repo.remote_branch(task), c, lease));
    }
    if let Some((n, c)) = attempt {
        ups.push(Update::set(&Repo::attempt_ref(task, n), c, Expect::Absent));
    }
    ups
}
