//! Seeing what the fleet does: `borg logs --follow` live, `borg status --json` during
//! a run, JUnit XML, `borg transcript`, and diagnostics kept off `--json` stdout.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn logs_follow_streams_lines_while_the_task_runs_and_ends_with_it() {
    let sb = Sandbox::new();
    let file = sb.write(
        "tasks.toml",
        "[[task]]\nid = \"live\"\nprompt = \"#fake slow 5 600\"\n",
    );
    // Start following before the task exists: it waits for it.
    let mut follow = sb
        .borg(&["logs", "live", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut run = sb
        .fake_run(&file, &["--progress", "none"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        assert!(
            !line.trim_start().starts_with("{\""),
            "raw JSON printed: {line}"
        );
        if line.contains("slow line") {
            arrivals.push((started.elapsed(), line));
        }
    }
    let status = follow.wait().unwrap();
    let run_status = run.wait().unwrap();
    assert!(status.success() && run_status.success());
    assert_eq!(arrivals.len(), 5, "{arrivals:?}");
    // Lines arrive as they are written (600 ms apart), not all at the end.
    let spread = arrivals[4].0 - arrivals[0].0;
    assert!(
        spread > Duration::from_millis(1500),
        "lines arrived in a burst: {arrivals:?}"
    );
    for w in arrivals.windows(2) {
        assert!(
            w[1].0 - w[0].0 < Duration::from_millis(1600),
            "a line took too long to show: {arrivals:?}"
        );
    }
}

#[test]
fn status_json_shows_the_running_task_and_its_tool_from_another_process() {
    let sb = Sandbox::new();
    let file = sb.write("tasks.toml", "[[task]]\nid = \"busy\"\nprompt = '''\n#fake bash \"sleep 3\"\n'''\n[[task]]\nid = \"later\"\ndepends_on = [\"busy\"]\nprompt = \"x\"\n");
    let mut run = sb
        .fake_run(&file, &["--progress", "none"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = None;
    let ok = wait_until(Duration::from_secs(15), || {
        let out = sb.borg(&["status", "--json"]).output().unwrap();
        if !out.status.success() {
            return false;
        }
        let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(_) => return false,
        };
        let busy = v["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["task"] == "busy")
            .cloned();
        if let Some(i) = busy {
            if i["tool"].as_str().is_some_and(|t| t.contains("sleep 3")) {
                seen = Some(v);
                return true;
            }
        }
        false
    });
    assert!(ok, "status never showed the running task with its tool");
    let v = seen.unwrap();
    assert_eq!(v["queue"]["running"], serde_json::json!(["busy"]));
    assert_eq!(v["queue"]["waiting"], serde_json::json!(["later"]));
    assert!(v["roles"]["developer"]["tasks"].as_u64().unwrap() >= 1);
    assert!(run.wait().unwrap().success());
    let text = sb.borg(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("TOTALS") && text.contains("2 succeeded"),
        "{text}"
    );
}

#[test]
fn junit_has_one_testcase_per_task_with_failures_and_skips() {
    let sb = Sandbox::new();
    let junit = sb.path().join("junit.xml");
    let tasks = "[[task]]\nid = \"good\"\nprompt = '#fake result \"all fine & <ok>\"'\n[[task]]\nid = \"bad\"\nprompt = \"#fake api-error 500 0\"\n[[task]]\nid = \"blocked\"\ndepends_on = [\"bad\"]\nprompt = \"x\"\n";
    let out = sb.run(tasks, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not XML ({e}): {xml}"));
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    assert_eq!(names, vec!["good", "bad", "blocked"]);
    let child = |name: &str, tag: &str| {
        cases
            .iter()
            .find(|c| c.attribute("name") == Some(name))
            .unwrap()
            .children()
            .find(|n| n.has_tag_name(tag))
    };
    assert!(child("good", "failure").is_none());
    assert_eq!(
        child("good", "system-out").and_then(|n| n.text()),
        Some("all fine & <ok>")
    );
    assert!(child("bad", "failure")
        .unwrap()
        .attribute("message")
        .unwrap()
        .contains("500"));
    assert!(child("blocked", "skipped").is_some());
    let suites = doc.root_element();
    assert_eq!(suites.attribute("tests"), Some("3"));
    assert_eq!(suites.attribute("failures"), Some("1"));
    assert_eq!(suites.attribute("skipped"), Some("1"));
}

#[test]
fn transcript_summarises_a_saved_file_and_a_large_generated_one() {
    let sb = Sandbox::new();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/success.stream.jsonl"
    );
    let out = sb
        .borg(&["transcript", fixture, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["session_id"], "470a0a8f-122c-41b2-824c-fac7f58a93f3");
    assert_eq!(v["tests"]["passed"], 3);
    assert!((v["cost_usd"].as_f64().unwrap() - 0.0415).abs() < 1e-9);
    // A 40 MB transcript: many copies of the middle of a real one, then its result.
    let lines: Vec<&str> = include_str!("fixtures/success.stream.jsonl")
        .lines()
        .collect();
    let big = sb.path().join("big.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        writeln!(f, "{}", lines[0]).unwrap();
        let body = lines[1..lines.len() - 1].join("\n");
        let mut written = 0usize;
        while written < 40 * 1024 * 1024 {
            writeln!(f, "{body}").unwrap();
            written += body.len() + 1;
        }
        writeln!(f, "{}", lines[lines.len() - 1]).unwrap();
    }
    let t = Instant::now();
    let out = sb
        .borg(&["transcript", big.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    eprintln!("borg transcript on 40 MB: {:?}", t.elapsed());
    assert!(out.status.success());
    let v = json_of(&out);
    assert_eq!(v["status"], "succeeded");
    assert!(v["tools_used"]["Bash"].as_u64().unwrap() > 1000);
}

#[test]
fn diagnostics_go_to_stderr_and_json_stdout_stays_clean() {
    let sb = Sandbox::new();
    let file = sb.write("tasks.toml", "[[task]]\nid = \"a\"\nprompt = \"x\"\n");
    let out = sb
        .fake_run(&file, &["--json", "--log-format", "json"])
        .env("BORG_LOG", "borg=debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is exactly one JSON report");
    assert_eq!(v["totals"]["succeeded"], 1);
    let json_lines = stderr(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(
        json_lines > 0,
        "no JSON diagnostics on stderr: {}",
        stderr(&out)
    );
}

#[test]
fn logs_raw_prints_the_bytes_exactly_and_logs_of_an_instance_cover_its_tasks() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"one\"\ninstance = \"dev-1\"\nprompt = '#fake bad-utf8'\n[[task]]\nid = \"two\"\ninstance = \"dev-1\"\ndepends_on = [\"one\"]\nprompt = '#fake result \"second\"'\n";
    let (out, rep) = sb.run_json(tasks, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(task(&rep, "one")["instance"], "dev-1");
    let raw = sb.borg(&["logs", "one", "--raw"]).output().unwrap();
    let file = std::fs::read(sb.ws().join("dev-1/logs/one.1.stdout.jsonl")).unwrap();
    assert_eq!(raw.stdout, file, "--raw must print the bytes exactly");
    let human = sb.borg(&["logs", "dev-1"]).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("one") && text.contains("two") && text.contains("second"),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("{\"")),
        "{text}"
    );
}

#[test]
fn report_file_logs_attempt_and_status_watch_work_as_named() {
    let sb = Sandbox::new();
    sb.config("backoff_base = \"100ms\"\nbackoff_cap = \"200ms\"");
    let report = sb.path().join("report.json");
    let tasks = "[[task]]\nid = \"twice\"\nretries = 1\nprompt = '''\n#fake first 1 api-error 500 0\n#fake result \"second time\"\n'''\n";
    let (out, rep) = sb.run_json(tasks, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(file, rep, "--report writes the same report as --json");
    let second = sb
        .borg(&["logs", "twice", "--attempt", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(
        text.contains("attempt 2") && text.contains("second time") && !text.contains("attempt 1"),
        "{text}"
    );
    let first = sb
        .borg(&["logs", "twice", "--attempt", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains("500") && !text.contains("second time"),
        "{text}"
    );
    // --watch redraws until stopped.
    let watch = sb
        .borg(&["status", "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    signal(&watch, nix::sys::signal::Signal::SIGKILL);
    let out = watch.wait_with_output().unwrap();
    let frames = String::from_utf8_lossy(&out.stdout)
        .matches("TOTALS")
        .count();
    assert!(frames >= 2, "status --watch drew {frames} frame(s)");
}

#[test]
fn dotenv_is_read_once_with_one_rule_for_every_setting_borg_log_included() {
    // `.env` gives BORG_LOG twice: the last assignment wins, as for every other
    // setting (BORG_CONCURRENCY here).
    let sb = Sandbox::new();
    sb.write(
        ".env",
        "BORG_LOG=error\nBORG_CONCURRENCY=1\nBORG_LOG=borg=debug\nBORG_CONCURRENCY=2\n",
    );
    let (out, rep) = sb.run_json(&one("dotenv-once-x7", "#fake result \"ok\""), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "dotenv-once-x7")["status"], "succeeded");
    let err = stderr(&out);
    assert!(
        err.contains("DEBUG"),
        "BORG_LOG from .env did not take its last value: {err}"
    );
    // A .env line borg cannot read is refused by both readers alike: exit 2, naming it.
    sb.write(".env", "BORG_LOG=borg=debug\nthis is not an assignment\n");
    let out = sb.run(&one("dotenv-once-x8", "#fake result \"ok\""), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(".env"), "{err}");
    assert!(
        !err.contains("DEBUG"),
        "logging read a .env the settings refused: {err}"
    );
}

/// Voluntary and involuntary context switches of every thread of `pid` so far: each
/// voluntary one is a wakeup after a sleep.
fn wakeups(pid: u32) -> u64 {
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap_or_default();
        for l in status.lines() {
            if l.starts_with("voluntary_ctxt_switches")
                || l.starts_with("nonvoluntary_ctxt_switches")
            {
                n += l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    n
}

#[test]
fn logs_follow_sleeps_until_the_log_or_the_store_changes() {
    // While the followed task is silent, `logs --follow` has nothing to do: it waits
    // for filesystem notifications instead of waking up on a timer to look.
    let sb = Sandbox::new();
    let file = sb.write(
        "tasks.toml",
        &one(
            "quiet-f9z2",
            "#fake text \"first line\"\n#fake turn\n#fake sleep 5000\n#fake result \"last line\"",
        ),
    );
    let mut run = sb
        .fake_run(&file, &["--progress", "none"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut follow = sb
        .borg(&["logs", "quiet-f9z2", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("first line"));
    assert!(first.is_some(), "logs --follow did not show the first line");
    std::thread::sleep(Duration::from_millis(300));
    let before = wakeups(follow.id());
    std::thread::sleep(Duration::from_secs(2));
    let woke = wakeups(follow.id()) - before;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = run.wait();
    let _ = follow.wait();
    assert!(
        rest.iter().any(|l| l.contains("last line")),
        "logs --follow missed the end: {rest:?}"
    );
    // Polling every 100 ms (and reading the store each time) made 140 here; a silent
    // stretch now costs about a dozen, one write to the store by the run (its lease
    // maintenance, every few seconds) a few dozen more.
    assert!(
        woke < 70,
        "logs --follow woke up {woke} times in 2 s of silence"
    );
}
