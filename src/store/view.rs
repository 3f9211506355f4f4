//! A whole-fleet view read in one go: what `borg status` shows, in one read of the
//! store per frame (one snapshot, consistent across tables) instead of one query per
//! task, so that refreshing the screen costs the same whatever the list's length.

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
}

/// The store's whole-view capability.
pub trait ViewStore {
    /// Reads the whole fleet in one transaction (one snapshot).
    fn fleet_view(&self) -> Result<FleetView, StoreError>;
}
