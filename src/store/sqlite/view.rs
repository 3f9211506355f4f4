//! The whole-fleet view of the SQLite store: every table `borg status` needs, read in
//! one deferred transaction.

use super::read::{self, ATTEMPT_COLS};
use super::{agents, coord, coord_log, misc, SqliteStore, R};
use crate::store::view::{FleetView, ViewStore};
use crate::store::StoreError;
use rusqlite::Transaction;
use std::collections::BTreeMap;

impl SqliteStore {
    /// How many read transactions this store ran (a `borg status` frame costs one).
    pub fn read_transactions(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ViewStore for SqliteStore {
    fn fleet_view_of(&self, now_ms: i64, recent: usize) -> Result<FleetView, StoreError> {
        self.read(|tx| {
            let leases = coord::all_leases(tx, now_ms)?;
            Ok(FleetView {
                leases: leases.into_iter().filter(|l| l.live).collect(),
                decisions: coord_log::decisions(tx, None, None, recent)?,
                messages: coord_log::messages(tx, recent)?,
                activities: coord_log::activities(tx)?,
                tasks: read::tasks(tx)?,
                attempts: all_attempts(tx)?,
                instances: misc::instances(tx)?,
                handoffs: read::handoffs(tx, None)?,
                owners: misc::owners(tx)?,
                fleet: fleet_values(tx)?,
                progress: agents::progress_rows(tx)?,
            })
        })
    }
}

/// Every attempt, by task then attempt number.
fn all_attempts(tx: &Transaction<'_>) -> R<Vec<crate::store::AttemptRow>> {
    let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts ORDER BY task, attempt");
    let mut st = tx.prepare_cached(&sql)?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read::attempt_row(r)?);
    }
    Ok(out)
}

/// Every fleet-wide value by key.
fn fleet_values(tx: &Transaction<'_>) -> R<BTreeMap<String, serde_json::Value>> {
    let pairs: Vec<(String, String)> = {
        let mut st = tx.prepare_cached("SELECT key, value FROM fleet ORDER BY key")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    pairs
        .into_iter()
        .map(|(k, v)| Ok((k, read::json(&v)?)))
        .collect()
}
