//! Recovery from dead borgs: owner heartbeats, taking back at once the claims of a borg
//! that is provably gone (pid + start time + boot id), taking back expired leases, and
//! the restart sweep that kills what is left of a dead borg's attempts without ever
//! hitting a process whose pid was reused.

use crate::run::attempt::now_ms;
use crate::store::{call as db, AttemptRow, OwnerInfo, Store};
use std::sync::Arc;

/// Owner heartbeat; claims of dead owners back at once; expired leases back.
pub async fn maintenance(store: &Arc<dyn Store>, me: &OwnerInfo) {
    let id = me.id.clone();
    let _ = db(store, move |st| st.heartbeat_owner(&id, now_ms())).await;
    let owners = db(store, |st| st.owners()).await.unwrap_or_default();
    for o in owners {
        if o.id == me.id || o.host != me.host {
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
