//! The transcript parser: turns claude's stream-json stdout into a summary of what
//! the child did (result, errors, files touched by tools, tests, cost, tokens, turns,
//! session id, rate limits). It is fed one line at a time, so it works the same on a
//! live pipe and on a saved file, in bounded memory.
//!
//! Each line is read into borrowed, lenient structs (see `wire`): only the fields the
//! summary needs are looked at, nothing is copied unless the summary keeps it, and a
//! line that is not JSON is counted and skipped. Unknown event types and fields are
//! ignored, so a newer CLI adding events does not break the parse.

mod label;
mod lenient;
mod wire;

use label::tool_arg;
pub(crate) use label::{abridged, push_abridged, write_tool_label, ToolArg};

use crate::outcome::lines::{Line, LineSplitter};
use crate::outcome::{ChangeKind, TestCounts, Tokens};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use wire::{Event, ToolInput};

/// The `result` event of a transcript (the last line of a turn, usually).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultEvent {
    /// `subtype`: success, error_max_turns, error_max_budget_usd, error_during_execution, ...
    pub subtype: String,
    /// `is_error`: true means failure whatever the subtype says.
    pub is_error: bool,
    /// `api_error_status` (401, 429, 500, 529, 400) or None for network faults / no error.
    pub api_error_status: Option<i64>,
    /// The `result` text (absent on error_* subtypes).
    pub result: Option<String>,
    /// `errors[]` (present on error_* subtypes).
    pub errors: Vec<String>,
    /// `terminal_reason` when present (completed, max_turns, prompt_too_long, aborted_tools ...).
    pub terminal_reason: Option<String>,
    /// `num_turns`.
    pub num_turns: u64,
    /// `total_cost_usd`.
    pub total_cost_usd: f64,
    /// `duration_ms` as the CLI measured it.
    pub duration_ms: u64,
    /// Number of entries in `permission_denials`.
    pub permission_denials: u64,
    /// `structured_output`: the JSON the model gave under `--json-schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_output: Option<serde_json::Value>,
}

/// A usage-limit notice: a `rate_limit_event` (or the old result text form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// `rate_limit_info.status`: allowed, allowed_warning, rejected.
    pub status: String,
    /// When the limit resets, epoch **seconds** (milliseconds are normalised).
    pub resets_at: Option<i64>,
    /// `rateLimitType`, e.g. five_hour.
    pub kind: Option<String>,
}

/// A file named by a Write/Edit/MultiEdit/NotebookEdit tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolFile {
    /// The path as the tool got it (usually absolute).
    pub path: String,
    /// Created for a Write whose result type is `create`, else Modified.
    pub change: ChangeKind,
}

/// Everything the parser learned from a transcript. Also a live view while running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSummary {
    /// `session_id` (from init, or any later line).
    pub session_id: Option<String>,
    /// `claude_code_version` from `system/init`.
    pub claude_version: Option<String>,
    /// `model` from `system/init`.
    pub model: Option<String>,
    /// The last `result` event, if any.
    pub result: Option<ResultEvent>,
    /// Token counts: `modelUsage` summed over models, else `usage`.
    pub tokens: Tokens,
    /// Cost: `total_cost_usd` of the result.
    pub cost_usd: f64,
    /// `num_turns` of the result (or assistant messages counted so far while live).
    pub num_turns: u64,
    /// Files changed by successful file tools, in first-seen order, deduplicated.
    pub tool_files: Vec<ToolFile>,
    /// Test counts of the last recognised test run in a Bash tool result.
    pub tests: Option<TestCounts>,
    /// How many times each tool was called.
    pub tools_used: BTreeMap<String, u64>,
    /// Tool results marked `is_error`.
    pub tool_errors: u64,
    /// The name (and short argument) of the tool call in flight, for status views.
    pub current_tool: Option<String>,
    /// The last usage-limit notice whose status was not `allowed`.
    pub rate_limit: Option<RateLimit>,
    /// Count of `system/api_retry` lines.
    pub api_retries: u64,
    /// `error` field of a synthetic assistant line (server_error, rate_limit, authentication_failed).
    pub api_error_kind: Option<String>,
    /// Text of the last assistant text block.
    pub last_text: Option<String>,
    /// Lines seen, lines that were not JSON, lines too long to parse.
    pub lines: u64,
    /// Lines that were not valid JSON objects (kept in the log, skipped here).
    pub bad_lines: u64,
    /// Lines longer than the cap (logged, not parsed).
    pub oversized_lines: u64,
    /// The MCP servers of the `system/init` line and their status (`connected`,
    /// `pending`, `failed`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServerStatus>,
}

