//! The store's errors: what can go wrong with the claim table, in words a user can
//! act on. Locked, corrupt, newer-schema, network-fs, unreachable and refused are
//! user-facing (exit 2).

/// Errors of the store. Locked/corrupt/newer-schema/network-fs are user-facing (exit 2).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The claim's fence is not the task's current fence: another claim took over.
    #[error("stale claim on task {task}: fence {fence} is no longer current (current {current}); another worker owns it now")]
    StaleClaim {
        /// Task id.
        task: String,
        /// The fence presented.
        fence: i64,
        /// The task's fence now.
        current: i64,
    },
    /// The database stayed locked longer than the busy timeout.
    #[error(
        "the store {path} stayed locked for more than {secs} s (another borg is writing to it?)"
    )]
    Locked {
        /// Database path.
        path: String,
        /// Busy timeout.
        secs: u64,
    },
    /// The file is not a database, or failed its integrity check.
    #[error("the store {path} is corrupted or not a borg database: {message}")]
    Corrupt {
        /// Database path.
        path: String,
        /// Details.
        message: String,
    },
    /// Written by a newer borg.
    #[error("the store {path} has schema version {found}, newer than this borg understands ({supported}); upgrade borg")]
    NewerSchema {
        /// Database path.
        path: String,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// On NFS/SMB/etc., where SQLite locking is unsafe.
    #[error("the store {path} is on a network filesystem ({fs}); SQLite needs a local disk: use --store on a local path")]
    NetworkFs {
        /// Database path.
        path: String,
        /// Filesystem kind.
        fs: String,
    },
    /// A database server that cannot be reached now (down, restarting, a wrong host or
    /// port). At start it is a mistake to fix (exit 2); during a run, a pause.
    #[error("cannot reach the store {store}: {message}")]
    Unreachable {
        /// The store's URL, without its password.
        store: String,
        /// What the connection attempt said.
        message: String,
    },
    /// The server answered but refused us: a wrong password or user, a database that
    /// does not exist, a malformed URL.
    #[error("the store {store} refused the connection: {message}")]
    Refused {
        /// The store's URL, without its password.
        store: String,
        /// What to fix.
        message: String,
    },
    /// No such task / handoff / attempt.
    #[error("{0} not found")]
    NotFound(String),
    /// A request that does not fit the state (e.g. retry of a running task).
    #[error("{0}")]
    Conflict(String),
    /// Anything else from the database.
    #[error("store error: {0}")]
    Other(String),
}
