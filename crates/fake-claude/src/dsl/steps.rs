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

/// A step family's parser: `Ok(None)` when the name is not one of its steps.
type Family = fn(&str, &[String]) -> Result<Option<Step>, String>;

/// The families of single steps, tried in turn (tool steps and `demo` aside).
const FAMILIES: &[Family] = &[
    content_step,
    ending_step,
    api_step,
    timing_step,
    attempt_step,
    torture_step,
];

/// The names of the tool steps, the only ones a `+` may precede.
const TOOL_STEPS: &[&str] = &[
    "write",
    "read",
    "edit",
    "bash",
    "bash-bg",
    "mcp",
    "structured",
];

/// Parses one step from its words (non-empty). `demo` expands into several steps.
pub fn step(w: &[String]) -> Result<Vec<Step>, String> {
    let (join, w) = match w.first().map(String::as_str) {
        Some("+") => (true, &w[1..]),
        _ => (false, w),
    };
    let Some(name) = w.first() else {
        return Err("empty step".into());
    };
    let (name, args) = (name.as_str(), &w[1..]);
    if TOOL_STEPS.contains(&name) {
        return Ok(vec![Step::Tool {
            tool: tool_step(name, args)?,
            join,
        }]);
    }
    if join {
        return Err(
            "'+' only goes before a tool step (write, read, edit, bash, bash-bg, mcp)".into(),
        );
    }
    if name == "demo" {
        want(args, 0, 0, "demo")?;
        return Ok(demo());
    }
    for family in FAMILIES {
        if let Some(s) = family(name, args)? {
            return Ok(vec![s]);
        }
    }
    Err(format!("unknown step '{name}'"))
}

/// Checks the argument count: between `min` and `max`, else the usage line.
fn want(args: &[String], min: usize, max: usize, usage: &str) -> Result<(), String> {
    if args.len() < min || args.len() > max {
        Err(format!("usage: {usage}"))
    } else {
        Ok(())
    }
}

/// An optional word that may only be `word`: whether it was given.
fn flag_word(args: &[String], at: usize, word: &str, step: &str) -> Result<bool, String> {
    match args.get(at).map(String::as_str) {
        None => Ok(false),
        Some(w) if w == word => Ok(true),
        Some(o) => Err(format!("{step}: expected '{word}', got '{o}'")),
    }
}

/// The tool steps: `write`, `read`, `edit`, `bash`, `bash-bg`.
fn tool_step(name: &str, args: &[String]) -> Result<Tool, String> {
    let desc = |default: &str| args.get(1).cloned().unwrap_or_else(|| default.into());
    match name {
        "write" => {
            want(args, 2, 2, "write PATH \"CONTENT\"")?;
            Ok(Tool::Write(args[0].clone(), args[1].clone()))
        }
        "read" => {
            want(args, 1, 1, "read PATH")?;
            Ok(Tool::Read(args[0].clone()))
        }
        "edit" => {
            want(args, 3, 4, "edit PATH \"OLD\" \"NEW\" [all]")?;
            let all = match args.get(3).map(String::as_str) {
                None => false,
                Some("all") => true,
                Some(o) => return Err(format!("edit: 4th word must be 'all', got '{o}'")),
            };
            let (path, old, new) = (args[0].clone(), args[1].clone(), args[2].clone());
            Ok(Tool::Edit(path, old, new, all))
        }
        "bash" => {
            want(args, 1, 2, "bash \"COMMAND\" [\"DESCRIPTION\"]")?;
            Ok(Tool::Bash(args[0].clone(), desc("Run shell command")))
        }
        "mcp" => {
            want(args, 1, 2, "mcp TOOL ['{\"json\": \"arguments\"}']")?;
            let name = if args[0].starts_with("mcp__") {
                args[0].clone()
            } else {
                format!("mcp__borg__{}", args[0])
            };
            let json = args.get(1).cloned().unwrap_or_else(|| "{}".into());
            match serde_json::from_str::<serde_json::Value>(&json) {
                Ok(v) if v.is_object() => Ok(Tool::Mcp(name, v.to_string())),
                _ => Err(format!(
                    "mcp: the arguments must be a JSON object, got {json}"
                )),
            }
        }
        "structured" => {
            want(args, 1, 1, "structured '{\"json\": \"object\"}'")?;
            match serde_json::from_str::<serde_json::Value>(&args[0]) {
                Ok(v) if v.is_object() => Ok(Tool::Structured(v.to_string())),
                _ => Err(format!(
                    "structured: the output must be a JSON object, got {}",
                    args[0]
                )),
            }
        }
        _ => {
            want(args, 1, 2, "bash-bg \"COMMAND\" [\"DESCRIPTION\"]")?;
            Ok(Tool::BashBg(args[0].clone(), desc("Run in background")))
        }
    }
}

