//! Owners (borg processes), instances and fleet-wide key/value state on PostgreSQL
//! (the SQLite store's `misc`): registrations and removals are events; heartbeats and
//! busy/idle flips are not.

use super::engine::Tx;
use super::errors::{E, R};
use super::read::{self, event, exec, row, rows};
use crate::store::*;
use serde_json::json;

/// Registers or refreshes an owner.
pub(crate) async fn register_owner(tx: &Tx<'_>, o: &OwnerInfo) -> R<()> {
    let start_time = o.start_time as i64;
    exec(tx,
        "INSERT INTO owners (id, host, pid, start_time, boot_id, started_at_ms, heartbeat_ms, host_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, start_time = excluded.start_time,
             boot_id = excluded.boot_id, started_at_ms = excluded.started_at_ms, heartbeat_ms = excluded.heartbeat_ms,
             host_id = excluded.host_id",
        &[&o.id, &o.host, &o.pid, &start_time, &o.boot_id, &o.started_at_ms, &o.heartbeat_ms, &o.host_id],
    ).await?;
    let data = json!({ "host": o.host, "pid": o.pid });
    event(
        tx,
        o.started_at_ms,
        None,
        None,
        &o.id,
        "owner-registered",
        &data,
    )
    .await
}

/// Updates an owner's heartbeat; an unknown owner is `NotFound`.
pub(crate) async fn heartbeat_owner(tx: &Tx<'_>, owner: &str, now: i64) -> R<()> {
    let n = exec(
        tx,
        "UPDATE owners SET heartbeat_ms = $1 WHERE id = $2",
        &[&now, &owner],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("owner {owner}")).into());
    }
    Ok(())
}

/// Every owner, oldest registration first.
pub(crate) async fn owners(tx: &Tx<'_>) -> R<Vec<OwnerInfo>> {
    rows(tx,
        "SELECT id, host, pid, start_time, boot_id, started_at_ms, heartbeat_ms, host_id FROM owners ORDER BY started_at_ms, id",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(OwnerInfo {
            id: r.try_get(0)?,
            host: r.try_get(1)?,
            pid: r.try_get(2)?,
            start_time: r.try_get::<_, i64>(3)? as u64,
            boot_id: r.try_get(4)?,
            started_at_ms: r.try_get(5)?,
            heartbeat_ms: r.try_get(6)?,
            host_id: r.try_get(7)?,
        })
    })
    .collect()
}

/// Inserts or replaces an instance row.
pub(crate) async fn upsert_instance(tx: &Tx<'_>, i: &InstanceRow) -> R<()> {
    exec(tx,
        "INSERT INTO instances (id, role, state, current_task, owner, updated_ms) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = excluded.state,
             current_task = excluded.current_task, owner = excluded.owner, updated_ms = excluded.updated_ms",
        &[&i.id, &i.role, &i.state, &i.current_task, &i.owner, &i.updated_ms],
    ).await?;
    Ok(())
}

/// Marks an instance busy for its owner unless another owner holds it; true if taken.
pub(crate) async fn acquire_instance(tx: &Tx<'_>, i: &InstanceRow) -> R<bool> {
    let n = exec(tx,
        "INSERT INTO instances (id, role, state, current_task, owner, updated_ms) VALUES ($1, $2, 'busy', $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = 'busy',
             current_task = excluded.current_task, owner = excluded.owner, updated_ms = excluded.updated_ms
         WHERE instances.state <> 'busy' OR instances.owner IS NULL OR instances.owner = excluded.owner",
        &[&i.id, &i.role, &i.current_task, &i.owner, &i.updated_ms],
    ).await?;
    Ok(n == 1)
}

/// Every instance, by id.
pub(crate) async fn instances(tx: &Tx<'_>) -> R<Vec<InstanceRow>> {
    rows(
        tx,
        "SELECT id, role, state, current_task, owner, updated_ms FROM instances ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(InstanceRow {
            id: r.try_get(0)?,
            role: r.try_get(1)?,
            state: r.try_get(2)?,
            current_task: r.try_get(3)?,
            owner: r.try_get(4)?,
            updated_ms: r.try_get(5)?,
        })
    })
    .collect()
}

/// Removes an instance row; `NotFound` if there was none.
pub(crate) async fn remove_instance(tx: &Tx<'_>, id: &str) -> R<()> {
    if exec(tx, "DELETE FROM instances WHERE id = $1", &[&id]).await? == 0 {
        return Err(E::Store(StoreError::NotFound(format!("instance {id}"))));
    }
    Ok(())
}

/// Sets a fleet value.
pub(crate) async fn set_fleet(
    tx: &Tx<'_>,
    key: &str,
    value: &serde_json::Value,
    now: i64,
) -> R<()> {
    // As in the SQLite store: a change of the breaker or of parking is an event.
    let logged = matches!(key, "breaker" | "parked");
    let changed = logged && fleet(tx, key).await?.as_ref() != Some(value);
    exec(
        tx,
        "INSERT INTO fleet (key, value, updated_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        &[&key, &value.to_string(), &now],
    )
    .await?;
    if changed {
        event(tx, now, None, None, "borg", &format!("fleet-{key}"), value).await?;
    }
    Ok(())
}

/// Reads a fleet value.
pub(crate) async fn fleet(tx: &Tx<'_>, key: &str) -> R<Option<serde_json::Value>> {
    let s: Option<String> = row(tx, "SELECT value FROM fleet WHERE key = $1", &[&key])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    s.as_deref().map(read::json).transpose()
}
