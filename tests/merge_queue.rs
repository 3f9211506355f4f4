//! The merge queue end to end: `borg run --merge` and `borg merge` on real
//! repositories made by the tests, fake-claude writing the branches, a real gate
//! (`python3 -m unittest` on a small example project): batches, a conflict landed by
//! its resolve task, a breaking branch found by bisection and rejected, the rest
//! landed in order; SIGKILL mid-queue and `borg merge` again; the refusals.

mod common;
use common::git::{git, Repo};
use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const CALC: &str = "def add(a, b):\n    return a + b\n";
const TEST_CALC: &str = "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\nif __name__ == \"__main__\":\n    unittest.main()\n";

/// config.toml: the sandbox's short ladder, fake-claude's scenario folder, and
/// `extra` sections.
fn config(sb: &Sandbox, extra: &str) {
    let scen = sb.path().join("scenarios");
    std::fs::create_dir_all(&scen).unwrap();
    let text = format!(
        "[run]\ninterrupt_grace = \"1s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"3s\"\n\n[coord]\nauto_lock = false\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\nFAKE_CLAUDE_SCENARIO_DIR = \"{}\"\n\n{extra}\n",
        sb.state().display(),
        scen.display()
    );
    sb.write("config.toml", &text);
}

/// A task entry.
fn task_toml(id: &str, priority: i64, prompt: &str) -> String {
    format!("[[task]]\nid = \"{id}\"\nrole = \"developer\"\npriority = {priority}\nprompt = '''\n{prompt}\n'''\n\n")
}

/// A task that adds one file.
fn adds(id: &str, priority: i64, file: &str, text: &str) -> String {
    task_toml(
        id,
        priority,
        &format!("#fake write {file} \"{text}\"\n#fake result \"Added {file}.\""),
    )
}

/// The example project: calc.py and its unittest.
fn project(sb: &Sandbox) -> Repo {
    Repo::init(
        &sb.path().join("repo"),
        &[("calc.py", CALC), ("test_calc.py", TEST_CALC)],
    )
}

/// The merge commits on the target's first-parent path, as (task, merge commit).
fn landed(repo: &Repo, target: &str) -> Vec<(String, String)> {
    let out = git(
        &repo.dir,
        &[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H %(trailers:key=Borg-Task,valueonly,separator=%x2c)",
            target,
        ],
    );
    out.lines()
        .filter_map(|l| {
            let (c, t) = l.split_once(' ')?;
            (!t.trim().is_empty()).then(|| (t.trim().to_string(), c.to_string()))
        })
        .collect()
}

