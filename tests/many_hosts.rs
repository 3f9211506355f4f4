//! Many hosts on one PostgreSQL store, as users run them: `borg worker` processes with
//! workspaces and host ids of their own, `borg run LIST --no-work` enqueuing and
//! waiting, fake-claude as the agent. Every task must succeed exactly once, through a
//! SIGKILLed worker, a PostgreSQL restart, and PostgreSQL gone for longer than the
//! lease. Bad store input is exit 2 with a message that names what to fix.
//!
//! Task ids carry a per-test suffix: other tests scan processes by `BORG_TASK_ID`.

mod common;
#[path = "support/hosts.rs"]
mod hosts;
#[path = "support/pg.rs"]
mod pg;

use borg::store::postgres::PgStore;
use borg::store::Store;
use common::*;
use hosts::*;
use pg::{PgDb, PgServer};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// `n` tasks in chains of 10 (each depends on the one before it in its chain, and
/// the first of a chain on the first of the previous chain), each sleeping `ms`.
fn chains(n: usize, ms: u64, suffix: &str) -> String {
    let mut out = String::new();
    for i in 0..n {
        let deps = if i % 10 != 0 {
            format!("depends_on = [\"t{}-{suffix}\"]\n", i - 1)
        } else if i >= 10 {
            format!("depends_on = [\"t{}-{suffix}\"]\n", i - 10)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "[[task]]\nid = \"t{i}-{suffix}\"\n{deps}prompt = '''\ntask {i}\n#fake sleep {ms}\n#fake result \"done {i}\"\n'''\n\n"
        ));
    }
    out
}

/// Starts `borg run LIST --no-work` (enqueue and wait), JSON report on stdout.
fn enqueue(sb: &Sandbox, url: &str, tasks: &str) -> Child {
    let file = sb.write("tasks.toml", tasks);
    borg_at(
        sb,
        &sb.path().join("ws-coordinator"),
        url,
        &[
            "run",
            file.to_str().unwrap(),
            "--no-work",
            "--json",
            "--progress",
            "plain",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start borg run --no-work")
}

/// The report of the `--no-work` run: exit 0, every task succeeded.
fn finished_report(run: Child, n: usize) -> serde_json::Value {
    let out: Output = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "borg run --no-work: {err}");
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(rep["totals"]["succeeded"], n, "{rep}");
    rep
}

#[test]
fn three_workers_run_200_tasks_exactly_once_through_a_sigkill() {
    let Some(db) = PgDb::create() else { return };
    let sb = Sandbox::new();
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let w1 = Worker::start(&sb, &db.url, "h1", 3);
    let mut w2 = Worker::start(&sb, &db.url, "h2", 3);
    let w3 = Worker::start(&sb, &db.url, "h3", 3);
    let run = enqueue(&sb, &db.url, &chains(200, 150, sfx));
    let s = PgStore::open(&db.url).unwrap();
    wait_store(&s, Duration::from_secs(120), |r| succeeded(r) >= 50);
    // h2 dies mid-run, while it holds a running attempt; its tasks must be taken
    // over, and it comes back.
    let old_pid = w2.child.id();
    let mine = format!("borg-h2-{old_pid}-");
    let holds = wait_until(Duration::from_secs(60), || {
        s.running_attempts()
            .map(|a| a.iter().any(|a| a.owner.starts_with(&mine)))
            .unwrap_or(false)
    });
    assert!(holds, "worker h2 never ran an attempt");
    w2.child.kill().unwrap();
    w2.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let w2b = Worker::start(&sb, &db.url, "h2", 3);
    let rep = finished_report(run, 200);
    let interrupted = exactly_once(&s, 200);
    let old_owner = mine;
    let taken_over: Vec<&String> = interrupted
        .iter()
        .filter(|(_, o)| o.starts_with(&old_owner))
        .map(|(t, _)| t)
        .collect();
    assert!(
        !taken_over.is_empty(),
        "the killed worker held tasks that others took over: {interrupted:?}"
    );
    // Nothing the dead worker did landed after its claims were taken back.
    let events = s.events_since(0, usize::MAX).unwrap();
    let released = events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "owner-gone" | "lease-expired"))
        .filter(|e| {
            e.data["previous_owner"]
                .as_str()
                .is_some_and(|o| o.starts_with(&old_owner))
        })
        .map(|e| e.id)
        .min()
        .expect("the dead worker's claims were released");
    let late: Vec<_> = events
        .iter()
        .filter(|e| e.id > released && e.actor.starts_with(&old_owner))
        .filter(|e| {
            !matches!(
                e.kind.as_str(),
                "owner-gone" | "interrupted" | "handoff-dropped" | "owner-removed"
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "the dead worker wrote after losing its claims: {late:?}"
    );
    // Every worker's own tasks show in the report; the hosts are in `borg status`.
    assert_eq!(rep["tasks"].as_array().unwrap().len(), 200);
    let status: serde_json::Value = serde_json::from_slice(
        &borg_at(
            &sb,
            &sb.path().join("ws-coordinator"),
            &db.url,
            &["status", "--json"],
        )
        .output()
        .unwrap()
        .stdout,
    )
    .unwrap();
    let mut hosts: Vec<String> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}:{}", h["host_id"].as_str().unwrap(), h["alive"]))
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["h1:true", "h2:true", "h3:true"], "{status}");
    for w in [w1, w2b, w3] {
        w.stop();
    }
    // Stopped workers are gone from the store.
    assert!(s.owners().unwrap().is_empty(), "{:?}", s.owners().unwrap());
}

