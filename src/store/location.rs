//! Where the store is, and opening it: a path is an SQLite file (the embedded
//! default, `<workspaces>/borg.db`); a `postgres://` (or `postgresql://`) URL is a
//! PostgreSQL database that several hosts share. Settings keep the location as they
//! were given (`--store`, `BORG_STORE`, `[store] url`, `[paths] store`); this is the
//! one place that tells the two apart.

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::postgres::{is_url, redact};

/// A store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (with its password, if it has one: never show it as is).
    Postgres(String),
}

impl StoreLocation {
    /// The location a setting names: a URL, `sqlite:PATH`, or a path.
    pub fn of(setting: &Path) -> StoreLocation {
        let text = setting.to_string_lossy();
        if is_url(&text) {
            return StoreLocation::Postgres(text.trim().to_string());
        }
        match text.strip_prefix("sqlite:") {
            Some(rest) => StoreLocation::Sqlite(PathBuf::from(rest)),
            None => StoreLocation::Sqlite(setting.to_path_buf()),
        }
    }

    /// For people and logs: the path, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            StoreLocation::Sqlite(p) => p.display().to_string(),
            StoreLocation::Postgres(u) => redact(u),
        }
    }

    /// Whether other hosts can share it (a database server, not a local file).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }

    /// Whether there is anything to open yet: an SQLite file that was never created
    /// has no tasks; a server always counts as there.
    pub fn exists(&self) -> bool {
        match self {
            StoreLocation::Sqlite(p) => p.exists(),
            StoreLocation::Postgres(_) => true,
        }
    }

    /// Opens (creating and migrating if needed) the store.
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(p) => Arc::new(SqliteStore::open(p)?),
            StoreLocation::Postgres(u) => Arc::new(PgStore::open(u)?),
        })
    }

    /// Opens an existing store for the helpers claude runs per tool call (`borg hook`,
    /// `borg mcp`): an SQLite file without its integrity check or migrations (see
    /// `SqliteStore::open_light`), a PostgreSQL store without its migration check,
    /// on one lazily made connection (see `PgStore::open_light`).
    pub fn open_light(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Sqlite(p) => Arc::new(SqliteStore::open_light(p)?),
            StoreLocation::Postgres(u) => Arc::new(PgStore::open_light(u)?),
        })
    }

    /// The location handed to a child in `BORG_STORE` (the full URL: the child's
    /// `borg handoff request` must reach the same store).
    pub fn for_child(&self) -> String {
        match self {
            StoreLocation::Sqlite(p) => p.display().to_string(),
            StoreLocation::Postgres(u) => u.clone(),
        }
    }
}

/// A setting's store value as read from a flag, variable or file: a URL is kept as
/// written, a path is taken from `base` when relative.
pub fn setting(base: &Path, value: &Path) -> PathBuf {
    if is_url(&value.to_string_lossy()) || base.as_os_str().is_empty() || value.is_absolute() {
        return value.to_path_buf();
    }
    base.join(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        let u = StoreLocation::of(Path::new("postgres://borg:s3cret@db:5432/borg"));
        assert!(u.is_shared());
        assert_eq!(u.shown(), "postgres://borg:***@db:5432/borg");
        assert_eq!(u.for_child(), "postgres://borg:s3cret@db:5432/borg");
        let p = StoreLocation::of(Path::new("/x/borg.db"));
        assert_eq!(p, StoreLocation::Sqlite("/x/borg.db".into()));
        assert_eq!(
            StoreLocation::of(Path::new("sqlite:/y.db")),
            StoreLocation::Sqlite("/y.db".into())
        );
        assert_eq!(
            setting(Path::new("/base"), Path::new("postgresql://h/db")),
            PathBuf::from("postgresql://h/db")
        );
        assert_eq!(
            setting(Path::new("/base"), Path::new("b.db")),
            PathBuf::from("/base/b.db")
        );
    }

    #[test]
    fn passwords_are_redacted_everywhere() {
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("postgresql://u:p%40x@h:1/db?password=zz&sslmode=disable"),
            "postgresql://u:***@h:1/db?password=***&sslmode=disable"
        );
    }
}
