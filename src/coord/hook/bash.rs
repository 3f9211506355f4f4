//! After a Bash call: did the shell change a file another live attempt holds? A
//! `Write|Edit` matcher never sees the shell, so this is the check for `sed -i`,
//! `cp`, generators and the like.
//!
//! The changed paths come from `git status --porcelain -z` when the worktree is the
//! top of a git work tree, else from the leased paths themselves (a literal lease is
//! one `stat`, a glob a walk of its folder). A path counts when it matches another
//! attempt's live lease and was changed after both that lease was taken and this
//! attempt started (its modification time), or git reports it deleted. Each is
//! recorded once per attempt (`lease_violations[]` in the report) and told to the
//! model; with `on_violation = "fail"` the agent is also stopped, and borg ends the
//! attempt `out_of_scope`.

use super::Answer;
use crate::coord::env::AttemptEnv;
use crate::coord::leases::who;
use crate::store::coord::{leasing, CoordStore, LeaseRow, Violation};
use serde_json::json;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// Most files looked at under one glob lease (a walk must stay fast).
const MAX_WALK: usize = 20_000;

/// The check after a Bash call; an answer only when something new was found.
pub(super) fn after(store: &dyn CoordStore, env: &AttemptEnv) -> Answer {
    let now = chrono::Utc::now().timestamp_millis();
    let Ok(all) = store.leases(now) else {
        return Answer(None);
    };
    let a = &env.actor;
    let others: Vec<LeaseRow> = all
        .into_iter()
        .filter(|l| l.live && !(l.task == a.task && l.fence == a.fence))
        .collect();
    if others.is_empty() {
        return Answer(None);
    }
    let found = violations(&env.config.root, &others, env.config.started_ms);
    if found.is_empty() {
        return Answer(None);
    }
    let new = store.record_violations(a, &found, now).unwrap_or_default();
    if new.is_empty() {
        return Answer(None);
    }
    let list: Vec<String> = new
        .iter()
        .map(|v| {
            format!(
                "{} (held by {} for task {})",
                v.path, v.holder_instance, v.holder_task
            )
        })
        .collect();
    let fail = env.config.on_violation == "fail";
    let reason = format!(
        "lease violation: your shell command changed {}, which another agent holds. Undo that change (restore the file) and leave it to them; message them with mcp__borg__send_message if you need it changed.{}",
        list.join(", "),
        if fail { " borg ends this attempt: [coord] on_violation = \"fail\"." } else { "" }
    );
    let mut out = json!({
        "decision": "block",
        "reason": reason,
        "hookSpecificOutput": { "hookEventName": "PostToolUse", "additionalContext": reason },
    });
    if fail {
        out["continue"] = json!(false);
        out["stopReason"] = json!(reason);
    }
    Answer(Some(out))
}

/// The changes to others' leased files, one per path.
fn violations(root: &Path, others: &[LeaseRow], started_ms: i64) -> Vec<Violation> {
    let changed: Vec<(String, bool)> = match git_changed(root) {
        Some(c) => c,
        None => walk_leased(root, others),
    };
    let mut out: Vec<Violation> = Vec::new();
    for (path, deleted) in changed {
        let Some(l) = others.iter().find(|l| leasing::matches(&l.path, &path)) else {
            continue;
        };
        let after = mtime_ms(&root.join(&path)).is_some_and(|m| m >= l.since_ms.max(started_ms));
        if (deleted || after) && !out.iter().any(|v| v.path == path) {
            out.push(Violation {
                path,
                lease: l.clone(),
                tool: "Bash".into(),
            });
        }
    }
    let _ = who;
    out
}

/// Modification time, epoch ms.
fn mtime_ms(p: &Path) -> Option<i64> {
    let m = std::fs::symlink_metadata(p).ok()?.modified().ok()?;
    let d = m.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// (path, deleted) of every change git sees, when `root` is the top of a work tree.
fn git_changed(root: &Path) -> Option<Vec<(String, bool)>> {
    if !root.join(".git").exists() {
        return None;
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["status", "--porcelain=v1", "-z", "--untracked-files=all"])
        .env("LC_ALL", "C")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut list = Vec::new();
    let mut fields = out.stdout.split(|&b| b == 0).filter(|f| !f.is_empty());
    while let Some(f) = fields.next() {
        if f.len() < 4 {
            continue;
        }
        let (xy, path) = (&f[..2], String::from_utf8_lossy(&f[3..]).into_owned());
        if xy.contains(&b'R') || xy.contains(&b'C') {
            // A rename's source follows as its own field: it is gone from there.
            if let Some(src) = fields.next() {
                list.push((String::from_utf8_lossy(src).into_owned(), true));
            }
        }
        list.push((path, xy.contains(&b'D')));
    }
    Some(list)
}

/// Without git: the files under each lease (a literal path, or a walk of a glob's
/// folder), none deleted (there is no record of what was there).
fn walk_leased(root: &Path, others: &[LeaseRow]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for l in others {
        if !leasing::is_glob(&l.path) {
            out.push((l.path.clone(), false));
            continue;
        }
        let base = leasing::prefix(&l.path);
        let mut seen = 0usize;
        let walker = ignore::WalkBuilder::new(root.join(&base))
            .standard_filters(false)
            .hidden(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        for e in walker.flatten() {
            seen += 1;
            if seen > MAX_WALK {
                break;
            }
            if !e.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            if let Ok(rel) = e.path().strip_prefix(root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                if leasing::matches(&l.path, &rel) {
                    out.push((rel, false));
                }
            }
        }
    }
    out
}
