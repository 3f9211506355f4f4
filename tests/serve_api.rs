//! `borg serve`'s API against seed 000: its request/response examples (ids adjusted),
//! through real HTTP on loopback with the real binary; the permission model; rate
//! limits; tokens, CSRF and Host checks (and tokens never logged); metrics; and a
//! bad-input corpus against every route (4xx in the error shape, no panic, the store
//! unchanged).

mod common;
mod serve_util;

use borg::store::Store;
use common::Sandbox;
use serde_json::{json, Value};
use serve_util::*;

/// Roles of the seed's world: a TypeScript developer role agents may do, and an
/// external one (only outside agents do it).
fn world(sb: &Sandbox) {
    roles(
        sb,
        &[
            (
                "tsdev",
                "capabilities = [\"typescript-development\", \"contract-definition\"]",
            ),
            (
                "copilot",
                "capabilities = [\"ide-integration\"]\nexternal = true",
            ),
            ("developer", "capabilities = [\"coding\"]"),
        ],
    );
}

const SEED_TASK: &str = r#"
[[task]]
id = "task_001"
role = "tsdev"
priority = 1
timeout = "2h"
prompt = "Build user authentication system"
"#;

#[test]
fn the_seeds_examples_answer_in_its_shapes() {
    let sb = Sandbox::new();
    world(&sb);
    seed(&sb, SEED_TASK);
    let s = Server::start(&sb, &["--roles", "roles"]);

    // GET /health → {status, timestamp, config}
    let h = get(&s.url("/health"), None);
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "healthy");
    assert!(h.body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(h.body["config"]["webSocketEnabled"], true);

    // Registration: a reg_<uuid> token; no capability → INVALID_CAPABILITIES.
    let token = register(
        &s,
        "claude-code",
        &[
            "typescript-development",
            "contract-definition",
            "test-writing",
            "documentation",
        ],
    );
    assert!(token.starts_with("reg_") && token.len() == 40, "{token}");
    let bad = post(
        &s.url("/api/claude/register"),
        None,
        &json!({"agentId": "claude-code", "capabilities": [], "version": "1.0.0"}),
    );
    let e = bad.error(400, "INVALID_CAPABILITIES");
    assert_eq!(e["message"], "Agent must declare at least one capability");
    assert_eq!(e["retryable"], false);
    // The token is stored hashed, never in clear.
    let db = std::fs::read(sb.ws().join("borg.db")).unwrap();
    let wal = std::fs::read(sb.ws().join("borg.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle)
            && !wal.windows(needle.len()).any(|w| w == needle)
    );

    // Available tasks for the asked capabilities.
    let url = s.url("/api/claude/tasks?capabilities=typescript-development,contract-definition");
    let list = get(&url, Some(&token));
    let tasks = list.data().as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{}", list.text);
    let t = &tasks[0];
    assert_eq!(t["id"], "task_001");
    assert_eq!(t["type"], "tsdev");
    assert_eq!(t["description"], "Build user authentication system");
    assert_eq!(t["priority"], "high");
    assert_eq!(t["estimatedMinutes"], 120);
    assert_eq!(
        t["requiredCapabilities"],
        json!(["typescript-development", "contract-definition"])
    );
    assert!(t["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(t.get("deadline").is_some());
    assert_eq!(list.header("x-ratelimit-limit"), Some("100"));
    assert_eq!(list.header("x-ratelimit-remaining"), Some("99"));
    assert!(
        list.header("x-ratelimit-reset")
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > now() / 1000
    );

    // Claim → the task with its context; another agent → TASK_ALREADY_CLAIMED.
    let c = post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&token),
        &json!({}),
    );
    let d = c.data();
    assert_eq!(d["id"], "task_001");
    assert_eq!(d["type"], "tsdev");
    assert_eq!(d["description"], "Build user authentication system");
    assert!(d["context"]
        .as_str()
        .unwrap()
        .contains("Build user authentication system"));
    assert!(d["context"].as_str().unwrap().contains("# Role: tsdev"));
    assert_eq!(d["claimedBy"], "claude-code");
    assert!(d["claimedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["fence"], 1);
    let copilot = register(
        &s,
        "github-copilot",
        &[
            "typescript-development",
            "contract-definition",
            "ide-integration",
        ],
    );
    let again = post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&copilot),
        &json!({}),
    );
    let e = again.error(409, "TASK_ALREADY_CLAIMED");
    assert_eq!(e["message"], "Task task_001 already claimed by claude-code");
    assert_eq!(e["details"]["claimedBy"], "claude-code");
    assert_eq!(e["details"]["claimedAt"], d["claimedAt"]);

    // Progress.
    let p = post(
        &s.url("/api/claude/tasks/task_001/progress"),
        Some(&token),
        &json!({
        "percentComplete": 50, "currentStep": "Implementing authentication service",
        "filesModified": ["src/services/auth.ts", "src/types/auth.ts"], "blockers": []}),
    );
    let pd = p.data();
    assert_eq!(pd["taskId"], "task_001");
    assert_eq!(pd["percentComplete"], 50.0);
    assert_eq!(pd["currentStep"], "Implementing authentication service");
    assert!(pd["lastUpdated"].as_str().unwrap().ends_with('Z'));

    // Handoff to the external role.
    let hreq = post(
        &s.url("/api/claude/handoff"),
        Some(&token),
        &json!({
        "taskId": "task_001", "fromAgent": "claude-code", "toAgent": "copilot",
        "reason": "Requires real-time IDE integration", "currentState": "Contract defined, mock service ready",
        "nextSteps": ["Integrate with VS Code extension", "Test IDE interaction", "Deploy to production"]}),
    );
    let hd = hreq.data();
    assert!(hd["id"].as_str().unwrap().starts_with("handoff_"));
    assert_eq!(hd["taskId"], "task_001");
    assert_eq!(hd["fromAgent"], "claude-code");
    assert_eq!(hd["toAgent"], "copilot");
    assert_eq!(hd["status"], "pending");
    assert!(hd["createdAt"].as_str().unwrap().ends_with('Z'));

    // Complete → completionId; the handoff became a task of the external role.
    let done = post(
        &s.url("/api/claude/tasks/task_001/complete"),
        Some(&token),
        &json!({
        "success": true, "output": "Authentication system implemented with OAuth2 support",
        "filesModified": ["src/services/auth.ts", "src/types/auth.ts", "tests/auth.test.ts", "docs/auth.md"],
        "notes": "All tests passing, documentation complete",
        "metrics": {"linesAdded": 450, "linesRemoved": 0, "testCoverage": 95, "durationMinutes": 120}}),
    );
    let cd = done.data();
    assert_eq!(cd["taskId"], "task_001");
    assert!(cd["completionId"].as_str().unwrap().starts_with("comp_"));
    assert!(cd["completedAt"].as_str().unwrap().ends_with('Z'));
    assert!(cd["totalDuration"].is_string());
    assert_eq!(cd["agentId"], "claude-code");
    let store = open(&sb);
    let row = store.task("task_001").unwrap().unwrap();
    assert_eq!(row.status.as_str(), "succeeded");
    let rec = row.last_record.unwrap();
    assert_eq!(rec["outside"]["completion_id"], cd["completionId"]);
    assert_eq!(
        rec["result_text"],
        "Authentication system implemented with OAuth2 support"
    );
    let follow = "task_001.copilot-1";
    assert_eq!(
        store.task(follow).unwrap().unwrap().status.as_str(),
        "pending"
    );

    // The external role's task: claude-code may not do it (capabilities), copilot may.
    let theirs = get(&s.url("/api/claude/tasks"), Some(&token));
    assert_eq!(theirs.data(), &json!([]));
    let refused = post(
        &s.url(&format!("/api/claude/tasks/{follow}/claim")),
        Some(&token),
        &json!({}),
    );
    let e = refused.error(403, "INVALID_CAPABILITIES");
    assert_eq!(e["details"]["missing"], json!(["ide-integration"]));
    let mine = get(
        &s.url("/api/claude/tasks?capabilities=ide-integration"),
        Some(&copilot),
    );
    assert_eq!(mine.data()[0]["id"], follow);
    let c2 = post(
        &s.url(&format!("/api/claude/tasks/{follow}/claim")),
        Some(&copilot),
        &json!({}),
    );
    assert!(c2.data()["context"]
        .as_str()
        .unwrap()
        .contains("Requires real-time IDE integration"));
    let d2 = post(
        &s.url(&format!("/api/claude/tasks/{follow}/complete")),
        Some(&copilot),
        &json!({"success": true, "output": "Implementation complete and tested in IDE"}),
    );
    d2.data();
    assert_eq!(
        store.task(follow).unwrap().unwrap().status.as_str(),
        "succeeded"
    );

    // The metrics saw it all.
    let m = get(&s.url("/metrics"), None);
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .contains("openmetrics-text"));
    for line in [
        "borg_tasks{status=\"succeeded\",role=\"tsdev\"} 1",
        "borg_tasks{status=\"succeeded\",role=\"copilot\"} 1",
        "borg_attempts_total{role=\"tsdev\",status=\"succeeded\"} 1",
        "borg_attempt_duration_seconds_count{role=\"tsdev\"} 1",
        "borg_claim_latency_seconds_count 3",
        "borg_agents_registered 2",
        "borg_leases_held{holder=\"agent\"} 0",
        "borg_breaker_open 0",
        "borg_api_requests_total{route=\"/api/claude/tasks/{id}/claim\",code=\"409\"} 1",
    ] {
        assert!(
            m.text.lines().any(|l| l == line),
            "no {line} in\n{}",
            m.text
        );
    }
    // A token that was never issued.
    let bad = get(
        &s.url("/api/claude/tasks"),
        Some("reg_550e8400-e29b-41d4-a716-446655440000"),
    );
    bad.error(401, "INVALID_TOKEN");
    // No token at all.
    get(&s.url("/api/claude/tasks"), None).error(401, "AGENT_NOT_REGISTERED");
}

