//! The transcript parser: turns claude's stream-json stdout into a summary of what
//! the child did (result, errors, files touched by tools, tests, cost, tokens, turns,
//! session id, rate limits). It is fed one line at a time, so it works the same on a
//! live pipe and on a saved file, in bounded memory.
//!
//! OWNER: helper A (transcript). Interface fixed by the skeleton; fill the bodies.

use crate::outcome::{ChangeKind, TestCounts, Tokens};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

/// Incremental stream-json parser. Feed it complete lines (without the newline).
#[derive(Debug, Default)]
pub struct TranscriptParser {
    summary: TranscriptSummary,
}

impl TranscriptParser {
    /// A parser with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line (bytes, no trailing newline; may be invalid UTF-8 or not JSON).
    pub fn feed_line(&mut self, line: &[u8]) {
        self.summary.lines += 1;
        let _ = line;
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
}