/// How many merge commits each task has on the target.
fn counts(l: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (t, _) in l {
        *m.entry(t.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn six_branches_one_conflicting_one_breaking_the_gate_the_rest_land_in_order() {
    let sb = Sandbox::new();
    config(
        &sb,
        "[merge]\nbatch = 4\nverify = [\"python3 -m unittest\"]\n",
    );
    std::fs::write(
        sb.path().join("scenarios/mq-swap.resolve-1"),
        "read calc.py\nwrite calc.py \"def add(a, b):\\n    return int(b) + int(a)\\n\"\nresult \"Kept both: ints and swapped.\"\n",
    )
    .unwrap();
    let repo = project(&sb);
    let base = repo.rev("HEAD");
    let tasks = task_toml("mq-ints", 10, "#fake read calc.py\n#fake edit calc.py \"return a + b\" \"return int(a) + int(b)\"\n#fake result \"Made add() take strings.\"")
        + &adds("mq-a", 5, "a.py", "A = 1\\n")
        + &adds("mq-b", 5, "b.py", "B = 2\\n")
        + &adds("mq-breaks", 5, "test_break.py", "import unittest\\n\\n\\nclass TestBreak(unittest.TestCase):\\n    def test_break(self):\\n        self.assertEqual(1, 2)\\n")
        + &adds("mq-c", 5, "c.py", "C = 3\\n")
        + &task_toml("mq-swap", 0, "#fake read calc.py\n#fake edit calc.py \"return a + b\" \"return b + a\"\n#fake result \"Swapped the operands.\"");
    let (out, rep) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap(), "--merge"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "one task is rejected: {err}");
    let m = &rep["merge"];
    assert_eq!(m["target"], "borg/integration/tasks", "{m}");
    assert_eq!(m["start"], base.as_str());
    // The conflicting branch got a resolve task, which ran and whose result landed.
    assert_eq!(m["resolve_tasks"][0]["task"], "mq-swap", "{m}");
    assert_eq!(m["resolve_tasks"][0]["resolve_task"], "mq-swap.resolve-1");
    assert_eq!(
        m["resolve_tasks"][0]["files"],
        serde_json::json!(["calc.py"])
    );
    assert_eq!(m["resolve_tasks"][0]["landed"], true);
    assert_eq!(task(&rep, "mq-swap.resolve-1")["status"], "succeeded");
    let p = sb.prompt("mq-swap.resolve-1", 1);
    assert!(
        p.contains("the merge target `borg/integration/tasks`") && p.contains("- calc.py"),
        "{p}"
    );
    // The breaking branch was found by bisection and rejected with the gate's output.
    assert_eq!(m["rejected"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["rejected"][0]["task"], "mq-breaks");
    assert_eq!(m["rejected"][0]["gate"], "python3 -m unittest");
    assert!(
        m["rejected"][0]["output_tail"]
            .as_str()
            .unwrap()
            .contains("test_break"),
        "{m}"
    );
    let b = task(&rep, "mq-breaks");
    assert_eq!(b["status"], "integration_failed");
    assert!(
        b["error"].as_str().unwrap().contains("python3 -m unittest"),
        "{b}"
    );
    // The rest landed in order: priority first, the resolved conflict last; each once.
    let order: Vec<&str> = m["landed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"].as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 5, "{m}");
    assert_eq!(order[0], "mq-ints");
    assert_eq!(order[4], "mq-swap");
    let on_git = landed(&repo, "borg/integration/tasks");
    let tasks_on_git: Vec<&str> = on_git.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tasks_on_git, order, "the report says what the branch says");
    assert!(counts(&on_git).values().all(|&n| n == 1), "{on_git:?}");
    for (l, (_, c)) in m["landed"].as_array().unwrap().iter().zip(&on_git) {
        assert_eq!(l["commit"], c.as_str());
    }
    assert_eq!(m["end"], repo.rev("borg/integration/tasks").as_str());
    // The target: every landed file, the resolution, no marker, not the breaking test;
    // and its own gate passes.
    let t = "borg/integration/tasks";
    assert_eq!(
        repo.show(t, "calc.py"),
        "def add(a, b):\n    return int(b) + int(a)\n"
    );
    for f in ["a.py", "b.py", "c.py"] {
        assert!(!repo.show(t, f).is_empty());
    }
    let files = git(&repo.dir, &["ls-tree", "--name-only", t]);
    assert!(!files.contains("test_break.py"), "{files}");
    let gate_runs = m["gate_runs"].as_i64().unwrap();
    assert!((2..=12).contains(&gate_runs), "{gate_runs}");
    // Each merge commit carries the task's trailers.
    let msg = git(&repo.dir, &["log", "-1", "--format=%B", &on_git[0].1]);
    for k in [
        "Borg-Task: mq-ints",
        "Borg-Role: developer",
        "Borg-Queue: borg/integration/tasks",
        "Borg-Attempt: 1",
    ] {
        assert!(msg.contains(k), "{k}: {msg}");
    }
    // The user's branch did not move; the table shows the section.
    assert_eq!(repo.rev("main"), base);
    let again = sb.borg(&["merge"]).output().unwrap();
    assert_eq!(
        again.status.code(),
        Some(1),
        "still one rejected: {}",
        stderr(&again)
    );
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("rejected  mq-breaks: python3 -m unittest"),
        "{text}"
    );
    assert_eq!(
        landed(&repo, t),
        on_git,
        "a second run merges nothing twice"
    );
}

