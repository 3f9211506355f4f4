//! Owners (borg processes), instances and fleet-wide key/value state.
//!
//! Owner heartbeats and instance busy/idle flips are not logged as events: they happen
//! all the time and carry no history worth keeping; registrations and removals are.

use super::read::{self, event, exec};
use super::{E, R};
use crate::store::*;
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;

/// Registers or refreshes an owner.
pub(crate) fn register_owner(tx: &Transaction<'_>, o: &OwnerInfo) -> R<()> {
    exec(tx,
        "INSERT INTO owners (id, host, pid, start_time, boot_id, started_at_ms, heartbeat_ms, host_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, start_time = excluded.start_time,
             boot_id = excluded.boot_id, started_at_ms = excluded.started_at_ms, heartbeat_ms = excluded.heartbeat_ms,
             host_id = excluded.host_id",
        // start_time is in clock ticks since boot: far below 2^63
        params![o.id, o.host, o.pid, o.start_time as i64, o.boot_id, o.started_at_ms, o.heartbeat_ms, o.host_id],
    )?;
    event(
        tx,
        o.started_at_ms,
        None,
        None,
        &o.id,
        "owner-registered",
        &json!({ "host": o.host, "pid": o.pid }),
    )?;
    Ok(())
}

/// Updates an owner's heartbeat; an unknown owner (released by another borg that
/// thought it dead) is `NotFound`, which tells it to stop.
pub(crate) fn heartbeat_owner(tx: &Transaction<'_>, owner: &str, now: i64) -> R<()> {
    let n = exec(
        tx,
        "UPDATE owners SET heartbeat_ms = ?1 WHERE id = ?2",
        params![now, owner],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("owner {owner}")).into());
    }
    Ok(())
}

/// Every owner, oldest registration first.
pub(crate) fn owners(tx: &Transaction<'_>) -> R<Vec<OwnerInfo>> {
    let mut st = tx.prepare_cached(
        "SELECT id, host, pid, start_time, boot_id, started_at_ms, heartbeat_ms, host_id FROM owners ORDER BY started_at_ms, id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(OwnerInfo {
            id: r.get(0)?,
            host: r.get(1)?,
            pid: r.get(2)?,
            start_time: r.get::<_, i64>(3)? as u64,
            boot_id: r.get(4)?,
            started_at_ms: r.get(5)?,
            heartbeat_ms: r.get(6)?,
            host_id: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts or replaces an instance row.
pub(crate) fn upsert_instance(tx: &Transaction<'_>, i: &InstanceRow) -> R<()> {
    exec(tx,
        "INSERT INTO instances (id, role, state, current_task, owner, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = excluded.state,
             current_task = excluded.current_task, owner = excluded.owner, updated_ms = excluded.updated_ms",
        params![i.id, i.role, i.state, i.current_task, i.owner, i.updated_ms],
    )?;
    Ok(())
}

/// Marks an instance busy for its owner unless another owner holds it; true if taken.
pub(crate) fn acquire_instance(tx: &Transaction<'_>, i: &InstanceRow) -> R<bool> {
    let n = exec(tx,
        "INSERT INTO instances (id, role, state, current_task, owner, updated_ms) VALUES (?1, ?2, 'busy', ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = 'busy',
             current_task = excluded.current_task, owner = excluded.owner, updated_ms = excluded.updated_ms
         WHERE instances.state <> 'busy' OR instances.owner IS NULL OR instances.owner = excluded.owner",
        params![i.id, i.role, i.current_task, i.owner, i.updated_ms],
    )?;
    Ok(n == 1)
}

/// Every instance, by id.
pub(crate) fn instances(tx: &Transaction<'_>) -> R<Vec<InstanceRow>> {
    let mut st = tx.prepare_cached(
        "SELECT id, role, state, current_task, owner, updated_ms FROM instances ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(InstanceRow {
            id: r.get(0)?,
            role: r.get(1)?,
            state: r.get(2)?,
            current_task: r.get(3)?,
            owner: r.get(4)?,
            updated_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes an instance row; `NotFound` if there was none.
pub(crate) fn remove_instance(tx: &Transaction<'_>, id: &str) -> R<()> {
    if exec(tx, "DELETE FROM instances WHERE id = ?1", [id])? == 0 {
        return Err(E::Store(StoreError::NotFound(format!("instance {id}"))));
    }
    Ok(())
}

/// Sets a fleet value.
pub(crate) fn set_fleet(
    tx: &Transaction<'_>,
    key: &str,
    value: &serde_json::Value,
    now: i64,
) -> R<()> {
    // A change of the breaker or of parking (not a rewrite of the same value) is an
    // event, so that watchers of the log (borg serve's event stream, other borgs'
    // change feeds) see them; other keys are bookkeeping.
    let logged = matches!(key, "breaker" | "parked");
    let changed = logged && fleet(tx, key)?.as_ref() != Some(value);
    exec(
        tx,
        "INSERT INTO fleet (key, value, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        params![key, value.to_string(), now],
    )?;
    if changed {
        event(tx, now, None, None, "borg", &format!("fleet-{key}"), value)?;
    }
    Ok(())
}

/// Reads a fleet value.
pub(crate) fn fleet(tx: &Transaction<'_>, key: &str) -> R<Option<serde_json::Value>> {
    let s: Option<String> = tx
        .prepare_cached("SELECT value FROM fleet WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    s.as_deref().map(read::json).transpose()
}
