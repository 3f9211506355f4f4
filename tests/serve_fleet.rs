//! `borg serve` beside `borg run` on one store: an outside agent and fake-claude
//! children share the work (every task done once; a task claimed over HTTP is never
//! started by borg, and the reverse; an agent's completion runs its dependents); the
//! event stream over SSE and WebSocket survives reconnects with nothing lost or
//! repeated, from a second server too, and names every kind of change the seed and the
//! issue list; handoffs that wait for a person (accepted or rejected with the CLI or over
//! HTTP as the dashboard does); the memory wait and the tasks of
//! external roles on the dashboard.

mod common;
mod serve_util;
#[macro_use]
mod store_util;

use borg::store::Store;
use common::{wait_until, Sandbox};
use serde_json::{json, Value};
use serve_util::*;
use std::io::BufRead;
use std::time::Duration;

fn uniq() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

#[test]
fn an_outside_agent_and_a_borg_run_share_one_store() {
    let sb = Sandbox::new();
    roles(
        &sb,
        &[
            ("developer", "capabilities = [\"coding\"]"),
            ("outside", "capabilities = [\"ide\"]\nexternal = true"),
        ],
    );
    let u = uniq();
    let list = format!(
        r##"
[[task]]
id = "mine-{u}"
prompt = "#fake text borg must never run this"
[[task]]
id = "ext-{u}"
role = "outside"
prompt = "review it in the IDE"
[[task]]
id = "plain-{u}"
prompt = "#fake sleep 1500\n#fake text plain"
[[task]]
id = "after-mine-{u}"
depends_on = ["mine-{u}"]
prompt = "#fake text after mine"
[[task]]
id = "after-ext-{u}"
depends_on = ["ext-{u}"]
prompt = "#fake text after ext"
"##
    );
    let (mine, ext, plain) = (
        format!("mine-{u}"),
        format!("ext-{u}"),
        format!("plain-{u}"),
    );
    seed(&sb, &list);
    let s = Server::start(&sb, &[]);
    let token = register(&s, "claude-code", &["coding", "ide"]);
    // Claimed over HTTP before borg runs the list.
    let c = post(
        &s.url(&format!("/api/claude/tasks/{mine}/claim")),
        Some(&token),
        &json!({}),
    );
    assert_eq!(c.data()["claimedBy"], "claude-code");
    let mut run = sb.spawn_run(&list, &["--json"]);
    // borg runs what it may, and not the external task nor the agent's.
    assert!(
        wait_until(Duration::from_secs(20), || started(&sb, &plain)),
        "borg never started {plain}"
    );
    let status = sb.json(&["status", "--json"]);
    assert_eq!(
        status["queue"]["outside"],
        json!([ext.clone()]),
        "{status:#}"
    );
    assert!(status["queue"]["running"]
        .as_array()
        .unwrap()
        .contains(&json!(mine.clone())));
    let text = String::from_utf8(sb.succeed(&["status"]).stdout).unwrap();
    assert!(text.contains("waiting for an outside agent"), "{text}");
    // The reverse: a task a borg child holds is not the agent's to take.
    let taken = post(
        &s.url(&format!("/api/claude/tasks/{plain}/claim")),
        Some(&token),
        &json!({}),
    );
    let e = taken.error(409, "TASK_ALREADY_CLAIMED");
    assert!(
        e["details"]["claimedBy"]
            .as_str()
            .unwrap()
            .starts_with("borg-"),
        "{e}"
    );
    // The agent works on its task and completes it; borg runs its dependent.
    let p = post(
        &s.url(&format!("/api/claude/tasks/{mine}/progress")),
        Some(&token),
        &json!({"percentComplete": 60, "currentStep": "halfway"}),
    );
    p.data();
    let done = post(
        &s.url(&format!("/api/claude/tasks/{mine}/complete")),
        Some(&token),
        &json!({"success": true, "output": "did it by hand", "filesModified": ["src/a.rs"]}),
    );
    done.data();
    assert!(wait_until(Duration::from_secs(20), || started(
        &sb,
        &format!("after-mine-{u}")
    )));
    // The external task: listed for the agent, claimed, completed; its dependent runs.
    let listed = get(&s.url("/api/claude/tasks?capabilities=ide"), Some(&token));
    assert_eq!(listed.data()[0]["id"], ext);
    post(
        &s.url(&format!("/api/claude/tasks/{ext}/claim")),
        Some(&token),
        &json!({}),
    )
    .data();
    post(
        &s.url(&format!("/api/claude/tasks/{ext}/complete")),
        Some(&token),
        &json!({"success": true, "output": "reviewed"}),
    )
    .data();
    let out = wait_exit(&mut run, 60);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let report = common::json_of(&out);
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "succeeded", "{t:#}");
        assert_eq!(t["attempts"], 1, "{t:#}");
    }
    assert!(!started(&sb, &mine), "borg started a task an agent held");
    assert!(
        !started(&sb, &ext),
        "borg started a task of an external role"
    );
    for id in [
        &plain,
        &format!("after-mine-{u}"),
        &format!("after-ext-{u}"),
    ] {
        assert!(started(&sb, id), "{id}");
        assert!(
            !sb.state().join(id).join("argv.2.json").exists(),
            "{id} ran twice"
        );
    }
    let store = open(&sb);
    for id in [&mine, &ext] {
        let a = store.attempts(id).unwrap();
        assert_eq!(a.len(), 1, "{id}: {a:?}");
        assert_eq!(a[0].owner, "agent:claude-code");
    }
    // The dependent saw the agent's outcome in its prompt.
    assert!(sb
        .prompt(&format!("after-mine-{u}"), 1)
        .contains("did it by hand"));
}

