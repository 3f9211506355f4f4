//! Per-task state kept between invocations, for scenarios that behave differently on a
//! retry ("fail once with 500, then succeed") and for tests that check what borg passed
//! (`argv.N.json`). It never lives in the cwd: borg diffs the cwd for file changes.

use crate::out::{jstr, Obj};
use std::io::Write;
use std::path::PathBuf;

/// Where this invocation's state lives, and which attempt it is.
pub struct State {
    /// `<state dir>/<key>/`.
    pub dir: PathBuf,
    /// 1 for the first invocation with this key, 2 for the next, ...
    pub attempt: u32,
}

/// FNV-1a 64: a hash that stays the same across builds (unlike std's `DefaultHasher`).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The state root: `$FAKE_CLAUDE_STATE_DIR`, else `$BORG_WORKSPACE/.fake-claude`,
/// else `$TMPDIR/fake-claude` (`/tmp/fake-claude`).
pub fn root() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = env("FAKE_CLAUDE_STATE_DIR") {
        PathBuf::from(d)
    } else if let Some(w) = env("BORG_WORKSPACE") {
        PathBuf::from(w).join(".fake-claude")
    } else {
        PathBuf::from(env("TMPDIR").unwrap_or_else(|| "/tmp".into())).join("fake-claude")
    }
}

/// The key: `$BORG_TASK_ID` (sanitised), else `prompt-<fnv64 of the prompt>`.
pub fn key(prompt: &str) -> String {
    match std::env::var("BORG_TASK_ID") {
        Ok(id) if !id.is_empty() => id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        _ => format!("prompt-{:016x}", fnv(prompt)),
    }
}

/// Claims the next attempt number by creating `argv.N.json` exclusively (atomic even
/// when several fakes share a key), and records argv, cwd, session and prompt; with
/// `remember`, also marks the session id as existing (for strict `--resume`).
pub fn claim(
    prompt: &str,
    argv: &[String],
    cwd: &str,
    session_id: &str,
    remember: bool,
) -> Result<State, String> {
    let dir = root().join(key(prompt));
    std::fs::create_dir_all(&dir).map_err(|e| format!("state dir {}: {e}", dir.display()))?;
    for n in 1u32..100_000 {
        let path = dir.join(format!("argv.{n}.json"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                let rec = Obj::new()
                    .v("attempt", &n)
                    .raw(
                        "argv",
                        &serde_json::to_string(argv).unwrap_or_else(|_| "[]".into()),
                    )
                    .s("cwd", cwd)
                    .s("session_id", session_id)
                    .v("pid", &std::process::id())
                    .s("time", &crate::out::timestamp())
                    .end();
                let _ = writeln!(f, "{rec}");
                let _ = std::fs::write(dir.join(format!("prompt.{n}.txt")), prompt);
                let _ = std::fs::write(dir.join("last_session"), session_id);
                if remember {
                    remember_session(session_id);
                }
                return Ok(State { dir, attempt: n });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("state file {}: {e}", path.display())),
        }
    }
    Err(format!(
        "too many attempts recorded in {}",
        jstr(&dir.display().to_string())
    ))
}

/// Appends a line to `<dir>/NAME` (pids of spawned grandchildren, for tests).
pub fn note(dir: &std::path::Path, name: &str, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// `<root>/sessions/<id>`: marks a session id as used, for `FAKE_CLAUDE_STRICT_SESSIONS`.
fn remember_session(id: &str) {
    if uuid::Uuid::parse_str(id).is_ok() {
        let d = root().join("sessions");
        let _ = std::fs::create_dir_all(&d);
        let _ = std::fs::write(d.join(id), "");
    }
}

/// Whether an earlier invocation (any key) used this session id.
pub fn session_known(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && root().join("sessions").join(id).exists()
}