/// One MCP server of the init line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerStatus {
    /// The server's name (`borg` for borg's own).
    pub name: String,
    /// `connected`, `pending` or `failed`.
    pub status: String,
}

/// Tool calls whose result has not arrived yet; beyond this many the oldest is
/// forgotten, so a transcript full of unanswered calls cannot grow memory.
const MAX_PENDING: usize = 256;

/// A tool call waiting for its result. Slots are reused so steady-state parsing does
/// not allocate for them.
#[derive(Debug, Default)]
struct Pending {
    id: String,
    name: String,
    /// File path for file tools, the command for Bash, else empty.
    arg: String,
    /// Order of arrival, to evict the oldest; 0 marks a free slot.
    seq: u64,
}

/// Incremental stream-json parser. Feed it complete lines (without the newline).
#[derive(Debug, Default)]
pub struct TranscriptParser {
    summary: TranscriptSummary,
    pending: Vec<Pending>,
    next_seq: u64,
    /// Working directory from `system/init`, to show paths relative to it.
    cwd: String,
    /// `message.id` of the last assistant line: one model turn spans several lines.
    last_message_id: String,
    /// The tool_use id whose label is in `current_tool`.
    current_tool_id: String,
    /// Paths already in `tool_files`, so deduplication stays cheap on long runs.
    seen_files: HashSet<String>,
}

