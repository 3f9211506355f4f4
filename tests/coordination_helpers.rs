//! The two helpers claude runs for borg, driven directly as claude drives them:
//! `borg mcp` over stdio JSON-RPC (handshake, tools, bad input of every tool: a tool
//! error and nothing written; a stale claim refused) and `borg hook pre-tool-use`
//! (fails closed: an unreadable payload, a missing environment or store is a deny);
//! and `borg locks release`, which refuses a live holder.

mod common;

use borg::store::coord::*;
use borg::store::sqlite::SqliteStore;
use borg::store::*;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A store with one running task (`id`, claimed by `owner`) and a project folder.
struct World {
    dir: tempfile::TempDir,
    store: SqliteStore,
    actor: Actor,
}

impl World {
    fn new(id: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("project")).unwrap();
        let store = SqliteStore::open(&dir.path().join("borg.db")).unwrap();
        let t = NewTask {
            id: id.into(),
            role: "developer".into(),
            priority: 0,
            order: 0,
            depends_on: vec![],
            instance: None,
            max_attempts: 1,
            spec: json!({ "id": id, "prompt": "p" }),
            hash: "h".into(),
            awaits_person: false,
        };
        store.sync_tasks(&[t], now()).unwrap();
        let actor = claim(&store, id, "owner-1", "dev-1");
        World { dir, store, actor }
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("borg.db")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    /// The environment borg gives a child (and claude its helpers).
    fn env(&self, fence: i64) -> Vec<(String, String)> {
        let cfg = json!({ "root": self.root(), "role": "developer", "auto_lock": true, "on_violation": "warn",
            "lease_ttl_ms": 600000, "claim_lease_ms": 60000, "max_agent_tasks": 20, "writable": [],
            "roles": ["developer", "tester"], "retries": 0, "started_ms": now(), "protect": [self.dir.path().join("coord")] });
        vec![
            ("BORG_STORE".into(), self.store_path().display().to_string()),
            ("BORG_TASK_ID".into(), self.actor.task.clone()),
            ("BORG_CLAIM_TOKEN".into(), fence.to_string()),
            ("BORG_INSTANCE_ID".into(), self.actor.instance.clone()),
            ("BORG_ATTEMPT_UID".into(), "uid-1".into()),
            ("BORG_COORD".into(), cfg.to_string()),
            ("ANTHROPIC_API_KEY".into(), "sk-never-logged".into()),
        ]
    }
}

/// Claims and starts `id` (taking it over if its claim expired long ago).
fn claim(store: &SqliteStore, id: &str, owner: &str, instance: &str) -> Actor {
    let r = ClaimRequest {
        owner: owner.into(),
        roles: vec!["developer".into()],
        idle_instances: vec![],
        reuse: vec![],
        only: vec![id.into()],
        scoped: false,
        lease: Duration::from_secs(600),
        now_ms: now(),
    };
    let c = store.claim_next(&r).unwrap().expect("claimable");
    store
        .start_attempt(
            &c.token,
            &AttemptStart {
                instance: instance.into(),
                now_ms: now(),
                ..Default::default()
            },
        )
        .unwrap();
    Actor {
        task: id.into(),
        fence: c.token.fence,
        instance: instance.into(),
        uid: "uid-1".into(),
    }
}

/// A `borg mcp` child and its reply lines.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    id: u64,
}

impl Mcp {
    fn start(env: &[(String, String)]) -> Mcp {
        let mut child = Command::new(borg_bin())
            .arg("mcp")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Mcp {
            child,
            stdin,
            lines,
            id: 0,
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let m = json!({ "jsonrpc": "2.0", "id": self.id, "method": method, "params": params });
        writeln!(self.stdin, "{m}").unwrap();
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("an answer from borg mcp");
            let v: Value = serde_json::from_str(&l).unwrap();
            if v["id"] == self.id {
                return v;
            }
        }
    }

    fn notify(&mut self, method: &str) {
        writeln!(
            self.stdin,
            "{}",
            json!({ "jsonrpc": "2.0", "method": method })
        )
        .unwrap();
    }

