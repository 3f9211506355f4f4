//! Memory admission: no new child starts while the machine's available memory is below
//! `[run] min_available_memory` (a real claude child weighs hundreds of MB, and
//! nothing else stops borg from starting more than the machine holds). The task waits;
//! the wait is written to the store's fleet state (`memory`) so that `borg status`,
//! from any shell, says why nothing starts, and said once on the progress display.

use super::Scheduler;
use crate::run::attempt::now_ms;
use crate::show::progress::Event;
use crate::store::call as db;

/// How often a run waiting for memory looks again.
pub(super) const RECHECK_MS: i64 = 1000;

/// The store's fleet-state key of the memory wait.
pub const FLEET_KEY: &str = crate::store::view::MEMORY_KEY;

const MIB: u64 = 1024 * 1024;

impl Scheduler<'_> {
    /// Whether a new child may start now. While it may not, the wait is recorded (once)
    /// and a look again is scheduled.
    pub(super) async fn memory_admits(&mut self) -> bool {
        let min = self.shared.settings.run.min_available_memory;
        let available = match crate::supervise::procs::mem_available() {
            Some(a) if min > 0 => a,
            // No limit, or no /proc/meminfo to read: nothing to wait for.
            _ => return true,
        };
        if available >= min {
            if self.memory_wait.take().is_some() {
                self.record_memory_wait(None).await;
                let note = format!(
                    "memory: {} MiB available again; tasks start",
                    available / MIB
                );
                self.progress.event(&Event::Note(note));
            }
            return true;
        }
        if self.memory_wait.is_none() {
            self.record_memory_wait(Some((available, min))).await;
            let note = format!(
                "memory: only {} MiB available, below min_available_memory ({} MiB); no new child starts until there is more",
                available / MIB,
                min / MIB
            );
            self.progress.event(&Event::Note(note));
        }
        self.memory_wait = Some(now_ms() + RECHECK_MS);
        false
    }

    /// The run ends: a wait it recorded is over.
    pub(super) async fn end_memory_wait(&mut self) {
        if self.memory_wait.take().is_some() {
            self.record_memory_wait(None).await;
        }
    }

    /// Writes the wait (or its end, with None) to the store's fleet state.
    async fn record_memory_wait(&mut self, wait: Option<(u64, u64)>) {
        let v = match wait {
            Some((available, min)) => serde_json::json!({
                "waiting": true,
                "available_bytes": available,
                "min_available_bytes": min,
                "owner": self.owner.id,
                "since_ms": now_ms(),
            }),
            None => serde_json::json!({ "waiting": false }),
        };
        if let Err(e) = db(&self.store, move |st| st.set_fleet(FLEET_KEY, &v, now_ms())).await {
            tracing::warn!("cannot record the memory wait: {e}");
        }
    }
}
