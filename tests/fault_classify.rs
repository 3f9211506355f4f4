//! One test per branch of the fault classifier, on hand-built summaries.

use borg::outcome::fault::{classify, Classified, EndFacts};
use borg::outcome::transcript::{RateLimit, ResultEvent, TranscriptSummary};
use borg::outcome::{ExitInfo, FaultClass, Status, Watchdog};

fn with_result(r: ResultEvent) -> TranscriptSummary {
    TranscriptSummary {
        result: Some(r),
        ..Default::default()
    }
}

fn error_result(status: Option<i64>, text: &str) -> ResultEvent {
    ResultEvent {
        subtype: "success".into(),
        is_error: true,
        api_error_status: status,
        result: Some(text.into()),
        ..Default::default()
    }
}

fn exit(code: i32) -> EndFacts<'static> {
    EndFacts {
        exit: Some(ExitInfo {
            code: Some(code),
            signal: None,
        }),
        ..Default::default()
    }
}

/// An API-error result with the kind the `assistant` error line named, if any.
fn api_error(status: Option<i64>, kind: Option<&str>, text: &str) -> TranscriptSummary {
    TranscriptSummary {
        api_error_kind: kind.map(Into::into),
        result: Some(error_result(status, text)),
        ..Default::default()
    }
}

/// An error result of `subtype` with these `errors`.
fn failed_result(subtype: &str, errors: &[&str]) -> ResultEvent {
    ResultEvent {
        subtype: subtype.into(),
        is_error: true,
        errors: errors.iter().map(|e| e.to_string()).collect(),
        ..Default::default()
    }
}

/// Exit with `code` and this stderr tail.
fn exit_with_stderr(code: i32, stderr_tail: &str) -> EndFacts<'_> {
    EndFacts {
        stderr_tail,
        ..exit(code)
    }
}

/// Killed by `signal`, no exit code.
fn killed(signal: i32) -> EndFacts<'static> {
    EndFacts {
        exit: Some(ExitInfo {
            code: None,
            signal: Some(signal),
        }),
        ..Default::default()
    }
}

/// The child could not be started.
fn spawn_error(err: &str) -> EndFacts<'_> {
    EndFacts {
        spawn_error: Some(err),
        ..Default::default()
    }
}

fn v(c: &Classified) -> (Status, Option<FaultClass>, Option<&str>) {
    (c.status, c.fault, c.cause.as_deref())
}

#[test]
fn success_beats_result_grace_and_interruption() {
    let s = with_result(ResultEvent {
        subtype: "success".into(),
        ..Default::default()
    });
    for facts in [
        exit(0),
        EndFacts {
            watchdog: Some(Watchdog::ResultGrace),
            ..exit(143)
        },
        EndFacts {
            interrupted: true,
            ..Default::default()
        },
        killed(9),
    ] {
        let c = classify(&s, &facts);
        assert_eq!(v(&c), (Status::Succeeded, None, None));
        assert_eq!(c.error, None);
    }
}

#[test]
fn spawn_errors() {
    let s = TranscriptSummary::default();
    for err in [
        "No such file or directory (os error 2)",
        "Permission denied (os error 13)",
        "ENOENT",
        "EACCES",
    ] {
        let c = classify(&s, &spawn_error(err));
        assert_eq!(
            v(&c),
            (
                Status::SpawnFailed,
                Some(FaultClass::FleetWide),
                Some("claude_missing")
            ),
            "{err}"
        );
        assert!(c.error.unwrap().contains(err));
    }
    let c = classify(&s, &spawn_error("Too many open files (os error 24)"));
    assert_eq!(
        v(&c),
        (
            Status::SpawnFailed,
            Some(FaultClass::Permanent),
            Some("spawn_failed")
        )
    );
}

#[test]
fn interrupted_by_borg() {
    let s = with_result(error_result(Some(500), "API Error: 500"));
    let c = classify(
        &s,
        &EndFacts {
            interrupted: true,
            ..exit(1)
        },
    );
    assert_eq!(
        v(&c),
        (
            Status::Interrupted,
            Some(FaultClass::Interrupted),
            Some("interrupted")
        )
    );
    let c = classify(
        &TranscriptSummary::default(),
        &EndFacts {
            interrupted: true,
            ..Default::default()
        },
    );
    assert_eq!(c.error.as_deref(), Some("interrupted by borg"));
}

