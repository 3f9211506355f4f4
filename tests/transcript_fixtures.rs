//! Runs the transcript parser and the fault classifier over every captured transcript
//! in tests/fixtures and checks what they conclude against what really happened.

use borg::outcome::fault::{classify, Classified, EndFacts};
use borg::outcome::transcript::{summarize_file, TranscriptSummary};
use borg::outcome::{ChangeKind, ExitInfo, FaultClass, Status, TestCounts, Tokens};
use std::path::PathBuf;

fn fixture(name: &str, ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.stream.{ext}"))
}

fn load(name: &str) -> (TranscriptSummary, Classified) {
    let summary = summarize_file(&fixture(name, "jsonl")).unwrap();
    let code: i32 = std::fs::read_to_string(fixture(name, "exitcode"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stderr = std::fs::read_to_string(fixture(name, "stderr")).unwrap();
    let exit = if code < 0 {
        ExitInfo {
            code: None,
            signal: Some(-code),
        }
    } else {
        ExitInfo {
            code: Some(code),
            signal: None,
        }
    };
    let facts = EndFacts {
        exit: Some(exit),
        stderr_tail: &stderr,
        ..Default::default()
    };
    let classified = classify(&summary, &facts);
    (summary, classified)
}

fn all_fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".stream.jsonl").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Status, fault and cause in one comparable tuple.
fn verdict(c: &Classified) -> (Status, Option<FaultClass>, Option<&str>) {
    (c.status, c.fault, c.cause.as_deref())
}

fn tc(passed: u64, failed: u64, ignored: u64) -> Option<TestCounts> {
    Some(TestCounts {
        passed,
        failed,
        ignored,
    })
}

fn files(s: &TranscriptSummary) -> Vec<(&str, ChangeKind)> {
    s.tool_files
        .iter()
        .map(|f| (f.path.as_str(), f.change))
        .collect()
}

fn tokens(input: u64, output: u64, cache_read: u64) -> Tokens {
    Tokens {
        input,
        output,
        cache_read,
        cache_creation: 0,
    }
}

#[test]
fn every_fixture_is_covered_and_clean() {
    let covered = [
        "bash-background",
        "file-changes",
        "http401",
        "http500-maxretries2",
        "input-stream-json",
        "json-schema",
        "max-budget",
        "max-turns-2",
        "no-api-key",
        "perm-acceptEdits",
        "resume-unknown",
        "root-bypass-refused",
        "sigint-during-bash",
        "sigterm-during-bash",
        "success",
        "success-noverbose",
        "success-stdin",
        "tool-errors",
    ];
    assert_eq!(
        all_fixtures(),
        covered,
        "a new fixture needs its own test below"
    );
    for name in all_fixtures() {
        let (s, c) = load(&name);
        assert_eq!(s.bad_lines, 0, "{name}");
        assert_eq!(s.oversized_lines, 0, "{name}");
        assert_eq!(
            c.status == Status::Succeeded,
            c.error.is_none(),
            "{name}: error text iff not succeeded"
        );
        assert_eq!(c.status == Status::Succeeded, c.fault.is_none(), "{name}");
    }
}

#[test]
fn success() {
    for name in ["success", "success-stdin"] {
        let (s, c) = load(name);
        assert_eq!(verdict(&c), (Status::Succeeded, None, None));
        assert_eq!(s.tests, tc(3, 0, 0));
        assert_eq!(
            files(&s),
            [
                ("/home/dev/project/NOTES.md", ChangeKind::Created),
                ("/home/dev/project/calc.py", ChangeKind::Modified)
            ]
        );
        assert_eq!(s.cost_usd, 0.041499999999999995);
        assert_eq!(s.tokens, tokens(6600, 330, 500));
        assert_eq!(s.num_turns, 5);
        assert_eq!(s.tool_errors, 0);
        assert_eq!(s.current_tool, None);
        assert_eq!(s.claude_version.as_deref(), Some("2.1.197"));
        assert_eq!(s.model.as_deref(), Some("claude-opus-4-8[1m]"));
        assert_eq!(s.lines, 12);
        let used: Vec<(&str, u64)> = s.tools_used.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(used, [("Bash", 1), ("Edit", 1), ("Read", 1), ("Write", 1)]);
        let r = s.result.as_ref().unwrap();
        assert_eq!(
            (r.subtype.as_str(), r.is_error, r.duration_ms),
            ("success", false, r.duration_ms)
        );
        assert_eq!(r.terminal_reason.as_deref(), Some("completed"));
        assert_eq!(
            s.last_text.as_deref(),
            Some("Done. NOTES.md created, calc.add fixed, tests: test result: ok. 3 passed; 0 failed.")
        );
    }
    let (s, _) = load("success");
    assert_eq!(
        s.session_id.as_deref(),
        Some("470a0a8f-122c-41b2-824c-fac7f58a93f3")
    );
    assert_eq!(s.result.unwrap().duration_ms, 837);
}

#[test]
fn file_changes_only_tool_events() {
    let (s, c) = load("file-changes");
    assert_eq!(verdict(&c), (Status::Succeeded, None, None));
    // The sed -i through Bash changed test_calc.py too: no tool event says so.
    assert_eq!(
        files(&s),
        [
            ("/home/dev/project/README.md", ChangeKind::Modified),
            (
                "/home/dev/project/src/deep/new_module.py",
                ChangeKind::Created
            ),
            ("/home/dev/project/calc.py", ChangeKind::Modified),
        ]
    );
    assert_eq!(s.tests, None);
    assert_eq!(s.cost_usd, 0.045);
    assert_eq!(s.tokens, tokens(6000, 600, 0));
    assert_eq!(s.num_turns, 7);
}

#[test]
fn tool_errors() {
    let (s, c) = load("tool-errors");
    assert_eq!(verdict(&c), (Status::Succeeded, None, None));
    assert_eq!(s.tests, tc(1, 2, 0));
    assert_eq!(s.tool_errors, 4);
    assert!(s.tool_files.is_empty(), "failed edits change nothing");
    assert_eq!(s.cost_usd, 0.0375);
}

#[test]
fn http401_is_fleet_wide() {
    let (s, c) = load("http401");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::FleetWide),
            Some("auth_401")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("Invalid API key · Fix external API key")
    );
    assert_eq!(s.result.as_ref().unwrap().api_error_status, Some(401));
    assert_eq!(s.api_retries, 10);
    assert_eq!(s.api_error_kind.as_deref(), Some("authentication_failed"));
    assert_eq!(s.cost_usd, 0.0);
    assert_eq!(s.tokens, Tokens::default());
}

