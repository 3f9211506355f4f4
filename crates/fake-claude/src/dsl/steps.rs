//! One scenario step from its words: the table of step names, their argument counts
//! and usage messages, and the `demo` expansion.

use super::lex::{bytes, millis};
use super::{Api, Step, Tool};

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
