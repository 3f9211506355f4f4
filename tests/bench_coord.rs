//! The coordination bench of `bench/run.sh coord`: wall time per call of
//! `borg hook pre-tool-use` (process start, store open, the lease check, and with
//! auto-lock the lease's durable commit) with 64 leases held by other attempts and 8
//! concurrent callers; and the `lock_files` + `unlock_files` round trip through a
//! running `borg mcp`.
//!
//! In the normal `cargo test` it runs at a tiny size as a smoke test (the figures are
//! printed, never asserted); `bench/run.sh coord` runs it in release mode with
//! `BORG_BENCH_COORD=N` calls per caller and reads the `BENCH coord {json}` lines.

mod common;
#[path = "support/pg.rs"]
mod pg;

use borg::store::coord::*;
use borg::store::sqlite::SqliteStore;
use borg::store::*;
use common::borg_bin;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLERS: usize = 8;
const HELD: usize = 64;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// A store with a holder of 64 leases and 8 running callers; their actors, and the
/// store, kept open as `borg run` keeps it while its children run (the last connection
/// to close would checkpoint the WAL, which no hook does in a real run).
fn world(dir: &std::path::Path) -> (Vec<Actor>, SqliteStore) {
    let store = SqliteStore::open(&dir.join("borg.db")).unwrap();
    (actors_of(&store), store)
}

/// The holder's 64 leases and the 8 callers' claims in `store`; the callers' actors.
fn actors_of(store: &dyn Store) -> Vec<Actor> {
    let ids: Vec<String> = std::iter::once("holder".to_string())
        .chain((0..CALLERS).map(|i| format!("caller{i}")))
        .collect();
    let list: Vec<NewTask> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| NewTask {
            id: id.clone(),
            role: "developer".into(),
            priority: 0,
            order: i as i64,
            depends_on: vec![],
            instance: None,
            max_attempts: 1,
            spec: json!({}),
            hash: "h".into(),
            awaits_person: false,
        })
        .collect();
    store.sync_tasks(&list, now()).unwrap();
    let mut actors = Vec::new();
    for id in &ids {
        let r = ClaimRequest {
            owner: "bench".into(),
            roles: vec!["developer".into()],
            idle_instances: vec![],
            reuse: vec![],
            only: vec![id.clone()],
            scoped: false,
            lease: Duration::from_secs(3600),
            now_ms: now(),
        };
        let c = store.claim_next(&r).unwrap().unwrap();
        store
            .start_attempt(
                &c.token,
                &AttemptStart {
                    instance: format!("i-{id}"),
                    now_ms: now(),
                    ..Default::default()
                },
            )
            .unwrap();
        actors.push(Actor {
            task: id.clone(),
            fence: c.token.fence,
            instance: format!("i-{id}"),
            uid: String::new(),
        });
    }
    let paths: Vec<String> = (0..HELD).map(|k| format!("src/held/f{k:02}.rs")).collect();
    let req = LockRequest {
        paths,
        reason: "bench".into(),
        ttl: Duration::from_secs(3600),
        auto: false,
        queue: None,
    };
    assert_eq!(
        store
            .lock_paths(&actors[0], &req, now())
            .unwrap()
            .granted
            .len(),
        HELD
    );
    actors.remove(0);
    actors
}

/// The environment claude gives the helpers of `a`.
fn env_of(dir: &std::path::Path, a: &Actor, auto_lock: bool) -> Vec<(String, String)> {
    env_at(
        dir,
        &dir.join("borg.db").display().to_string(),
        a,
        auto_lock,
    )
}

