//! Outcome and fault classification: from the transcript summary, the exit status,
//! stderr and which watchdog fired, decide the attempt's status, its error text and
//! its fault class (transient, permanent, fleet-wide, usage limit).
//!
//! The fault class drives what happens next (docs/DESIGN.md): transient faults are
//! retried, permanent ones are not, fleet-wide ones open the breaker for every task,
//! and usage limits park the fleet until the reset. The `cause` key lets the breaker
//! see the same cause several times in a row.

use crate::outcome::transcript::{abridged, ResultEvent, TranscriptSummary};
use crate::outcome::{ExitInfo, FaultClass, Status, Watchdog};
use serde::{Deserialize, Serialize};

/// What borg knows about how an attempt ended, besides the transcript.
#[derive(Debug, Clone, Default)]
pub struct EndFacts<'a> {
    /// Exit of the claude process (None when it never started).
    pub exit: Option<ExitInfo>,
    /// The last few KiB of stderr.
    pub stderr_tail: &'a str,
    /// The watchdog that stopped it, if any.
    pub watchdog: Option<Watchdog>,
    /// borg stopped it because of Ctrl-C / SIGTERM / shutdown.
    pub interrupted: bool,
    /// The spawn failed with this OS error.
    pub spawn_error: Option<&'a str>,
}

/// The classified outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    /// Attempt status.
    pub status: Status,
    /// Fault class when not succeeded.
    pub fault: Option<FaultClass>,
    /// Human-readable error: result text, else errors[], else stderr, else a description.
    pub error: Option<String>,
    /// A short stable key of the cause ("api_500", "auth_401", "no_result", "idle" ...),
    /// used by the breaker to notice the same cause N times in a row.
    pub cause: Option<String>,
    /// For usage limits: when it resets, epoch seconds.
    pub resets_at: Option<i64>,
    /// For usage limits: the limit kind (five_hour ...).
    pub limit_kind: Option<String>,
}

/// What the CLI says when `--resume` names a session it does not have.
const NO_CONVERSATION: &str = "No conversation found";

/// The CLI refused to resume: `--resume` named a session it does not have (in its
/// config folder, for this working directory), and it did nothing else.
pub fn resume_refused(summary: &TranscriptSummary) -> bool {
    summary.result.as_ref().is_some_and(|r| {
        r.is_error
            && r.subtype == "error_during_execution"
            && r.errors.iter().any(|e| e.contains(NO_CONVERSATION))
    })
}

/// Classifies an attempt.
///
/// Precedence: a successful `result` beats everything that happened after it (a
/// result-grace kill, borg stopping the child); then spawn failure, borg's own
/// interruption, the watchdogs, usage limits, the error `result`, and finally what the
/// exit and stderr say when there was no `result` at all.
pub fn classify(summary: &TranscriptSummary, facts: &EndFacts<'_>) -> Classified {
    if let Some(r) = &summary.result {
        if !r.is_error {
            return Classified {
                status: Status::Succeeded,
                fault: None,
                error: None,
                cause: None,
                resets_at: None,
                limit_kind: None,
            };
        }
    }
    if let Some(err) = facts.spawn_error {
        let missing = [
            "ENOENT",
            "No such file",
            "EACCES",
            "Permission denied",
            "not executable",
            "(os error 2)",
            "(os error 13)",
        ];
        let (fault, cause) = if missing.iter().any(|m| err.contains(m)) {
            (FaultClass::FleetWide, "claude_missing")
        } else {
            (FaultClass::Permanent, "spawn_failed")
        };
        return outcome(
            Status::SpawnFailed,
            fault,
            cause,
            Some(format!("could not start claude: {err}")),
        );
    }
    let error = error_text(summary, facts);
    if facts.interrupted {
        return outcome(
            Status::Interrupted,
            FaultClass::Interrupted,
            "interrupted",
            error,
        );
    }
    match facts.watchdog {
        Some(Watchdog::Timeout) => {
            return outcome(Status::TimedOut, FaultClass::Transient, "timeout", error)
        }
        Some(Watchdog::Idle) => {
            return outcome(Status::TimedOut, FaultClass::Transient, "idle", error)
        }
        // Retrying would most likely grow the same way again.
        Some(Watchdog::Memory) => {
            return outcome(Status::Killed, FaultClass::Permanent, "memory", error)
        }
        _ => {}
    }
    if let Some(limit) = usage_limit(summary) {
        let mut c = outcome(
            Status::RateLimited,
            FaultClass::UsageLimit,
            "usage_limit",
            error,
        );
        c.resets_at = limit.0;
        c.limit_kind = limit.1;
        return c;
    }
    if let Some(r) = &summary.result {
        let (fault, cause) = result_fault(summary, r);
        return outcome(Status::Failed, fault, &cause, error);
    }
    no_result(facts, error)
}

