//! Issue 5, scheduling, seen from outside: priorities, role limits, pinned instances,
//! fault classes (retry with backoff, permanent, the circuit breaker, usage limits and
//! parking), the run budget, per-task budget and the child's retry/timeout variables,
//! and the dry run.

mod common;
use common::*;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Fast retries for tests.
const FAST: &str = "backoff_base = \"100ms\"\nbackoff_cap = \"500ms\"\n";

/// The tasks named by `start` lines of the plain progress output, in order.
fn start_order(err: &str) -> Vec<String> {
    err.lines()
        .filter_map(|l| l.split_once("] start  "))
        .map(|(_, rest)| rest.split(' ').next().unwrap().to_string())
        .collect()
}

/// Waits until `borg status` says the fleet is parked; returns whether it did, and the
/// last status text.
fn wait_for_park(sb: &Sandbox) -> (bool, String) {
    let mut status = String::new();
    let seen = wait_until(Duration::from_secs(15), || {
        let o = sb.borg(&["status"]).output().unwrap();
        status = String::from_utf8_lossy(&o.stdout).into_owned();
        status.contains("parked until")
    });
    (seen, status)
}

/// Waits for a background borg until `limit` (killed past it); returns whether it
/// finished in time, and its output.
fn finish_within(mut c: Child, limit: Duration) -> (bool, Output) {
    let finished = wait_until(limit, || c.try_wait().unwrap().is_some());
    if !finished {
        let _ = c.kill();
    }
    (finished, c.wait_with_output().unwrap())
}

#[test]
fn ready_tasks_start_in_priority_then_list_order() {
    let sb = Sandbox::new();
    let tasks = [
        ("prio-low", 0),
        ("prio-high", 10),
        ("prio-mid", 5),
        ("prio-mid2", 5),
        ("prio-low2", 0),
        ("prio-neg", -3),
    ]
    .iter()
    .map(|(id, p)| {
        format!("[[task]]\nid = \"{id}\"\npriority = {p}\nprompt = \"#fake result \\\"ok\\\"\"\n\n")
    })
    .collect::<String>();
    let out = sb.run(&tasks, &["--concurrency", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        start_order(&stderr(&out)),
        vec![
            "prio-high",
            "prio-mid",
            "prio-mid2",
            "prio-low",
            "prio-low2",
            "prio-neg"
        ]
    );
    // fake-claude saw them in the same order.
    let times: Vec<i64> = [
        "prio-high",
        "prio-mid",
        "prio-mid2",
        "prio-low",
        "prio-low2",
        "prio-neg",
    ]
    .iter()
    .map(|id| started_ms(&sb.argv(id)[0]))
    .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[test]
fn a_role_limit_keeps_to_one_tester_at_a_time() {
    let sb = Sandbox::new();
    sb.config("\n[roles.tester]\nmax_instances = 1\n");
    let mut tasks = String::new();
    for i in 0..3 {
        tasks.push_str(&format!(
            "[[task]]\nid = \"lim-tester-{i}\"\nrole = \"tester\"\nprompt = \"#fake sleep 600\"\n\n"
        ));
    }
    tasks.push_str("[[task]]\nid = \"lim-dev\"\nprompt = \"#fake sleep 600\"\n\n");
    let (out, rep) = sb.run_json(&tasks, &["--concurrency", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rep["totals"]["succeeded"], 4);
    let mut starts: Vec<i64> = (0..3)
        .map(|i| started_ms(&sb.argv(&format!("lim-tester-{i}"))[0]))
        .collect();
    starts.sort();
    for w in starts.windows(2) {
        assert!(
            w[1] - w[0] >= 550,
            "two testers ran at once: starts {starts:?}"
        );
    }
    // The developer is not held back by the tester limit.
    let dev = started_ms(&sb.argv("lim-dev")[0]);
    assert!(dev < starts[1], "dev {dev} waited for testers {starts:?}");
}

#[test]
fn a_pinned_task_runs_on_its_instance_and_waits_for_it() {
    let sb = Sandbox::new();
    sb.create_instance("developer", "dev-1");
    let tasks = "[[task]]\nid = \"pin-a\"\ninstance = \"dev-1\"\nprompt = \"#fake sleep 600\"\n\n\
                 [[task]]\nid = \"pin-b\"\ninstance = \"dev-1\"\nprompt = \"#fake sleep 600\"\n\n\
                 [[task]]\nid = \"pin-free\"\nprompt = \"#fake sleep 600\"\n";
    let (out, rep) = sb.run_json(tasks, &["--concurrency", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "pin-a")["instance"], "dev-1");
    assert_eq!(task(&rep, "pin-b")["instance"], "dev-1");
    assert_ne!(task(&rep, "pin-free")["instance"], "dev-1");
    let (a, b) = (
        started_ms(&sb.argv("pin-a")[0]),
        started_ms(&sb.argv("pin-b")[0]),
    );
    assert!(
        (b - a).abs() >= 550,
        "both pinned tasks ran at once on dev-1: {a} {b}"
    );
    assert!(sb.argv("pin-a")[0]["cwd"]
        .as_str()
        .unwrap()
        .contains("/dev-1/"));
}

#[test]
fn a_task_pinned_to_an_instance_that_does_not_exist_yet_still_runs() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"pin-new\"\ninstance = \"dev-new\"\nprompt = \"#fake result \\\"ok\\\"\"\n";
    let c = sb.spawn_run(tasks, &["--json"]);
    let (finished, out) = finish_within(c, Duration::from_secs(20));
    assert!(finished, "borg waited forever for instance dev-new");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "pin-new")["instance"], "dev-new");
}

