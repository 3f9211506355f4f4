//! The scenario engine: turns steps into the CLI's event stream. It groups content
//! steps into model messages (one `assistant` line per block, same `message.id`),
//! executes tool calls after their message is complete (as the CLI does once the
//! response ends), keeps the turn/cost/usage books, enforces `--max-turns` and
//! `--max-budget-usd`, and prints the right `result` shape for every way a run ends.

use crate::dsl::{Api, Step, Tool};
use crate::out::{arr, b62, epoch_secs, jstr, timestamp, uuid, End, Obj, Out, R};
use crate::signals;
use crate::tools::{self, Outcome};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// Run settings derived from argv and the environment.
pub struct Config {
    /// Session id printed on every line.
    pub session_id: String,
    /// The process cwd.
    pub cwd: PathBuf,
    /// Model as init shows it (`claude-opus-4-8[1m]`).
    pub model: String,
    /// `permissionMode` (default, acceptEdits, bypassPermissions, dontAsk, plan, auto).
    pub perm_mode: String,
    /// Tools offered to the model (init `tools`).
    pub tools: Vec<String>,
    /// `--allowedTools` rules.
    pub allowed: Vec<String>,
    /// `--max-turns` / `CLAUDE_CODE_MAX_TURNS`.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd`: (limit, text as given).
    pub max_budget: Option<(f64, String)>,
    /// The per-task state dir, when state is kept (not for `instant`).
    pub state_dir: Option<PathBuf>,
    /// `claude_code_version` in init.
    pub version: String,
}

/// Claude Code's default tool list (docs §4.1).
pub const DEFAULT_TOOLS: &[&str] = &[
    "Task",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
];

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

const REJECTED: &str = "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed.";

