//! The baseline: the task's gates run once at its start commit, so that a failure
//! already there is not the agent's. Results are kept in the store per `(commit,
//! gate)` ([`crate::store::VerifyStore`]): ten tasks started from one commit run it
//! once (this process takes a lock per commit while it runs one, so the others wait
//! and then read it), and a resumed run, or another borg on the same store, does not
//! run it again. It runs in a scratch worktree of the instance (`<instance>/baseline`,
//! detached at the commit), so the task's own worktree and branch never move.

use super::exec::{self, GateJob};
use super::judge::Baseline;
use crate::git::worktree::Worktree;
use crate::git::Repo;
use crate::store::{call, Store};
use crate::supervise::runner::Control;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Where and at what a baseline runs.
pub struct Place {
    /// The repository.
    pub repo: Arc<Repo>,
    /// The scratch worktree's folder.
    pub dir: PathBuf,
    /// The start commit.
    pub commit: String,
}

/// The store key of a gate: its command line and how its output is read.
pub fn key(command: &str, junit: Option<&str>) -> String {
    match junit {
        Some(g) => format!("{command}\u{0}junit={g}"),
        None => command.to_string(),
    }
}

/// The baseline of each of `gates` (from the store, else run now at the start
/// commit); None for a gate whose baseline could not be had (the scratch worktree
/// failed, or borg was stopped), which is then judged without one.
pub async fn results(
    store: &Arc<dyn Store>,
    at: &Place,
    template: &GateJob,
    gates: &[String],
    ctl: &Control,
) -> Vec<Option<Baseline>> {
    let lock = commit_lock(&at.commit);
    let _held = lock.lock().await;
    let mut out = Vec::new();
    let mut scratch: Option<Result<PathBuf, String>> = None;
    for (i, cmd) in gates.iter().enumerate() {
        let k = key(cmd, template.junit.as_deref());
        if let Some(b) = cached(store, &at.commit, &k).await {
            out.push(Some(b));
            continue;
        }
        let dir = match scratch.get_or_insert(prepare(at).await) {
            Ok(d) => d.clone(),
            Err(e) => {
                tracing::warn!(commit = %at.commit, "no baseline: {e}");
                out.push(None);
                continue;
            }
        };
        let job = GateJob {
            command: cmd.clone(),
            cwd: dir,
            label: format!(
                "baseline at {}, gate {}/{}",
                crate::git::short(&at.commit),
                i + 1,
                gates.len()
            ),
            ..template.clone()
        };
        let ran = exec::run(&job, ctl.clone()).await;
        if ran.interrupted || ctl.stop.is_cancelled() || ctl.kill.is_cancelled() {
            out.push(None);
            continue;
        }
        out.push(Some(
            keep(store, &at.commit, &k, Baseline::from(&ran)).await,
        ));
    }
    out
}

/// The lock of one commit's baseline in this process.
fn commit_lock(commit: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut m = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    m.entry(commit.to_string()).or_default().clone()
}

/// The kept baseline, if any (an unreadable one counts as none).
async fn cached(store: &Arc<dyn Store>, commit: &str, key: &str) -> Option<Baseline> {
    let (c, k) = (commit.to_string(), key.to_string());
    let v = call(store, move |st| st.baseline(&c, &k)).await;
    match v {
        Ok(Some(v)) => serde_json::from_value(v).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("reading a baseline: {e}");
            None
        }
    }
}

/// Keeps a baseline; returns the one kept (another borg's, if it was first).
async fn keep(store: &Arc<dyn Store>, commit: &str, key: &str, b: Baseline) -> Baseline {
    let Ok(v) = serde_json::to_value(&b) else {
        return b;
    };
    let (c, k) = (commit.to_string(), key.to_string());
    let kept = call(store, move |st| {
        st.put_baseline(&c, &k, &v, chrono::Utc::now().timestamp_millis())
    })
    .await;
    match kept {
        Ok(v) => serde_json::from_value(v).unwrap_or(b),
        Err(e) => {
            tracing::warn!("keeping a baseline: {e}");
            b
        }
    }
}

/// The scratch worktree at the start commit.
async fn prepare(at: &Place) -> Result<PathBuf, String> {
    let (repo, dir, commit) = (at.repo.clone(), at.dir.clone(), at.commit.clone());
    tokio::task::spawn_blocking(move || {
        Worktree::scratch_at(&repo, &dir, &commit)
            .map(|w| w.dir)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}
