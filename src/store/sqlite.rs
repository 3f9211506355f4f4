//! The SQLite backend of the store: WAL, synchronous=FULL, every write in
//! `BEGIN IMMEDIATE`, a busy timeout on every connection, schema migrations by
//! `PRAGMA user_version`.
//!
//! OWNER: helper C (store).

use super::*;
use std::path::{Path, PathBuf};

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
