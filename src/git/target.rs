//! The merge queue's side of git:
//!
//! - a task's branch merged onto a candidate with a merge commit of its own, always
//!   (`--no-ff`: one merge commit per task, carrying the task's trailers), made with
//!   `git merge-tree --write-tree` and `commit-tree` (no work tree), deterministic
//!   like every merge commit borg makes;
//! - a branch moved only by compare-and-swap (`git update-ref REF NEW OLD`), so a
//!   borg that lost the race changes nothing;
//! - the work trees that have a branch checked out (`git worktree list
//!   --porcelain -z`), to refuse advancing one a person works in;
//! - the tasks a target's first-parent history landed, read back from the
//!   `Borg-Task` and `Borg-Queue` trailers of its merge commits (what a borg killed
//!   after moving the branch but before recording it left).

use super::commit::Message;
use super::merge::Step;
use super::{GitError, Repo};
use std::path::PathBuf;

/// A merge commit on a target that a queue made: its task and the task's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The merge commit.
    pub merged: String,
    /// The task (its `Borg-Task` trailer).
    pub task: String,
    /// The task's commit (the merge's second parent).
    pub commit: String,
}

impl Repo {
    /// Merges `theirs` onto `ours` with a merge commit even when a fast-forward would
    /// do; `Contained` when `theirs` is already in `ours`.
    pub fn merge_no_ff(&self, ours: &str, theirs: &str, msg: &Message) -> Result<Step, GitError> {
        if ours == theirs || self.is_ancestor(theirs, ours)? {
            return Ok(Step::Contained);
        }
        let cmd = self.git.at(&self.dir).args([
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--no-messages",
            ours,
            theirs,
        ]);
        let out = cmd.run()?;
        let mut fields = out.stdout.split(|b| *b == 0);
        let tree = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
        match out.code {
            0 => Ok(Step::Merged(self.merge_commit(&tree, ours, theirs, msg)?)),
            1 => {
                let mut files: Vec<String> = fields
                    .take_while(|f| !f.is_empty())
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                files.dedup();
                Ok(Step::Conflict(files))
            }
            _ => Err(cmd.failed(&out)),
        }
    }

    /// Moves `refname` to `new` if it is at `old` now (`None`: only if it does not
    /// exist). Returns false, changing nothing, when it is somewhere else.
    pub fn compare_and_swap(
        &self,
        refname: &str,
        new: &str,
        old: Option<&str>,
        why: &str,
    ) -> Result<bool, GitError> {
        const ZERO: &str = "0000000000000000000000000000000000000000";
        let cmd = self.git.at(&self.dir).args([
            "update-ref",
            "-m",
            why,
            refname,
            new,
            old.unwrap_or(ZERO),
        ]);
        let out = cmd.run()?;
        if out.code == 0 {
            return Ok(true);
        }
        let now = self.ref_commit(refname);
        if now.as_deref() != old {
            return Ok(false);
        }
        Err(cmd.failed(&out))
    }

    /// The work trees (the main one included) that have `branch` checked out.
    pub fn checked_out(&self, branch: &str) -> Result<Vec<PathBuf>, GitError> {
        let out = self
            .git
            .at(&self.dir)
            .args(["worktree", "list", "--porcelain", "-z"])
            .ok()?;
        let want = format!("branch refs/heads/{branch}");
        let mut found = Vec::new();
        let mut path: Option<PathBuf> = None;
        for field in out.stdout.split(|b| *b == 0) {
            let f = String::from_utf8_lossy(field);
            if let Some(p) = f.strip_prefix("worktree ") {
                path = Some(PathBuf::from(p));
            } else if f == want {
                found.extend(path.clone());
            }
        }
        Ok(found)
    }

    /// The merge commits a queue for `queue` made on the first-parent path from
    /// `from` (exclusive; None: the root) to `to`, oldest first.
    pub fn landed_between(
        &self,
        from: Option<&str>,
        to: &str,
        queue: &str,
    ) -> Result<Vec<Landed>, GitError> {
        let range = match from {
            Some(f) => format!("{f}..{to}"),
            None => to.to_string(),
        };
        let fmt = "--format=%H%x1f%P%x1f%(trailers:key=Borg-Task,valueonly,separator=%x2c)%x1f%(trailers:key=Borg-Queue,valueonly,separator=%x2c)%x1e";
        let out = self
            .git
            .at(&self.dir)
            .args(["log", "--first-parent", "--reverse", fmt, &range])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut landed = Vec::new();
        for rec in text.split('\x1e') {
            let f: Vec<&str> = rec.trim_start_matches('\n').split('\x1f').collect();
            let [merged, parents, task, q] = f[..] else {
                continue;
            };
            let parents: Vec<&str> = parents.split_whitespace().collect();
            if q.trim() != queue || task.trim().is_empty() || parents.len() != 2 {
                continue;
            }
            landed.push(Landed {
                merged: merged.to_string(),
                task: task.trim().to_string(),
                commit: parents[1].to_string(),
            });
        }
        Ok(landed)
    }
}
