//! `borg run` end to end against the real Claude Code CLI (the pinned 2.1.197 from npm,
//! installed by `scripts/install-claude.sh`), talking to a scripted Messages API on
//! loopback (`tests/support/mock_api.rs`). The CLI's real Write, Edit, Read and Bash
//! tools run inside borg's workspaces, with no network and no key.
//!
//! The CLI is found through `BORG_REAL_CLAUDE`, else in `.cache/claude-code`. When it is
//! missing, each test prints a loud notice and passes, unless `BORG_REQUIRE_REAL_CLAUDE=1`
//! or `CI=true`: then a missing CLI fails the test.

mod common;
#[path = "support/mock_api.rs"]
mod mock_api;

use common::*;
use mock_api::{Fault, MockApi, Script, Turn};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/template");
/// The version these tests and docs/claude-cli.md were checked against.
const PINNED: &str = "2.1.197";

/// The real CLI, or None (after a loud notice) when it is not installed and not required.
fn real_claude() -> Option<PathBuf> {
    let path = std::env::var_os("BORG_REAL_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(default_claude);
    if path.is_file() {
        return Some(path);
    }
    let required = std::env::var("BORG_REQUIRE_REAL_CLAUDE").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    let msg = format!(
        "the real Claude Code CLI is not installed at {} (run scripts/install-claude.sh, or set BORG_REAL_CLAUDE)",
        path.display()
    );
    if required {
        panic!("{msg}; BORG_REQUIRE_REAL_CLAUDE=1 or CI=true requires it");
    }
    // Written straight to fd 2, once: the test harness captures eprintln! of passing
    // tests, and this notice must be seen.
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n==================== SKIPPING THE REAL-CLI TESTS ====================\n{msg}.\nThese tests pass without running anything. Set BORG_REQUIRE_REAL_CLAUDE=1 to make this a failure.\n=====================================================================\n"
        );
    });
    None
}

/// Where `scripts/install-claude.sh` puts the CLI: the wrapper's `bin/claude.exe` once
/// its postinstall has copied the native binary over it (before that it is a
/// few-hundred-byte shell stub), else the platform package's own binary.
fn default_claude() -> PathBuf {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/claude-code/node_modules");
    let wrapper = modules.join("@anthropic-ai/claude-code/bin/claude.exe");
    if std::fs::metadata(&wrapper).is_ok_and(|m| m.len() > 1 << 20) {
        return wrapper;
    }
    std::fs::read_dir(modules.join("@anthropic-ai"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("claude"))
        .find(|p| p.is_file())
        .unwrap_or(wrapper)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// One test's world: a borg sandbox, a throwaway HOME and CLI temp dir, a mock API.
struct Rig {
    sb: Sandbox,
    api: MockApi,
    claude: PathBuf,
}

impl Rig {
    fn new(scripts: Vec<Script>) -> Option<Rig> {
        Rig::with_api(|| MockApi::start(scripts))
    }

    /// A rig whose mock API counts prompt caching (`MockApi::start_caching`).
    fn caching(scripts: Vec<Script>) -> Option<Rig> {
        Rig::with_api(|| MockApi::start_caching(scripts))
    }

    fn with_api(api: impl FnOnce() -> MockApi) -> Option<Rig> {
        let claude = real_claude()?;
        let sb = Sandbox::new();
        // Short stop-ladder graces; nothing for fake-claude.
        sb.write(
            "config.toml",
            "[run]\ninterrupt_grace = \"2s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"10s\"\n",
        );
        std::fs::create_dir_all(sb.path().join("home")).unwrap();
        std::fs::create_dir_all(sb.path().join("claude-tmp")).unwrap();
        Some(Rig {
            sb,
            api: api(),
            claude,
        })
    }

    fn home(&self) -> PathBuf {
        self.sb.path().join("home")
    }

    /// `borg ARGS` with the environment the real CLI needs (it passes through borg's
    /// allowlist to the child).
    fn borg(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = self.sb.borg(args);
        c.env("HOME", self.home())
            .env("ANTHROPIC_BASE_URL", self.api.url())
            .env("ANTHROPIC_API_KEY", "test-key")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_TMPDIR", self.sb.path().join("claude-tmp"))
            .env("CLAUDE_CODE_MAX_RETRIES", "0")
            .env("API_TIMEOUT_MS", "20000")
            .env_remove("FAKE_CLAUDE_STATE_DIR")
            .env_remove("FAKE_CLAUDE_NO_RATE_LIMIT_EVENT");
        if !is_root() {
            c.env_remove("IS_SANDBOX");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `borg run tasks.toml --claude REAL --json --template examples/template ARGS...`,
    /// with `tasks` written to tasks.toml.
    fn run_tasks(&self, tasks: &str, extra: &[&str], env: &[(&str, &str)]) -> Command {
        let file = self.sb.write("tasks.toml", tasks);
        let mut args = vec!["--json", "--template", TEMPLATE];
        args.extend_from_slice(extra);
        let mut c = self.borg(&[], env);
        c.args(run_args(&file, &self.claude, &args));
        c
    }

    /// [`Rig::run_tasks`] with `--progress plain`, waited for; the output and the report.
    fn run(&self, tasks: &str, extra: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
        let mut args = vec!["--progress", "plain"];
        args.extend_from_slice(extra);
        let out = self
            .run_tasks(tasks, &args, env)
            .output()
            .expect("run borg");
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "report is not JSON ({err}):\nstdout: {}\nstderr: {}\nmock:\n{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out),
                self.api.dump()
            )
        });
        (out, v)
    }

    /// [`Rig::run_tasks`] with `--timeout TIMEOUT`, started in the background with
    /// stdout and stderr piped.
    fn spawn(&self, tasks: &str, timeout: &str) -> Child {
        self.run_tasks(tasks, &["--timeout", timeout], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start borg")
    }

    /// The instance's project-files/ folder of a task in a report.
    fn project_files(&self, report: &Value, id: &str) -> PathBuf {
        let inst = task(report, id)["instance"].as_str().unwrap().to_string();
        self.sb.ws().join(inst).join("project-files")
    }

    /// Everything useful when an assertion fails.
    fn context(&self, out: &Output, report: &Value) -> String {
        format!(
            "exit {:?}\nstderr:\n{}\nreport:\n{report:#}\nmock:\n{}",
            out.status.code(),
            stderr(out),
            self.api.dump()
        )
    }
}

/// Waits for a borg started by [`Rig::spawn`]: its output and its report (null when
/// stdout is not JSON).
fn finish(child: Child) -> (Output, Value) {
    let out = child.wait_with_output().expect("wait for borg");
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, rep)
}

/// The pid of the `sleep` a task's Bash tool runs, if it runs.
fn bash_sleep(id: &str) -> Option<i32> {
    task_procs(id).into_iter().find(|&p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).next() == Some(b"sleep".as_slice()))
    })
}

