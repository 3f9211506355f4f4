//! Unit-level checks of the transcript parser on hand-written lines: every event it
//! reads, the forms the CLI has used over time, and input that must not hurt it.

use borg::outcome::transcript::{summarize_reader, TranscriptParser, TranscriptSummary};
use borg::outcome::{ChangeKind, TestCounts, Tokens};

fn parse(lines: &[&str]) -> TranscriptSummary {
    let mut p = TranscriptParser::new();
    for l in lines {
        p.feed_line(l.as_bytes());
    }
    p.finish()
}

fn tool_use(id: &str, name: &str, input: &str) -> String {
    format!(
        r#"{{"type":"assistant","message":{{"id":"m_{id}","role":"assistant","content":[{{"type":"tool_use","id":"{id}","name":"{name}","input":{input}}}]}},"session_id":"s1"}}"#
    )
}

fn tool_result(id: &str, content: &str, is_error: bool, tur: &str) -> String {
    format!(
        r#"{{"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"{id}","type":"tool_result","content":{content},"is_error":{is_error}}}]}},"tool_use_result":{tur}}}"#
    )
}

#[test]
fn init_sets_identity_and_later_lines_do_not_override() {
    let s = parse(&[
        r#"{"type":"system","subtype":"init","cwd":"/p","session_id":"abc","model":"claude-x","claude_code_version":"9.9.9","tools":["Bash"]}"#,
        r#"{"type":"system","subtype":"api_retry","attempt":1,"error_status":500,"session_id":"other"}"#,
        r#"{"type":"system","subtype":"api_retry","attempt":2,"error_status":null}"#,
    ]);
    assert_eq!(s.session_id.as_deref(), Some("abc"));
    assert_eq!(s.model.as_deref(), Some("claude-x"));
    assert_eq!(s.claude_version.as_deref(), Some("9.9.9"));
    assert_eq!(s.api_retries, 2);
    assert_eq!(s.lines, 3);
}

