//! Verification end to end (`borg run --repo` on real repositories, real gate
//! commands, fake-claude scripted per invocation): gates, fix rounds that resume the
//! session, the baseline (preexisting failures, cached per commit), a gate killed at
//! its timeout with its whole tree, writable scopes, a review verdict through
//! `--json-schema`, JUnit XML, the dry run's gates, and bad input.

mod common;
use common::git::Repo;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CALC: &str = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
const TESTS: &str = "import unittest\n\nimport calc\n\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n\n    def test_sub(self):\n        self.assertEqual(calc.sub(5, 3), 2)\n\n    def test_mul(self):\n        self.assertEqual(calc.mul(2, 3), 6)\n\n\nif __name__ == \"__main__\":\n    unittest.main()\n";
const GATE: &str = "python3 -m unittest";

/// config.toml: the sandbox's short ladder, no automatic leases, `verify` lines
/// under [verify], fake-claude's state and scenario folders passed to the child.
fn config(sb: &Sandbox, verify: &str) {
    let text = format!(
        "[run]\ninterrupt_grace = \"1s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"3s\"\n\n[coord]\nauto_lock = false\n\n[verify]\n{verify}\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\nFAKE_CLAUDE_SCENARIO_DIR = \"{}\"\n",
        sb.state().display(),
        sb.path().join("scenarios").display()
    );
    sb.write("config.toml", &text);
}

/// The scenario of every invocation for task `id` (`on-attempt N` picks one).
fn scenario(sb: &Sandbox, id: &str, lines: &str) {
    sb.write(&format!("scenarios/{id}"), lines);
}

/// The example project: calc.py and its unittest suite.
fn calc_repo(sb: &Sandbox, calc: &str) -> Repo {
    Repo::init(
        &sb.path().join("calc"),
        &[("calc.py", calc), ("test_calc.py", TESTS)],
    )
}