fn outcome(status: Status, fault: FaultClass, cause: &str, error: Option<String>) -> Classified {
    Classified {
        status,
        fault: Some(fault),
        error,
        cause: Some(cause.to_owned()),
        resets_at: None,
        limit_kind: None,
    }
}

/// A usage limit, with its reset time and kind when known. A 429 counts only with a
/// reset time: without one it is ordinary throttling, worth a retry.
fn usage_limit(summary: &TranscriptSummary) -> Option<(Option<i64>, Option<String>)> {
    let rl = summary.rate_limit.as_ref();
    if let Some(rl) = rl.filter(|rl| rl.status == "rejected") {
        return Some((rl.resets_at, rl.kind.clone()));
    }
    let reset = rl.and_then(|rl| rl.resets_at);
    let r = summary.result.as_ref()?;
    if r.api_error_status == Some(429) && reset.is_some() {
        return Some((reset, rl.and_then(|rl| rl.kind.clone())));
    }
    let text = r.result.as_deref().unwrap_or("");
    if text.contains("usage limit reached") || text.contains("hit your limit") {
        return Some((reset, rl.and_then(|rl| rl.kind.clone())));
    }
    None
}

/// Fault class and cause of an error `result` (is_error true).
fn result_fault(summary: &TranscriptSummary, r: &ResultEvent) -> (FaultClass, String) {
    let text = r.result.as_deref().unwrap_or("");
    let errors = r.errors.join("; ");
    let kind = summary.api_error_kind.as_deref();
    if text.contains("Not logged in") {
        return (FaultClass::FleetWide, "not_logged_in".into());
    }
    if r.api_error_status == Some(401)
        || text.contains("Invalid API key")
        || kind == Some("authentication_failed")
    {
        return (FaultClass::FleetWide, "auth_401".into());
    }
    if r.api_error_status == Some(403) {
        return (FaultClass::FleetWide, "auth_403".into());
    }
    if r.terminal_reason.as_deref() == Some("prompt_too_long")
        || text.contains("Prompt is too long")
    {
        return (FaultClass::Permanent, "prompt_too_long".into());
    }
    match r.subtype.as_str() {
        "error_max_turns" => return (FaultClass::Permanent, "max_turns".into()),
        "error_max_budget_usd" => return (FaultClass::Permanent, "max_budget".into()),
        "error_during_execution" if errors.contains(NO_CONVERSATION) => {
            return (FaultClass::Permanent, "resume_unknown".into())
        }
        _ => {}
    }
    match r.api_error_status {
        Some(400) => return (FaultClass::Permanent, "api_400".into()),
        Some(s @ (404 | 413)) => return (FaultClass::Permanent, format!("api_{s}")),
        Some(429) => return (FaultClass::Transient, "api_429".into()),
        Some(s) => return (FaultClass::Transient, format!("api_{s}")),
        None => {}
    }
    if kind == Some("rate_limit") {
        return (FaultClass::Transient, "api_429".into());
    }
    if text.contains("verloaded") {
        return (FaultClass::Transient, "api_529".into());
    }
    if kind == Some("server_error")
        || text.contains("Unable to connect")
        || text.contains("timed out")
    {
        return (FaultClass::Transient, "network".into());
    }
    if r.terminal_reason.as_deref() == Some("aborted_tools") {
        return (FaultClass::Transient, "aborted".into());
    }
    let cause = if r.subtype.starts_with("error_") {
        r.subtype.clone()
    } else {
        "api_error".into()
    };
    (FaultClass::Transient, cause)
}

/// No `result` line: the exit and stderr are all there is.
fn no_result(facts: &EndFacts<'_>, error: Option<String>) -> Classified {
    let exit = facts.exit.unwrap_or_default();
    if let Some(sig) = signal_of(&exit) {
        return outcome(
            Status::Killed,
            FaultClass::Transient,
            &format!("signal_{sig}"),
            error,
        );
    }
    let stderr = facts.stderr_tail;
    if stderr.contains("Not logged in") {
        return outcome(
            Status::Failed,
            FaultClass::FleetWide,
            "not_logged_in",
            error,
        );
    }
    if stderr.contains("Invalid API key") {
        return outcome(Status::Failed, FaultClass::FleetWide, "auth_401", error);
    }
    if exit.code.is_some_and(|c| c != 0) {
        if stderr.contains("cannot be used with root/sudo") {
            return outcome(Status::Failed, FaultClass::Permanent, "root_bypass", error);
        }
        let bad_args = [
            "requires --verbose",
            "is already in use",
            "unknown option",
            "error: ",
            "Error: Invalid",
            "invalid argument",
            "must be a valid UUID",
            "missing required argument",
            "too many arguments",
        ];
        if bad_args.iter().any(|p| stderr.contains(p)) {
            return outcome(
                Status::Failed,
                FaultClass::Permanent,
                "bad_arguments",
                error,
            );
        }
    }
    outcome(Status::Failed, FaultClass::Transient, "no_result", error)
}

