//! `borg status`, the hosts: every borg registered in the store (a `borg run` or a
//! `borg worker`, on this machine or another), with its host id, host name, pid, last
//! heartbeat and the tasks it runs; marked dead when its heartbeat is older than the
//! lease, or (on this machine, this boot) when its process is gone. On other machines
//! only the heartbeat can tell.

use crate::store::{OwnerInfo, TaskRow};
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

/// One host line.
#[derive(Debug, Serialize)]
pub(super) struct HostView {
    /// The owner id of the borg process.
    pub id: String,
    /// Its name in the fleet.
    pub host_id: String,
    /// The machine's host name.
    pub hostname: String,
    /// Its pid there.
    pub pid: i64,
    /// Its last heartbeat, epoch ms.
    pub heartbeat_ms: i64,
    /// How long ago that was, ms.
    pub heartbeat_age_ms: i64,
    /// The tasks it holds claims on.
    pub running: Vec<String>,
    /// False when it is gone (then `dead` says why).
    pub alive: bool,
    /// Why it counts as dead.
    pub dead: Option<String>,
}

/// The hosts, from the owners and the tasks they hold.
pub(super) fn hosts(
    owners: &[OwnerInfo],
    tasks: &[TaskRow],
    lease: Duration,
    now: i64,
) -> Vec<HostView> {
    let here = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let boot = crate::supervise::procs::boot_id();
    owners
        .iter()
        .map(|o| {
            let age = (now - o.heartbeat_ms).max(0);
            let dead = if o.host == here
                && o.boot_id == boot
                && !crate::supervise::procs::same_process(o.pid, o.start_time, &o.boot_id)
            {
                Some(format!("process {} is gone", o.pid))
            } else if age > lease.as_millis() as i64 {
                Some(format!(
                    "no heartbeat for {} s (lease {} s)",
                    age / 1000,
                    lease.as_secs()
                ))
            } else {
                None
            };
            HostView {
                id: o.id.clone(),
                host_id: if o.host_id.is_empty() {
                    o.host.clone()
                } else {
                    o.host_id.clone()
                },
                hostname: o.host.clone(),
                pid: o.pid,
                heartbeat_ms: o.heartbeat_ms,
                heartbeat_age_ms: age,
                running: tasks
                    .iter()
                    .filter(|t| t.owner.as_deref() == Some(o.id.as_str()))
                    .map(|t| t.id.clone())
                    .collect(),
                alive: dead.is_none(),
                dead,
            }
        })
        .collect()
}

/// The text view of the hosts.
pub(super) fn write_hosts(o: &mut String, hosts: &[HostView]) {
    let _ = writeln!(o, "HOSTS");
    if hosts.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for h in hosts {
        let state = match &h.dead {
            None => "alive".to_string(),
            Some(why) => format!("DEAD ({why})"),
        };
        let running = if h.running.is_empty() {
            "-".to_string()
        } else {
            h.running.join(", ")
        };
        let _ = writeln!(
            o,
            "  {:<20} {:<20} pid {:<8} heartbeat {:>4} s ago  {:<8} running: {}",
            h.host_id,
            h.hostname,
            h.pid,
            h.heartbeat_age_ms / 1000,
            state,
            running
        );
    }
}