/// Waits for a child with a time limit; kills it (our own pid) on overrun.
fn wait_exit(child: &mut std::process::Child, secs: u64) -> std::process::Output {
    let ok = wait_until(Duration::from_secs(secs), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !ok {
        let _ = child.kill();
    }
    let mut out = std::process::Output {
        status: child.wait().unwrap(),
        stdout: vec![],
        stderr: vec![],
    };
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut out.stderr).unwrap();
    }
    assert!(
        ok,
        "borg did not finish in {secs} s: {}",
        common::stderr(&out)
    );
    out
}

/// Reads SSE events (id, type) until `stop` says enough; returns them.
fn read_sse(
    url: &str,
    last_id: Option<i64>,
    mut stop: impl FnMut(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    let mut r = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(20))
        .build()
        .get(url);
    if let Some(id) = last_id {
        r = r.set("Last-Event-ID", &id.to_string());
    }
    let resp = r.call().expect("the event stream");
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let mut reader = std::io::BufReader::new(resp.into_reader());
    let mut got = Vec::new();
    let (mut id, mut ty) = (None, String::new());
    let mut line = String::new();
    while !stop(&got) {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id:") {
            id = v.trim().parse::<i64>().ok();
        } else if let Some(v) = l.strip_prefix("event:") {
            ty = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("data:") {
            let d: Value = serde_json::from_str(v.trim()).unwrap();
            assert_eq!(
                Some(d["id"].as_i64().unwrap()),
                id,
                "id line and data agree"
            );
            assert_eq!(d["type"], ty.as_str());
        } else if l.is_empty() {
            if let Some(i) = id.take() {
                got.push((i, std::mem::take(&mut ty)));
            }
        }
    }
    got
}

/// Makes events: an agent's claims and progress reports.
fn busy(s: &Server, token: &str, task: &str, n: usize) {
    for i in 0..n {
        post(
            &s.url(&format!("/api/claude/tasks/{task}/progress")),
            Some(token),
            &json!({"percentComplete": i, "currentStep": format!("step {i}")}),
        )
        .data();
    }
}

