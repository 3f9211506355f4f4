//! The whole-fleet view and an instance's newest session on PostgreSQL: the same
//! reads as the SQLite store's `view` and `sessions`, each in one snapshot.

use super::engine::Tx;
use super::errors::R;
use super::read::{self, ATTEMPT_COLS};
use super::{agents, coord, coord_log, coord_work, misc, PgStore};
use crate::store::sessions::SessionStore;
use crate::store::view::{FleetView, ViewStore};
use crate::store::{AttemptRow, StoreError};
use std::collections::BTreeMap;

impl ViewStore for PgStore {
    fn fleet_view_of(&self, now_ms: i64, recent: usize) -> Result<FleetView, StoreError> {
        self.engine
            .read(move |tx| Box::pin(async move { fleet_view(tx, now_ms, recent).await }))
    }
}

impl SessionStore for PgStore {
    fn last_session(&self, instance: &str) -> Result<Option<String>, StoreError> {
        let instance = instance.to_string();
        self.engine.read(move |tx| {
            let instance = instance.clone();
            Box::pin(async move {
                let r = read::row(
                    tx,
                    "SELECT s FROM (SELECT (record::jsonb ->> 'session_id') AS s, finished_ms,
                                           started_ms, attempt FROM attempts
                                    WHERE instance = $1 AND record IS NOT NULL) a
                     WHERE s IS NOT NULL
                     ORDER BY COALESCE(finished_ms, started_ms) DESC, attempt DESC LIMIT 1",
                    &[&instance],
                )
                .await?;
                Ok(match r {
                    Some(r) => r.try_get::<_, Option<String>>(0)?,
                    None => None,
                })
            })
        })
    }
}

async fn fleet_view(tx: &Tx<'_>, now_ms: i64, recent: usize) -> R<FleetView> {
    let leases = coord::all_leases(tx, now_ms).await?;
    Ok(FleetView {
        leases: leases.into_iter().filter(|l| l.live).collect(),
        decisions: coord_log::decisions(tx, None, None, recent).await?,
        messages: coord_log::messages(tx, recent).await?,
        activities: coord_work::activities(tx).await?,
        tasks: read::tasks(tx).await?,
        attempts: all_attempts(tx).await?,
        instances: misc::instances(tx).await?,
        handoffs: read::handoffs(tx, None).await?,
        owners: misc::owners(tx).await?,
        fleet: fleet_values(tx).await?,
        progress: agents::progress_rows(tx).await?,
    })
}

/// Every attempt, by task then attempt number.
async fn all_attempts(tx: &Tx<'_>) -> R<Vec<AttemptRow>> {
    let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts ORDER BY task, attempt");
    read::rows(tx, &sql, &[])
        .await?
        .iter()
        .map(read::attempt_row)
        .collect()
}

/// Every fleet-wide value by key.
async fn fleet_values(tx: &Tx<'_>) -> R<BTreeMap<String, serde_json::Value>> {
    let mut out = BTreeMap::new();
    for r in read::rows(tx, "SELECT key, value FROM fleet ORDER BY key", &[]).await? {
        let (k, v): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        out.insert(k, read::json(&v)?);
    }
    Ok(out)
}
