//! Tool calls: the `tool_use` block a tool step prints, the permission check
//! (`--permission-mode`, `--allowedTools` rules, `--tools`) and the run of the tool
//! itself with its `user` result line once the model message is complete.

use super::Engine;
use crate::dsl::Tool;
use crate::out::{b62, Obj, R};
use crate::tools::{self, Outcome};

/// Simple `*` glob for permission rules like `Bash(git *)`.
fn glob(pat: &str, s: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == s;
    }
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(k) => rest = &rest[k + p.len()..],
                None => return false,
            }
        }
    }
    true
}

impl Engine {
    /// (tool name, `input` JSON) for a tool call, in the CLI's key order.
    pub(super) fn tool_input(&self, tool: &Tool) -> (String, String) {
        let (name, input) = self.builtin_input(tool);
        match tool {
            Tool::Mcp(full, args) => (full.clone(), args.clone()),
            _ => (name.to_string(), input),
        }
    }

    /// (tool name, `input` JSON) of a built-in tool.
    fn builtin_input(&self, tool: &Tool) -> (&'static str, String) {
        let p = |s: &str| tools::abs(&self.cfg.cwd, s).display().to_string();
        match tool {
            Tool::Write(f, c) => (
                "Write",
                Obj::new().s("file_path", &p(f)).s("content", c).end(),
            ),
            Tool::Read(f) => ("Read", Obj::new().s("file_path", &p(f)).end()),
            Tool::Edit(f, o, n, all) => (
                "Edit",
                Obj::new()
                    .v("replace_all", all)
                    .s("file_path", &p(f))
                    .s("old_string", o)
                    .s("new_string", n)
                    .end(),
            ),
            Tool::Bash(c, d) => ("Bash", Obj::new().s("command", c).s("description", d).end()),
            Tool::BashBg(c, d) => (
                "Bash",
                Obj::new()
                    .s("command", c)
                    .s("description", d)
                    .v("run_in_background", &true)
                    .end(),
            ),
            Tool::Mcp(_, args) => ("", args.clone()),
            Tool::Structured(json) => (crate::dsl::STRUCTURED, json.clone()),
        }
    }

    /// A tool step: its `tool_use` line now, the tool itself when the message closes.
    pub(super) fn emit_tool(&mut self, tool: &Tool, join: bool) -> R {
        if !join && self.msg.as_ref().is_some_and(|m| m.has_tools) {
            self.close_turn()?;
        }
        self.open_turn()?;
        let (name, input) = self.tool_input(tool);
        let Some(m) = self.msg.as_ref() else {
            return Ok(());
        };
        let id = format!("toolu_01{}", b62(22));
        let block = Obj::new()
            .s("type", "tool_use")
            .s("id", &id)
            .s("name", &name)
            .raw("input", &input)
            .end();
        let mut line = self.assistant_line(&m.id, &m.request_id, block);
        if let Tool::Mcp(full, _) = tool {
            line = with_tool_use_meta(line, &id, full);
        }
        self.emit(line)?;
        if let Some(m) = self.msg.as_mut() {
            m.has_tools = true;
            m.pending.push((id, tool.clone()));
        }
        Ok(())
    }

    /// Whether an `--allowedTools` rule allows this call (an MCP tool: its own name,
    /// its server's `mcp__server`, or a `*` pattern).
    fn allowed_by_rule(&self, name: &str, tool: &Tool) -> bool {
        let arg = match tool {
            Tool::Bash(c, _) | Tool::BashBg(c, _) => c.clone(),
            Tool::Write(f, _) | Tool::Edit(f, _, _, _) | Tool::Read(f) => f.clone(),
            Tool::Structured(json) => json.clone(),
            Tool::Mcp(..) => {
                return self
                    .cfg
                    .allowed
                    .iter()
                    .any(|r| r == name || name.starts_with(&format!("{r}__")) || glob(r, name))
            }
        };
        self.cfg.allowed.iter().any(|r| {
            if r == name {
                return true;
            }
            let Some(inner) = r
                .strip_prefix(name)
                .and_then(|s| s.strip_prefix('('))
                .and_then(|s| s.strip_suffix(')'))
            else {
                return false;
            };
            // Legacy `Bash(npm:*)` means a prefix.
            let pat = inner
                .strip_suffix(":*")
                .map(|p| format!("{p}*"))
                .unwrap_or_else(|| inner.to_string());
            glob(&pat, &arg) || glob(&pat, &tools::abs(&self.cfg.cwd, &arg).display().to_string())
        })
    }