#[test]
fn any_line_fills_an_unknown_session_id() {
    let s = parse(&[r#"{"type":"whatever","session_id":"late"}"#]);
    assert_eq!(s.session_id.as_deref(), Some("late"));
}

#[test]
fn tool_labels_are_short_and_relative_to_cwd() {
    let mut p = TranscriptParser::new();
    p.feed_line(
        br#"{"type":"system","subtype":"init","cwd":"/home/dev/project","session_id":"s"}"#,
    );
    let cases = [
        (
            "Write",
            r#"{"file_path":"/home/dev/project/NOTES.md","content":"x"}"#,
            "Write NOTES.md",
        ),
        (
            "Edit",
            r#"{"file_path":"/home/dev/project/src/calc.py","old_string":"a","new_string":"b"}"#,
            "Edit src/calc.py",
        ),
        (
            "Bash",
            r#"{"command":"cargo test","description":"run"}"#,
            "Bash: cargo test",
        ),
        (
            "Bash",
            r#"{"command":"\n  cd x\n  make\n"}"#,
            "Bash: cd x …",
        ),
        ("Read", r#"{"file_path":"/etc/hosts"}"#, "Read /etc/hosts"),
        ("Grep", r#"{"pattern":"fn main"}"#, "Grep fn main"),
        ("TaskList", r#"{}"#, "TaskList"),
        ("Weird", r#""not an object""#, "Weird"),
    ];
    for (i, (name, input, want)) in cases.iter().enumerate() {
        p.feed_line(tool_use(&format!("t{i}"), name, input).as_bytes());
        assert_eq!(p.summary().current_tool.as_deref(), Some(*want));
    }
    let long = format!(r#"{{"command":"echo {}"}}"#, "x".repeat(200));
    p.feed_line(tool_use("tl", "Bash", &long).as_bytes());
    let label = p.summary().current_tool.clone().unwrap();
    assert!(
        label.chars().count() < 70 && label.ends_with('…'),
        "{label}"
    );
    assert_eq!(p.summary().tools_used.get("Bash"), Some(&3));
    assert_eq!(p.summary().num_turns, 9, "one turn per distinct message id");
}

#[test]
fn file_tools_dedupe_and_keep_the_first_kind() {
    let s = parse(&[
        &tool_use("a", "Write", r#"{"file_path":"/p/new.rs","content":"x"}"#),
        &tool_result(
            "a",
            r#""File created""#,
            false,
            r#"{"type":"create","filePath":"/p/new.rs"}"#,
        ),
        &tool_use("b", "Edit", r#"{"file_path":"/p/new.rs"}"#),
        &tool_result("b", r#""updated""#, false, r#"{"filePath":"/p/new.rs"}"#),
        &tool_use("c", "MultiEdit", r#"{"file_path":"/p/old.rs"}"#),
        &tool_result("c", r#""updated""#, false, r#"{"filePath":"/p/old.rs"}"#),
        &tool_use("d", "NotebookEdit", r#"{"notebook_path":"/p/nb.ipynb"}"#),
        &tool_result("d", r#""ok""#, false, r#"{}"#),
        &tool_use("e", "Write", r#"{"file_path":"/p/denied.rs"}"#),
        &tool_result("e", r#""denied""#, true, r#""Error: denied""#),
        &tool_use("f", "Read", r#"{"file_path":"/p/read.rs"}"#),
        &tool_result("f", r#""1\tx""#, false, r#"{"type":"text"}"#),
        // A result for an id never seen changes no file.
        &tool_result("zz", r#""?""#, false, r#"{"type":"create"}"#),
    ]);
    let files: Vec<(&str, ChangeKind)> = s
        .tool_files
        .iter()
        .map(|f| (f.path.as_str(), f.change))
        .collect();
    assert_eq!(
        files,
        [
            ("/p/new.rs", ChangeKind::Created),
            ("/p/old.rs", ChangeKind::Modified),
            ("/p/nb.ipynb", ChangeKind::Modified)
        ]
    );
    assert_eq!(s.tool_errors, 1);
    assert_eq!(s.current_tool, None);
}

#[test]
fn bash_results_give_the_last_test_counts_in_string_or_block_form() {
    let s = parse(&[
        &tool_use("a", "Bash", r#"{"command":"pytest"}"#),
        &tool_result(
            "a",
            r#""==== 1 failed, 2 passed in 0.1s ====""#,
            true,
            r#""Error: Exit code 1""#,
        ),
        &tool_use("b", "Bash", r#"{"command":"pytest"}"#),
        &tool_result(
            "b",
            r#"[{"type":"text","text":"collected 3 items\n"},{"type":"text","text":"==== 3 passed in 0.1s ===="}]"#,
            false,
            r#"{"stdout":""}"#,
        ),
        // Output of a non-Bash tool that happens to look like tests is not a test run.
        &tool_use("c", "Read", r#"{"file_path":"/p/log.txt"}"#),
        &tool_result(
            "c",
            r#""==== 9 failed in 0.1s ====""#,
            false,
            r#"{"type":"text"}"#,
        ),
        // A later Bash without a summary keeps the last counts.
        &tool_use("d", "Bash", r#"{"command":"ls"}"#),
        &tool_result("d", r#""a\nb""#, false, r#"{"stdout":"a\nb"}"#),
    ]);
    assert_eq!(
        s.tests,
        Some(TestCounts {
            passed: 3,
            failed: 0,
            ignored: 0
        })
    );
    assert_eq!(s.tool_errors, 1);
}

#[test]
fn synthetic_error_and_last_text() {
    let s = parse(&[
        r#"{"type":"assistant","message":{"id":"1","role":"assistant","content":[{"type":"text","text":"first"}]}}"#,
        r#"{"type":"assistant","message":{"id":"2","model":"<synthetic>","role":"assistant","content":[{"type":"text","text":"API Error: 529 Overloaded"}]},"error":"server_error"}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"[Request interrupted by user]"}]}}"#,
    ]);
    assert_eq!(s.api_error_kind.as_deref(), Some("server_error"));
    assert_eq!(s.last_text.as_deref(), Some("API Error: 529 Overloaded"));
}

#[test]
fn result_tokens_from_model_usage_summed_else_usage() {
    let s = parse(&[
        r#"{"type":"result","subtype":"success","is_error":false,"num_turns":4,"total_cost_usd":0.5,"duration_ms":1200,
            "usage":{"input_tokens":1,"output_tokens":1},
            "modelUsage":{"opus":{"inputTokens":100,"outputTokens":10,"cacheReadInputTokens":5,"cacheCreationInputTokens":7},
                          "haiku":{"inputTokens":20,"outputTokens":2}},"permission_denials":[{"tool_name":"Bash"},{}]}"#
            .replace('\n', " ")
            .as_str(),
    ]);
    assert_eq!(
        s.tokens,
        Tokens {
            input: 120,
            output: 12,
            cache_read: 5,
            cache_creation: 7
        }
    );
    assert_eq!((s.cost_usd, s.num_turns), (0.5, 4));
    let r = s.result.unwrap();
    assert_eq!(
        (r.duration_ms, r.permission_denials, r.api_error_status),
        (1200, 2, None)
    );

    let s = parse(&[
        r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"modelUsage":{},"usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":5,"cache_creation_input_tokens":6}}"#,
    ]);
    assert_eq!(
        s.tokens,
        Tokens {
            input: 3,
            output: 4,
            cache_read: 5,
            cache_creation: 6
        }
    );
    assert_eq!(s.result.unwrap().api_error_status, Some(529));
}

#[test]
fn rate_limit_events_in_seconds_or_milliseconds() {
    let s = parse(&[
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1771390800,"rateLimitType":"five_hour"}}"#,
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1}}"#,
    ]);
    let rl = s.rate_limit.unwrap();
    assert_eq!(
        (rl.status.as_str(), rl.resets_at, rl.kind.as_deref()),
        ("rejected", Some(1771390800), Some("five_hour"))
    );

    let s = parse(&[
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1771390800123}}"#,
    ]);
    assert_eq!(s.rate_limit.unwrap().resets_at, Some(1771390800));

    let s = parse(&[
        r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1771390800}}"#,
    ]);
    assert_eq!(s.rate_limit, None);
}

#[test]
fn old_usage_limit_text_in_the_result() {
    let s = parse(&[
        r#"{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1771390800"}"#,
    ]);
    let rl = s.rate_limit.unwrap();
    assert_eq!(
        (rl.status.as_str(), rl.resets_at),
        ("rejected", Some(1771390800))
    );
}

#[test]
fn garbage_is_counted_never_fatal() {
    let huge = format!(
        r#"{{"type":"result","num_turns":{},"total_cost_usd":1e308,"duration_ms":-5}}"#,
        "9".repeat(400)
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(
        r#"{{"type":"user","message":{}1{}}}"#,
        r#"{"a":"#.repeat(5000),
        "}".repeat(5000)
    );
    let lines: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        br#"{"type":"assistant","message":{"content":[{"type":"tool_use""#.to_vec(),
        br#"{"type":"result","subtype":"success","is_error":false"#.to_vec(),
        b"".to_vec(),
        b"   ".to_vec(),
        b"[1,2,3]".to_vec(),
        b"42".to_vec(),
        b"{} trailing".to_vec(),
        br#"{"type":"user","message":{"content":[{"type":"tool_result","content":"\xff"}]}}"#.to_vec(),
        deep.into_bytes(),
        deep_obj.into_bytes(),
        huge.into_bytes(),
        // Wrong types everywhere: read as absent, the line still counts.
        br#"{"type":"assistant","message":"oops","error":7,"session_id":["x"]}"#.to_vec(),
        br#"{"type":"assistant","message":{"id":5,"content":[1,"two",null,{"type":"tool_use","name":["x"],"input":[1]}]}}"#.to_vec(),
        br#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":9,"content":{"x":1},"is_error":"yes"}]},"tool_use_result":[1]}"#.to_vec(),
        br#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":"1771390800"}}"#.to_vec(),
        br#"{"type":"result","subtype":7,"is_error":"true","api_error_status":"429","errors":"no","usage":[],"modelUsage":{"m":5},"permission_denials":{}}"#.to_vec(),
        br#"{"type":{"nested":true}}"#.to_vec(),
    ];
    let mut p = TranscriptParser::new();
    for l in &lines {
        p.feed_line(l);
    }
    let s = p.finish();
    assert_eq!(s.lines, lines.len() as u64);
    // Not JSON, truncated, not an object, trailing bytes, invalid UTF-8, nested too
    // deep, a number beyond f64: 10. Deep nesting inside a skipped field is fine.
    assert_eq!(s.bad_lines, 10);
    let r = s.result.unwrap();
    assert_eq!(
        (r.subtype.as_str(), r.is_error, r.api_error_status),
        ("", false, Some(429))
    );
    assert_eq!(s.rate_limit.unwrap().resets_at, Some(1771390800));
    assert_eq!(s.tools_used.get("tool"), Some(&1));
}

#[test]
fn the_result_of_the_huge_numbers_line_is_sane() {
    let line = format!(
        r#"{{"type":"result","num_turns":{},"total_cost_usd":-3,"duration_ms":1e300}}"#,
        "9".repeat(30)
    );
    let s = parse(&[&line]);
    let r = s.result.unwrap();
    assert_eq!(r.num_turns, u64::MAX);
    assert_eq!(r.total_cost_usd, 0.0);
    assert_eq!(r.duration_ms, u64::MAX);
}

#[test]
fn summarize_reader_counts_oversized_and_unterminated_lines() {
    let mut input = Vec::new();
    input.extend_from_slice(br#"{"type":"system","subtype":"init","session_id":"s"}"#);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(format!(r#"{{"type":"x","pad":"{}"}}"#, "p".repeat(5000)).as_bytes());
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(
        br#"{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.25}"#,
    );
    let s = summarize_reader(&input[..], 1000).unwrap();
    assert_eq!((s.lines, s.oversized_lines, s.bad_lines), (3, 1, 0));
    assert_eq!(s.cost_usd, 0.25);
    assert_eq!(s.session_id.as_deref(), Some("s"));
}

#[test]
fn many_unanswered_tool_calls_stay_bounded() {
    let mut p = TranscriptParser::new();
    for i in 0..5000 {
        p.feed_line(
            tool_use(
                &format!("t{i}"),
                "Write",
                &format!(r#"{{"file_path":"/p/{i}"}}"#),
            )
            .as_bytes(),
        );
    }
    // The newest calls are still matched after the oldest were forgotten.
    p.feed_line(tool_result("t4999", r#""ok""#, false, r#"{"type":"create"}"#).as_bytes());
    p.feed_line(tool_result("t0", r#""ok""#, false, r#"{"type":"create"}"#).as_bytes());
    let s = p.finish();
    assert_eq!(s.tool_files.len(), 1);
    assert_eq!(s.tool_files[0].path, "/p/4999");
}