    /// The handshake as claude does it, with this protocol version.
    fn handshake(&mut self, version: &str) -> Value {
        let v = self.request(
            "initialize",
            json!({ "protocolVersion": version, "capabilities": { "roots": {}, "elicitation": {} },
            "clientInfo": { "name": "claude-code", "version": "2.1.197" } }),
        );
        self.notify("notifications/initialized");
        v
    }

    /// A tool call's result object.
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let v = self.request("tools/call", json!({ "name": tool, "arguments": args, "_meta": { "claudecode/toolUseId": "toolu_x", "progressToken": 1 } }));
        assert!(
            v["error"].is_null(),
            "a tool call never fails at the protocol level: {v}"
        );
        v["result"].clone()
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(r: &Value) -> String {
    r["content"][0]["text"].as_str().unwrap_or("").to_string()
}

#[test]
fn borg_mcp_answers_the_handshake_and_lists_its_tools() {
    let w = World::new("hs-ch");
    let mut m = Mcp::start(&w.env(w.actor.fence));
    let init = m.handshake("2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "borg");
    assert!(init["result"]["instructions"]
        .as_str()
        .unwrap()
        .contains("lock_files"));
    let tools = m.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "status",
            "lock_files",
            "unlock_files",
            "log_decision",
            "list_decisions",
            "send_message",
            "read_messages",
            "report_progress",
            "save_context",
            "get_context",
            "request_handoff",
            "create_task"
        ]
    );
    for t in tools["result"]["tools"].as_array().unwrap() {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().unwrap().len() > 20, "{t}");
    }
    let ok = m.call(
        "lock_files",
        json!({ "paths": ["./src/../calc.py"], "reason": "r" }),
    );
    assert_eq!(ok["isError"], false);
    assert_eq!(ok["structuredContent"]["granted"], json!(["calc.py"]));
}

#[test]
fn bad_input_to_every_tool_is_a_tool_error_and_writes_nothing() {
    let w = World::new("bad-ch");
    let mut m = Mcp::start(&w.env(w.actor.fence));
    m.handshake("2025-11-25");
    let mib = "x".repeat(1 << 20);
    let outside = "/etc/passwd".to_string();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("lock_files", json!({}), "missing field `paths`"),
        (
            "lock_files",
            json!({ "paths": "calc.py", "reason": "r" }),
            "invalid type",
        ),
        (
            "lock_files",
            json!({ "paths": ["../x"], "reason": "r" }),
            "outside the repository",
        ),
        (
            "lock_files",
            json!({ "paths": [outside], "reason": "r" }),
            "outside the repository",
        ),
        (
            "lock_files",
            json!({ "paths": [], "reason": "r" }),
            "paths is empty",
        ),
        (
            "lock_files",
            json!({ "paths": ["a"], "reason": "r", "wait_s": 100000 }),
            "wait_s",
        ),
        (
            "lock_files",
            json!({ "paths": ["a"], "reason": mib }),
            "bytes long",
        ),
        ("unlock_files", json!({ "paths": 5 }), "invalid type"),
        (
            "log_decision",
            json!({ "category": "c", "title": "t" }),
            "missing field `description`",
        ),
        (
            "log_decision",
            json!({ "category": "c", "title": "t", "description": mib }),
            "bytes long",
        ),
        (
            "log_decision",
            json!({ "category": "c", "title": "two\nlines", "description": "d" }),
            "line breaks",
        ),
        ("list_decisions", json!({ "limit": "ten" }), "invalid type"),
        ("list_decisions", json!({ "limit": 0 }), "limit"),
        (
            "send_message",
            json!({ "to": "nobody", "body": "b" }),
            "no instance, role or task named",
        ),
        (
            "send_message",
            json!({ "to": "all" }),
            "missing field `body`",
        ),
        (
            "send_message",
            json!({ "to": "all", "body": mib }),
            "bytes long",
        ),
        (
            "report_progress",
            json!({ "percent": 150, "step": "s" }),
            "0 to 100",
        ),
        (
            "report_progress",
            json!({ "percent": "half", "step": "s" }),
            "invalid type",
        ),
        (
            "save_context",
            json!({ "key": "bad key!", "value": "v" }),
            "not usable",
        ),
        (
            "save_context",
            json!({ "key": "k", "value": mib }),
            "bytes long",
        ),
        ("get_context", json!({}), "missing field `key`"),
        (
            "request_handoff",
            json!({ "to_role": "nobody", "reason": "r", "next_steps": [] }),
            "does not exist",
        ),
        (
            "request_handoff",
            json!({ "to_role": "tester", "reason": "r" }),
            "missing field `next_steps`",
        ),
        (
            "create_task",
            json!({ "prompt": "p", "role": "nobody" }),
            "does not exist",
        ),
        (
            "create_task",
            json!({ "prompt": "p", "role": "tester", "id": "../x" }),
            "not valid",
        ),
        (
            "create_task",
            json!({ "prompt": "p", "role": "tester", "depends_on": ["missing"] }),
            "not a task of this run",
        ),
        (
            "create_task",
            json!({ "prompt": mib, "role": "tester" }),
            "bytes long",
        ),
        ("frobnicate", json!({}), "no tool named"),
    ];
    for (tool, args, want) in &cases {
        let r = m.call(tool, args.clone());
        assert_eq!(r["isError"], true, "{tool} {args}: {r}");
        assert!(
            text(&r).contains(want),
            "{tool}: {:?} should say {want:?}",
            text(&r)
        );
        assert!(
            text(&r).len() < 2000,
            "{tool}: an answer, not an echo of the input"
        );
    }
    // Nothing was written, and the server still answers.
    let st = &w.store;
    assert!(st.leases(now()).unwrap().is_empty());
    assert!(st.decisions(None, 10).unwrap().is_empty());
    assert!(st.messages(10).unwrap().is_empty());
    assert!(st.context("k").unwrap().is_none());
    assert!(st.handoffs(None).unwrap().is_empty());
    assert_eq!(st.tasks().unwrap().len(), 1);
    assert_eq!(m.call("status", json!({}))["isError"], false);
}