/// A one-task list whose prompt is a TOML literal string, then `extra` lines.
fn one(id: &str, prompt: &str, extra: &str) -> String {
    format!("[[task]]\nid = \"{id}\"\nprompt = '''\n{prompt}\n'''\n{extra}\n")
}

/// The developer's scripted session on examples/template: write NOTES.md, read and fix
/// calc.py, run the tests through Bash, answer.
fn developer_turns() -> Vec<Turn> {
    vec![
        Turn::text("I'll write NOTES.md and look at calc.py.")
            .and_tool(
                "Write",
                json!({"file_path": "{{CWD}}/NOTES.md", "content": "# Notes\n\nadd() was subtracting; fixed.\n"}),
            )
            .and_tool("Read", json!({"file_path": "{{CWD}}/calc.py"})),
        Turn::tool(
            "Edit",
            json!({"file_path": "{{CWD}}/calc.py", "old_string": "    return a - b", "new_string": "    return a + b"}),
        ),
        Turn::tool(
            "Bash",
            json!({"command": "bash run_tests.sh", "description": "Run the unit tests"}),
        ),
        Turn::text("Done. NOTES.md written, add() fixed, 3 passed, 0 failed."),
    ]
}

#[test]
fn the_pinned_cli_is_the_version_the_protocol_notes_describe() {
    let Some(claude) = real_claude() else { return };
    let out = Command::new(&claude)
        .arg("--version")
        .output()
        .expect("run claude --version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{PINNED} (Claude Code)")
    );
}

#[test]
fn a_developer_task_writes_edits_runs_the_tests_and_is_reported() {
    let Some(rig) = Rig::new(vec![Script::new(developer_turns())]) else {
        return;
    };
    let t = Instant::now();
    let (out, rep) = rig.run(
        &one(
            "fix-add",
            "Fix add() in calc.py and note it in NOTES.md.",
            "",
        ),
        &["--timeout", "90s"],
        &[],
    );
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let r = task(&rep, "fix-add");
    assert_eq!(r["status"], "succeeded", "{ctx}");
    assert_eq!(r["attempts"], 1, "{ctx}");
    assert_eq!(r["exit_code"], 0, "{ctx}");
    // Files: created by Write, modified by Edit.
    let files = r["files_changed"].as_array().expect("files_changed");
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "NOTES.md" && f["change"] == "created"),
        "{ctx}"
    );
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "calc.py" && f["change"] == "modified"),
        "{ctx}"
    );
    // Tests: from the real Bash tool's output of run_tests.sh.
    assert_eq!(r["tests"]["passed"], 3, "{ctx}");
    assert_eq!(r["tests"]["failed"], 0, "{ctx}");
    // Cost: the CLI prices 4 turns of 1000 in + 100 out at $5/$25 per million.
    let cost = r["cost_usd"].as_f64().expect("cost_usd");
    assert!((cost - 0.03).abs() < 1e-9, "cost {cost}\n{ctx}");
    // The session id borg reports is the one the CLI sent in its header.
    let sessions = rig.api.session_ids();
    assert_eq!(sessions.len(), 1, "{ctx}");
    assert_eq!(r["session_id"], sessions[0].as_str(), "{ctx}");
    // What the CLI sent: a warm-up HEAD /, then one streamed POST per turn.
    let reqs = rig.api.requests();
    assert!(
        reqs.iter().any(|q| q.method == "HEAD" && q.path == "/"),
        "{ctx}"
    );
    let posts = rig.api.messages();
    assert_eq!(posts.len(), 4, "{ctx}");
    assert!(posts.iter().all(|p| p.streamed()), "{ctx}");
    assert!(
        posts.iter().all(|p| p.path == "/v1/messages?beta=true"),
        "{ctx}"
    );
    assert!(
        posts
            .iter()
            .all(|p| p.header("x-api-key") == Some("test-key")),
        "{ctx}"
    );
    assert!(
        posts[0]
            .header("user-agent")
            .is_some_and(|u| u.contains(PINNED)),
        "{ctx}"
    );
    // The files are really in the instance's project-files/.
    let pf = rig.project_files(&rep, "fix-add");
    assert_eq!(
        std::fs::read_to_string(pf.join("NOTES.md")).unwrap(),
        "# Notes\n\nadd() was subtracting; fixed.\n"
    );
    assert!(std::fs::read_to_string(pf.join("calc.py"))
        .unwrap()
        .contains("    return a + b"));
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
    assert!(task_procs("fix-add").is_empty());
}

