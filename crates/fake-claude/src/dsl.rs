//! The scenario language: one step per line, shell-like words. The reference for users
//! is the doc comment at the top of `main.rs`; this module only turns text into
//! [`Step`]s and reports bad lines (the caller prints them and exits 2) instead of
//! panicking, because scenarios are typed by hand into prompts.
//!
//! Splitting lines into words and reading sizes and durations live in `lex`; the
//! table of steps (one step from its words) in `steps`.

mod lex;
mod steps;

pub use lex::words;
pub use steps::step;

/// Which API failure an `api-error` / `api-retry` step simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// An HTTP status from the API (400, 401, 429, 500, 529, ...).
    Status(u16),
    /// Connection refused/reset/timeout: no status.
    Network,
    /// No API key at all: "Not logged in", never retried.
    NoKey,
}

/// The tool `--json-schema` adds: the model answers through it.
pub const STRUCTURED: &str = "StructuredOutput";

/// A model-side tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    /// Write(path, content).
    Write(String, String),
    /// Read(path).
    Read(String),
    /// Edit(path, old, new, replace_all).
    Edit(String, String, String, bool),
    /// Bash(command, description).
    Bash(String, String),
    /// Bash with `run_in_background: true` (command, description).
    BashBg(String, String),
    /// An MCP tool of an `--mcp-config` server: (full name `mcp__server__tool`,
    /// arguments as a JSON object text).
    Mcp(String, String),
    /// The `StructuredOutput` tool of `--json-schema`: its input, a JSON object text.
    /// The run ends with it (a `result` whose `structured_output` is that object).
    Structured(String),
}

/// One scenario step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An assistant text block.
    Text(String),
    /// A tool call; `join` (the `+` prefix) keeps it in the previous tool's message.
    Tool {
        /// The call.
        tool: Tool,
        /// Written with a `+` prefix.
        join: bool,
    },
    /// Ends the current model message.
    Turn,
    /// Final success result with this text (`None`: the last text).
    Result(Option<String>),
    /// API failure after retries: (kind, retries override).
    ApiError(Api, Option<u32>),
    /// Transient API failures the CLI absorbs: (kind, how many `api_retry` lines).
    ApiRetry(Api, u32),
    /// `error_max_turns` now.
    MaxTurns,
    /// `error_max_budget_usd` now.
    MaxBudget,
    /// End without a result line, with this exit code.
    NoResult(i32),
    /// stderr text (may be empty) then exit with the code, no result.
    Exit(i32, String),
    /// One stderr line, run continues.
    Stderr(String),
    /// Half a JSON line without newline, then exit 1 (or abort when true).
    CrashMidLine(bool),
    /// Pause (milliseconds) with no output.
    Sleep(u64),
    /// N assistant text lines, a pause before each.
    Slow(u32, u64),
    /// Sleep forever, no output.
    Hang,
    /// Result (if not yet printed), then stay alive forever.
    HangAfterResult,
    /// Result (if not yet printed), then background-task lines after a delay.
    AfterResultLines(Option<u64>),
    /// Usage limit: rejected rate_limit_event + 429 error result; (reset in secs, as ms).
    RateLimit(i64, bool),
    /// Only on this attempt number.
    OnAttempt(u32, Box<Step>),
    /// Only on attempts 1..=N.
    First(u32, Box<Step>),
    /// Only on attempts > N.
    AfterAttempt(u32, Box<Step>),
    /// A setsid grandchild that ignores SIGINT/SIGTERM and sleeps forever.
    GrandchildSetsid,
    /// A grandchild holding stdout open, sleeping this long (ms).
    GrandchildHoldsStdout(u64),
    /// This process ignores SIGINT and SIGTERM from now on.
    IgnoreSignals,
    /// Write this many bytes of JSON lines as fast as possible (to stderr when true).
    Flood(u64, bool),
    /// Allocate this many bytes, touch every page and keep them to the end.
    Alloc(u64),
    /// One JSON line of this many bytes.
    HugeLine(u64),
    /// Lines with invalid UTF-8 between valid ones.
    BadUtf8,
    /// The fastest run: init, one assistant line, result, no IO besides stdout.
    Instant,
    /// `--resume` of an unknown session: no init, an `error_during_execution` result.
    NoConversation,
}

/// Parses numbered scenario lines. `Err` = "line N: why: text".
pub fn parse(lines: &[(usize, String)]) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for (n, text) in lines {
        let w = words(text).map_err(|e| format!("line {n}: {e}: {text}"))?;
        if w.is_empty() {
            continue;
        }
        out.extend(step(&w).map_err(|e| format!("line {n}: {e}: {text}"))?);
    }
    Ok(out)
}

/// The `#fake ` directive lines of a prompt, with their 1-based line numbers.
pub fn directives(prompt: &str) -> Vec<(usize, String)> {
    prompt
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            t.strip_prefix("#fake ")
                .map(|rest| (i + 1, rest.to_string()))
        })
        .collect()
}

/// The lines of a scenario file: blank lines and `#` comments skipped, an optional
/// `#fake ` prefix allowed (so a prompt's directives can be pasted as is).
pub fn file_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            if let Some(rest) = t.strip_prefix("#fake ") {
                Some((i + 1, rest.to_string()))
            } else if t.is_empty() || t.starts_with('#') {
                None
            } else {
                Some((i + 1, t.to_string()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::lex::{bytes, millis};
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            words(r#"write a.txt "x\ny \"q\"" 'l\n'"#).unwrap(),
            vec!["write", "a.txt", "x\ny \"q\"", "l\\n"]
        );
        assert!(words("text \"open").is_err());
    }

    #[test]
    fn steps() {
        let s = parse(&[
            (1, "first 1 api-error 500".into()),
            (2, "+ bash \"ls\"".into()),
        ])
        .unwrap();
        assert_eq!(
            s[0],
            Step::First(1, Box::new(Step::ApiError(Api::Status(500), None)))
        );
        assert_eq!(
            s[1],
            Step::Tool {
                tool: Tool::Bash("ls".into(), "Run shell command".into()),
                join: true
            }
        );
        assert!(parse(&[(3, "frobnicate".into())])
            .unwrap_err()
            .starts_with("line 3: unknown step"));
        assert_eq!(bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(millis("2s").unwrap(), 2000);
    }

    #[test]
    fn prompt_directives() {
        let d = directives("do it\n  #fake text \"hi\"\n#fakery\n#fake result");
        assert_eq!(
            d,
            vec![(2, "text \"hi\"".to_string()), (4, "result".to_string())]
        );
    }
}
