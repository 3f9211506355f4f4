//! Before/after snapshots of an instance's `project-files/`, so that files changed by
//! shell commands (`sed -i`, generators) are reported along with the tool events.
//!
//! A file counts as modified when its size, modification time or inode differ: the
//! inode catches a rewrite by rename (`sed -i`, editors' atomic saves) that keeps size
//! and, within the clock's resolution, mtime. Contents are not hashed, so a snapshot of
//! a large tree costs one `lstat` per file.

use crate::outcome::{ChangeKind, FileChange};
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
    ///
    /// Symlinks are recorded as entries of their own (their own stamp, not the
    /// target's), so retargeting a link shows as a change. Files that vanish during the
    /// walk are skipped: the child may still be deleting them.
    pub fn take(dir: &Path) -> std::io::Result<Snapshot> {
        let mut files = BTreeMap::new();
        match std::fs::symlink_metadata(dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Ok(Snapshot::default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Snapshot::default()),
            Err(e) => return Err(e),
        }
        // (folder on disk, its path relative to `dir` with `/`); iterative so deep
        // trees cannot overflow the stack.
        let mut stack: Vec<(std::path::PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, rel)) = stack.pop() {
            let entries = match std::fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.is_empty() => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let md = match std::fs::symlink_metadata(entry.path()) {
                    Ok(md) => md,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if md.is_dir() {
                    if name != ".git" {
                        stack.push((entry.path(), child));
                    }
                    continue;
                }
                files.insert(child, stamp(&md));
            }
        }
        Ok(Snapshot { files })
    }

    /// Created, modified and deleted files from `self` (before) to `after`, sorted by path.
    pub fn diff(&self, after: &Snapshot) -> Vec<FileChange> {
        // Both maps are sorted, so one merge pass yields a sorted result.
        let mut out = Vec::new();
        let mut a = self.files.iter().peekable();
        let mut b = after.files.iter().peekable();
        loop {
            let change = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((pa, _)), None) => {
                    let c = FileChange {
                        path: (*pa).clone(),
                        change: ChangeKind::Deleted,
                    };
                    a.next();
                    c
                }
                (None, Some((pb, _))) => {
                    let c = FileChange {
                        path: (*pb).clone(),
                        change: ChangeKind::Created,
                    };
                    b.next();
                    c
                }
                (Some((pa, sa)), Some((pb, sb))) => match pa.cmp(pb) {
                    std::cmp::Ordering::Less => {
                        let c = FileChange {
                            path: (*pa).clone(),
                            change: ChangeKind::Deleted,
                        };
                        a.next();
                        c
                    }
                    std::cmp::Ordering::Greater => {
                        let c = FileChange {
                            path: (*pb).clone(),
                            change: ChangeKind::Created,
                        };
                        b.next();
                        c
                    }
                    std::cmp::Ordering::Equal => {
                        let changed = sa != sb;
                        let path = (*pa).clone();
                        a.next();
                        b.next();
                        if !changed {
                            continue;
                        }
                        FileChange {
                            path,
                            change: ChangeKind::Modified,
                        }
                    }
                },
            };
            out.push(change);
        }
        out
    }
}

fn stamp(md: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    FileStamp {
        len: md.len(),
        mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        ino: md.ino(),
    }
}
