//! Checked work with the real Claude Code CLI (the pinned 2.1.197), as in
//! `tests/real_cli.rs`: `borg run` starts the real binary against the scripted
//! Messages API on loopback (`tests/support/mock_api.rs`). The agent's first fix is
//! wrong, the gate (the template's `bash run_tests.sh`) finds it, a fix round resumes
//! the real session with `--resume`, and a reviewer answers through the real
//! `--json-schema` and its `structured_output`.
//!
//! The CLI is found through `BORG_REAL_CLAUDE`, else in `.cache/claude-code`; without
//! it the test passes after a loud notice, unless `BORG_REQUIRE_REAL_CLAUDE=1` or
//! `CI=true` (then it fails).

mod common;
#[path = "support/mock_api.rs"]
mod mock_api;

use common::*;
use mock_api::{MockApi, Script, Turn};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The real CLI, or None (after a notice) when it is absent and not required.
fn real_claude() -> Option<PathBuf> {
    let path = std::env::var_os("BORG_REAL_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".cache/claude-code/node_modules/@anthropic-ai/claude-code/bin/claude.exe")
        });
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 1 << 20) {
        return Some(path);
    }
    let required = std::env::var("BORG_REQUIRE_REAL_CLAUDE").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    let msg = format!(
        "the real Claude Code CLI is not installed at {} (scripts/install-claude.sh or BORG_REAL_CLAUDE)",
        path.display()
    );
    if required {
        panic!("{msg}; BORG_REQUIRE_REAL_CLAUDE=1 or CI=true requires it");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n===== SKIPPING THE REAL-CLI VERIFICATION TEST: {msg} =====\n"
    );
    None
}

fn edit(old: &str, new: &str) -> Turn {
    Turn::tool(
        "Edit",
        json!({"file_path": "{{CWD}}/calc.py", "old_string": old, "new_string": new}),
    )
}

#[test]
fn a_wrong_fix_is_caught_by_the_gate_fixed_in_a_resumed_session_and_approved() {
    let Some(claude) = real_claude() else {
        return;
    };
    let reviewer = Script::new(vec![Turn::tool(
        "StructuredOutput",
        json!({"verdict": "approve", "comments": []}),
    )])
    .when("Review the work another agent did");
    // Turns 0-2 are the attempt; the resumed session holds them, so it goes on at 3.
    let developer = Script::new(vec![
        Turn::tool("Read", json!({"file_path": "{{CWD}}/calc.py"})),
        edit("    return a - b", "    return b - a"),
        Turn::text("Fixed add(); the tests pass."),
        edit("    return b - a", "    return a + b"),
        Turn::text("Now add() really adds."),
    ]);
    let api = MockApi::start(vec![reviewer, developer]);
    let sb = Sandbox::new();
    sb.write(
        "config.toml",
        "[run]\ninterrupt_grace = \"2s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"10s\"\n\n[verify]\ncommands = [\"bash run_tests.sh\"]\nreview_role = \"reviewer\"\n",
    );
    std::fs::create_dir_all(sb.path().join("home")).unwrap();
    std::fs::create_dir_all(sb.path().join("claude-tmp")).unwrap();
    let tasks = sb.write(
        "tasks.toml",
        "[[task]]\nid = \"fix\"\nprompt = \"Fix add() in calc.py.\"\n",
    );
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/template");
    let args = [
        "--json",
        "--progress",
        "plain",
        "--timeout",
        "90s",
        "--template",
        template.to_str().unwrap(),
    ];
    let mut c = sb.borg(&[]);
    c.args(run_args(&tasks, &claude, &args))
        .env("HOME", sb.path().join("home"))
        .env("ANTHROPIC_BASE_URL", api.url())
        .env("ANTHROPIC_API_KEY", "test-key")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_TMPDIR", sb.path().join("claude-tmp"))
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .env("API_TIMEOUT_MS", "20000");
    if !nix::unistd::geteuid().is_root() {
        c.env_remove("IS_SANDBOX");
    }
    let out = c.output().expect("run borg");
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let ctx = format!(
        "exit {:?}\nstderr:\n{}\nreport:\n{rep:#}\nmock:\n{}",
        out.status.code(),
        stderr(&out),
        api.dump()
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let t = task(&rep, "fix");
    assert_eq!(t["status"], "succeeded", "{ctx}");
    assert_eq!(t["fix_rounds"], 1, "{ctx}");
    let round = &t["rounds"][0];
    assert_eq!(round["why"], "gate", "{ctx}");
    assert_eq!(round["status"], "succeeded", "{ctx}");
    assert!(
        round["regressions"].as_array().unwrap().len() >= 2,
        "test_add and test_add_zero: {ctx}"
    );
    // The fix round resumed the attempt's own session; the reviewer had its own.
    let dev = t["session_id"].as_str().unwrap();
    assert_eq!(round["session_id"], dev, "{ctx}");
    let review = &t["review"];
    assert_eq!(review["verdict"], "approve", "{ctx}");
    assert_ne!(review["session_id"], dev, "{ctx}");
    assert_eq!(api.session_ids().len(), 2, "{ctx}");
    // The resumed request held the whole conversation and borg's fix prompt.
    let posts = api.messages();
    let fix = posts
        .iter()
        .find(|p| p.body["messages"].to_string().contains("fix round 1 of 2"))
        .unwrap_or_else(|| panic!("no fix-round request: {ctx}"));
    assert_eq!(fix.header("x-claude-code-session-id"), Some(dev), "{ctx}");
    assert!(fix.body["messages"]
        .to_string()
        .contains("bash run_tests.sh"));
    // The reviewer's CLI offered the StructuredOutput tool of --json-schema.
    let rev = posts.iter().find(|p| p.script == Some(0)).unwrap();
    assert!(
        rev.body["tools"].to_string().contains("StructuredOutput"),
        "{ctx}"
    );
    let v = &t["verified"]["gates"][0];
    assert_eq!(
        (v["command"].as_str(), v["exit_code"].as_i64()),
        (Some("bash run_tests.sh"), Some(0))
    );
    let inst = t["instance"].as_str().unwrap();
    let calc = std::fs::read_to_string(sb.ws().join(inst).join("project-files/calc.py")).unwrap();
    assert!(calc.contains("return a + b"), "{calc}");
}