/// The same with the store at `store` (a path or a PostgreSQL URL).
fn env_at(dir: &std::path::Path, store: &str, a: &Actor, auto_lock: bool) -> Vec<(String, String)> {
    let cfg = json!({ "root": dir.join("project"), "role": "developer", "auto_lock": auto_lock, "on_violation": "warn",
        "lease_ttl_ms": 900000, "claim_lease_ms": 60000, "max_agent_tasks": 20, "writable": [], "roles": ["developer"],
        "retries": 0, "started_ms": now(), "protect": [] });
    vec![
        ("BORG_STORE".into(), store.to_string()),
        ("BORG_TASK_ID".into(), a.task.clone()),
        ("BORG_CLAIM_TOKEN".into(), a.fence.to_string()),
        ("BORG_INSTANCE_ID".into(), a.instance.clone()),
        ("BORG_COORD".into(), cfg.to_string()),
    ]
}

/// `n` hook calls per caller, 8 callers at once; the sorted wall times.
fn hook_calls(dir: &std::path::Path, actors: &[Actor], n: usize, auto_lock: bool) -> Vec<Duration> {
    let store = dir.join("borg.db").display().to_string();
    hook_calls_at(dir, &store, actors, n, auto_lock)
}

/// The same on the store at `store`.
fn hook_calls_at(
    dir: &std::path::Path,
    store: &str,
    actors: &[Actor],
    n: usize,
    auto_lock: bool,
) -> Vec<Duration> {
    let threads: Vec<_> = actors
        .iter()
        .enumerate()
        .map(|(c, a)| {
            let env = env_at(dir, store, a, auto_lock);
            let root = dir.join("project");
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(n);
                for k in 0..n {
                    // Mostly the caller's own few files; every 8th call one another holds.
                    let file = if k % 8 == 7 { format!("src/held/f{:02}.rs", (c * 7 + k) % HELD) } else { format!("src/c{c}/f{}.rs", k % 4) };
                    let payload = json!({ "session_id": "s", "cwd": root, "hook_event_name": "PreToolUse", "tool_name": "Write",
                        "tool_input": { "file_path": root.join(&file), "content": "x" }, "tool_use_id": "t" });
                    let t = Instant::now();
                    let mut p = Command::new(borg_bin()).args(["hook", "pre-tool-use"]).env_clear().envs(env.iter().cloned())
                        .stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
                    p.stdin.take().unwrap().write_all(payload.to_string().as_bytes()).unwrap();
                    let out = p.wait_with_output().unwrap();
                    lat.push(t.elapsed());
                    let denied = String::from_utf8_lossy(&out.stdout).contains("\"deny\"");
                    assert_eq!(denied, k % 8 == 7, "{file}: {}", String::from_utf8_lossy(&out.stdout));
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    all
}

/// The lease check alone, in-process: 8 threads, each with its own light store (as 8
/// hook processes have), `n` checks each; the sorted times.
fn checks_in_process(dir: &std::path::Path, actors: &[Actor], n: usize) -> Vec<Duration> {
    let threads: Vec<_> = actors
        .iter()
        .enumerate()
        .map(|(c, a)| {
            let (path, a) = (dir.join("borg.db"), a.clone());
            std::thread::spawn(move || {
                let st = SqliteStore::open_light(&path).unwrap();
                let mut lat = Vec::with_capacity(n);
                for k in 0..n {
                    let file = if k % 8 == 7 {
                        format!("src/held/f{:02}.rs", (c * 7 + k) % HELD)
                    } else {
                        format!("src/c{c}/f{}.rs", k % 4)
                    };
                    let t = Instant::now();
                    let r = st.check_write(&a, &file, None, now()).unwrap();
                    lat.push(t.elapsed());
                    assert_eq!(matches!(r, WriteCheck::Denied(_)), k % 8 == 7);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    all
}

/// `n` lock_files + unlock_files round trips through one `borg mcp`.
fn mcp_round_trips(dir: &std::path::Path, a: &Actor, n: usize) -> Vec<Duration> {
    let mut p = Command::new(borg_bin())
        .arg("mcp")
        .env_clear()
        .envs(env_of(dir, a, true))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let mut lines = BufReader::new(p.stdout.take().unwrap()).lines();
    let mut id = 0;
    let mut ask = |method: &str, params: serde_json::Value| {
        id += 1;
        writeln!(
            stdin,
            "{}",
            json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(v["id"], id);
        v
    };
    ask(
        "initialize",
        json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "bench", "version": "0" } }),
    );
    let mut lat = Vec::with_capacity(n);
    for k in 0..n {
        let path = format!("src/mcp/f{}.rs", k % 16);
        let t = Instant::now();
        let l = ask(
            "tools/call",
            json!({ "name": "lock_files", "arguments": { "paths": [path], "reason": "bench" } }),
        );
        let u = ask(
            "tools/call",
            json!({ "name": "unlock_files", "arguments": { "paths": [path] } }),
        );
        lat.push(t.elapsed());
        assert_eq!(
            l["result"]["structuredContent"]["granted"][0],
            path.as_str(),
            "{l}"
        );
        assert_eq!(
            u["result"]["structuredContent"]["released"][0],
            path.as_str(),
            "{u}"
        );
    }
    let _ = p.kill();
    let _ = p.wait();
    lat.sort();
    lat
}

#[test]
fn coord_latency() {
    let n: usize = std::env::var("BORG_BENCH_COORD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let dir = match std::env::var("BORG_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir_all(dir.path().join("project")).unwrap();
    let (actors, _open) = world(dir.path());
    // One caller alone first: the cost of a call without contention.
    let lat = hook_calls(dir.path(), &actors[..1], n, true);
    let fig = json!({ "mode": "hook-auto-lock-1-caller", "calls": lat.len(), "held": HELD, "callers": 1,
                      "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0) });
    println!("BENCH coord {fig}");
    for (mode, auto) in [("hook-auto-lock", true), ("hook-check-only", false)] {
        let lat = hook_calls(dir.path(), &actors, n, auto);
        let fig = json!({ "mode": mode, "calls": lat.len(), "held": HELD, "callers": CALLERS,
                          "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0) });
        println!("BENCH coord {fig}");
    }
    let lat = checks_in_process(dir.path(), &actors, n * 4);
    let fig = json!({ "mode": "check-in-process", "calls": lat.len(), "held": HELD, "callers": CALLERS,
                      "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0) });
    println!("BENCH coord {fig}");
    let lat = mcp_round_trips(dir.path(), &actors[0], n * 4);
    let fig = json!({ "mode": "mcp-lock-unlock", "calls": lat.len(), "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99),
                      "max_ms": pct(&lat, 1.0) });
    println!("BENCH coord {fig}");
}

/// `borg hook pre-tool-use` on a PostgreSQL store (`BORG_BENCH_PG_URL`, an empty
/// database; or a fresh database of the tests' server): the same calls, so the cost
/// of opening the store per call shows. Skipped without a server.
#[test]
fn coord_latency_pg() {
    let n: usize = std::env::var("BORG_BENCH_COORD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let db = match std::env::var("BORG_BENCH_PG_URL") {
        Ok(u) => (u, None),
        Err(_) => match pg::PgDb::create() {
            Some(d) => (d.url.clone(), Some(d)),
            None => return,
        },
    };
    let url = db.0.clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("project")).unwrap();
    let store = borg::store::postgres::PgStore::open(&url).unwrap();
    let actors = actors_of(&store);
    let lat = hook_calls_at(dir.path(), &url, &actors[..1], n, true);
    let fig = json!({ "mode": "pg-hook-auto-lock-1-caller", "calls": lat.len(), "held": HELD, "callers": 1,
                      "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0) });
    println!("BENCH coord {fig}");
    let lat = hook_calls_at(dir.path(), &url, &actors, n, true);
    let fig = json!({ "mode": "pg-hook-auto-lock", "calls": lat.len(), "held": HELD, "callers": CALLERS,
                      "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": pct(&lat, 1.0) });
    println!("BENCH coord {fig}");
    drop(store);
    drop(db);
}
