//! The small commands as a user runs them: `instance create|list|show|rm`,
//! `roles list`, and where settings come from (flag > env > .env > config.toml).

mod common;
use common::*;
use std::process::Command;

fn bare(sb: &Sandbox, args: &[&str]) -> Command {
    // Like Sandbox::borg but without --workspaces, to test where it comes from.
    let mut c = Command::new(borg_bin());
    c.current_dir(sb.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", sb.path())
        .args(args);
    c
}

#[test]
fn instance_create_prints_the_id_last_and_builds_the_workspace() {
    let sb = Sandbox::new();
    let tpl = sb.path().join("tpl");
    std::fs::create_dir_all(tpl.join("src")).unwrap();
    std::fs::write(tpl.join("src/lib.rs"), "// template\n").unwrap();
    let out = sb
        .borg(&[
            "instance",
            "create",
            "--role",
            "tester",
            "--template",
            tpl.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text.lines().last().unwrap().trim().to_string();
    assert!(
        id.starts_with("tester-") && id.len() == "tester-".len() + 8,
        "{id}"
    );
    let dir = sb.ws().join(&id);
    let session = std::fs::read_to_string(dir.join("session.md")).unwrap();
    assert!(
        session.starts_with("# TESTER Instance Session\n"),
        "{session}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("project-files/src/lib.rs")).unwrap(),
        "// template\n"
    );
    assert!(dir.join("logs").is_dir());

    let json = sb
        .borg(&[
            "instance",
            "create",
            "--role",
            "developer",
            "--name",
            "dev-1",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["id"], "dev-1");
    assert_eq!(v["role"], "developer");
    assert!(v["path"].as_str().unwrap().ends_with("dev-1"));

    let v = sb.json(&["instance", "list", "--json"]);
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"dev-1") && ids.contains(&id.as_str()));
    let show = sb.borg(&["instance", "show", "dev-1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("developer"));
    assert!(sb
        .borg(&["instance", "rm", "dev-1"])
        .output()
        .unwrap()
        .status
        .success());
    assert!(!sb.ws().join("dev-1").exists());
    let again = sb.borg(&["instance", "show", "dev-1"]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn bad_instance_names_and_unknown_roles_exit_2_and_create_nothing() {
    let sb = Sandbox::new();
    for name in [
        "../escape",
        "a/b",
        "..",
        ".",
        "",
        "x y",
        &"n".repeat(65),
        "é",
    ] {
        let out = sb
            .borg(&["instance", "create", "--role", "developer", "--name", name])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", stderr(&out));
    }
    assert!(!sb.path().join("escape").exists());
    let n = std::fs::read_dir(sb.ws()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "nothing may be created");
    let out = sb
        .borg(&["instance", "create", "--role", "wizard"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("wizard")
            && err.contains("developer")
            && err.contains("tester")
            && err.contains("reviewer"),
        "{err}"
    );
    let rm = sb.borg(&["instance", "rm", "../../etc"]).output().unwrap();
    assert_eq!(rm.status.code(), Some(2));
}

#[test]
fn roles_come_from_a_folder_with_front_matter_or_are_built_in() {
    let sb = Sandbox::new();
    let out = sb.borg(&["roles", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for r in ["architect", "developer", "documenter", "reviewer", "tester"] {
        assert!(text.contains(r), "{text}");
    }
    sb.write("myroles/security.md", "+++\ncapabilities = [\"audit\"]\nmax_turns = 7\n+++\nYou audit code for security problems.\n");
    let tasks = sb.write(
        "tasks.toml",
        "[[task]]\nid = \"audit\"\nrole = \"security\"\nprompt = \"Audit it.\"\n",
    );
    let out = sb
        .borg(&["--roles", sb.path().join("myroles").to_str().unwrap()])
        .args(run_args(&tasks, &fake_bin(), &[]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let argv = argv_strings(&sb.argv("audit")[0]);
    assert!(argv.contains(&"--max-turns=7".to_string()), "{argv:?}");
    assert!(sb
        .prompt("audit", 1)
        .starts_with("You audit code for security problems."));
}

#[test]
fn settings_precedence_is_flag_then_env_then_dotenv_then_config() {
    let sb = Sandbox::new();
    let count = |dir: &str| {
        std::fs::read_dir(sb.path().join(dir))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    sb.write("config.toml", "[paths]\nworkspaces = \"from-config\"\n");
    let mk = |c: &mut Command| {
        c.args(["instance", "create", "--role", "developer"])
            .output()
            .unwrap()
    };
    assert!(mk(&mut bare(&sb, &[])).status.success());
    assert_eq!(count("from-config"), 1);
    sb.write(".env", "BORG_WORKSPACES=from-dotenv\n");
    assert!(mk(&mut bare(&sb, &[])).status.success());
    assert_eq!(count("from-dotenv"), 1);
    assert!(mk(bare(&sb, &[]).env("WORKSPACES_DIR", "from-env"))
        .status
        .success());
    assert_eq!(count("from-env"), 1);
    assert!(
        mk(bare(&sb, &["--workspaces", "from-flag"]).env("WORKSPACES_DIR", "from-env"))
            .status
            .success()
    );
    assert_eq!(count("from-flag"), 1);
    assert_eq!(count("from-env"), 1);
    // TASK_TIMEOUT is milliseconds, as in the original coordinator.
    let tasks = sb.write(
        "tasks.toml",
        "[[task]]\nid = \"slow\"\nprompt = \"#fake hang\"\n",
    );
    let out = bare(&sb, &[])
        .args(run_args(&tasks, &fake_bin(), &["--json"]))
        .env("TASK_TIMEOUT", "700")
        .env("IS_SANDBOX", "1")
        .output()
        .unwrap();
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        task(&rep, "slow")["status"],
        "timed_out",
        "{}",
        stderr(&out)
    );
    assert!(task(&rep, "slow")["duration_ms"].as_u64().unwrap() < 5000);
    // A misspelt config key is an error naming it.
    sb.write("config.toml", "[run]\nconcurency = 3\n");
    let out = mk(&mut bare(&sb, &[]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("concurency"), "{}", stderr(&out));
}

#[test]
fn dry_run_prints_waves_and_starts_nothing() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"a\"\nprompt = \"x\"\n[[task]]\nid = \"b\"\nprompt = \"x\"\npriority = 5\n[[task]]\nid = \"c\"\nprompt = \"x\"\ndepends_on = [\"a\", \"b\"]\n";
    let out = sb.run(tasks, &["--dry-run", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["waves"], serde_json::json!([["b", "a"], ["c"]]));
    assert!(std::fs::read_dir(sb.state()).unwrap().next().is_none());
}

#[test]
fn run_without_a_list_resumes_the_store_or_says_there_is_nothing_to_do() {
    let sb = Sandbox::new();
    let fake = fake_bin();
    let out = sb
        .borg(&["run", "--claude", fake.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no unfinished task"),
        "{}",
        stderr(&out)
    );
    // A list stopped part-way (here by its budget) is finished by `borg run` alone.
    let list = r##"
[[task]]
id = "a"
prompt = "x"

[[task]]
id = "b"
retries = 1
prompt = '''
#fake first 1 api-error 500 0
#fake result "ok"
'''
"##;
    let out = sb.run(list, &["--budget-usd", "0.001", "--concurrency", "2"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the budget stops the first run: {}",
        stderr(&out)
    );
    let out = sb
        .borg(&["run", "--claude", fake.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(task(&rep, "a")["status"], "succeeded");
    assert_eq!(task(&rep, "b")["status"], "succeeded");
    assert_eq!(task(&rep, "b")["attempts"], 2);
}
