//! The scenario language: one step per line, shell-like words. The reference for users
//! is the doc comment at the top of `fake-claude.rs`; this module only turns text into
//! [`Step`]s and reports bad lines (the caller prints them and exits 2) instead of
//! panicking, because scenarios are typed by hand into prompts.

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
    /// One JSON line of this many bytes.
    HugeLine(u64),
    /// Lines with invalid UTF-8 between valid ones.
    BadUtf8,
    /// The fastest run: init, one assistant line, result, no IO besides stdout.
    Instant,
    /// `--resume` of an unknown session: no init, an `error_during_execution` result.
    NoConversation,
}

/// Splits a line into words: whitespace separates; `"..."` with `\n \t \r \\ \" \0`
/// escapes; `'...'` literal.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        None => return Err("unterminated \"quote\"".into()),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some('r') => cur.push('\r'),
                            Some('0') => cur.push('\0'),
                            Some('\\') => cur.push('\\'),
                            Some('"') => cur.push('"'),
                            Some(o) => {
                                cur.push('\\');
                                cur.push(o)
                            }
                            None => return Err("unterminated \"quote\"".into()),
                        },
                        Some(o) => cur.push(o),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        None => return Err("unterminated 'quote'".into()),
                        Some('\'') => break,
                        Some(o) => cur.push(o),
                    }
                }
            }
            o => {
                in_word = true;
                cur.push(o)
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses a byte count: `1024`, `64KiB`, `20MiB`, `1GiB`, `5M`, `2k`, `1GB`.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size '{s}'"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large '{s}'"))
}

/// Parses a duration in milliseconds: `500`, `500ms`, `2s`.
pub fn millis(s: &str) -> Result<u64, String> {
    let bad = || format!("bad duration '{s}' (use 500, 500ms or 2s)");
    if let Some(n) = s.strip_suffix("ms") {
        n.parse().map_err(|_| bad())
    } else if let Some(n) = s.strip_suffix('s') {
        n.parse::<u64>()
            .map(|v| v.saturating_mul(1000))
            .map_err(|_| bad())
    } else {
        s.parse().map_err(|_| bad())
    }
}

/// Parses the STATUS word of `api-error` / `api-retry`.
fn api_kind(s: &str) -> Result<Api, String> {
    match s {
        "network" | "connection" => Ok(Api::Network),
        "nokey" | "no-key" => Ok(Api::NoKey),
        "overloaded" => Ok(Api::Status(529)),
        _ => match s.parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(Api::Status(n)),
            _ => Err(format!(
                "bad API status '{s}' (a number like 500, or network, nokey)"
            )),
        },
    }
}

/// Parses a number, naming `what` in the error.
fn num<T: std::str::FromStr>(w: &str, what: &str) -> Result<T, String> {
    w.parse().map_err(|_| format!("bad {what} '{w}'"))
}

/// The `demo` step list: a small realistic run that touches one file in the cwd.
fn demo() -> Vec<Step> {
    let f = "FAKE_CLAUDE_DEMO.md".to_string();
    vec![
        Step::Text("I'll look around, then write a short note.".into()),
        Step::Tool {
            tool: Tool::Bash("ls".into(), "List files".into()),
            join: false,
        },
        Step::Tool {
            tool: Tool::Write(f.clone(), "# Demo\n\nWritten by fake-claude.\n".into()),
            join: false,
        },
        Step::Tool {
            tool: Tool::Read(f.clone()),
            join: true,
        },
        Step::Tool {
            tool: Tool::Edit(f, "Written".into(), "Edited".into(), false),
            join: false,
        },
        Step::Text("Done. Wrote and edited FAKE_CLAUDE_DEMO.md.".into()),
    ]
}