#[test]
fn watchdogs() {
    let s = TranscriptSummary::default();
    let c = classify(
        &s,
        &EndFacts {
            watchdog: Some(Watchdog::Timeout),
            ..exit(143)
        },
    );
    assert_eq!(
        v(&c),
        (
            Status::TimedOut,
            Some(FaultClass::Transient),
            Some("timeout")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("timed out after the wall-clock timeout")
    );
    let c = classify(
        &s,
        &EndFacts {
            watchdog: Some(Watchdog::Idle),
            stderr_tail: "warning: something unrelated",
            ..Default::default()
        },
    );
    assert_eq!(
        v(&c),
        (Status::TimedOut, Some(FaultClass::Transient), Some("idle"))
    );
    assert_eq!(
        c.error.as_deref(),
        Some("no output for longer than the idle timeout")
    );
}

#[test]
fn usage_limits() {
    let rejected = RateLimit {
        status: "rejected".into(),
        resets_at: Some(1771390800),
        kind: Some("five_hour".into()),
    };
    let s = TranscriptSummary {
        rate_limit: Some(rejected.clone()),
        result: Some(error_result(Some(429), "You've hit your limit")),
        ..Default::default()
    };
    let c = classify(&s, &exit(1));
    assert_eq!(
        v(&c),
        (
            Status::RateLimited,
            Some(FaultClass::UsageLimit),
            Some("usage_limit")
        )
    );
    assert_eq!(
        (c.resets_at, c.limit_kind.as_deref()),
        (Some(1771390800), Some("five_hour"))
    );

    // A rejection with no result at all (the child was killed while parked) still parks.
    let s = TranscriptSummary {
        rate_limit: Some(rejected),
        ..Default::default()
    };
    assert_eq!(classify(&s, &exit(143)).status, Status::RateLimited);

    // A 429 with a reset time known from a warning event.
    let warning = RateLimit {
        status: "allowed_warning".into(),
        resets_at: Some(1771390900),
        kind: None,
    };
    let s = TranscriptSummary {
        rate_limit: Some(warning),
        result: Some(error_result(Some(429), "API Error: 429")),
        ..Default::default()
    };
    let c = classify(&s, &exit(1));
    assert_eq!(
        (c.status, c.resets_at),
        (Status::RateLimited, Some(1771390900))
    );

    // The old text form: the parser turns it into a rate limit too.
    let mut p = borg::outcome::transcript::TranscriptParser::new();
    p.feed_line(br#"{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1771390800"}"#);
    let c = classify(&p.finish(), &exit(1));
    assert_eq!(
        (c.status, c.resets_at),
        (Status::RateLimited, Some(1771390800))
    );
    assert_eq!(
        c.error.as_deref(),
        Some("Claude AI usage limit reached|1771390800")
    );
}

#[test]
fn plain_429_is_transient() {
    let s = with_result(error_result(Some(429), "API Error: 429 rate_limit_error"));
    let c = classify(&s, &exit(1));
    assert_eq!(
        v(&c),
        (Status::Failed, Some(FaultClass::Transient), Some("api_429"))
    );
    let s = api_error(None, Some("rate_limit"), "API Error: Rate limited");
    assert_eq!(classify(&s, &exit(1)).cause.as_deref(), Some("api_429"));
}

#[test]
fn auth_errors_are_fleet_wide() {
    let cases = [
        (Some(401), "whatever", None, "auth_401"),
        (
            None,
            "Invalid API key · Fix external API key",
            None,
            "auth_401",
        ),
        (
            None,
            "Not logged in · Please run /login",
            Some("authentication_failed"),
            "not_logged_in",
        ),
        (None, "API Error", Some("authentication_failed"), "auth_401"),
        (Some(403), "forbidden", None, "auth_403"),
    ];
    for (status, text, kind, cause) in cases {
        let s = api_error(status, kind, text);
        let c = classify(&s, &exit(1));
        assert_eq!(
            v(&c),
            (Status::Failed, Some(FaultClass::FleetWide), Some(cause)),
            "{text}"
        );
        assert_eq!(c.error.as_deref(), Some(text));
    }
}

#[test]
fn permanent_results() {
    let mut too_long = error_result(Some(400), "Prompt is too long");
    too_long.terminal_reason = Some("prompt_too_long".into());
    let turns = failed_result("error_max_turns", &["Reached maximum number of turns (2)"]);
    let budget = failed_result(
        "error_max_budget_usd",
        &["Reached maximum budget ($0.02)", "second"],
    );
    let resume = failed_result(
        "error_during_execution",
        &["No conversation found with session ID: x"],
    );
    let cases = [
        (too_long, "prompt_too_long", "Prompt is too long"),
        (
            error_result(Some(400), "API Error: 400 bad"),
            "api_400",
            "API Error: 400 bad",
        ),
        (turns, "max_turns", "Reached maximum number of turns (2)"),
        (
            budget,
            "max_budget",
            "Reached maximum budget ($0.02); second",
        ),
        (
            resume,
            "resume_unknown",
            "No conversation found with session ID: x",
        ),
    ];
    for (r, cause, error) in cases {
        let c = classify(&with_result(r), &exit(1));
        assert_eq!(
            v(&c),
            (Status::Failed, Some(FaultClass::Permanent), Some(cause))
        );
        assert_eq!(c.error.as_deref(), Some(error));
    }
}

#[test]
fn transient_results() {
    let cases = [
        (
            Some(500),
            None,
            "API Error: 500 Internal server error",
            "api_500",
        ),
        (Some(502), None, "API Error: 502", "api_502"),
        (Some(503), None, "API Error: 503", "api_503"),
        (Some(529), None, "API Error: 529 Overloaded", "api_529"),
        (
            None,
            None,
            "API Error: Repeated 529 Overloaded errors",
            "api_529",
        ),
        (
            None,
            Some("server_error"),
            "API Error: Unable to connect to API (ConnectionRefused)",
            "network",
        ),
        (None, None, "API Error: Request timed out.", "network"),
        (None, None, "something new", "api_error"),
    ];
    for (status, kind, text, cause) in cases {
        let s = api_error(status, kind, text);
        let c = classify(&s, &exit(1));
        assert_eq!(
            v(&c),
            (Status::Failed, Some(FaultClass::Transient), Some(cause)),
            "{text}"
        );
    }
    let odd = failed_result("error_during_execution", &[]);
    let c = classify(&with_result(odd), &exit(1));
    assert_eq!(
        v(&c),
        (
            Status::Failed,
            Some(FaultClass::Transient),
            Some("error_during_execution")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("error result (error_during_execution)")
    );
}

#[test]
fn no_result_killed_by_signal() {
    let s = TranscriptSummary::default();
    let c = classify(&s, &killed(9));
    assert_eq!(
        v(&c),
        (
            Status::Killed,
            Some(FaultClass::Transient),
            Some("signal_9")
        )
    );
    assert_eq!(c.error.as_deref(), Some("killed by signal 9"));
}

#[test]
fn no_result_argument_errors() {
    let s = TranscriptSummary::default();
    let cases = [
        ("Error: When using --print, --output-format=stream-json requires --verbose", "bad_arguments"),
        ("Error: Session ID 123 is already in use.", "bad_arguments"),
        ("error: unknown option '--frobnicate'", "bad_arguments"),
        ("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons", "root_bypass"),
    ];
    for (stderr, cause) in cases {
        let c = classify(&s, &exit_with_stderr(1, stderr));
        assert_eq!(
            v(&c),
            (Status::Failed, Some(FaultClass::Permanent), Some(cause)),
            "{stderr}"
        );
        assert_eq!(c.error.as_deref(), Some(stderr));
    }
    let c = classify(
        &s,
        &exit_with_stderr(1, "Invalid API key · Fix external API key\n"),
    );
    assert_eq!(
        v(&c),
        (
            Status::Failed,
            Some(FaultClass::FleetWide),
            Some("auth_401")
        )
    );
    let c = classify(&s, &exit_with_stderr(1, "Not logged in"));
    assert_eq!(
        v(&c),
        (
            Status::Failed,
            Some(FaultClass::FleetWide),
            Some("not_logged_in")
        )
    );
}

#[test]
fn no_result_otherwise_transient() {
    let s = TranscriptSummary::default();
    // SIGINT while waiting on the API: exit 0 and only the init line.
    let c = classify(&s, &exit(0));
    assert_eq!(
        v(&c),
        (
            Status::Failed,
            Some(FaultClass::Transient),
            Some("no_result")
        )
    );
    assert_eq!(c.error.as_deref(), Some("no result line (exit code 0)"));
    let c = classify(
        &s,
        &exit_with_stderr(1, "\n\nTypeError: boom\n    at x (y.js:1)\n\n"),
    );
    assert_eq!(
        v(&c),
        (
            Status::Failed,
            Some(FaultClass::Transient),
            Some("no_result")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("TypeError: boom\n    at x (y.js:1)")
    );
    let c = classify(&s, &EndFacts::default());
    assert_eq!(c.error.as_deref(), Some("no result line"));
}

#[test]
fn stderr_error_text_is_abridged() {
    let s = TranscriptSummary::default();
    let long: String = (0..200).map(|i| format!("line {i} of noise\n")).collect();
    let c = classify(&s, &exit_with_stderr(1, &long));
    let e = c.error.unwrap();
    assert!(e.len() <= 520 && e.ends_with("line 199 of noise"), "{e}");
    let one = "x".repeat(5000);
    let c = classify(&s, &exit_with_stderr(1, &one));
    assert_eq!(c.error.unwrap().chars().count(), 501);
    let r = error_result(Some(500), &"é".repeat(2000));
    let c = classify(&with_result(r), &exit(1));
    assert_eq!(c.error.unwrap().chars().count(), 501);
}