impl TranscriptParser {
    /// A parser with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line (bytes, no trailing newline; may be invalid UTF-8 or not JSON).
    pub fn feed_line(&mut self, line: &[u8]) {
        self.summary.lines += 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.first() != Some(&b'{') {
            self.summary.bad_lines += 1;
            return;
        }
        match serde_json::from_slice::<Event<'_>>(trimmed) {
            Ok(ev) => self.event(ev),
            Err(_) => self.summary.bad_lines += 1,
        }
    }

    /// Records a line that was too long to parse.
    pub fn note_oversized(&mut self) {
        self.summary.lines += 1;
        self.summary.oversized_lines += 1;
    }

    /// The summary so far (live view).
    pub fn summary(&self) -> &TranscriptSummary {
        &self.summary
    }

    /// The final summary.
    pub fn finish(self) -> TranscriptSummary {
        self.summary
    }

    fn event(&mut self, ev: Event<'_>) {
        if self.summary.session_id.is_none() {
            if let Some(id) = ev.session_id.get() {
                self.summary.session_id = Some(id.to_owned());
            }
        }
        match (ev.kind.get(), ev.subtype.get()) {
            (Some("system"), Some("init")) => self.init(&ev),
            (Some("system"), Some("api_retry")) => self.summary.api_retries += 1,
            (Some("assistant"), _) => self.assistant(&ev),
            (Some("user"), _) => self.user(&ev),
            (Some("result"), _) => self.result(ev),
            (Some("rate_limit_event"), _) => self.rate_limit_event(&ev),
            _ => {}
        }
    }

    fn init(&mut self, ev: &Event<'_>) {
        if let Some(id) = ev.session_id.get() {
            self.summary.session_id = Some(id.to_owned());
        }
        if let Some(v) = ev.claude_code_version.get() {
            self.summary.claude_version = Some(v.to_owned());
        }
        if let Some(m) = ev.model.get() {
            self.summary.model = Some(m.to_owned());
        }
        if let Some(cwd) = ev.cwd.get() {
            self.cwd.clear();
            self.cwd.push_str(cwd);
        }
        if !ev.mcp_servers.0.is_empty() {
            self.summary.mcp_servers = ev
                .mcp_servers
                .0
                .iter()
                .map(|(name, status)| McpServerStatus {
                    name: name.clone(),
                    status: status.clone(),
                })
                .collect();
        }
    }

    fn assistant(&mut self, ev: &Event<'_>) {
        if let Some(kind) = ev.error.get() {
            set_opt(&mut self.summary.api_error_kind, kind);
        }
        let msg = &ev.message.0;
        if let Some(id) = msg.id.get() {
            if id != self.last_message_id {
                self.last_message_id.clear();
                self.last_message_id.push_str(id);
                self.summary.num_turns += 1;
            }
        }
        for block in msg.content.iter() {
            match block.kind.get() {
                Some("text") => {
                    if let Some(t) = block.text.get() {
                        if let Some(reset) = usage_limit_reset(t) {
                            self.note_usage_limit_text(reset);
                        }
                        if !t.trim().is_empty() {
                            set_opt(&mut self.summary.last_text, t);
                        }
                    }
                }
                Some("tool_use") => {
                    let name = block.name.get().unwrap_or("tool");
                    match self.summary.tools_used.get_mut(name) {
                        Some(n) => *n += 1,
                        None => {
                            self.summary.tools_used.insert(name.to_owned(), 1);
                        }
                    }
                    let input = &block.input.0;
                    let label = self.summary.current_tool.get_or_insert_with(String::new);
                    label.clear();
                    write_tool_label(label, name, &tool_arg(input), Some(&self.cwd));
                    let id = block.id.get().unwrap_or("");
                    self.current_tool_id.clear();
                    self.current_tool_id.push_str(id);
                    self.remember(id, name, input);
                }
                _ => {}
            }
        }
    }

    fn remember(&mut self, id: &str, name: &str, input: &ToolInput<'_>) {
        if id.is_empty() {
            return;
        }
        self.next_seq += 1;
        let slot = match self.pending.iter().position(|p| p.seq == 0) {
            Some(i) => i,
            None if self.pending.len() < MAX_PENDING => {
                self.pending.push(Pending::default());
                self.pending.len() - 1
            }
            None => self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.seq)
                .map_or(0, |(i, _)| i),
        };
        let p = &mut self.pending[slot];
        p.seq = self.next_seq;
        p.id.clear();
        p.id.push_str(id);
        p.name.clear();
        p.name.push_str(name);
        p.arg.clear();
        let arg = match name {
            "Bash" => input.command.get(),
            _ if is_file_tool(name) => input.file_path.get().or(input.notebook_path.get()),
            _ => None,
        };
        p.arg.push_str(arg.unwrap_or(""));
    }

    fn user(&mut self, ev: &Event<'_>) {
        for block in ev.message.0.content.iter() {
            if block.kind.get() != Some("tool_result") {
                continue;
            }
            let id = block.tool_use_id.get().unwrap_or("");
            let failed = block.is_error.0;
            if failed {
                self.summary.tool_errors += 1;
            }
            if !id.is_empty() && id == self.current_tool_id {
                self.summary.current_tool = None;
                self.current_tool_id.clear();
            }
            let Some(slot) = self.pending.iter().position(|p| p.seq != 0 && p.id == id) else {
                continue;
            };
            self.pending[slot].seq = 0;
            let p = &self.pending[slot];
            if p.name == "Bash" {
                if let Some(t) = block.content.and_then(bash_tests) {
                    self.summary.tests = Some(t);
                }
            } else if is_file_tool(&p.name) && !failed && !p.arg.is_empty() {
                let change = if ev.tool_use_result.created {
                    ChangeKind::Created
                } else {
                    ChangeKind::Modified
                };
                // First kind wins: a file created then edited was still created here.
                if !self.seen_files.contains(&p.arg) {
                    self.seen_files.insert(p.arg.clone());
                    self.summary.tool_files.push(ToolFile {
                        path: p.arg.clone(),
                        change,
                    });
                }
            }
        }
    }

    fn result(&mut self, ev: Event<'_>) {
        let cost = ev
            .total_cost_usd
            .0
            .filter(|c| c.is_finite() && *c >= 0.0)
            .unwrap_or(0.0);
        let r = ResultEvent {
            subtype: ev.subtype.get().unwrap_or("").to_owned(),
            is_error: ev.is_error.0,
            api_error_status: ev.api_error_status.i64(),
            result: ev.result.0.map(|c| c.into_owned()),
            errors: ev.errors.0,
            terminal_reason: ev.terminal_reason.0.map(|c| c.into_owned()),
            num_turns: ev.num_turns.u64(),
            total_cost_usd: cost,
            duration_ms: ev.duration_ms.u64(),
            permission_denials: ev.permission_denials.0,
            structured_output: ev.structured_output,
        };
        self.summary.cost_usd = cost;
        self.summary.tokens = if ev.model_usage.models > 0 {
            ev.model_usage.tokens
        } else {
            ev.usage.0.tokens()
        };
        self.summary.num_turns = r.num_turns;
        if let Some(reset) = r.result.as_deref().and_then(usage_limit_reset) {
            self.note_usage_limit_text(reset);
        }
        self.summary.current_tool = None;
        self.summary.result = Some(r);
    }

    fn rate_limit_event(&mut self, ev: &Event<'_>) {
        let info = &ev.rate_limit_info.0;
        let status = info.status.get().unwrap_or("");
        if status.is_empty() || status == "allowed" {
            return;
        }
        self.summary.rate_limit = Some(RateLimit {
            status: status.to_owned(),
            resets_at: info.resets_at.i64().map(normalise_epoch),
            kind: info.rate_limit_type.get().map(str::to_owned),
        });
    }

    fn note_usage_limit_text(&mut self, reset: Option<i64>) {
        // The result text only repeats what a rate_limit_event may already have said
        // in more detail (the limit kind): keep that, fill in what is missing.
        let prev = self.summary.rate_limit.take().unwrap_or_default();
        self.summary.rate_limit = Some(RateLimit {
            status: "rejected".to_owned(),
            resets_at: reset.or(prev.resets_at),
            kind: prev.kind,
        });
    }
}

