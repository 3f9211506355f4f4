//! Integration tests of the `fake-claude` binary: it must speak the real CLI's
//! stream-json protocol (shapes, key order, exit codes) and behave like it under
//! signals, because borg's own tests trust it as a stand-in for `claude`.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fake-claude");
const STREAM: &[&str] = &[
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--permission-mode",
    "bypassPermissions",
];

/// A temp cwd plus a separate state dir, so runs never share attempt counters.
struct Env {
    cwd: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            cwd: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.cwd.path())
            .env("FAKE_CLAUDE_STATE_DIR", self.state.path())
            .env("IS_SANDBOX", "1")
            .env_remove("BORG_TASK_ID")
            .env_remove("BORG_WORKSPACE")
            .env_remove("FAKE_CLAUDE_SCENARIO")
            .env_remove("CLAUDE_CODE_MAX_RETRIES")
            .env_remove("CLAUDE_CODE_MAX_TURNS");
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str], prompt: &str, extra_env: &[(&str, &str)]) -> Run {
        let mut child = self
            .cmd(args, extra_env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The fake may exit (argument errors) before reading stdin: EPIPE is fine.
        let _ = child.stdin.take().unwrap().write_all(prompt.as_bytes());
        let o = child.wait_with_output().unwrap();
        Run::from(
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.code(),
        )
    }

    /// Runs with stdin and stdout piped (stderr inherited) and returns the raw output,
    /// for runs whose stdout is not (all) JSON lines.
    fn output(&self, args: &[&str], prompt: &str) -> std::process::Output {
        self.cmd(args, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(prompt.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.cwd.path().join(rel)
    }
}

/// One finished run: stdout lines parsed as JSON.
struct Run {
    raw: Vec<u8>,
    lines: Vec<Value>,
    stderr: String,
    code: Option<i32>,
}

impl Run {
    fn from(raw: Vec<u8>, stderr: String, code: Option<i32>) -> Run {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        Run {
            raw,
            lines,
            stderr,
            code,
        }
    }

    fn of_type(&self, t: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == t).collect()
    }

    fn of_subtype(&self, t: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["subtype"] == t).collect()
    }

    fn result(&self) -> &Value {
        let r = self.of_type("result");
        assert_eq!(
            r.len(),
            1,
            "one result line expected in {}",
            String::from_utf8_lossy(&self.raw)
        );
        r[0]
    }

    fn raw_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.raw)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn prompt(steps: &[&str]) -> String {
    let mut p = String::from("Please do the task.\n");
    for s in steps {
        p.push_str("#fake ");
        p.push_str(s);
        p.push('\n');
    }
    p
}