#[test]
fn a_stale_attempt_gets_tool_errors_through_the_server() {
    let w = World::new("stale-ch");
    let old = w.actor.fence;
    // Another worker takes the task over (its claim is released, then claimed again).
    w.store.release_owner("owner-1", now()).unwrap();
    claim(&w.store, "stale-ch", "owner-2", "dev-2");
    let mut m = Mcp::start(&w.env(old));
    m.handshake("2025-11-25");
    for (tool, args) in [
        ("lock_files", json!({ "paths": ["a.rs"], "reason": "r" })),
        (
            "log_decision",
            json!({ "category": "c", "title": "t", "description": "d" }),
        ),
        ("create_task", json!({ "prompt": "p", "role": "tester" })),
        ("send_message", json!({ "to": "all", "body": "b" })),
    ] {
        let r = m.call(tool, args);
        assert_eq!(r["isError"], true, "{tool}: {r}");
        assert!(
            text(&r).contains("no longer current"),
            "{tool}: {}",
            text(&r)
        );
    }
    assert!(w.store.leases(now()).unwrap().is_empty());
    assert!(w.store.decisions(None, 10).unwrap().is_empty());
    assert_eq!(w.store.tasks().unwrap().len(), 1);
}

/// `borg hook EVENT` with this payload and environment: (exit code, stdout JSON).
fn hook(event: &str, payload: &str, env: &[(String, String)]) -> (i32, Value) {
    let mut c = Command::new(borg_bin())
        .args(["hook", event])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code().unwrap_or(-1), v)
}

fn write_payload(root: &Path, file: &str) -> String {
    json!({ "session_id": "s", "cwd": root, "hook_event_name": "PreToolUse", "tool_name": "Write",
            "tool_input": { "file_path": root.join(file), "content": "x" }, "tool_use_id": "toolu_1" }).to_string()
}