#[test]
fn a_transient_fault_is_retried_quickly_with_the_configured_backoff() {
    let sb = Sandbox::new();
    sb.config(FAST);
    let tasks = "[[task]]\nid = \"flaky\"\nretries = 1\nprompt = '''\n#fake first 1 api-error 500 0\n#fake result \"ok\"\n'''\n";
    let (out, rep) = sb.run_json(tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, "flaky");
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["attempts"], 2);
    let a = sb.argv("flaky");
    assert_eq!(a.len(), 2);
    // backoff_base = 100ms: the default (5 s) would show here.
    let gap = started_ms(&a[1]) - started_ms(&a[0]);
    assert!(gap < 3000, "retry came {gap} ms later");
}

#[test]
fn a_permanent_fault_is_not_retried() {
    let sb = Sandbox::new();
    sb.config(FAST);
    let tasks = "[[task]]\nid = \"perm\"\nretries = 3\nprompt = \"#fake max-turns\"\n";
    let (out, rep) = sb.run_json(tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = task(&rep, "perm");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["attempts"], 1);
    assert_eq!(sb.argv("perm").len(), 1);
}

#[test]
fn a_401_on_every_task_opens_the_breaker_with_one_message() {
    let tasks: String = (0..12)
        .map(|i| one(&format!("auth-{i:02}"), "#fake api-error 401"))
        .collect();
    // The same in both outputs: the table on stderr, or the JSON report on stdout.
    for json in [false, true] {
        let sb = Sandbox::new();
        sb.config(FAST);
        let extra: &[&str] = if json {
            &["--concurrency", "1", "--json"]
        } else {
            &["--concurrency", "1"]
        };
        let out = sb.run(&tasks, extra);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let started = (0..12)
            .filter(|i| !sb.argv(&format!("auth-{i:02}")).is_empty())
            .count();
        assert_eq!(started, 3, "the breaker should stop after 3 attempts");
        let err = stderr(&out);
        assert_eq!(
            err.matches("ANTHROPIC_API_KEY").count(),
            1,
            "one message naming the fix (json: {json}): {err}"
        );
        let line = err
            .lines()
            .find(|l| l.contains("ANTHROPIC_API_KEY"))
            .unwrap();
        assert!(line.contains("401"), "{line}");
        if json {
            let rep = json_of(&out);
            assert!(rep["stop_reason"]
                .as_str()
                .is_some_and(|s| s.contains("ANTHROPIC_API_KEY")));
            assert_eq!(task(&rep, "auth-11")["attempts"], 0);
        }
    }
}