/// The raw stdout transcripts of a task's attempts, in attempt order.
fn transcripts(rig: &Rig, report: &Value, id: &str) -> Vec<Vec<Value>> {
    let Some(inst) = task(report, id)["instance"].as_str() else {
        return vec![];
    };
    let logs = rig.sb.ws().join(inst).join("logs");
    (1..20)
        .map_while(|n| std::fs::read_to_string(logs.join(format!("{id}.{n}.stdout.jsonl"))).ok())
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .collect()
}

/// Lines of a transcript with this `type` (and `subtype`, when given).
fn lines_of<'a>(t: &'a [Value], ty: &str, subtype: Option<&str>) -> Vec<&'a Value> {
    t.iter()
        .filter(|l| l["type"] == ty && subtype.is_none_or(|s| l["subtype"] == s))
        .collect()
}

/// Running the tests through the real Bash tool leaves Python's bytecode caches
/// (`__pycache__/*.pyc`) in project-files/, and borg's before/after snapshot reports them
/// as files the agent created. A user expects the files the agent worked on, not build
/// and interpreter caches (nor, in a Rust or Node project, all of `target/` or
/// `node_modules/`).
#[test]
fn files_changed_leaves_out_caches_the_test_run_made() {
    let Some(rig) = Rig::new(vec![Script::new(developer_turns())]) else {
        return;
    };
    let (out, rep) = rig.run(
        &one("fix-add", "Fix add().", ""),
        &["--timeout", "90s"],
        &[],
    );
    let ctx = rig.context(&out, &rep);
    let r = task(&rep, "fix-add");
    assert_eq!(r["status"], "succeeded", "{ctx}");
    assert!(rig
        .project_files(&rep, "fix-add")
        .join("__pycache__")
        .is_dir());
    let paths: Vec<&str> = r["files_changed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, ["NOTES.md", "calc.py"], "{ctx}");
}

#[test]
fn an_api_answering_401_fails_within_seconds_with_the_clis_message() {
    let Some(rig) = Rig::new(vec![Script::default().always_fail(Fault::unauthorized())]) else {
        return;
    };
    let t = Instant::now();
    let (out, rep) = rig.run(&one("auth", "Fix add().", ""), &["--timeout", "60s"], &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let r = task(&rep, "auth");
    assert_eq!(r["status"], "failed", "{ctx}");
    assert_eq!(r["fault"], "fleet_wide", "{ctx}");
    assert_eq!(
        r["error"], "Invalid API key · Fix external API key",
        "{ctx}"
    );
    assert_eq!(r["cost_usd"], 0.0, "{ctx}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    // CLAUDE_CODE_MAX_RETRIES=0: one request, no retry.
    assert_eq!(rig.api.messages().len(), 1, "{ctx}");
    let tr = &transcripts(&rig, &rep, "auth")[0];
    let res = lines_of(tr, "result", None);
    assert_eq!(res.len(), 1, "{ctx}");
    assert_eq!(res[0]["is_error"], true);
    assert_eq!(
        res[0]["subtype"], "success",
        "the CLI says success on an API error"
    );
    assert_eq!(res[0]["api_error_status"], 401);
    assert_eq!(
        lines_of(tr, "assistant", None)[0]["error"],
        "authentication_failed"
    );
}

/// A 429 the way an API key sees it: the CLI honours `retry-after` while it has retries
/// left, and then reports `Request rejected (429)` with the API's message. With an API key
/// it shows no usage-limit reset (no `rate_limit_event`, whatever the
/// `anthropic-ratelimit-unified-*` headers say), so borg treats it as a transient
/// failure and retries the task.
#[test]
fn a_429_is_retried_by_the_cli_then_by_borg_and_the_task_succeeds() {
    let reset = chrono::Utc::now().timestamp() + 3600;
    let mut limit = Fault::too_many(1);
    if let Fault::Status { headers, .. } = &mut limit {
        headers.extend([
            (
                "anthropic-ratelimit-unified-status".to_string(),
                "rejected".to_string(),
            ),
            (
                "anthropic-ratelimit-unified-reset".to_string(),
                reset.to_string(),
            ),
            (
                "anthropic-ratelimit-unified-representative-claim".to_string(),
                "five_hour".to_string(),
            ),
        ]);
    }
    // Attempt 1: two 429s, both retried by the CLI (CLAUDE_CODE_MAX_RETRIES=1 lets it
    // retry once), so it gives up. Attempt 2 (borg's retry): one 429 the CLI retries past.
    let script = Script::new(vec![Turn::text("Done after the rate limit.")])
        .then_fail(limit.clone())
        .then_fail(limit.clone())
        .then_fail(limit);
    let Some(rig) = Rig::new(vec![script]) else {
        return;
    };
    rig.sb.write(
        "config.toml",
        "[run]\ninterrupt_grace = \"2s\"\nterm_grace = \"1s\"\nbackoff_base = \"200ms\"\nmax_park = \"1s\"\n",
    );
    let t = Instant::now();
    let (out, rep) = rig.run(
        &one("limited", "Say done.", "retries = 1"),
        &["--timeout", "60s"],
        &[("CLAUDE_CODE_MAX_RETRIES", "1")],
    );
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let r = task(&rep, "limited");
    assert_eq!(r["status"], "succeeded", "{ctx}");
    assert_eq!(r["attempts"], 2, "{ctx}");
    let trs = transcripts(&rig, &rep, "limited");
    assert_eq!(trs.len(), 2, "{ctx}");
    // Attempt 1: one api_retry line for the 429 (retry-after honoured), then the error.
    let retries = lines_of(&trs[0], "system", Some("api_retry"));
    assert_eq!(retries.len(), 1, "{ctx}");
    assert_eq!(retries[0]["error_status"], 429);
    assert_eq!(retries[0]["error"], "rate_limit");
    assert!(
        retries[0]["retry_delay_ms"].as_f64().unwrap() >= 1000.0,
        "{ctx}"
    );
    let res = lines_of(&trs[0], "result", None);
    assert_eq!(res[0]["api_error_status"], 429, "{ctx}");
    assert!(
        res[0]["result"]
            .as_str()
            .unwrap()
            .starts_with("API Error: Request rejected (429) · "),
        "{ctx}"
    );
    assert!(
        lines_of(&trs[0], "rate_limit_event", None).is_empty(),
        "an API key gets no usage-limit event"
    );
    // Attempt 2: retried once inside the CLI, then answered.
    assert_eq!(
        lines_of(&trs[1], "system", Some("api_retry")).len(),
        1,
        "{ctx}"
    );
    assert_eq!(rig.api.messages().len(), 4, "{ctx}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn server_errors_and_a_silent_api_fail_the_task_with_the_clis_message() {
    let cases: [(&str, Fault, &str); 4] = [
        ("e500", Fault::server_error(), "API Error: 500"),
        ("e529", Fault::overloaded(), "529"),
        ("silent", Fault::NoAnswer, "timed out"),
        // The connection dropped mid-body: retried like a network error, never the
        // non-streaming fallback.
        ("cut", Fault::CutStream(3), "ECONNRESET"),
    ];
    let scripts = cases
        .iter()
        .map(|(id, f, _)| {
            Script::default()
                .when(&format!("CASE-{id}"))
                .always_fail(f.clone())
        })
        .collect();
    let Some(rig) = Rig::new(scripts) else {
        return;
    };
    let tasks: String = cases
        .iter()
        .map(|(id, _, _)| one(id, &format!("CASE-{id}: fix add()."), ""))
        .collect();
    let t = Instant::now();
    let (out, rep) = rig.run(
        &tasks,
        &["--timeout", "60s", "--concurrency", "4"],
        &[("API_TIMEOUT_MS", "2000")],
    );
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    for (id, _, text) in &cases {
        let r = task(&rep, id);
        assert_eq!(r["status"], "failed", "{id}\n{ctx}");
        assert_eq!(r["fault"], "transient", "{id}\n{ctx}");
        let err = r["error"].as_str().unwrap_or("");
        assert!(err.contains(text), "{id}: {err}\n{ctx}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

/// A stream that ends mid-message (the HTTP body ends cleanly, with no `message_stop`):
/// the CLI at once asks again without `stream`, with no `api_retry` line and even with
/// `CLAUDE_CODE_MAX_RETRIES=0`, and carries on. (A connection dropped mid-body is an
/// ordinary retried error instead: see the test above.)
#[test]
fn a_stream_ending_midway_is_recovered_by_the_non_streaming_fallback() {
    let script = Script::new(developer_turns()).then_fail(Fault::EndStream(3));
    let Some(rig) = Rig::new(vec![script]) else {
        return;
    };
    let (out, rep) = rig.run(&one("cut", "Fix add().", ""), &["--timeout", "60s"], &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let r = task(&rep, "cut");
    assert_eq!(r["status"], "succeeded", "{ctx}");
    assert_eq!(r["tests"]["passed"], 3, "{ctx}");
    let posts = rig.api.messages();
    assert!(posts[0].streamed() && !posts[1].streamed(), "{ctx}");
    assert_eq!(posts[1].answer, "json", "{ctx}");
    let tr = &transcripts(&rig, &rep, "cut")[0];
    assert!(
        lines_of(tr, "system", Some("api_retry")).is_empty(),
        "{ctx}"
    );
    assert_eq!(
        posts[0].body["messages"], posts[1].body["messages"],
        "the fallback re-sends the same conversation"
    );
    assert_eq!(posts.len(), 5, "{ctx}");
    // The cost still counts every answered turn (the cut one was never priced).
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.03).abs() < 1e-9, "cost {cost}\n{ctx}");
}

#[test]
fn a_timeout_while_the_bash_tool_sleeps_kills_the_whole_tree() {
    let script = Script::new(vec![Turn::tool(
        "Bash",
        json!({"command": "sleep 300", "description": "Wait a long time", "timeout": 600000}),
    )]);
    let Some(rig) = Rig::new(vec![script]) else {
        return;
    };
    let child = rig.spawn(&one("sleepy", "Wait.", ""), "4s");
    // While it runs: the Bash tool's `sleep 300` exists, in a session of its own.
    let found = wait_until(Duration::from_secs(20), || bash_sleep("sleepy").is_some());
    let claude_pid = task_procs("sleepy").into_iter().find(|&p| {
        std::fs::read_link(format!("/proc/{p}/exe"))
            .is_ok_and(|e| e.ends_with("claude.exe") || e.ends_with("claude"))
    });
    let own_session = bash_sleep("sleepy").zip(claude_pid).map(|(s, c)| {
        let sid = |p: i32| nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(p))).ok();
        sid(s) != sid(c)
    });
    let t = Instant::now();
    let (out, rep) = finish(child);
    let ctx = rig.context(&out, &rep);
    assert!(found, "the Bash tool's sleep never started\n{ctx}");
    assert_eq!(
        own_session,
        Some(true),
        "the CLI puts the tool's shell in its own session\n{ctx}"
    );
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let r = task(&rep, "sleepy");
    assert_eq!(r["status"], "timed_out", "{ctx}");
    assert_eq!(r["watchdog"], "timeout", "{ctx}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        task_procs("sleepy").is_empty(),
        "a process of the attempt survived\n{ctx}"
    );
}

#[test]
fn a_developer_hands_off_to_a_tester_and_both_run_on_the_real_cli() {
    let tester = Script::new(vec![
        Turn::tool(
            "Bash",
            json!({"command": "bash run_tests.sh", "description": "Run the unit tests"}),
        ),
        Turn::text("Tested: 3 passed, 0 failed."),
    ])
    .when("as the tester");
    let developer = Script::new(developer_turns());
    let Some(rig) = Rig::new(vec![tester, developer]) else {
        return;
    };
    let (out, rep) = rig.run(
        &one("fix", "Fix add() in calc.py.", "handoff_to = \"tester\""),
        &["--timeout", "90s"],
        &[],
    );
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let dev = task(&rep, "fix");
    assert_eq!(dev["status"], "succeeded", "{ctx}");
    assert_eq!(dev["handoff_to"], "tester", "{ctx}");
    let t = task(&rep, "fix.tester-1");
    assert_eq!(t["status"], "succeeded", "{ctx}");
    assert_eq!(t["role"], "tester", "{ctx}");
    assert_eq!(t["tests"]["passed"], 3, "{ctx}");
    assert_eq!(t["tests"]["failed"], 0, "{ctx}");
    assert_ne!(dev["instance"], t["instance"], "{ctx}");
    // Two CLI sessions, each reported with the id it sent.
    let sessions = rig.api.session_ids();
    assert_eq!(sessions.len(), 2, "{ctx}");
    assert_eq!(dev["session_id"], sessions[0].as_str(), "{ctx}");
    assert_eq!(t["session_id"], sessions[1].as_str(), "{ctx}");
    // The tester's conversation carried the handoff context and ran in its own workspace,
    // where the developer's fix had been carried over.
    let tester_posts: Vec<_> = rig
        .api
        .messages()
        .into_iter()
        .filter(|p| p.script == Some(0))
        .collect();
    assert_eq!(tester_posts.len(), 2, "{ctx}");
    let first = tester_posts[0].body["messages"].to_string();
    assert!(
        first.contains("Handoff context") && first.contains("`fix`"),
        "{first}"
    );
    let tester_cwd = mock_api::working_directory(&tester_posts[0].body).unwrap();
    assert_eq!(
        Path::new(&tester_cwd),
        rig.project_files(&rep, "fix.tester-1"),
        "{ctx}"
    );
    assert!(
        std::fs::read_to_string(Path::new(&tester_cwd).join("calc.py"))
            .unwrap()
            .contains("return a + b")
    );
}

/// One raw HTTP/1.1 exchange with the mock (no client library needed).
fn raw_http(url: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the mock");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nx-claude-code-session-id: s-1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The mock itself, without the CLI: SSE framing, `{{CWD}}`, the JSON form, turn
/// counting, faults and the request log.
#[test]
fn the_mock_api_speaks_sse_and_json_and_logs_requests() {
    let script = Script::new(vec![
        Turn::text("hi").and_tool("Read", json!({"file_path": "{{CWD}}/a.txt"})),
        Turn::text("bye"),
    ])
    .then_fail(Fault::too_many(7));
    let api = MockApi::start(vec![script]);
    let req = |stream: bool, assistant_turns: usize| {
        let mut messages =
            vec![json!({"role": "user", "content": [{"type": "text", "text": "go"}]})];
        for _ in 0..assistant_turns {
            messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": "x"}]}));
            messages.push(json!({"role": "user", "content": "ok"}));
        }
        json!({
            "model": "claude-test",
            "stream": stream,
            "system": [{"type": "text", "text": "x"}, {"type": "text", "text": "Env:\nPrimary working directory: /work/p\nOther: y"}],
            "messages": messages,
        })
        .to_string()
    };
    assert!(raw_http(&api.url(), "HEAD", "/", "").starts_with("HTTP/1.1 200"));
    let limited = raw_http(&api.url(), "POST", "/v1/messages?beta=true", &req(true, 0));
    assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
    assert!(limited.contains("retry-after: 7"), "{limited}");
    assert!(
        limited.contains(r#""type":"rate_limit_error""#),
        "{limited}"
    );
    let sse = raw_http(&api.url(), "POST", "/v1/messages?beta=true", &req(true, 0));
    assert!(sse.contains("content-type: text/event-stream"), "{sse}");
    let order = [
        "event: message_start\ndata: {",
        "event: content_block_start\ndata: {",
        r#""text":"hi""#,
        "event: content_block_stop",
        r#""name":"Read""#,
        r#""partial_json":"{\"file_path\":\"/work/p/a.txt\"}""#,
        r#""stop_reason":"tool_use""#,
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    let mut at = 0;
    for o in order {
        let i = sse[at..]
            .find(o)
            .unwrap_or_else(|| panic!("{o} missing after byte {at}:\n{sse}"));
        at += i + o.len();
    }
    let plain = raw_http(&api.url(), "POST", "/v1/messages", &req(false, 1));
    let body = &plain[plain.find("\r\n\r\n").unwrap() + 4..];
    let msg: Value = serde_json::from_str(body).expect("a JSON message");
    assert_eq!(msg["content"][0]["text"], "bye");
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(msg["usage"]["output_tokens"], mock_api::OUTPUT_TOKENS);
    assert!(raw_http(&api.url(), "GET", "/v1/models", "").starts_with("HTTP/1.1 404"));
    let log = api.requests();
    assert_eq!(log.len(), 5);
    assert_eq!(api.messages().len(), 3);
    assert_eq!(api.session_ids(), vec!["s-1".to_string()]);
    assert_eq!(log[1].answer, "fault:429");
    assert!(log[2].streamed() && !log[3].streamed());
}

/// borg's per-task flags, as the real CLI takes them: `--max-turns=`,
/// `--max-budget-usd=`, `--model=`, `--permission-mode=`.
#[test]
fn per_task_limits_model_and_permission_mode_reach_the_real_cli() {
    let ids = ["turns", "budget", "model", "perm"];
    let scripts = ids
        .iter()
        .map(|id| Script::new(developer_turns()).when(&format!("CASE-{id}")))
        .collect();
    let Some(rig) = Rig::new(scripts) else {
        return;
    };
    // The four run at once and two of them edit calc.py: with coordination's auto-lock
    // the first to write would hold it and the other's Edit would be refused (as it
    // should be for agents sharing a repository). This test is about the flags, so each
    // agent keeps its own copy to itself.
    rig.sb.write(
        "config.toml",
        "[run]\ninterrupt_grace = \"2s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"10s\"\n\n[coord]\nauto_lock = false\n",
    );
    let tasks = [
        one("turns", "CASE-turns: fix add().", "max_turns = 1"),
        one(
            "budget",
            "CASE-budget: fix add().",
            "max_budget_usd = 0.005",
        ),
        one("model", "CASE-model: fix add().", "model = \"sonnet\""),
        one(
            "perm",
            "CASE-perm: fix add().",
            "permission_mode = \"acceptEdits\"",
        ),
    ]
    .concat();
    let (out, rep) = rig.run(&tasks, &["--timeout", "60s", "--concurrency", "4"], &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let posts = |i: usize| -> Vec<mock_api::Logged> {
        rig.api
            .messages()
            .into_iter()
            .filter(|p| p.script == Some(i))
            .collect()
    };

    let turns = task(&rep, "turns");
    assert_eq!(turns["status"], "failed", "{ctx}");
    assert_eq!(turns["fault"], "permanent", "{ctx}");
    assert_eq!(
        turns["error"], "Reached maximum number of turns (1)",
        "{ctx}"
    );
    assert_eq!(posts(0).len(), 1, "{ctx}");

    let budget = task(&rep, "budget");
    assert_eq!(budget["status"], "failed", "{ctx}");
    assert_eq!(budget["fault"], "permanent", "{ctx}");
    assert_eq!(budget["error"], "Reached maximum budget ($0.005)", "{ctx}");
    assert_eq!(posts(1).len(), 1, "{ctx}");

    // The alias is resolved by the CLI, and priced as that model ($3/M in, $15/M out).
    let model = task(&rep, "model");
    assert_eq!(model["status"], "succeeded", "{ctx}");
    assert!(posts(2).iter().all(|p| p.body["model"]
        .as_str()
        .is_some_and(|m| m.contains("sonnet"))));
    let cost = model["cost_usd"].as_f64().unwrap();
    assert!((cost - 4.0 * 0.0045).abs() < 1e-9, "cost {cost}\n{ctx}");

    // acceptEdits: the edits happen, Bash is denied, and the run still ends "success".
    let perm = task(&rep, "perm");
    assert_eq!(perm["status"], "succeeded", "{ctx}");
    assert_eq!(perm["tests"]["passed"], 0, "{ctx}");
    let pf = rig.project_files(&rep, "perm");
    assert!(std::fs::read_to_string(pf.join("calc.py"))
        .unwrap()
        .contains("return a + b"));
    let tr = &transcripts(&rig, &rep, "perm")[0];
    let denials = &lines_of(tr, "result", None)[0]["permission_denials"];
    assert_eq!(denials[0]["tool_name"], "Bash", "{ctx}");
}

/// Ctrl-C to borg while the real Bash tool runs `sleep 300`: borg stops the child, kills
/// the tool's shell (in its own session), reports the task interrupted and exits 130.
#[test]
fn ctrl_c_to_borg_during_a_bash_tool_leaves_no_process_behind() {
    let script = Script::new(vec![Turn::tool(
        "Bash",
        json!({"command": "sleep 300", "description": "Wait a long time"}),
    )]);
    let Some(rig) = Rig::new(vec![script]) else {
        return;
    };
    let child = rig.spawn(&one("stopme", "Wait.", ""), "60s");
    let sleeping = wait_until(Duration::from_secs(20), || bash_sleep("stopme").is_some());
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let t = Instant::now();
    let (out, rep) = finish(child);
    let ctx = rig.context(&out, &rep);
    assert!(sleeping, "the Bash tool's sleep never started\n{ctx}");
    assert_eq!(out.status.code(), Some(130), "{ctx}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(task(&rep, "stopme")["status"], "interrupted", "{ctx}");
    assert!(
        task_procs("stopme").is_empty(),
        "a process of the attempt survived\n{ctx}"
    );
}

/// On a wall-clock timeout borg stops the CLI with SIGINT, and the CLI answers with an
/// `error_during_execution` result (`aborted_tools`). The report's error then reads
/// "aborted during a tool call (aborted_tools)", which hides why: borg's own timeout.
#[test]
fn a_timed_out_task_says_it_timed_out() {
    let script = Script::new(vec![Turn::tool(
        "Bash",
        json!({"command": "sleep 300", "description": "Wait a long time"}),
    )]);
    let Some(rig) = Rig::new(vec![script]) else {
        return;
    };
    let (out, rep) = rig.run(&one("late", "Wait.", ""), &["--timeout", "3s"], &[]);
    let ctx = rig.context(&out, &rep);
    let r = task(&rep, "late");
    assert_eq!(r["status"], "timed_out", "{ctx}");
    let err = r["error"].as_str().unwrap_or("");
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}\n{ctx}"
    );
}

/// A task's scripted turns: write `file`, then say `done`. Chosen by `marker` in the
/// task's own prompt, its turns counted from there (so that a resumed conversation,
/// which carries earlier tasks, still gets this task's turns).
fn marked_task(marker: &str, file: &str, done: &str) -> Script {
    Script::new(vec![
        Turn::tool(
            "Write",
            json!({"file_path": format!("{{{{CWD}}}}/{file}"), "content": format!("{marker}\n")}),
        ),
        Turn::text(done),
    ])
    .when(marker)
    .per_prompt()
}

/// `n` tasks on one instance, each after the previous one, with this `session` mode.
fn chain(n: usize, instance: &str, session: &str) -> String {
    let mut list = format!("[defaults]\ninstance = \"{instance}\"\nsession = \"{session}\"\n\n");
    for i in 1..=n {
        let deps = if i > 1 {
            format!("depends_on = [\"step-{}\"]\n", i - 1)
        } else {
            String::new()
        };
        list.push_str(&format!(
            "[[task]]\nid = \"step-{i}\"\n{deps}prompt = \"Task MARK-{i}: write file{i}.txt.\"\n\n"
        ));
    }
    list
}

/// Scripts for [`chain`]: the newest marker first, since a resumed conversation holds
/// the earlier ones too.
fn chain_scripts(n: usize) -> Vec<Script> {
    (1..=n)
        .rev()
        .map(|i| {
            marked_task(
                &format!("MARK-{i}"),
                &format!("file{i}.txt"),
                &format!("step {i} done"),
            )
        })
        .collect()
}

#[test]
fn a_continued_session_sends_the_earlier_tasks_conversation_to_the_api() {
    let Some(rig) = Rig::new(chain_scripts(2)) else {
        return;
    };
    let (out, rep) = rig.run(
        &chain(2, "dev-cont", "continue"),
        &["--timeout", "90s"],
        &[],
    );
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert_eq!(task(&rep, "step-2")["status"], "succeeded", "{ctx}");
    // One session for both tasks: the second resumed the first.
    let sessions = rig.api.session_ids();
    assert_eq!(sessions.len(), 1, "{ctx}");
    assert_eq!(
        task(&rep, "step-1")["session_id"],
        sessions[0].as_str(),
        "{ctx}"
    );
    assert_eq!(
        task(&rep, "step-2")["session_id"],
        sessions[0].as_str(),
        "{ctx}"
    );
    // The second task's first request carries the first task's messages: its prompt,
    // its Write and its answer, then the new task alone (no summary of the first).
    let second: Vec<_> = rig
        .api
        .messages()
        .into_iter()
        .filter(|p| p.script == Some(0))
        .collect();
    assert!(!second.is_empty(), "{ctx}");
    let msgs = second[0].body["messages"].to_string();
    for want in ["MARK-1", "file1.txt", "step 1 done", "MARK-2"] {
        assert!(
            msgs.contains(want),
            "{want} missing from the resumed request: {msgs}"
        );
    }
    assert!(!msgs.contains("Your earlier tasks"), "{msgs}");
    let pf = rig.project_files(&rep, "step-2");
    assert!(pf.join("file1.txt").is_file() && pf.join("file2.txt").is_file());
}

#[test]
fn concurrent_children_keep_their_state_in_their_own_config_folders_and_resume_from_them() {
    let scripts = vec![
        marked_task("MARK-C3", "c3.txt", "c3 done"),
        marked_task("MARK-A1", "a1.txt", "a1 done"),
        marked_task("MARK-B2", "b2.txt", "b2 done"),
    ];
    let Some(rig) = Rig::new(scripts) else {
        return;
    };
    let list = "[[task]]\nid = \"cfg-a\"\ninstance = \"cfg-one\"\nprompt = \"Task MARK-A1.\"\n\n\
                [[task]]\nid = \"cfg-b\"\ninstance = \"cfg-two\"\nprompt = \"Task MARK-B2.\"\n\n\
                [[task]]\nid = \"cfg-c\"\ninstance = \"cfg-one\"\nsession = \"continue\"\ndepends_on = [\"cfg-a\"]\nprompt = \"Task MARK-C3.\"\n";
    let (out, rep) = rig.run(list, &["--timeout", "90s", "--concurrency", "2"], &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    for (id, inst) in [("cfg-a", "cfg-one"), ("cfg-b", "cfg-two")] {
        let cfg = rig.sb.ws().join(inst).join("claude-config");
        assert!(
            cfg.join(".claude.json").is_file(),
            "{inst}: no .claude.json\n{ctx}"
        );
        let session = task(&rep, id)["session_id"].as_str().unwrap().to_string();
        let transcript = std::fs::read_dir(cfg.join("projects"))
            .unwrap()
            .flatten()
            .any(|d| d.path().join(format!("{session}.jsonl")).is_file());
        assert!(transcript, "{inst}: no transcript of {session}\n{ctx}");
    }
    // HOME stayed untouched.
    assert!(!rig.home().join(".claude.json").exists(), "{ctx}");
    assert!(!rig.home().join(".claude/projects").exists(), "{ctx}");
    // The continued task resumed cfg-a's session from cfg-one's folder.
    assert_eq!(task(&rep, "cfg-c")["status"], "succeeded", "{ctx}");
    assert_eq!(
        task(&rep, "cfg-c")["session_id"],
        task(&rep, "cfg-a")["session_id"],
        "{ctx}"
    );
    let resumed: Vec<_> = rig
        .api
        .messages()
        .into_iter()
        .filter(|p| p.script == Some(0))
        .collect();
    assert!(
        resumed[0].body["messages"].to_string().contains("a1 done"),
        "{ctx}"
    );
}

/// The input tokens of a run's requests as the scripted API counts them, and the
/// tokens borg reported (input, cache reads), for one session mode.
fn token_figures(mode: &str, n: usize) -> Option<Value> {
    let rig = Rig::caching(chain_scripts(n))?;
    let (out, rep) = rig.run(&chain(n, "dev-tokens", mode), &["--timeout", "120s"], &[]);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let posts = rig.api.messages();
    let sent: u64 = posts
        .iter()
        .map(|p| mock_api::request_tokens(&p.body))
        .sum();
    let t = &rep["totals"]["tokens"];
    Some(json!({
        "mode": mode, "tasks": n, "requests": posts.len(), "sent": sent,
        "input": t["input"], "cache_read": t["cache_read"],
    }))
}

/// Fresh sessions against continued ones, five tasks on one instance: the figures of
/// the README's Performance section (`bench/run.sh tokens` prints them).
#[test]
fn tokens_fresh_vs_continue_for_five_tasks_on_one_instance() {
    let Some(fresh) = token_figures("fresh", 5) else {
        return;
    };
    let Some(cont) = token_figures("continue", 5) else {
        return;
    };
    eprintln!("TOKENS {fresh}");
    eprintln!("TOKENS {cont}");
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    // Continuing resends the conversation, which the prompt cache then serves: more
    // sent, more read from the cache, fewer tokens paid at the full input price.
    assert!(n(&cont, "sent") > n(&fresh, "sent"), "{fresh} {cont}");
    assert!(
        n(&cont, "cache_read") > n(&fresh, "cache_read"),
        "{fresh} {cont}"
    );
    assert!(n(&cont, "input") < n(&fresh, "input"), "{fresh} {cont}");
}

/// Git mode with the real CLI: its Write, Edit and Bash tools work in an instance's
/// worktree, borg commits what it left on the task's branch (the repository's
/// .gitignore keeps the test run's caches out), and the user's repository is untouched.
#[test]
fn in_git_mode_the_real_clis_work_is_committed_on_the_task_branch() {
    let Some(rig) = Rig::new(vec![Script::new(developer_turns())]) else {
        return;
    };
    let mut files: Vec<(String, String)> = std::fs::read_dir(TEMPLATE)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    files.push((".gitignore".into(), "__pycache__/\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let repo = common::git::busy_user_repo(&rig.sb.path().join("calc"), &refs);
    let before = repo.user_state();
    let file = rig.sb.write(
        "tasks.toml",
        &one(
            "fix-add-git",
            "Fix add() in calc.py and note it in NOTES.md.",
            "",
        ),
    );
    let repo_dir = repo.dir.to_str().unwrap().to_string();
    let args = [
        "--json",
        "--progress",
        "plain",
        "--timeout",
        "90s",
        "--repo",
        &repo_dir,
    ];
    let mut cmd = rig.borg(&[], &[]);
    cmd.args(run_args(&file, &rig.claude, &args));
    let out = cmd.output().expect("run borg");
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let ctx = rig.context(&out, &rep);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let r = task(&rep, "fix-add-git");
    assert_eq!(r["branch"], "borg/fix-add-git", "{ctx}");
    assert_eq!(
        r["files_changed"],
        json!([
            {"path": "NOTES.md", "change": "created", "insertions": 3, "deletions": 0},
            {"path": "calc.py", "change": "modified", "insertions": 1, "deletions": 1}
        ]),
        "{ctx}"
    );
    assert_eq!(r["tests"]["passed"], 3, "{ctx}");
    assert!(repo
        .show("borg/fix-add-git", "calc.py")
        .contains("return a + b"));
    let tree = repo.git(&["ls-tree", "-r", "--name-only", "borg/fix-add-git"]);
    assert!(!tree.contains("__pycache__"), "{tree}");
    let msg = repo.git(&["log", "-1", "--format=%B", "borg/fix-add-git"]);
    let session = r["session_id"].as_str().unwrap();
    assert!(msg.contains(&format!("Borg-Session: {session}")), "{msg}");
    assert_eq!(repo.user_state(), before, "the user's repository changed");
    repo.assert_fsck_clean();
}
