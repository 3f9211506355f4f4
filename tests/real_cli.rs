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
use mock_api::{MockApi, Script, Turn};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/template");
/// The version these tests and docs/claude-cli.md were checked against.
const PINNED: &str = "2.1.197";

/// The real CLI, or None (after a loud notice) when it is not installed and not required.
fn real_claude() -> Option<PathBuf> {
    let configured = std::env::var_os("BORG_REAL_CLAUDE").map(PathBuf::from);
    let default = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/claude-code/node_modules/@anthropic-ai/claude-code/bin/claude.exe");
    let path = configured.clone().unwrap_or(default);
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
    eprintln!(
        "\n==================== SKIPPED: REAL-CLI TEST ====================\n{msg}\n================================================================\n"
    );
    None
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
            api: MockApi::start(scripts),
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

    /// `borg run tasks.toml --json --claude REAL --template examples/template ...`.
    fn run(&self, tasks: &str, extra: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
        let file = self.sb.write("tasks.toml", tasks);
        let claude = self.claude.to_str().unwrap();
        let mut args = vec![
            "run",
            file.to_str().unwrap(),
            "--json",
            "--claude",
            claude,
            "--template",
            TEMPLATE,
            "--progress",
            "plain",
        ];
        args.extend_from_slice(extra);
        let out = self.borg(&args, env).output().expect("run borg");
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
    assert!(procs_with_env("BORG_TASK_ID", "fix-add").is_empty());
}
