//! Coordination with the real Claude Code CLI (the pinned 2.1.197), as in
//! `tests/real_cli.rs`: `borg run` starts the real binary, which talks to the scripted
//! Messages API on loopback (`tests/support/mock_api.rs`) and really loads borg's MCP
//! server and hooks from the per-attempt files. The scripted model calls
//! `mcp__borg__*` tools and writes files another attempt holds; the repository's own
//! `.claude/settings.json` says `disableAllHooks` and must not switch borg's hook off.
//!
//! The CLI is found through `BORG_REAL_CLAUDE`, else in `.cache/claude-code`; without
//! it each test passes after a loud notice, unless `BORG_REQUIRE_REAL_CLAUDE=1` or
//! `CI=true` (then it fails).

mod common;
#[path = "support/mock_api.rs"]
mod mock_api;

use common::*;
use mock_api::{MockApi, Script, Turn};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

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
    let msg = format!("the real Claude Code CLI is not installed at {} (scripts/install-claude.sh or BORG_REAL_CLAUDE)", path.display());
    if required {
        panic!("{msg}; BORG_REQUIRE_REAL_CLAUDE=1 or CI=true requires it");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n===== SKIPPING THE REAL-CLI COORDINATION TESTS: {msg} =====\n"
    );
    None
}

/// A sandbox, a template whose `.claude/settings.json` disables all hooks, a mock API.
struct Rig {
    sb: Sandbox,
    api: MockApi,
    claude: PathBuf,
}

impl Rig {
    fn new(scripts: Vec<Script>, coord: &str, claude_env: &str) -> Option<Rig> {
        let claude = real_claude()?;
        let sb = Sandbox::new();
        sb.write("config.toml", &format!(
            "[run]\ninterrupt_grace = \"2s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"10s\"\n\n[coord]\n{coord}\n\n[claude.env]\n{claude_env}\n"
        ));
        for f in ["calc.py", "test_calc.py", "run_tests.sh"] {
            let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/template")
                .join(f);
            sb.write(
                &format!("template/{f}"),
                &std::fs::read_to_string(src).unwrap(),
            );
        }
        // The repository tries to switch every hook off (claude-cli-mcp-hooks.md §2.6).
        sb.write(
            "template/.claude/settings.json",
            "{\"disableAllHooks\": true}\n",
        );
        std::fs::create_dir_all(sb.path().join("home")).unwrap();
        std::fs::create_dir_all(sb.path().join("claude-tmp")).unwrap();
        Some(Rig {
            sb,
            api: MockApi::start(scripts),
            claude,
        })
    }

    fn run(&self, tasks: &str, extra: &[&str]) -> (Output, Value) {
        let file = self.sb.write("tasks.toml", tasks);
        let template = self.sb.path().join("template");
        let mut args = vec![
            "--json",
            "--progress",
            "plain",
            "--timeout",
            "90s",
            "--template",
            template.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut c = self.sb.borg(&[]);
        c.args(run_args(&file, &self.claude, &args))
            .env("HOME", self.sb.path().join("home"))
            .env("ANTHROPIC_BASE_URL", self.api.url())
            .env("ANTHROPIC_API_KEY", "test-key")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_TMPDIR", self.sb.path().join("claude-tmp"))
            .env("CLAUDE_CODE_MAX_RETRIES", "0")
            .env("API_TIMEOUT_MS", "20000");
        if !nix::unistd::geteuid().is_root() {
            c.env_remove("IS_SANDBOX");
        }
        let out = c.output().expect("run borg");
        let rep = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, rep)
    }

    fn context(&self, out: &Output, rep: &Value) -> String {
        format!(
            "exit {:?}\nstderr:\n{}\nreport:\n{rep:#}\nmock:\n{}",
            out.status.code(),
            stderr(out),
            self.api.dump()
        )
    }

