//! Files changed between two commits, as git sees them: one `git diff --raw --numstat
//! -M -z` between the task's start commit and its final commit gives each file's
//! change (created, modified, deleted, renamed with where from) and its inserted and
//! deleted lines. Nothing walks or hashes the work tree.

use super::{GitError, Repo};
use crate::outcome::{ChangeKind, Diffstat, FileChange, FileDiff};
use std::collections::HashMap;

impl Repo {
    /// The files changed from `from` to `to`, in git's order, and their totals.
    pub fn diff(&self, from: &str, to: &str) -> Result<(Vec<FileDiff>, Diffstat), GitError> {
        if from == to {
            return Ok((Vec::new(), Diffstat::default()));
        }
        let cmd = self.git.at(&self.dir).args([
            "diff",
            "--raw",
            "--numstat",
            "-z",
            "-M",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            from,
            to,
        ]);
        let out = cmd.ok()?;
        parse(&out.stdout).ok_or_else(|| super::GitError::Output {
            args: cmd.shown(),
            what: "cannot read its --raw/--numstat output".into(),
        })
    }

    /// The patch from `from` to `to` as text (for a reviewer's prompt), at most
    /// `max` bytes of it read.
    pub fn patch(&self, from: &str, to: &str, max: usize) -> Result<String, GitError> {
        let cmd = self.git.at(&self.dir).args([
            "diff",
            "-M",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            from,
            to,
        ]);
        let out = cmd.ok()?;
        let end = out.stdout.len().min(max);
        Ok(String::from_utf8_lossy(&out.stdout[..end]).into_owned())
    }
}

/// Parses `--raw --numstat -z` output: every raw entry first, then every numstat
/// entry (binary files count `-`, i.e. no lines).
pub fn parse(bytes: &[u8]) -> Option<(Vec<FileDiff>, Diffstat)> {
    let text = String::from_utf8_lossy(bytes);
    let mut tokens = text.split('\0').peekable();
    let mut files = Vec::new();
    while tokens.peek().is_some_and(|t| t.starts_with(':')) {
        let meta = tokens.next()?;
        let status = meta.split(' ').nth(4)?.chars().next()?;
        let (path, from) = match status {
            'R' | 'C' => {
                let old = tokens.next()?.to_string();
                (tokens.next()?.to_string(), Some(old))
            }
            _ => (tokens.next()?.to_string(), None),
        };
        let change = match status {
            'A' | 'C' => ChangeKind::Created,
            'D' => ChangeKind::Deleted,
            'R' => ChangeKind::Renamed,
            _ => ChangeKind::Modified,
        };
        files.push(FileDiff {
            file: FileChange { path, change },
            from: from.filter(|_| status == 'R'),
            insertions: Some(0),
            deletions: Some(0),
        });
    }
    let lines = numstat(&mut tokens)?;
    let mut total = Diffstat {
        files: files.len() as u64,
        ..Diffstat::default()
    };
    for f in &mut files {
        if let Some(&(ins, del)) = lines.get(f.file.path.as_str()) {
            f.insertions = Some(ins);
            f.deletions = Some(del);
            total.insertions += ins;
            total.deletions += del;
        }
    }
    Some((files, total))
}

/// The numstat entries: path (the new one for a rename) → (inserted, deleted).
fn numstat<'a>(tokens: &mut impl Iterator<Item = &'a str>) -> Option<HashMap<&'a str, (u64, u64)>> {
    let mut out = HashMap::new();
    while let Some(t) = tokens.next() {
        if t.is_empty() {
            continue;
        }
        let mut parts = t.splitn(3, '\t');
        let ins = parts.next()?.parse().unwrap_or(0);
        let del = parts.next()?.parse().unwrap_or(0);
        let path = match parts.next()? {
            "" => {
                tokens.next()?;
                tokens.next()?
            }
            p => p,
        };
        out.insert(path, (ins, del));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_numstat_output_is_read_with_renames_and_binaries() {
        let raw = [
            ":000000 100644 0000000 bdc955b A",
            "b.bin",
            ":100644 100644 0fdf397 9453a7c M",
            "f1",
            ":100644 000000 587be6b 0000000 D",
            "gone",
            ":100644 100644 06e567b 535d2b0 R087",
            "old",
            "new",
            "-\t-\tb.bin",
            "1\t0\tf1",
            "0\t1\tgone",
            "1\t0\t",
            "old",
            "new",
            "",
        ]
        .join("\0");
        let (files, total) = parse(raw.as_bytes()).unwrap();
        type Row = (String, ChangeKind, Option<String>, Option<u64>, Option<u64>);
        let shown: Vec<Row> = files
            .into_iter()
            .map(|f| {
                (
                    f.file.path,
                    f.file.change,
                    f.from,
                    f.insertions,
                    f.deletions,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("b.bin".into(), ChangeKind::Created, None, Some(0), Some(0)),
                ("f1".into(), ChangeKind::Modified, None, Some(1), Some(0)),
                ("gone".into(), ChangeKind::Deleted, None, Some(0), Some(1)),
                (
                    "new".into(),
                    ChangeKind::Renamed,
                    Some("old".into()),
                    Some(1),
                    Some(0)
                ),
            ]
        );
        assert_eq!(
            total,
            Diffstat {
                files: 4,
                insertions: 2,
                deletions: 1
            }
        );
        assert_eq!(parse(b""), Some((vec![], Diffstat::default())));
    }
}