#[test]
fn a_usage_limit_parks_the_fleet_then_resumes_the_session() {
    let sb = Sandbox::new();
    sb.config(FAST);
    let tasks = "[[task]]\nid = \"park-a\"\npriority = 1\nretries = 0\nprompt = '''\n#fake first 1 rate-limit 3\n#fake result \"resumed\"\n'''\n\n\
                 [[task]]\nid = \"park-b\"\nprompt = \"#fake result \\\"b\\\"\"\n";
    let c = sb.spawn_run(tasks, &["--json", "--concurrency", "1"]);
    // While parked, `borg status` says so.
    let (seen, status) = wait_for_park(&sb);
    assert!(seen, "status never showed the park: {status}");
    let line = status.lines().find(|l| l.contains("parked until")).unwrap();
    let hhmm = line
        .split("parked until ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        hhmm.len() == 5 && hhmm.as_bytes()[2] == b':',
        "HH:MM: {line}"
    );
    let (finished, out) = finish_within(c, Duration::from_secs(30));
    assert!(finished, "the run never ended: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "park-a")["status"], "succeeded");
    assert_eq!(task(&rep, "park-b")["status"], "succeeded");
    let a = sb.argv("park-a");
    assert_eq!(a.len(), 2);
    let session = a[0]["session_id"].as_str().unwrap().to_string();
    let argv2 = argv_strings(&a[1]);
    let resumed = argv2
        .iter()
        .position(|x| x == "--resume")
        .map(|i| argv2[i + 1].clone())
        .or_else(|| {
            argv2
                .iter()
                .find_map(|x| x.strip_prefix("--resume=").map(String::from))
        });
    assert_eq!(resumed.as_deref(), Some(session.as_str()), "{argv2:?}");
    // The other task was held back until the reset (3 s after the limit was hit).
    let reset = started_ms(&a[0]) + 3000;
    let b = started_ms(&sb.argv("park-b")[0]);
    assert!(
        b >= reset - 500,
        "park-b started {} ms before the reset",
        reset - b
    );
}

#[test]
fn status_names_the_kind_of_limit_the_fleet_is_parked_on() {
    let sb = Sandbox::new();
    sb.config(FAST);
    let tasks = one(
        "kind-a",
        "#fake first 1 rate-limit 3\n#fake result \"resumed\"",
    );
    let mut c = sb.spawn_run(&tasks, &["--json"]);
    let (seen, status) = wait_for_park(&sb);
    let _ = c.kill();
    let _ = c.wait();
    assert!(seen, "status never showed the park: {status}");
    assert!(status.contains("(five_hour limit)"), "{status}");
}

#[test]
fn a_park_longer_than_max_park_stops_the_run() {
    let sb = Sandbox::new();
    sb.config(&format!("{FAST}max_park = \"2s\"\n"));
    let tasks = format!(
        "{}{}",
        one("longpark-a", "#fake rate-limit 60"),
        one("longpark-b", "#fake result \"b\"")
    );
    let t = Instant::now();
    let out = sb.run(&tasks, &["--concurrency", "1"]);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("max_park"), "{err}");
    assert!(sb.argv("longpark-b").is_empty(), "nothing new starts");
}