#[test]
fn a_postgres_restart_mid_run_is_survived() {
    let Some(mut srv) = PgServer::start() else {
        return;
    };
    let db = PgDb::create_on(&srv.admin_url());
    let sb = Sandbox::new();
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let w = Worker::start(&sb, &db.url, "solo", 2);
    let run = enqueue(&sb, &db.url, &chains(30, 300, sfx));
    let s = PgStore::open(&db.url).unwrap();
    wait_store(&s, Duration::from_secs(60), |r| succeeded(r) >= 8);
    srv.stop();
    std::thread::sleep(Duration::from_millis(700));
    srv.resume();
    finished_report(run, 30);
    exactly_once(&s, 30);
    w.stop();
    drop(s);
    drop(db);
}

#[test]
fn postgres_gone_longer_than_the_lease_pauses_and_resumes() {
    let Some(mut srv) = PgServer::start() else {
        return;
    };
    let db = PgDb::create_on(&srv.admin_url());
    let sb = Sandbox::new();
    sb.config("lease = \"4s\"");
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let w = Worker::start(&sb, &db.url, "solo", 2);
    let run = enqueue(&sb, &db.url, &chains(12, 2500, sfx));
    let s = PgStore::open(&db.url).unwrap();
    wait_store(&s, Duration::from_secs(60), |r| succeeded(r) >= 2);
    srv.stop();
    let t0 = Instant::now();
    let said = wait_until(Duration::from_secs(30), || {
        w.stderr()
            .contains("no new task starts until the store is back")
    });
    assert!(
        said,
        "the worker said why it stopped starting work: {}",
        w.stderr()
    );
    while t0.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(200));
    }
    srv.resume();
    finished_report(run, 12);
    exactly_once(&s, 12);
    let err = w.stop();
    assert!(err.contains("cannot reach the store"), "{err}");
    assert!(err.contains("reachable again"), "{err}");
    drop(s);
    drop(db);
}