/// The other content steps: `text`, `turn`, `stderr`.
fn content_step(name: &str, args: &[String]) -> Result<Option<Step>, String> {
    Ok(Some(match name {
        "text" => {
            // Several words are joined with spaces: `text all done` works unquoted.
            want(args, 1, usize::MAX, "text \"TEXT\"")?;
            Step::Text(args.join(" "))
        }
        "turn" => {
            want(args, 0, 0, "turn")?;
            Step::Turn
        }
        "stderr" => {
            want(args, 1, usize::MAX, "stderr \"TEXT\"")?;
            Step::Stderr(args.join(" "))
        }
        _ => return Ok(None),
    }))
}

/// The endings that are not API failures: `result`, `max-turns`, `max-budget`,
/// `no-result`, `exit`, `crash-mid-line`, `no-conversation`.
fn ending_step(name: &str, args: &[String]) -> Result<Option<Step>, String> {
    Ok(Some(match name {
        "result" => Step::Result((!args.is_empty()).then(|| args.join(" "))),
        "max-turns" => {
            want(args, 0, 0, "max-turns")?;
            Step::MaxTurns
        }
        "max-budget" => {
            want(args, 0, 0, "max-budget")?;
            Step::MaxBudget
        }
        "no-result" => {
            want(args, 0, 1, "no-result [CODE]")?;
            let c = args
                .first()
                .map(|c| num::<i32>(c, "exit code"))
                .transpose()?;
            Step::NoResult(c.unwrap_or(0))
        }
        "exit" => {
            want(args, 1, 2, "exit CODE [\"STDERR\"]")?;
            let stderr = args.get(1).cloned().unwrap_or_default();
            Step::Exit(num(&args[0], "exit code")?, stderr)
        }
        "crash-mid-line" => {
            want(args, 0, 1, "crash-mid-line [abort]")?;
            Step::CrashMidLine(flag_word(args, 0, "abort", "crash-mid-line")?)
        }
        "no-conversation" | "resume-unknown" => {
            want(args, 0, 0, "no-conversation")?;
            Step::NoConversation
        }
        _ => return Ok(None),
    }))
}

/// The API failures: `api-error`, `api-retry`, `rate-limit`.
fn api_step(name: &str, args: &[String]) -> Result<Option<Step>, String> {
    Ok(Some(match name {
        "api-error" => {
            want(args, 1, 2, "api-error STATUS|network|nokey [RETRIES]")?;
            let r = args
                .get(1)
                .map(|r| num::<u32>(r, "retry count"))
                .transpose()?;
            Step::ApiError(api_kind(&args[0])?, r)
        }
        "api-retry" => {
            want(args, 1, 2, "api-retry STATUS|network [COUNT]")?;
            let n = args.get(1).map(|r| num::<u32>(r, "count")).transpose()?;
            Step::ApiRetry(api_kind(&args[0])?, n.unwrap_or(1))
        }
        "rate-limit" => {
            want(args, 0, 2, "rate-limit [RESET_IN_SECS] [ms]")?;
            let secs = args
                .first()
                .map(|a| num::<i64>(a, "reset seconds"))
                .transpose()?;
            let ms = flag_word(args, 1, "ms", "rate-limit")?;
            Step::RateLimit(secs.unwrap_or(60), ms)
        }
        _ => return Ok(None),
    }))
}

