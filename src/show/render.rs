//! Renders a stream-json transcript for people (`borg logs`): the time when the line
//! carries one, assistant text, each tool call on one line (`Write NOTES.md`,
//! `Edit src/calc.py`, `Bash: cargo test`), tool results abridged with failures marked,
//! test summaries, and a final line with status, turns, duration and cost.
//!
//! It never prints raw JSON: a line that cannot be read is shown as a short marker, and
//! event types it does not know are left out. Speed does not matter here (a person
//! reads the output), so lines are read into `serde_json::Value`.

use crate::outcome::transcript::{push_abridged, write_tool_label, ToolArg};
use serde_json::Value;
use std::collections::HashMap;

/// Lines of assistant text shown before the rest is summarised.
const MAX_TEXT_LINES: usize = 40;
/// Characters of one displayed line before it is cut.
const MAX_LINE_CHARS: usize = 160;
/// Tool calls remembered to name their results; beyond this the map is cleared.
const MAX_TOOLS: usize = 1024;

/// Turns stdout lines of a claude child into display lines.
#[derive(Debug, Default)]
pub struct Renderer {
    color: bool,
    cwd: Option<String>,
    /// tool_use id → (tool name, label), to say which call a result answers.
    tools: HashMap<String, (String, String)>,
    results: u64,
    lines: u64,
}

/// ANSI styles, used only when colour is on.
#[derive(Clone, Copy)]
enum Style {
    Dim,
    Tool,
    Ok,
    Bad,
    Warn,
    Bold,
}

impl Renderer {
    /// A renderer; `color` adds ANSI colours (for a terminal).
    pub fn new(color: bool) -> Self {
        Self {
            color,
            ..Self::default()
        }
    }