    /// A task's transcript (attempt 1).
    fn transcript(&self, rep: &Value, id: &str) -> Vec<Value> {
        let inst = task(rep, id)["instance"].as_str().unwrap_or("").to_string();
        let log = self
            .sb
            .ws()
            .join(inst)
            .join("logs")
            .join(format!("{id}.1.stdout.jsonl"));
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn project(&self, rep: &Value, id: &str) -> PathBuf {
        self.sb
            .ws()
            .join(task(rep, id)["instance"].as_str().unwrap())
            .join("project-files")
    }
}

/// The tool results of a transcript: (is_error, content as text).
fn results(t: &[Value]) -> Vec<(bool, String)> {
    t.iter()
        .filter(|l| l["type"] == "user")
        .flat_map(|l| {
            l["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|b| b["type"] == "tool_result")
        .map(|b| {
            (
                b["is_error"] == true,
                match &b["content"] {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                },
            )
        })
        .collect()
}

fn holder_script() -> Script {
    Script::new(vec![
        Turn::tool(
            "mcp__borg__lock_files",
            json!({ "paths": ["shared.txt"], "reason": "refactoring the token type" }),
        ),
        Turn::tool(
            "Bash",
            json!({ "command": "sleep 8", "description": "hold the lease a while" }),
        ),
        Turn::text("Held it."),
    ])
    .when("CASE-holder")
}

fn writer_script() -> Script {
    Script::new(vec![
        Turn::tool("Bash", json!({ "command": "sleep 3", "description": "let the other agent start" })),
        Turn::tool("mcp__borg__lock_files", json!({ "paths": ["mine.txt"], "reason": "my part" })),
        Turn::tool("Write", json!({ "file_path": "{{CWD}}/shared.txt", "content": "clobbered\n" })),
        Turn::tool("mcp__borg__log_decision", json!({ "category": "api-design", "title": "Tokens are opaque strings", "description": "never parse them" })),
        Turn::text("Done."),
    ])
    .when("CASE-writer")
}

#[test]
fn the_real_cli_loads_borgs_server_and_its_hook_denies_a_leased_write_despite_disable_all_hooks() {
    let Some(rig) = Rig::new(vec![holder_script(), writer_script()], "", "") else {
        return;
    };
    let tasks = "[[task]]\nid = \"holder-rc\"\nprompt = \"CASE-holder: lock shared.txt\"\n\n[[task]]\nid = \"writer-rc\"\nprompt = \"CASE-writer: write shared.txt\"\n";
    let (out, rep) = rig.run(tasks, &["--concurrency", "2"]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let w = rig.transcript(&rep, "writer-rc");
    // The init line: borg's server connected, its tools offered.
    assert_eq!(w[0]["type"], "system", "{ctx}");
    let init = w.iter().find(|l| l["subtype"] == "init").expect("init");
    assert_eq!(
        init["mcp_servers"],
        json!([{"name": "borg", "status": "connected"}]),
        "{ctx}"
    );
    assert!(
        init["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "mcp__borg__log_decision"),
        "{ctx}"
    );
    assert_eq!(task(&rep, "writer-rc")["status"], "succeeded", "{ctx}");
    let r = results(&w);
    // [0] sleep, [1] lock_files (the server got the call), [2] the denied Write, [3] decision.
    assert!(
        !r[1].0 && r[1].1.contains("\"granted\":[\"mine.txt\"]"),
        "{r:#?}\n{ctx}"
    );
    let holder = task(&rep, "holder-rc")["instance"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(r[2].0, "{r:#?}");
    assert!(
        r[2].1.starts_with("shared.txt is locked by ")
            && r[2].1.contains(&holder)
            && r[2].1.contains("holder-rc")
            && r[2].1.contains("refactoring the token type"),
        "{}",
        r[2].1
    );
    assert!(
        !rig.project(&rep, "writer-rc").join("shared.txt").exists(),
        "the denied write changed nothing"
    );
    assert!(!r[3].0 && r[3].1.contains("DEC-"), "{r:#?}");
    let list = rig.sb.succeed(&["decisions", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("Tokens are opaque strings"));
    // The hook's deny is in the result's permission_denials, as for any hook.
    let res = w.iter().find(|l| l["type"] == "result").unwrap();
    assert_eq!(res["permission_denials"][0]["tool_name"], "Write", "{ctx}");
    // The writer's own lease and the holder's are gone with their attempts.
    assert_eq!(rig.sb.json(&["locks", "--json"]), json!([]));
}

#[test]
fn the_real_cli_with_a_borg_server_that_fails_at_start_fails_the_attempt() {
    let script = Script::new(vec![Turn::text("Nothing to coordinate.")]);
    let Some(rig) = Rig::new(vec![script], "", "BORG_MCP_FAULT = \"exit\"") else {
        return;
    };
    let (out, rep) = rig.run("[[task]]\nid = \"nomcp-rc\"\nprompt = \"say hi\"\n", &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let t = task(&rep, "nomcp-rc");
    assert_eq!(t["status"], "failed", "{ctx}");
    assert_eq!(t["fault"], "coordination_unavailable", "{ctx}");
    let init = rig
        .transcript(&rep, "nomcp-rc")
        .into_iter()
        .find(|l| l["subtype"] == "init")
        .unwrap();
    assert_eq!(
        init["mcp_servers"],
        json!([{"name": "borg", "status": "failed"}]),
        "{ctx}"
    );
}

#[test]
fn a_borg_server_the_real_cli_gives_up_on_is_killed_with_the_tree() {
    let script = Script::new(vec![Turn::text("Nothing to coordinate.")]);
    let Some(rig) = Rig::new(
        vec![script],
        "",
        "BORG_MCP_FAULT = \"hang\"\nMCP_TIMEOUT = \"2000\"",
    ) else {
        return;
    };
    let (out, rep) = rig.run("[[task]]\nid = \"hungmcp-rc\"\nprompt = \"say hi\"\n", &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(
        task(&rep, "hungmcp-rc")["fault"],
        "coordination_unavailable",
        "{ctx}"
    );
    // The CLI leaves a server that never connected running in its process group; the
    // tree kill at the end of the attempt does not.
    assert!(
        wait_until(Duration::from_secs(5), || task_procs("hungmcp-rc")
            .is_empty()),
        "{:?}",
        task_procs("hungmcp-rc")
    );
}

/// Runs a holder of calc.py and an agent that edits it through the shell, with this
/// `on_violation`; the rig, the output and the report.
fn shell_violation(on_violation: &str) -> Option<(Rig, Output, Value)> {
    let holder = Script::new(vec![
        Turn::tool(
            "mcp__borg__lock_files",
            json!({ "paths": ["calc.py"], "reason": "fixing add" }),
        ),
        Turn::tool(
            "Bash",
            json!({ "command": "sleep 8", "description": "hold it" }),
        ),
        Turn::text("Held."),
    ])
    .when("CASE-holder");
    let sneaky = Script::new(vec![
        Turn::tool(
            "Bash",
            json!({ "command": "sleep 3", "description": "wait" }),
        ),
        Turn::tool(
            "Bash",
            json!({ "command": "sed -i s/a/b/ calc.py", "description": "edit through the shell" }),
        ),
        Turn::text("Edited."),
    ])
    .when("CASE-sneaky");
    let rig = Rig::new(
        vec![holder, sneaky],
        &format!("on_violation = \"{on_violation}\""),
        "",
    )?;
    let tasks = "[[task]]\nid = \"holdcalc-rc\"\nprompt = \"CASE-holder\"\n\n[[task]]\nid = \"sneaky-rc\"\nprompt = \"CASE-sneaky\"\n";
    let (out, rep) = rig.run(tasks, &["--concurrency", "2"]);
    Some((rig, out, rep))
}

#[test]
fn a_shell_change_to_a_leased_file_is_told_to_the_model_and_recorded_under_the_real_cli() {
    let Some((rig, out, rep)) = shell_violation("warn") else {
        return;
    };
    let ctx = rig.context(&out, &rep);
    let s = task(&rep, "sneaky-rc");
    assert_eq!(s["status"], "succeeded", "{ctx}");
    assert_eq!(s["lease_violations"][0]["path"], "calc.py", "{ctx}");
    assert_eq!(
        s["lease_violations"][0]["holder_task"], "holdcalc-rc",
        "{ctx}"
    );
    // The PostToolUse hook's reason reached the model in the next request.
    let told = rig.api.messages().iter().any(|m| {
        m.body["messages"]
            .to_string()
            .contains("lease violation: your shell command changed calc.py")
    });
    assert!(told, "{ctx}");
}

#[test]
fn a_shell_change_to_a_leased_file_ends_the_attempt_out_of_scope_under_the_real_cli() {
    let Some((rig, out, rep)) = shell_violation("fail") else {
        return;
    };
    let ctx = rig.context(&out, &rep);
    let s = task(&rep, "sneaky-rc");
    assert_eq!(s["status"], "out_of_scope", "{ctx}");
    assert_eq!(s["fault"], "out_of_scope", "{ctx}");
    assert_eq!(s["lease_violations"][0]["path"], "calc.py", "{ctx}");
    // The hook stopped the CLI right after the Bash call (`continue: false`).
    let t = rig.transcript(&rep, "sneaky-rc");
    let res = t.iter().find(|l| l["type"] == "result").unwrap();
    assert_eq!(res["terminal_reason"], "hook_stopped", "{ctx}");
    assert_eq!(out.status.code(), Some(1), "{ctx}");
}
