//! What borg gives a child so that it coordinates: a per-attempt MCP config (the
//! `borg` server, `"alwaysLoad": true` so it is connected before the first turn) and a
//! per-attempt settings file (the hooks, and an allow rule for borg's tools), both in
//! the instance folder (`coord/`, outside the project so no snapshot or diff sees
//! them); the flags that point claude at them; and the `BORG_COORD` variable with
//! the attempt's coordination settings.
//!
//! `--setting-sources=user` keeps the repository's own `.claude/settings.json` (and
//! `settings.local.json`) out: in `-p` mode claude loads them, and one saying
//! `{"disableAllHooks": true}` silently switches borg's hooks off
//! (claude-cli-mcp-hooks.md §2.6). The user's own settings file is still read; one
//! that disables all hooks is refused here, before the child starts.

use super::env::{CoordConfig, COORD_VAR};
use crate::input::config::CoordSettings;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The MCP server's name: the agent sees its tools as `mcp__borg__<tool>`.
pub const SERVER: &str = "borg";
/// Tools the write hook looks at before they run.
pub const WRITE_TOOLS: &str = "Write|Edit|MultiEdit|NotebookEdit";
/// Seconds claude gives a hook before cancelling it (a cancelled hook lets the write
/// through, so this is generous; the check takes milliseconds).
const HOOK_TIMEOUT_S: u64 = 60;

/// The flags and variables a child gets for coordination.
#[derive(Debug, Clone, Default)]
pub struct ChildCoord {
    /// Extra claude arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The MCP config file written.
    pub mcp_config: PathBuf,
    /// The settings file written.
    pub settings: PathBuf,
}

/// The borg binary children should run (an upgraded file's new path, without the
/// kernel's " (deleted)" mark).
pub fn borg_bin() -> PathBuf {
    std::env::current_exe()
        .map(|p| {
            let s = p.display().to_string();
            PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
        })
        .unwrap_or_else(|_| PathBuf::from("borg"))
}

/// `'path'` for `/bin/sh -c`.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The MCP config: borg's server only (the user's own still load unless
/// `strict_mcp`).
pub fn mcp_config(bin: &Path) -> serde_json::Value {
    json!({ "mcpServers": { SERVER: {
        "type": "stdio",
        "command": bin.display().to_string(),
        "args": ["mcp"],
        "alwaysLoad": true,
    } } })
}

/// The settings: PreToolUse on the write tools and on borg's own tools (a deny stops
/// the call before it reaches the server), PostToolUse on the write tools and Bash,
/// and an allow rule for borg's tools (needed outside bypassPermissions).
pub fn settings(bin: &Path) -> serde_json::Value {
    let cmd = |event: &str| json!([{ "type": "command", "command": format!("{} hook {event}", sh_quote(bin)), "timeout": HOOK_TIMEOUT_S }]);
    json!({
        "hooks": {
            "PreToolUse": [{ "matcher": format!("{WRITE_TOOLS}|mcp__{SERVER}__.*"), "hooks": cmd("pre-tool-use") }],
            "PostToolUse": [{ "matcher": format!("{WRITE_TOOLS}|Bash"), "hooks": cmd("post-tool-use") }],
        },
        "permissions": { "allow": [format!("mcp__{SERVER}")] },
    })
}

/// Writes the attempt's files into `dir` and returns what the child needs. `env` is
/// the child's environment (to find the user's claude settings).
pub fn prepare(
    dir: &Path,
    bin: &Path,
    s: &CoordSettings,
    cfg: &CoordConfig,
    env: &BTreeMap<String, String>,
) -> Result<ChildCoord, String> {
    refuse_disabled_hooks(env)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mcp = dir.join("mcp.json");
    let set = dir.join("settings.json");
    for (path, value) in [(&mcp, mcp_config(bin)), (&set, settings(bin))] {
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut args = vec![format!("--mcp-config={}", mcp.display())];
    if s.strict_mcp {
        args.push("--strict-mcp-config".into());
    }
    args.push(format!("--settings={}", set.display()));
    args.push("--setting-sources=user".into());
    let json = serde_json::to_string(cfg).map_err(|e| e.to_string())?;
    Ok(ChildCoord {
        args,
        env: vec![(COORD_VAR.to_string(), json)],
        mcp_config: mcp,
        settings: set,
    })
}

/// The user settings file the child's claude reads: `$CLAUDE_CONFIG_DIR/settings.json`,
/// else `$HOME/.claude/settings.json`.
fn user_settings(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    match env.get("CLAUDE_CONFIG_DIR") {
        Some(d) if !d.is_empty() => Some(Path::new(d).join("settings.json")),
        _ => env
            .get("HOME")
            .map(|h| Path::new(h).join(".claude/settings.json")),
    }
}

/// A user settings file with `"disableAllHooks": true` would switch borg's hooks off.
fn refuse_disabled_hooks(env: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(path) = user_settings(env) else {
        return Ok(());
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if v.get("disableAllHooks").and_then(|d| d.as_bool()) == Some(true) {
        return Err(format!(
            "{} says \"disableAllHooks\": true, which would switch off borg's lease hooks; remove it, or set [coord] enabled = false",
            path.display()
        ));
    }
    Ok(())
}

/// The attempt's coordination settings for `BORG_COORD`.
#[allow(clippy::too_many_arguments)]
pub fn config(
    s: &CoordSettings,
    root: &Path,
    role: &str,
    writable: &[String],
    roles: Vec<String>,
    claim_lease_ms: u64,
    retries: u32,
    protect: Vec<PathBuf>,
) -> CoordConfig {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    CoordConfig {
        root: abs(root),
        role: role.to_string(),
        auto_lock: s.auto_lock,
        on_violation: s.on_violation.clone(),
        lease_ttl_ms: u64::try_from(s.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        claim_lease_ms,
        max_agent_tasks: s.max_agent_tasks,
        writable: writable.to_vec(),
        roles,
        retries,
        started_ms: chrono::Utc::now().timestamp_millis(),
        protect: protect.iter().map(|p| abs(p)).collect(),
    }
}