fn env_ms(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Msg {
    id: String,
    request_id: String,
    has_tools: bool,
    pending: Vec<(String, Tool)>,
    last_text: Option<String>,
}

/// The running scenario.
pub struct Engine {
    out: Out,
    cfg: Config,
    start: Instant,
    turns: u32,
    tool_ran: bool,
    cost: f64,
    in_tok: u64,
    out_tok: u64,
    msg: Option<Msg>,
    last_closed_had_tools: bool,
    last_text: Option<String>,
    read: HashSet<PathBuf>,
    denials: Vec<String>,
    result_done: bool,
    rl_sent: bool,
}

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
    /// An engine writing to `out`.
    pub fn new(out: Out, cfg: Config) -> Self {
        Engine {
            out,
            cfg,
            start: Instant::now(),
            turns: 0,
            tool_ran: false,
            cost: 0.0,
            in_tok: 0,
            out_tok: 0,
            msg: None,
            last_closed_had_tools: false,
            last_text: None,
            read: HashSet::new(),
            denials: Vec::new(),
            result_done: false,
            rl_sent: false,
        }
    }

    fn req_model(&self) -> String {
        self.cfg.model.trim_end_matches("[1m]").to_string()
    }

    /// (USD per input token, per output token, context window, max output tokens).
    fn pricing(&self) -> (f64, f64, u64, u64) {
        let m = &self.cfg.model;
        let ctx = if m.ends_with("[1m]") {
            1_000_000
        } else {
            200_000
        };
        if m.contains("haiku") {
            (1e-6, 5e-6, ctx, 32_000)
        } else if m.contains("sonnet") {
            (3e-6, 15e-6, ctx, 32_000)
        } else if m.contains("opus") {
            (5e-6, 25e-6, ctx, 64_000)
        } else {
            // An unknown id is priced like the default model (observed), max 32000.
            (5e-6, 25e-6, ctx, 32_000)
        }
    }

    fn num_turns(&self) -> u32 {
        self.turns + u32::from(self.tool_ran)
    }

    fn sid(&self) -> String {
        self.cfg.session_id.clone()
    }

    fn emit(&mut self, line: String) -> R {
        self.out.line(&line)
    }

    /// The `system/init` line.
    pub fn init(&mut self) -> R {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let slug: String = self
            .cfg
            .cwd
            .display()
            .to_string()
            .chars()
            .map(|c| if c == '/' || c == '.' { '-' } else { c })
            .collect();
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
            .v("tools", &self.cfg.tools)
            .raw("mcp_servers", "[]")
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

    fn rate_limit_line(&mut self, status: &str, resets_at: i64) -> R {
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

    fn assistant_line(&self, msg_id: &str, request_id: &str, block: String) -> String {
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

    fn text_block(t: &str) -> String {
        Obj::new().s("type", "text").s("text", t).end()
    }

    /// Starts a model message (one API call), unless one is open.
    fn open_turn(&mut self) -> R {
        if self.msg.is_some() {
            return Ok(());
        }
        if let Some(n) = self.cfg.max_turns {
            if self.turns >= n {
                return self.fail_max_turns(n);
            }
        }
        // Simulated API latency; SIGINT while "waiting for the API" exits 0, no result.
        if signals::nap(env_ms("FAKE_CLAUDE_TURN_DELAY_MS", 0)) {
            return Err(End(0));
        }
        let (pi, po, _, _) = self.pricing();
        self.turns += 1;
        self.in_tok += 1000;
        self.out_tok += 100;
        self.cost += 1000.0 * pi + 100.0 * po;
        if !self.rl_sent {
            self.rl_sent = true;
            if std::env::var("FAKE_CLAUDE_NO_RATE_LIMIT_EVENT")
                .map(|v| v != "1")
                .unwrap_or(true)
            {
                // The real API reports the 5-hour window on the first response.
                let now = epoch_secs();
                self.rate_limit_line("allowed", now - now % 3600 + 5 * 3600)?;
            }
        }
        self.msg = Some(Msg {
            id: format!("msg_01{}", b62(22)),
            request_id: format!("req_011C{}", b62(20)),
            has_tools: false,
            pending: Vec::new(),
            last_text: None,
        });
        Ok(())
    }

    /// Ends the open message: budget check, then its tool calls run in order.
    fn close_turn(&mut self) -> R {
        let Some(msg) = self.msg.take() else {
            return Ok(());
        };
        self.last_closed_had_tools = msg.has_tools;
        if let Some((limit, _)) = &self.cfg.max_budget {
            if self.cost > *limit {
                // The response that crossed the limit never gets its tools run.
                return self.fail_budget();
            }
        }
        for (id, tool) in msg.pending {
            if signals::interrupted() {
                // SIGINT while this response's tools run: the rest are rejected.
                return self.abort_tool(&id);
            }
            self.run_tool(&id, &tool)?;
        }
        Ok(())
    }

    fn emit_text(&mut self, t: &str) -> R {
        if self.msg.as_ref().is_some_and(|m| m.has_tools) {
            self.close_turn()?;
        }
        self.open_turn()?;
        let (id, rid) = match &self.msg {
            Some(m) => (m.id.clone(), m.request_id.clone()),
            None => return Ok(()),
        };
        let line = self.assistant_line(&id, &rid, Self::text_block(t));
        self.emit(line)?;
        if let Some(m) = self.msg.as_mut() {
            m.last_text = Some(t.to_string());
        }
        self.last_text = Some(t.to_string());
        Ok(())
    }

    fn tool_input(&self, tool: &Tool) -> (&'static str, String) {
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
        }
    }

    fn emit_tool(&mut self, tool: &Tool, join: bool) -> R {
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
            .s("name", name)
            .raw("input", &input)
            .end();
        let line = self.assistant_line(&m.id, &m.request_id, block);
        self.emit(line)?;
        if let Some(m) = self.msg.as_mut() {
            m.has_tools = true;
            m.pending.push((id, tool.clone()));
        }
        Ok(())
    }

    fn user_line(&self, block: String, tur: Option<&str>) -> String {
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

    fn user_ok(&mut self, id: &str, content: &str, bash: bool, tur: &str) -> R {
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

    fn user_err(&mut self, id: &str, content: &str, tur: &str) -> R {
        let b = Obj::new()
            .s("type", "tool_result")
            .s("content", content)
            .v("is_error", &true)
            .s("tool_use_id", id);
        let line = self.user_line(b.end(), Some(&jstr(tur)));
        self.emit(line)
    }

    fn allowed_by_rule(&self, name: &str, tool: &Tool) -> bool {
        let arg = match tool {
            Tool::Bash(c, _) => c.clone(),
            Tool::Write(f, _) | Tool::Edit(f, _, _, _) | Tool::Read(f) => f.clone(),
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
            || self.allowed_by_rule(name, tool)
        {
            return None;
        }
        match (mode, tool) {
            ("acceptEdits", Tool::Write(..) | Tool::Edit(..)) => None,
            ("dontAsk", _) => {
                Some(format!("Permission to use {name} has been denied because Claude Code is running in don't ask mode."))
            }
            (_, Tool::Bash(..)) => Some("This command requires approval".into()),
            (_, Tool::Write(f, _) | Tool::Edit(f, _, _, _)) => Some(format!(
                "Claude requested permissions to write to {}, but you haven't granted it yet.",
                tools::abs(&self.cfg.cwd, f).display()
            )),
            _ => None,
        }
    }

    fn run_tool(&mut self, id: &str, tool: &Tool) -> R {
        self.tool_ran = true;
        let (name, input) = self.tool_input(tool);
        if !self.cfg.tools.iter().any(|t| t == name) {
            let m = format!("No such tool available: {name}");
            return self.user_err(
                id,
                &format!("<tool_use_error>{m}</tool_use_error>"),
                &format!("Error: {m}"),
            );
        }
        if let Some(m) = self.denial(name, tool) {
            self.denials.push(
                Obj::new()
                    .s("tool_name", name)
                    .s("tool_use_id", id)
                    .raw("tool_input", &input)
                    .end(),
            );
            return self.user_err(id, &m, &format!("Error: {m}"));
        }
        let cwd = self.cfg.cwd.clone();
        let outcome = match tool {
            Tool::Write(f, c) => {
                let p = tools::abs(&cwd, f);
                let o = tools::write(&cwd, &p, c, self.read.contains(&p));
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
            Tool::Bash(c, _) => tools::bash(&cwd, c),
        };
        match outcome {
            Outcome::Ok { content, bash, tur } => self.user_ok(id, &content, bash, &tur),
            Outcome::Err { content, tur } => self.user_err(id, &content, &tur),
            Outcome::Interrupted => self.abort_tool(id),
        }
    }

    fn usage(&self, zero: bool) -> Obj {
        let (i, o) = if zero {
            (0, 0)
        } else {
            (self.in_tok, self.out_tok)
        };
        Obj::new()
            .v("input_tokens", &i)
            .v("cache_creation_input_tokens", &0)
            .v("cache_read_input_tokens", &0)
            .v("output_tokens", &o)
            .o(
                "server_tool_use",
                Obj::new()
                    .v("web_search_requests", &0)
                    .v("web_fetch_requests", &0),
            )
            .s("service_tier", "standard")
            .o(
                "cache_creation",
                Obj::new()
                    .v("ephemeral_1h_input_tokens", &0)
                    .v("ephemeral_5m_input_tokens", &0),
            )
            .s("inference_geo", "")
            .raw("iterations", "[]")
            .s("speed", "standard")
    }

    fn model_usage(&self) -> String {
        if self.turns == 0 {
            return "{}".into();
        }
        let (_, _, ctx, max_out) = self.pricing();
        let m = Obj::new()
            .v("inputTokens", &self.in_tok)
            .v("outputTokens", &self.out_tok)
            .v("cacheReadInputTokens", &0)
            .v("cacheCreationInputTokens", &0)
            .v("webSearchRequests", &0)
            .v("costUSD", &self.cost)
            .v("contextWindow", &ctx)
            .v("maxOutputTokens", &max_out);
        Obj::new().o(&self.cfg.model, m).end()
    }

    fn durations(&self) -> (u64, u64) {
        let d = self.start.elapsed().as_millis() as u64;
        (d, d * 3 / 10)
    }

    /// The normal `success` result (exit 0 at the end of the run).
    fn success_result(&mut self, text: &str) -> R {
        let (dur, api) = self.durations();
        // Time to first token of the first call: a slice of the API time.
        let ttft = api / u64::from(self.turns.max(1));
        let j = Obj::new()
            .s("type", "result")
            .s("subtype", "success")
            .v("is_error", &false)
            .null("api_error_status")
            .v("duration_ms", &dur)
            .v("duration_api_ms", &api)
            .v("ttft_ms", &ttft)
            .v("ttft_stream_ms", &(ttft * 95 / 100))
            .v("time_to_request_ms", &(ttft * 85 / 100))
            .v("num_turns", &self.num_turns())
            .s("result", text)
            .s("stop_reason", "end_turn")
            .s("session_id", &self.sid())
            .v("total_cost_usd", &self.cost)
            .o("usage", self.usage(false))
            .raw("modelUsage", &self.model_usage())
            .raw("permission_denials", &arr(self.denials.clone()))
            .s("terminal_reason", "completed")
            .s("fast_mode_state", "off")
            .s("uuid", &uuid())
            .end();
        self.result_done = true;
        self.out.result(&j, text)
    }

    /// An `error_*` result: no `result` field, `errors[]` last. Ends the run with 1.
    fn error_result(
        &mut self,
        subtype: &str,
        turns: u32,
        terminal: Option<&str>,
        errors: &[String],
        text: &str,
    ) -> R {
        let (dur, api) = self.durations();
        let mut o = Obj::new()
            .s("type", "result")
            .s("subtype", subtype)
            .v("duration_ms", &dur)
            .v("duration_api_ms", &api)
            .v("is_error", &true)
            .v("num_turns", &turns)
            .s("stop_reason", "tool_use")
            .s("session_id", &self.sid())
            .v("total_cost_usd", &self.cost)
            .o("usage", self.usage(false))
            .raw("modelUsage", &self.model_usage())
            .raw("permission_denials", &arr(self.denials.clone()));
        if let Some(t) = terminal {
            o = o.s("terminal_reason", t);
        }
        let j = o
            .s("fast_mode_state", "off")
            .s("uuid", &uuid())
            .v("errors", errors)
            .end();
        self.result_done = true;
        self.out.result(&j, text)?;
        Err(End(1))
    }

    fn fail_max_turns(&mut self, n: u32) -> R {
        let e = vec![format!("Reached maximum number of turns ({n})")];
        let turns = self.num_turns();
        self.error_result(
            "error_max_turns",
            turns,
            Some("max_turns"),
            &e,
            &format!("Error: Reached max turns ({n})"),
        )
    }

    fn fail_budget(&mut self) -> R {
        let shown = match &self.cfg.max_budget {
            Some((_, s)) => s.clone(),
            None => format!("{:.2}", self.cost),
        };
        let e = vec![format!("Reached maximum budget (${shown})")];
        let turns = self.turns;
        self.error_result(
            "error_max_budget_usd",
            turns,
            None,
            &e,
            &format!("Error: Reached maximum budget (${shown})"),
        )
    }

    fn abort_tool(&mut self, id: &str) -> R {
        self.user_err(id, REJECTED, "User rejected tool use")?;
        let b = Obj::new()
            .s("type", "text")
            .s("text", "[Request interrupted by user for tool use]")
            .end();
        let line = self.user_line(b, None);
        self.emit(line)?;
        let e = vec![
            "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"
                .to_string(),
        ];
        let turns = self.num_turns() + 1;
        self.error_result(
            "error_during_execution",
            turns,
            Some("aborted_tools"),
            &e,
            "Error: aborted",
        )
    }

    /// `--resume` of an unknown id (fixture `resume-unknown`): stderr + error result.
    pub fn no_conversation(&mut self) -> R {
        let msg = format!("No conversation found with session ID: {}", self.sid());
        eprintln!("{msg}");
        let j = Obj::new()
            .s("type", "result")
            .s("subtype", "error_during_execution")
            .v("duration_ms", &0)
            .v("duration_api_ms", &0)
            .v("is_error", &true)
            .v("num_turns", &0)
            .null("stop_reason")
            .s("session_id", &self.sid())
            .v("total_cost_usd", &0)
            .o("usage", self.usage(true))
            .raw("modelUsage", "{}")
            .raw("permission_denials", "[]")
            .s("uuid", &uuid())
            .v("errors", &[&msg])
            .end();
        self.result_done = true;
        self.out.result(&j, &msg)?;
        Err(End(1))
    }

    fn synthetic(&mut self, text: &str, error: &str, with_request: bool) -> R {
        let usage = Obj::new()
            .v("input_tokens", &0)
            .v("output_tokens", &0)
            .v("cache_creation_input_tokens", &0)
            .v("cache_read_input_tokens", &0)
            .o(
                "server_tool_use",
                Obj::new()
                    .v("web_search_requests", &0)
                    .v("web_fetch_requests", &0),
            )
            .null("service_tier")
            .o(
                "cache_creation",
                Obj::new()
                    .v("ephemeral_1h_input_tokens", &0)
                    .v("ephemeral_5m_input_tokens", &0),
            )
            .null("inference_geo")
            .null("iterations")
            .null("speed");
        let message = Obj::new()
            .s("id", &uuid())
            .null("container")
            .s("model", "<synthetic>")
            .s("role", "assistant")
            .null("stop_details")
            .s("stop_reason", "stop_sequence")
            .s("stop_sequence", "")
            .s("type", "message")
            .o("usage", usage)
            .raw("content", &arr([Self::text_block(text)]))
            .null("context_management");
        let mut o = Obj::new()
            .s("type", "assistant")
            .o("message", message)
            .null("parent_tool_use_id")
            .s("session_id", &self.sid())
            .s("uuid", &uuid())
            .s("error", error);
        if with_request {
            o = o.s("request_id", &format!("req_011C{}", b62(20)));
        }
        let line = o.end();
        self.emit(line)
    }

    /// The API-failure result: subtype success, is_error true. Ends the run with 1.
    fn api_result(&mut self, status: Option<u16>, text: &str, terminal: &str) -> R {
        let (dur, _) = self.durations();
        let j = Obj::new()
            .s("type", "result")
            .s("subtype", "success")
            .v("is_error", &true)
            .v("api_error_status", &status)
            .v("duration_ms", &dur)
            .v("duration_api_ms", &0)
            .v("num_turns", &(self.num_turns() + 1))
            .s("result", text)
            .s("stop_reason", "stop_sequence")
            .s("session_id", &self.sid())
            .v("total_cost_usd", &self.cost)
            .o("usage", self.usage(self.turns == 0))
            .raw("modelUsage", &self.model_usage())
            .raw("permission_denials", &arr(self.denials.clone()))
            .s("terminal_reason", terminal)
            .s("fast_mode_state", "off")
            .s("uuid", &uuid())
            .end();
        self.result_done = true;
        self.out.result(&j, text)?;
        Err(End(1))
    }

    /// (status, api_retry `error`, synthetic `error`, text, retried, terminal_reason).
    fn api_facts(
        api: Api,
    ) -> (
        Option<u16>,
        &'static str,
        &'static str,
        String,
        bool,
        &'static str,
    ) {
        let gateway = match std::env::var("ANTHROPIC_BASE_URL") {
            Ok(u) if !u.is_empty() => {
                let host = u
                    .split("://")
                    .nth(1)
                    .unwrap_or(&u)
                    .trim_end_matches('/')
                    .to_string();
                format!("check your inference gateway ({host})")
            }
            _ => "check status.claude.com".to_string(),
        };
        match api {
            Api::NoKey => (
                None,
                "authentication_failed",
                "authentication_failed",
                "Not logged in · Please run /login".into(),
                false,
                "completed",
            ),
            Api::Network => (
                None,
                "unknown",
                "server_error",
                "API Error: Unable to connect to API (ConnectionRefused)".into(),
                true,
                "completed",
            ),
            Api::Status(401) => (
                Some(401),
                "authentication_failed",
                "authentication_failed",
                "Invalid API key · Fix external API key".into(),
                true,
                "completed",
            ),
            Api::Status(429) => (
                Some(429),
                "rate_limit",
                "rate_limit",
                "API Error: Request rejected (429) · Rate limited. Please try again later.".into(),
                true,
                "completed",
            ),
            Api::Status(529) => (
                Some(529),
                "server_error",
                "server_error",
                "API Error: Repeated 529 Overloaded errors · check status.claude.com".into(),
                true,
                "completed",
            ),
            Api::Status(400) => (
                Some(400),
                "invalid_request",
                "invalid_request",
                "Prompt is too long".into(),
                false,
                "prompt_too_long",
            ),
            Api::Status(s) if s >= 500 => {
                let reason = match s {
                    500 => "Internal server error",
                    502 => "Bad gateway",
                    503 => "Service unavailable",
                    504 => "Gateway timeout",
                    _ => "Server error",
                };
                let t = format!("API Error: {s} {reason}. This is a server-side issue, usually temporary — try again in a moment. If it persists, {gateway}.");
                (
                    Some(s),
                    "server_error",
                    "server_error",
                    t,
                    true,
                    "completed",
                )
            }
            Api::Status(s) => {
                let retried = matches!(s, 408 | 409);
                (
                    Some(s),
                    "unknown",
                    "unknown",
                    format!("API Error: {s} Request failed"),
                    retried,
                    "completed",
                )
            }
        }
    }

    fn retry_lines(&mut self, status: Option<u16>, error: &str, count: u32, max: u32) -> R {
        let sleep = env_ms("FAKE_CLAUDE_RETRY_DELAY_MS", 10);
        for i in 1..=count {
            let jitter = 1.0 + rand::random::<f64>() * 0.2;
            let shown = (500.0 * 2f64.powi(i as i32 - 1)).min(32_000.0) * jitter;
            let line = Obj::new()
                .s("type", "system")
                .s("subtype", "api_retry")
                .v("attempt", &i)
                .v("max_retries", &max)
                .v("retry_delay_ms", &shown)
                .v("error_status", &status)
                .s("error", error)
                .s("session_id", &self.sid())
                .s("uuid", &uuid())
                .end();
            self.emit(line)?;
            if signals::nap(sleep) {
                return Err(End(0));
            }
        }
        Ok(())
    }

    fn env_max_retries() -> Option<u32> {
        std::env::var("CLAUDE_CODE_MAX_RETRIES")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|v| v.min(15))
    }

    fn api_error(&mut self, api: Api, retries: Option<u32>) -> R {
        self.close_turn()?;
        let (status, retry_err, synth_err, text, retried, terminal) = Self::api_facts(api);
        if retried {
            let (count, max) = match (Self::env_max_retries(), retries) {
                (Some(max), Some(r)) => (r.min(max), max),
                (Some(max), None) => (max, max),
                (None, Some(r)) => (r, r),
                (None, None) => (10, 10),
            };
            self.retry_lines(status, retry_err, count, max)?;
        }
        self.synthetic(&text, synth_err, !matches!(api, Api::NoKey | Api::Network))?;
        self.api_result(status, &text, terminal)
    }

    fn rate_limited(&mut self, secs: i64, ms: bool) -> R {
        self.close_turn()?;
        let reset = epoch_secs() + secs;
        self.rl_sent = true;
        self.rate_limit_line("rejected", if ms { reset * 1000 } else { reset })?;
        let text = format!("Claude AI usage limit reached|{reset}");
        self.synthetic(&text, "rate_limit", true)?;
        self.api_result(Some(429), &text, "completed")
    }

    /// Prints the success result now, if none was printed yet.
    fn ensure_result(&mut self, text: Option<&str>) -> R {
        if self.result_done {
            return Ok(());
        }
        match text {
            Some(t) => {
                let open_text = self
                    .msg
                    .as_ref()
                    .is_some_and(|m| !m.has_tools && m.last_text.as_deref() == Some(t));
                if !open_text {
                    self.emit_text(t)?;
                }
                self.close_turn()?;
                self.success_result(t)
            }
            None => {
                let ended_with_tools = self
                    .msg
                    .as_ref()
                    .map(|m| m.has_tools)
                    .unwrap_or(self.last_closed_had_tools);
                self.close_turn()?;
                if ended_with_tools || self.turns == 0 {
                    // After tool results the model always answers once more.
                    let t = self.last_text.clone().unwrap_or_else(|| "Done.".into());
                    self.emit_text(&t)?;
                    self.close_turn()?;
                }
                let t = self.last_text.clone().unwrap_or_default();
                self.success_result(&t)
            }
        }
    }

    fn task_lines(&mut self) -> R {
        let task = b62(9).to_lowercase();
        let tool = format!("toolu_01{}", b62(22));
        let end_time = chrono::Utc::now().timestamp_millis();
        let a = Obj::new()
            .s("type", "system")
            .s("subtype", "task_updated")
            .s("task_id", &task)
            .o(
                "patch",
                Obj::new().s("status", "killed").v("end_time", &end_time),
            )
            .s("uuid", &uuid())
            .s("session_id", &self.sid())
            .end();
        self.emit(a)?;
        let b = Obj::new()
            .s("type", "system")
            .s("subtype", "task_notification")
            .s("task_id", &task)
            .s("tool_use_id", &tool)
            .s("status", "stopped")
            .s("output_file", "")
            .s("summary", "background task")
            .s("uuid", &uuid())
            .s("session_id", &self.sid())
            .end();
        self.emit(b)
    }

    fn note_pid(&self, what: &str, pid: Option<u32>) {
        if let (Some(dir), Some(pid)) = (&self.cfg.state_dir, pid) {
            crate::state::note(dir, "grandchildren", &format!("{pid} {what}"));
        }
    }

    fn sample_line(&self, text: &str) -> String {
        self.assistant_line(
            "msg_01FakeClaudeFloodLine000",
            "req_011CFakeClaudeFloodLine0",
            Self::text_block(text),
        )
    }

    fn bad_utf8(&mut self) -> R {
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

    /// Runs one step. `Err(End(code))` ends the run.
    pub fn step(&mut self, s: &Step) -> R {
        if signals::interrupted() {
            // SIGINT outside a tool: the CLI was waiting on the API and exits 0.
            return Err(End(0));
        }
        match s {
            Step::Text(t) => self.emit_text(t),
            Step::Tool { tool, join } => self.emit_tool(tool, *join),
            Step::Turn => self.close_turn(),
            Step::Result(t) => self.ensure_result(t.as_deref()),
            Step::ApiError(api, r) => self.api_error(*api, *r),
            Step::ApiRetry(api, n) => {
                self.close_turn()?;
                let (status, err, ..) = Self::api_facts(*api);
                let max = Self::env_max_retries().unwrap_or(10).max(*n);
                self.retry_lines(status, err, *n, max)
            }
            Step::MaxTurns => {
                self.close_turn()?;
                let n = self.cfg.max_turns.unwrap_or(self.turns);
                self.fail_max_turns(n)
            }
            Step::MaxBudget => {
                self.close_turn()?;
                self.fail_budget()
            }
            Step::NoResult(c) => {
                self.close_turn()?;
                Err(End(*c))
            }
            Step::Exit(c, msg) => {
                self.close_turn()?;
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                Err(End(*c))
            }
            Step::Stderr(t) => {
                eprintln!("{t}");
                Ok(())
            }
            Step::CrashMidLine(abort) => {
                self.close_turn()?;
                let line = self.sample_line("this line is cut in the middle by a crash");
                let half = &line.as_bytes()[..line.len() / 2];
                self.out.raw(half)?;
                if *abort {
                    std::process::abort();
                }
                Err(End(1))
            }
            Step::Sleep(ms) => {
                self.close_turn()?;
                if signals::nap(*ms) {
                    return Err(End(0));
                }
                Ok(())
            }
            Step::Slow(n, ms) => {
                self.close_turn()?;
                for i in 1..=*n {
                    if signals::nap(*ms) {
                        return Err(End(0));
                    }
                    self.emit_text(&format!("slow line {i} of {n}"))?;
                }
                self.close_turn()
            }
            Step::Hang => {
                self.close_turn()?;
                signals::forever();
                Err(End(0))
            }
            Step::HangAfterResult => {
                self.ensure_result(None)?;
                signals::forever();
                Err(End(0))
            }
            Step::AfterResultLines(ms) => {
                self.ensure_result(None)?;
                let wait = ms.unwrap_or_else(|| env_ms("FAKE_CLAUDE_AFTER_RESULT_MS", 5000));
                if signals::nap(wait) {
                    return Err(End(0));
                }
                self.task_lines()
            }
            Step::RateLimit(secs, ms) => self.rate_limited(*secs, *ms),
            // Attempt filters are resolved before the run; whatever is left runs as is.
            Step::OnAttempt(_, inner) | Step::First(_, inner) | Step::AfterAttempt(_, inner) => {
                self.step(inner)
            }
            Step::GrandchildSetsid => {
                let pid = crate::torture::grandchild_setsid();
                self.note_pid("setsid", pid);
                Ok(())
            }
            Step::GrandchildHoldsStdout(ms) => {
                let pid = crate::torture::grandchild_holds_stdout(*ms);
                self.note_pid("holds-stdout", pid);
                Ok(())
            }
            Step::IgnoreSignals => {
                signals::ignore();
                Ok(())
            }
            Step::Flood(n, to_stderr) => {
                self.close_turn()?;
                let text = format!("flood {}", "f".repeat(700));
                let line = format!("{}\n", self.sample_line(&text));
                crate::torture::flood(&mut self.out, &line, *n, *to_stderr)
            }
            Step::HugeLine(n) => {
                self.close_turn()?;
                let line = self.sample_line("HUGE_LINE_PADDING");
                let (pre, suf) = line.split_once("HUGE_LINE_PADDING").unwrap_or((&line, ""));
                let (pre, suf) = (pre.to_string(), suf.to_string());
                crate::torture::huge_line(&mut self.out, &pre, &suf, *n)
            }
            Step::BadUtf8 => {
                self.close_turn()?;
                self.bad_utf8()
            }
            Step::NoConversation => self.no_conversation(),
            Step::Instant => {
                self.emit_text("Done.")?;
                self.close_turn()?;
                self.success_result("Done.")
            }
        }
    }

    /// Runs all steps, then the default ending; returns the exit code.
    pub fn run(&mut self, steps: &[Step]) -> i32 {
        if steps.first() == Some(&Step::NoConversation) {
            // The real CLI fails before printing init.
            return match self.no_conversation() {
                Ok(()) => 0,
                Err(End(c)) => c,
            };
        }
        if let Err(End(c)) = self.init() {
            return c;
        }
        for s in steps {
            if let Err(End(c)) = self.step(s) {
                return c;
            }
        }
        if signals::interrupted() {
            return 0;
        }
        match self.ensure_result(None) {
            Ok(()) => 0,
            Err(End(c)) => c,
        }
    }
}

/// Keeps only the steps meant for this attempt, unwrapping (nested) attempt filters.
pub fn for_attempt(steps: Vec<Step>, attempt: u32) -> Vec<Step> {
    fn keep(s: Step, attempt: u32) -> Option<Step> {
        match s {
            Step::OnAttempt(k, inner) => (attempt == k).then(|| keep(*inner, attempt)).flatten(),
            Step::First(n, inner) => (attempt <= n).then(|| keep(*inner, attempt)).flatten(),
            Step::AfterAttempt(n, inner) => (attempt > n).then(|| keep(*inner, attempt)).flatten(),
            other => Some(other),
        }
    }
    steps.into_iter().filter_map(|s| keep(s, attempt)).collect()
}
