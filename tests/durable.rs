//! Issue 4, the durable claim and handoff table, seen from outside: crashes of borg
//! (SIGKILL at random moments), resuming a list, two borgs on one store, a dead
//! borg's claims taken back at once, declared and agent-requested handoffs, stale
//! claim tokens, and store errors. Every check reads what a user can read: exit codes,
//! `borg task/handoff ... --json`, fake-claude's per-attempt records, `/proc`.

mod common;
use common::*;
use rand::Rng;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `borg run FILE` started in the background (output to files in the sandbox).
fn spawn_run(sb: &Sandbox, file: &Path, tag: &str, extra: &[&str]) -> Child {
    let out = std::fs::File::create(sb.path().join(format!("{tag}.stdout"))).unwrap();
    let err = std::fs::File::create(sb.path().join(format!("{tag}.stderr"))).unwrap();
    sb.run_cmd(file, extra)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn borg")
}

fn kill9(c: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = c.wait();
}

/// Waits for a background borg, with a limit (killed and failed past it).
fn wait_child(c: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > limit {
            kill9(c);
            panic!("borg did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `borg task list --json`.
fn task_list(sb: &Sandbox) -> Vec<Value> {
    sb.json(&["task", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// `borg task show ID --json`: {"task": {...}, "attempts": [...]}.
fn task_show(sb: &Sandbox, id: &str) -> Value {
    sb.json(&["task", "show", id, "--json"])
}

/// Attempt statuses of a task, in order.
fn attempt_statuses(sb: &Sandbox, id: &str) -> Vec<String> {
    task_show(sb, id)["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap().to_string())
        .collect()
}

/// `borg handoff list --json`.
fn handoffs(sb: &Sandbox) -> Vec<Value> {
    sb.json(&["handoff", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// How many children fake-claude saw for a task: its `argv.N.json` files (counted, not
/// parsed: a child killed with its borg may leave one empty).
fn starts(sb: &Sandbox, id: &str) -> usize {
    (1..1000)
        .take_while(|n| sb.state().join(id).join(format!("argv.{n}.json")).exists())
        .count()
}

#[test]
fn crash_loop_every_task_succeeds_exactly_once() {
    let sb = Sandbox::new();
    let ids: Vec<String> = (0..15).map(|i| format!("crash-{i:02}")).collect();
    let mut tasks = String::new();
    for (i, id) in ids.iter().enumerate() {
        let deps = match i {
            3..=5 => format!("depends_on = [\"{}\"]\n", ids[i - 3]),
            9 => format!("depends_on = [\"{}\", \"{}\"]\n", ids[4], ids[8]),
            12..=14 => format!("depends_on = [\"{}\"]\n", ids[i - 1]),
            _ => String::new(),
        };
        let ms = 150 + (i * 37) % 250;
        tasks.push_str(&format!(
            "[[task]]\nid = \"{id}\"\n{deps}prompt = '''\n#fake sleep {ms}\n#fake result \"done {id}\"\n'''\n\n"
        ));
    }
    let file = sb.write("tasks.toml", &tasks);
    let mut rng = rand::thread_rng();
    for n in 0..9 {
        let mut c = spawn_run(&sb, &file, &format!("crash{n}"), &["--concurrency", "3"]);
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        kill9(&mut c);
    }
    let (out, rep) = sb.run_json(&tasks, &["--concurrency", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rep["totals"]["succeeded"], 15, "{rep:#}");
    let listed = task_list(&sb);
    assert_eq!(listed.len(), 15);
    let mut interrupted = 0;
    for id in &ids {
        let row = listed.iter().find(|t| t["id"] == id.as_str()).unwrap();
        assert_eq!(row["status"], "succeeded", "{row:#}");
        let st = attempt_statuses(&sb, id);
        assert_eq!(
            st.iter().filter(|s| *s == "succeeded").count(),
            1,
            "{id}: {st:?}"
        );
        assert!(
            st.iter().all(|s| s == "succeeded" || s == "interrupted"),
            "{id}: an attempt killed with its borg must read interrupted: {st:?}"
        );
        assert_eq!(st.last().map(String::as_str), Some("succeeded"), "{id}");
        interrupted += st.iter().filter(|s| *s == "interrupted").count();
        // Every child that really started was under a claim of its own.
        let claims = row["attempts"].as_i64().unwrap() as usize;
        let n = starts(&sb, id);
        assert!(
            n >= 1 && n <= claims,
            "{id}: {n} starts for {claims} claims"
        );
        assert_eq!(task(&rep, id)["status"], "succeeded");
    }
    eprintln!("crash loop: {interrupted} attempts interrupted by the kills");
    assert!(
        interrupted > 0,
        "no kill ever hit a running attempt: the test proved nothing"
    );
    // Done means done: another run starts nothing.
    let before: Vec<usize> = ids.iter().map(|i| starts(&sb, i)).collect();
    let (out, _) = sb.run_json(&tasks, &["--concurrency", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after: Vec<usize> = ids.iter().map(|i| starts(&sb, i)).collect();
    assert_eq!(before, after);
    for id in &ids {
        assert!(
            wait_until(Duration::from_secs(5), || task_procs(id).is_empty()),
            "a process of {id} is still alive"
        );
    }
}

#[test]
fn a_second_run_resumes_adds_new_tasks_reports_changed_ones_and_honours_retry() {
    let sb = Sandbox::new();
    let a = one("res-a", "first version\n#fake result \"a\"");
    let b = one("res-b", "#fake result \"b\"");
    let (out, _) = sb.run_json(&format!("{a}{b}"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((starts(&sb, "res-a"), starts(&sb, "res-b")), (1, 1));

    // The same list again: nothing runs, the report still says succeeded.
    let (out, rep) = sb.run_json(&format!("{a}{b}"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((starts(&sb, "res-a"), starts(&sb, "res-b")), (1, 1));
    assert_eq!(task(&rep, "res-a")["status"], "succeeded");

    // A new task: only it runs.
    let c = one("res-c", "#fake result \"c\"");
    let (out, rep) = sb.run_json(&format!("{a}{b}{c}"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (
            starts(&sb, "res-a"),
            starts(&sb, "res-b"),
            starts(&sb, "res-c")
        ),
        (1, 1, 1)
    );
    assert_eq!(rep["totals"]["tasks"], 3);

    // A succeeded task whose prompt changed: reported, not re-run.
    let a2 = one("res-a", "second version\n#fake result \"a2\"");
    let (out, _) = sb.run_json(&format!("{a2}{b}{c}"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("res-a") && err.contains("changed"),
        "the changed task is named: {err}"
    );
    assert_eq!(starts(&sb, "res-a"), 1);

    // `borg task retry` re-queues it: the next run runs it (with the new prompt).
    sb.succeed(&["task", "retry", "res-a"]);
    let (out, rep) = sb.run_json(&format!("{a2}{b}{c}"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(starts(&sb, "res-a"), 2);
    assert_eq!((starts(&sb, "res-b"), starts(&sb, "res-c")), (1, 1));
    assert!(sb.prompt("res-a", 2).contains("second version"));
    assert_eq!(task(&rep, "res-a")["status"], "succeeded");
}

#[test]
fn two_concurrent_runs_of_one_list_start_each_task_once() {
    let sb = Sandbox::new();
    let mut tasks = String::new();
    for i in 0..8 {
        let dep = if i >= 4 {
            format!("depends_on = [\"twin-{}\"]\n", i - 4)
        } else {
            String::new()
        };
        tasks.push_str(&format!(
            "[[task]]\nid = \"twin-{i}\"\n{dep}prompt = '''\n#fake sleep 300\n#fake result \"ok\"\n'''\n\n"
        ));
    }
    let file = sb.write("tasks.toml", &tasks);
    let mut one = spawn_run(&sb, &file, "one", &["--concurrency", "2"]);
    let mut two = spawn_run(&sb, &file, "two", &["--concurrency", "2"]);
    let s1 = wait_child(&mut one, Duration::from_secs(60));
    let s2 = wait_child(&mut two, Duration::from_secs(60));
    let err = |t: &str| std::fs::read_to_string(sb.path().join(format!("{t}.stderr"))).unwrap();
    assert_eq!(s1.code(), Some(0), "{}", err("one"));
    assert_eq!(s2.code(), Some(0), "{}", err("two"));
    for i in 0..8 {
        let id = format!("twin-{i}");
        assert_eq!(starts(&sb, &id), 1, "{id} started more than once");
        assert_eq!(attempt_statuses(&sb, &id), vec!["succeeded"]);
    }
}

#[test]
fn a_dead_borgs_claims_are_taken_back_at_once() {
    let sb = Sandbox::new();
    let tasks = one(
        "orphan-task",
        "#fake first 1 sleep 30000\n#fake result \"second time lucky\"",
    );
    let file = sb.write("tasks.toml", &tasks);
    let mut c = spawn_run(&sb, &file, "first", &[]);
    assert!(
        wait_until(Duration::from_secs(15), || starts(&sb, "orphan-task") == 1),
        "the first attempt never started"
    );
    std::thread::sleep(Duration::from_millis(300));
    kill9(&mut c);
    let t = Instant::now();
    let (out, rep) = sb.run_json(&tasks, &[]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The lease is 60 s: taking the claim back must not wait for it.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(starts(&sb, "orphan-task"), 2);
    assert_eq!(
        attempt_statuses(&sb, "orphan-task"),
        vec!["interrupted", "succeeded"]
    );
    assert_eq!(task(&rep, "orphan-task")["status"], "succeeded");
    let gone = wait_until(Duration::from_secs(5), || {
        task_procs("orphan-task").is_empty()
    });
    assert!(gone, "the dead borg's child is still alive");
}

#[test]
fn a_declared_handoff_becomes_a_tester_task_carrying_the_context() {
    let sb = Sandbox::new();
    let tasks = r#"
[[task]]
id = "decl-dev"
handoff_to = "tester"
prompt = '''
Implement it.
#fake write calc.py "def add(a, b):\n    return a + b\n"
#fake result "implemented add in calc.py MARKER-RESULT"
'''
"#;
    let (out, rep) = sb.run_json(tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, "decl-dev.tester-1");
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["role"], "tester");
    assert_eq!(task(&rep, "decl-dev")["handoff_to"], "tester");
    let p = sb.prompt("decl-dev.tester-1", 1);
    assert!(p.contains("decl-dev"), "source task: {p}");
    assert!(p.contains("handoff_to"), "reason: {p}");
    assert!(p.contains("calc.py"), "files changed: {p}");
    assert!(p.contains("MARKER-RESULT"), "result text: {p}");
    // The tester works on the developer's files.
    let cwd = sb.argv("decl-dev.tester-1")[0]["cwd"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&cwd).join("calc.py").is_file());
}

const REQUEST: &str = r#"#fake bash "\"$BORG_BIN\" handoff request --to reviewer --reason 'needs review' --next-step 'check calc.py' --state 'implemented'""#;

#[test]
fn an_agent_requested_handoff_becomes_a_reviewer_task_after_success() {
    let sb = Sandbox::new();
    let tasks = one(
        "req-dev",
        &format!("#fake write calc.py \"x = 1\\n\"\n{REQUEST}\n#fake result \"done\""),
    );
    let (out, rep) = sb.run_json(&tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = task(&rep, "req-dev.reviewer-1");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["role"], "reviewer");
    let p = sb.prompt("req-dev.reviewer-1", 1);
    for needle in ["req-dev", "needs review", "check calc.py", "implemented"] {
        assert!(p.contains(needle), "{needle:?} missing from: {p}");
    }
    let hs = handoffs(&sb);
    assert_eq!(hs.len(), 1, "{hs:#?}");
    assert_eq!(hs[0]["task"], "req-dev");
    assert_eq!(hs[0]["state"], "accepted");
    assert_eq!(hs[0]["new_task"], "req-dev.reviewer-1");
    assert_eq!(hs[0]["request"]["to_role"], "reviewer");
}

#[test]
fn a_handoff_requested_by_a_task_that_then_fails_does_not_run() {
    let sb = Sandbox::new();
    let tasks = one("fail-dev", &format!("{REQUEST}\n#fake max-turns"));
    let (out, rep) = sb.run_json(&tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(task(&rep, "fail-dev")["status"], "failed");
    assert!(rep["tasks"].as_array().unwrap().len() == 1, "{rep:#}");
    assert!(!task_list(&sb)
        .iter()
        .any(|t| t["id"].as_str().unwrap().contains("reviewer")));
    let hs = handoffs(&sb);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0]["state"], "dropped");
    assert!(hs[0]["new_task"].is_null());
}

#[test]
fn a_rejected_pending_handoff_does_not_run() {
    let sb = Sandbox::new();
    let tasks = one(
        "rej-dev",
        &format!("{REQUEST}\n#fake sleep 3000\n#fake result \"done\""),
    );
    let file = sb.write("tasks.toml", &tasks);
    let mut c = spawn_run(&sb, &file, "run", &["--json"]);
    assert!(
        wait_until(Duration::from_secs(15), || !handoffs(&sb).is_empty()),
        "the handoff was never recorded"
    );
    let h = &handoffs(&sb)[0];
    assert_eq!(h["state"], "pending");
    let id = h["id"].to_string();
    sb.succeed(&["handoff", "reject", &id, "--reason", "not now"]);
    let st = wait_child(&mut c, Duration::from_secs(30));
    assert_eq!(st.code(), Some(0));
    assert_eq!(handoffs(&sb)[0]["state"], "rejected");
    assert!(!task_list(&sb)
        .iter()
        .any(|t| t["id"].as_str().unwrap().contains("reviewer")));
    assert_eq!(starts(&sb, "rej-dev.reviewer-1"), 0);
}

#[test]
fn a_rejected_handoff_whose_task_was_created_does_not_run() {
    let sb = Sandbox::new();
    // With one slot, `blocker` (higher priority, ready when rc-dev succeeds) runs before
    // the reviewer task the handoff created: time to reject it.
    let tasks = format!(
        "{}[[task]]\nid = \"rc-blocker\"\npriority = 5\ndepends_on = [\"rc-dev\"]\nprompt = '''\n#fake sleep 3000\n'''\n",
        one("rc-dev", &format!("{REQUEST}\n#fake result \"done\""))
    );
    let file = sb.write("tasks.toml", &tasks);
    let mut c = spawn_run(&sb, &file, "run", &["--json", "--concurrency", "1"]);
    assert!(
        wait_until(Duration::from_secs(15), || handoffs(&sb)
            .first()
            .is_some_and(|h| h["new_task"] == "rc-dev.reviewer-1")),
        "the handoff never became a task: {:?}",
        handoffs(&sb)
    );
    let id = handoffs(&sb)[0]["id"].to_string();
    sb.succeed(&["handoff", "reject", &id, "--reason", "no review"]);
    wait_child(&mut c, Duration::from_secs(30));
    assert_eq!(starts(&sb, "rc-dev.reviewer-1"), 0, "the rejected task ran");
    assert_eq!(starts(&sb, "rc-blocker"), 1);
    let t = task_show(&sb, "rc-dev.reviewer-1");
    assert_eq!(t["task"]["status"], "skipped");
}

#[test]
fn a_stale_claim_token_is_refused_and_records_nothing() {
    let sb = Sandbox::new();
    let out_file = sb.path().join("request.out");
    let tasks = one(
        "stale-dev",
        &format!(
            "#fake bash \"BORG_CLAIM_TOKEN=999 \\\"$BORG_BIN\\\" handoff request --to reviewer --reason stale > {f} 2>&1; echo rc=$? >> {f}\"\n#fake result \"done\"",
            f = out_file.display()
        ),
    );
    let (out, rep) = sb.run_json(&tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = std::fs::read_to_string(&out_file).unwrap();
    eprintln!("{said}");
    assert!(!said.contains("rc=0"), "the request was accepted: {said}");
    assert!(said.contains("stale"), "a clear message: {said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(handoffs(&sb).is_empty());
    assert_eq!(rep["tasks"].as_array().unwrap().len(), 1);
}

#[test]
fn a_corrupt_store_is_a_clear_error_exit_2() {
    let sb = Sandbox::new();
    sb.write(
        "workspaces/borg.db",
        "this is not a database, just some text\n"
            .repeat(200)
            .as_str(),
    );
    let o = sb.borg(&["task", "list"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("borg.db") && e.contains("corrupt"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    let out = sb.run(&one("corrupt-a", "#fake result \"x\""), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("borg.db"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    assert_eq!(starts(&sb, "corrupt-a"), 0);
}

#[test]
fn store_flag_and_variable_put_the_database_elsewhere() {
    let sb = Sandbox::new();
    let by_flag = sb.path().join("elsewhere/flag.db");
    std::fs::create_dir_all(by_flag.parent().unwrap()).unwrap();
    let out = sb.run(
        &one("storeflag-a", "#fake result \"x\""),
        &["--store", by_flag.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(by_flag.is_file());
    assert!(
        !sb.ws().join("borg.db").exists(),
        "the default store was used"
    );
    let o = sb
        .borg(&[
            "task",
            "list",
            "--json",
            "--store",
            by_flag.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(json_of(&o)[0]["id"], "storeflag-a");

    let by_env: PathBuf = sb.path().join("elsewhere/env.db");
    let file = sb.write("tasks2.toml", &one("storeenv-a", "#fake result \"y\""));
    let out = sb
        .fake_run(&file, &[])
        .env("BORG_STORE", &by_env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(by_env.is_file());
    assert!(!sb.ws().join("borg.db").exists());
    let o = sb
        .borg(&["task", "list", "--json"])
        .env("BORG_STORE", &by_env)
        .output()
        .unwrap();
    let rows = json_of(&o);
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["id"], "storeenv-a");
}

#[test]
fn status_and_task_list_work_while_a_run_is_active() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}",
        one("live-a", "#fake sleep 4000\n#fake result \"a\""),
        one("live-b", "#fake result \"b\"")
    );
    let file = sb.write("tasks.toml", &tasks);
    let mut c = spawn_run(&sb, &file, "run", &[]);
    assert!(wait_until(Duration::from_secs(15), || starts(
        &sb, "live-a"
    ) == 1));
    let v = sb.json(&["status", "--json"]);
    assert!(
        v["queue"]["running"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "live-a"),
        "{v:#}"
    );
    let o = sb.succeed(&["status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("live-a"));
    let rows = task_list(&sb);
    let a = rows.iter().find(|t| t["id"] == "live-a").unwrap();
    assert_eq!(a["status"], "running");
    let st = wait_child(&mut c, Duration::from_secs(30));
    assert_eq!(st.code(), Some(0));
}

#[test]
fn a_running_borg_takes_over_the_claims_of_a_peer_that_dies() {
    let sb = Sandbox::new();
    let tasks = one(
        "peer-task",
        "#fake first 1 sleep 30000\n#fake result \"taken over\"",
    );
    let file = sb.write("tasks.toml", &tasks);
    let mut a = spawn_run(&sb, &file, "a", &[]);
    assert!(
        wait_until(Duration::from_secs(15), || starts(&sb, "peer-task") == 1),
        "the first attempt never started"
    );
    // b finds the task claimed by a live borg and waits.
    let mut b = spawn_run(&sb, &file, "b", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(starts(&sb, "peer-task"), 1, "b ran a task a still held");
    kill9(&mut a);
    let t = Instant::now();
    let st = wait_child(&mut b, Duration::from_secs(40));
    let took = t.elapsed();
    let err = std::fs::read_to_string(sb.path().join("b.stderr")).unwrap();
    assert_eq!(st.code(), Some(0), "{err}");
    // Well before the 60 s lease runs out.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(starts(&sb, "peer-task"), 2);
    assert_eq!(
        attempt_statuses(&sb, "peer-task"),
        vec!["interrupted", "succeeded"]
    );
}

#[test]
fn a_task_stopped_by_ctrl_c_resumes_on_the_next_run_without_using_a_retry() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}",
        one(
            "ctrlc-a",
            "#fake first 1 sleep 30000\n#fake result \"second run\""
        ),
        one("ctrlc-b", "#fake result \"b\"")
    )
    .replace(
        "[[task]]\nid = \"ctrlc-a\"",
        "[[task]]\nid = \"ctrlc-a\"\nretries = 0",
    );
    let file = sb.write("tasks.toml", &tasks);
    let mut c = spawn_run(&sb, &file, "first", &["--concurrency", "1"]);
    assert!(wait_until(Duration::from_secs(15), || starts(
        &sb, "ctrlc-a"
    ) == 1));
    signal(&c, nix::sys::signal::Signal::SIGINT);
    let st = wait_child(&mut c, Duration::from_secs(20));
    assert_eq!(st.code(), Some(130));
    assert_eq!(starts(&sb, "ctrlc-b"), 0, "nothing new starts after Ctrl-C");
    let (out, rep) = sb.run_json(&tasks, &["--concurrency", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "ctrlc-a")["status"], "succeeded");
    assert_eq!(task(&rep, "ctrlc-b")["status"], "succeeded");
    assert_eq!(
        attempt_statuses(&sb, "ctrlc-a"),
        vec!["interrupted", "succeeded"]
    );
    assert_eq!(starts(&sb, "ctrlc-b"), 1);
}

#[test]
fn a_handoff_of_an_attempt_that_is_retried_is_dropped_not_left_pending() {
    let sb = Sandbox::new();
    sb.config("backoff_base = \"100ms\"\nbackoff_cap = \"500ms\"\n");
    let tasks = format!(
        "[[task]]\nid = \"retry-dev\"\nretries = 1\nprompt = '''\n{}\n#fake first 1 api-error 500 0\n#fake result \"done\"\n'''\n",
        REQUEST.replacen("#fake bash", "#fake first 1 bash", 1)
    );
    let (out, rep) = sb.run_json(&tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "retry-dev")["attempts"], 2);
    let hs = handoffs(&sb);
    assert_eq!(hs.len(), 1, "{hs:#?}");
    // Asked for by attempt 1, which failed: it never runs, and it does not wait forever.
    assert_eq!(hs[0]["state"], "dropped", "{hs:#?}");
    assert_eq!(starts(&sb, "retry-dev.reviewer-1"), 0);
}

#[test]
fn borgs_started_together_on_a_fresh_store_all_open_it() {
    for round in 0..5 {
        let sb = Sandbox::new();
        let file = sb.write(
            "tasks.toml",
            &one(&format!("fresh-{round}"), "#fake instant"),
        );
        let mut kids: Vec<Child> = (0..3)
            .map(|n| spawn_run(&sb, &file, &format!("b{n}"), &[]))
            .collect();
        for (n, c) in kids.iter_mut().enumerate() {
            let st = wait_child(c, Duration::from_secs(30));
            let err = std::fs::read_to_string(sb.path().join(format!("b{n}.stderr"))).unwrap();
            assert_eq!(st.code(), Some(0), "round {round}, borg {n}: {err}");
        }
    }
}

#[test]
fn a_handoff_asked_for_before_a_usage_limit_runs_after_the_resumed_session() {
    let sb = Sandbox::new();
    let tasks = format!(
        "[[task]]\nid = \"limit-dev\"\nprompt = '''\n{}\n#fake first 1 rate-limit 1\n#fake result \"done\"\n'''\n",
        REQUEST.replacen("#fake bash", "#fake first 1 bash", 1)
    );
    let (out, rep) = sb.run_json(&tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(starts(&sb, "limit-dev"), 2);
    // The resumed session already asked: the request is kept and converted.
    assert_eq!(task(&rep, "limit-dev.reviewer-1")["status"], "succeeded");
    let hs = handoffs(&sb);
    assert_eq!(hs.len(), 1, "{hs:#?}");
    assert_eq!(hs[0]["state"], "accepted");
}

#[test]
fn two_borgs_never_share_an_instance_at_the_same_time() {
    let sb = Sandbox::new();
    // Instances exist before either borg starts, so both see the same idle ones.
    for n in ["dev-a", "dev-b"] {
        sb.create_instance("developer", n);
    }
    let mut tasks = String::new();
    for i in 0..8 {
        tasks.push_str(&format!(
            "[[task]]\nid = \"s{i}\"\nprompt = \"#fake sleep 300\"\n\n"
        ));
    }
    let file = sb.write("tasks.toml", &tasks);
    let args = ["--concurrency", "2", "--progress", "none"];
    let a = sb.fake_run(&file, &args).spawn().unwrap();
    let b = sb.fake_run(&file, &args).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{} {}",
        stderr(&a),
        stderr(&b)
    );
    // Each attempt's cwd and start time; runs in one cwd must not overlap.
    let mut spans: Vec<(String, i64)> = Vec::new();
    for i in 0..8 {
        let argv = sb.argv(&format!("s{i}"));
        assert_eq!(argv.len(), 1, "task s{i} ran {} times", argv.len());
        let t = started_ms(&argv[0]);
        spans.push((argv[0]["cwd"].as_str().unwrap().to_string(), t));
    }
    for (i, (cwd, t)) in spans.iter().enumerate() {
        for (cwd2, t2) in &spans[i + 1..] {
            assert!(
                cwd != cwd2 || (t - t2).abs() >= 250,
                "two attempts in {cwd} at once: {spans:?}"
            );
        }
    }
}

#[test]
fn the_cli_migrates_an_old_store_and_refuses_a_newer_one() {
    let sb = Sandbox::new();
    let old = sb.path().join("old.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.db"),
        &old,
    )
    .unwrap();
    let rows = sb.json(&["--store", old.to_str().unwrap(), "task", "list", "--json"]);
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["v1-a", "v1-b"]);
    let newer = sb.path().join("newer.db");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.execute_batch("CREATE TABLE x (y); PRAGMA user_version = 999;")
        .unwrap();
    drop(conn);
    let out = sb
        .borg(&["--store", newer.to_str().unwrap(), "task", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("newer"), "{}", stderr(&out));
}

#[test]
fn a_person_can_accept_a_handoff_while_its_task_still_runs() {
    let sb = Sandbox::new();
    let file = sb.write(
        "tasks.toml",
        &one(
            "acc-dev",
            &format!("{REQUEST}\n#fake sleep 2500\n#fake result \"done\""),
        ),
    );
    let mut run = spawn_run(&sb, &file, "run", &["--json"]);
    assert!(wait_until(Duration::from_secs(20), || !handoffs(&sb).is_empty()));
    let id = handoffs(&sb)[0]["id"].as_i64().unwrap().to_string();
    sb.succeed(&["handoff", "accept", &id]);
    assert_eq!(
        wait_child(&mut run, Duration::from_secs(30)).code(),
        Some(0)
    );
    let hs = handoffs(&sb);
    assert_eq!(hs[0]["state"], "accepted");
    assert_eq!(hs[0]["new_task"], "acc-dev.reviewer-1");
    assert_eq!(starts(&sb, "acc-dev.reviewer-1"), 1);
}