#[test]
fn events_reconnect_with_last_event_id_and_since_missing_nothing() {
    let sb = Sandbox::new();
    roles(&sb, &[("developer", "capabilities = [\"coding\"]")]);
    let u = uniq();
    seed(&sb, &format!("[[task]]\nid = \"e1-{u}\"\nprompt = \"x\"\n[[task]]\nid = \"e2-{u}\"\nprompt = \"y\"\n"));
    let a = Server::start(&sb, &[]);
    let b = Server::start(&sb, &[]);
    let token = register(&a, "agent-a", &["coding"]);
    post(
        &a.url(&format!("/api/claude/tasks/e1-{u}/claim")),
        Some(&token),
        &json!({}),
    )
    .data();
    busy(&a, &token, &format!("e1-{u}"), 5);
    let store = open(&sb);
    let all = |st: &dyn Store| {
        st.events_since(0, 100_000)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };

    // SSE on the other server: the first part, a disconnect, more events, a reconnect.
    let first = read_sse(&b.url("/api/events?since=0"), None, |g| g.len() >= 4);
    let last = first.last().unwrap().0;
    busy(&a, &token, &format!("e1-{u}"), 5);
    post(
        &a.url(&format!("/api/claude/tasks/e1-{u}/complete")),
        Some(&token),
        &json!({"success": true, "output": "ok"}),
    )
    .data();
    let target = store.last_event_id().unwrap();
    let second = read_sse(&b.url("/api/events"), Some(last), |g| {
        g.last().is_some_and(|e| e.0 >= target)
    });
    let ids: Vec<i64> = first.iter().chain(second.iter()).map(|e| e.0).collect();
    assert_eq!(ids, all(&store), "every event once, in order");
    let types: Vec<&str> = first
        .iter()
        .chain(second.iter())
        .map(|e| e.1.as_str())
        .collect();
    for t in [
        "agent-registered",
        "task-claimed",
        "progress-update",
        "task-completed",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }

    // WebSocket: the same with ?since=.
    let ws_url = a.url("/api/ws?since=0").replacen("http://", "ws://", 1);
    let (mut ws, _) = tungstenite::connect(ws_url).unwrap();
    let mut seen: Vec<i64> = Vec::new();
    while seen.len() < 6 {
        if let tungstenite::Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            seen.push(v["id"].as_i64().unwrap());
        }
    }
    drop(ws);
    post(
        &a.url(&format!("/api/claude/tasks/e2-{u}/claim")),
        Some(&token),
        &json!({}),
    )
    .data();
    busy(&a, &token, &format!("e2-{u}"), 3);
    let target = store.last_event_id().unwrap();
    let again = a
        .url(&format!("/api/ws?since={}", seen.last().unwrap()))
        .replacen("http://", "ws://", 1);
    let (mut ws, _) = tungstenite::connect(again).unwrap();
    while seen.last().is_none_or(|l| *l < target) {
        if let tungstenite::Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            seen.push(v["id"].as_i64().unwrap());
        }
    }
    assert_eq!(
        seen,
        all(&store),
        "every event once, in order, over the WebSocket"
    );
}

/// The event reader wakes on the store's change feed (no 50 ms poll any more): a
/// client following live gets what another process wrote (`borg task retry` from a
/// shell) and what the server itself wrote (a registration over HTTP), each once.
#[test]
fn a_live_follower_gets_other_processes_and_the_servers_own_events() {
    let sb = Sandbox::new();
    roles(&sb, &[("developer", "capabilities = [\"coding\"]")]);
    let u = uniq();
    let task = format!("live-{u}");
    seed(&sb, &format!("[[task]]\nid = \"{task}\"\nprompt = \"x\"\n"));
    let s = Server::start(&sb, &[]);
    let url = s.url("/api/events");
    let writer = {
        let mut retry = sb.borg(&["task", "retry", &task]);
        let register_url = s.url("/api/claude/register");
        std::thread::spawn(move || {
            // After the follower is connected (it starts from now).
            std::thread::sleep(Duration::from_millis(800));
            assert!(retry.status().unwrap().success(), "borg task retry");
            std::thread::sleep(Duration::from_millis(300));
            post(
                &register_url,
                None,
                &json!({"agentId": "live-agent", "capabilities": ["coding"], "version": "1.0.0"}),
            )
            .data();
            std::time::Instant::now()
        })
    };
    let got = read_sse(&url, None, |g| {
        g.iter().any(|e| e.1 == "retry-requested") && g.iter().any(|e| e.1 == "agent-registered")
    });
    let received = std::time::Instant::now();
    let written = writer.join().unwrap();
    // Woken by the changes, not by the feed's safety look (5 s apart, the first one
    // about 4 s after the last write here).
    assert!(
        received.duration_since(written) < Duration::from_secs(2),
        "the events came {:?} after the last write",
        received.duration_since(written)
    );
    let ids: Vec<i64> = got.iter().map(|e| e.0).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "in order, each once: {got:?}");
}

