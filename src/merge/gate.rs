//! The merge queue's integration gates, run by the verification gates' runner
//! (`verify::exec`): `sh -c COMMAND` in borg's integration worktree under the same
//! supervision as a claude child (the shim and its reaper, its own process group, the
//! stop ladder and a whole-tree kill at `[verify] timeout` or when borg stops, the
//! memory watchdog of `[run] max_attempt_memory`), with the child's allowlisted
//! environment, its output appended to `<workspaces>/.merge/logs/<target>.verify.log`
//! (capped per run). A failure is judged against the same gate at the target's start
//! commit by the task-level rules (`verify::baseline`, cached in the store per commit
//! and gate, shared with the task-level gates; `verify::judge`).
//!
//! The queue is synchronous (it runs on the blocking pool); each gate is driven to its
//! end on the runtime the queue was started from.

use crate::git::Repo;
use crate::store::Store;
use crate::supervise::runner::Control;
use crate::verify::baseline::{self, Place};
use crate::verify::exec::{self, GateJob, GateOutput};
use crate::verify::judge::Baseline;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where and how gates run.
#[derive(Debug, Clone)]
pub struct GateEnv {
    /// The environment of every gate.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit of one gate.
    pub timeout: Duration,
    /// The log every gate run of the target is appended to.
    pub log: PathBuf,
    /// The stop ladder's waits (after SIGINT, after SIGTERM) and the wait for what
    /// keeps a gate's pipes open after it exits.
    pub ladder: (Duration, Duration, Duration),
    /// `[verify] junit`: the JUnit XML files gates write.
    pub junit: Option<String>,
    /// A gate's whole tree's resident memory limit, KiB.
    pub max_memory_kb: Option<u64>,
    /// How borg stops a running gate (Ctrl-C, SIGTERM).
    pub ctl: Control,
}

impl GateEnv {
    /// The job of `command` in `dir`, `label` naming the run in the log.
    fn job(&self, command: &str, dir: &Path, label: &str) -> GateJob {
        GateJob {
            command: command.to_string(),
            cwd: dir.to_path_buf(),
            env: self.env.clone(),
            log: self.log.clone(),
            label: label.to_string(),
            timeout: self.timeout,
            ladder: self.ladder,
            junit: self.junit.clone(),
            max_memory_kb: self.max_memory_kb,
        }
    }

    /// Runs `command` in `dir` to its end (from the blocking pool).
    pub fn run(&self, command: &str, dir: &Path, label: &str) -> GateOutput {
        let job = self.job(command, dir, label);
        let ctl = self.ctl.clone();
        tokio::runtime::Handle::current().block_on(async move { exec::run(&job, ctl).await })
    }

    /// The result of `command` at `commit` (from the store, else run now in `dir`,
    /// which is left at that commit); None when it could not be had (borg stopped,
    /// the worktree failed).
    pub fn baseline(
        &self,
        store: &Arc<dyn Store>,
        repo: &Repo,
        (dir, commit): (&Path, &str),
        command: &str,
    ) -> Option<Baseline> {
        let at = Place {
            repo: Arc::new(repo.clone()),
            dir: dir.to_path_buf(),
            commit: commit.to_string(),
        };
        let template = self.job(command, dir, "");
        let gates = [command.to_string()];
        let ctl = self.ctl.clone();
        let store = store.clone();
        tokio::runtime::Handle::current()
            .block_on(async move { baseline::results(&store, &at, &template, &gates, &ctl).await })
            .pop()
            .flatten()
    }

    /// Whether borg is stopping (a gate that ended then proves nothing).
    pub fn stopping(&self) -> bool {
        self.ctl.stop.is_cancelled() || self.ctl.kill.is_cancelled()
    }
}

/// The project's own test command from the files at `commit` (the task-level gates'
/// `"auto"` rule, `verify::gates::detect_from`), and what was found in one line.
pub fn detect(repo: &Repo, commit: &str) -> (Option<String>, String) {
    let names: Vec<String> = repo
        .git
        .at(&repo.dir)
        .args(["ls-tree", "-z", "--name-only", commit])
        .ok()
        .map(|o| {
            o.stdout
                .split(|b| *b == 0)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let read = |f: &str| {
        let spec = format!("{commit}:{f}");
        let o = repo
            .git
            .at(&repo.dir)
            .args(["cat-file", "blob", &spec])
            .ok()
            .ok()?;
        Some(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    crate::verify::gates::detect_from(|n| names.iter().any(|x| x == n), read)
}