fn deny_reason(v: &Value) -> String {
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
    v["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_write_hook_fails_closed_and_names_the_holder() {
    let w = World::new("hook-ch");
    let env = w.env(w.actor.fence);
    let root = w.root();
    // Unreadable payload, no environment, no store: denied, with the reason.
    let (code, v) = hook("pre-tool-use", "not json", &env);
    assert_eq!(code, 0);
    assert!(deny_reason(&v).contains("could not read the hook payload"));
    let (_, v) = hook("pre-tool-use", &write_payload(&root, "a.rs"), &[]);
    assert!(
        deny_reason(&v).contains("BORG_CLAIM_TOKEN is not set")
            || deny_reason(&v).contains("is not set")
    );
    let mut gone = env.clone();
    gone[0].1 = w.dir.path().join("nowhere.db").display().to_string();
    let (_, v) = hook("pre-tool-use", &write_payload(&root, "a.rs"), &gone);
    assert!(deny_reason(&v).contains("cannot reach its store"), "{v}");
    // A free file: allowed (no answer) and auto-locked for this attempt.
    let (code, v) = hook("pre-tool-use", &write_payload(&root, "a.rs"), &env);
    assert_eq!((code, v), (0, Value::Null));
    let leases = w.store.leases(now()).unwrap();
    assert_eq!(
        (
            leases[0].path.as_str(),
            leases[0].task.as_str(),
            leases[0].auto
        ),
        ("a.rs", "hook-ch", true)
    );
    // Another attempt's file: denied, naming it.
    w.store
        .sync_tasks(
            &[NewTask {
                id: "other-ch".into(),
                role: "developer".into(),
                priority: 0,
                order: 1,
                depends_on: vec![],
                instance: None,
                max_attempts: 1,
                spec: json!({}),
                hash: "h".into(),
                awaits_person: false,
            }],
            now(),
        )
        .unwrap();
    let other = claim(&w.store, "other-ch", "owner-1", "dev-7");
    w.store
        .lock_paths(
            &other,
            &LockRequest {
                paths: vec!["b.rs".into()],
                reason: "refactoring the token type".into(),
                ttl: Duration::from_secs(60),
                auto: false,
                queue: None,
            },
            now(),
        )
        .unwrap();
    let (_, v) = hook("pre-tool-use", &write_payload(&root, "b.rs"), &env);
    let r = deny_reason(&v);
    assert!(r.starts_with("b.rs is locked by dev-7 (task other-ch, developer): 'refactoring the token type', since "), "{r}");
    // borg's own files are never written.
    let (_, v) = hook(
        "pre-tool-use",
        &write_payload(&root, "../coord/settings.json"),
        &env,
    );
    assert!(deny_reason(&v).contains("belongs to borg"));
    // A stale claim is refused too.
    let (_, v) = hook(
        "pre-tool-use",
        &write_payload(&root, "c.rs"),
        &w.env(w.actor.fence - 1),
    );
    assert!(deny_reason(&v).contains("no longer current"), "{v}");
}

#[test]
fn locks_release_refuses_a_live_holder_and_frees_a_dead_ones_lease() {
    let w = World::new("rel-ch");
    let me = std::process::id() as i64;
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stat = borg::supervise::procs::stat(me as i32).unwrap();
    let boot = borg::supervise::procs::boot_id();
    let owner = |pid: i64, start: u64| OwnerInfo {
        id: "owner-1".into(),
        host: host.clone(),
        pid,
        start_time: start,
        boot_id: boot.clone(),
        started_at_ms: now(),
        heartbeat_ms: now(),
        host_id: String::new(),
    };
    w.store.register_owner(&owner(me, stat.start_time)).unwrap();
    w.store
        .lock_paths(
            &w.actor,
            &LockRequest {
                paths: vec!["src/x.rs".into()],
                reason: "r".into(),
                ttl: Duration::from_secs(600),
                auto: false,
                queue: None,
            },
            now(),
        )
        .unwrap();
    let borg = |args: &[&str]| {
        Command::new(borg_bin())
            .args(["--store", w.store_path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let o = borg(&["locks"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("src/x.rs"),
        "{}",
        stderr(&o)
    );
    let o = borg(&["locks", "release", "src/x.rs", "--force"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("still running"), "{}", stderr(&o));
    // Its borg is gone (a pid that is not that process any more).
    w.store
        .register_owner(&owner(me, stat.start_time + 1))
        .unwrap();
    let o = borg(&["locks", "release", "src/x.rs"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--force is needed: {}",
        stderr(&o)
    );
    let o = borg(&["locks", "release", "src/x.rs", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = borg(&["locks", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        json!([])
    );
}