/// The signal that ended the child: a real one, or the 128+N exit code node uses when
/// it handles SIGTERM/SIGINT itself (observed: exit 143 after SIGTERM, no result).
fn signal_of(exit: &ExitInfo) -> Option<i32> {
    exit.signal.or(match exit.code {
        Some(c) if (129..=159).contains(&c) => Some(c - 128),
        _ => None,
    })
}

/// The human error text: the result text when it is an error, else `errors[]`, else
/// the end of stderr, else a description of how the attempt ended (the description
/// comes before stderr when borg's watchdog or shutdown stopped the child).
fn error_text(summary: &TranscriptSummary, facts: &EndFacts<'_>) -> Option<String> {
    // A watchdog stop is the news: whatever the CLI said after borg's SIGINT
    // ("aborted during a tool call") is only its reaction to being stopped.
    if matches!(
        facts.watchdog,
        Some(Watchdog::Timeout | Watchdog::Idle | Watchdog::Memory)
    ) {
        let what = describe(summary, facts);
        let after = summary
            .result
            .as_ref()
            .filter(|r| r.is_error)
            .and_then(|r| r.result.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        return Some(match after {
            Some(t) => format!("{what} (the CLI then said: {})", abridged(t, 300)),
            None => what,
        });
    }
    if let Some(r) = summary.result.as_ref().filter(|r| r.is_error) {
        if let Some(t) = r.result.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            return Some(abridged(t, 500));
        }
        // `[ede_diagnostic]` entries are the CLI's internal notes, not a message.
        let joined = r
            .errors
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty() && !e.starts_with("[ede_diagnostic]"))
            .collect::<Vec<_>>()
            .join("; ");
        if !joined.is_empty() {
            return Some(abridged(&joined, 500));
        }
        if r.terminal_reason.as_deref() == Some("aborted_tools") {
            return Some("aborted during a tool call (aborted_tools)".into());
        }
    }
    // When borg itself stopped the child, that is the news; stderr would only hold
    // whatever the child happened to print last.
    let stopped_by_borg = facts.interrupted
        || matches!(
            facts.watchdog,
            Some(Watchdog::Timeout | Watchdog::Idle | Watchdog::Memory)
        );
    if !stopped_by_borg {
        if let Some(tail) = stderr_tail(facts.stderr_tail, 500) {
            return Some(tail);
        }
    }
    Some(describe(summary, facts))
}

/// The last non-empty stderr lines, at most about `max` characters.
fn stderr_tail(stderr: &str, max: usize) -> Option<String> {
    let mut picked: Vec<&str> = Vec::new();
    let mut len = 0;
    for line in stderr
        .lines()
        .rev()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
    {
        if !picked.is_empty() && len + line.len() > max {
            break;
        }
        len += line.len() + 1;
        picked.push(line);
    }
    if picked.is_empty() {
        return None;
    }
    picked.reverse();
    let text = picked.join("\n");
    let chars = text.chars().count();
    if chars > max {
        // One very long line: keep its end, which usually holds the message.
        let skip = chars - max;
        Some(format!("…{}", text.chars().skip(skip).collect::<String>()))
    } else {
        Some(text)
    }
}

fn describe(summary: &TranscriptSummary, facts: &EndFacts<'_>) -> String {
    if facts.interrupted {
        return "interrupted by borg".into();
    }
    match facts.watchdog {
        Some(Watchdog::Timeout) => return "timed out after the wall-clock timeout".into(),
        Some(Watchdog::Idle) => return "no output for longer than the idle timeout".into(),
        Some(Watchdog::Memory) => {
            return "stopped: its process tree's memory passed max_attempt_memory".into()
        }
        _ => {}
    }
    if let Some(rl) = &summary.rate_limit {
        return match rl.resets_at {
            Some(t) => format!("usage limit reached; resets at {t}"),
            None => "usage limit reached".into(),
        };
    }
    if let Some(r) = &summary.result {
        return format!(
            "error result ({})",
            if r.subtype.is_empty() {
                "no subtype"
            } else {
                &r.subtype
            }
        );
    }
    let exit = facts.exit.unwrap_or_default();
    match (exit.signal, exit.code) {
        (Some(s), _) => format!("killed by signal {s}"),
        (None, Some(c)) if signal_of(&exit).is_some() => {
            format!("no result line (exit code {c}, signal {})", c - 128)
        }
        (None, Some(c)) => format!("no result line (exit code {c})"),
        (None, None) => "no result line".into(),
    }
}
