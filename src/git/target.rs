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
use std::collections::HashMap;
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

/// A commit's tree and commit time (epoch seconds).
pub type Facts = (String, i64);

/// Branches merged one after the other onto a commit, each with a merge commit of
/// its own. The trees and commit times of the commits involved are read with one git
/// up front ([`Repo::facts`]), so each merge is one `merge-tree` and one `commit-tree`.
pub struct Merger<'r> {
    repo: &'r Repo,
    /// The result so far.
    cur: String,
    cur_tree: String,
    cur_time: i64,
    /// Tree and commit time of the commits being merged.
    known: &'r HashMap<String, Facts>,
}

impl<'r> Merger<'r> {
    /// The result so far.
    pub fn head(&self) -> &str {
        &self.cur
    }

    /// The result's tree and commit time.
    pub fn head_facts(&self) -> Facts {
        (self.cur_tree.clone(), self.cur_time)
    }

    /// Merges `theirs` onto the result with a merge commit even when a fast-forward
    /// would do; `Contained` when merging it changes nothing (it is in the result, or
    /// its changes are).
    pub fn merge(&mut self, theirs: &str, msg: &Message) -> Result<Step, GitError> {
        let cmd = self.repo.git.at(&self.repo.dir).args([
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--no-messages",
            &self.cur,
            theirs,
        ]);
        let out = cmd.run()?;
        let mut fields = out.stdout.split(|b| *b == 0);
        let tree = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
        match out.code {
            0 if tree == self.cur_tree => Ok(Step::Contained),
            0 => {
                let when = self.cur_time.max(self.known.get(theirs).map_or(0, |k| k.1));
                let m = self
                    .repo
                    .commit_merge_at(&tree, &self.cur, theirs, msg, when)?;
                (self.cur, self.cur_tree, self.cur_time) = (m.clone(), tree, when);
                Ok(Step::Merged(m))
            }
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
}

impl Repo {
    /// The tree and commit time of each of `commits`, with one git.
    pub fn facts(&self, commits: &[&str]) -> Result<HashMap<String, Facts>, GitError> {
        let mut known = HashMap::new();
        if commits.is_empty() {
            return Ok(known);
        }
        let mut args = vec!["show", "-s", "--format=%H %T %ct"];
        args.extend_from_slice(commits);
        let out = self.git.at(&self.dir).args(&args).ok()?.text();
        for l in out.lines() {
            if let [c, t, when] = l.split_whitespace().collect::<Vec<_>>()[..] {
                known.insert(c.to_string(), (t.to_string(), when.parse().unwrap_or(0)));
            }
        }
        Ok(known)
    }

    /// A [`Merger`] onto `head` (whose facts are `at`), `known` holding the facts of
    /// the commits it will merge.
    pub fn merger<'r>(
        &'r self,
        head: &str,
        at: Facts,
        known: &'r HashMap<String, Facts>,
    ) -> Merger<'r> {
        Merger {
            repo: self,
            cur: head.to_string(),
            cur_tree: at.0,
            cur_time: at.1,
            known,
        }
    }

    /// Merges `theirs` onto `ours` with a merge commit even when a fast-forward would
    /// do; `Contained` when merging it changes nothing.
    pub fn merge_no_ff(&self, ours: &str, theirs: &str, msg: &Message) -> Result<Step, GitError> {
        let known = self.facts(&[ours, theirs])?;
        let at = known.get(ours).cloned().ok_or_else(|| GitError::Output {
            args: format!("show -s {ours}"),
            what: "no such commit".into(),
        })?;
        self.merger(ours, at, &known).merge(theirs, msg)
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
