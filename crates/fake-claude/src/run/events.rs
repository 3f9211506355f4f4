//! The event lines that are not results: `system/init`, `rate_limit_event`, the
//! `assistant` and `user` lines of model turns and tool results, background-task lines,
//! and the raw lines of the output torture steps. Key order follows the captures.

use super::Engine;
use crate::out::{arr, b62, jstr, timestamp, uuid, Obj, R};

/// The skills init lists (the slash commands start with these).
const SKILLS: &[&str] = &[
    "deep-research",
    "update-config",
    "verify",
    "debug",
    "code-review",
    "simplify",
    "batch",
    "fewer-permission-prompts",
    "loop",
    "claude-api",
    "run",
    "run-skill-generator",
];

/// The built-in slash commands after the skills.
const MORE_COMMANDS: &[&str] = &[
    "clear",
    "compact",
    "config",
    "context",
    "heapdump",
    "init",
    "reload-skills",
    "review",
    "security-review",
    "usage",
    "insights",
    "goal",
    "team-onboarding",
];

impl Engine {
    /// The `system/init` line.
    pub fn init(&mut self) -> R {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let slug = self.cwd_slug();
        let key_source = if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
            "ANTHROPIC_API_KEY"
        } else {
            "none"
        };
        let cmds: Vec<&str> = SKILLS.iter().chain(MORE_COMMANDS.iter()).copied().collect();
        let agents = [
            "claude",
            "Explore",
            "general-purpose",
            "Plan",
            "statusline-setup",
        ];
        let line = Obj::new()
            .s("type", "system")
            .s("subtype", "init")
            .s("cwd", &self.cfg.cwd.display().to_string())
            .s("session_id", &self.sid())
            .v("tools", &self.init_tools())
            .raw("mcp_servers", &self.mcp_statuses())
            .s("model", &self.cfg.model)
            .s("permissionMode", &self.cfg.perm_mode)
            .v("slash_commands", &cmds)
            .s("apiKeySource", key_source)
            .s("claude_code_version", &self.cfg.version)
            .s("output_style", "default")
            .v("agents", &agents)
            .v("skills", SKILLS)
            .raw("plugins", "[]")
            .v("analytics_disabled", &true)
            .v("product_feedback_disabled", &true)
            .s("uuid", &uuid())
            .o(
                "memory_paths",
                Obj::new().s("auto", &format!("{home}/.claude/projects/{slug}/memory/")),
            )
            .s("fast_mode_state", "off")
            .end();
        self.emit(line)
    }

    /// A `rate_limit_event` line with this status and `resetsAt`.
    pub(super) fn rate_limit_line(&mut self, status: &str, resets_at: i64) -> R {
        let info = Obj::new()
            .s("status", status)
            .v("resetsAt", &resets_at)
            .s("rateLimitType", "five_hour")
            .s("overageStatus", "rejected")
            .s("overageDisabledReason", "org_level_disabled")
            .v("isUsingOverage", &false);
        let line = Obj::new()
            .s("type", "rate_limit_event")
            .o("rate_limit_info", info)
            .s("uuid", &uuid())
            .s("session_id", &self.sid())
            .end();
        self.emit(line)
    }

    /// One `assistant` line holding one content block of message `msg_id`.
    pub(super) fn assistant_line(&self, msg_id: &str, request_id: &str, block: String) -> String {
        let usage = Obj::new()
            .v("input_tokens", &1000)
            .v("output_tokens", &1)
            .v("cache_creation_input_tokens", &0)
            .v("cache_read_input_tokens", &0);
        let message = Obj::new()
            .s("id", msg_id)
            .s("type", "message")
            .s("role", "assistant")
            .s("model", &self.req_model())
            .raw("content", &arr([block]))
            .null("stop_reason")
            .null("stop_sequence")
            .o("usage", usage)
            .null("context_management");
        Obj::new()
            .s("type", "assistant")
            .o("message", message)
            .null("parent_tool_use_id")
            .s("session_id", &self.sid())
            .s("uuid", &uuid())
            .s("request_id", request_id)
            .end()
    }

    /// A text content block.
    pub(super) fn text_block(t: &str) -> String {
        Obj::new().s("type", "text").s("text", t).end()
    }

    /// A `user` line with one content block and, for tool results, `tool_use_result`.
    pub(super) fn user_line(&self, block: String, tur: Option<&str>) -> String {
        let message = Obj::new().s("role", "user").raw("content", &arr([block]));
        let o = Obj::new()
            .s("type", "user")
            .o("message", message)
            .null("parent_tool_use_id")
            .s("session_id", &self.sid())
            .s("uuid", &uuid())
            .s("timestamp", &timestamp());
        match tur {
            Some(t) => o.raw("tool_use_result", t).end(),
            None => o.end(),
        }
    }

    /// A successful tool result (`is_error` absent, or `false` for Bash as the CLI does).
    pub(super) fn user_ok(&mut self, id: &str, content: &str, bash: bool, tur: &str) -> R {
        let mut b = Obj::new()
            .s("tool_use_id", id)
            .s("type", "tool_result")
            .s("content", content);
        if bash {
            b = b.v("is_error", &false);
        }
        let line = self.user_line(b.end(), Some(tur));
        self.emit(line)
    }

    /// A successful tool result whose `content` and `tool_use_result` are raw JSON (an
    /// MCP result of content blocks).
    pub(super) fn user_raw(&mut self, id: &str, content: &str, tur: &str) -> R {
        let b = Obj::new()
            .s("tool_use_id", id)
            .s("type", "tool_result")
            .raw("content", content);
        let line = self.user_line(b.end(), Some(tur));
        self.emit(line)
    }

    /// A failed tool result: `is_error:true`, `tool_use_result` a plain string.
    pub(super) fn user_err(&mut self, id: &str, content: &str, tur: &str) -> R {
        let b = Obj::new()
            .s("type", "tool_result")
            .s("content", content)
            .v("is_error", &true)
            .s("tool_use_id", id);
        let line = self.user_line(b.end(), Some(&jstr(tur)));
        self.emit(line)
    }

    /// `system/task_updated` + `system/task_notification` for a made-up killed task
    /// (the `after-result-lines` step).
    pub(super) fn task_lines(&mut self) -> R {
        let task = format!("b{}", b62(8).to_lowercase());
        let tool = format!("toolu_01{}", b62(22));
        self.task_end_lines(
            &task,
            &tool,
            "background task",
            true,
            std::path::Path::new(""),
        )
    }

    /// The lines for a background task that ended: killed (`task_updated` with
    /// `status:"killed"`, then `task_notification` `stopped`, as observed) or completed on
    /// its own (`task_notification` `completed` with its output file; not observed).
    pub(super) fn task_end_lines(
        &mut self,
        task: &str,
        tool: &str,
        summary: &str,
        killed: bool,
        output: &std::path::Path,
    ) -> R {
        if killed {
            let end_time = chrono::Utc::now().timestamp_millis();
            let a = Obj::new()
                .s("type", "system")
                .s("subtype", "task_updated")
                .s("task_id", task)
                .o(
                    "patch",
                    Obj::new().s("status", "killed").v("end_time", &end_time),
                )
                .s("uuid", &uuid())
                .s("session_id", &self.sid())
                .end();
            self.emit(a)?;
        }
        let (status, file) = if killed {
            ("stopped", String::new())
        } else {
            ("completed", output.display().to_string())
        };
        let b = Obj::new()
            .s("type", "system")
            .s("subtype", "task_notification")
            .s("task_id", task)
            .s("tool_use_id", tool)
            .s("status", status)
            .s("output_file", &file)
            .s("summary", summary)
            .s("uuid", &uuid())
            .s("session_id", &self.sid())
            .end();
        self.emit(b)
    }

    /// Records a spawned grandchild's pid in the state dir (`grandchildren`).
    pub(super) fn note_pid(&self, what: &str, pid: Option<u32>) {
        if let (Some(dir), Some(pid)) = (&self.cfg.state_dir, pid) {
            crate::state::note(dir, "grandchildren", &format!("{pid} {what}"));
        }
    }

    /// A valid assistant text line, used as the unit of the output torture steps.
    pub(super) fn sample_line(&self, text: &str) -> String {
        self.assistant_line(
            "msg_01FakeClaudeFloodLine000",
            "req_011CFakeClaudeFloodLine0",
            Self::text_block(text),
        )
    }

    /// The `bad-utf8` step's lines.
    pub(super) fn bad_utf8(&mut self) -> R {
        let before = self.sample_line("valid line before invalid UTF-8");
        self.out.raw(format!("{before}\n").as_bytes())?;
        let good = self.sample_line("BAD");
        let (head, tail) = good.split_once("BAD").unwrap_or((&good, ""));
        let mut l = head.as_bytes().to_vec();
        l.extend_from_slice(b"bytes \xff\xfe and a lone \xc3( here");
        l.extend_from_slice(tail.as_bytes());
        l.push(b'\n');
        self.out.raw(&l)?;
        self.out.raw(b"\x80\x81 not json at all \xf0\x9f\n")?;
        let mut cut = head.as_bytes().to_vec();
        cut.extend_from_slice("ends mid-char \u{20ac}".as_bytes());
        cut.truncate(cut.len() - 1); // split the 3-byte euro sign
        cut.extend_from_slice(tail.as_bytes());
        cut.push(b'\n');
        self.out.raw(&cut)?;
        let after = self.sample_line("valid line after invalid UTF-8");
        self.out.raw(format!("{after}\n").as_bytes())
    }
}
