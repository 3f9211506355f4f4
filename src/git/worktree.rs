//! An instance's `project-files/` as a `git worktree` of the user's repository: added
//! when the instance is created (detached at the base), put on a task's branch before
//! the task, detached again after it (so the user can check the branch out or delete
//! it), reset after a failed attempt, and removed with git.

use super::{GitError, Out, Repo};
use std::path::{Path, PathBuf};

/// The file, in the instance's folder, where the pid of the git working in its
/// worktree is noted (see [`super::Cmd::pidfile`]).
pub const PIDFILE: &str = "git.pid";

/// A worktree borg works in.
#[derive(Debug, Clone)]
pub struct Worktree {
    /// Its folder (`project-files/`).
    pub dir: PathBuf,
    /// Where the pid of the git working in it is noted.
    pub pidfile: PathBuf,
}

impl Worktree {
    /// The worktree of an instance folder (`<instance>/project-files`).
    pub fn of_instance(instance: &Path) -> Worktree {
        Worktree {
            dir: instance.join("project-files"),
            pidfile: instance.join(PIDFILE),
        }
    }

    /// Whether the folder is a worktree (git mode) rather than a template copy.
    pub fn exists(&self) -> bool {
        self.dir.join(".git").is_file()
    }

    /// A git command in the worktree. Its pid is noted (see [`super::Cmd::pidfile`]),
    /// and git may not look for a repository above the worktree: a folder that is not
    /// a worktree (its `.git` gone, or made in template mode inside the user's work
    /// tree) is an error, never the user's repository.
    pub fn cmd<'r>(&self, repo: &'r Repo) -> super::Cmd<'r> {
        let parent = self.dir.parent().unwrap_or(&self.dir);
        let ceiling = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        repo.git
            .at(&self.dir)
            .env("GIT_CEILING_DIRECTORIES", ceiling)
            .pidfile(&self.pidfile)
    }

    /// Runs `git ARGS` in the worktree, failing on a non-zero exit.
    pub fn git(&self, repo: &Repo, args: &[&str]) -> Result<Out, GitError> {
        self.cmd(repo).args(args).ok()
    }

    /// Puts the worktree on branch `branch` at `start`, the branch (re)created there.
    pub fn switch(&self, repo: &Repo, branch: &str, start: &str) -> Result<(), GitError> {
        self.git(
            repo,
            &[
                "checkout",
                "-q",
                "--no-recurse-submodules",
                "-B",
                branch,
                start,
            ],
        )?;
        Ok(())
    }

    /// Leaves the branch (HEAD detached at the same commit), touching no file, so
    /// that the branch can be checked out or deleted elsewhere.
    pub fn detach(&self, repo: &Repo) -> Result<(), GitError> {
        let head = self.head(repo)?;
        self.git(
            repo,
            &[
                "update-ref",
                "--no-deref",
                "-m",
                "borg: detach",
                "HEAD",
                &head,
            ],
        )?;
        Ok(())
    }

    /// The commit checked out.
    pub fn head(&self, repo: &Repo) -> Result<String, GitError> {
        Ok(self.git(repo, &["rev-parse", "--verify", "HEAD"])?.text())
    }

    /// The branch checked out, None when detached.
    pub fn branch(&self, repo: &Repo) -> Option<String> {
        let out = self
            .git(repo, &["symbolic-ref", "-q", "--short", "HEAD"])
            .ok()?;
        Some(out.text()).filter(|b| !b.is_empty())
    }

    /// Moves the current branch (or detached HEAD) to `commit`, the files with it.
    /// Only called once everything in the worktree is committed somewhere (`git add
    /// -A` left no untracked file that is not ignored, so no `git clean` is needed).
    pub fn reset_hard(&self, repo: &Repo, commit: &str) -> Result<(), GitError> {
        self.git(
            repo,
            &["reset", "-q", "--hard", "--no-recurse-submodules", commit],
        )?;
        Ok(())
    }

    /// True when nothing in the worktree differs from its HEAD (ignored files aside).
    pub fn is_clean(&self, repo: &Repo) -> Result<bool, GitError> {
        let out = self.git(
            repo,
            &["status", "--porcelain", "-z", "--untracked-files=all"],
        )?;
        Ok(out.stdout.is_empty())
    }
}

impl Repo {
    /// Adds a worktree at `dir`, detached at the base. Several borgs (and attempts)
    /// may add worktrees at once: git names each one's admin folder atomically, and
    /// lock contention is retried.
    pub fn add_worktree(&self, dir: &Path) -> Result<(), GitError> {
        let path = dir.to_string_lossy().into_owned();
        self.git
            .at(&self.dir)
            .args(["worktree", "add", "-q", "--detach", &path, &self.base])
            .ok()?;
        Ok(())
    }
}

/// Removes the worktree at `dir` with git (`git worktree remove`, then `prune`),
/// finding its repository from the worktree itself. Without `force`, git refuses a
/// worktree with changes, and the error says so.
pub fn remove(git: &super::Git, dir: &Path, force: bool) -> Result<(), GitError> {
    let path = dir.to_string_lossy().into_owned();
    let common = git
        .at(dir)
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .ok()?
        .text();
    let common = PathBuf::from(common);
    let mut args = vec!["worktree", "remove"];
    if force {
        args.push("--force");
    }
    args.push(&path);
    git.at(&common)
        .arg(format!("--git-dir={}", common.display()))
        .args(&args)
        .ok()?;
    git.at(&common)
        .arg(format!("--git-dir={}", common.display()))
        .args(["worktree", "prune"])
        .ok()?;
    Ok(())
}

/// Prunes the worktree records of `repo` whose folders are gone (an instance folder
/// deleted by hand).
pub fn prune(git: &super::Git, common: &Path) -> Result<(), GitError> {
    git.at(common)
        .arg(format!("--git-dir={}", common.display()))
        .args(["worktree", "prune"])
        .ok()?;
    Ok(())
}
