//! The SQLite side of sessions that continue: an instance's newest session id, read
//! from its attempts' records.

use super::SqliteStore;
use crate::store::sessions::SessionStore;
use crate::store::StoreError;
use rusqlite::OptionalExtension;

impl SessionStore for SqliteStore {
    fn last_session(&self, instance: &str) -> Result<Option<String>, StoreError> {
        self.read(|tx| {
            let mut st = tx.prepare_cached(
                "SELECT json_extract(record, '$.session_id') AS s FROM attempts
                 WHERE instance = ?1 AND record IS NOT NULL AND s IS NOT NULL
                 ORDER BY COALESCE(finished_ms, started_ms) DESC, attempt DESC LIMIT 1",
            )?;
            Ok(st.query_row([instance], |r| r.get(0)).optional()?)
        })
    }
}