/// Runs `tasks` on `repo` with `--json`; returns the output and the report.
fn run(
    sb: &Sandbox,
    repo: &Repo,
    tasks: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["--repo", repo.dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    sb.run_json(tasks, &args)
}

fn task_toml(id: &str, extra: &str) -> String {
    format!("[[task]]\nid = \"{id}\"\nprompt = \"Work on calc.\"\n{extra}\n\n")
}

/// The agent breaks `sub` and claims the 3 tests pass; its fix round (if scripted)
/// puts it back.
fn breaks_sub(fixes: bool) -> String {
    let mut s = String::from(
        "on-attempt 1 read calc.py\n\
         on-attempt 1 edit calc.py \"return a - b\" \"return a + b\"\n\
         on-attempt 1 bash \"printf 'Ran 3 tests in 0.001s\\\\n\\\\nOK\\\\n'\"\n\
         on-attempt 1 result \"Changed sub; all 3 tests pass.\"\n",
    );
    if fixes {
        s.push_str(
            "on-attempt 2 read calc.py\n\
             on-attempt 2 edit calc.py \"def sub(a, b):\\n    return a + b\" \"def sub(a, b):\\n    return a - b\"\n\
             on-attempt 2 result \"Fixed sub.\"\n",
        );
    }
    s
}

#[test]
fn a_regression_gets_a_fix_round_with_the_gate_output_and_is_fixed() {
    let sb = Sandbox::new();
    config(&sb, &format!("commands = [\"{GATE}\"]"));
    let repo = calc_repo(&sb, CALC);
    let id = "vfy-fix-k3";
    scenario(&sb, id, &breaks_sub(true));
    let (out, rep) = run(&sb, &repo, &task_toml(id, ""), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, id);
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["fix_rounds"], 1);
    assert_eq!(t["attempts"], 1);
    let round = &t["rounds"][0];
    assert_eq!(round["why"], "gate");
    assert_eq!(round["gate"], GATE);
    assert_eq!(round["regressions"][0], "test_calc.CalcTest.test_sub");
    // The claim stays the agent's; what borg verified is beside it.
    assert_eq!(t["tests"]["passed"], 3);
    let v = &t["verified"];
    assert_eq!(v["gates"][0]["exit_code"], 0);
    assert_eq!(v["gates"][0]["command"], GATE);
    assert!(v["regressions"].as_array().unwrap().is_empty());
    // The fix round resumed the same session, in the same worktree.
    let argv = sb.argv(id);
    assert_eq!(argv.len(), 2);
    let session = t["session_id"].as_str().unwrap();
    assert!(argv_strings(&argv[1]).contains(&format!("--resume={session}")));
    assert_eq!(argv[0]["cwd"], argv[1]["cwd"]);
    let prompt = sb.prompt(id, 2);
    for want in [
        GATE,
        "test_calc.CalcTest.test_sub",
        "FAIL: test_sub",
        "Exit code: 1",
    ] {
        assert!(
            prompt.contains(want),
            "{want} not in the fix prompt:\n{prompt}"
        );
    }
    // Cost and turns include the round; the branch holds the fixed code.
    assert!(t["cost_usd"].as_f64().unwrap() > round["cost_usd"].as_f64().unwrap());
    assert!(repo
        .show(&format!("borg/{id}"), "calc.py")
        .contains("return a - b"));
    let log = std::fs::read_to_string(v["gates"][0]["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("round 0, gate 1/1") && log.contains("round 1, gate 1/1"),
        "{log}"
    );
}

#[test]
fn a_regression_never_fixed_ends_verify_failed_and_is_not_retried() {
    let sb = Sandbox::new();
    config(&sb, &format!("commands = [\"{GATE}\"]\nfix_rounds = 1"));
    let repo = calc_repo(&sb, CALC);
    let id = "vfy-never-k3";
    scenario(&sb, id, &breaks_sub(false));
    let tasks = task_toml(id, "retries = 2");
    let (out, rep) = run(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = task(&rep, id);
    assert_eq!(t["status"], "verify_failed", "{t:#}");
    assert_eq!(t["fault"], "verification");
    assert_eq!(t["attempts"], 1, "a verification failure is not retried");
    assert_eq!(t["fix_rounds"], 1);
    assert!(t["error"].as_str().unwrap().contains(GATE));
    assert_eq!(
        t["verified"]["regressions"][0],
        "test_calc.CalcTest.test_sub"
    );
    assert_eq!(sb.argv(id).len(), 2);
    // The table shows the claim against what borg found.
    let file = sb.write("tasks.toml", &tasks);
    let o = sb
        .run_cmd(&file, &["--repo", repo.dir.to_str().unwrap()])
        .output()
        .unwrap();
    let table = stderr(&o);
    assert!(table.contains("3/3 claimed, 2/3 verified"), "{table}");
}

#[test]
fn a_failure_already_at_the_base_is_preexisting_and_the_baseline_runs_once_per_commit() {
    let sb = Sandbox::new();
    let counter = sb.path().join("gate-runs");
    let gate = format!("echo run >> {}; {GATE}", counter.display());
    config(&sb, &format!("commands = [\"{gate}\"]"));
    // mul is broken at the base: test_mul fails before any agent runs.
    let repo = calc_repo(&sb, &CALC.replace("a * b", "a + b"));
    let ids = ["vfy-pre-a7", "vfy-pre-b7", "vfy-pre-c7"];
    let mut tasks = String::new();
    for id in ids {
        scenario(
            &sb,
            id,
            &format!("write notes-{id}.md \"notes\"\nresult \"Wrote notes.\""),
        );
        tasks.push_str(&task_toml(id, ""));
    }
    let (out, rep) = run(&sb, &repo, &tasks, &["--concurrency", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for id in ids {
        let t = task(&rep, id);
        assert_eq!(t["status"], "succeeded", "{t:#}");
        let g = &t["verified"]["gates"][0];
        assert_eq!(g["exit_code"], 1);
        assert_eq!(g["passed"], true);
        assert_eq!(g["compared_by"], "names");
        assert_eq!(
            t["verified"]["preexisting"][0],
            "test_calc.CalcTest.test_mul"
        );
        assert!(t["verified"]["regressions"].as_array().unwrap().is_empty());
        assert_eq!(t["fix_rounds"], 0);
    }
    let runs = || std::fs::read_to_string(&counter).unwrap().lines().count();
    assert_eq!(
        runs(),
        4,
        "three tasks and one baseline for their one start commit"
    );
    // Run again after a retry: the baseline is read from the store, not run.
    sb.succeed(&["task", "retry", ids[0]]);
    let (out, _) = run(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(runs(), 5);
}

#[test]
fn a_gate_that_hangs_is_killed_at_its_timeout_with_its_whole_tree() {
    let sb = Sandbox::new();
    let seen = sb.path().join("gate-env");
    config(
        &sb,
        &format!(
            "commands = [\"echo $BORG_TASK_ID > {}; sleep 300 & sleep 301\"]\ntimeout = \"2s\"\nfix_rounds = 0",
            seen.display()
        ),
    );
    let repo = calc_repo(&sb, CALC);
    let id = "vfy-hang-k3";
    scenario(&sb, id, "write a.txt \"x\"\nresult \"Done.\"");
    let began = Instant::now();
    let (out, rep) = run(&sb, &repo, &task_toml(id, ""), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(began.elapsed() < Duration::from_secs(60));
    let t = task(&rep, id);
    assert_eq!(t["status"], "verify_failed", "{t:#}");
    let g = &t["verified"]["gates"][0];
    assert_eq!(g["timed_out"], true);
    assert!(g["exit_code"].is_null());
    assert!(g["duration_ms"].as_u64().unwrap() < 20_000);
    // The gate had the child's identity, which is how its processes are found here.
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), id);
    assert!(
        wait_until(Duration::from_secs(5), || task_procs(id).is_empty()),
        "left behind: {:?}",
        task_procs(id)
    );
}

/// A roles folder: the shipped roles, the tester limited to `tests/**`.
fn roles_with_scoped_tester(sb: &Sandbox) -> PathBuf {
    let dir = sb.path().join("roles");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("roles");
    for e in std::fs::read_dir(shipped).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let tester = std::fs::read_to_string(dir.join("tester.md")).unwrap();
    let scoped = tester.replacen("+++\n", "+++\nwritable = [\"tests/**\"]\n", 1);
    std::fs::write(dir.join("tester.md"), scoped).unwrap();
    dir
}

#[test]
fn a_tester_that_edits_src_through_sed_is_out_of_scope_and_its_work_kept() {
    let sb = Sandbox::new();
    config(&sb, "");
    let roles = roles_with_scoped_tester(&sb);
    let repo = Repo::init(
        &sb.path().join("proj"),
        &[("src/calc.py", CALC), ("tests/test_calc.py", TESTS)],
    );
    let id = "vfy-scope-k3";
    scenario(
        &sb,
        id,
        "write tests/test_more.py \"# more\"\nbash \"sed -i 's/a - b/a + b/' src/calc.py\"\nresult \"Added tests.\"",
    );
    let tasks = format!("[[task]]\nid = \"{id}\"\nrole = \"tester\"\nprompt = \"Test calc.\"\n");
    let file = sb.write("tasks.toml", &tasks);
    let mut cmd = sb.borg(&["--roles", roles.to_str().unwrap()]);
    cmd.args(run_args(
        &file,
        &fake_bin(),
        &["--repo", repo.dir.to_str().unwrap(), "--json"],
    ));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rep = json_of(&out);
    let t = task(&rep, id);
    assert_eq!(t["status"], "out_of_scope", "{t:#}");
    assert_eq!(t["out_of_scope"], serde_json::json!(["src/calc.py"]));
    assert!(t["error"].as_str().unwrap().contains("src/calc.py"));
    let kept = format!("refs/borg/attempts/{id}/1");
    assert!(repo.has_ref(&kept));
    assert!(repo
        .show(&kept, "src/calc.py")
        .contains("return a + b\n\n\ndef mul"));
}

#[test]
fn a_review_that_requests_changes_then_approves() {
    let sb = Sandbox::new();
    config(&sb, "commands = [\"true\"]");
    let repo = calc_repo(&sb, CALC);
    let id = "vfy-review-k3";
    scenario(
        &sb,
        id,
        "on-attempt 1 write NOTES.md \"v1\"\n\
         on-attempt 1 result \"Wrote the notes.\"\n\
         on-attempt 2 structured '{\"verdict\":\"changes_requested\",\"comments\":[{\"path\":\"NOTES.md\",\"line\":1,\"body\":\"Say v2, not v1.\"}]}'\n\
         on-attempt 3 read NOTES.md\n\
         on-attempt 3 write NOTES.md \"v2\"\n\
         on-attempt 3 result \"Now v2.\"\n\
         on-attempt 4 structured '{\"verdict\":\"approve\",\"comments\":[]}'\n",
    );
    let (out, rep) = run(&sb, &repo, &task_toml(id, "review = \"reviewer\""), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, id);
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["review"]["verdict"], "approve");
    assert_eq!(t["review"]["reviews"], 2);
    assert_eq!(t["review"]["role"], "reviewer");
    assert_eq!(t["fix_rounds"], 1);
    assert_eq!(t["rounds"][0]["why"], "review");
    let argv = sb.argv(id);
    assert_eq!(argv.len(), 4);
    let review = argv_strings(&argv[1]);
    assert!(review
        .iter()
        .any(|a| a.starts_with("--json-schema=") && a.contains("changes_requested")));
    assert!(!review.iter().any(|a| a.starts_with("--resume")));
    assert!(sb.prompt(id, 2).contains("Wrote the notes."));
    assert!(
        sb.prompt(id, 2).contains("+v1"),
        "the diff is in the review prompt"
    );
    assert!(sb.prompt(id, 3).contains("NOTES.md:1: Say v2, not v1."));
    assert!(argv_strings(&argv[2])
        .iter()
        .any(|a| a.starts_with("--resume=")));
    assert_eq!(repo.show(&format!("borg/{id}"), "NOTES.md"), "v2");
    let file = sb.write("tasks.toml", &task_toml(id, "review = \"reviewer\""));
    let o = sb
        .run_cmd(&file, &["--repo", repo.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("succeeded (reviewed)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn junit_reports_give_counts_and_failing_names() {
    let sb = Sandbox::new();
    let xml = "<testsuite><testcase classname=\\\"calc\\\" name=\\\"adds\\\"/><testcase classname=\\\"calc\\\" name=\\\"subs\\\"><failure/></testcase></testsuite>";
    config(
        &sb,
        &format!("commands = [\"mkdir -p out && echo '{xml}' > out/r.xml && exit 1\"]\njunit = \"out/*.xml\"\nfix_rounds = 0\nbaseline = false"),
    );
    let repo = calc_repo(&sb, CALC);
    let id = "vfy-junit-k3";
    scenario(&sb, id, "write a.txt \"x\"\nresult \"Done.\"");
    let (out, rep) = run(&sb, &repo, &task_toml(id, ""), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = task(&rep, id);
    assert_eq!(t["status"], "verify_failed", "{t:#}");
    assert_eq!(t["verified"]["passed"], 1);
    assert_eq!(t["verified"]["failed"], 1);
    assert_eq!(
        t["verified"]["regressions"],
        serde_json::json!(["calc.subs"])
    );
    // The gate's report is not left in the worktree (nor committed).
    assert!(!repo.exists_at(&format!("borg/{id}"), "out/r.xml"));
}

#[test]
fn the_dry_run_prints_each_tasks_gates() {
    let sb = Sandbox::new();
    config(&sb, "commands = \"auto\"");
    let repo = Repo::init(
        &sb.path().join("p"),
        &[("Cargo.toml", "[package]\n"), ("a", "")],
    );
    let tasks = task_toml("vfy-dry-a", "")
        + &task_toml("vfy-dry-b", "verify = [\"make check\", \"make lint\"]")
        + &task_toml("vfy-dry-c", "verify = []");
    let file = sb.write("tasks.toml", &tasks);
    let o = sb
        .fake_run(&file, &["--repo", repo.dir.to_str().unwrap(), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("vfy-dry-a: `cargo test` (from [verify]); auto: Cargo.toml → cargo test"),
        "{text}"
    );
    assert!(
        text.contains("vfy-dry-b: `make check`, `make lint` (from task)"),
        "{text}"
    );
    assert!(text.contains("vfy-dry-c: no gate (from task)"), "{text}");
}

#[test]
fn bad_gates_and_reviewers_exit_2_naming_the_field() {
    let sb = Sandbox::new();
    config(&sb, "");
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "",
            "verify = [\"make test\", \"  \"]",
            &["verify", "gate 2 is an empty command"],
        ),
        ("", "review = \"nobody\"", &["review", "nobody"]),
        (
            "commands = [\"\"]",
            "",
            &["[verify]", "commands", "empty command"],
        ),
        ("review_role = \"nobody\"", "", &["review_role", "nobody"]),
        ("[merge]\nbatch = 0", "", &["[merge]", "batch"]),
    ];
    for (verify, task_extra, wants) in cases {
        config(&sb, verify);
        let out = sb.run(&task_toml("vfy-bad-k3", task_extra), &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{verify} {task_extra}: {err}");
        for w in wants {
            assert!(err.contains(w), "{w} not in: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(sb.argv("vfy-bad-k3").is_empty(), "no child may start");
    }
}

#[test]
fn template_mode_gates_run_in_the_instance_without_a_baseline() {
    let sb = Sandbox::new();
    config(&sb, &format!("commands = [\"{GATE}\"]"));
    sb.write("template/calc.py", CALC);
    sb.write("template/test_calc.py", TESTS);
    let id = "vfy-tmpl-k3";
    scenario(&sb, id, &breaks_sub(true));
    let tmpl = sb.path().join("template");
    let (out, rep) = sb.run_json(&task_toml(id, ""), &["--template", tmpl.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, id);
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["fix_rounds"], 1);
    let first = &t["rounds"][0];
    assert_eq!(first["regressions"][0], "test_calc.CalcTest.test_sub");
    let g = &t["verified"]["gates"][0];
    assert_eq!(
        (g["exit_code"].as_i64(), g["compared_by"].as_str()),
        (Some(0), Some("exit"))
    );
    assert!(
        g["baseline_exit_code"].is_null(),
        "no start commit, no baseline"
    );
    let inst = t["instance"].as_str().unwrap();
    let calc = std::fs::read_to_string(sb.ws().join(inst).join("project-files/calc.py")).unwrap();
    assert_eq!(calc, CALC);
}