    /// The denial text for this call in the current permission mode, if denied.
    fn denial(&self, name: &str, tool: &Tool) -> Option<String> {
        let mode = self.cfg.perm_mode.as_str();
        if matches!(mode, "bypassPermissions" | "auto")
            || name == "Read"
            || matches!(tool, Tool::Structured(_))
            || self.allowed_by_rule(name, tool)
        {
            return None;
        }
        match (mode, tool) {
            ("acceptEdits", Tool::Write(..) | Tool::Edit(..)) => None,
            ("dontAsk", _) => {
                Some(format!("Permission to use {name} has been denied because Claude Code is running in don't ask mode."))
            }
            (_, Tool::Bash(..) | Tool::BashBg(..)) => Some("This command requires approval".into()),
            (_, Tool::Write(f, _) | Tool::Edit(f, _, _, _)) => Some(format!(
                "Claude requested permissions to write to {}, but you haven't granted it yet.",
                tools::abs(&self.cfg.cwd, f).display()
            )),
            (_, Tool::Mcp(..)) => Some(format!(
                "Claude requested permissions to use {name}, but you haven't granted it yet."
            )),
            _ => None,
        }
    }

    /// Runs one tool call (its PreToolUse hooks and permissions first), prints its
    /// `user` line, then runs its PostToolUse hooks.
    pub(super) fn run_tool(&mut self, id: &str, tool: &Tool) -> R {
        self.tool_ran = true;
        let (name, input) = self.tool_input(tool);
        let known = match tool {
            Tool::Mcp(full, _) => self.mcp.tool_names().contains(full),
            _ => self.cfg.tools.contains(&name),
        };
        if !known {
            let m = format!("No such tool available: {name}");
            return self.user_err(
                id,
                &format!("<tool_use_error>{m}</tool_use_error>"),
                &format!("Error: {m}"),
            );
        }
        let denied = self
            .pre_hooks(&name, &input, id)
            .or_else(|| self.denial(&name, tool));
        if let Some(m) = denied {
            self.denials.push(
                Obj::new()
                    .s("tool_name", &name)
                    .s("tool_use_id", id)
                    .raw("tool_input", &input)
                    .end(),
            );
            return self.user_err(id, &m, &format!("Error: {m}"));
        }
        let outcome = self.execute(id, tool)?;
        let response = match &outcome {
            Outcome::Ok { tur, .. } | Outcome::Raw { tur, .. } => {
                serde_json::from_str(tur).unwrap_or(serde_json::Value::Null)
            }
            Outcome::Err { .. } | Outcome::Interrupted => serde_json::Value::Null,
        };
        // PostToolUse runs after a tool that succeeded (a failed one has its own event).
        match outcome {
            Outcome::Ok { content, bash, tur } => self.user_ok(id, &content, bash, &tur)?,
            Outcome::Raw { content, tur } => self.user_raw(id, &content, &tur)?,
            Outcome::Err { content, tur } => return self.user_err(id, &content, &tur),
            Outcome::Interrupted => return self.abort_tool(id),
        }
        self.post_hooks(&name, &input, id, &response)
    }

    /// Executes the tool itself.
    fn execute(&mut self, id: &str, tool: &Tool) -> Result<Outcome, crate::out::End> {
        let cwd = self.cfg.cwd.clone();
        Ok(match tool {
            Tool::Write(f, c) => {
                let p = tools::abs(&cwd, f);
                let o = tools::write(&p, c, self.read.contains(&p));
                if matches!(o, Outcome::Ok { .. }) {
                    self.read.insert(p);
                }
                o
            }
            Tool::Read(f) => {
                let p = tools::abs(&cwd, f);
                let o = tools::read(&cwd, &p);
                if matches!(o, Outcome::Ok { .. }) {
                    self.read.insert(p);
                }
                o
            }
            Tool::Edit(f, old, new, all) => {
                let p = tools::abs(&cwd, f);
                tools::edit(&cwd, &p, old, new, *all, self.read.contains(&p))
            }
            Tool::Bash(c, _) => tools::bash(&mut self.shell_cwd, c),
            Tool::BashBg(c, d) => self.start_background(id, c, d)?,
            Tool::Mcp(full, args) => self.call_mcp(id, full, args),
            Tool::Structured(json) => {
                self.structured = Some(json.clone());
                let text = "Structured output provided successfully";
                Outcome::Ok {
                    content: text.into(),
                    bash: false,
                    tur: format!("\"{text}\""),
                }
            }
        })
    }
}

/// The assistant line of an MCP call carries `tool_use_meta` (display names).
fn with_tool_use_meta(mut line: String, id: &str, full: &str) -> String {
    let mut parts = full.trim_start_matches("mcp__").splitn(2, "__");
    let server = parts.next().unwrap_or("");
    let tool = parts.next().unwrap_or("");
    let meta = Obj::new()
        .s("id", id)
        .s("display_name", &crate::mcp::display_name(tool))
        .s("server_display_name", server)
        .end();
    line.pop();
    line.push_str(&format!(",\"tool_use_meta\":[{meta}]}}"));
    line
}
