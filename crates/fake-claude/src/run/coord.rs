//! The engine's side of MCP servers and hooks: the init line's tools and
//! `mcp_servers`, an MCP tool call turned into the `user` line shapes the CLI prints
//! (§1.2 of claude-cli-mcp-hooks.md: structured content as its JSON text, plain content
//! blocks as they are, an error as its text with `is_error`), and the PreToolUse /
//! PostToolUse hooks around every tool call.

use super::Engine;
use crate::mcp::CallOutcome;
use crate::out::{jstr, End, R};
use crate::tools::Outcome;
use serde_json::Value;

impl Engine {
    /// Init's `tools`: the built-in ones, then each connected server's.
    pub(super) fn init_tools(&self) -> Vec<String> {
        let mut t = self.cfg.tools.clone();
        t.extend(self.mcp.tool_names());
        t
    }

    /// Init's `mcp_servers`, as raw JSON.
    pub(super) fn mcp_statuses(&self) -> String {
        let list: Vec<Value> = self
            .mcp
            .statuses()
            .into_iter()
            .map(|(n, s)| serde_json::json!({ "name": n, "status": s }))
            .collect();
        Value::Array(list).to_string()
    }

    /// Runs an MCP tool call on its server.
    pub(super) fn call_mcp(&mut self, id: &str, full: &str, args: &str) -> Outcome {
        self.mcp_calls += 1;
        let args: Value = serde_json::from_str(args).unwrap_or(Value::Null);
        match self.mcp.call(full, &args, id, self.mcp_calls + 1) {
            None => {
                let m = format!("No such tool available: {full}");
                Outcome::Err {
                    content: format!("<tool_use_error>Error: {m}</tool_use_error>"),
                    tur: format!("Error: {m}"),
                }
            }
            Some(CallOutcome::Failed(m)) => Outcome::Err {
                content: m.clone(),
                tur: format!("Error: {m}"),
            },
            Some(CallOutcome::Result(r)) => mcp_result(&r),
        }
    }

    /// The PreToolUse hooks' verdict: the denial text, if any.
    pub(super) fn pre_hooks(&mut self, tool: &str, input: &str, id: &str) -> Option<String> {
        if self.cfg.hooks.is_empty() {
            return None;
        }
        let input: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let site = crate::hooks::Site {
            session: &self.cfg.session_id,
            cwd: &self.cfg.cwd,
            mode: &self.cfg.perm_mode,
        };
        let p = crate::hooks::payload("PreToolUse", &site, tool, &input, id, None);
        self.cfg
            .hooks
            .run("PreToolUse", tool, &p, &self.cfg.cwd, &self.cfg.session_id)
            .deny
    }

    /// The PostToolUse hooks; `continue: false` ends the run right after this tool: a
    /// success result with an empty text, `stop_reason` `tool_use` and
    /// `terminal_reason` `hook_stopped` (as the real CLI prints it).
    pub(super) fn post_hooks(&mut self, tool: &str, input: &str, id: &str, response: &Value) -> R {
        if self.cfg.hooks.is_empty() {
            return Ok(());
        }
        let input: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let site = crate::hooks::Site {
            session: &self.cfg.session_id,
            cwd: &self.cfg.cwd,
            mode: &self.cfg.perm_mode,
        };
        let p = crate::hooks::payload("PostToolUse", &site, tool, &input, id, Some(response));
        let v = self
            .cfg
            .hooks
            .run("PostToolUse", tool, &p, &self.cfg.cwd, &self.cfg.session_id);
        match v.stop {
            None => Ok(()),
            Some(_) => {
                self.msg = None;
                self.success_result_as("", "tool_use", "hook_stopped")?;
                Err(End(0))
            }
        }
    }
}

/// The `user` line parts of an MCP result.
fn mcp_result(r: &Value) -> Outcome {
    let text = || -> String {
        r["content"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    if r["isError"] == true {
        let t = text();
        return Outcome::Err {
            content: t.clone(),
            tur: format!("Error: {t}"),
        };
    }
    match r.get("structuredContent").filter(|v| !v.is_null()) {
        Some(sc) => {
            let json = sc.to_string();
            let tur = serde_json::json!({ "content": json, "structuredContent": sc }).to_string();
            Outcome::Ok {
                content: json,
                bash: false,
                tur,
            }
        }
        None => {
            let blocks = r["content"].clone();
            let raw = if blocks.is_array() {
                blocks.to_string()
            } else {
                jstr(&text())
            };
            Outcome::Raw {
                content: raw.clone(),
                tur: raw,
            }
        }
    }
}