#[test]
fn handoffs_wait_for_a_person_under_person_approval() {
    let sb = Sandbox::new();
    sb.config("");
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("{cfg}\n[handoff]\napproval = \"person\"\n"),
    );
    let u = uniq();
    let list = format!(
        "[[task]]\nid = \"src-a-{u}\"\nprompt = \"#fake text a done\"\nhandoff_to = \"tester\"\n\n[[task]]\nid = \"src-b-{u}\"\nprompt = \"#fake text b done\"\nhandoff_to = \"tester\"\n"
    );
    let mut run = sb.spawn_run(&list, &["--json"]);
    let store = open(&sb);
    let pending = || {
        store
            .handoffs(None)
            .unwrap()
            .into_iter()
            .filter(|h| h.new_task.is_some() && h.state == borg::store::HandoffState::Pending)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || pending() == 2),
        "{:?}",
        store.handoffs(None)
    );
    let (ta, tb) = (format!("src-a-{u}.tester-1"), format!("src-b-{u}.tester-1"));
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !started(&sb, &ta) && !started(&sb, &tb),
        "a handoff ran before a person accepted it"
    );
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run must wait for the person"
    );
    let rows = store.handoffs(None).unwrap();
    let id_of = |t: &str| {
        rows.iter()
            .find(|h| h.new_task.as_deref() == Some(t))
            .unwrap()
            .id
            .to_string()
    };
    sb.succeed(&["handoff", "accept", &id_of(&ta)]);
    sb.succeed(&["handoff", "reject", &id_of(&tb), "--reason", "not needed"]);
    let out = wait_exit(&mut run, 60);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped task: {}",
        common::stderr(&out)
    );
    assert!(started(&sb, &ta));
    assert!(!started(&sb, &tb));
    let b = store.task(&tb).unwrap().unwrap();
    assert_eq!(b.status.as_str(), "skipped");
    let why = store
        .events_since(0, 100_000)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "skipped" && e.task.as_deref() == Some(tb.as_str()))
        .unwrap();
    assert!(
        why.data["reason"].as_str().unwrap().contains("not needed"),
        "{why:?}"
    );
}

