//! What a killed borg leaves in a worktree, and how the next one recovers it.
//!
//! - Before an attempt starts, a marker (`git-attempt.json` in the instance folder)
//!   says which task and attempt the worktree is working for and from which commit;
//!   the attempt removes it once its work is committed and kept. A marker found by a
//!   later borg means the attempt was cut short: whatever is in the worktree is
//!   committed, kept under `refs/borg/attempts/<task>/<n>`, and the worktree reset.
//! - Every git borg starts in a worktree notes its pid and start time
//!   (`git.pid`), so an `index.lock` left behind can be judged: held by a live git
//!   (or any live process that has it open), it is waited for; left by a dead one, it
//!   is removed.

use super::commit::Message;
use super::worktree::Worktree;
use super::{GitError, Repo};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The marker file in an instance folder.
pub const MARKER: &str = "git-attempt.json";

/// How long a lock held by a live process is waited for.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// The attempt a worktree is working for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// Task id.
    pub task: String,
    /// Attempt number.
    pub attempt: u32,
    /// Role.
    pub role: String,
    /// Instance id.
    pub instance: String,
    /// The task's branch.
    pub branch: String,
    /// The commit the attempt started from (what a retry starts from again).
    pub start: String,
}

impl InFlight {
    /// Writes the marker into the instance folder (durably: it must survive the
    /// crash it is for).
    pub fn mark(&self, instance: &Path) -> std::io::Result<()> {
        let path = instance.join(MARKER);
        let tmp = instance.join(format!("{MARKER}.tmp"));
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    }

    /// The marker of an instance folder, if there is one.
    pub fn read(instance: &Path) -> Option<InFlight> {
        let text = std::fs::read(instance.join(MARKER)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Removes the marker: the attempt's work is kept.
    pub fn clear(instance: &Path) {
        let _ = std::fs::remove_file(instance.join(MARKER));
    }

    /// The message of the commit that saves what the attempt left, `why` it was cut
    /// short.
    pub fn message(&self, why: &str) -> Message {
        Message {
            subject: super::commit::subject(&self.task, Some("interrupted"), Some(why)),
            trailers: vec![
                ("Borg-Task".into(), self.task.clone()),
                ("Borg-Attempt".into(), self.attempt.to_string()),
                ("Borg-Role".into(), self.role.clone()),
                ("Borg-Instance".into(), self.instance.clone()),
                ("Borg-Status".into(), "interrupted".into()),
            ],
        }
    }
}

/// Notes `pid` (with its start time and the boot id) in `path`.
pub fn note_pid(path: &Path, pid: u32) {
    let start = crate::supervise::procs::stat(pid as i32).map_or(0, |s| s.start_time);
    let line = format!("{pid} {start} {}\n", crate::supervise::procs::boot_id());
    let _ = std::fs::write(path, line);
}

/// Whether the process noted in `path` is still alive (same pid, start time, boot).
fn noted_alive(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let mut f = text.split_whitespace();
    let (Some(pid), Some(start), Some(boot)) = (f.next(), f.next(), f.next()) else {
        return false;
    };
    match (pid.parse::<i64>(), start.parse::<u64>()) {
        (Ok(p), Ok(s)) => crate::supervise::procs::same_process(p, s, boot),
        _ => false,
    }
}

/// Whether any live process has `file` open.
fn held_open(file: &Path) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            std::fs::read_dir(e.path().join("fd"))
                .map(|fds| {
                    fds.filter_map(|f| f.ok())
                        .any(|f| std::fs::read_link(f.path()).is_ok_and(|t| t == file))
                })
                .unwrap_or(false)
        })
}

impl Worktree {
    /// The worktree's own git folder (`<common>/worktrees/<name>`).
    pub fn git_dir(&self, repo: &Repo) -> Result<PathBuf, GitError> {
        let out = self
            .cmd(repo)
            .args(["rev-parse", "--path-format=absolute", "--git-dir"])
            .ok()?;
        Ok(PathBuf::from(out.text()))
    }

    /// Makes sure no stale `index.lock` blocks the worktree: one held by a live
    /// process is waited for (up to a minute), one left by a dead git is removed.
    /// Returns whether a stale lock was removed.
    pub fn clear_stale_lock(&self, repo: &Repo) -> Result<bool, GitError> {
        let lock = self.git_dir(repo)?.join("index.lock");
        let began = Instant::now();
        while lock.exists() {
            let live = noted_alive(&self.pidfile) || held_open(&lock);
            if !live {
                tracing::info!("removing {}, left by a git that is gone", lock.display());
                let _ = std::fs::remove_file(&lock);
                return Ok(true);
            }
            if began.elapsed() > LOCK_WAIT {
                return Err(GitError::Output {
                    args: "index.lock".into(),
                    what: format!(
                        "{} is still held by a live process after {LOCK_WAIT:?}",
                        lock.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(false)
    }

    /// Saves what an interrupted attempt left: everything committed (`msg`), kept
    /// under the attempt's ref, and the worktree reset to the attempt's start and
    /// detached. Returns the commit kept, None when the attempt had changed nothing.
    pub fn save_interrupted(
        &self,
        repo: &Repo,
        f: &InFlight,
        msg: &Message,
    ) -> Result<Option<String>, GitError> {
        self.clear_stale_lock(repo)?;
        self.commit_all(repo, &f.instance, msg)?;
        let head = self.head(repo)?;
        let kept = if head != f.start {
            repo.set_ref(
                &Repo::attempt_ref(&f.task, f.attempt),
                &head,
                "borg: interrupted attempt",
            )?;
            Some(head)
        } else {
            None
        };
        self.reset_hard(repo, &f.start)?;
        self.detach(repo)?;
        Ok(kept)
    }
}
