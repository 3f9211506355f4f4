//! Renders every captured transcript and compares it with the reviewed snapshot in
//! tests/fixtures/rendered/NAME.txt. `BORG_UPDATE_SNAPSHOTS=1 cargo test` rewrites the
//! snapshots (review the diff before committing).

use borg::show::render::Renderer;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn render(bytes: &[u8], color: bool) -> Vec<String> {
    let mut r = Renderer::new(color);
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n') {
        if !line.is_empty() {
            out.extend(r.line(line));
        }
    }
    out.extend(r.finish());
    out
}

#[test]
fn fixtures_match_their_snapshots() {
    let update = std::env::var_os("BORG_UPDATE_SNAPSHOTS").is_some();
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".stream.jsonl").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 18);
    std::fs::create_dir_all(dir().join("rendered")).unwrap();
    let mut mismatched = Vec::new();
    for name in names {
        let bytes = std::fs::read(dir().join(format!("{name}.stream.jsonl"))).unwrap();
        let rendered = render(&bytes, false);
        for l in &rendered {
            assert!(
                !l.trim_start().starts_with("{\""),
                "{name}: raw JSON in {l}"
            );
        }
        let text = rendered.join("\n") + "\n";
        let snap = dir().join("rendered").join(format!("{name}.txt"));
        if update {
            std::fs::write(&snap, &text).unwrap();
        } else if std::fs::read_to_string(&snap).ok().as_deref() != Some(text.as_str()) {
            eprintln!("--- {name} rendered as:\n{text}");
            mismatched.push(name);
        }
    }
    assert!(mismatched.is_empty(), "snapshots differ: {mismatched:?}");
}

#[test]
fn colour_is_optional_and_never_hides_text() {
    let bytes = std::fs::read(dir().join("tool-errors.stream.jsonl")).unwrap();
    let plain = render(&bytes, false);
    let coloured = render(&bytes, true);
    assert_eq!(plain.len(), coloured.len());
    assert!(plain.iter().all(|l| !l.contains('\x1b')));
    assert!(coloured.iter().any(|l| l.contains("\x1b[31m")));
    let strip = |s: &str| {
        regex::Regex::new("\x1b\\[[0-9;]*m")
            .unwrap()
            .replace_all(s, "")
            .into_owned()
    };
    for (p, c) in plain.iter().zip(&coloured) {
        assert_eq!(p, &strip(c));
    }
}

#[test]
fn garbage_lines_are_markers_not_json() {
    let mut r = Renderer::new(false);
    let cases: [&[u8]; 9] = [
        b"plain text from somewhere",
        b"\xff\xfe binary",
        br#"{"type":"assistant","message":{"content":[{"type":"tool_use""#,
        b"[1,2,3]",
        br#"{"type":"mystery","payload":{"a":1}}"#,
        br#"{"type":"assistant","message":"oops"}"#,
        br#"{"type":"user","message":{"content":[{"type":"tool_result","content":{"x":1},"is_error":"no"}]}}"#,
        br#"{"type":"result","num_turns":-4,"total_cost_usd":"free","duration_ms":1e300}"#,
        b"",
    ];
    let mut all = Vec::new();
    for c in cases {
        all.extend(r.line(c));
    }
    all.extend(r.finish());
    for l in &all {
        assert!(!l.contains("{\""), "raw JSON shown: {l}");
    }
    assert_eq!(all[0].trim(), "[non-JSON] plain text from somewhere");
    assert_eq!(all[1].trim(), "[non-JSON line, 9 bytes]");
    assert!(all[2].trim().starts_with("[non-JSON line, "));
    assert!(all.iter().any(|l| l.contains("■ success · 0 turns")));
    let long = format!(
        r#"{{"type":"assistant","message":{{"content":[{{"type":"text","text":"{}"}}]}}}}"#,
        "line\\n".repeat(500)
    );
    let shown = r.line(long.as_bytes());
    assert_eq!(shown.len(), 41);
    assert!(shown[40].contains("460 more lines"));
}

#[test]
fn empty_and_unfinished_streams_say_so() {
    assert_eq!(render(b"", false), ["         (empty transcript)"]);
    let bytes = std::fs::read(dir().join("sigterm-during-bash.stream.jsonl")).unwrap();
    let out = render(&bytes, false);
    assert_eq!(
        out.last().unwrap().trim(),
        "■ no result line: the run did not finish"
    );
}

#[test]
fn usage_limit_events_are_shown() {
    let mut r = Renderer::new(false);
    let out = r.line(
        br#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1771390800000,"rateLimitType":"five_hour"}}"#,
    );
    assert_eq!(
        out,
        ["         usage limit: rejected (five_hour), resets 2026-02-18 05:00 UTC"]
    );
    assert!(r
        .line(br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#)
        .is_empty());
}

#[test]
fn oversized_lines_get_a_marker() {
    let mut r = Renderer::new(false);
    assert_eq!(
        r.oversized(123_456),
        ["         [line of 123456 bytes, too long to show]"]
    );
    assert_eq!(
        r.finish(),
        ["         ■ no result line: the run did not finish"]
    );
}