#[test]
fn the_api_and_the_event_stream_work_on_a_postgresql_store() {
    if store_util::pg::admin_url().is_none() {
        assert!(!store_util::pg::required(), "BORG_TEST_PG_URL is required");
        eprintln!("*** SKIPPED: no PostgreSQL (scripts/with-postgres.sh cargo test) ***");
        return;
    }
    let sb = Sandbox::new();
    roles(&sb, &[("developer", "capabilities = [\"coding\"]")]);
    let db = store_util::Backend::Postgres.db();
    let store = db.open();
    let u = uniq();
    let (a, b) = (format!("pg-a-{u}"), format!("pg-b-{u}"));
    let mut second = store_util::nt(&b, "developer", 0, 1, &[&a]);
    second.spec = json!({"prompt": "after a"});
    let mut first = store_util::nt(&a, "developer", 0, 0, &[]);
    first.spec = json!({"prompt": "do a"});
    store.sync_tasks(&[first, second], now()).unwrap();
    let s = Server::start(&sb, &["--store", &db.url]);
    let token = register(&s, "pg-agent", &["coding"]);
    let listed = get(&s.url("/api/claude/tasks"), Some(&token));
    assert_eq!(
        listed.data().as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );
    post(
        &s.url(&format!("/api/claude/tasks/{a}/claim")),
        Some(&token),
        &json!({}),
    )
    .data();
    busy(&s, &token, &a, 2);
    // The fleet view (status and dashboard), read in one go from PostgreSQL, holds the
    // agent's claim and its latest progress.
    let st = get(&s.url("/api/status"), None);
    let outside = &st.data()["outside"];
    assert_eq!(outside[0]["task"], a, "{}", st.text);
    assert_eq!(outside[0]["agent"], "pg-agent", "{}", st.text);
    assert_eq!(outside[0]["progress"]["task"], a, "{}", st.text);
    post(
        &s.url(&format!("/api/claude/tasks/{a}/complete")),
        Some(&token),
        &json!({"success": true, "output": "done"}),
    )
    .data();
    assert_eq!(
        store.task(&a).unwrap().unwrap().status.as_str(),
        "succeeded"
    );
    let ready = get(&s.url("/api/claude/tasks"), Some(&token));
    assert_eq!(ready.data()[0]["id"], b, "the dependent became ready");
    let target = store.last_event_id().unwrap();
    let got = read_sse(&s.url("/api/events?since=0"), None, |g| {
        g.last().is_some_and(|e| e.0 >= target)
    });
    let want: Vec<i64> = store
        .events_since(0, 10_000)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), want);
    assert!(got.iter().any(|e| e.1 == "task-completed"));
}

