//! Path scopes: a role's `writable` globs (relative to the repository root; `*`
//! within a folder, `**` across) against the paths a task changed. In git mode those
//! come from git's diff of the task's branch against its start commit, so a change
//! made through the shell is caught as well as one made with an edit tool. The same
//! matching as the coordination hook that blocks such writes before they happen.

use crate::coord::hook::in_scope;
use crate::outcome::FileDiff;

/// The changed paths outside `writable` (both sides of a rename count), sorted; empty
/// when the scope is empty (a role without `writable` may write anywhere).
pub fn outside(writable: &[String], files: &[FileDiff]) -> Vec<String> {
    if writable.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = files
        .iter()
        .flat_map(|f| std::iter::once(&f.file.path).chain(f.from.as_ref()))
        .filter(|p| !in_scope(writable, p))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ChangeKind, FileChange};

    fn diff(path: &str, from: Option<&str>) -> FileDiff {
        FileDiff {
            file: FileChange {
                path: path.into(),
                change: ChangeKind::Modified,
            },
            from: from.map(Into::into),
            insertions: None,
            deletions: None,
        }
    }

    #[test]
    fn globs_and_renames() {
        let w = vec!["tests/**".to_string(), "*.md".to_string()];
        let files = [
            diff("tests/unit/test_a.py", None),
            diff("README.md", None),
            diff("src/calc.py", None),
            diff("tests/moved.py", Some("src/old.py")),
            diff("docs/x.md", None),
        ];
        assert_eq!(
            outside(&w, &files),
            ["docs/x.md", "src/calc.py", "src/old.py"]
        );
        assert!(outside(&[], &files).is_empty());
    }
}
