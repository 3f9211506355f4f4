//! Worktrees borg runs commands in without any work living there, and the clean-up
//! after a command in a worktree that does hold work:
//!
//! - a **scratch worktree** ([`Worktree::scratch_at`]) is put at a commit (detached,
//!   forced, untracked files removed, ignored ones such as build caches kept) to run
//!   a verification gate there: a task's baseline (in `<instance>/baseline`, so the
//!   task's own worktree and branch are never moved) or the merge queue's integration
//!   candidate. A borg killed while a command ran there leaves nothing to save;
//! - [`Worktree::scrub`] puts a worktree back to its checked-out commit after a gate
//!   ran in it: what the gate changed or left (reports, formatted files) is dropped,
//!   ignored files are kept. The attempt's work was committed before the gate ran.

use super::worktree::Worktree;
use super::{GitError, Repo};
use std::path::Path;

impl Worktree {
    /// A worktree at `dir` that borg uses for running commands (its pid file beside
    /// it: `<dir>.git.pid`).
    pub fn scratch(dir: &Path) -> Worktree {
        let mut pid = dir.as_os_str().to_os_string();
        pid.push(".git.pid");
        Worktree {
            dir: dir.to_path_buf(),
            pidfile: pid.into(),
        }
    }

    /// The scratch worktree at `dir`, created when missing, with `commit` checked out
    /// (detached) and nothing else in it but ignored files.
    pub fn scratch_at(repo: &Repo, dir: &Path, commit: &str) -> Result<Worktree, GitError> {
        let wt = Worktree::scratch(dir);
        if !wt.exists() {
            if dir.exists() {
                // A folder left by a worktree git no longer knows (pruned): start over.
                let _ = std::fs::remove_dir_all(dir);
            }
            let _ = super::worktree::prune(&repo.git, &repo.common_dir);
            let path = dir.to_string_lossy().into_owned();
            repo.git
                .at(&repo.dir)
                .args(["worktree", "add", "-q", "--detach", &path, commit])
                .ok()?;
            return Ok(wt);
        }
        wt.clear_stale_lock(repo)?;
        wt.git(
            repo,
            &[
                "checkout",
                "-q",
                "-f",
                "--no-recurse-submodules",
                "--detach",
                commit,
            ],
        )?;
        wt.git(repo, &["clean", "-q", "-f", "-d"])?;
        Ok(wt)
    }

    /// Back to the checked-out commit: changes to tracked files undone, untracked
    /// files and folders removed (ignored ones kept).
    pub fn scrub(&self, repo: &Repo) -> Result<(), GitError> {
        self.git(repo, &["reset", "-q", "--hard", "--no-recurse-submodules"])?;
        self.git(repo, &["clean", "-q", "-f", "-d"])?;
        Ok(())
    }
}