/// Six branches that each add a file, succeeded by a plain `borg run`.
fn six_done(sb: &Sandbox, gate: &str) -> Repo {
    config(sb, &format!("[merge]\nbatch = 1\nverify = [\"{gate}\"]\n"));
    let repo = project(sb);
    let tasks: String = (1..=6)
        .map(|i| {
            adds(
                &format!("mq-k{i}"),
                0,
                &format!("f{i}.py"),
                &format!("X = {i}\\n"),
            )
        })
        .collect();
    let (out, _) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    repo
}

#[test]
fn borg_killed_mid_queue_and_run_again_lands_everything_once() {
    let sb = Sandbox::new();
    let repo = six_done(&sb, "sleep 0.3");
    let t = "borg/integration/tasks";
    let mut child = sb
        .borg(&["merge"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            git_cmd_ok(&repo, t).is_some_and(|_| landed(&repo, t).len() >= 2)
        }),
        "the queue landed two branches"
    );
    // Two borgs never advance one target at once: the second is refused.
    let second = sb.borg(&["merge"]).output().unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("the merge target borg/integration/tasks is being advanced by"),
        "{}",
        stderr(&second)
    );
    child.kill().unwrap();
    let _ = child.wait();
    let before = landed(&repo, t);
    assert!(before.len() < 6, "killed mid-queue: {before:?}");
    let out = sb.borg(&["merge", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m = json_of(&out);
    let after = landed(&repo, t);
    assert_eq!(after.len(), 6, "{after:?}");
    assert!(
        counts(&after).values().all(|&n| n == 1),
        "nothing merged twice: {after:?}"
    );
    assert_eq!(&after[..before.len()], &before[..], "no landed merge lost");
    assert_eq!(m["landed"].as_array().unwrap().len(), 6, "{m}");
    // The same final target as an uninterrupted queue of the same work.
    git(&repo.dir, &["branch", "fresh", &repo.rev("main")]);
    let o = sb.borg(&["merge", "--into", "fresh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(repo.rev(&format!("{t}^{{tree}}")), repo.rev("fresh^{tree}"));
}

/// The commit a branch points at, if it exists.
fn git_cmd_ok(repo: &Repo, branch: &str) -> Option<String> {
    let o = common::git::git_cmd(&repo.dir, &["rev-parse", "--verify", "-q", branch])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn into_a_branch_checked_out_in_the_users_work_tree_is_refused_with_the_command() {
    let sb = Sandbox::new();
    let repo = six_done(&sb, "true");
    let main = repo.rev("main");
    let out = sb.borg(&["merge", "--into", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("main is checked out in")
            && e.contains("git merge --ff-only borg/integration/tasks"),
        "{e}"
    );
    assert_eq!(repo.rev("main"), main);
    let nope = sb.borg(&["merge", "--into", "nowhere"]).output().unwrap();
    assert_eq!(nope.status.code(), Some(2));
    assert!(
        stderr(&nope).contains("--into nowhere: no such branch"),
        "{}",
        stderr(&nope)
    );
}

#[test]
fn dry_run_prints_the_order_and_moves_no_ref() {
    let sb = Sandbox::new();
    let repo = six_done(&sb, "true");
    let refs = git(&repo.dir, &["for-each-ref"]);
    let out = sb.borg(&["merge", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("merge into borg/integration/tasks in batches of 1; gates: true"),
        "{text}"
    );
    for i in 1..=6 {
        assert!(text.contains(&format!("batch {i}: mq-k")), "{text}");
    }
    assert_eq!(git(&repo.dir, &["for-each-ref"]), refs, "no ref changed");
}

#[test]
fn batch_zero_is_refused_naming_the_field() {
    let sb = Sandbox::new();
    let _repo = six_done(&sb, "true");
    config(&sb, "[merge]\nbatch = 0\n");
    let out = sb.borg(&["merge"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("batch") && e.contains("[merge]"), "{e}");
}

#[test]
fn a_rejected_task_gets_a_fix_task_whose_work_lands() {
    let sb = Sandbox::new();
    config(
        &sb,
        "[merge]\nfix = true\nverify = [\"python3 -m unittest\"]\n",
    );
    std::fs::write(
        sb.path().join("scenarios/mq-fx-breaks.fix-1"),
        "read test_break.py\nwrite test_break.py \"import unittest\\n\\n\\nclass TestBreak(unittest.TestCase):\\n    def test_break(self):\\n        self.assertEqual(2, 2)\\n\"\nresult \"Fixed the test.\"\n",
    )
    .unwrap();
    let repo = project(&sb);
    let tasks = adds("mq-fx-ok", 5, "ok.py", "OK = 1\\n")
        + &adds("mq-fx-breaks", 0, "test_break.py", "import unittest\\n\\n\\nclass TestBreak(unittest.TestCase):\\n    def test_break(self):\\n        self.assertEqual(1, 2)\\n");
    let (out, rep) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap(), "--merge"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let m = &rep["merge"];
    assert_eq!(m["rejected"][0]["task"], "mq-fx-breaks", "{m}");
    assert_eq!(m["rejected"][0]["fix_task"], "mq-fx-breaks.fix-1");
    let f = task(&rep, "mq-fx-breaks.fix-1");
    assert_eq!(f["status"], "succeeded", "{f}");
    assert_eq!(f["role"], "developer");
    let p = sb.prompt("mq-fx-breaks.fix-1", 1);
    assert!(
        p.contains("python3 -m unittest") && p.contains("test_break"),
        "{p}"
    );
    let order: Vec<&str> = m["landed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["mq-fx-ok", "mq-fx-breaks.fix-1"], "{m}");
    assert!(repo
        .show("borg/integration/tasks", "test_break.py")
        .contains("assertEqual(2, 2)"));
}

#[test]
fn with_merge_an_early_branch_lands_while_a_later_task_still_runs() {
    let sb = Sandbox::new();
    config(&sb, "[merge]\nverify = [\"python3 -m unittest\"]\n");
    let repo = project(&sb);
    let go = sb.path().join("go-mq-late-q7");
    // The later task cannot end before the test has seen the early one land.
    let wait = format!(
        "#fake bash \"while [ ! -f {} ]; do sleep 0.05; done\"",
        go.display()
    );
    let tasks = adds("mq-early-q7", 5, "early.py", "E = 1\\n")
        + &task_toml(
            "mq-late-q7",
            0,
            &format!("{wait}\n#fake write late.py \"L = 2\\n\"\n#fake result \"Added late.py.\""),
        );
    let child = sb.spawn_run(
        &tasks,
        &["--json", "--repo", repo.dir.to_str().unwrap(), "--merge"],
    );
    let t = "borg/integration/tasks";
    let moved = wait_until(Duration::from_secs(60), || {
        git_cmd_ok(&repo, t).is_some() && !landed(&repo, t).is_empty()
    });
    let mid = landed(&repo, t);
    let mid_files = git_cmd_ok(&repo, t).map(|_| git(&repo.dir, &["ls-tree", "--name-only", t]));
    let late_running = !task_procs("mq-late-q7").is_empty();
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        moved,
        "the target moved while the later task ran: {}",
        stderr(&out)
    );
    let mid_tasks: Vec<&str> = mid.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(mid_tasks, ["mq-early-q7"], "only the early task had landed");
    let mid_files = mid_files.unwrap_or_default();
    assert!(
        mid_files.contains("early.py") && !mid_files.contains("late.py"),
        "{mid_files}"
    );
    assert!(late_running, "the later task was still running then");
    // The run went on: the later task's work landed after it, by the same run.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "mq-late-q7")["status"], "succeeded");
    let m = &rep["merge"];
    let order: Vec<&str> = m["landed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["mq-early-q7", "mq-late-q7"], "{m}");
    let all = landed(&repo, t);
    assert_eq!(&all[..1], &mid[..], "the early merge stayed as it landed");
    assert!(counts(&all).values().all(|&n| n == 1), "{all:?}");
    assert!(repo.show(t, "late.py").contains("L = 2"));
    assert_eq!(m["end"], repo.rev(t).as_str());
}

#[test]
fn an_integration_gate_that_hangs_is_killed_with_its_tree_and_logged() {
    let sb = Sandbox::new();
    let pidfile = sb.path().join("bg-mq-hang.pid");
    let gate = format!(
        "sleep 30 & echo $! > {}; echo started; sleep 30",
        pidfile.display()
    );
    config(
        &sb,
        &format!("[verify]\ntimeout = \"1s\"\n\n[merge]\nverify = ['{gate}']\n"),
    );
    let repo = project(&sb);
    let tasks = adds("mq-hang-h3", 0, "h.py", "H = 1\\n");
    let (out, _) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let began = std::time::Instant::now();
    let out = sb.borg(&["merge", "--json"]).output().unwrap();
    assert!(began.elapsed() < Duration::from_secs(25), "killed at 1s");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let m = json_of(&out);
    assert_eq!(m["rejected"][0]["task"], "mq-hang-h3", "{m}");
    // The verification gates' runner ran it: its whole tree went, and its output is
    // in the target's log after a header line naming the run.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    assert!(gone, "the gate's background child {pid} was killed too");
    let log = sb
        .ws()
        .join(".merge/logs/borg-integration-tasks.verify.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("gate 1/1: sleep 30 &") && text.contains("started"),
        "{text}"
    );
    let tail = m["rejected"][0]["output_tail"].as_str().unwrap_or_default();
    assert!(tail.contains("killed at its timeout of 1 s"), "{m}");
}

#[test]
fn run_merge_killed_mid_run_and_run_again_lands_everything_once() {
    let sb = Sandbox::new();
    config(&sb, "[merge]\nverify = [\"python3 -m unittest\"]\n");
    let repo = project(&sb);
    let go = sb.path().join("go-mq-kill-r5");
    let wait = format!(
        "#fake bash \"while [ ! -f {} ]; do sleep 0.05; done\"",
        go.display()
    );
    let tasks = adds("mq-first-r5", 5, "first.py", "F = 1\\n")
        + &task_toml(
            "mq-second-r5",
            0,
            &format!(
                "{wait}\n#fake write second.py \"S = 2\\n\"\n#fake result \"Added second.py.\""
            ),
        );
    let mut child = sb.spawn_run(&tasks, &["--repo", repo.dir.to_str().unwrap(), "--merge"]);
    let t = "borg/integration/tasks";
    let moved = wait_until(Duration::from_secs(60), || {
        git_cmd_ok(&repo, t).is_some() && !landed(&repo, t).is_empty()
    });
    child.kill().unwrap();
    let _ = child.wait();
    std::fs::write(&go, "").unwrap();
    assert!(moved, "the first task landed while the second ran");
    let before = landed(&repo, t);
    assert_eq!(before.len(), 1, "{before:?}");
    // The same command again: the second task runs again and lands; nothing twice.
    let (out, rep) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap(), "--merge"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "mq-second-r5")["status"], "succeeded");
    let after = landed(&repo, t);
    let names: Vec<&str> = after.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["mq-first-r5", "mq-second-r5"], "{after:?}");
    assert_eq!(&after[..1], &before[..], "no landed merge lost");
    let m = &rep["merge"];
    assert_eq!(m["landed"].as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m["end"], repo.rev(t).as_str());
}