#[test]
fn a_stale_claim_is_refused_and_changes_nothing() {
    let sb = Sandbox::new();
    world(&sb);
    seed(&sb, SEED_TASK);
    let s = Server::start(&sb, &["--roles", "roles"]);
    let token = register(
        &s,
        "claude-code",
        &["typescript-development", "contract-definition"],
    );
    let c = post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&token),
        &json!({}),
    );
    assert_eq!(c.data()["fence"], 1);
    let store = open(&sb);
    let before = store.last_event_id().unwrap();
    for path in ["progress", "complete"] {
        let body = json!({"percentComplete": 10, "success": true, "output": "x", "fence": 0});
        let a = post(
            &s.url(&format!("/api/claude/tasks/task_001/{path}")),
            Some(&token),
            &body,
        );
        a.error(409, "STALE_CLAIM");
    }
    assert_eq!(
        store.last_event_id().unwrap(),
        before,
        "a refused write appends nothing"
    );
    assert_eq!(
        store.task("task_001").unwrap().unwrap().status.as_str(),
        "running"
    );
    let ok = post(
        &s.url("/api/claude/tasks/task_001/complete"),
        Some(&token),
        &json!({"success": false, "output": "could not", "fence": 1}),
    );
    assert_eq!(ok.data()["status"], "failed");
}

