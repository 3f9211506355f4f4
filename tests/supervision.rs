//! Supervision: whole-tree kills, the stop ladder, watchdogs, bounded output, borg's
//! own death and signals. Every check looks at `/proc`, not at sleeps alone.

mod common;
use common::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

#[test]
fn timeout_kills_a_grandchild_that_escaped_into_its_own_session_and_ignores_sigterm() {
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json(
        &one("esc", "#fake grandchild-setsid\n#fake hang"),
        &["--timeout", "1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(task(&rep, "esc")["status"], "timed_out");
    assert!(
        task_procs("esc").is_empty(),
        "a process of the attempt survived"
    );
}

#[test]
fn a_child_ignoring_sigint_and_sigterm_is_killed_at_the_end_of_the_ladder() {
    let sb = Sandbox::new();
    let t = Instant::now();
    let (out, rep) = sb.run_json(
        &one("deaf", "#fake ignore-signals\n#fake hang"),
        &["--timeout", "1s"],
    );
    // timeout 1 s + interrupt_grace 1 s + term_grace 1 s (sandbox config), plus slack.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let r = task(&rep, "deaf");
    assert_eq!(r["status"], "timed_out");
    assert!(task_procs("deaf").is_empty());
}

#[test]
fn a_grandchild_holding_stdout_does_not_hang_the_attempt_and_is_reported_as_leaked() {
    let sb = Sandbox::new();
    let t = Instant::now();
    let (out, rep) = sb.run_json(
        &one(
            "holder",
            "#fake grandchild-holds-stdout\n#fake result \"done\"",
        ),
        &[],
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = task(&rep, "holder");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["leaked"], true);
    assert!(task_procs("holder").is_empty());
}

#[test]
fn hang_after_result_keeps_the_outcome_once_result_grace_stops_it() {
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json(
        &one(
            "lingers",
            "#fake result \"all good\"\n#fake hang-after-result",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = task(&rep, "lingers");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["watchdog"], "result_grace");
    assert!(task_procs("lingers").is_empty());
}

#[test]
fn silence_fires_the_idle_watchdog() {
    let sb = Sandbox::new();
    sb.config("idle_timeout = \"1s\"");
    let (out, rep) = sb.run_json(
        &one(
            "quiet",
            "#fake text \"thinking\"\n#fake turn\n#fake silence 30000\n#fake result \"late\"",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let r = task(&rep, "quiet");
    assert_eq!(r["status"], "timed_out");
    assert_eq!(r["watchdog"], "idle_timeout");
}

#[test]
fn oversized_lines_invalid_utf8_and_a_crash_mid_line_never_break_the_stream() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}{}",
        one(
            "huge",
            "#fake huge-line 64MiB\n#fake result \"after the huge line\""
        ),
        one("utf8", "#fake bad-utf8\n#fake result \"after bad bytes\""),
        one(
            "crash",
            "#fake text \"partial\"\n#fake turn\n#fake crash-mid-line"
        ),
    );
    let (out, rep) = sb.run_json(&tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(task(&rep, "huge")["status"], "succeeded");
    assert_eq!(task(&rep, "huge")["result"], "after the huge line");
    assert_eq!(task(&rep, "utf8")["status"], "succeeded");
    assert_eq!(task(&rep, "crash")["status"], "failed");
    // The raw log keeps every byte, the huge line included.
    let inst = task(&rep, "huge")["instance"].as_str().unwrap().to_string();
    let log = sb.ws().join(&inst).join("logs").join("huge.1.stdout.jsonl");
    assert!(std::fs::metadata(&log).unwrap().len() > 64 * 1024 * 1024);
}

#[test]
fn a_flood_of_output_is_drained_with_bounded_memory() {
    let sb = Sandbox::new();
    let file = sb.write(
        "tasks.toml",
        &one(
            "flood",
            "#fake flood 1GiB\n#fake flood 64MiB stderr\n#fake result \"flooded\"",
        ),
    );
    let mut child = sb
        .fake_run(&file, &["--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in s.lines().filter(|l| l.starts_with("VmRSS:")) {
                peak_kib = peak_kib.max(
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "flood")["status"], "succeeded");
    eprintln!("borg peak RSS under a 1 GiB flood: {} MiB", peak_kib / 1024);
    assert!(
        peak_kib < 200 * 1024,
        "borg's RSS reached {} MiB",
        peak_kib / 1024
    );
}

#[test]
fn sigkill_of_borg_leaves_no_process_of_any_attempt() {
    let sb = Sandbox::new();
    let mut tasks = String::new();
    for i in 0..3 {
        tasks.push_str(&one(
            &format!("k{i}"),
            "#fake grandchild-setsid\n#fake bash \"sleep 300\"",
        ));
    }
    let file = sb.write("tasks.toml", &tasks);
    let mut child = sb.fake_run(&file, &[]).spawn().unwrap();
    let started = wait_until(Duration::from_secs(20), || {
        (0..3).all(|i| task_procs(&format!("k{i}")).len() >= 3)
    });
    assert!(started, "the attempts did not start");
    signal(&child, Signal::SIGKILL);
    let _ = child.wait();
    let gone = wait_until(Duration::from_secs(2), || {
        (0..3).all(|i| task_procs(&format!("k{i}")).is_empty())
    });
    let left: Vec<i32> = (0..3).flat_map(|i| task_procs(&format!("k{i}"))).collect();
    for p in &left {
        borg::supervise::procs::signal(*p, Signal::SIGKILL);
    }
    assert!(gone, "processes survived borg's SIGKILL: {left:?}");
}

#[test]
fn ctrl_c_stops_every_child_records_interrupted_and_exits_130() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}",
        one("i1", "#fake bash \"sleep 300\""),
        one("i2", "#fake grandchild-setsid\n#fake hang")
    );
    let file = sb.write("tasks.toml", &tasks);
    let child = sb
        .fake_run(&file, &["--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_until(Duration::from_secs(20), || {
        !task_procs("i1").is_empty() && !task_procs("i2").is_empty()
    });
    assert!(started);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    signal(&child, Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "i1")["status"], "interrupted");
    assert_eq!(task(&rep, "i2")["status"], "interrupted");
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(task_procs("i1").is_empty() && task_procs("i2").is_empty());
}