#[test]
fn bad_store_input_is_exit_2_naming_what_to_fix() {
    let sb = Sandbox::new();
    let fake = fake_bin();
    let worker = |url: &str| {
        borg_at(
            &sb,
            &sb.ws(),
            url,
            &["worker", "--claude", fake.to_str().unwrap()],
        )
        .output()
        .unwrap()
    };
    let check = |o: Output, needles: &[&str]| {
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
        assert!(!err.contains("s3cret"), "the password was shown: {err}");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    check(
        worker(&format!("postgres://borg:s3cret@127.0.0.1:{port}/borg")),
        &[
            "cannot reach the store",
            &format!("127.0.0.1:{port}"),
            "***",
        ],
    );
    check(
        worker("postgres://borg:s3cret@127.0.0.1:notaport/borg"),
        &["not a valid PostgreSQL URL"],
    );
    let Some(admin) = pg::admin_url() else { return };
    let wrong = if admin.contains("borg:") {
        admin.replacen("borg:", "borg:s3cret", 1)
    } else {
        admin.replacen("borg@", "borg:s3cret@", 1)
    };
    check(worker(&wrong), &["refused the connection", "password"]);
    check(
        worker(&pg::with_db(&admin, "borg_no_such_db")),
        &["borg_no_such_db", "does not exist"],
    );
    let db = PgDb::create().unwrap();
    pg::sql(&db.url, "CREATE TABLE invoices (id INTEGER)").unwrap();
    check(worker(&db.url), &["not a borg database", "invoices"]);
    // and the same for `borg run` and `borg status`
    let file = sb.write("t.toml", &one("x", "hi"));
    let o = borg_at(
        &sb,
        &sb.ws(),
        &db.url,
        &[
            "run",
            file.to_str().unwrap(),
            "--claude",
            fake.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    check(o, &["invoices"]);
    let o = borg_at(&sb, &sb.ws(), &db.url, &["status"])
        .output()
        .unwrap();
    check(o, &["invoices"]);
    // an unknown role for --roles
    let ok = PgDb::create().unwrap();
    let o = borg_at(
        &sb,
        &sb.ws(),
        &ok.url,
        &[
            "worker",
            "--roles",
            "developer,wizard",
            "--claude",
            fake.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    check(o, &["wizard", "developer"]);
}

#[test]
fn status_shows_hosts_and_marks_the_dead_ones() {
    let Some(db) = PgDb::create() else { return };
    let sb = Sandbox::new();
    let s = PgStore::open(&db.url).unwrap();
    let now = borg::run::attempt::now_ms();
    // A host on another machine that stopped beating 5 minutes ago, holding a task.
    let gone = borg::store::OwnerInfo {
        id: "borg-far-away-1".into(),
        host: "far-away-machine".into(),
        host_id: "far".into(),
        pid: 4242,
        start_time: 1,
        boot_id: "another-boot".into(),
        started_at_ms: now - 600_000,
        heartbeat_ms: now - 300_000,
    };
    s.register_owner(&gone).unwrap();
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let t = format!("held-{sfx}");
    s.sync_tasks(
        &[borg::store::NewTask {
            id: t.clone(),
            role: "developer".into(),
            priority: 0,
            order: 0,
            depends_on: vec![],
            instance: None,
            max_attempts: 1,
            spec: serde_json::json!({}),
            hash: "h".into(),
            awaits_person: false,
        }],
        now,
    )
    .unwrap();
    let r = borg::store::ClaimRequest {
        owner: gone.id.clone(),
        roles: vec!["developer".into()],
        idle_instances: vec![],
        reuse: vec![],
        only: vec![],
        scoped: false,
        lease: Duration::from_secs(60),
        now_ms: now,
    };
    s.claim_next(&r).unwrap().expect("claimed");
    let w = Worker::start(&sb, &db.url, "near", 1);
    let ok = wait_until(Duration::from_secs(20), || {
        s.owners().unwrap().iter().any(|o| o.host_id == "near")
    });
    assert!(ok, "the worker registered: {}", w.stderr());
    let out = borg_at(&sb, &sb.ws(), &db.url, &["status", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    let far = hosts
        .iter()
        .find(|h| h["host_id"] == "far")
        .expect("far listed");
    assert_eq!(far["alive"], false, "{far}");
    assert!(
        far["dead"].as_str().unwrap().contains("no heartbeat"),
        "{far}"
    );
    assert_eq!(far["hostname"], "far-away-machine");
    assert_eq!(far["pid"], 4242);
    assert_eq!(far["running"], serde_json::json!([t]));
    let near = hosts
        .iter()
        .find(|h| h["host_id"] == "near")
        .expect("near listed");
    assert_eq!(near["alive"], true, "{near}");
    assert_eq!(near["pid"], w.child.id());
    let out = borg_at(&sb, &sb.ws(), &db.url, &["status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HOSTS") && text.contains("DEAD (no heartbeat"),
        "{text}"
    );
    w.stop();
}
