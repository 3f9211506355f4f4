//! Memory the fleet can afford: each attempt's peak memory (the whole tree), the
//! admission of new children on the machine's available memory, and the memory
//! watchdog, with fake-claude children that allocate.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn an_attempts_peak_memory_is_in_its_record_and_the_report() {
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json(
        &one(
            "alloc-m1",
            "#fake alloc 96MiB\n#fake sleep 1500\n#fake result \"held 96 MiB\"",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, "alloc-m1");
    let peak = t["peak_rss_mb"]
        .as_u64()
        .expect("peak_rss_mb in the report");
    assert!((96..400).contains(&peak), "peak {peak} MiB");
    let v = sb.json(&["task", "show", "alloc-m1", "--json"]);
    assert_eq!(v["attempts"][0]["record"]["peak_rss_mb"], peak);
}

#[test]
fn a_tree_over_max_attempt_memory_is_stopped_by_the_memory_watchdog() {
    let sb = Sandbox::new();
    sb.config("max_attempt_memory = \"64MiB\"");
    let t0 = Instant::now();
    let (out, rep) = sb.run_json(
        &one(
            "hog-m2",
            "#fake text \"growing\"\n#fake turn\n#fake alloc 160MiB\n#fake hang",
        ),
        &[],
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = task(&rep, "hog-m2");
    assert_eq!(t["status"], "killed", "{t}");
    assert_eq!(t["watchdog"], "memory", "{t}");
    assert!(
        t["error"]
            .as_str()
            .unwrap_or("")
            .contains("max_attempt_memory"),
        "{t}"
    );
    assert!(t["peak_rss_mb"].as_u64().unwrap_or(0) >= 64, "{t}");
    assert!(task_procs("hog-m2").is_empty());
    // Under the limit, the same child is left alone.
    let sb = Sandbox::new();
    sb.config("max_attempt_memory = \"1GiB\"");
    let (out, rep) = sb.run_json(
        &one(
            "calm-m2",
            "#fake alloc 32MiB\n#fake sleep 1500\n#fake result \"fine\"",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "calm-m2")["watchdog"], serde_json::Value::Null);
}

#[test]
fn no_child_starts_while_available_memory_is_below_the_minimum_and_status_says_why() {
    let sb = Sandbox::new();
    // More than any machine has: the task must wait.
    sb.config("min_available_memory = \"1000TiB\"");
    let run = sb.spawn_run(&one("starved-m3", "#fake result \"never\""), &[]);
    let said = wait_until(Duration::from_secs(15), || {
        let out = sb.borg(&["status"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("MEMORY")
    });
    let status = sb.borg(&["status"]).output().unwrap();
    let v = sb.json(&["status", "--json"]);
    signal(&run, nix::sys::signal::Signal::SIGINT);
    let out = run.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(said, "borg status never said why nothing starts: {text}");
    assert!(text.contains("min_available_memory"), "{text}");
    assert_eq!(v["memory"]["waiting"], true, "{v}");
    assert_eq!(v["queue"]["ready"][0], "starved-m3", "{v}");
    assert!(sb.argv("starved-m3").is_empty(), "a child started");
    assert!(
        stderr(&out).contains("min_available_memory"),
        "{}",
        stderr(&out)
    );
    // With the default (1 GiB) on this machine, it runs.
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json(&one("fed-m3", "#fake result \"ok\""), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "fed-m3")["status"], "succeeded");
}
