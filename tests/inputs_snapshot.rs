//! Workspace snapshots: created, modified (including rename-over rewrites) and
//! deleted files; `.git` skipped; symlinks not followed.

use borg::outcome::{ChangeKind, FileChange};
use borg::workspace::snapshot::Snapshot;
use std::path::Path;

fn fc(path: &str, change: ChangeKind) -> FileChange {
    FileChange {
        path: path.into(),
        change,
    }
}

#[test]
fn missing_dir_is_empty() {
    assert!(Snapshot::take(Path::new("/nonexistent/borg/snap"))
        .unwrap()
        .files
        .is_empty());
}

#[test]
fn diff_created_modified_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src/deep")).unwrap();
    std::fs::create_dir_all(d.join(".git/objects")).unwrap();
    std::fs::write(d.join("src/a.rs"), "aaaa").unwrap();
    std::fs::write(d.join("src/deep/b.rs"), "bbbb").unwrap();
    std::fs::write(d.join("gone.txt"), "x").unwrap();
    std::fs::write(d.join("same.txt"), "same").unwrap();
    std::fs::write(d.join("sed.txt"), "hello").unwrap();
    std::fs::write(d.join(".git/objects/x"), "1").unwrap();
    std::os::unix::fs::symlink("/etc", d.join("etc-link")).unwrap();
    let before = Snapshot::take(d).unwrap();
    assert!(before.files.contains_key("src/deep/b.rs"));
    assert!(before.files.contains_key("etc-link"));
    assert!(!before.files.keys().any(|k| k.starts_with(".git")));
    assert!(
        !before.files.keys().any(|k| k.starts_with("etc-link/")),
        "symlinks are not followed"
    );

    std::fs::write(d.join("src/a.rs"), "aaaa plus more").unwrap();
    std::fs::remove_file(d.join("gone.txt")).unwrap();
    std::fs::write(d.join("src/deep/new.rs"), "n").unwrap();
    std::fs::write(d.join(".git/objects/y"), "2").unwrap();
    // What `sed -i` does: write a new file and rename it over the old one. Same size;
    // the mtime is set back to the old one so only the inode tells.
    let old_mtime = std::fs::metadata(d.join("sed.txt"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::write(d.join("sed.tmp"), "HELLO").unwrap();
    std::fs::File::options()
        .write(true)
        .open(d.join("sed.tmp"))
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    std::fs::rename(d.join("sed.tmp"), d.join("sed.txt")).unwrap();
    let after = Snapshot::take(d).unwrap();
    assert_eq!(before.files["sed.txt"].len, after.files["sed.txt"].len);
    assert_eq!(
        before.files["sed.txt"].mtime_ns,
        after.files["sed.txt"].mtime_ns
    );

    assert_eq!(
        before.diff(&after),
        vec![
            fc("gone.txt", ChangeKind::Deleted),
            fc("sed.txt", ChangeKind::Modified),
            fc("src/a.rs", ChangeKind::Modified),
            fc("src/deep/new.rs", ChangeKind::Created),
        ]
    );
    assert!(after.diff(&after).is_empty());
    assert_eq!(Snapshot::default().diff(&before).len(), before.files.len());
}

#[test]
fn deep_tree_does_not_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = dir.path().to_path_buf();
    for _ in 0..200 {
        p.push("d");
    }
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("leaf"), "x").unwrap();
    let s = Snapshot::take(dir.path()).unwrap();
    assert_eq!(s.files.len(), 1);
    assert!(s.files.keys().next().unwrap().ends_with("/d/leaf"));
}