/// Reads a whole transcript (a saved file or any reader) in bounded memory.
///
/// Lines longer than `max_line` bytes are counted in `oversized_lines` and skipped.
pub fn summarize_reader<R: Read>(mut r: R, max_line: usize) -> std::io::Result<TranscriptSummary> {
    let mut parser = TranscriptParser::new();
    let mut splitter = LineSplitter::new(max_line);
    let mut buf = vec![0u8; 1 << 20];
    let mut feed = |l: Line<'_>| match l {
        Line::Complete(b) => parser.feed_line(b),
        Line::Oversized(_) => parser.note_oversized(),
    };
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        splitter.push(&buf[..n], &mut feed);
    }
    splitter.finish(&mut feed);
    Ok(parser.finish())
}

/// The line cap used for saved files: far above any real line (tool results are
/// truncated by the CLI), low enough that a corrupt file cannot exhaust memory.
pub const DEFAULT_MAX_LINE: usize = 64 << 20;

/// Summarises a saved stream-json file (`borg transcript FILE`).
pub fn summarize_file(path: &Path) -> std::io::Result<TranscriptSummary> {
    summarize_reader(std::fs::File::open(path)?, DEFAULT_MAX_LINE)
}

/// The test counts in a Bash result's raw content. The keyword check runs on the raw
/// JSON (the keywords contain no escaped characters), so most outputs are never
/// unescaped at all.
fn bash_tests(raw: &serde_json::value::RawValue) -> Option<TestCounts> {
    if !crate::outcome::testsummary::might_contain_summary(raw.get().as_bytes()) {
        return None;
    }
    serde_json::from_str::<wire::ResultScan>(raw.get())
        .ok()?
        .tests
}

/// Tools whose calls name a file they write.
pub(crate) fn is_file_tool(name: &str) -> bool {
    matches!(name, "Write" | "Edit" | "MultiEdit" | "NotebookEdit")
}

/// The old usage-limit text, `Claude AI usage limit reached|1771390800`: Some(reset)
/// when the text is such a notice (the reset may be missing or unreadable).
pub(crate) fn usage_limit_reset(text: &str) -> Option<Option<i64>> {
    let pos = text.find("usage limit reached")?;
    let rest = &text[pos + "usage limit reached".len()..];
    let reset = rest.strip_prefix('|').and_then(|r| {
        let digits: &str = &r[..r.bytes().take_while(u8::is_ascii_digit).count()];
        digits.parse::<i64>().ok().map(normalise_epoch)
    });
    Some(reset)
}

/// `resetsAt` comes in seconds or milliseconds; anything past year 5138 in seconds is
/// taken as milliseconds.
pub(crate) fn normalise_epoch(v: i64) -> i64 {
    if v > 100_000_000_000 {
        v / 1000
    } else {
        v
    }
}

fn set_opt(slot: &mut Option<String>, value: &str) {
    let s = slot.get_or_insert_with(String::new);
    s.clear();
    s.push_str(value);
}
