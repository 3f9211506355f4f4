//! Recovery from dead borgs: owner heartbeats, taking back at once the claims of a borg
//! that is provably gone (pid + start time + boot id), taking back expired leases, the
//! restart sweep that kills what is left of a dead borg's attempts without ever
//! hitting a process whose pid was reused, and (git mode) the worktrees a dead borg
//! left in the middle of an attempt: their work saved under the attempt's ref, the
//! worktree reset, a stale `index.lock` removed.

use crate::git::recover::InFlight;
use crate::git::worktree::Worktree;
use crate::git::Repo;
use crate::run::attempt::now_ms;
use crate::store::{call as db, AttemptRow, OwnerInfo, Store, StoreError};
use crate::workspace::instance::Workspaces;
use std::sync::Arc;

/// Records this borg process in the store; `host_id` names the host in the fleet (the
/// host name when None).
pub fn register(store: &dyn Store, host_id: Option<&str>) -> Result<OwnerInfo, StoreError> {
    let pid = std::process::id() as i64;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let host_id = host_id.unwrap_or(&host).to_string();
    let now = now_ms();
    let owner = OwnerInfo {
        id: format!(
            "borg-{host_id}-{pid}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ),
        host,
        host_id,
        pid,
        start_time: crate::supervise::procs::stat(pid as i32)
            .map(|s| s.start_time)
            .unwrap_or(0),
        boot_id: crate::supervise::procs::boot_id(),
        started_at_ms: now,
        heartbeat_ms: now,
    };
    store.register_owner(&owner)?;
    Ok(owner)
}

/// Owner heartbeat; claims of dead owners back at once; expired leases back. Returns
/// the heartbeat's error when the store could not be reached (nothing else was done).
pub async fn maintenance(store: &Arc<dyn Store>, me: &OwnerInfo) -> Result<(), StoreError> {
    let id = me.id.clone();
    if let Err(e @ StoreError::Unreachable { .. }) =
        db(store, move |st| st.heartbeat_owner(&id, now_ms())).await
    {
        return Err(e);
    }
    let owners = db(store, |st| st.owners()).await.unwrap_or_default();
    let shared = store.shared_by_hosts();
    for o in owners {
        if o.id == me.id || o.host != me.host || (shared && o.boot_id != me.boot_id) {
            continue;
        }
        if !crate::supervise::procs::same_process(o.pid, o.start_time, &o.boot_id) {
            tracing::info!(
                "borg {} (pid {}) is gone; taking its claims back",
                o.id,
                o.pid
            );
            let oid = o.id.clone();
            if let Ok(attempts) = db(store, move |st| st.release_owner(&oid, now_ms())).await {
                sweep(&attempts);
            }
        }
    }
    if let Ok(expired) = db(store, |st| st.release_expired(now_ms())).await {
        sweep(&expired);
    }
    Ok(())
}

/// Kills what is left of attempts whose borg is gone: the recorded process group (if
/// the recorded pid is still the same process) and any process carrying the attempt's
/// cookie. A reused pid is never hit: start time and boot id must match.
pub fn sweep(attempts: &[AttemptRow]) {
    for a in attempts {
        let st = &a.start;
        crate::supervise::procs::kill_leftovers(
            st.pid,
            st.pgid,
            st.start_time,
            &st.boot_id,
            &st.uid,
        );
    }
}

/// Git mode: saves the work of attempts a dead borg left in its worktrees (those
/// with a marker, not in use by a live borg). Returns one line per worktree saved.
pub fn worktrees(store: &dyn Store, ws: &Workspaces, repo: &Repo) -> Vec<String> {
    let busy: Vec<String> = store
        .instances()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.state == "busy" && i.owner.is_some())
        .map(|i| i.id)
        .collect();
    let mut notes = Vec::new();
    for inst in ws.list().unwrap_or_default() {
        let Some(f) = InFlight::read(&inst.path).filter(|_| !busy.contains(&inst.id)) else {
            continue;
        };
        let wt = Worktree::of_instance(&inst.path);
        let msg = f.message("saved by borg after the run stopped");
        match wt.save_interrupted(repo, &f, &msg) {
            Ok(kept) => {
                InFlight::clear(&inst.path);
                let what = match kept {
                    Some(c) => format!(
                        "its work is saved to {} ({})",
                        Repo::attempt_ref(&f.task, f.attempt),
                        crate::git::short(&c)
                    ),
                    None => "it had changed nothing".into(),
                };
                notes.push(format!(
                    "{}: attempt {} of {} was interrupted; {what}; the worktree is reset",
                    inst.id, f.attempt, f.task
                ));
            }
            Err(e) => notes.push(format!(
                "{}: cannot recover the worktree of attempt {} of {}: {e}",
                inst.id, f.attempt, f.task
            )),
        }
    }
    notes
}