/// The timing steps: `sleep`/`silence`, `slow`, `hang`, `hang-after-result`,
/// `after-result-lines`.
fn timing_step(name: &str, args: &[String]) -> Result<Option<Step>, String> {
    Ok(Some(match name {
        "sleep" | "silence" => {
            want(args, 1, 1, "sleep MS")?;
            Step::Sleep(millis(&args[0])?)
        }
        "slow" => {
            want(args, 2, 2, "slow N MS")?;
            Step::Slow(num(&args[0], "count")?, millis(&args[1])?)
        }
        "hang" => {
            want(args, 0, 0, "hang")?;
            Step::Hang
        }
        "hang-after-result" => {
            want(args, 0, 0, "hang-after-result")?;
            Step::HangAfterResult
        }
        "after-result-lines" => {
            want(args, 0, 1, "after-result-lines [MS]")?;
            Step::AfterResultLines(args.first().map(|a| millis(a)).transpose()?)
        }
        _ => return Ok(None),
    }))
}

/// The retry-state filters: `on-attempt`, `first`/`fail-first`, `after-attempt`, each
/// wrapping one step.
fn attempt_step(name: &str, args: &[String]) -> Result<Option<Step>, String> {
    if !matches!(
        name,
        "on-attempt" | "first" | "fail-first" | "after-attempt"
    ) {
        return Ok(None);
    }
    if args.len() < 2 {
        return Err(format!("usage: {name} N STEP..."));
    }
    let n: u32 = num(&args[0], "attempt number")?;
    let inner = step(&args[1..])?;
    if inner.len() != 1 {
        return Err(format!("{name}: the step must be a single step (not demo)"));
    }
    let b = Box::new(inner.into_iter().next().unwrap_or(Step::Turn));
    Ok(Some(match name {
        "on-attempt" => Step::OnAttempt(n, b),
        "after-attempt" => Step::AfterAttempt(n, b),
        _ => Step::First(n, b),
    }))
}

/// The supervision torture steps: grandchildren, `ignore-signals`, `flood`, `alloc`,
/// `huge-line`, `bad-utf8`, `instant`.
fn torture_step(name: &str, args: &[String]) -> Result<Option<Step>, String> {
    Ok(Some(match name {
        "grandchild-setsid" | "setsid-grandchild" => {
            want(args, 0, 0, "grandchild-setsid")?;
            Step::GrandchildSetsid
        }
        "grandchild-holds-stdout" | "leak-grandchild" => {
            want(args, 0, 1, "grandchild-holds-stdout [MS]")?;
            let ms = args.first().map(|a| millis(a)).transpose()?;
            Step::GrandchildHoldsStdout(ms.unwrap_or(3_600_000))
        }
        "ignore-signals" => {
            want(args, 0, 0, "ignore-signals")?;
            Step::IgnoreSignals
        }
        "flood" => {
            want(args, 1, 2, "flood BYTES [stderr]")?;
            let e = match args.get(1).map(String::as_str) {
                None | Some("stdout") => false,
                Some("stderr") => true,
                Some(o) => return Err(format!("flood: expected 'stderr', got '{o}'")),
            };
            Step::Flood(bytes(&args[0])?, e)
        }
        "alloc" => {
            want(args, 1, 1, "alloc BYTES")?;
            Step::Alloc(bytes(&args[0])?)
        }
        "huge-line" => {
            want(args, 1, 1, "huge-line BYTES")?;
            Step::HugeLine(bytes(&args[0])?)
        }
        "bad-utf8" => {
            want(args, 0, 0, "bad-utf8")?;
            Step::BadUtf8
        }
        "instant" => {
            want(args, 0, 0, "instant")?;
            Step::Instant
        }
        _ => return Ok(None),
    }))
}