#[test]
fn the_run_budget_stops_new_starts() {
    let sb = Sandbox::new();
    let tasks: String = (0..5)
        .map(|i| one(&format!("budget-{i}"), "#fake result \"ok\""))
        .collect();
    let out = sb.run(&tasks, &["--concurrency", "1", "--budget-usd", "0.01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let started = (0..5)
        .filter(|i| !sb.argv(&format!("budget-{i}")).is_empty())
        .count();
    // $0.0075 each: after two, $0.015 >= $0.01.
    assert_eq!(started, 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("budget"), "{}", stderr(&out));
}

#[test]
fn a_task_budget_is_passed_to_the_child() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"taskbudget\"\nmax_budget_usd = 0.5\nprompt = \"#fake result \\\"ok\\\"\"\n";
    let out = sb.run(tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let argv = argv_strings(&sb.argv("taskbudget")[0]);
    assert!(argv.iter().any(|a| a == "--max-budget-usd=0.5"), "{argv:?}");
}

fn child_env(sb: &Sandbox, id: &str, extra_env: &[(&str, &str)]) -> String {
    let envfile = sb.path().join(format!("{id}.env"));
    let tasks = one(id, &format!("#fake bash \"env > {}\"", envfile.display()));
    let file = sb.write("tasks.toml", &tasks);
    let mut cmd = sb.fake_run(&file, &[]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::read_to_string(envfile).unwrap()
}

#[test]
fn the_child_gets_retry_and_timeout_defaults_unless_the_user_set_them() {
    let sb = Sandbox::new();
    let env = child_env(&sb, "envdefault", &[]);
    assert!(
        env.lines().any(|l| l == "CLAUDE_CODE_MAX_RETRIES=2"),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "API_TIMEOUT_MS=120000"), "{env}");
    let sb = Sandbox::new();
    let env = child_env(
        &sb,
        "envuser",
        &[("CLAUDE_CODE_MAX_RETRIES", "7"), ("API_TIMEOUT_MS", "999")],
    );
    assert!(
        env.lines().any(|l| l == "CLAUDE_CODE_MAX_RETRIES=7"),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "API_TIMEOUT_MS=999"), "{env}");
}

#[test]
fn a_dry_run_prints_waves_and_starts_nothing() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"dry-a\"\nprompt = \"x\"\n\n\
                 [[task]]\nid = \"dry-b\"\nprompt = \"x\"\n\n\
                 [[task]]\nid = \"dry-c\"\nrole = \"tester\"\ndepends_on = [\"dry-a\", \"dry-b\"]\nprompt = \"x\"\n\n\
                 [[task]]\nid = \"dry-d\"\ndepends_on = [\"dry-c\"]\nprompt = \"x\"\n";
    let out = sb.run(tasks, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 waves"), "{text}");
    let w1 = text.lines().find(|l| l.starts_with("wave 1")).unwrap();
    assert!(w1.contains("dry-a") && w1.contains("dry-b"), "{text}");
    assert!(text
        .lines()
        .any(|l| l.starts_with("wave 3") && l.contains("dry-d")));
    let (out, v) = sb.run_json(tasks, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        v["waves"],
        serde_json::json!([["dry-a", "dry-b"], ["dry-c"], ["dry-d"]])
    );
    assert!(std::fs::read_dir(sb.state()).unwrap().next().is_none());
    assert!(
        !sb.ws().join("borg.db").exists(),
        "a dry run writes no store"
    );
}

#[test]
fn a_dry_run_of_ten_thousand_tasks_completes() {
    let sb = Sandbox::new();
    let mut tasks = String::with_capacity(1 << 20);
    for i in 0..10_000 {
        let deps = if i >= 100 {
            format!("depends_on = [\"big-{}\", \"big-{}\"]\n", i - 100, i / 2)
        } else {
            String::new()
        };
        tasks.push_str(&format!(
            "[[task]]\nid = \"big-{i}\"\n{deps}prompt = \"task {i}\"\n\n"
        ));
    }
    let t = Instant::now();
    let (out, v) = sb.run_json(&tasks, &["--dry-run"]);
    eprintln!("dry run of 10 000 tasks: {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let waves = v["waves"].as_array().unwrap();
    let n: usize = waves.iter().map(|w| w.as_array().unwrap().len()).sum();
    assert_eq!(n, 10_000);
    assert_eq!(waves.len(), 100);
}

#[test]
fn an_open_breaker_does_not_outlive_its_run() {
    let sb = Sandbox::new();
    sb.config(FAST);
    let bad: String = (0..4)
        .map(|i| one(&format!("stuck-{i}"), "#fake api-error 401"))
        .collect();
    let out = sb.run(&bad, &["--concurrency", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(sb.json(&["status", "--json"])["breaker"]["open"], true);
    // The key is fixed: the next run works, and status no longer says the breaker is open.
    let out = sb.run(&one("unstuck", "#fake result \"ok\""), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = sb.json(&["status", "--json"]);
    assert!(v["breaker"].is_null(), "still open: {v:#}");
}

/// A run works on its own list: tasks another list left pending in the same store are
/// not run, and the handoffs it creates are run with it.
#[test]
fn a_run_takes_only_its_own_lists_tasks_and_their_handoffs() {
    let sb = Sandbox::new();
    // List A: the budget stops it after its first task; a-1 and a-2 stay pending.
    let a: String = (0..3)
        .map(|i| one(&format!("a-{i}"), "#fake result \"ok\""))
        .collect();
    let out = sb.run(&a, &["--concurrency", "1", "--budget-usd", "0.001"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(sb.argv("a-1").len() + sb.argv("a-2").len(), 0);
    // List B, on the same store: its tasks, and the handoff one of them declares.
    let b = format!(
        "{}{}[[task]]\nid = \"b-2\"\nhandoff_to = \"tester\"\nprompt = \"#fake result \\\"ok\\\"\"\n",
        one("b-0", "#fake result \"ok\""),
        one("b-1", "#fake result \"ok\""),
    );
    let out = sb.run(&b, &["--concurrency", "4", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        sb.argv("a-1").len() + sb.argv("a-2").len(),
        0,
        "list A's tasks stay untouched"
    );
    for id in ["b-0", "b-1", "b-2"] {
        assert_eq!(sb.argv(id).len(), 1, "{id} ran once");
    }
    let report = json_of(&out);
    let ids: Vec<&str> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|i| !i.starts_with("a-")), "{ids:?}");
    let follow_up: Vec<&&str> = ids
        .iter()
        .filter(|i| !["b-0", "b-1", "b-2"].contains(i))
        .collect();
    assert_eq!(
        follow_up.len(),
        1,
        "the handoff task ran in this run: {ids:?}"
    );
    assert_eq!(task(&report, follow_up[0])["status"], "succeeded");
    let statuses = sb.json(&["task", "list", "--json"]);
    let pending: Vec<&str> = statuses
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "pending")
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(pending, vec!["a-1", "a-2"]);
}

#[test]
fn a_panicking_attempt_frees_its_instance_and_role_slot_for_the_rest_of_the_run() {
    // One developer slot: if the panicked attempt kept it, nothing else would run and
    // the run would never end.
    let sb = Sandbox::new();
    sb.config("");
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("{cfg}\n[roles.developer]\nmax_instances = 1\n"),
    );
    let file = sb.write(
        "tasks.toml",
        &format!(
            "{}{}",
            one("boom-p4n1", "#fake result \"never\""),
            one("after-p4n1", "#fake result \"ran\"")
        ),
    );
    let mut child = sb
        .run_cmd(&file, &["--json", "--concurrency", "1"])
        .env("BORG_FAILPOINT", "attempt-panic:boom-p4n1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        ended,
        "the run hung after a panicked attempt: {}",
        stderr(&out)
    );
    let rep = json_of(&out);
    assert_eq!(task(&rep, "after-p4n1")["status"], "succeeded", "{rep:#}");
    let boom = task(&rep, "boom-p4n1");
    assert_eq!(boom["status"], "failed", "{rep:#}");
    assert!(
        boom["error"].as_str().unwrap_or("").contains("panicked"),
        "{boom}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_usage_limited_session_the_cli_no_longer_has_is_run_again_fresh_not_failed() {
    // With per-instance config folders, a task parked on a usage limit may be taken up
    // by another instance, whose folder does not hold its session; the CLI then
    // answers "No conversation found". The task must go on, in a fresh session.
    let sb = Sandbox::new();
    sb.config(FAST);
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("{cfg}FAKE_CLAUDE_STRICT_SESSIONS = \"1\"\n"),
    );
    let tasks = one(
        "gone-park-s1",
        "#fake first 1 rate-limit 3\n#fake result \"went on\"",
    );
    let c = sb.spawn_run(&tasks, &["--json"]);
    let (seen, status) = wait_for_park(&sb);
    assert!(seen, "status never showed the park: {status}");
    // The session is gone from the CLI's point of view.
    std::fs::remove_dir_all(sb.state().join("sessions")).unwrap();
    let (finished, out) = finish_within(c, Duration::from_secs(30));
    assert!(finished, "the run never ended: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "gone-park-s1")["status"], "succeeded", "{rep:#}");
    let runs = sb.argv("gone-park-s1");
    assert_eq!(runs.len(), 3, "limited, resume refused, fresh");
    let session = runs[0]["session_id"].as_str().unwrap().to_string();
    let resume = |r: &serde_json::Value| {
        argv_strings(r)
            .iter()
            .find_map(|x| x.strip_prefix("--resume=").map(String::from))
    };
    assert_eq!(resume(&runs[1]).as_deref(), Some(session.as_str()));
    assert_eq!(resume(&runs[2]), None);
    let v = sb.json(&["task", "show", "gone-park-s1", "--json"]);
    let rec = &v["attempts"][1]["record"];
    let note = rec["session_fallback"].as_str().unwrap_or("");
    assert!(note.contains(&session) && note.contains("fresh"), "{rec}");
}