#[test]
fn the_event_stream_carries_every_kind_of_change_under_the_seeds_names() {
    let sb = Sandbox::new();
    roles(
        &sb,
        &[
            ("developer", "capabilities = [\"coding\"]"),
            ("tester", "capabilities = [\"testing\"]"),
        ],
    );
    let u = uniq();
    let (ok, bad) = (format!("k1-{u}"), format!("k2-{u}"));
    seed(
        &sb,
        &format!(
            "[[task]]\nid = \"{ok}\"\nprompt = \"x\"\n[[task]]\nid = \"{bad}\"\nprompt = \"y\"\n"
        ),
    );
    let s = Server::start(&sb, &[]);
    let token = register(&s, "agent-k", &["coding"]);
    let url = |p: String| s.url(&p);
    post(
        &url(format!("/api/claude/tasks/{ok}/claim")),
        Some(&token),
        &json!({}),
    )
    .data();
    post(
        &url(format!("/api/claude/tasks/{ok}/progress")),
        Some(&token),
        &json!({"percentComplete": 40, "currentStep": "typing"}),
    )
    .data();
    // A file lease taken and given back, and a shared context saved.
    let lock = post(
        &s.url("/api/claude/locks"),
        Some(&token),
        &json!({"path": "src/k.rs", "operation": "write"}),
    );
    let lt = lock.data()["lockToken"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    call(
        "DELETE",
        &url(format!("/api/claude/locks/{lt}")),
        &auth,
        None,
    )
    .data();
    call(
        "PUT",
        &url(format!("/api/claude/context/ctx-{u}")),
        &auth,
        Some(r#"{"metadata": {"phase": "k"}}"#),
    )
    .data();
    post(
        &s.url("/api/claude/handoff"),
        Some(&token),
        &json!({"taskId": ok, "fromAgent": "agent-k", "toAgent": "tester",
                "reason": "needs tests", "currentState": "written", "nextSteps": ["test it"]}),
    )
    .data();
    post(
        &url(format!("/api/claude/tasks/{ok}/complete")),
        Some(&token),
        &json!({"success": true, "output": "done"}),
    )
    .data();
    post(
        &url(format!("/api/claude/tasks/{bad}/claim")),
        Some(&token),
        &json!({}),
    )
    .data();
    post(
        &url(format!("/api/claude/tasks/{bad}/complete")),
        Some(&token),
        &json!({"success": false, "output": "could not", "error": "it broke"}),
    )
    .data();
    // A person's decision and message, and the fleet's breaker and parking.
    sb.succeed(&[
        "decisions",
        "add",
        "--category",
        "api",
        "--title",
        "Use REST",
        "--description",
        "why not",
    ]);
    sb.succeed(&["messages", "send", "--to", "all", "hello from a person"]);
    let store = open(&sb);
    let t = now();
    store
        .set_fleet("breaker", &json!({"open": true, "message": "401"}), t)
        .unwrap();
    store
        .set_fleet(
            "parked",
            &json!({"until_ms": t + 60_000, "kind": "five_hour"}),
            t,
        )
        .unwrap();

    let target = store.last_event_id().unwrap();
    let got = read_sse(&s.url("/api/events?since=0"), None, |g| {
        g.last().is_some_and(|e| e.0 >= target)
    });
    let types: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    for t in [
        "task-claimed",
        "progress-update",
        "lock-acquired",
        "lock-released",
        "context-updated",
        "handoff-requested",
        "task-completed",
        "task-failed",
        "decision-logged",
        "message",
        "breaker-changed",
        "park-changed",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
}

#[test]
fn the_dashboard_and_the_status_route_say_when_no_child_starts_for_want_of_memory() {
    let sb = Sandbox::new();
    roles(&sb, &[("developer", "capabilities = [\"coding\"]")]);
    let s = Server::start(&sb, &[]);
    let panels = get(&s.url("/api/dashboard/panels"), None);
    assert_eq!(panels.status, 200);
    assert!(!panels.text.contains("id=\"memory\""), "{}", panels.text);
    // What the scheduler records while MemAvailable is below min_available_memory.
    let mib = 1024 * 1024;
    open(&sb)
        .set_fleet(
            "memory",
            &json!({"waiting": true, "available_bytes": 300 * mib, "min_available_bytes": 1024 * mib}),
            now(),
        )
        .unwrap();
    let panels = get(&s.url("/api/dashboard/panels"), None);
    assert!(
        panels.text.contains("id=\"memory\"")
            && panels
                .text
                .contains("300 MiB available, below min_available_memory (1024 MiB)"),
        "{}",
        panels.text
    );
    let status = get(&s.url("/api/status"), None);
    assert_eq!(status.data()["memory"]["waiting"], true, "{}", status.text);
}

#[test]
fn the_dashboard_shows_tasks_of_external_roles_as_waiting_for_an_outside_agent() {
    let sb = Sandbox::new();
    roles(
        &sb,
        &[
            ("developer", "capabilities = [\"coding\"]"),
            ("outside", "capabilities = [\"ide\"]\nexternal = true"),
        ],
    );
    let u = uniq();
    let ext = format!("x-{u}");
    seed(
        &sb,
        &format!("[[task]]\nid = \"{ext}\"\nrole = \"outside\"\nprompt = \"in the IDE\"\n"),
    );
    let s = Server::start(&sb, &[]);
    let panels = get(&s.url("/api/dashboard/panels"), None);
    let html = &panels.text;
    let at = html
        .find("data-queue=\"outside\"")
        .unwrap_or_else(|| panic!("no outside queue in {html}"));
    let dd = &html[at..at + html[at..].find("</dd>").unwrap()];
    assert!(dd.contains(&ext), "{dd}");
    assert!(
        html.contains("outside (waiting for an outside agent) <b>1</b>"),
        "{html}"
    );
    let ready = html.find("data-queue=\"ready\"").unwrap();
    let dd = &html[ready..ready + html[ready..].find("</dd>").unwrap()];
    assert!(!dd.contains(&ext), "an external task shown as ready: {dd}");
}

#[test]
fn a_person_accepts_or_rejects_waiting_handoffs_over_http_as_the_dashboard_does() {
    let sb = Sandbox::new();
    roles(
        &sb,
        &[
            ("developer", "capabilities = [\"coding\"]"),
            ("tester", "capabilities = [\"testing\"]"),
        ],
    );
    sb.config("");
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("{cfg}\n[handoff]\napproval = \"person\"\n"),
    );
    let u = uniq();
    let (a, b) = (format!("hr-a-{u}"), format!("hr-b-{u}"));
    seed(
        &sb,
        &format!(
            "[[task]]\nid = \"{a}\"\nprompt = \"x\"\n[[task]]\nid = \"{b}\"\nprompt = \"y\"\n"
        ),
    );
    let s = Server::start(&sb, &[]);
    let token = register(&s, "agent-h", &["coding", "testing"]);
    for id in [&a, &b] {
        post(
            &s.url(&format!("/api/claude/tasks/{id}/claim")),
            Some(&token),
            &json!({}),
        )
        .data();
        post(
            &s.url("/api/claude/handoff"),
            Some(&token),
            &json!({"taskId": id, "fromAgent": "agent-h", "toAgent": "tester",
                    "reason": "needs tests", "currentState": "written", "nextSteps": ["test"]}),
        )
        .data();
        post(
            &s.url(&format!("/api/claude/tasks/{id}/complete")),
            Some(&token),
            &json!({"success": true, "output": "done"}),
        )
        .data();
    }
    let store = open(&sb);
    let waiting = |src: &str| {
        store
            .handoffs(Some(src))
            .unwrap()
            .into_iter()
            .find(|h| h.state == borg::store::HandoffState::Pending && h.new_task.is_some())
            .unwrap_or_else(|| panic!("no waiting handoff of {src}"))
    };
    let (ha, hb) = (waiting(&a), waiting(&b));
    let (ta, tb) = (ha.new_task.clone().unwrap(), hb.new_task.clone().unwrap());
    // Waiting for a person: not offered to the agent.
    let offered = get(
        &s.url("/api/claude/tasks?capabilities=testing"),
        Some(&token),
    );
    assert_eq!(offered.data(), &json!([]), "{}", offered.text);
    // The dashboard's CSRF token, as its buttons send it.
    let page = get(&s.url("/"), None);
    let csrf = page
        .text
        .split("name=\"borg-csrf\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let h = [("X-Borg-Csrf", csrf.as_str())];
    let acc = call(
        "POST",
        &s.url(&format!("/api/handoffs/{}/accept", ha.id)),
        &h,
        Some("{}"),
    );
    assert_eq!(acc.data()["status"], "accepted", "{}", acc.text);
    let rej = call(
        "POST",
        &s.url(&format!("/api/handoffs/{}/reject", hb.id)),
        &h,
        Some(r#"{"reason": "not needed now"}"#),
    );
    assert_eq!(rej.data()["status"], "rejected", "{}", rej.text);
    // The list a person reads.
    let listed = get(&s.url("/api/handoffs"), None);
    let states: Vec<(String, String)> = listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["taskId"].as_str().unwrap_or("").to_string(),
                h["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&(a.clone(), "accepted".into())),
        "{}",
        listed.text
    );
    assert!(
        states.contains(&(b.clone(), "rejected".into())),
        "{}",
        listed.text
    );
    // The accepted one is offered now; the rejected one is skipped with the reason.
    let offered = get(
        &s.url("/api/claude/tasks?capabilities=testing"),
        Some(&token),
    );
    let ids: Vec<&str> = offered
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, vec![ta.as_str()], "{}", offered.text);
    assert_eq!(store.task(&tb).unwrap().unwrap().status.as_str(), "skipped");
    let why = store
        .events_since(0, 100_000)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "skipped" && e.task.as_deref() == Some(tb.as_str()))
        .unwrap();
    assert!(
        why.data["reason"]
            .as_str()
            .unwrap()
            .contains("not needed now"),
        "{why:?}"
    );
}
