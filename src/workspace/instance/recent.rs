//! The last records of each `session.md` this process has read or written, so that an
//! attempt's prompt does not re-read and re-parse the whole file.
//!
//! The file grows by one record per attempt, so parsing all of it for every attempt is
//! O(n²) over an instance's life (measured: 3% of a 3 000-task run's CPU, growing with
//! the run). A cached tail is valid while the file's length and modification time are
//! what this process last saw; borg's own appends extend it in place; anything else (an
//! edit by hand, another process appending) makes the next read parse the file again.

use super::session::{format_entry, parse_history};
use super::SessionEntry;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Records kept per file: more than any prompt shows.
pub const KEEP: usize = 32;

/// What was last seen of one file.
struct Tail {
    len: u64,
    modified: Option<SystemTime>,
    entries: VecDeque<SessionEntry>,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Tail>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Tail>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// (length, modification time) of the file, None when it does not exist.
fn stamp(path: &Path) -> std::io::Result<Option<(u64, Option<SystemTime>)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.len(), m.modified().ok()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last `n` (at most [`KEEP`]) records of `path`, oldest first.
pub fn last(path: &Path, n: usize) -> std::io::Result<Vec<SessionEntry>> {
    let Some((len, modified)) = stamp(path)? else {
        return Ok(Vec::new());
    };
    let take = |t: &Tail| -> Vec<SessionEntry> {
        let skip = t.entries.len().saturating_sub(n.min(KEEP));
        t.entries.iter().skip(skip).cloned().collect()
    };
    {
        let map = cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(path) {
            if t.len == len && t.modified == modified {
                return Ok(take(t));
            }
        }
    }
    // Read and parse without holding the cache: other instances' attempts go on.
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let all = parse_history(&String::from_utf8_lossy(&bytes));
    let skip = all.len().saturating_sub(KEEP);
    let tail = Tail {
        len: bytes.len() as u64,
        // Stamped with what was read: the file may have changed since the stat.
        modified: if bytes.len() as u64 == len {
            modified
        } else {
            None
        },
        entries: all.into_iter().skip(skip).collect(),
    };
    let out = take(&tail);
    let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
    map.insert(path.to_path_buf(), tail);
    Ok(out)
}

/// Appends `entry` to `path` in one write and extends the cached tail when the file
/// was exactly what the cache knew and grew by exactly this record.
pub fn append(path: &Path, entry: &SessionEntry) -> std::io::Result<()> {
    use std::io::Write;
    let text = format_entry(entry);
    let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
    let before = stamp(path)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    let after = stamp(path)?;
    // The tail to extend: an empty one for a new file (whatever was cached for this
    // path belonged to an older file), else the cached one if it matched the file.
    let cached = map.remove(path);
    let base = match before {
        None => Some(VecDeque::new()),
        Some((len, modified)) => cached
            .filter(|t| t.len == len && t.modified == modified)
            .map(|t| t.entries),
    };
    let grew_by_ours = |len: u64| len == before.map_or(0, |b| b.0) + text.len() as u64;
    if let (Some(mut entries), Some((len, modified))) = (base, after) {
        if grew_by_ours(len) {
            entries.extend(parse_history(&text));
            while entries.len() > KEEP {
                entries.pop_front();
            }
            map.insert(
                path.to_path_buf(),
                Tail {
                    len,
                    modified,
                    entries,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Status;

    fn entry(i: u32) -> SessionEntry {
        SessionEntry {
            time: "2026-11-21T20:00:00Z".into(),
            task_id: format!("t{i}"),
            attempt: 1,
            prompt: format!("do t{i}\n## not a heading\n```\nfenced\n```"),
            status: Status::Succeeded,
            files_changed: vec![],
            summary: format!("did t{i}"),
        }
    }

    fn full(path: &Path, n: usize) -> Vec<SessionEntry> {
        let all = parse_history(&std::fs::read_to_string(path).unwrap());
        let skip = all.len().saturating_sub(n);
        all.into_iter().skip(skip).collect()
    }

    #[test]
    fn the_cached_tail_equals_a_full_parse() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("session.md");
        assert!(last(&path, 10).unwrap().is_empty());
        for i in 0..(KEEP as u32 + 5) {
            append(&path, &entry(i)).unwrap();
            assert_eq!(last(&path, 10).unwrap(), full(&path, 10), "after {i}");
        }
        assert_eq!(last(&path, 10).unwrap().len(), 10);
        assert_eq!(last(&path, 100).unwrap().len(), KEEP);
        assert_eq!(last(&path, 1).unwrap()[0].task_id, format!("t{}", KEEP + 4));
    }

    #[test]
    fn an_edit_by_someone_else_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("session.md");
        append(&path, &entry(1)).unwrap();
        assert_eq!(last(&path, 10).unwrap().len(), 1);
        // Another writer appends a record behind the cache's back.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format_entry(&entry(2)));
        std::fs::write(&path, &text).unwrap();
        assert_eq!(last(&path, 10).unwrap(), full(&path, 10));
        assert_eq!(last(&path, 10).unwrap().len(), 2);
        // Our next append extends the re-read tail.
        append(&path, &entry(3)).unwrap();
        assert_eq!(last(&path, 10).unwrap(), full(&path, 10));
        // A hand edit to a shorter file.
        std::fs::write(&path, format_entry(&entry(9))).unwrap();
        assert_eq!(last(&path, 10).unwrap(), vec![entry(9)]);
    }

    #[test]
    fn a_recreated_file_starts_empty() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("session.md");
        append(&path, &entry(1)).unwrap();
        append(&path, &entry(2)).unwrap();
        assert_eq!(last(&path, 10).unwrap().len(), 2);
        std::fs::remove_file(&path).unwrap();
        assert!(last(&path, 10).unwrap().is_empty());
        append(&path, &entry(3)).unwrap();
        assert_eq!(last(&path, 10).unwrap(), vec![entry(3)]);
    }
}
