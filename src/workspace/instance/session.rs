//! The record format of `session.md`: one markdown section per attempt, readable by
//! people and by the next agent's prompt, and parsed back by `history()`.
//!
//! ~~~text
//! ## 2026-11-21T20:00:00Z · task auth-api · attempt 1 · succeeded
//!
//! **Prompt:**
//!
//! ````text
//! the prompt, verbatim
//! ````
//!
//! **Files changed:**
//!
//! - created `src/auth.rs`
//!
//! **Result:**
//!
//! ````text
//! the summary
//! ````
//! ~~~
//!
//! Verbatim text sits in a fence one backtick longer than the longest backtick run it
//! contains, so prompts holding markdown, code fences or `##` lines round-trip.

use super::SessionEntry;
use crate::outcome::{ChangeKind, FileChange, Status};

/// Separator between the fields of a record heading.
const SEP: &str = " · ";

/// One record as appended to `session.md` (starting with a blank line).
pub fn format_entry(e: &SessionEntry) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\n## {}{SEP}task {}{SEP}attempt {}{SEP}{}\n\n",
        one_line(&e.time),
        one_line(&e.task_id),
        e.attempt,
        e.status.as_str()
    ));
    out.push_str("**Prompt:**\n\n");
    push_fenced(&mut out, &e.prompt);
    out.push_str("\n**Files changed:**\n\n");
    if e.files_changed.is_empty() {
        out.push_str("- none\n");
    }
    for f in &e.files_changed {
        out.push_str(&format!(
            "- {} {}\n",
            kind_name(f.change),
            quote_path(&f.path)
        ));
    }
    out.push_str("\n**Result:**\n\n");
    push_fenced(&mut out, &e.summary);
    out
}

/// Every record that can be recognised in `text`, oldest first. Never panics: a
/// section that was edited beyond recognition is skipped or returned in part.
pub fn parse_history(text: &str) -> Vec<SessionEntry> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut entries = Vec::new();
    let mut current: Option<SessionEntry> = None;
    // What the next fenced block is: the prompt or the summary.
    let mut pending: Option<Part> = None;
    let mut in_files = false;
    let mut i = 0;
    while i < lines.len() {
        let line = strip_eol(lines[i]);
        if let Some((ch, len)) = fence_open(line) {
            // A fenced block: take it whole so nothing inside is read as structure.
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !fence_closes(strip_eol(lines[end]), ch, len) {
                end += 1;
            }
            let body = block_text(&lines[start.min(lines.len())..end]);
            if let (Some(entry), Some(part)) = (current.as_mut(), pending.take()) {
                match part {
                    Part::Prompt => entry.prompt = body,
                    Part::Summary => entry.summary = body,
                }
            }
            in_files = false;
            i = end + 1;
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            if let Some(done) = current.take() {
                entries.push(done);
            }
            current = parse_heading(heading);
            pending = None;
            in_files = false;
        } else if current.is_some() {
            match line.trim() {
                "**Prompt:**" => {
                    pending = Some(Part::Prompt);
                    in_files = false;
                }
                "**Result:**" => {
                    pending = Some(Part::Summary);
                    in_files = false;
                }
                "**Files changed:**" => {
                    pending = None;
                    in_files = true;
                }
                other if in_files => {
                    if let (Some(entry), Some(change)) = (current.as_mut(), parse_change(other)) {
                        entry.files_changed.push(change);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    if let Some(done) = current {
        entries.push(done);
    }
    entries
}

enum Part {
    Prompt,
    Summary,
}

fn parse_heading(h: &str) -> Option<SessionEntry> {
    let parts: Vec<&str> = h.trim().split(SEP).collect();
    let [time, task, attempt, status] = parts.as_slice() else {
        return None;
    };
    Some(SessionEntry {
        time: time.trim().to_string(),
        task_id: task.strip_prefix("task ")?.trim().to_string(),
        attempt: attempt.strip_prefix("attempt ")?.trim().parse().ok()?,
        prompt: String::new(),
        status: Status::parse(status.trim())?,
        files_changed: Vec::new(),
        summary: String::new(),
    })
}

fn parse_change(line: &str) -> Option<FileChange> {
    let rest = line.strip_prefix("- ")?;
    let (kind, path) = rest.split_once(' ')?;
    let change = match kind {
        "created" => ChangeKind::Created,
        "modified" => ChangeKind::Modified,
        "deleted" => ChangeKind::Deleted,
        "renamed" => ChangeKind::Renamed,
        _ => return None,
    };
    let path = path.trim();
    let path = if path.starts_with('"') {
        serde_json::from_str::<String>(path).ok()?
    } else {
        path.strip_prefix('`')
            .and_then(|p| p.strip_suffix('`'))
            .unwrap_or(path)
            .to_string()
    };
    Some(FileChange { path, change })
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Created => "created",
        ChangeKind::Modified => "modified",
        ChangeKind::Deleted => "deleted",
        ChangeKind::Renamed => "renamed",
    }
}

/// A path in backticks, or as a JSON string when backticks or line breaks would
/// break the markdown.
fn quote_path(p: &str) -> String {
    if p.contains(['`', '\n', '\r']) || p.trim() != p || p.starts_with('"') {
        serde_json::to_string(p).unwrap_or_default()
    } else {
        format!("`{p}`")
    }
}

/// Heading fields must stay on one line or the heading would break.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace(SEP, " - ")
}

/// Writes `text` in a backtick fence longer than any backtick run inside it. The text
/// is followed by exactly one newline before the closing fence, so the parser can
/// restore it byte for byte, trailing newline or not.
fn push_fenced(out: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(3) + 1);
    out.push_str(&fence);
    out.push_str("text\n");
    out.push_str(text);
    out.push('\n');
    out.push_str(&fence);
    out.push('\n');
}

/// The text of a fenced block's lines, without the one newline `push_fenced` adds.
fn block_text(lines: &[&str]) -> String {
    let mut s: String = lines.concat();
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

fn strip_eol(line: &str) -> &str {
    line.strip_suffix('\n')
        .map_or(line, |l| l.strip_suffix('\r').unwrap_or(l))
}

/// A fence opening line (CommonMark: up to 3 spaces, then 3+ backticks or tildes).
fn fence_open(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let ch = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = t.chars().take_while(|c| *c == ch).count();
    (len >= 3).then_some((ch, len))
}

fn fence_closes(line: &str, ch: char, len: usize) -> bool {
    let t = line.trim();
    t.chars().all(|c| c == ch) && t.chars().count() >= len
}
