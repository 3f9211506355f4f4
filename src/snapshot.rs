//! Before/after snapshots of an instance's `project-files/`, so that files changed by
//! shell commands (`sed -i`, generators) are reported along with the tool events.
//!
//! OWNER: helper D (inputs). Types fixed by the skeleton; fill the bodies.

use crate::outcome::FileChange;
use std::collections::BTreeMap;
use std::path::Path;

/// What is known of one file at snapshot time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number (a rename-over changes it).
    pub ino: u64,
}

/// The files of a tree (relative paths with `/`), `.git/` excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Path → stamp.
    pub files: BTreeMap<String, FileStamp>,
}

impl Snapshot {
    /// Walks `dir` (not following symlinks). A missing dir gives an empty snapshot.
    pub fn take(dir: &Path) -> std::io::Result<Snapshot> {
        let _ = dir;
        Ok(Snapshot::default())
    }

    /// Created, modified and deleted files from `self` (before) to `after`, sorted by path.
    pub fn diff(&self, after: &Snapshot) -> Vec<FileChange> {
        let _ = after;
        Vec::new()
    }
}
