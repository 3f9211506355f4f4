//! A task's start commit: the base with each dependency's result merged in, one at a
//! time, with `git merge-tree --write-tree` (three-way, renames followed, no work
//! tree or index touched) and `git commit-tree`. A dependency already contained is
//! skipped, one that contains the start so far is fast-forwarded to, and a real
//! conflict is reported with its files, never resolved by picking a side.
//!
//! borg's merge commits are deterministic: authored and committed by borg at the
//! later of the two parents' commit times, so the same inputs give the same commit.

use super::commit::Message;
use super::{GitError, Repo};

/// What merging one more commit into the start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It was already contained: the start is unchanged.
    Contained,
    /// The start was contained in it: the start is now that commit.
    FastForward(String),
    /// A merge commit was made: the new start.
    Merged(String),
    /// The merge conflicts in these files.
    Conflict(Vec<String>),
}

impl Step {
    /// The start after this step (`ours` when it did not move or conflicted).
    pub fn start<'a>(&'a self, ours: &'a str) -> &'a str {
        match self {
            Step::FastForward(c) | Step::Merged(c) => c,
            Step::Contained | Step::Conflict(_) => ours,
        }
    }
}

impl Repo {
    /// Merges `theirs` into `ours`; `msg` is the merge commit's message.
    pub fn merge_step(&self, ours: &str, theirs: &str, msg: &Message) -> Result<Step, GitError> {
        if ours == theirs {
            return Ok(Step::Contained);
        }
        let base = self.merge_base(ours, theirs)?;
        if base.as_deref() == Some(theirs) {
            return Ok(Step::Contained);
        }
        if base.as_deref() == Some(ours) {
            return Ok(Step::FastForward(theirs.to_string()));
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

    /// The merge base of two commits (None: unrelated histories).
    pub(super) fn merge_base(&self, a: &str, b: &str) -> Result<Option<String>, GitError> {
        let cmd = self.git.at(&self.dir).args(["merge-base", a, b]);
        let out = cmd.run()?;
        match out.code {
            0 => Ok(Some(out.text())),
            1 => Ok(None),
            _ => Err(cmd.failed(&out)),
        }
    }

    /// Whether `a` is an ancestor of (or the same as) `b`.
    pub fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        let cmd = self
            .git
            .at(&self.dir)
            .args(["merge-base", "--is-ancestor", a, b]);
        let out = cmd.run()?;
        match out.code {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(cmd.failed(&out)),
        }
    }

    /// A merge commit of `tree` with parents `ours` and `theirs`, dated at the later
    /// of their commit times.
    pub(super) fn merge_commit(
        &self,
        tree: &str,
        ours: &str,
        theirs: &str,
        msg: &Message,
    ) -> Result<String, GitError> {
        let times = self
            .git
            .at(&self.dir)
            .args(["show", "-s", "--format=%ct", ours, theirs])
            .ok()?
            .text();
        let when = times
            .lines()
            .filter_map(|l| l.trim().parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        self.commit_merge_at(tree, ours, theirs, msg, when)
    }

    /// A merge commit of `tree` with parents `ours` and `theirs`, dated `when` (epoch
    /// seconds): authored and committed by borg, so the same inputs make the same
    /// commit.
    pub(super) fn commit_merge_at(
        &self,
        tree: &str,
        ours: &str,
        theirs: &str,
        msg: &Message,
        when: i64,
    ) -> Result<String, GitError> {
        let date = format!("{when} +0000");
        let out = self
            .git
            .at(&self.dir)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit-tree", tree, "-p", ours, "-p", theirs, "-F", "-"])
            .stdin(msg.text().into_bytes())
            .ok()?;
        Ok(out.text())
    }
}
