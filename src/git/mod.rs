//! Git mode: every task a branch in an instance's worktree of the user's repository.
//!
//! borg drives the `git` command-line program (what users have; it does worktrees and
//! `merge-tree` best) through one runner, [`Git`], that gives every git it starts the
//! same fixed environment and reads only machine formats (`--porcelain`, `-z`,
//! `for-each-ref --format`, `rev-parse`). The rooms of this folder:
//!
//! - [`repo`]: the repository check (a repository, with commits, a recent enough git,
//!   task ids valid in ref names), the run's base, the user's work tree left alone;
//! - [`worktree`]: an instance's `project-files/` as a `git worktree`: added, put on a
//!   task's branch, detached, removed;
//! - [`commit`]: what an attempt left, committed with borg's trailers; attempt refs;
//! - [`merge`]: a task's start commit, its dependencies merged with
//!   `git merge-tree --write-tree` (no work tree needed);
//! - [`resolve`]: the worktree of a resolve task (the merge in progress) and the check
//!   of its resolution;
//! - [`diff`]: files changed between two commits, from `--raw -M` and `--numstat`;
//! - [`recover`]: what a killed borg left: a dirty worktree, a stale `index.lock`;
//! - [`scratch`]: worktrees borg runs gates in (a baseline, the merge queue's
//!   candidate), and the clean-up after a gate in a task's worktree;
//! - [`target`]: the merge queue's side of git: a target branch moved only by
//!   compare-and-swap, who has it checked out, the `Borg-Task` trailers on it;
//! - [`remote`]: the remote hosts share: `ls-remote`, fetch, and atomic pushes with
//!   leases (the primitives of every exchange between hosts, the merge queue's too);
//! - [`mirror`]: a host's mirror of that remote (`workspaces/.repo`), its worktrees'
//!   repository;
//! - [`publish`]: a task's refs on the remote, fenced: the claim's fence ref, the
//!   branch and attempt refs pushed with leases.
//!
//! Nothing here touches the user's work tree, index, HEAD, stash, or a ref outside
//! `refs/heads/<prefix>` and `refs/borg/` (of the repository, or of the remote).

pub mod commit;
pub mod diff;
pub mod merge;
pub mod mirror;
pub mod publish;
pub mod recover;
pub mod remote;
pub mod repo;
pub mod resolve;
pub mod scratch;
pub mod target;
pub mod worktree;

pub use repo::{Repo, RepoError};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The oldest git borg works with: `git merge-tree --write-tree` came in 2.38.
pub const MIN_VERSION: (u32, u32) = (2, 38);

/// The identity of the commits borg makes itself (start merges), and the committer
/// of every commit it makes.
pub const BORG_NAME: &str = "borg";
/// borg's e-mail address in commits (`.invalid`: never a real mailbox).
pub const BORG_EMAIL: &str = "borg@borg.invalid";

/// How long lock contention (another git holding `index.lock` or a ref lock) is
/// retried before it is reported.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// Settings every git borg starts gets on its command line, whatever the user's
/// configuration says: no hooks (they are for people), no signing, no automatic gc or
/// maintenance (which would take repository-wide locks behind borg's back), no
/// fsmonitor daemons left running in borg's worktrees, no submodule recursion.
const FIXED_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "advice.detachedHead=false",
    "color.ui=false",
];

/// The `GIT_*` variables of borg's environment that reach its gits: how to reach a
/// shared remote (ssh command, askpass helper, proxy, certificates). None of them can
/// point git at another repository, index or configuration.
pub const NETWORK_VARS: &[&str] = &[
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_ASKPASS",
    "GIT_PROXY_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_CERT",
    "GIT_SSL_KEY",
];

/// A git command failed, or could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started at all.
    #[error("cannot run git ({bin}): {source}; install git {}.{} or newer", MIN_VERSION.0, MIN_VERSION.1)]
    Spawn {
        /// The program.
        bin: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// git ran and failed.
    #[error("`git {args}` failed (exit {code}): {stderr}")]
    Failed {
        /// The arguments, for the message.
        args: String,
        /// Its exit code (-1: killed by a signal).
        code: i32,
        /// What it said on stderr (trimmed).
        stderr: String,
    },
    /// git printed something borg cannot read.
    #[error("unexpected output from `git {args}`: {what}")]
    Output {
        /// The arguments.
        args: String,
        /// What was wrong.
        what: String,
    },
}