#[test]
fn a_dangling_claude_path_is_refused_before_anything_starts() {
    let sb = Sandbox::new();
    let file = sb.write("tasks.toml", &one("gone", "#fake result \"x\""));
    let link = sb.path().join("claude-link");
    std::os::unix::fs::symlink(sb.path().join("does-not-exist"), &link).unwrap();
    let out = sb.run_with(&file, &link, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("claude-link"));
    assert!(
        !sb.ws().exists()
            || std::fs::read_dir(sb.ws())
                .unwrap()
                .all(|e| e.unwrap().file_name() == "borg.db")
    );
}

#[test]
fn a_child_that_obeys_sigint_stops_at_the_first_rung_of_the_ladder() {
    // Default graces (5 s + 5 s): only a child that really receives SIGINT ends fast.
    let sb = Sandbox::new();
    sb.write(
        "config.toml",
        &format!(
            "[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\n",
            sb.state().display()
        ),
    );
    let t = Instant::now();
    let (out, rep) = sb.run_json(&one("obedient", "#fake hang"), &["--timeout", "1s"]);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the ladder went past SIGINT: {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(task(&rep, "obedient")["status"], "timed_out");
    // fake-claude, like the real CLI waiting on the API, exits 0 on SIGINT.
    assert_eq!(task(&rep, "obedient")["exit_code"], 0);
    let v = sb.json(&["task", "show", "obedient", "--json"]);
    let latency = v["attempts"][0]["record"]["stop_latency_ms"]
        .as_u64()
        .unwrap();
    assert!(latency < 1000, "stop latency {latency} ms");
}

#[test]
fn the_claude_version_is_recorded_and_an_old_one_warned_about() {
    let sb = Sandbox::new();
    let file = sb.write("tasks.toml", &one("v", "#fake result \"ok\""));
    let out = sb
        .fake_run(&file, &["--json"])
        .env("FAKE_CLAUDE_VERSION", "1.9.4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(rep["claude_version"], "1.9.4 (Claude Code)");
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("1.9.4"),
        "{}",
        stderr(&out)
    );
    let (_, rep) = Sandbox::new().run_json(&one("w", "#fake result \"ok\""), &[]);
    assert_eq!(rep["claude_version"], "2.1.197 (Claude Code)");
}

#[test]
fn a_missing_working_directory_is_spawn_failed_with_the_reason() {
    let sb = Sandbox::new();
    sb.create_instance("developer", "dev-1");
    std::fs::remove_dir_all(sb.ws().join("dev-1/project-files")).unwrap();
    let (out, rep) = sb.run_json(
        "[[task]]\nid = \"nowhere\"\ninstance = \"dev-1\"\nprompt = \"x\"\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = task(&rep, "nowhere");
    assert_eq!(t["status"], "spawn_failed");
    assert!(
        t["error"].as_str().unwrap().contains("project-files"),
        "{t}"
    );
}

#[test]
fn sigterm_starts_the_ladder_and_a_second_signal_kills_every_tree_at_once() {
    let sb = Sandbox::new();
    // Long graces: only the second signal can make this end quickly.
    sb.write(
        "config.toml",
        &format!(
            "[run]\ninterrupt_grace = \"30s\"\nterm_grace = \"30s\"\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\n",
            sb.state().display()
        ),
    );
    let file = sb.write(
        "tasks.toml",
        &one(
            "stubborn",
            "#fake ignore-signals\n#fake grandchild-setsid\n#fake hang",
        ),
    );
    let child = sb
        .run_cmd(&file, &["--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_until(Duration::from_secs(20), || {
        task_procs("stubborn").len() >= 2
    });
    assert!(started);
    signal(&child, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    signal(&child, Signal::SIGHUP);
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "the second signal did not kill at once: {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "stubborn")["status"], "interrupted");
    assert!(task_procs("stubborn").is_empty());
}

#[test]
fn a_claude_binary_that_is_not_executable_exits_2_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let file = sb.write("tasks.toml", &one("x", "#fake result \"x\""));
    let copy = sb.path().join("claude-noexec");
    std::fs::copy(fake_bin(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.run_with(&file, &copy, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("claude-noexec") && stderr(&out).contains("not executable"),
        "{}",
        stderr(&out)
    );
}