    /// The display lines for one stdout line (bytes without the newline); often none.
    pub fn line(&mut self, raw: &[u8]) -> Vec<String> {
        self.lines += 1;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Vec::new();
        }
        let v: Value = match serde_json::from_slice(trimmed) {
            Ok(v @ Value::Object(_)) => v,
            _ => return vec![self.non_json(trimmed)],
        };
        let time = v
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(clock)
            .unwrap_or("");
        let mut out = Vec::new();
        match (str_at(&v, "type"), str_at(&v, "subtype")) {
            ("system", sub) => self.system(&v, sub, &mut out),
            ("assistant", _) => self.assistant(&v, &mut out),
            ("user", _) => self.user(&v, &mut out),
            ("result", _) => self.result(&v, &mut out),
            ("rate_limit_event", _) => self.rate_limit(&v, &mut out),
            _ => {}
        }
        let column = if time.is_empty() {
            format!("{:8}", "")
        } else {
            self.paint(Style::Dim, time)
        };
        out.into_iter().map(|l| format!("{column} {l}")).collect()
    }

    /// The marker for a line the caller's splitter dropped for being too long.
    pub fn oversized(&mut self, bytes: u64) -> Vec<String> {
        self.lines += 1;
        vec![format!(
            "{:8} {}",
            "",
            self.paint(
                Style::Warn,
                &format!("[line of {bytes} bytes, too long to show]")
            )
        )]
    }

    /// Lines to print once the stream has ended.
    pub fn finish(&mut self) -> Vec<String> {
        if self.lines == 0 {
            return vec![format!("{:8} (empty transcript)", "")];
        }
        if self.results == 0 {
            return vec![format!(
                "{:8} {}",
                "",
                self.paint(Style::Bad, "■ no result line: the run did not finish")
            )];
        }
        Vec::new()
    }

    fn non_json(&self, raw: &[u8]) -> String {
        let shown = match std::str::from_utf8(raw) {
            Ok(s) if !s.starts_with('{') && !s.starts_with('[') => {
                let mut t = String::from("[non-JSON] ");
                push_abridged(&mut t, s, MAX_LINE_CHARS);
                t
            }
            _ => format!("[non-JSON line, {} bytes]", raw.len()),
        };
        format!("{:8} {}", "", self.paint(Style::Warn, &shown))
    }

    fn system(&mut self, v: &Value, subtype: &str, out: &mut Vec<String>) {
        match subtype {
            "init" => {
                self.cwd = v.get("cwd").and_then(Value::as_str).map(str::to_owned);
                let mut parts = vec![format!("session {}", str_at(v, "session_id"))];
                for (key, label) in [
                    ("model", ""),
                    ("claude_code_version", "claude "),
                    ("permissionMode", ""),
                ] {
                    let val = str_at(v, key);
                    if !val.is_empty() {
                        parts.push(format!("{label}{val}"));
                    }
                }
                out.push(self.paint(Style::Dim, &format!("▸ start: {}", parts.join(" · "))));
            }
            "api_retry" => {
                let status = v
                    .get("error_status")
                    .and_then(Value::as_i64)
                    .map_or("no status".into(), |s| s.to_string());
                let delay = v
                    .get("retry_delay_ms")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    / 1000.0;
                let line = format!(
                    "API retry {}/{} in {delay:.1}s ({status} {})",
                    num_at(v, "attempt"),
                    num_at(v, "max_retries"),
                    str_at(v, "error")
                );
                out.push(self.paint(Style::Warn, &line));
            }
            "task_started" => {
                let line = format!(
                    "background task {} started: {}",
                    str_at(v, "task_id"),
                    str_at(v, "description")
                );
                out.push(self.paint(Style::Dim, &line));
            }
            "task_updated" => {
                let status = v
                    .pointer("/patch/status")
                    .and_then(Value::as_str)
                    .unwrap_or("updated");
                out.push(self.paint(
                    Style::Dim,
                    &format!("background task {}: {status}", str_at(v, "task_id")),
                ));
            }
            "task_notification" => {
                let line = format!(
                    "background task {} {}: {}",
                    str_at(v, "task_id"),
                    str_at(v, "status"),
                    str_at(v, "summary")
                );
                out.push(self.paint(Style::Dim, &line));
            }
            _ => {}
        }
    }

    fn assistant(&mut self, v: &Value, out: &mut Vec<String>) {
        let api_error = v.get("error").and_then(Value::as_str);
        for block in blocks(v) {
            match str_at(block, "type") {
                "text" => {
                    let text = str_at(block, "text");
                    if let Some(kind) = api_error {
                        let mut line = format!("✗ API error ({kind}): ");
                        push_abridged(&mut line, text.trim(), MAX_LINE_CHARS);
                        out.push(self.paint(Style::Bad, &line));
                    } else {
                        self.text(text, "", out);
                    }
                }
                "tool_use" => {
                    let name = match str_at(block, "name") {
                        "" => "tool",
                        n => n,
                    };
                    let input = block.get("input").unwrap_or(&Value::Null);
                    let mut label = String::new();
                    write_tool_label(&mut label, name, &arg_of(input), self.cwd.as_deref());
                    if self.tools.len() >= MAX_TOOLS {
                        self.tools.clear();
                    }
                    let id = str_at(block, "id");
                    self.tools
                        .insert(id.to_owned(), (name.to_owned(), label.clone()));
                    out.push(self.paint(Style::Tool, &format!("→ {label}")));
                }
                _ => {}
            }
        }
    }

    fn user(&mut self, v: &Value, out: &mut Vec<String>) {
        if let Some(prompt) = v.pointer("/message/content").and_then(Value::as_str) {
            self.text(prompt, "» ", out);
            return;
        }
        for block in blocks(v) {
            match str_at(block, "type") {
                "text" => self.text(str_at(block, "text"), "» ", out),
                "tool_result" => self.tool_result(block, out),
                _ => {}
            }
        }
    }

    fn tool_result(&mut self, block: &Value, out: &mut Vec<String>) {
        let failed = block
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let content = result_text(block.get("content").unwrap_or(&Value::Null));
        let (name, label) = self
            .tools
            .remove(str_at(block, "tool_use_id"))
            .unwrap_or_default();
        let mut cleaned = content
            .replace("<tool_use_error>", "")
            .replace("</tool_use_error>", "");
        // The CLI's note to the model, not news to a person.
        cleaned = cleaned.replace(
            " (file state is current in your context — no need to Read it back)",
            "",
        );
        if let Some(cwd) = self.cwd.as_deref().filter(|c| c.len() > 1) {
            cleaned = cleaned.replace(&format!("{}/", cwd.trim_end_matches('/')), "");
        }
        let mut lines = cleaned
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty());
        let first = lines.next().unwrap_or("");
        let more = lines.count();
        let mut line = String::from(if failed { "✗ " } else { "✓ " });
        // A command can be long and was just shown with its call: the name is enough.
        let label = if name == "Bash" {
            name.as_str()
        } else {
            label.as_str()
        };
        if !label.is_empty() {
            line.push_str(label);
            line.push_str(": ");
        }
        if name == "Read" && !failed {
            line.push_str(&format!("{} lines", more + usize::from(!first.is_empty())));
        } else {
            push_abridged(&mut line, first.trim(), 100);
            if more > 0 {
                line.push_str(&format!(" (+{more} lines)"));
            }
        }
        out.push(self.paint(if failed { Style::Bad } else { Style::Ok }, &line));
        if name == "Bash" || name.is_empty() {
            if let Some(t) = crate::outcome::testsummary::recognise(&content) {
                let line = format!(
                    "  tests: {} passed, {} failed, {} ignored",
                    t.passed, t.failed, t.ignored
                );
                out.push(self.paint(if t.failed > 0 { Style::Bad } else { Style::Ok }, &line));
            }
        }
    }

    fn result(&mut self, v: &Value, out: &mut Vec<String>) {
        self.results += 1;
        let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
        let subtype = str_at(v, "subtype");
        let mut head = if !is_error {
            "■ success".to_owned()
        } else if subtype.is_empty() || subtype == "success" {
            match v.get("api_error_status").and_then(Value::as_i64) {
                Some(s) => format!("■ error (API {s})"),
                None => "■ error".to_owned(),
            }
        } else {
            format!("■ {subtype}")
        };
        if is_error {
            let errors: Vec<&str> = v
                .get("errors")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter(|e| !e.starts_with("[ede_diagnostic]"))
                        .collect()
                })
                .unwrap_or_default();
            let mut text = v
                .get("result")
                .and_then(Value::as_str)
                .map_or_else(|| errors.join("; "), str::to_owned);
            if text.is_empty() && str_at(v, "terminal_reason") == "aborted_tools" {
                text = "aborted during a tool call".into();
            }
            if !text.trim().is_empty() {
                head.push_str(": ");
                push_abridged(&mut head, text.trim(), MAX_LINE_CHARS);
            }
        }
        let turns = num_at(v, "num_turns");
        let mut parts = vec![
            head,
            format!("{turns} turn{}", if turns == 1 { "" } else { "s" }),
        ];
        parts.push(duration(num_at(v, "duration_ms")));
        parts.push(format!(
            "${:.4}",
            v.get("total_cost_usd")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        ));
        let denials = v
            .get("permission_denials")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if denials > 0 {
            parts.push(format!(
                "{denials} permission denial{}",
                if denials == 1 { "" } else { "s" }
            ));
        }
        let style = if is_error { Style::Bad } else { Style::Bold };
        out.push(self.paint(style, &parts.join(" · ")));
    }

    fn rate_limit(&mut self, v: &Value, out: &mut Vec<String>) {
        let status = v
            .pointer("/rate_limit_info/status")
            .and_then(Value::as_str)
            .unwrap_or("");
        if status.is_empty() || status == "allowed" {
            return;
        }
        let mut line = format!("usage limit: {status}");
        if let Some(kind) = v
            .pointer("/rate_limit_info/rateLimitType")
            .and_then(Value::as_str)
        {
            line.push_str(&format!(" ({kind})"));
        }
        let reset = v
            .pointer("/rate_limit_info/resetsAt")
            .and_then(Value::as_f64)
            .map(|r| r as i64);
        if let Some(at) = reset
            .map(crate::outcome::transcript::normalise_epoch)
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        {
            line.push_str(&format!(", resets {}", at.format("%Y-%m-%d %H:%M UTC")));
        }
        out.push(self.paint(Style::Warn, &line));
    }

    /// Multi-line text, abridged: the first lines, then how many were left out.
    fn text(&self, text: &str, prefix: &str, out: &mut Vec<String>) {
        let lines: Vec<&str> = text.trim().lines().collect();
        for l in lines.iter().take(MAX_TEXT_LINES) {
            let mut line = String::from(prefix);
            push_abridged(&mut line, l.trim_end(), MAX_LINE_CHARS);
            out.push(line);
        }
        if lines.len() > MAX_TEXT_LINES {
            out.push(self.paint(
                Style::Dim,
                &format!("… ({} more lines)", lines.len() - MAX_TEXT_LINES),
            ));
        }
    }

    fn paint(&self, style: Style, s: &str) -> String {
        if !self.color {
            return s.to_owned();
        }
        let code = match style {
            Style::Dim => "2",
            Style::Tool => "36",
            Style::Ok => "32",
            Style::Bad => "31",
            Style::Warn => "33",
            Style::Bold => "1",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    }
}

fn str_at<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num_at(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(0)
}

/// `message.content` blocks (none when content is a string or missing).
fn blocks(v: &Value) -> impl Iterator<Item = &Value> {
    v.pointer("/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A tool_result's content as text: a string, or its text blocks joined.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn arg_of(input: &Value) -> ToolArg<'_> {
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    if let Some(c) = s("command") {
        ToolArg::Command(c)
    } else if let Some(f) = s("file_path").or_else(|| s("notebook_path")) {
        ToolArg::File(f)
    } else if let Some(o) = s("pattern")
        .or_else(|| s("url"))
        .or_else(|| s("query"))
        .or_else(|| s("description"))
        .or_else(|| s("path"))
    {
        ToolArg::Other(o)
    } else {
        ToolArg::None
    }
}

/// `HH:MM:SS` out of an RFC 3339 timestamp, as the CLI writes it (UTC).
fn clock(ts: &str) -> Option<&str> {
    let t = ts.get(11..19)?;
    (ts.as_bytes().get(10) == Some(&b'T') && t.as_bytes().get(2) == Some(&b':')).then_some(t)
}

fn duration(ms: u64) -> String {
    let secs = ms as f64 / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
