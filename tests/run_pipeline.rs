//! `borg run` end to end against fake-claude: reports, files on disk, prompts, argv,
//! environment, dependencies, handoffs, exit codes.

mod common;
use common::*;
use std::path::Path;

const DEMO_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/template");

#[test]
fn demo_list_runs_to_success_with_files_tests_and_a_handoff() {
    let sb = Sandbox::new();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml"))
        .unwrap();
    let (out, rep) = sb.run_json(&demo, &["--template", DEMO_TEMPLATE]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let fix = task(&rep, "fix-add");
    assert_eq!(fix["status"], "succeeded");
    assert_eq!(fix["attempts"], 1);
    assert_eq!(fix["exit_code"], 0);
    assert!(fix["session_id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(fix["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(fix["tests"]["passed"], 3);
    assert_eq!(fix["tests"]["failed"], 0);
    let files = fix["files_changed"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "NOTES.md" && f["change"] == "created"),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "calc.py" && f["change"] == "modified"),
        "{files:?}"
    );
    assert_eq!(fix["handoff_to"], "tester");
    let tester = task(&rep, "fix-add.tester-1");
    assert_eq!(tester["status"], "succeeded");
    assert_eq!(tester["role"], "tester");
    // A file changed only by a shell command (sed -i) is reported.
    let docs = task(&rep, "docs");
    assert!(docs["files_changed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "README.md"));
    assert_eq!(task(&rep, "add-sub")["tests"]["passed"], 4);
    assert_eq!(rep["totals"]["tasks"], 5);
    assert_eq!(rep["totals"]["succeeded"], 5);
    // The files are really there, in the instance that ran the task.
    let inst = fix["instance"].as_str().unwrap();
    let pf = sb.ws().join(inst).join("project-files");
    assert!(std::fs::read_to_string(pf.join("calc.py"))
        .unwrap()
        .contains("return a + b"));
    assert!(pf.join("NOTES.md").is_file());
    let session = std::fs::read_to_string(sb.ws().join(inst).join("session.md")).unwrap();
    assert!(
        session.starts_with("# DEVELOPER Instance Session\n"),
        "{session}"
    );
    assert!(session.contains("fix-add"));
    // Raw logs are kept per attempt, byte for byte.
    let logs: Vec<_> = std::fs::read_dir(sb.ws().join(inst).join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("fix-add.1") && l.ends_with(".stdout.jsonl")),
        "{logs:?}"
    );
}

#[test]
fn the_prompt_goes_on_stdin_in_order_and_argv_follows_the_protocol() {
    let sb = Sandbox::new();
    let tasks = r##"
[[task]]
id = "impl"
prompt = '''
Implement the thing.
#fake write out.txt "hello"
#fake result "implemented: wrote out.txt"
'''

[[task]]
id = "check"
role = "tester"
depends_on = ["impl"]
prompt = "Check the thing VERBATIM-MARKER *with* `markdown`."
"##;
    let (out, _rep) = sb.run_json(tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let p = sb.prompt("check", 1);
    let role_at = p.find("tester").expect("role context");
    let task_at = p
        .find("Check the thing VERBATIM-MARKER *with* `markdown`.")
        .expect("verbatim prompt");
    let dep_at = p
        .find("implemented: wrote out.txt")
        .expect("dependency result text");
    assert!(role_at < task_at && task_at < dep_at, "{p}");
    assert!(p.contains("out.txt"), "dependency files are listed: {p}");
    let argv = &sb.argv("check")[0]["argv"];
    let argv: Vec<&str> = argv
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.contains(&"-p") && argv.contains(&"--verbose") && argv.contains(&"stream-json"),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"--permission-mode=bypassPermissions"),
        "{argv:?}"
    );
    assert!(
        !argv.iter().any(|a| a.contains("VERBATIM-MARKER")),
        "the prompt is never in argv"
    );
    // The dependency's file was carried into the tester's instance.
    let cwd = sb.argv("check")[0]["cwd"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&cwd).join("out.txt")).unwrap(),
        "hello"
    );
}