/// The git program and the fixed environment every git borg starts runs with.
#[derive(Debug, Clone)]
pub struct Git {
    bin: PathBuf,
    env: Vec<(OsString, OsString)>,
}

/// What a finished git printed, and how it ended.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1: killed by a signal).
    pub code: i32,
    /// stdout, raw.
    pub stdout: Vec<u8>,
    /// stderr, as text.
    pub stderr: String,
}

impl Out {
    /// stdout as text, without the final newline.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout)
            .trim_end_matches('\n')
            .to_string()
    }
}

impl Git {
    /// `git` from the `PATH` of `env` (borg's own environment), with a fixed
    /// environment built from it: every `GIT_*` variable dropped (none may point git at
    /// another repository, index or config) but the few that say how to reach a
    /// remote ([`NETWORK_VARS`]), then `LC_ALL=C` (messages borg may read
    /// stay in English), no terminal prompts, no pager, no editor.
    pub fn new(env: &BTreeMap<String, String>) -> Git {
        let mut out: Vec<(OsString, OsString)> = env
            .iter()
            .filter(|(k, _)| {
                (!k.starts_with("GIT_") || NETWORK_VARS.contains(&k.as_str()))
                    && !matches!(k.as_str(), "PAGER" | "EDITOR")
            })
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        for (k, v) in [
            ("LC_ALL", "C"),
            ("LANGUAGE", "C"),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_PAGER", "cat"),
            ("PAGER", "cat"),
            ("GIT_EDITOR", "true"),
            ("GIT_MERGE_AUTOEDIT", "no"),
            ("GIT_ADVICE", "0"),
            ("GIT_COMMITTER_NAME", BORG_NAME),
            ("GIT_COMMITTER_EMAIL", BORG_EMAIL),
            ("GIT_AUTHOR_NAME", BORG_NAME),
            ("GIT_AUTHOR_EMAIL", BORG_EMAIL),
        ] {
            out.retain(|(name, _)| name != k);
            out.push((k.into(), v.into()));
        }
        let path = env.get("PATH").map(String::as_str).unwrap_or_default();
        Git {
            bin: which("git", path).unwrap_or_else(|| PathBuf::from("git")),
            env: out,
        }
    }

    /// A git command run in `dir`.
    pub fn at(&self, dir: &Path) -> Cmd<'_> {
        Cmd {
            git: self,
            dir: dir.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            pidfile: None,
        }
    }

    /// `git --version` as (major, minor, patch).
    pub fn version(&self) -> Result<(u32, u32, u32), GitError> {
        let out = self.at(Path::new(".")).arg("--version").ok()?;
        parse_version(&out.text()).ok_or_else(|| GitError::Output {
            args: "--version".into(),
            what: out.text(),
        })
    }
}

/// The first executable `name` in the folders of `path`. Starting a program by its
/// full path lets the standard library use `posix_spawn` rather than copying borg with
/// `fork` (which it must do to search a `PATH` that differs from borg's own): with
/// hundreds of gits a run, that is most of their start-up cost.
pub fn which(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Parses `git version 2.47.3` (vendor suffixes such as `.windows.1` or
/// ` (Apple Git-146)` allowed).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut nums = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some((
        nums.next()??,
        nums.next()??,
        nums.next().flatten().unwrap_or(0),
    ))
}

/// One git command being built.
pub struct Cmd<'g> {
    git: &'g Git,
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    pidfile: Option<PathBuf>,
}

