//! Before/after snapshots of an instance's `project-files/`, so that files changed by
//! shell commands (`sed -i`, generators) are reported along with the tool events.
//!
//! A file counts as modified when its size, modification time or inode differ: the
//! inode catches a rewrite by rename (`sed -i`, editors' atomic saves) that keeps size
//! and, within the clock's resolution, mtime. Contents are not hashed, so a snapshot of
//! a large tree costs one `lstat` per file. Files the project ignores (`.gitignore`,
//! `.ignore`) and tool caches (`__pycache__`, `node_modules`, ...) are left out: they
//! are side effects of running things, not work the agent did.

use crate::outcome::{ChangeKind, FileChange};
use std::collections::BTreeMap;
use std::path::Path;

/// Folders never reported: version control, and caches that tools create as a side
/// effect of running (a test run must not look like the agent wrote bytecode).
pub const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    "node_modules",
    ".gradle",
];

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
        // The project's own ignore rules (.gitignore, .ignore) say what is build output
        // or cache, git repository or not; a few interpreter and package caches are
        // left out even when the project has no such rule.
        //
        // `.gitignore` files are read as plain ignore files of the project tree: with
        // git semantics the walker would look for a repository (and its .gitignore
        // files) in every directory above the instance, which is not the agent's
        // project, and would stat two files per parent directory on every snapshot.
        let walker = ignore::WalkBuilder::new(dir)
            .hidden(false)
            .follow_links(false)
            .parents(false)
            .git_ignore(false)
            .git_global(false)
            .git_exclude(false)
            .add_custom_ignore_filename(".gitignore")
            .filter_entry(|e| {
                let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                !(is_dir
                    && e.depth() > 0
                    && SKIPPED_DIRS.contains(&e.file_name().to_string_lossy().as_ref()))
            })
            .build();
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                // A file that vanished during the walk, or an unreadable ignore file.
                Err(_) => continue,
            };
            if entry.depth() == 0 || entry.file_type().is_some_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(dir) else {
                continue;
            };
            let md = match std::fs::symlink_metadata(entry.path()) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let rel = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            files.insert(rel, stamp(&md));
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

/// Adds files named by tool events that the diff did not see (e.g. written with the
/// same content), as paths relative to project-files/.
pub fn merge_tool_files(
    files: &mut Vec<FileChange>,
    tool: &[crate::outcome::transcript::ToolFile],
    project: &Path,
) {
    let canon = std::fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf());
    for t in tool {
        let p = Path::new(&t.path);
        let rel = if p.is_absolute() {
            match p.strip_prefix(&canon).or_else(|_| p.strip_prefix(project)) {
                Ok(r) => r.to_path_buf(),
                Err(_) => continue,
            }
        } else {
            p.to_path_buf()
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if !files.iter().any(|f| f.path == rel) {
            files.push(FileChange {
                path: rel,
                change: t.change,
            });
        }
    }
    files.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_ignore_rules_apply_and_nothing_above_it() {
        let d = tempfile::tempdir().unwrap();
        // A .gitignore above the project (say, the repo holding the workspaces folder)
        // is not the project's: it must not hide the agent's files.
        std::fs::write(d.path().join(".gitignore"), "src/\n").unwrap();
        let p = d.path().join("project-files");
        for (path, text) in [
            (".gitignore", "target/\n*.log\n"),
            ("src/a.rs", "fn main() {}\n"),
            ("target/debug/x", "bin"),
            ("b.log", "log"),
            ("sub/.gitignore", "gen.txt\n"),
            ("sub/gen.txt", "generated"),
            ("sub/keep.txt", "kept"),
            (".ignore", "secret.txt\n"),
            ("secret.txt", "x"),
            ("__pycache__/m.pyc", "x"),
            (".git/HEAD", "ref: refs/heads/main\n"),
        ] {
            let f = p.join(path);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        let snap = Snapshot::take(&p).unwrap();
        let seen: Vec<&str> = snap.files.keys().map(String::as_str).collect();
        assert_eq!(
            seen,
            vec![
                ".gitignore",
                ".ignore",
                "src/a.rs",
                "sub/.gitignore",
                "sub/keep.txt"
            ]
        );
    }
}