#[test]
fn default_run_has_the_real_shapes() {
    let e = Env::new();
    let r = e.run(STREAM, "hello", &[]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let raw = r.raw_lines();
    assert!(
        raw[0].starts_with(r#"{"type":"system","subtype":"init","cwd":"#),
        "{}",
        raw[0]
    );
    let init = &r.lines[0];
    let sid = init["session_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(sid).is_ok());
    assert_eq!(init["claude_code_version"], "2.1.197");
    assert_eq!(init["permissionMode"], "bypassPermissions");
    assert_eq!(init["model"], "claude-opus-4-8[1m]");
    assert_eq!(init["tools"].as_array().unwrap().len(), 24);
    assert_eq!(
        init["cwd"],
        e.cwd.path().canonicalize().unwrap().display().to_string()
    );
    assert_eq!(r.lines[1]["type"], "rate_limit_event");
    assert_eq!(r.lines[1]["rate_limit_info"]["status"], "allowed");
    let a = &r.lines[2];
    assert_eq!(a["type"], "assistant");
    assert_eq!(a["message"]["content"][0]["text"], "Done.");
    assert!(a["message"]["id"].as_str().unwrap().starts_with("msg_"));
    let res = r.lines.last().unwrap();
    assert!(raw.last().unwrap().starts_with(r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":"#));
    assert_eq!(res["result"], "Done.");
    assert_eq!(res["num_turns"], 1);
    assert_eq!(res["terminal_reason"], "completed");
    assert_eq!(res["stop_reason"], "end_turn");
    assert!(
        res["modelUsage"]["claude-opus-4-8[1m]"]["costUSD"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    for l in &r.lines {
        assert_eq!(l["session_id"], sid);
        assert!(l["uuid"].is_string());
    }
    // Nothing but the state dir was touched: the cwd stays empty.
    assert_eq!(std::fs::read_dir(e.cwd.path()).unwrap().count(), 0);
}

#[test]
fn tools_really_run_and_report_like_the_cli() {
    let e = Env::new();
    std::fs::write(
        e.path("calc.py"),
        "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n",
    )
    .unwrap();
    let p = prompt(&[
        r#"text "I'll fix it.""#,
        r##"write sub/dir/NOTES.md "# Notes\n""##,
        "+ read calc.py",
        r#"edit calc.py "    return a - b" "    return a + b""#,
        r#"bash "echo out; echo err >&2""#,
        r#"bash "echo failing; exit 3""#,
        r#"text "All done.""#,
    ]);
    let r = e.run(STREAM, &p, &[]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(e.path("sub/dir/NOTES.md")).unwrap(),
        "# Notes\n"
    );
    assert!(std::fs::read_to_string(e.path("calc.py"))
        .unwrap()
        .contains("return a + b"));

    let asst = r.of_type("assistant");
    // text + Write + Read share one message id; then one message per tool; then the text.
    assert_eq!(asst[0]["message"]["id"], asst[1]["message"]["id"]);
    assert_eq!(asst[1]["message"]["id"], asst[2]["message"]["id"]);
    assert_ne!(asst[2]["message"]["id"], asst[3]["message"]["id"]);
    let write = &asst[1]["message"]["content"][0];
    assert_eq!(write["name"], "Write");
    let abs = e.cwd.path().canonicalize().unwrap();
    assert_eq!(
        write["input"]["file_path"],
        abs.join("sub/dir/NOTES.md").display().to_string()
    );
    assert_eq!(
        asst[3]["message"]["content"][0]["input"]["replace_all"],
        false
    );

    let users = r.of_type("user");
    assert_eq!(users.len(), 5);
    let w = &users[0];
    assert!(w["message"]["content"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("File created successfully at: "));
    assert!(w["message"]["content"][0].get("is_error").is_none());
    assert_eq!(w["tool_use_result"]["type"], "create");
    assert_eq!(users[1]["tool_use_result"]["file"]["numLines"], 7);
    assert!(users[1]["message"]["content"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("1\tdef add(a, b):\n2\t"));
    assert_eq!(
        users[2]["tool_use_result"]["structuredPatch"][0]["lines"][1],
        "-    return a - b"
    );
    let b = &users[3];
    assert_eq!(b["message"]["content"][0]["content"], "out\nerr");
    assert_eq!(b["message"]["content"][0]["is_error"], false);
    assert_eq!(b["tool_use_result"]["stdout"], "out\nerr");
    assert_eq!(b["tool_use_result"]["interrupted"], false);
    let f = &users[4];
    assert_eq!(
        f["message"]["content"][0]["content"],
        "Exit code 3\nfailing"
    );
    assert_eq!(f["message"]["content"][0]["is_error"], true);
    assert_eq!(f["tool_use_result"], "Error: Exit code 3\nfailing");
    // Every tool_result answers a tool_use id.
    for u in &users {
        let id = u["message"]["content"][0]["tool_use_id"].as_str().unwrap();
        assert!(asst.iter().any(|a| a["message"]["content"][0]["id"] == id));
    }
    let res = r.result();
    assert_eq!(res["result"], "All done.");
    assert_eq!(res["num_turns"], 6); // 5 calls + 1 because tools ran
}

#[test]
fn edit_errors_match_the_cli() {
    let e = Env::new();
    std::fs::write(e.path("a.txt"), "one\n").unwrap();
    let p = prompt(&[
        r#"edit a.txt "one" "two""#,
        "read a.txt",
        r#"edit a.txt "zzz" "two""#,
        "read missing.txt",
    ]);
    let r = e.run(STREAM, &p, &[]);
    assert_eq!(r.code, Some(0));
    let users = r.of_type("user");
    assert_eq!(
        users[0]["message"]["content"][0]["content"],
        "<tool_use_error>File has not been read yet. Read it first before writing to it.</tool_use_error>"
    );
    assert_eq!(
        users[0]["tool_use_result"],
        "Error: File has not been read yet. Read it first before writing to it."
    );
    assert_eq!(
        users[2]["tool_use_result"],
        "Error: String to replace not found in file.\nString: zzz"
    );
    assert!(users[3]["message"]["content"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("File does not exist."));
    assert_eq!(std::fs::read_to_string(e.path("a.txt")).unwrap(), "one\n");
}

#[test]
fn argv_errors_and_version() {
    let e = Env::new();
    let r = e.run(&["-p", "--output-format", "stream-json"], "hi", &[]);
    assert_eq!(r.code, Some(1));
    assert!(r.raw.is_empty());
    assert_eq!(
        r.stderr.trim(),
        "Error: When using --print, --output-format=stream-json requires --verbose"
    );

    let r = e.run(&["-p", "--bogus"], "hi", &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.trim(), "error: unknown option '--bogus'");

    let r = e.run(STREAM, "", &[]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("Input must be provided"));

    let o = e.cmd(&["--version"], &[]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "2.1.197 (Claude Code)"
    );
    assert_eq!(o.status.code(), Some(0));
    let o = e
        .cmd(&["--version"], &[("FAKE_CLAUDE_VERSION", "9.9.9")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "9.9.9 (Claude Code)"
    );

    let r = e.run(STREAM, "#fake frobnicate 3\n", &[]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("line 1: unknown step 'frobnicate'"),
        "{}",
        r.stderr
    );
    assert!(r.raw.is_empty());

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let o = e
            .cmd(&["-p", "--dangerously-skip-permissions"], &[])
            .env_remove("IS_SANDBOX")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).trim(),
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
        );
    }
}

#[test]
fn resume_keeps_the_session_id_and_argv_is_recorded() {
    let e = Env::new();
    let id = "11111111-2222-4333-8444-555555555555";
    let mut args = STREAM.to_vec();
    args.extend(["--resume", id]);
    let r = e.run(&args, "go on", &[("BORG_TASK_ID", "task-7")]);
    assert_eq!(r.code, Some(0));
    assert_eq!(r.lines[0]["session_id"], id);
    assert_eq!(r.result()["session_id"], id);
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(e.state.path().join("task-7/argv.1.json")).unwrap(),
    )
    .unwrap();
    let argv: Vec<&str> = rec["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(argv.windows(2).any(|w| w == ["--resume", id]), "{argv:?}");
    assert_eq!(rec["attempt"], 1);
}

#[test]
fn fails_once_with_500_then_succeeds() {
    let e = Env::new();
    let p = prompt(&["first 1 api-error 500 2", r#"text "worked this time""#]);
    let env = [("BORG_TASK_ID", "flaky")];
    let r = e.run(STREAM, &p, &env);
    assert_eq!(r.code, Some(1));
    let retries = r.of_subtype("api_retry");
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0]["error_status"], 500);
    assert_eq!(retries[0]["error"], "server_error");
    let synth = r.of_type("assistant");
    assert_eq!(synth[0]["message"]["model"], "<synthetic>");
    assert_eq!(synth[0]["error"], "server_error");
    let res = r.result();
    assert_eq!(res["subtype"], "success");
    assert_eq!(res["is_error"], true);
    assert_eq!(res["api_error_status"], 500);
    assert_eq!(res["total_cost_usd"], 0.0);
    assert!(res["result"]
        .as_str()
        .unwrap()
        .starts_with("API Error: 500 Internal server error"));

    let r = e.run(STREAM, &p, &env);
    assert_eq!(r.code, Some(0));
    assert_eq!(r.result()["result"], "worked this time");
    assert!(e.state.path().join("flaky/argv.2.json").exists());
}

#[test]
fn max_retries_env_and_401() {
    let e = Env::new();
    let r = e.run(
        STREAM,
        &prompt(&["api-error 401"]),
        &[("CLAUDE_CODE_MAX_RETRIES", "3")],
    );
    assert_eq!(r.code, Some(1));
    let retries = r.of_subtype("api_retry");
    assert_eq!(retries.len(), 3);
    assert_eq!(retries[2]["max_retries"], 3);
    assert_eq!(retries[0]["error"], "authentication_failed");
    assert_eq!(
        r.result()["result"],
        "Invalid API key · Fix external API key"
    );
    assert_eq!(r.result()["modelUsage"], serde_json::json!({}));
}

#[test]
fn usage_limit_then_resume_succeeds() {
    let e = Env::new();
    let p = prompt(&["first 1 rate-limit 3", r#"text "resumed""#]);
    let env = [("BORG_TASK_ID", "limited")];
    let before = chrono::Utc::now().timestamp();
    let r = e.run(STREAM, &p, &env);
    assert_eq!(r.code, Some(1));
    let rl = r.of_type("rate_limit_event");
    assert_eq!(rl.len(), 1);
    let info = &rl[0]["rate_limit_info"];
    assert_eq!(info["status"], "rejected");
    assert_eq!(info["rateLimitType"], "five_hour");
    let at = info["resetsAt"].as_i64().unwrap();
    assert!(at >= before + 3 && at <= before + 5);
    let res = r.result();
    assert_eq!(res["is_error"], true);
    assert_eq!(res["api_error_status"], 429);
    assert_eq!(res["result"], format!("Claude AI usage limit reached|{at}"));
    let sid = r.lines[0]["session_id"].as_str().unwrap().to_string();

    let mut args = STREAM.to_vec();
    args.extend(["--resume", &sid]);
    let r = e.run(&args, &p, &env);
    assert_eq!(r.code, Some(0));
    assert_eq!(r.result()["session_id"], sid.as_str());
    assert_eq!(r.result()["result"], "resumed");
}

#[test]
fn max_turns_and_budget_are_enforced() {
    let e = Env::new();
    let p = prompt(&[
        r#"bash "echo step 1""#,
        r#"bash "echo step 2""#,
        r#"bash "echo step 3""#,
    ]);
    let mut args = STREAM.to_vec();
    args.push("--max-turns=2");
    let r = e.run(&args, &p, &[]);
    assert_eq!(r.code, Some(1));
    let res = r.result();
    assert_eq!(res["subtype"], "error_max_turns");
    assert_eq!(res["is_error"], true);
    assert!(res.get("result").is_none());
    assert_eq!(res["errors"][0], "Reached maximum number of turns (2)");
    assert_eq!(res["terminal_reason"], "max_turns");
    assert_eq!(res["num_turns"], 3);
    assert_eq!(r.of_type("user").len(), 2);
    assert!(r
        .raw_lines()
        .last()
        .unwrap()
        .starts_with(r#"{"type":"result","subtype":"error_max_turns","duration_ms":"#));

    let mut args = STREAM.to_vec();
    args.push("--max-budget-usd=0.02");
    let r = e.run(&args, &p, &[]);
    assert_eq!(r.code, Some(1));
    let res = r.result();
    assert_eq!(res["subtype"], "error_max_budget_usd");
    assert_eq!(res["errors"][0], "Reached maximum budget ($0.02)");
    assert!(res.get("terminal_reason").is_none());
    // The third response crossed the limit: its tool call never ran.
    assert_eq!(r.of_type("assistant").len(), 3);
    assert_eq!(r.of_type("user").len(), 2);
}

#[test]
fn endings_without_result() {
    let e = Env::new();
    let r = e.run(STREAM, &prompt(&[r#"text "hi""#, "no-result"]), &[]);
    assert_eq!(r.code, Some(0));
    assert!(r.of_type("result").is_empty());

    let r = e.run(STREAM, &prompt(&[r#"exit 3 "something broke""#]), &[]);
    assert_eq!(r.code, Some(3));
    assert_eq!(r.stderr.trim(), "something broke");
    assert!(r.of_type("result").is_empty());

    let o = e.output(STREAM, &prompt(&["crash-mid-line"]));
    assert_eq!(o.status.code(), Some(1));
    assert_ne!(o.stdout.last(), Some(&b'\n'));
}

#[test]
fn permission_modes_deny_like_the_cli() {
    let e = Env::new();
    let p = prompt(&[r#"write a.txt "x""#, r#"bash "echo hi""#]);
    let r = e.run(
        &[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
        ],
        &p,
        &[],
    );
    assert_eq!(r.code, Some(0));
    assert!(e.path("a.txt").exists());
    let users = r.of_type("user");
    assert_eq!(
        users[1]["message"]["content"][0]["content"],
        "This command requires approval"
    );
    let res = r.result();
    assert_eq!(res["permission_denials"][0]["tool_name"], "Bash");
    assert_eq!(
        res["permission_denials"][0]["tool_input"]["command"],
        "echo hi"
    );
}

fn procs_with_arg(arg: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        // Zombies have an empty cmdline; only live processes count.
        if cmd.split(|b| *b == 0).any(|w| w == arg.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Spawns a run whose bash step writes `started` then sleeps `secs`; returns the child
/// once the bash really runs, with its stdout reader.
fn spawn_sleeping_bash(
    e: &Env,
    secs: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let (child, mut rd) = spawn_run(
        e,
        &[
            r#"text "Running a long command.""#,
            &format!(r#"bash "echo started > started.txt; sleep {secs}""#),
        ],
    );
    let mut line = String::new();
    loop {
        line.clear();
        assert!(rd.read_line(&mut line).unwrap() > 0, "EOF before tool_use");
        if line.contains(r#""type":"tool_use""#) {
            break;
        }
    }
    wait_for("the bash step to start", Duration::from_secs(10), || {
        e.path("started.txt").exists()
    });
    wait_for("sleep to appear", Duration::from_secs(10), || {
        !procs_with_arg(secs).is_empty()
    });
    (child, rd)
}

/// Sends `sig` to the child, then reads the rest of its stdout and waits for it.
fn signal_and_drain(
    child: &mut std::process::Child,
    rd: &mut BufReader<std::process::ChildStdout>,
    sig: i32,
) -> (Vec<u8>, std::process::ExitStatus) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let mut rest = Vec::new();
    std::io::Read::read_to_end(rd, &mut rest).unwrap();
    (rest, child.wait().unwrap())
}

#[test]
fn sigint_during_bash_kills_the_tool_and_reports() {
    let e = Env::new();
    let (mut child, mut rd) = spawn_sleeping_bash(&e, "3001");
    let (rest, status) = signal_and_drain(&mut child, &mut rd, libc::SIGINT);
    assert_eq!(status.code(), Some(1));
    let r = Run::from(rest, String::new(), status.code());
    let users = r.of_type("user");
    assert!(users[0]["message"]["content"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("The user doesn't want to proceed with this tool use."));
    assert_eq!(users[0]["tool_use_result"], "User rejected tool use");
    assert_eq!(
        users[1]["message"]["content"][0]["text"],
        "[Request interrupted by user for tool use]"
    );
    let res = r.result();
    assert_eq!(res["subtype"], "error_during_execution");
    assert_eq!(res["terminal_reason"], "aborted_tools");
    assert_eq!(res["is_error"], true);
    wait_for(
        "the tool's sleep to be gone",
        Duration::from_secs(5),
        || procs_with_arg("3001").is_empty(),
    );
}

#[test]
fn sigterm_exits_143_and_leaves_the_tool_running() {
    let e = Env::new();
    let (mut child, mut rd) = spawn_sleeping_bash(&e, "3002");
    let (rest, status) = signal_and_drain(&mut child, &mut rd, libc::SIGTERM);
    assert_eq!(status.code(), Some(143));
    assert!(!String::from_utf8_lossy(&rest).contains(r#""type":"result""#));
    let left = procs_with_arg("3002");
    assert!(!left.is_empty(), "the tool's sleep should survive SIGTERM");
    for pid in left {
        // SAFETY: the leftover sleep was started by this test.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[test]
fn sigint_while_waiting_exits_0_without_result() {
    let e = Env::new();
    let (mut child, mut rd) = spawn_run(&e, &["hang"]);
    let mut first = String::new();
    rd.read_line(&mut first).unwrap();
    assert!(first.contains(r#""subtype":"init""#));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut rd, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(rest.is_empty());
}

#[test]
fn grandchild_setsid_escapes_and_carries_the_environment() {
    let e = Env::new();
    let r = e.run(
        STREAM,
        &prompt(&["grandchild-setsid"]),
        &[("BORG_TASK_ID", "gc-test")],
    );
    assert_eq!(r.code, Some(0));
    let rec = std::fs::read_to_string(e.state.path().join("gc-test/grandchildren")).unwrap();
    let pid: i32 = rec.split_whitespace().next().unwrap().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    assert_eq!(fields[3], pid.to_string(), "own session: sid == pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(environ
        .split(|b| *b == 0)
        .any(|v| v == b"BORG_TASK_ID=gc-test"));
    // SAFETY: SIGTERM is ignored by design; SIGKILL our own leftover.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(libc::kill(pid, 0), 0, "it ignores SIGTERM");
        libc::kill(pid, libc::SIGKILL);
    }
}

#[test]
fn output_torture_steps() {
    let e = Env::new();
    let r = e.run(STREAM, &prompt(&["flood 1MiB", r#"text "after""#]), &[]);
    assert_eq!(r.code, Some(0));
    assert!(r.raw.len() > 1 << 20);
    assert_eq!(r.result()["result"], "after");

    let o = e.output(STREAM, &prompt(&["huge-line 3MiB", "bad-utf8"]));
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<&[u8]> = o.stdout.split(|b| *b == b'\n').collect();
    let huge = lines.iter().find(|l| l.len() > 1 << 20).unwrap();
    assert_eq!(huge.len() + 1, 3 << 20);
    assert!(serde_json::from_slice::<Value>(huge).is_ok());
    assert!(lines.iter().any(|l| std::str::from_utf8(l).is_err()));
    let last = lines.iter().rev().find(|l| !l.is_empty()).unwrap();
    assert!(serde_json::from_slice::<Value>(last).unwrap()["type"] == "result");
}

#[test]
fn scenario_file_and_text_format() {
    let e = Env::new();
    let file = e.state.path().join("scenario.txt");
    std::fs::write(
        &file,
        "# a comment\n\ntext \"from the file\"\n#fake result \"final\"\n",
    )
    .unwrap();
    let f = file.display().to_string();
    let r = e.run(
        STREAM,
        "#fake text \"ignored\"",
        &[("FAKE_CLAUDE_SCENARIO", &f)],
    );
    assert_eq!(r.code, Some(0));
    let texts: Vec<_> = r
        .of_type("assistant")
        .iter()
        .map(|a| a["message"]["content"][0]["text"].clone())
        .collect();
    assert_eq!(texts, vec!["from the file", "final"]);
    assert_eq!(r.result()["result"], "final");

    let o = e.output(
        &["-p", "--dangerously-skip-permissions"],
        &prompt(&["api-error 500 0"]),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("API Error: 500 Internal server error"));
}

#[test]
fn after_result_lines_follow_the_result() {
    let e = Env::new();
    let r = e.run(
        STREAM,
        &prompt(&[r#"result "ok""#, "after-result-lines 50"]),
        &[],
    );
    assert_eq!(r.code, Some(0));
    let n = r.lines.len();
    assert_eq!(r.lines[n - 3]["type"], "result");
    assert_eq!(r.lines[n - 2]["subtype"], "task_updated");
    assert_eq!(r.lines[n - 1]["subtype"], "task_notification");
}

#[test]
fn instant_is_minimal_and_writes_no_state() {
    let e = Env::new();
    let r = e.run(STREAM, &prompt(&["instant"]), &[]);
    assert_eq!(r.code, Some(0));
    assert_eq!(r.result()["result"], "Done.");
    assert_eq!(std::fs::read_dir(e.state.path()).unwrap().count(), 0);
}

#[test]
fn strict_sessions_like_the_cli() {
    let e = Env::new();
    let strict = [("FAKE_CLAUDE_STRICT_SESSIONS", "1")];
    let unknown = "99999999-2222-4333-8444-555555555555";
    let mut args = STREAM.to_vec();
    args.extend(["--resume", unknown]);
    let r = e.run(&args, "continue", &strict);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.lines.len(), 1, "no init line");
    let res = r.result();
    assert_eq!(res["subtype"], "error_during_execution");
    assert_eq!(res["num_turns"], 0);
    assert_eq!(
        res["errors"][0],
        format!("No conversation found with session ID: {unknown}")
    );
    assert!(r.stderr.contains("No conversation found"));

    // A session a previous run used can be resumed.
    let first = e.run(STREAM, "start", &strict);
    let sid = first.lines[0]["session_id"].as_str().unwrap().to_string();
    let mut args = STREAM.to_vec();
    args.extend(["-r", &sid]);
    let r = e.run(&args, "continue", &strict);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.result()["session_id"], sid.as_str());

    // Reusing a known id with --session-id is refused before any output.
    let mut args = STREAM.to_vec();
    args.extend(["--session-id", &sid]);
    let r = e.run(&args, "again", &strict);
    assert_eq!(r.code, Some(1));
    assert!(r.raw.is_empty());
    assert_eq!(
        r.stderr.trim(),
        format!("Error: Session ID {sid} is already in use.")
    );
}

#[test]
fn overwrite_after_read_is_an_update_with_a_patch() {
    let e = Env::new();
    std::fs::write(e.path("README.md"), "# old\n").unwrap();
    let p = prompt(&["read README.md", r##"write README.md "# new\n\nbody\n""##]);
    let r = e.run(STREAM, &p, &[]);
    assert_eq!(r.code, Some(0));
    let users = r.of_type("user");
    let w = &users[1];
    assert_eq!(w["tool_use_result"]["type"], "update");
    assert_eq!(w["tool_use_result"]["originalFile"], "# old\n");
    assert_eq!(
        w["tool_use_result"]["structuredPatch"][0]["lines"][0],
        "-# old"
    );
    assert!(w["message"]["content"][0]["content"]
        .as_str()
        .unwrap()
        .contains("has been updated successfully"));
    assert_eq!(
        std::fs::read_to_string(e.path("README.md")).unwrap(),
        "# new\n\nbody\n"
    );
}

/// Spawns a run and returns it with its stdout reader, after the prompt is written.
fn spawn_run(
    e: &Env,
    steps: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = e
        .cmd(STREAM, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(prompt(steps).as_bytes())
        .unwrap();
    let rd = BufReader::new(child.stdout.take().unwrap());
    (child, rd)
}

fn read_until(rd: &mut BufReader<std::process::ChildStdout>, needle: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(rd.read_line(&mut line).unwrap() > 0, "EOF before {needle}");
        if line.contains(needle) {
            return;
        }
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn ignore_signals_and_hang_after_result() {
    let e = Env::new();
    let (mut child, mut rd) = spawn_run(&e, &["ignore-signals", "hang-after-result"]);
    read_until(&mut rd, r#""type":"result""#);
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
        libc::kill(pid, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it ignores SIGINT and SIGTERM"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn grandchild_holds_stdout_after_exit() {
    let e = Env::new();
    let (mut child, mut rd) = spawn_run(&e, &["grandchild-holds-stdout 20s"]);
    read_until(&mut rd, r#""type":"result""#);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let rec = std::fs::read_dir(e.state.path())
        .unwrap()
        .flatten()
        .map(|d| d.path().join("grandchildren"))
        .find(|p| p.exists())
        .unwrap();
    let pid: i32 = std::fs::read_to_string(rec)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid));
    // The pipe is still open: no EOF yet. Kill the holder, then EOF comes.
    // SAFETY: our own leftover grandchild.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut rd, &mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn slow_lines_and_transient_retries() {
    let e = Env::new();
    let t = Instant::now();
    let r = e.run(STREAM, &prompt(&["api-retry 529 2", "slow 3 50ms"]), &[]);
    assert_eq!(r.code, Some(0));
    assert!(t.elapsed() >= Duration::from_millis(150));
    let retries = r.of_subtype("api_retry");
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0]["error_status"], 529);
    let asst = r.of_type("assistant");
    assert_eq!(asst.len(), 3);
    assert!(asst
        .iter()
        .all(|a| a["message"]["id"] == asst[0]["message"]["id"]));
    assert_eq!(r.result()["result"], "slow line 3 of 3");
    assert_eq!(r.result()["is_error"], false);
}

#[test]
fn bash_cd_carries_over_and_runs_in_its_own_session() {
    let e = Env::new();
    let p = prompt(&[
        r#"bash "mkdir -p sub && cd sub && pwd""#,
        r#"bash "pwd; ps -o sid= -p $$; ps -o sid= -p $PPID""#,
    ]);
    let r = e.run(STREAM, &p, &[]);
    assert_eq!(r.code, Some(0));
    let users = r.of_type("user");
    let out = users[1]["tool_use_result"]["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines[0],
        e.path("sub").canonicalize().unwrap().display().to_string()
    );
    if lines.len() == 3 {
        // The shell leads its own session, not fake-claude's.
        assert_ne!(lines[1], lines[2]);
    }
}

#[test]
fn background_bash_is_killed_after_the_result() {
    let e = Env::new();
    let p = prompt(&[
        r#"bash-bg "echo bg-start > bg.txt; sleep 3003" "background sleeper""#,
        r#"text "Started the background job and finished.""#,
    ]);
    let t = Instant::now();
    let r = e.run(STREAM, &p, &[("FAKE_CLAUDE_AFTER_RESULT_MS", "300")]);
    assert_eq!(r.code, Some(0));
    assert!(t.elapsed() >= Duration::from_millis(300));
    let types: Vec<String> = r
        .lines
        .iter()
        .map(|l| {
            format!(
                "{}/{}",
                l["type"].as_str().unwrap(),
                l["subtype"].as_str().unwrap_or("")
            )
        })
        .collect();
    let n = types.len();
    assert_eq!(
        &types[n - 3..],
        [
            "result/success",
            "system/task_updated",
            "system/task_notification"
        ]
    );
    let started = r
        .lines
        .iter()
        .find(|l| l["subtype"] == "task_started")
        .unwrap();
    let user = r.of_type("user")[0];
    assert_eq!(
        user["tool_use_result"]["backgroundTaskId"],
        started["task_id"]
    );
    assert!(user["message"]["content"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("Command running in background with ID: "));
    assert_eq!(r.lines[n - 1]["status"], "stopped");
    assert_eq!(r.lines[n - 1]["summary"], "background sleeper");
    assert_eq!(
        std::fs::read_to_string(e.path("bg.txt")).unwrap(),
        "bg-start\n"
    );
    assert!(
        procs_with_arg("3003").is_empty(),
        "the background task was killed"
    );
}

#[test]
fn stream_json_input_gives_one_result_per_message() {
    let e = Env::new();
    let input = concat!(
        r#"{"type":"user","message":{"role":"user","content":"first\n#fake text \"one\""}}"#,
        "\n",
        r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"second"}]}}"#,
        "\n"
    );
    let mut args = STREAM.to_vec();
    args.extend(["--input-format", "stream-json", "--replay-user-messages"]);
    let r = e.run(&args, input, &[("FAKE_CLAUDE_NO_RATE_LIMIT_EVENT", "1")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let types: Vec<&str> = r
        .lines
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "system",
            "user",
            "assistant",
            "result",
            "system",
            "user",
            "assistant",
            "result"
        ]
    );
    assert!(r.raw_lines()[5].contains(r#""content":[{"type":"text","text":"second"}]"#));
    assert_eq!(r.lines[1]["isReplay"], true);
    let results = r.of_type("result");
    assert_eq!(results[0]["result"], "one");
    assert_eq!(results[1]["result"], "Done.");
    assert_eq!(results[1]["num_turns"], 1);
    assert_eq!(results[1]["total_cost_usd"], 0.015);
    assert_eq!(results[1]["usage"]["input_tokens"], 1000);
    assert_eq!(
        results[1]["modelUsage"]["claude-opus-4-8[1m]"]["inputTokens"],
        2000
    );
}

/// A stdio MCP server in bash: `echo` answers with structured content, `fail` with an
/// error, anything else is ignored.
const STUB_SERVER: &str = r#"#!/bin/bash
while IFS= read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  case "$line" in
    *'"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"stub","version":"1"}}}\n' "$id" ;;
    *'"tools/list"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"fail","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
    *'"tools/call"'*'"name":"echo"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"echoed"}],"structuredContent":{"ok":true}}}\n' "$id" ;;
    *'"tools/call"'*'"name":"fail"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"nope"}],"isError":true}}\n' "$id" ;;
  esac
done
"#;

#[test]
fn mcp_servers_are_started_listed_and_called_like_the_cli_does() {
    let env = Env::new();
    let server = env.path("server.sh");
    std::fs::write(&server, STUB_SERVER).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&server)
        .status()
        .unwrap();
    let cfg = serde_json::json!({ "mcpServers": {
        "stub": { "command": server, "args": [], "alwaysLoad": true },
        "gone": { "command": "/nonexistent/server", "args": [] } } });
    let flag = format!("--mcp-config={cfg}");
    let mut args = STREAM.to_vec();
    args.push(&flag);
    let r = env.run(
        &args,
        &prompt(&[
            r#"mcp mcp__stub__echo '{"x":1}'"#,
            "mcp mcp__stub__fail",
            "mcp mcp__gone__x",
        ]),
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let init = &r.of_subtype("init")[0];
    // In name order (the fake reads the config without keeping its key order).
    assert_eq!(
        init["mcp_servers"],
        serde_json::json!([{"name": "gone", "status": "failed"}, {"name": "stub", "status": "connected"}])
    );
    assert!(init["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "mcp__stub__echo"));
    let uses: Vec<&Value> = r
        .of_type("assistant")
        .into_iter()
        .filter(|l| l["message"]["content"][0]["type"] == "tool_use")
        .collect();
    assert_eq!(uses[0]["tool_use_meta"][0]["display_name"], "Echo");
    assert_eq!(uses[0]["tool_use_meta"][0]["server_display_name"], "stub");
    let users = r.of_type("user");
    let block = |i: usize| users[i]["message"]["content"][0].clone();
    assert_eq!(block(0)["content"], "{\"ok\":true}");
    assert_eq!(
        users[0]["tool_use_result"]["structuredContent"],
        serde_json::json!({"ok": true})
    );
    assert_eq!(
        (block(1)["content"].as_str(), block(1)["is_error"].as_bool()),
        (Some("nope"), Some(true))
    );
    assert_eq!(users[1]["tool_use_result"], "Error: nope");
    assert!(block(2)["content"]
        .as_str()
        .unwrap()
        .contains("No such tool available: mcp__gone__x"));
}

#[test]
fn pre_tool_use_hooks_deny_writes_in_both_forms_and_fail_open_otherwise() {
    let env = Env::new();
    let json_deny = r#"echo '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":"locked by agent-B (hook json)"}}'"#;
    let settings = serde_json::json!({ "hooks": { "PreToolUse": [
        { "matcher": "Write", "hooks": [{ "type": "command", "command": format!("case \"$(cat)\" in *json.txt*) {json_deny};; *exit2.txt*) echo 'locked (exit 2)' >&2; exit 2;; *) exit 1;; esac") }] } ] } });
    let flag = format!("--settings={settings}");
    let mut args = STREAM.to_vec();
    args.push(&flag);
    let r = env.run(
        &args,
        &prompt(&["write json.txt x", "write exit2.txt x", "write open.txt x"]),
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let users = r.of_type("user");
    let content = |i: usize| {
        users[i]["message"]["content"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(content(0), "locked by agent-B (hook json)");
    assert!(
        content(1).starts_with("PreToolUse:Write hook error: [")
            && content(1).ends_with("]: locked (exit 2)\n"),
        "{}",
        content(1)
    );
    assert!(!env.path("json.txt").exists() && !env.path("exit2.txt").exists());
    assert!(
        env.path("open.txt").exists(),
        "exit 1 lets the write through"
    );
    assert_eq!(
        r.result()["permission_denials"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn json_schema_structured_output_like_the_fixture() {
    let e = Env::new();
    let mut args = STREAM.to_vec();
    args.push("--json-schema={\"type\":\"object\"}");
    let verdict = r#"structured '{"verdict":"approve","comments":[]}'"#;
    let r = e.run(&args, &prompt(&[verdict, "text \"never said\""]), &[]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let tools = r.lines[0]["tools"].as_array().unwrap();
    let at = tools.iter().position(|t| t == "StructuredOutput").unwrap();
    assert_eq!(tools[at - 1], "Skill");
    let call = &r.of_type("assistant")[0]["message"]["content"][0];
    assert_eq!(call["name"], "StructuredOutput");
    assert_eq!(call["input"]["verdict"], "approve");
    let user = &r.of_type("user")[0];
    assert_eq!(
        user["tool_use_result"],
        "Structured output provided successfully"
    );
    let res = r.result();
    assert_eq!(res["structured_output"]["verdict"], "approve");
    let text: Value = serde_json::from_str(res["result"].as_str().unwrap()).unwrap();
    assert_eq!(text, res["structured_output"]);
    assert_eq!(res["stop_reason"], "tool_use");
    assert_eq!(res["num_turns"], 2);
    // The run ends with the structured output: later steps do not run.
    assert_eq!(r.of_type("assistant").len(), 1);
    // Without --json-schema there is no such tool, and no structured output.
    let r = e.run(STREAM, &prompt(&[verdict]), &[]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let user = &r.of_type("user")[0];
    assert_eq!(user["message"]["content"][0]["is_error"], true);
    assert!(r.result().get("structured_output").is_none());
}