impl Cmd<'_> {
    /// One more argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, a: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// One more variable (over the fixed environment).
    pub fn env(mut self, k: &str, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Bytes for stdin.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// Where to note this git's pid and start time while it may hold a worktree's
    /// `index.lock`, so a later borg can tell a lock left by a dead git (removed) from
    /// one held by a live one (waited for).
    pub fn pidfile(mut self, p: &Path) -> Self {
        self.pidfile = Some(p.to_path_buf());
        self
    }

    /// Runs it; any exit code is returned (lock contention is still retried).
    pub fn run(&self) -> Result<Out, GitError> {
        let began = Instant::now();
        let mut wait = Duration::from_millis(5);
        loop {
            let out = self.once()?;
            if out.code == 0 || !lock_contention(&out.stderr) || began.elapsed() > LOCK_PATIENCE {
                return Ok(out);
            }
            tracing::debug!(args = %self.shown(), "git lock contention; retrying in {wait:?}");
            let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5);
            std::thread::sleep(wait.mul_f64(jitter));
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    /// Runs it; a non-zero exit is an error.
    pub fn ok(&self) -> Result<Out, GitError> {
        let out = self.run()?;
        if out.code == 0 {
            Ok(out)
        } else {
            Err(self.failed(&out))
        }
    }

    /// The error for a failed run of this command.
    pub fn failed(&self, out: &Out) -> GitError {
        GitError::Failed {
            args: self.shown(),
            code: out.code,
            stderr: out.stderr.trim().to_string(),
        }
    }

    /// The arguments, for messages.
    pub fn shown(&self) -> String {
        self.args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs it with borg's own stdout and stderr (git's output for people, e.g.
    /// `borg diff`), returning its exit code.
    pub fn show(&self) -> Result<i32, GitError> {
        let mut c = self.command();
        c.stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let status = c.status().map_err(|source| GitError::Spawn {
            bin: self.git.bin.clone(),
            source,
        })?;
        Ok(status.code().unwrap_or(-1))
    }

    /// The process, environment and arguments, without its stdio.
    fn command(&self) -> Command {
        let mut c = Command::new(&self.git.bin);
        c.current_dir(&self.dir)
            .env_clear()
            .envs(self.git.env.iter().map(|(k, v)| (k, v)))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for kv in FIXED_CONFIG {
            c.arg("-c").arg(kv);
        }
        c.args(&self.args);
        c
    }

    fn once(&self) -> Result<Out, GitError> {
        let mut c = self.command();
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let spawn_err = |source| GitError::Spawn {
            bin: self.git.bin.clone(),
            source,
        };
        let mut child = c.spawn().map_err(spawn_err)?;
        if let Some(p) = &self.pidfile {
            recover::note_pid(p, child.id());
        }
        if let (Some(bytes), Some(mut sin)) = (&self.stdin, child.stdin.take()) {
            // A git that exits early closes its stdin: its exit status says why.
            let _ = sin.write_all(bytes);
        }
        let o = child.wait_with_output().map_err(spawn_err)?;
        Ok(Out {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }
}

/// Another git holds a lock this one needs (`index.lock`, a ref's lock,
/// `packed-refs.lock`), or another worktree is being added at this moment (git writes
/// its admin folder before the `commondir`/`gitdir` files in it, and a checkout that
/// looks at every worktree for its branch reads them half-made): worth waiting for,
/// never a task failure.
fn lock_contention(stderr: &str) -> bool {
    let lock = stderr.contains(".lock")
        && (stderr.contains("File exists") || stderr.contains("Unable to create"));
    let half_made_worktree = stderr.contains("/worktrees/")
        && stderr.contains("failed to read")
        && (stderr.contains("commondir") || stderr.contains("gitdir"));
    lock || half_made_worktree
}

/// The first 7 characters of an object id, for people.
pub fn short(oid: &str) -> &str {
    &oid[..oid.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_vendor_suffixes() {
        assert_eq!(parse_version("git version 2.47.3"), Some((2, 47, 3)));
        assert_eq!(
            parse_version("git version 2.39.2.windows.1"),
            Some((2, 39, 2))
        );
        assert_eq!(
            parse_version("git version 2.38.0 (Apple Git-146)"),
            Some((2, 38, 0))
        );
        assert_eq!(parse_version("git version 3.0"), Some((3, 0, 0)));
        assert_eq!(parse_version("hg 6"), None);
    }

    #[test]
    fn lock_contention_is_recognised() {
        assert!(lock_contention("fatal: Unable to create '/r/.git/worktrees/p/index.lock': File exists.\n\nAnother git process seems to be running"));
        assert!(lock_contention("error: cannot lock ref 'refs/heads/borg/a': Unable to create '/r/.git/refs/heads/borg/a.lock': File exists."));
        assert!(lock_contention(
            "fatal: failed to read /r/.git/worktrees/project-files5/commondir: Success"
        ));
        assert!(!lock_contention("fatal: not a git repository"));
        assert!(!lock_contention(
            "error: cannot lock ref 'refs/heads/x': is at 1234 but expected 5678"
        ));
    }
}