#[test]
fn the_child_environment_is_an_allowlist_plus_borg_variables() {
    let sb = Sandbox::new();
    let envfile = sb.path().join("child-env.txt");
    let tasks = format!(
        r#"
[[task]]
id = "env"
env = {{ TASK_VAR = "from-task" }}
prompt = '''
#fake bash "env > {}"
'''
"#,
        envfile.display()
    );
    let file = sb.write("tasks.toml", &tasks);
    let out = sb
        .fake_run(&file, &[])
        .env("CLAUDECODE", "1")
        .env("SOME_SECRET", "nope")
        .env("ANTHROPIC_API_KEY", "sk-test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let env = std::fs::read_to_string(&envfile).unwrap();
    let has = |k: &str| env.lines().any(|l| l.starts_with(&format!("{k}=")));
    assert!(!has("CLAUDECODE") && !has("SOME_SECRET"), "{env}");
    assert!(env.contains("ANTHROPIC_API_KEY=sk-test"));
    assert!(env.contains("TASK_VAR=from-task"));
    assert!(env.contains("BORG_TASK_ID=env"));
    assert!(
        has("BORG_INSTANCE_ID")
            && has("BORG_ATTEMPT")
            && has("BORG_WORKSPACE")
            && has("BORG_BIN")
            && has("BORG_CLAIM_TOKEN")
    );
    assert!(env.contains("CLAUDE_CODE_MAX_RETRIES=2"));
}

#[test]
fn failures_are_reported_and_dependents_skipped() {
    let sb = Sandbox::new();
    let tasks = r##"
[[task]]
id = "api"
prompt = "#fake api-error 500 2"

[[task]]
id = "after-api"
depends_on = ["api"]
prompt = "never runs"

[[task]]
id = "turns"
prompt = "#fake max-turns"

[[task]]
id = "noresult"
prompt = "#fake no-result 0"

[[task]]
id = "stderr"
prompt = '''#fake exit 3 "Error: something broke badly"'''

[[task]]
id = "ok"
prompt = "#fake result \"fine\""
"##;
    let (out, rep) = sb.run_json(tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let api = task(&rep, "api");
    assert_eq!(api["status"], "failed");
    assert!(api["error"].as_str().unwrap().contains("500"), "{api}");
    assert_eq!(api["exit_code"], 1);
    assert_eq!(task(&rep, "after-api")["status"], "skipped");
    assert_eq!(task(&rep, "after-api")["attempts"], 0);
    assert!(
        sb.argv("after-api").is_empty(),
        "a skipped task never starts a child"
    );
    assert_eq!(task(&rep, "turns")["status"], "failed");
    assert!(task(&rep, "turns")["error"]
        .as_str()
        .unwrap()
        .contains("maximum number of turns"));
    assert_eq!(task(&rep, "noresult")["status"], "failed");
    assert!(task(&rep, "stderr")["error"]
        .as_str()
        .unwrap()
        .contains("something broke badly"));
    assert_eq!(task(&rep, "ok")["status"], "succeeded");
}

#[test]
fn a_timeout_stops_the_child_and_reports_timed_out() {
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json(
        "[[task]]\nid = \"slow\"\nprompt = \"#fake hang\"\n",
        &["--timeout", "1s"],
    );
    assert_eq!(out.status.code(), Some(1));
    let t = task(&rep, "slow");
    assert_eq!(t["status"], "timed_out");
    assert_eq!(t["watchdog"], "timeout");
    assert!(task_procs("slow").is_empty());
}

#[test]
fn at_most_n_children_run_at_once() {
    let sb = Sandbox::new();
    let mut tasks = String::new();
    for i in 0..6 {
        tasks.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nprompt = \"#fake sleep 400\"\n\n"
        ));
    }
    let (out, rep) = sb.run_json(&tasks, &["--concurrency", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Each attempt's start time is in fake-claude's argv record; with 2 slots no three overlap.
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for i in 0..6 {
        let a = &sb.argv(&format!("t{i}"))[0];
        let start = started_ms(a) as f64;
        spans.push((start, start + 400.0));
    }
    for s in &spans {
        let overlapping = spans
            .iter()
            .filter(|o| o.0 < s.0 + 350.0 && s.0 < o.1 - 50.0)
            .count();
        assert!(overlapping <= 2, "more than 2 at once: {spans:?}");
    }
    assert_eq!(rep["totals"]["succeeded"], 6);
}

#[test]
fn bad_task_lists_exit_2_and_start_nothing() {
    let cases: &[(&str, &str)] = &[
        ("[[task]]\nid = \"a\"\nprompt = \"x\"\n[[task\n", "tasks.toml:"),
        ("[[task]]\nid = \"a\"\nprompt = \"x\"\n[[task]]\nid = \"a\"\nprompt = \"y\"\n", "\"a\""),
        ("[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"zz\"]\n", "zz"),
        ("[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"b\"]\n[[task]]\nid = \"b\"\nprompt = \"y\"\ndepends_on = [\"a\"]\n", "a -> b -> a"),
        ("[[task]]\nid = \"a\"\nprompt = \"x\"\nrole = \"testr\"\n", "developer"),
        ("[[task]]\nid = \"a\"\nprompt = \"x\"\ntimeout = \"5 parsecs\"\n", "5 parsecs"),
        ("[[task]]\nid = \"a\"\n", "prompt"),
    ];
    for (text, needle) in cases {
        let sb = Sandbox::new();
        let out = sb.run(text, &[]);
        assert_eq!(out.status.code(), Some(2), "{text}\n{}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "expected {needle:?} in: {}",
            stderr(&out)
        );
        assert!(
            std::fs::read_dir(sb.state()).unwrap().next().is_none(),
            "no child may start"
        );
    }
}

#[test]
fn a_missing_claude_binary_exits_2_naming_it() {
    let sb = Sandbox::new();
    let f = sb.write("tasks.toml", "[[task]]\nid = \"a\"\nprompt = \"x\"\n");
    let out = sb
        .run_with(&f, Path::new("/nonexistent/claude"), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/claude"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn root_with_bypass_permissions_and_no_sandbox_flag_is_refused_up_front() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: skipping the root refusal test");
        return;
    }
    let sb = Sandbox::new();
    let f = sb.write("tasks.toml", "[[task]]\nid = \"a\"\nprompt = \"x\"\n");
    let out = sb
        .fake_run(&f, &[])
        .env_remove("IS_SANDBOX")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("IS_SANDBOX=1"), "{}", stderr(&out));
    assert!(std::fs::read_dir(sb.state()).unwrap().next().is_none());
}
