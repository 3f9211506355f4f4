//! The git side of a resolve task: its worktree is put on its branch at the start so
//! far ("ours") with the conflicting dependency's commit ("theirs") being merged, the
//! conflict markers in the files; and its result is checked: no conflicted path may be
//! left unmerged as the merge wrote it (a binary or modify/delete conflict has no
//! markers: staging it as it is would pick a side), the merge must be concluded, and
//! no conflict marker (`<<<<<<<`, `>>>>>>>` lines that were in neither side) may be
//! left in a file.

use super::worktree::Worktree;
use super::{GitError, Repo};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// A conflicted path and what the merge left in it (None: no file).
pub type Fingerprint = (String, Option<u64>);

/// Files larger than this are not searched for conflict markers.
const MAX_SCAN: u64 = 4 * 1024 * 1024;

impl Worktree {
    /// Starts merging `theirs` into the checked-out commit, without committing; the
    /// conflicts stay in the files. Returns the conflicted paths.
    pub fn start_merge(
        &self,
        repo: &Repo,
        theirs: &str,
        message: &str,
    ) -> Result<Vec<String>, GitError> {
        let cmd = self.cmd(repo).args([
            "merge",
            "-q",
            "--no-ff",
            "--no-commit",
            "--no-verify",
            "-m",
            message,
            theirs,
        ]);
        let out = cmd.run()?;
        if out.code > 1 || (out.code == 1 && !self.merging(repo)) {
            return Err(cmd.failed(&out));
        }
        let files = self.git(repo, &["diff", "--name-only", "--diff-filter=U", "-z"])?;
        Ok(split_z(&files.stdout))
    }

    /// What each of `paths` holds now, to tell later whether it was touched.
    pub fn fingerprints(&self, paths: &[String]) -> Vec<Fingerprint> {
        paths
            .iter()
            .map(|p| (p.clone(), fingerprint(&self.dir.join(p))))
            .collect()
    }

    /// The paths still unmerged in the index whose content is as the merge left it:
    /// nobody resolved them.
    pub fn untouched_unmerged(
        &self,
        repo: &Repo,
        at_start: &[Fingerprint],
    ) -> Result<Vec<String>, GitError> {
        let out = self.git(repo, &["ls-files", "-u", "-z"])?;
        let mut paths: Vec<String> = split_z(&out.stdout)
            .into_iter()
            .filter_map(|e| e.split_once('\t').map(|(_, p)| p.to_string()))
            .collect();
        paths.dedup();
        Ok(paths
            .into_iter()
            .filter(|p| {
                at_start
                    .iter()
                    .any(|(q, f)| q == p && *f == fingerprint(&self.dir.join(p)))
            })
            .collect())
    }
}

/// A hash of a file's bytes, None when there is no file.
fn fingerprint(path: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl Repo {
    /// What is wrong with a resolve task's result `done` of merging `theirs` into
    /// `ours`, looking at the files it changed and at `conflicted` (read from the
    /// worktree, which holds `done`): empty when the resolution is sound.
    pub fn resolution_problems(
        &self,
        wt: &Worktree,
        ours: &str,
        theirs: &str,
        done: &str,
        conflicted: &[String],
    ) -> Result<Vec<String>, GitError> {
        let mut problems = Vec::new();
        if !self.is_ancestor(theirs, done)? {
            problems.push(format!(
                "the merge of {} was not concluded (the result does not contain it)",
                super::short(theirs)
            ));
        }
        let (changed, _) = self.diff(ours, done)?;
        let mut paths: Vec<String> = conflicted.to_vec();
        paths.extend(changed.into_iter().map(|f| f.file.path));
        let mut seen = HashSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        let marked: Vec<String> = paths
            .into_iter()
            .filter(|p| self.has_new_markers(wt, p, ours, theirs))
            .collect();
        if !marked.is_empty() {
            problems.push(format!("conflict markers left in {}", marked.join(", ")));
        }
        Ok(problems)
    }

    /// Whether the file at `path` in the worktree has a marker line that neither
    /// side's version of the file has.
    fn has_new_markers(&self, wt: &Worktree, path: &str, ours: &str, theirs: &str) -> bool {
        let file = wt.dir.join(path);
        let small =
            std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file() && m.len() <= MAX_SCAN);
        let Some(text) = small.then(|| std::fs::read(&file).ok()).flatten() else {
            return false;
        };
        let markers = marker_lines(&text);
        if markers.is_empty() {
            return false;
        }
        let sides = [ours, theirs].map(|rev| self.blob(rev, path).unwrap_or_default());
        let known: HashSet<&[u8]> = sides.iter().flat_map(|s| marker_lines(s)).collect();
        markers.iter().any(|m| !known.contains(m))
    }

    /// The content of `path` at `rev`, None when it has none.
    fn blob(&self, rev: &str, path: &str) -> Option<Vec<u8>> {
        let spec = format!("{rev}:{path}");
        let out = self
            .git
            .at(&self.dir)
            .args(["cat-file", "blob", &spec])
            .run()
            .ok()?;
        (out.code == 0).then_some(out.stdout)
    }
}

/// The lines of `text` that are conflict markers git writes: `<<<<<<<` or `>>>>>>>`,
/// alone or followed by a space.
pub fn marker_lines(text: &[u8]) -> Vec<&[u8]> {
    text.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| {
            (l.starts_with(b"<<<<<<<") || l.starts_with(b">>>>>>>"))
                && (l.len() == 7 || l[7] == b' ')
        })
        .collect()
}

/// Paths of a `-z` list.
fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_git_style_marker_lines_count() {
        let text =
            b"a\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> theirs\r\n<<<<<<<<< not one\n<<<<<<<\n";
        let found: Vec<&[u8]> = marker_lines(text);
        assert_eq!(
            found,
            vec![
                &b"<<<<<<< HEAD"[..],
                &b">>>>>>> theirs"[..],
                &b"<<<<<<<"[..]
            ]
        );
    }
}