#[test]
fn rate_limits_answer_429_with_the_seeds_headers() {
    let sb = Sandbox::new();
    world(&sb);
    sb.write("config.toml", "[serve]\nrate_limit = 5\n");
    let s = Server::start(&sb, &["--roles", "roles"]);
    let token = register(&s, "claude-code", &["coding"]);
    for i in 0..5 {
        let a = get(&s.url("/api/claude/tasks"), Some(&token));
        assert_eq!(a.status, 200, "request {i}");
        assert_eq!(
            a.header("x-ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
    }
    let over = get(&s.url("/api/claude/tasks"), Some(&token));
    let e = over.error(429, "RATE_LIMITED");
    assert_eq!(e["retryable"], true);
    assert_eq!(over.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"));
    // Per agent: another agent is not held back.
    let other = register(&s, "other", &["coding"]);
    assert_eq!(get(&s.url("/api/claude/tasks"), Some(&other)).status, 200);
}

#[test]
fn off_loopback_without_a_token_refuses_to_start() {
    let sb = Sandbox::new();
    let o = sb
        .borg(&["serve", "--listen", "0.0.0.0:3456"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = common::stderr(&o);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:3456 without a token"),
        "{err}"
    );
    let o = sb
        .borg(&["serve", "--listen", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
}

#[test]
fn cross_site_requests_and_foreign_hosts_are_refused() {
    let sb = Sandbox::new();
    world(&sb);
    let s = Server::start(&sb, &["--roles", "roles"]);
    let body = json!({"agentId": "x", "capabilities": ["coding"]}).to_string();
    let reg = s.url("/api/claude/register");
    let evil = call(
        "POST",
        &reg,
        &[("Origin", "http://evil.example")],
        Some(&body),
    );
    evil.error(403, "CSRF_REJECTED");
    let evil = call(
        "POST",
        &reg,
        &[("Sec-Fetch-Site", "cross-site")],
        Some(&body),
    );
    evil.error(403, "CSRF_REJECTED");
    let ws = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Origin", "http://evil.example"),
    ];
    call("GET", &s.url("/api/ws"), &ws, None).error(403, "CSRF_REJECTED");
    let rebound = call("GET", &s.url("/"), &[("Host", "evil.example:3456")], None);
    rebound.error(403, "HOST_NOT_ALLOWED");
    // A form post (not JSON) cannot register either.
    let form = call(
        "POST",
        &reg,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("agentId=x"),
    );
    form.error(415, "INVALID_REQUEST");
    // The dashboard's buttons need its CSRF token.
    let page = get(&s.url("/"), None);
    assert_eq!(page.status, 200);
    let csrf = page
        .text
        .split("name=\"borg-csrf\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(csrf.len() >= 32);
    let accept = s.url("/api/handoffs/1/accept");
    call("POST", &accept, &[("X-Borg-Csrf", "wrong")], Some("{}")).error(403, "CSRF_REJECTED");
    call("POST", &accept, &[], Some("{}")).error(403, "FORBIDDEN");
    call("POST", &accept, &[("X-Borg-Csrf", &csrf)], Some("{}")).error(404, "HANDOFF_NOT_FOUND");
}

#[test]
fn with_a_token_everything_but_health_needs_one() {
    let sb = Sandbox::new();
    world(&sb);
    let s = Server::start(&sb, &["--roles", "roles", "--token", "admin-secret"]);
    assert_eq!(get(&s.url("/health"), None).status, 200);
    get(&s.url("/api/status"), None).error(401, "AGENT_NOT_REGISTERED");
    get(&s.url("/metrics"), None).error(401, "AGENT_NOT_REGISTERED");
    get(&s.url("/api/status"), Some("wrong")).error(401, "INVALID_TOKEN");
    assert_eq!(get(&s.url("/api/status"), Some("admin-secret")).status, 200);
    let reg = json!({"agentId": "a", "capabilities": ["coding"]});
    post(&s.url("/api/claude/register"), None, &reg).error(403, "FORBIDDEN");
    let t = post(&s.url("/api/claude/register"), Some("admin-secret"), &reg);
    let agent = t.data().as_str().unwrap().to_string();
    assert_eq!(get(&s.url("/api/status"), Some(&agent)).status, 200);
    // The dashboard: a login, then a session cookie; its buttons need the CSRF header.
    let page = get(&s.url("/"), None);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
    let bad = call(
        "POST",
        &s.url("/login"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("token=nope"),
    );
    assert_eq!(bad.status, 401);
    let ok = call(
        "POST",
        &s.url("/login"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("token=admin-secret"),
    );
    let cookie = ok
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(ok.header("set-cookie").unwrap().contains("HttpOnly"));
    assert!(ok.header("set-cookie").unwrap().contains("SameSite=Strict"));
    let page = call("GET", &s.url("/"), &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"instances\""));
    let csrf = page
        .text
        .split("name=\"borg-csrf\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let accept = s.url("/api/handoffs/1/accept");
    call("POST", &accept, &[("Cookie", &cookie)], Some("{}")).error(403, "CSRF_REJECTED");
    call(
        "POST",
        &accept,
        &[("Cookie", &cookie), ("X-Borg-Csrf", &csrf)],
        Some("{}"),
    )
    .error(404, "HANDOFF_NOT_FOUND");
}

/// Everything the store holds that a request could change.
fn dump(store: &dyn Store) -> Value {
    json!({
        "tasks": serde_json::to_value(store.tasks().unwrap()).unwrap(),
        "handoffs": serde_json::to_value(store.handoffs(None).unwrap()).unwrap(),
        "agents": serde_json::to_value(store.agents().unwrap()).unwrap(),
        "progress": serde_json::to_value(store.progress().unwrap()).unwrap(),
        "leases": store.leases(0).unwrap().iter().map(|l| (l.id, l.path.clone())).collect::<Vec<_>>(),
        "context": serde_json::to_value(store.context("ctx_001").unwrap()).unwrap(),
        "last_event": store.last_event_id().unwrap(),
    })
}

#[test]
fn a_corpus_of_bad_input_gets_4xx_in_the_error_shape_and_changes_nothing() {
    let sb = Sandbox::new();
    world(&sb);
    seed(
        &sb,
        &format!("{SEED_TASK}\n[[task]]\nid = \"other\"\nrole = \"tsdev\"\nprompt = \"x\"\n"),
    );
    sb.write(
        "config.toml",
        "[serve]\nbody_limit = 4096\nrate_limit = 0\n",
    );
    let mut s = Server::start(&sb, &["--roles", "roles"]);
    let mine = register(
        &s,
        "claude-code",
        &["typescript-development", "contract-definition"],
    );
    let theirs = register(
        &s,
        "copilot",
        &["typescript-development", "contract-definition"],
    );
    post(
        &s.url("/api/claude/tasks/other/claim"),
        Some(&theirs),
        &json!({}),
    )
    .data();
    let store = open(&sb);
    let before = dump(&store);
    let huge = format!(
        "{{\"agentId\": \"{}\", \"capabilities\": [\"x\"]}}",
        "a".repeat(10_000)
    );
    let routes = [
        ("POST", "/api/claude/register"),
        ("POST", "/api/claude/tasks/task_001/claim"),
        ("POST", "/api/claude/tasks/task_001/progress"),
        ("POST", "/api/claude/tasks/task_001/complete"),
        ("POST", "/api/claude/handoff"),
        ("POST", "/api/handoffs/1/accept"),
        ("POST", "/api/handoffs/1/reject"),
        ("POST", "/api/claude/locks"),
        ("DELETE", "/api/claude/locks/lock_1"),
        ("PUT", "/api/claude/context/ctx_001"),
    ];
    let bodies: [&str; 9] = [
        "{bad json",
        "[1,2]",
        "null",
        "\"str\"",
        "{\"percentComplete\": \"fifty\"}",
        "{\"success\": \"yes\"}",
        "{\"agentId\": 7, \"capabilities\": \"x\"}",
        "{\"taskId\": [], \"toAgent\": 1}",
        &huge,
    ];
    let auths: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", "Bearer reg_nope")],
        &[("Authorization", "Basic eA==")],
        &[("Authorization", "Bearer admin")],
    ];
    let mut n = 0;
    for (m, path) in routes {
        for b in bodies {
            for h in auths {
                let a = call(m, &s.url(path), h, Some(b));
                assert!(
                    (400..500).contains(&a.status),
                    "{m} {path} {h:?} {b:.40}: {} {}",
                    a.status,
                    a.text
                );
                assert_eq!(a.body["success"], false, "{m} {path}: {}", a.text);
                assert!(
                    a.body["error"]["code"].is_string() && a.body["error"]["message"].is_string(),
                    "{}",
                    a.text
                );
                n += 1;
            }
        }
    }
    // Valid tokens on what they may not touch: other agents' tasks, unknown ids, wrong types.
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("POST", "/api/claude/tasks/other/claim".into(), None, 409),
        (
            "POST",
            "/api/claude/tasks/other/progress".into(),
            Some(json!({"percentComplete": 5})),
            409,
        ),
        (
            "POST",
            "/api/claude/tasks/other/complete".into(),
            Some(json!({"success": true, "output": "mine now"})),
            409,
        ),
        (
            "POST",
            "/api/claude/handoff".into(),
            Some(json!({"taskId": "other", "toAgent": "tsdev", "reason": "r"})),
            409,
        ),
        (
            "POST",
            "/api/claude/handoff".into(),
            Some(
                json!({"taskId": "other", "fromAgent": "copilot", "toAgent": "tsdev", "reason": "r"}),
            ),
            403,
        ),
        (
            "POST",
            "/api/claude/handoff".into(),
            Some(json!({"taskId": "task_001", "toAgent": "nobody", "reason": "r"})),
            400,
        ),
        ("POST", "/api/claude/tasks/nope/claim".into(), None, 404),
        (
            "POST",
            "/api/claude/tasks/..%2F..%2Fetc/claim".into(),
            None,
            404,
        ),
        (
            "POST",
            "/api/claude/tasks/task_001/progress".into(),
            Some(json!({"percentComplete": 101})),
            400,
        ),
        (
            "POST",
            "/api/claude/tasks/task_001/progress".into(),
            Some(json!({"percentComplete": 5})),
            409,
        ),
        ("GET", "/api/claude/tasks?limit=0".into(), None, 400),
        (
            "GET",
            "/api/claude/tasks?capabilities=%ZZ".into(),
            None,
            400,
        ),
        ("GET", "/api/tasks/nope/tail".into(), None, 404),
        ("GET", "/api/events?since=abc".into(), None, 400),
        ("GET", "/api/ws".into(), None, 400),
        ("DELETE", "/api/claude/tasks".into(), None, 405),
        ("GET", "/api/nothing/here".into(), None, 404),
        ("POST", "/api/handoffs/handoff_x/accept".into(), None, 403),
        (
            "POST",
            "/api/claude/locks".into(),
            Some(json!({"path": "../x"})),
            400,
        ),
        (
            "POST",
            "/api/claude/locks".into(),
            Some(json!({"path": "a", "operation": "erase"})),
            400,
        ),
        (
            "POST",
            "/api/claude/locks".into(),
            Some(json!({"path": "a"})),
            409,
        ),
        ("DELETE", "/api/claude/locks/nonsense".into(), None, 404),
        (
            "PUT",
            "/api/claude/context/ctx_001".into(),
            Some(json!([1])),
            400,
        ),
        (
            "PUT",
            "/api/claude/context/bad%20key".into(),
            Some(json!({})),
            400,
        ),
        ("GET", "/api/claude/context/none".into(), None, 404),
    ];
    for (m, path, body, want) in cases {
        let auth = format!("Bearer {mine}");
        let b = body.map(|b| b.to_string());
        let a = call(m, &s.url(&path), &[("Authorization", &auth)], b.as_deref());
        assert_eq!(a.status, want, "{m} {path}: {}", a.text);
        assert_eq!(a.body["success"], false, "{m} {path}: {}", a.text);
        n += 1;
    }
    assert!(n > 250);
    assert!(s.alive(), "the server died: {}", s.stderr());
    assert_eq!(get(&s.url("/health"), None).status, 200);
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
    assert_eq!(dump(&store), before, "a refused request changed the store");
}

#[test]
fn run_serve_on_a_port_in_use_is_exit_2_before_anything_runs() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[]);
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let file = sb.write(
        "tasks.toml",
        "[[task]]\nid = \"never-run\"\nprompt = \"#fake text no\"\n",
    );
    let o = sb
        .run_cmd(&file, &[&format!("--serve=127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("cannot listen on"),
        "{}",
        common::stderr(&o)
    );
    assert!(!started(&sb, "never-run"));
    assert!(open(&sb).tasks().unwrap().is_empty(), "nothing was synced");
}

#[test]
fn an_agent_that_goes_silent_gives_its_task_back_when_its_lease_runs_out() {
    let sb = Sandbox::new();
    world(&sb);
    seed(&sb, SEED_TASK);
    sb.write("config.toml", "[serve]\nlease = \"1s\"\n");
    let s = Server::start(&sb, &["--roles", "roles"]);
    let token = register(
        &s,
        "claude-code",
        &["typescript-development", "contract-definition"],
    );
    let c = post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&token),
        &json!({}),
    );
    assert_eq!(c.data()["fence"], 1);
    assert_eq!(
        get(&s.url("/api/claude/tasks"), Some(&token)).data(),
        &json!([])
    );
    let store = open(&sb);
    let back = common::wait_until(std::time::Duration::from_secs(15), || {
        store.task("task_001").unwrap().unwrap().status.as_str() == "pending"
    });
    assert!(back, "the server never gave the expired claim back");
    assert_eq!(
        get(&s.url("/api/claude/tasks"), Some(&token)).data()[0]["id"],
        "task_001"
    );
    // The old claim is fenced off; claiming again gives a new fence.
    let late = post(
        &s.url("/api/claude/tasks/task_001/progress"),
        Some(&token),
        &json!({"percentComplete": 10, "fence": 1}),
    );
    late.error(409, "STALE_CLAIM");
    let again = post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&token),
        &json!({}),
    );
    assert_eq!(again.data()["fence"], 3);
}

#[test]
fn file_locks_and_context_go_through_the_coordination_store() {
    let sb = Sandbox::new();
    world(&sb);
    seed(
        &sb,
        &format!("{SEED_TASK}\n[[task]]\nid = \"task_002\"\nrole = \"tsdev\"\nprompt = \"x\"\n"),
    );
    let s = Server::start(&sb, &["--roles", "roles"]);
    let caps = ["typescript-development", "contract-definition"];
    let a = register(&s, "claude-code", &caps);
    let b = register(&s, "github-copilot", &caps);
    // Without a claim there is nothing to lease for.
    let lock = |t: &str, path: &str| {
        post(
            &s.url("/api/claude/locks"),
            Some(t),
            &json!({"path": path, "operation": "write"}),
        )
    };
    lock(&a, "src/auth.ts").error(409, "TASK_NOT_CLAIMED");
    post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&a),
        &json!({}),
    )
    .data();
    post(
        &s.url("/api/claude/tasks/task_002/claim"),
        Some(&b),
        &json!({}),
    )
    .data();
    let mine = lock(&a, "./src/auth.ts");
    let d = mine.data();
    let token = d["lockToken"].as_str().unwrap().to_string();
    assert!(token.starts_with("lock_"));
    assert_eq!(d["path"], "src/auth.ts");
    let refused = lock(&b, "src/auth.ts");
    let e = refused.error(409, "FILE_LOCKED");
    assert_eq!(e["details"]["lockedBy"], "claude-code");
    assert_eq!(e["retryable"], true);
    lock(&b, "/etc/passwd").error(400, "INVALID_REQUEST");
    // The same leases `borg locks` (and the MCP tools) see.
    let locks = sb.json(&["locks", "--json"]);
    assert!(locks.to_string().contains("src/auth.ts"), "{locks}");
    let del = |t: &str, tok: &str| {
        call(
            "DELETE",
            &s.url(&format!("/api/claude/locks/{tok}")),
            &[("Authorization", &format!("Bearer {t}"))],
            None,
        )
    };
    del(&b, &token).error(403, "FORBIDDEN");
    del(&a, "lock_999999").error(404, "LOCK_NOT_FOUND");
    assert_eq!(del(&a, &token).data()["released"], true);
    lock(&b, "src/auth.ts").data();
    // Shared context (seed 000's shape), saved for a claim and read by anyone.
    let ctx = json!({"messages": [{"timestamp": "2025-11-17T10:30:00Z", "agent": "claude-code", "content": "Starting task execution"}],
                     "metadata": {"phase": "implementation", "progress": 50}});
    let put = call(
        "PUT",
        &s.url("/api/claude/context/ctx_001"),
        &[("Authorization", &format!("Bearer {a}"))],
        Some(&ctx.to_string()),
    );
    assert_eq!(put.data()["id"], "ctx_001");
    let got = get(&s.url("/api/claude/context/ctx_001"), Some(&b));
    let g = got.data();
    assert_eq!(g["id"], "ctx_001");
    assert_eq!(g["taskId"], "task_001");
    assert_eq!(g["agent"], "claude-code");
    assert_eq!(g["messages"][0]["content"], "Starting task execution");
    assert_eq!(g["metadata"]["phase"], "implementation");
    get(&s.url("/api/claude/context/nothing-here"), Some(&b)).error(404, "CONTEXT_NOT_FOUND");
    let c = register(&s, "idle-agent", &caps);
    call(
        "PUT",
        &s.url("/api/claude/context/ctx_001"),
        &[("Authorization", &format!("Bearer {c}"))],
        Some("{}"),
    )
    .error(409, "TASK_NOT_CLAIMED");
}