/// Parses one step from its words (non-empty). `demo` expands into several steps.
pub fn step(w: &[String]) -> Result<Vec<Step>, String> {
    let (join, w) = match w.first().map(String::as_str) {
        Some("+") => (true, &w[1..]),
        _ => (false, w),
    };
    let Some(name) = w.first() else {
        return Err("empty step".into());
    };
    let args = &w[1..];
    let want = |min: usize, max: usize, usage: &str| -> Result<(), String> {
        if args.len() < min || args.len() > max {
            Err(format!("usage: {usage}"))
        } else {
            Ok(())
        }
    };
    let tool = |t: Tool| Ok(vec![Step::Tool { tool: t, join }]);
    if join
        && !matches!(
            name.as_str(),
            "write" | "read" | "edit" | "bash" | "bash-bg"
        )
    {
        return Err("'+' only goes before a tool step (write, read, edit, bash, bash-bg)".into());
    }
    let one = |s: Step| Ok(vec![s]);
    match name.as_str() {
        "text" => {
            // Several words are joined with spaces: `text all done` works unquoted.
            want(1, usize::MAX, "text \"TEXT\"")?;
            one(Step::Text(args.join(" ")))
        }
        "write" => {
            want(2, 2, "write PATH \"CONTENT\"")?;
            tool(Tool::Write(args[0].clone(), args[1].clone()))
        }
        "read" => {
            want(1, 1, "read PATH")?;
            tool(Tool::Read(args[0].clone()))
        }
        "edit" => {
            want(3, 4, "edit PATH \"OLD\" \"NEW\" [all]")?;
            let all = match args.get(3).map(String::as_str) {
                None => false,
                Some("all") => true,
                Some(o) => return Err(format!("edit: 4th word must be 'all', got '{o}'")),
            };
            tool(Tool::Edit(
                args[0].clone(),
                args[1].clone(),
                args[2].clone(),
                all,
            ))
        }
        "bash" => {
            want(1, 2, "bash \"COMMAND\" [\"DESCRIPTION\"]")?;
            let desc = args
                .get(1)
                .cloned()
                .unwrap_or_else(|| "Run shell command".into());
            tool(Tool::Bash(args[0].clone(), desc))
        }
        "bash-bg" => {
            want(1, 2, "bash-bg \"COMMAND\" [\"DESCRIPTION\"]")?;
            let desc = args
                .get(1)
                .cloned()
                .unwrap_or_else(|| "Run in background".into());
            tool(Tool::BashBg(args[0].clone(), desc))
        }
        "turn" => {
            want(0, 0, "turn")?;
            one(Step::Turn)
        }
        "result" => {
            let text = (!args.is_empty()).then(|| args.join(" "));
            one(Step::Result(text))
        }
        "api-error" => {
            want(1, 2, "api-error STATUS|network|nokey [RETRIES]")?;
            let r = args
                .get(1)
                .map(|r| num::<u32>(r, "retry count"))
                .transpose()?;
            one(Step::ApiError(api_kind(&args[0])?, r))
        }
        "api-retry" => {
            want(1, 2, "api-retry STATUS|network [COUNT]")?;
            let n = args
                .get(1)
                .map(|r| num::<u32>(r, "count"))
                .transpose()?
                .unwrap_or(1);
            one(Step::ApiRetry(api_kind(&args[0])?, n))
        }
        "max-turns" => {
            want(0, 0, "max-turns")?;
            one(Step::MaxTurns)
        }
        "max-budget" => {
            want(0, 0, "max-budget")?;
            one(Step::MaxBudget)
        }
        "no-result" => {
            want(0, 1, "no-result [CODE]")?;
            let c = args
                .first()
                .map(|c| num::<i32>(c, "exit code"))
                .transpose()?
                .unwrap_or(0);
            one(Step::NoResult(c))
        }
        "exit" => {
            want(1, 2, "exit CODE [\"STDERR\"]")?;
            one(Step::Exit(
                num(&args[0], "exit code")?,
                args.get(1).cloned().unwrap_or_default(),
            ))
        }
        "stderr" => {
            want(1, usize::MAX, "stderr \"TEXT\"")?;
            one(Step::Stderr(args.join(" ")))
        }
        "crash-mid-line" => {
            want(0, 1, "crash-mid-line [abort]")?;
            match args.first().map(String::as_str) {
                None => one(Step::CrashMidLine(false)),
                Some("abort") => one(Step::CrashMidLine(true)),
                Some(o) => Err(format!("crash-mid-line: expected 'abort', got '{o}'")),
            }
        }
        "sleep" | "silence" => {
            want(1, 1, "sleep MS")?;
            one(Step::Sleep(millis(&args[0])?))
        }
        "slow" => {
            want(2, 2, "slow N MS")?;
            one(Step::Slow(num(&args[0], "count")?, millis(&args[1])?))
        }
        "hang" => {
            want(0, 0, "hang")?;
            one(Step::Hang)
        }
        "hang-after-result" => {
            want(0, 0, "hang-after-result")?;
            one(Step::HangAfterResult)
        }
        "after-result-lines" => {
            want(0, 1, "after-result-lines [MS]")?;
            one(Step::AfterResultLines(
                args.first().map(|a| millis(a)).transpose()?,
            ))
        }
        "rate-limit" => {
            want(0, 2, "rate-limit [RESET_IN_SECS] [ms]")?;
            let secs = args
                .first()
                .map(|a| num::<i64>(a, "reset seconds"))
                .transpose()?
                .unwrap_or(60);
            let ms = match args.get(1).map(String::as_str) {
                None => false,
                Some("ms") => true,
                Some(o) => return Err(format!("rate-limit: expected 'ms', got '{o}'")),
            };
            one(Step::RateLimit(secs, ms))
        }
        "on-attempt" | "first" | "fail-first" | "after-attempt" => {
            if args.len() < 2 {
                return Err(format!("usage: {name} N STEP..."));
            }
            let n: u32 = num(&args[0], "attempt number")?;
            let inner = step(&args[1..])?;
            if inner.len() != 1 {
                return Err(format!("{name}: the step must be a single step (not demo)"));
            }
            let b = Box::new(inner.into_iter().next().unwrap_or(Step::Turn));
            one(match name.as_str() {
                "on-attempt" => Step::OnAttempt(n, b),
                "after-attempt" => Step::AfterAttempt(n, b),
                _ => Step::First(n, b),
            })
        }
        "grandchild-setsid" | "setsid-grandchild" => {
            want(0, 0, "grandchild-setsid")?;
            one(Step::GrandchildSetsid)
        }
        "grandchild-holds-stdout" | "leak-grandchild" => {
            want(0, 1, "grandchild-holds-stdout [MS]")?;
            let ms = args
                .first()
                .map(|a| millis(a))
                .transpose()?
                .unwrap_or(3_600_000);
            one(Step::GrandchildHoldsStdout(ms))
        }
        "ignore-signals" => {
            want(0, 0, "ignore-signals")?;
            one(Step::IgnoreSignals)
        }
        "flood" => {
            want(1, 2, "flood BYTES [stderr]")?;
            let e = match args.get(1).map(String::as_str) {
                None | Some("stdout") => false,
                Some("stderr") => true,
                Some(o) => return Err(format!("flood: expected 'stderr', got '{o}'")),
            };
            one(Step::Flood(bytes(&args[0])?, e))
        }
        "huge-line" => {
            want(1, 1, "huge-line BYTES")?;
            one(Step::HugeLine(bytes(&args[0])?))
        }
        "bad-utf8" => {
            want(0, 0, "bad-utf8")?;
            one(Step::BadUtf8)
        }
        "instant" => {
            want(0, 0, "instant")?;
            one(Step::Instant)
        }
        "no-conversation" | "resume-unknown" => {
            want(0, 0, "no-conversation")?;
            one(Step::NoConversation)
        }
        "demo" => {
            want(0, 0, "demo")?;
            Ok(demo())
        }
        other => Err(format!("unknown step '{other}'")),
    }
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
