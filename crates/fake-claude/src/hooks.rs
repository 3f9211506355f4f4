//! Hooks from `--settings` (a file or JSON), run like the real CLI runs them in `-p`
//! mode (claude-cli-mcp-hooks.md §2): `/bin/sh -c COMMAND` in its own session, the
//! payload on stdin, cwd the project, our environment plus the CLI's variables, the
//! entry's `timeout` (seconds, default 60). Only `PreToolUse` and `PostToolUse`.
//!
//! A PreToolUse hook denies with exit 2 (the model reads `PreToolUse:<Tool> hook error:
//! [COMMAND]: <stderr>`) or with JSON `hookSpecificOutput.permissionDecision: "deny"`
//! (the model reads exactly `permissionDecisionReason`); anything else (exit 1, a
//! missing command, a timeout) lets the call through: hooks fail open. A PostToolUse
//! hook's JSON `"continue": false` stops the run after the tool (observed: a success
//! result, empty text, `terminal_reason` `hook_stopped`); its `"decision": "block"`
//! reason goes to the model in the real CLI, which prints no line for it, so the fake
//! prints none either. Matchers are `|`-separated tool names, each possibly ending in `.*`
//! (the real CLI takes a regex; these are the forms borg and the captures use).

use serde_json::Value;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One hook command.
#[derive(Debug, Clone)]
struct Hook {
    command: String,
    timeout: Duration,
}

/// The hooks of one event: (matcher, commands).
type Entries = Vec<(String, Vec<Hook>)>;

/// The hooks of a run.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pre: Entries,
    post: Entries,
}

/// What the hooks said about a call.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Denied, with the text the model reads.
    pub deny: Option<String>,
    /// Stop the run after this tool (`continue: false`), with the stop reason.
    pub stop: Option<String>,
}

/// Reads `--settings` (file or JSON); a bad value is an error (the CLI refuses it too).
pub fn load(settings: Option<&str>) -> Result<Hooks, String> {
    let Some(v) = settings else {
        return Ok(Hooks::default());
    };
    let text = if v.trim_start().starts_with('{') {
        v.to_string()
    } else {
        std::fs::read_to_string(v).map_err(|e| format!("Settings file not found: {v} ({e})"))?
    };
    let cfg: Value = serde_json::from_str(&text).map_err(|e| format!("Invalid settings: {e}"))?;
    let entries = |event: &str| -> Entries {
        cfg["hooks"][event]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let hooks = e["hooks"]
                            .as_array()
                            .map(|h| {
                                h.iter()
                                    .filter(|x| x["type"] == "command")
                                    .map(|x| Hook {
                                        command: x["command"].as_str().unwrap_or("").to_string(),
                                        timeout: Duration::from_secs(
                                            x["timeout"].as_u64().unwrap_or(60),
                                        ),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        (e["matcher"].as_str().unwrap_or("").to_string(), hooks)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Hooks {
        pre: entries("PreToolUse"),
        post: entries("PostToolUse"),
    })
}

/// Whether a matcher covers a tool name.
fn matches(matcher: &str, tool: &str) -> bool {
    if matcher.is_empty() || matcher == "*" {
        return true;
    }
    matcher.split('|').any(|alt| match alt.strip_suffix(".*") {
        Some(prefix) => tool.starts_with(prefix),
        None => alt == tool,
    })
}

impl Hooks {
    /// True when no hook is configured.
    pub fn is_empty(&self) -> bool {
        self.pre.is_empty() && self.post.is_empty()
    }

    /// Runs the matching hooks of `event` (`PreToolUse`/`PostToolUse`) with `payload`.
    pub fn run(
        &self,
        event: &str,
        tool: &str,
        payload: &Value,
        cwd: &std::path::Path,
        session: &str,
    ) -> Verdict {
        let list = if event == "PreToolUse" {
            &self.pre
        } else {
            &self.post
        };
        let mut verdict = Verdict::default();
        for (m, hooks) in list.iter().filter(|(m, _)| matches(m, tool)) {
            let _ = m;
            for h in hooks {
                let (code, out, err) = run_one(h, payload, cwd, session);
                let json: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
                if event == "PreToolUse" && verdict.deny.is_none() {
                    if code == Some(2) {
                        verdict.deny = Some(format!(
                            "PreToolUse:{tool} hook error: [{}]: {err}",
                            h.command
                        ));
                    } else if code == Some(0)
                        && json["hookSpecificOutput"]["permissionDecision"] == "deny"
                    {
                        let r = json["hookSpecificOutput"]["permissionDecisionReason"]
                            .as_str()
                            .unwrap_or("");
                        verdict.deny = Some(r.to_string());
                    }
                }
                if code == Some(0) && json["continue"] == false && verdict.stop.is_none() {
                    verdict.stop = Some(json["stopReason"].as_str().unwrap_or("").to_string());
                }
            }
        }
        verdict
    }
}

/// Runs one hook: (exit code, stdout, stderr); `None` on a timeout (it is killed).
fn run_one(
    h: &Hook,
    payload: &Value,
    cwd: &std::path::Path,
    session: &str,
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&h.command)
        .current_dir(cwd)
        .env("CLAUDE_PROJECT_DIR", cwd)
        .env("CLAUDE_CODE_SESSION_ID", session)
        .env("CLAUDE_CODE_CHILD_SESSION", "1")
        .env("CLAUDECODE", "1")
        .env("CLAUDE_CODE_ENTRYPOINT", "sdk-cli")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let Ok(mut child) = cmd.spawn() else {
        return (
            Some(127),
            String::new(),
            format!("/bin/sh: 1: {}: not found", h.command),
        );
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(payload.to_string().as_bytes());
    }
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let reader = |p: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = std::io::Read::read_to_string(&mut p, &mut s);
            }
            s
        })
    };
    let out_t = reader(out);
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = err {
            let _ = std::io::Read::read_to_string(&mut p, &mut s);
        }
        s
    });
    let until = Instant::now() + h.timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                break None;
            }
        }
    };
    (
        code,
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    )
}

/// Where a hook runs: the session, the project folder, the permission mode.
pub struct Site<'a> {
    /// Session id.
    pub session: &'a str,
    /// Project folder (the hook's cwd).
    pub cwd: &'a std::path::Path,
    /// `permission_mode`.
    pub mode: &'a str,
}

/// The payload of a tool hook (the CLI's fields; key order is not kept).
pub fn payload(
    event: &str,
    site: &Site<'_>,
    tool: &str,
    input: &Value,
    id: &str,
    response: Option<&Value>,
) -> Value {
    let (session, cwd, mode) = (site.session, site.cwd, site.mode);
    let mut m = serde_json::Map::new();
    m.insert("session_id".into(), session.into());
    let home = std::env::var("HOME").unwrap_or_default();
    m.insert(
        "transcript_path".into(),
        format!("{home}/.claude/projects/fake/{session}.jsonl").into(),
    );
    m.insert("cwd".into(), cwd.display().to_string().into());
    m.insert("prompt_id".into(), crate::out::uuid().into());
    m.insert("permission_mode".into(), mode.into());
    m.insert("effort".into(), serde_json::json!({ "level": "high" }));
    m.insert("hook_event_name".into(), event.into());
    m.insert("tool_name".into(), tool.into());
    m.insert("tool_input".into(), input.clone());
    m.insert("tool_use_id".into(), id.into());
    if let Some(r) = response {
        m.insert("tool_response".into(), r.clone());
    }
    Value::Object(m)
}