#[test]
fn http500_is_transient() {
    let (s, c) = load("http500-maxretries2");
    assert_eq!(
        verdict(&c),
        (Status::Failed, Some(FaultClass::Transient), Some("api_500"))
    );
    assert!(c
        .error
        .as_deref()
        .unwrap()
        .starts_with("API Error: 500 Internal server error."));
    assert_eq!(s.api_retries, 2);
    assert_eq!(s.api_error_kind.as_deref(), Some("server_error"));
}

#[test]
fn no_api_key_is_fleet_wide() {
    let (_, c) = load("no-api-key");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::FleetWide),
            Some("not_logged_in")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("Not logged in · Please run /login")
    );
}

#[test]
fn max_turns_and_budget_are_permanent() {
    let (s, c) = load("max-turns-2");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::Permanent),
            Some("max_turns")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("Reached maximum number of turns (2)")
    );
    assert_eq!((s.num_turns, s.cost_usd), (3, 0.015));
    assert_eq!(s.result.as_ref().unwrap().result, None);

    let (s, c) = load("max-budget");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::Permanent),
            Some("max_budget")
        )
    );
    assert_eq!(c.error.as_deref(), Some("Reached maximum budget ($0.02)"));
    // modelUsage is right where usage lags one call behind (claude-cli.md §4.4).
    assert_eq!(s.tokens, tokens(3000, 300, 0));
    assert_eq!(s.cost_usd, 0.0225);
    // The last tool_use was never executed; the result still ends it.
    assert_eq!(s.current_tool, None);
}

#[test]
fn resume_unknown_is_permanent() {
    let (s, c) = load("resume-unknown");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::Permanent),
            Some("resume_unknown")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("No conversation found with session ID: 99999999-2222-4333-8444-555555555555")
    );
    assert_eq!(
        s.session_id.as_deref(),
        Some("99999999-2222-4333-8444-555555555555")
    );
    assert_eq!(s.num_turns, 0);
}

#[test]
fn argument_errors_are_permanent() {
    let (s, c) = load("root-bypass-refused");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::Permanent),
            Some("root_bypass")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons")
    );
    assert_eq!(
        (s.lines, s.result.is_none(), s.session_id.is_none()),
        (0, true, true)
    );

    let (_, c) = load("success-noverbose");
    assert_eq!(
        verdict(&c),
        (
            Status::Failed,
            Some(FaultClass::Permanent),
            Some("bad_arguments")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("Error: When using --print, --output-format=stream-json requires --verbose")
    );
}