#[test]
fn tokens_never_reach_the_log_even_at_trace_level() {
    let sb = Sandbox::new();
    world(&sb);
    seed(&sb, SEED_TASK);
    let admin = "admin-secret-5f1c9e";
    let mut c = sb.borg(&["serve", "--listen", "127.0.0.1:0", "--roles", "roles"]);
    c.env("BORG_LOG", "trace").env("BORG_SERVE_TOKEN", admin);
    let s = Server::spawn(c);
    let reg = call(
        "POST",
        &s.url("/api/claude/register"),
        &[("Authorization", &format!("Bearer {admin}"))],
        Some(
            r#"{"agentId": "claude-code", "capabilities": ["typescript-development", "contract-definition"], "version": "1"}"#,
        ),
    );
    let token = reg.data().as_str().unwrap().to_string();
    get(&s.url("/api/claude/tasks"), Some(&token)).data();
    post(
        &s.url("/api/claude/tasks/task_001/claim"),
        Some(&token),
        &json!({}),
    )
    .data();
    get(
        &s.url("/api/claude/tasks"),
        Some("reg_00000000-0000-0000-0000-000000000000"),
    )
    .error(401, "INVALID_TOKEN");
    // Something was logged at trace level, and neither token is in it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = s.stderr();
    assert!(log.lines().count() > 1, "{log}");
    assert!(!log.contains(&token), "the agent's token was logged: {log}");
    assert!(!log.contains(admin), "the admin token was logged: {log}");
}

#[test]
fn metrics_count_cost_and_tokens_by_role_and_the_parking() {
    let sb = Sandbox::new();
    let (out, _) = sb.run_json(
        "[[task]]\nid = \"m-cost\"\nprompt = \"#fake result \\\"ok\\\"\"\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let s = Server::start(&sb, &[]);
    let line = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let m = get(&s.url("/metrics"), None);
    assert!(line(&m.text, "borg_cost_usd_total{role=\"developer\"}") > 0.0);
    assert!(
        line(
            &m.text,
            "borg_tokens_total{role=\"developer\",kind=\"input\"}"
        ) > 0.0
    );
    assert!(
        line(
            &m.text,
            "borg_tokens_total{role=\"developer\",kind=\"output\"}"
        ) > 0.0
    );
    assert_eq!(line(&m.text, "borg_parked"), 0.0);
    let t = now();
    open(&sb)
        .set_fleet(
            "parked",
            &json!({"until_ms": t + 600_000, "kind": "five_hour"}),
            t,
        )
        .unwrap();
    let m = get(&s.url("/metrics"), None);
    assert_eq!(line(&m.text, "borg_parked"), 1.0, "{}", m.text);
}
