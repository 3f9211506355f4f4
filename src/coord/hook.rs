//! `borg hook pre-tool-use | post-tool-use`: the hooks claude runs around tool calls
//! (claude-cli-mcp-hooks.md §2). They read the hook payload on stdin and answer on
//! stdout in the JSON form the CLI honours in `-p` mode, even under
//! `bypassPermissions`.
//!
//! **PreToolUse** on Write/Edit/MultiEdit/NotebookEdit: the target is resolved inside
//! the worktree (links followed); a write outside the role's `writable` scope, into
//! borg's own files, or to a path another live attempt holds (or queued for first) is
//! denied with a sentence naming the holder; otherwise, with `auto_lock`, the path is
//! leased for this attempt and the write goes ahead. On borg's own MCP tools it denies
//! a call from an attempt whose claim is no longer current. Hooks fail *open* in the
//! CLI (an exit 1, a crash or a timeout lets the write through), so this one fails
//! closed: whenever it cannot decide it answers a deny with the reason.
//!
//! **PostToolUse** records activity (current file, last tool) and renews the claim;
//! after a Bash call it looks for changes to files other attempts hold (`bash`) and
//! tells the model, recording each as a lease violation; with
//! `[coord] on_violation = "fail"` it also stops the agent.

mod bash;

use super::env::AttemptEnv;
use super::files::SERVER;
use super::leases::refusal;
use super::paths::{target, Target};
use crate::store::coord::{Activity, WriteCheck};
use crate::store::location::StoreLocation;
use crate::store::{Store, StoreError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hook's answer: what to print on stdout (nothing = no opinion).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer(pub Option<Value>);

/// A PreToolUse deny, in the JSON form (the model reads exactly `reason`).
pub fn deny(reason: &str) -> Answer {
    Answer(Some(json!({ "hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": "deny",
        "permissionDecisionReason": reason,
    } })))
}

/// What the payload says about the call.
struct Call {
    tool: String,
    input: Value,
    cwd: PathBuf,
}

fn parse(payload: &str) -> Result<Call, String> {
    let v: Value = serde_json::from_str(payload)
        .map_err(|e| format!("borg could not read the hook payload ({e})"))?;
    let tool = v["tool_name"]
        .as_str()
        .ok_or("the hook payload has no tool_name")?
        .to_string();
    Ok(Call {
        tool,
        input: v["tool_input"].clone(),
        cwd: v["cwd"].as_str().map(PathBuf::from).unwrap_or_default(),
    })
}

/// Runs one hook event on a payload, for the attempt in the environment.
pub fn run(event: &str, payload: &str, env: Result<AttemptEnv, String>) -> Answer {
    match event {
        "pre-tool-use" | "PreToolUse" => pre(payload, env),
        "post-tool-use" | "PostToolUse" => post(payload, env),
        _ => Answer(None),
    }
}

/// Now, epoch ms.
fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn pre(payload: &str, env: Result<AttemptEnv, String>) -> Answer {
    let call = match parse(payload) {
        Ok(c) => c,
        Err(e) => {
            return deny(&format!(
                "{e}; the write is refused until borg can check it"
            ))
        }
    };
    let env = match env {
        Ok(e) => e,
        Err(e) => return deny(&format!("borg cannot check this call: {e}")),
    };
    let store = match StoreLocation::of(&env.store).open_light() {
        Ok(s) => s,
        Err(e) => {
            return deny(&format!(
                "borg cannot reach its store to check this call: {e}"
            ))
        }
    };
    if call.tool.starts_with(&format!("mcp__{SERVER}__")) {
        return claim_current(store.as_ref(), &env);
    }
    let Some(file) = call.input["file_path"]
        .as_str()
        .or(call.input["notebook_path"].as_str())
    else {
        return deny(&format!(
            "borg could not find the file this {} writes (no file_path in its input)",
            call.tool
        ));
    };
    write_check(store.as_ref(), &env, &call, file)
}