#[test]
fn sigint_during_bash() {
    let (s, c) = load("sigint-during-bash");
    // Nobody in borg sent it here (no facts say so): an aborted run, worth a retry.
    assert_eq!(
        verdict(&c),
        (Status::Failed, Some(FaultClass::Transient), Some("aborted"))
    );
    assert_eq!(
        c.error.as_deref(),
        Some("aborted during a tool call (aborted_tools)")
    );
    assert_eq!(s.tool_errors, 1);
    assert_eq!(s.cost_usd, 0.0075);
}

#[test]
fn sigterm_during_bash_exit_143() {
    let (s, c) = load("sigterm-during-bash");
    // 143 is node's exit code after handling SIGTERM: read as killed by signal 15.
    assert_eq!(
        verdict(&c),
        (
            Status::Killed,
            Some(FaultClass::Transient),
            Some("signal_15")
        )
    );
    assert_eq!(
        c.error.as_deref(),
        Some("no result line (exit code 143, signal 15)")
    );
    assert_eq!(
        s.session_id.as_deref(),
        Some("eb7e3489-ba50-42fd-a2ea-efd927bc8639")
    );
    assert_eq!(s.num_turns, 1, "turns counted live when no result came");
    assert_eq!(
        s.current_tool.as_deref(),
        Some("Bash: echo started > started.txt; sleep 300; echo finished > finis…")
    );
}

#[test]
fn bash_background_lines_after_result() {
    let (s, c) = load("bash-background");
    assert_eq!(verdict(&c), (Status::Succeeded, None, None));
    assert_eq!(s.lines, 8, "the task_* lines after the result are read too");
    assert_eq!(s.cost_usd, 0.015);
    assert_eq!(s.tools_used.get("Bash"), Some(&1));
}

#[test]
fn input_stream_json_last_result_counts() {
    let (s, c) = load("input-stream-json");
    assert_eq!(verdict(&c), (Status::Succeeded, None, None));
    let r = s.result.as_ref().unwrap();
    assert_eq!(r.result.as_deref(), Some("Answer to the second message."));
    assert_eq!(s.cost_usd, 0.015, "cumulative over the session");
    assert_eq!(s.tokens, tokens(2000, 200, 0));
    assert_eq!(
        s.last_text.as_deref(),
        Some("Answer to the second message.")
    );
}

#[test]
fn perm_accept_edits_denial_still_succeeds() {
    let (s, c) = load("perm-acceptEdits");
    assert_eq!(verdict(&c), (Status::Succeeded, None, None));
    assert_eq!(s.result.as_ref().unwrap().permission_denials, 1);
    assert_eq!(s.tool_errors, 1);
    assert_eq!(s.tests, None, "the test run was denied");
    assert_eq!(
        files(&s),
        [
            ("/home/dev/project/NOTES.md", ChangeKind::Created),
            ("/home/dev/project/calc.py", ChangeKind::Modified)
        ]
    );
}

#[test]
fn json_schema() {
    let (s, c) = load("json-schema");
    assert_eq!(verdict(&c), (Status::Succeeded, None, None));
    assert_eq!(
        s.result.as_ref().unwrap().result.as_deref(),
        Some("{\"passed\":3,\"failed\":0}")
    );
    assert_eq!(s.tools_used.get("StructuredOutput"), Some(&1));
    assert!(s.tool_files.is_empty());
    assert_eq!(
        s.result.as_ref().unwrap().structured_output,
        Some(serde_json::json!({"passed": 3, "failed": 0}))
    );
}

#[test]
fn facts_override_the_transcript() {
    // A successful result stands even if borg stopped the child after it.
    let (s, _) = load("bash-background");
    let facts = EndFacts {
        interrupted: true,
        watchdog: Some(borg::outcome::Watchdog::ResultGrace),
        ..Default::default()
    };
    assert_eq!(classify(&s, &facts).status, Status::Succeeded);
    // Without a successful result, borg's own interruption wins over the exit code.
    let (s, _) = load("sigterm-during-bash");
    let exit = Some(ExitInfo {
        code: Some(143),
        signal: None,
    });
    let facts = EndFacts {
        interrupted: true,
        exit,
        ..Default::default()
    };
    let c = classify(&s, &facts);
    assert_eq!(
        verdict(&c),
        (
            Status::Interrupted,
            Some(FaultClass::Interrupted),
            Some("interrupted")
        )
    );
}
