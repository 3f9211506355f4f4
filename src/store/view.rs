//! A whole-fleet view read in one go: what `borg status` shows, in one read of the
//! store per frame (one snapshot, consistent across tables) instead of one query per
//! task, so that refreshing the screen costs the same whatever the list's length.

use super::agents::ProgressRow;
use super::coord::{ActivityRow, DecisionRow, LeaseRow, MessageRow};
use super::{AttemptRow, HandoffRow, InstanceRow, OwnerInfo, StoreError, TaskRow};
use std::collections::BTreeMap;

/// Everything `borg status` shows, as of one moment.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    /// Every task, in (order, id) order.
    pub tasks: Vec<TaskRow>,
    /// Every attempt of every task, by task then attempt number.
    pub attempts: Vec<AttemptRow>,
    /// Every registered instance.
    pub instances: Vec<InstanceRow>,
    /// Every handoff, newest last.
    pub handoffs: Vec<HandoffRow>,
    /// Every registered borg process.
    pub owners: Vec<OwnerInfo>,
    /// Every fleet-wide value (parked, breaker, memory …) by key.
    pub fleet: BTreeMap<String, serde_json::Value>,
    /// Live file leases (coordination).
    pub leases: Vec<LeaseRow>,
    /// The newest decisions ([`RECENT`] of them).
    pub decisions: Vec<DecisionRow>,
    /// The newest messages ([`RECENT`] of them).
    pub messages: Vec<MessageRow>,
    /// What each running agent reported it is doing.
    pub activities: Vec<ActivityRow>,
    /// The latest progress report of each claim an outside agent (`borg serve`) holds
    /// now (reports of claims that ended or changed hands are left out).
    pub progress: Vec<ProgressRow>,
}

/// How many of the newest decisions and messages a view holds by default.
pub const RECENT: usize = 5;

/// The fleet-wide key under which the scheduler records its memory wait
/// (`{"waiting": bool, "available_bytes", "min_available_bytes", ...}`), so that
/// `borg status` and the dashboard can say why no child starts.
pub const MEMORY_KEY: &str = "memory";

/// The store's whole-view capability.
pub trait ViewStore {
    /// Reads the whole fleet in one transaction (one snapshot); leases live at `now_ms`;
    /// the `recent` newest decisions and messages.
    fn fleet_view_of(&self, now_ms: i64, recent: usize) -> Result<FleetView, StoreError>;

    /// [`ViewStore::fleet_view_of`] with the [`RECENT`] newest decisions and messages.
    fn fleet_view(&self, now_ms: i64) -> Result<FleetView, StoreError> {
        self.fleet_view_of(now_ms, RECENT)
    }
}