/// A call of borg's own tools goes ahead only while this attempt's claim is current.
fn claim_current(store: &dyn Store, env: &AttemptEnv) -> Answer {
    let a = &env.actor;
    match store.task(&a.task) {
        Ok(Some(t)) if t.fence == a.fence && t.status == crate::outcome::Status::Running => {
            Answer(None)
        }
        Ok(_) => deny(&stale_text(a)),
        Err(e) => deny(&format!("borg cannot reach its store: {e}")),
    }
}

fn stale_text(a: &crate::store::coord::Actor) -> String {
    format!(
        "this attempt's claim on task {} is no longer current (another worker took it over, or borg stopped it); stop working and end your turn",
        a.task
    )
}

/// The write check proper: borg's files, the role's scope, then the leases.
fn write_check(store: &dyn Store, env: &AttemptEnv, call: &Call, file: &str) -> Answer {
    let cfg = &env.config;
    let cwd = if call.cwd.as_os_str().is_empty() {
        cfg.root.clone()
    } else {
        call.cwd.clone()
    };
    let t = target(&cfg.root, &cwd, file);
    let abs = match &t {
        Target::Inside(rel) => cfg.root.join(rel),
        Target::Outside(p) => p.clone(),
    };
    if protected(&cfg.protect, &abs) {
        return deny(&format!(
            "{file} belongs to borg (its coordination files or store); agents may not write it"
        ));
    }
    let rel = match t {
        Target::Outside(_) if cfg.writable.is_empty() => return Answer(None),
        Target::Outside(p) => {
            return deny(&format!(
                "{} is outside the repository; the {} role may only write {}",
                p.display(),
                cfg.role,
                cfg.writable.join(", ")
            ))
        }
        Target::Inside(rel) => rel,
    };
    if !in_scope(&cfg.writable, &rel) {
        return deny(&format!(
            "{rel} is outside the {} role's scope: it may only write {} (role front matter `writable`)",
            cfg.role,
            cfg.writable.join(", ")
        ));
    }
    let ttl = Duration::from_millis(cfg.lease_ttl_ms.max(1000));
    let auto = cfg
        .auto_lock
        .then_some(("written by the agent (auto-lock)", ttl));
    match store.check_write(&env.actor, &rel, auto, now()) {
        Ok(WriteCheck::Allowed { .. }) => Answer(None),
        Ok(WriteCheck::Denied(b)) => deny(&refusal(&b)),
        Err(StoreError::StaleClaim { .. }) => deny(&stale_text(&env.actor)),
        Err(e) => deny(&format!("borg cannot check the leases on {rel}: {e}")),
    }
}

/// Inside one of borg's own files or folders.
fn protected(protect: &[PathBuf], abs: &Path) -> bool {
    protect.iter().any(|p| abs.starts_with(p))
}

/// In the role's write scope (an empty scope is everywhere).
pub fn in_scope(writable: &[String], rel: &str) -> bool {
    writable.is_empty()
        || writable
            .iter()
            .any(|g| crate::store::coord::leasing::matches(g, rel) || g == "**")
}

fn post(payload: &str, env: Result<AttemptEnv, String>) -> Answer {
    let (Ok(call), Ok(env)) = (parse(payload), env) else {
        return Answer(None);
    };
    let Ok(store) = StoreLocation::of(&env.store).open_light() else {
        return Answer(None);
    };
    let cfg = &env.config;
    let file = call.input["file_path"]
        .as_str()
        .or(call.input["notebook_path"].as_str())
        .map(|f| match target(&cfg.root, &cfg.root, f) {
            Target::Inside(rel) => rel,
            Target::Outside(p) => p.display().to_string(),
        });
    let activity = Activity {
        current_file: file,
        last_tool: Some(call.tool.clone()),
        ..Activity::default()
    };
    let lease = Duration::from_millis(cfg.claim_lease_ms.max(1000));
    // A stale claim or a busy store only costs this sign of life.
    let _ = store.record_activity(&env.actor, &activity, lease, now());
    if call.tool != "Bash" {
        return Answer(None);
    }
    bash::after(store.as_ref(), &env)
}
