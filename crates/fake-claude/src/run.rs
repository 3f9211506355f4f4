//! The scenario engine: turns steps into the CLI's event stream. It groups content
//! steps into model messages (one `assistant` line per block, same `message.id`),
//! executes tool calls after their message is complete (as the CLI does once the
//! response ends), keeps the turn/cost/usage books, enforces `--max-turns` and
//! `--max-budget-usd`, and dispatches every step. The line builders live in the child
//! modules `events` (init, assistant/user lines, torture output) and `endings` (every
//! `result` shape, API retries and failures, with each failure's texts in
//! `api_failure`); tool calls and permissions in `calls`, background Bash in
//! `background`, the per-step dispatch in `dispatch`.

use crate::dsl::{Step, Tool};
use crate::out::{b62, epoch_secs, End, Obj, Out, R};
use crate::signals;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

mod api_failure;
mod background;
mod calls;
mod coord;
mod dispatch;
mod endings;
mod events;

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
    /// Hooks from `--settings`.
    pub hooks: crate::hooks::Hooks,
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

/// A millisecond setting from the environment, or `default`.
fn env_ms(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The model message being printed (one API response).
struct Msg {
    /// `message.id`, shared by all its blocks.
    id: String,
    /// `request_id` of the response.
    request_id: String,
    /// It has a tool call already (a new text or tool starts the next message).
    has_tools: bool,
    /// Tool calls to run once the message is complete: (tool_use id, tool).
    pending: Vec<(String, Tool)>,
    /// Its last text block, if any.
    last_text: Option<String>,
}

/// The running scenario.
pub struct Engine {
    /// stdout.
    out: Out,
    /// Settings.
    cfg: Config,
    /// Process start, for `duration_ms`.
    start: Instant,
    /// Model messages (API calls) so far.
    turns: u32,
    /// Whether any tool ran (adds 1 to `num_turns`, as observed).
    tool_ran: bool,
    /// (turns, input tokens, output tokens) before the current user message: `usage`
    /// and `num_turns` are per message, cost and `modelUsage` cumulative (observed).
    base: (u32, u64, u64),
    /// Cumulative cost in USD.
    cost: f64,
    /// Cumulative input tokens.
    in_tok: u64,
    /// Cumulative output tokens.
    out_tok: u64,
    /// The open message, if any.
    msg: Option<Msg>,
    /// Whether the last closed message had tool calls (then the model answers again).
    last_closed_had_tools: bool,
    /// The last text block printed (the default result text).
    last_text: Option<String>,
    /// Files Read or written in this run (Edit/overwrite need it, like the CLI).
    read: HashSet<PathBuf>,
    /// Where the next Bash call starts (a `cd` carries over, as in the CLI).
    shell_cwd: PathBuf,
    /// Background Bash tasks still owned by this run.
    bg: Vec<background::Bg>,
    /// `permission_denials` entries, as JSON.
    denials: Vec<String>,
    /// A result line was printed.
    result_done: bool,
    /// The output the StructuredOutput tool took (`--json-schema`).
    structured: Option<String>,
    /// The `allowed` rate_limit_event was printed (or a rejected one).
    rl_sent: bool,
    /// The MCP servers of `--mcp-config`.
    mcp: crate::mcp::Servers,
    /// MCP calls so far (their progress tokens).
    mcp_calls: u64,
}

impl Engine {
    /// An engine writing to `out`.
    pub fn new(out: Out, cfg: Config) -> Self {
        let shell_cwd = cfg.cwd.clone();
        Engine {
            out,
            cfg,
            start: Instant::now(),
            turns: 0,
            tool_ran: false,
            base: (0, 0, 0),
            cost: 0.0,
            in_tok: 0,
            out_tok: 0,
            msg: None,
            last_closed_had_tools: false,
            last_text: None,
            read: HashSet::new(),
            shell_cwd,
            bg: Vec::new(),
            denials: Vec::new(),
            result_done: false,
            structured: None,
            rl_sent: false,
            mcp: crate::mcp::Servers::default(),
            mcp_calls: 0,
        }
    }

    /// Gives the engine its started MCP servers (before `init`).
    pub fn attach_mcp(&mut self, servers: crate::mcp::Servers) {
        self.mcp = servers;
    }

    /// The model id sent to the API (init's name without `[1m]`).
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

    /// `num_turns` as the CLI counts it.
    fn num_turns(&self) -> u32 {
        self.msg_turns() + u32::from(self.tool_ran)
    }

    /// Model calls for the current user message (all of them, unless the input is
    /// `--input-format stream-json` with several messages).
    fn msg_turns(&self) -> u32 {
        self.turns - self.base.0
    }

    /// The session id.
    fn sid(&self) -> String {
        self.cfg.session_id.clone()
    }

    /// Prints one event line.
    fn emit(&mut self, line: String) -> R {
        self.out.line(&line)
    }

    /// Starts a model message (one API call), unless one is open.
    fn open_turn(&mut self) -> R {
        if self.msg.is_some() {
            return Ok(());
        }
        if let Some(n) = self.cfg.max_turns {
            if self.msg_turns() >= n {
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

    /// A `text` step: joins the open message unless it has a tool call.
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
                if ended_with_tools || self.msg_turns() == 0 {
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
                return self.end(c);
            }
        }
        if signals::interrupted() {
            return self.end(0);
        }
        match self.ensure_result(None) {
            Ok(()) => self.end(0),
            Err(End(c)) => self.end(c),
        }
    }

    /// `--input-format stream-json`: one turn per user message, each with its own init
    /// line, optional replay of the user line, steps and result (fixture
    /// `input-stream-json`). `content` is the message's raw `content` JSON.
    pub fn run_conversation(&mut self, messages: &[(String, Vec<Step>)], replay: bool) -> i32 {
        for (content, steps) in messages {
            self.base = (self.turns, self.in_tok, self.out_tok);
            self.tool_ran = false;
            self.start = Instant::now();
            self.result_done = false;
            self.last_text = None;
            self.last_closed_had_tools = false;
            if let Err(End(c)) = self.init() {
                return self.end(c);
            }
            if replay {
                let line = Obj::new()
                    .s("type", "user")
                    .o(
                        "message",
                        Obj::new().s("role", "user").raw("content", content),
                    )
                    .s("session_id", &self.cfg.session_id)
                    .null("parent_tool_use_id")
                    .s("uuid", &crate::out::uuid())
                    .s("timestamp", &crate::out::timestamp())
                    .v("isReplay", &true)
                    .end();
                if let Err(End(c)) = self.emit(line) {
                    return self.end(c);
                }
            }
            for s in steps {
                if let Err(End(c)) = self.step(s) {
                    return self.end(c);
                }
            }
            if signals::interrupted() {
                return self.end(0);
            }
            if let Err(End(c)) = self.ensure_result(None) {
                return self.end(c);
            }
        }
        self.end(0)
    }

    /// Exit bookkeeping: background tasks are waited for a while, then killed, with their
    /// task lines after the result (as the CLI does on a normal exit).
    fn end(&mut self, code: i32) -> i32 {
        let lines = self.result_done && !signals::interrupted();
        let code = match self.finish_background(lines) {
            Ok(()) => code,
            Err(End(c)) => c,
        };
        self.mcp.stop();
        code
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
