//! Git mode end to end: `borg run --repo` on real repositories made by the tests, with
//! fake-claude writing, editing and committing. Every test also checks that the
//! user's repository was not touched (status, index, HEAD, stash, refs outside
//! borg's) and that `git fsck` is clean.

mod common;
use common::git::{busy_user_repo, git_cmd, Repo};
use common::*;
use std::path::Path;

const CALC: &str = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n";

/// config.toml: the sandbox's short ladder plus `run_extra` under [run] and
/// `env_extra` lines under [claude.env]; no automatic file leases, so that two agents
/// editing one file at once both do (the merge is what these tests are about).
fn config(sb: &Sandbox, run_extra: &str, env_extra: &str) {
    let text = format!(
        "[run]\ninterrupt_grace = \"1s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"3s\"\n{run_extra}\n\n[coord]\nauto_lock = false\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\n{env_extra}\n",
        sb.state().display()
    );
    sb.write("config.toml", &text);
}

/// Runs `tasks` with `--repo REPO --json` and returns the output and the report.
fn run_git(
    sb: &Sandbox,
    repo: &Repo,
    tasks: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["--repo", repo.dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    sb.run_json(tasks, &args)
}

/// A task entry.
fn task_toml(id: &str, role: &str, deps: &[&str], prompt: &str) -> String {
    let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[task]]\nid = \"{id}\"\nrole = \"{role}\"\ndepends_on = [{}]\nprompt = '''\n{prompt}\n'''\n\n",
        deps.join(", ")
    )
}

/// The two edits of the issue: one function added at the top, one at the bottom.
fn two_edits(reviewer_prompt: &str) -> String {
    task_toml(
        "top",
        "developer",
        &[],
        "#fake read calc.py\n#fake edit calc.py \"def add\" \"def neg(a):\\n    return -a\\n\\n\\ndef add\"\n#fake result \"Added neg() at the top.\"",
    ) + &task_toml(
        "bottom",
        "developer",
        &[],
        "#fake bash \"printf '\\\\n\\\\ndef sub(a, b):\\\\n    return a - b\\\\n' >> calc.py\"\n#fake result \"Added sub() at the bottom.\"",
    ) + &task_toml("review", "reviewer", &["top", "bottom"], reviewer_prompt)
}

fn assert_untouched(repo: &Repo, before: &common::git::UserState) {
    assert_eq!(&repo.user_state(), before, "the user's repository changed");
    repo.assert_fsck_clean();
}

#[test]
fn two_edits_to_one_file_both_reach_the_dependent_task() {
    let sb = Sandbox::new();
    let repo = busy_user_repo(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let base = repo.rev("HEAD");
    let (out, rep) = run_git(
        &sb,
        &repo,
        &two_edits("#fake bash \"grep -c def calc.py\"\n#fake result \"Both are there.\""),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "repository {} (--repo), base {}",
            repo.dir.display(),
            &base[..7]
        )),
        "{err}"
    );
    assert!(
        err.contains("uncommitted change(s)"),
        "the dirty work tree is named: {err}"
    );

    // The reviewer's start commit holds both functions.
    let review = task(&rep, "review");
    let start = review["base"].as_str().unwrap();
    let calc = repo.show(start, "calc.py");
    assert!(
        calc.contains("def neg(a)") && calc.contains("def sub(a, b)"),
        "{calc}"
    );
    assert!(
        calc.contains("def add(a, b)") && calc.contains("def mul(a, b)"),
        "{calc}"
    );
    assert_eq!(
        repo.git(&["rev-list", "--parents", "-n1", start])
            .split_whitespace()
            .count(),
        3,
        "a merge"
    );
    let p = sb.prompt("review", 1);
    assert!(
        p.contains(
            "a git worktree on branch `borg/review`. It already holds the work of the tasks above"
        ),
        "{p}"
    );
    // One branch per task, each at its task's final commit.
    assert_eq!(
        repo.borg_branches(),
        ["borg/bottom", "borg/review", "borg/top"]
    );
    for id in ["top", "bottom", "review"] {
        let t = task(&rep, id);
        assert_eq!(t["branch"], format!("borg/{id}"));
        assert_eq!(
            repo.rev(&format!("borg/{id}")),
            t["commit"].as_str().unwrap()
        );
    }
    let top = task(&rep, "top");
    assert_eq!(top["base"], base);
    assert_eq!(
        top["diffstat"],
        serde_json::json!({"files": 1, "insertions": 4, "deletions": 0})
    );
    assert_eq!(
        top["files_changed"],
        serde_json::json!([{"path": "calc.py", "change": "modified", "insertions": 4, "deletions": 0}])
    );
    // The agent's work is committed by borg on the branch, with its trailers.
    let msg = repo.git(&["log", "-1", "--format=%an <%ae>%n%cn <%ce>%n%B", "borg/top"]);
    let inst = top["instance"].as_str().unwrap();
    assert!(msg.starts_with(&format!("{inst} <{inst}@borg.invalid>\nborg <borg@borg.invalid>\ntop: Added neg() at the top.\n")), "{msg}");
    for t in [
        "Borg-Task: top",
        "Borg-Attempt: 1",
        "Borg-Role: developer",
        &format!("Borg-Instance: {inst}"),
        "Borg-Session: ",
        "Borg-Cost: 0.",
    ] {
        assert!(msg.contains(t), "{t} missing: {msg}");
    }
    let table = sb
        .run_cmd(
            &sb.path().join("tasks.toml"),
            &["--repo", repo.dir.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert!(
        stderr(&table).contains("+4 -0"),
        "the table shows lines: {}",
        stderr(&table)
    );
    // The worktrees are detached: the user can check a branch out.
    repo.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("branch "))
        .for_each(|l| {
            assert_eq!(
                l, "branch refs/heads/main",
                "only the user's work tree is on a branch"
            );
        });
    assert_untouched(&repo, &before);
}

#[test]
fn a_real_conflict_is_resolved_by_a_resolve_task_and_the_waiting_task_starts_from_it() {
    let sb = Sandbox::new();
    let scen = sb.path().join("scenarios");
    std::fs::create_dir_all(&scen).unwrap();
    std::fs::write(
        scen.join("after.resolve-1"),
        "read calc.py\nwrite calc.py \"def add(a, b):\\n    return int(b) + int(a)  # both\\n\"\nresult \"Kept both: operands swapped and ints.\"\n",
    )
    .unwrap();
    config(
        &sb,
        "",
        &format!("FAKE_CLAUDE_SCENARIO_DIR = \"{}\"", scen.display()),
    );
    let repo = busy_user_repo(
        &sb.path().join("repo"),
        &[("calc.py", "def add(a, b):\n    return a + b\n")],
    );
    let before = repo.user_state();
    let tasks = task_toml("one", "developer", &[], "#fake read calc.py\n#fake edit calc.py \"return a + b\" \"return b + a\"\n#fake result \"Swapped the operands.\"")
        + &task_toml("two", "tester", &[], "#fake read calc.py\n#fake edit calc.py \"return a + b\" \"return int(a) + int(b)\"\n#fake result \"Made add() take strings.\"")
        + &task_toml("after", "reviewer", &["one", "two"], "#fake bash \"cat calc.py\"\n#fake result \"Reviewed.\"")
        + &task_toml("later", "developer", &["after"], "#fake result \"Later.\"");
    let (out, rep) = run_git(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("after: merging two into its start conflicts in calc.py; it waits for the resolve task after.resolve-1"), "{}", stderr(&out));
    let r = task(&rep, "after.resolve-1");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["role"], "developer");
    assert_eq!(r["resolve_of"], "after");
    assert_eq!(
        task(&rep, "after")["resolve_tasks"],
        serde_json::json!(["after.resolve-1"])
    );
    // Its worktree had the merge in progress, markers in the file.
    assert!(sb.prompt("after.resolve-1", 1).contains("calc.py"));
    let p = sb.prompt("after.resolve-1", 1);
    for s in [
        "`one` (developer role)",
        "`two` (tester role)",
        "Swapped the operands.",
        "Made add() take strings.",
        "both intents are kept",
        "- calc.py",
    ] {
        assert!(p.contains(s), "{s}: {p}");
    }
    let logs = std::fs::read_to_string(
        r["instance"]
            .as_str()
            .map(|i| sb.ws().join(i).join("logs/after.resolve-1.1.stdout.jsonl"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        logs.contains("<<<<<<< HEAD") && logs.contains(">>>>>>> "),
        "the conflict markers were in the file: {logs}"
    );
    // The resolution is a merge of both sides, and the waiting task starts from it.
    let res = r["commit"].as_str().unwrap();
    let parents = repo.git(&["rev-list", "--parents", "-n1", res]);
    assert_eq!(
        parents.split_whitespace().count(),
        3,
        "a merge commit: {parents}"
    );
    assert!(parents.contains(task(&rep, "two")["commit"].as_str().unwrap()));
    let after = task(&rep, "after");
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["base"], res);
    assert!(repo
        .show(res, "calc.py")
        .contains("int(b) + int(a)  # both"));
    assert_eq!(task(&rep, "later")["status"], "succeeded");
    assert_untouched(&repo, &before);
}

#[test]
fn a_resolve_task_that_leaves_markers_fails_and_the_waiting_task_is_skipped_with_the_reason() {
    let sb = Sandbox::new();
    config(&sb, "", "");
    let repo = Repo::init(
        &sb.path().join("repo"),
        &[("calc.py", "def add(a, b):\n    return a + b\n")],
    );
    let before = repo.user_state();
    let tasks = task_toml(
        "one",
        "developer",
        &[],
        "#fake read calc.py\n#fake edit calc.py \"return a + b\" \"return b + a\"",
    ) + &task_toml(
        "two",
        "developer",
        &[],
        "#fake read calc.py\n#fake edit calc.py \"return a + b\" \"return a + b + 0\"",
    ) + &task_toml("after", "reviewer", &["one", "two"], "#fake result \"x\"")
        + &task_toml("later", "developer", &["after"], "#fake result \"y\"");
    // The resolver says it succeeded but leaves the markers.
    let (out, rep) = run_git(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = task(&rep, "after.resolve-1");
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("conflict markers left in calc.py"),
        "{r}"
    );
    let after = task(&rep, "after");
    assert_eq!(after["status"], "skipped");
    let why = after["error"].as_str().unwrap();
    assert!(
        why.contains(
            "resolve task after.resolve-1 did not succeed: the conflict is not resolved: "
        ) && why.contains("conflict markers left in calc.py"),
        "{after}"
    );
    assert_eq!(task(&rep, "later")["status"], "skipped");
    // Its work is not lost: the attempt's commit is kept, markers and all.
    assert!(repo
        .show("refs/borg/attempts/after.resolve-1/1", "calc.py")
        .contains("<<<<<<<"));
    assert_untouched(&repo, &before);
}

#[test]
fn the_agents_own_commit_is_kept_and_borgs_commit_follows_it() {
    let sb = Sandbox::new();
    sb.write(
        ".gitconfig",
        "[user]\n\tname = Agent\n\temail = agent@example.com\n",
    );
    let repo = busy_user_repo(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let tasks = task_toml(
        "self",
        "developer",
        &[],
        "#fake read calc.py\n#fake edit calc.py \"a * b\" \"b * a\"\n#fake bash \"git commit -qam 'agent: swap mul operands'\"\n#fake write NOTES.md \"notes\\n\"\n#fake result \"Swapped, and wrote notes.\"",
    );
    let (out, rep) = run_git(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = repo.git(&["log", "--format=%s|%an", "main..borg/self"]);
    assert_eq!(
        log,
        "self: Swapped, and wrote notes.|".to_string()
            + task(&rep, "self")["instance"].as_str().unwrap()
            + "\nagent: swap mul operands|Agent\n"
    );
    assert!(repo.show("borg/self~1", "calc.py").contains("b * a"));
    assert!(!repo.exists_at("borg/self~1", "NOTES.md") && repo.exists_at("borg/self", "NOTES.md"));
    let files = task(&rep, "self")["files_changed"].clone();
    assert_eq!(
        files.as_array().unwrap().len(),
        2,
        "both commits count: {files}"
    );
    assert_untouched(&repo, &before);
}

#[test]
fn a_failed_attempts_work_is_kept_under_its_ref_and_the_retry_starts_clean() {
    let sb = Sandbox::new();
    config(&sb, "backoff_base = \"10ms\"", "");
    let repo = busy_user_repo(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let base = repo.rev("HEAD");
    let tasks = "[[task]]\nid = \"flaky\"\nretries = 1\nprompt = '''\n#fake first 1 write junk.txt \"half done\\n\"\n#fake first 1 bash \"echo broken >> calc.py\"\n#fake first 1 api-error 500 0\n#fake bash \"ls\"\n#fake write good.txt \"done\\n\"\n#fake result \"All good.\"\n'''\n";
    let (out, rep) = run_git(&sb, &repo, tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = task(&rep, "flaky");
    assert_eq!(t["attempts"], 2);
    // Attempt 1's work: committed to its ref, on top of the base.
    let a1 = "refs/borg/attempts/flaky/1";
    assert_eq!(repo.rev(&format!("{a1}~1")), base);
    assert!(repo.show(a1, "junk.txt").contains("half done"));
    assert!(repo.show(a1, "calc.py").contains("broken"));
    let subject = repo.git(&["log", "-1", "--format=%s%n%b", a1]);
    assert!(
        subject.starts_with("flaky (failed): API Error: 500"),
        "{subject}"
    );
    assert!(subject.contains("Borg-Attempt: 1"));
    // The retry started from the base: none of it leaked.
    assert!(!repo.exists_at("borg/flaky", "junk.txt"));
    assert!(!repo.show("borg/flaky", "calc.py").contains("broken"));
    assert_eq!(repo.rev("borg/flaky~1"), base);
    assert_eq!(
        t["files_changed"],
        serde_json::json!([{"path": "good.txt", "change": "created", "insertions": 1, "deletions": 0}])
    );
    assert_eq!(
        repo.rev("refs/borg/attempts/flaky/2"),
        repo.rev("borg/flaky")
    );
    // borg diff shows either attempt.
    let d1 = sb.succeed(&["diff", "flaky", "--attempt", "1"]);
    let d1 = String::from_utf8_lossy(&d1.stdout);
    assert!(d1.contains("+half done") && d1.contains("+broken"), "{d1}");
    let d2 = sb.succeed(&["diff", "flaky", "--stat"]);
    let d2 = String::from_utf8_lossy(&d2.stdout);
    assert!(
        d2.contains("good.txt | 1 +") && d2.contains("1 file changed, 1 insertion(+)"),
        "{d2}"
    );
    assert_untouched(&repo, &before);
}

#[test]
fn renames_deletions_and_binaries_come_from_git() {
    let sb = Sandbox::new();
    let repo = Repo::init(
        &sb.path().join("repo"),
        &[
            ("calc.py", CALC),
            ("old_name.py", "x = 1\ny = 2\nz = 3\n"),
            ("gone.txt", "bye\n"),
        ],
    );
    let before = repo.user_state();
    let tasks = task_toml(
        "moves",
        "developer",
        &[],
        "#fake bash \"git mv old_name.py new_name.py && rm gone.txt && printf 'a\\\\0b' > blob.bin && mkdir -p pkg && echo 'print(1)' > pkg/main.py\"\n#fake result \"Moved things.\"",
    );
    let (out, rep) = run_git(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files = task(&rep, "moves")["files_changed"].clone();
    let mut got: Vec<String> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.to_string())
        .collect();
    got.sort();
    let mut want = vec![
        r#"{"change":"created","deletions":0,"insertions":0,"path":"blob.bin"}"#.to_string(),
        r#"{"change":"created","deletions":0,"insertions":1,"path":"pkg/main.py"}"#.to_string(),
        r#"{"change":"deleted","deletions":1,"insertions":0,"path":"gone.txt"}"#.to_string(),
        r#"{"change":"renamed","deletions":0,"from":"old_name.py","insertions":0,"path":"new_name.py"}"#.to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        task(&rep, "moves")["diffstat"],
        serde_json::json!({"files": 4, "insertions": 1, "deletions": 1})
    );
    assert_untouched(&repo, &before);
}

#[test]
fn bad_repositories_and_ref_names_exit_2_and_create_nothing() {
    let sb = Sandbox::new();
    let plain = sb.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let empty = Repo::empty(&sb.path().join("empty"));
    let good = Repo::init(&sb.path().join("good"), &[("a.txt", "a\n")]);
    let before = good.user_state();
    let ok_list = sb.write("ok.toml", &one("fine", "#fake write x.txt \"x\""));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--repo".into(), plain.display().to_string()],
            "is not a git repository",
        ),
        (
            vec![
                "--repo".into(),
                sb.path().join("missing").display().to_string(),
            ],
            "is not a git repository",
        ),
        (
            vec!["--repo".into(), empty.dir.display().to_string()],
            "has no commits yet",
        ),
        (
            vec![
                "--repo".into(),
                good.dir.display().to_string(),
                "--base".into(),
                "no-such-rev".into(),
            ],
            "--base no-such-rev: not a commit",
        ),
    ];
    for (args, says) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.run_cmd(&ok_list, &a).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    for bad in ["x.lock", ".hidden", "trailing.", "two..dots"] {
        let list = sb.write("bad.toml", &one(bad, "p"));
        let out = sb
            .run_cmd(&list, &["--repo", good.dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("task id \"{bad}\" cannot be a git branch name")),
            "{}",
            stderr(&out)
        );
    }
    // A git too old for `merge-tree --write-tree`.
    let bin = sb.path().join("oldgit");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("git"), "#!/bin/sh\necho 'git version 2.30.2'\n").unwrap();
    std::fs::set_permissions(
        bin.join("git"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = sb
        .run_cmd(&ok_list, &["--repo", good.dir.to_str().unwrap()])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("git 2.30.2 is too old: borg needs git 2.38 or newer"),
        "{}",
        stderr(&out)
    );
    // Nothing was created: no workspaces, no child, no worktree, no ref.
    assert!(!sb.ws().exists(), "the workspaces folder was created");
    assert!(!sb.state().join("fine").exists(), "a child ran");
    assert_eq!(
        good.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    assert_untouched(&good, &before);
}

#[test]
fn the_repository_of_the_task_list_is_used_unless_a_template_or_no_repo_is_given() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("proj"), &[("calc.py", CALC)]);
    repo.write(
        "tasks.toml",
        &one(
            "auto",
            "#fake write auto.txt \"auto\\n\"\n#fake result \"Wrote it.\"",
        ),
    );
    repo.commit_all("the task list");
    let before = repo.user_state();
    let list = repo.dir.join("tasks.toml");
    let out = sb
        .run_cmd(&list, &["--json"])
        .current_dir(&repo.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = stderr(&out);
    assert!(
        line.contains(&format!(
            "borg: repository {} (the task list is in it; --no-repo to opt out), base {}",
            repo.dir.display(),
            &repo.rev("HEAD")[..7]
        )),
        "{line}"
    );
    assert!(repo.exists_at("borg/auto", "auto.txt"));
    assert_untouched(&repo, &before);

    // --no-repo: template mode, a plain folder.
    let sb2 = Sandbox::new();
    let out = sb2
        .run_cmd(&list, &["--no-repo", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    let inst = task(&rep, "auto")["instance"].as_str().unwrap().to_string();
    assert!(sb2
        .ws()
        .join(&inst)
        .join("project-files/auto.txt")
        .is_file());
    assert!(!sb2.ws().join(&inst).join("project-files/.git").exists());
    assert!(task(&rep, "auto").get("branch").is_none());
}

#[test]
fn workspaces_inside_the_work_tree_stay_out_of_the_users_git_status() {
    let sb = Sandbox::new();
    let repo = busy_user_repo(&sb.path().join("proj"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let list = sb.write("tasks.toml", &one("inside", "#fake write in.txt \"in\\n\""));
    let ws = repo.dir.join("workspaces");
    let out = sb
        .run_cmd(&list, &["--repo", repo.dir.to_str().unwrap()])
        .args(["--workspaces", ws.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("added /workspaces/ to"),
        "{}",
        stderr(&out)
    );
    assert!(ws.join("borg.db").is_file());
    assert_untouched(&repo, &before);
}

#[test]
fn a_resumed_run_keeps_its_base_and_base_picks_another() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let first = repo.rev("HEAD");
    let one_task = one("early", "#fake write early.txt \"e\\n\"");
    let (out, _) = run_git(&sb, &repo, &one_task, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The user commits; the list grows; the run resumes with the same base.
    repo.write("calc.py", "changed\n");
    let second = repo.commit_all("user work");
    let (out, rep) = run_git(
        &sb,
        &repo,
        &(one_task.clone() + &one("late", "#fake write late.txt \"l\\n\"")),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "base {} (kept from the earlier run; HEAD is now {})",
            &first[..7],
            &second[..7]
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(task(&rep, "late")["base"], first);
    // --base names another one.
    let (out, rep) = run_git(
        &sb,
        &repo,
        &(one_task + &one("later", "#fake write x.txt \"x\\n\"")),
        &["--base", "HEAD"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "later")["base"], second);
}

#[test]
fn a_fresh_store_refuses_to_move_the_branches_of_an_earlier_run() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let list = one("keep", "#fake write k.txt \"k\\n\"");
    let (out, _) = run_git(&sb, &repo, &list, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kept = repo.rev("borg/keep");
    std::fs::remove_dir_all(sb.ws()).unwrap();
    let out = sb.run(&list, &["--repo", repo.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "already has borg refs for tasks of this list from an earlier run (borg/keep"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(repo.rev("borg/keep"), kept);
    assert!(
        !sb.state().join("keep").join("argv.2.json").exists(),
        "no child started"
    );
}

#[test]
fn instances_show_their_branch_and_are_removed_with_git() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let (out, rep) = run_git(
        &sb,
        &repo,
        &one("listed", "#fake write l.txt \"l\\n\""),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let inst = task(&rep, "listed")["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let list = sb.succeed(&["instance", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("BRANCH") && text.contains("borg/listed (idle)"),
        "{text}"
    );
    let v = sb.json(&["instance", "list", "--json"]);
    assert_eq!(v[0]["branch"], "borg/listed (idle)");
    // A worktree with changes is not removed without --force.
    let pf = sb.ws().join(&inst).join("project-files");
    std::fs::write(pf.join("unsaved.txt"), "x").unwrap();
    let out = sb.borg(&["instance", "rm", &inst]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(pf.join("unsaved.txt").is_file());
    sb.succeed(&["instance", "rm", &inst, "--force"]);
    assert!(!sb.ws().join(&inst).exists());
    let wts = repo.git(&["worktree", "list", "--porcelain"]);
    assert!(!wts.contains(&inst), "git still knows the worktree: {wts}");
    assert!(
        !repo.dir.join(".git/worktrees").exists()
            || std::fs::read_dir(repo.dir.join(".git/worktrees"))
                .unwrap()
                .count()
                == 0
    );
    assert!(repo.has_ref("borg/listed"), "the branch stays");
    assert_untouched(&repo, &before);
}

#[test]
fn eight_worktrees_created_and_committed_at_the_same_moment_all_succeed() {
    let sb = Sandbox::new();
    let repo = busy_user_repo(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let mut tasks = String::new();
    for i in 0..8 {
        tasks += &one(
            &format!("par-{i}"),
            &format!("#fake write f{i}.txt \"{i}\\n\"\n#fake result \"Wrote f{i}.\""),
        );
    }
    tasks += &task_toml(
        "join",
        "reviewer",
        &(0..8)
            .map(|i| format!("par-{i}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "#fake bash \"ls f*.txt | wc -l\"",
    );
    let (out, rep) = run_git(&sb, &repo, &tasks, &["--concurrency", "8"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rep["totals"]["succeeded"], 9);
    assert_eq!(repo.borg_branches().len(), 9);
    let join = task(&rep, "join")["base"].as_str().unwrap().to_string();
    for i in 0..8 {
        assert!(repo.exists_at(&join, &format!("f{i}.txt")));
    }
    assert_untouched(&repo, &before);
}

#[test]
fn the_git_demo_ends_with_one_branch_per_task_and_a_diff() {
    let sb = Sandbox::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-git.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(sb.path().join("demo"))
        .env("BORG", borg_bin())
        .env("FAKE_CLAUDE", fake_bin())
        .env("IS_SANDBOX", "1")
        .env("HOME", sb.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let repo = Repo {
        dir: sb.path().join("demo/calc"),
    };
    assert_eq!(
        repo.borg_branches(),
        [
            "borg/add-sub",
            "borg/docs",
            "borg/fix-add",
            "borg/fix-add.tester-1",
            "borg/review"
        ]
    );
    assert!(text.contains("+def sub(a, b):"), "borg diff output: {text}");
    assert!(
        repo.show("borg/docs", "calc.py").contains("return a + b"),
        "the fix reached docs"
    );
    assert!(repo
        .show("borg/docs", "README.md")
        .contains("the sum of a and b"));
    let st = git_cmd(&repo.dir, &["status", "--porcelain"])
        .output()
        .unwrap();
    assert!(
        st.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
}

#[test]
fn the_repository_and_branch_prefix_come_from_the_config_or_the_environment() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let list = sb.write("tasks.toml", &one("from-env", "#fake write e.txt \"e\\n\""));
    let out = sb
        .run_cmd(&list, &[])
        .env("BORG_REPO", &repo.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("([workspace] repo / BORG_REPO)"),
        "{}",
        stderr(&out)
    );
    assert!(repo.exists_at("borg/from-env", "e.txt"));

    let base = format!(
        "[run]\nresult_grace = \"3s\"\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\n",
        sb.state().display()
    );
    sb.write("tmpl/t.txt", "t\n");
    sb.write(
        "config.toml",
        &format!("{base}\n[workspace]\nrepo = \"repo\"\ntemplate = \"tmpl\"\n"),
    );
    let out = sb.run_cmd(&list, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("both a workspace template"),
        "{}",
        stderr(&out)
    );
    // --template on the command line wins over the file's repository.
    let out = sb
        .run_cmd(&list, &["--template", "tmpl", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    sb.write(
        "config.toml",
        &format!("{base}\n[workspace]\nrepo = \"repo\"\n\n[git]\nbranch_prefix = \"agents/\"\nresolver_role = \"architect\"\n"),
    );
    let list = sb.write(
        "tasks.toml",
        &one("from-file", "#fake write f.txt \"f\\n\""),
    );
    let out = sb.run_cmd(&list, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(repo.exists_at("agents/from-file", "f.txt"));
    assert!(!repo.has_ref("borg/from-file"));
    sb.write(
        "config.toml",
        &format!("{base}\n[workspace]\nrepo = \"repo\"\n\n[git]\nbranch_prefix = \"a b/\"\n"),
    );
    let out = sb.run_cmd(&list, &["--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("branch_prefix = \"a b/\" does not make valid branch names"),
        "{}",
        stderr(&out)
    );
    // Refs under the configured prefix are borg's; the rest is the user's.
    repo.git(&["branch", "-q", "-D", "agents/from-file"]);
    assert_untouched(&repo, &before);
}

#[test]
fn a_conflict_without_markers_left_as_the_merge_wrote_it_is_not_a_resolution() {
    let sb = Sandbox::new();
    let repo = Repo::init(
        &sb.path().join("repo"),
        &[("data.txt", "one\ntwo\n"), ("calc.py", CALC)],
    );
    let before = repo.user_state();
    // One task edits the file, the other deletes it: git writes no markers.
    let tasks = task_toml(
        "edits",
        "developer",
        &[],
        "#fake bash \"echo three >> data.txt\"",
    ) + &task_toml(
        "deletes",
        "developer",
        &[],
        "#fake bash \"git rm -q data.txt\"",
    ) + &task_toml(
        "waits",
        "reviewer",
        &["edits", "deletes"],
        "#fake result \"x\"",
    );
    let (out, rep) = run_git(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = task(&rep, "waits.resolve-1");
    assert_eq!(r["status"], "failed");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("left unmerged as the merge wrote them: data.txt"),
        "{err}"
    );
    assert_eq!(task(&rep, "waits")["status"], "skipped");
    assert_untouched(&repo, &before);
}

#[test]
fn a_bare_repository_works_too() {
    let sb = Sandbox::new();
    let src = Repo::init(&sb.path().join("src"), &[("calc.py", CALC)]);
    let bare = sb.path().join("bare.git");
    git_cmd(
        &src.dir,
        &[
            "clone",
            "-q",
            "--bare",
            src.dir.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    )
    .status()
    .unwrap();
    let tasks = two_edits("#fake result \"Both.\"");
    let list = sb.write("tasks.toml", &tasks);
    let out = sb
        .run_cmd(&list, &["--repo", bare.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    let start = task(&rep, "review")["base"].as_str().unwrap().to_string();
    let calc = common::git::git(&bare, &["show", &format!("{start}:calc.py")]);
    assert!(
        calc.contains("def neg(a)") && calc.contains("def sub(a, b)"),
        "{calc}"
    );
    let branches = common::git::git(&bare, &["branch", "--list", "borg/*"]);
    assert_eq!(branches.lines().count(), 3, "{branches}");
    let fsck = git_cmd(&bare, &["fsck", "--no-progress", "--no-dangling"])
        .output()
        .unwrap();
    assert!(fsck.status.success());
}

#[test]
fn a_timed_out_attempts_work_is_kept_and_its_branch_stays_at_the_start() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let base = repo.rev("HEAD");
    let tasks = "[[task]]\nid = \"gm-slow-91d\"\ntimeout = \"2s\"\nprompt = '''\n#fake write wip.txt \"work in progress\\n\"\n#fake hang\n'''\n";
    let (out, rep) = run_git(&sb, &repo, tasks, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = task(&rep, "gm-slow-91d");
    assert_eq!(t["status"], "timed_out");
    let kept = "refs/borg/attempts/gm-slow-91d/1";
    assert!(repo.show(kept, "wip.txt").contains("work in progress"));
    assert_eq!(t["commit"], repo.rev(kept));
    assert!(repo
        .git(&["log", "-1", "--format=%s", kept])
        .starts_with("gm-slow-91d (timed_out)"));
    assert_eq!(
        repo.rev("borg/gm-slow-91d"),
        base,
        "the branch went back to the start"
    );
    let wt = sb
        .ws()
        .join(t["instance"].as_str().unwrap())
        .join("project-files");
    assert!(!wt.join("wip.txt").exists(), "the worktree was reset");
}

#[test]
fn the_repositorys_hooks_are_for_people_borg_runs_none() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let ran = sb.path().join("hook-ran");
    for hook in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "post-checkout",
        "pre-merge-commit",
    ] {
        let p = repo.dir.join(".git/hooks").join(hook);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho {hook} >> {}\nexit 1\n", ran.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let tasks = two_edits("#fake result \"Both.\"");
    let (out, rep) = run_git(&sb, &repo, &tasks, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rep["totals"]["succeeded"], 3);
    assert!(repo.show("borg/top", "calc.py").contains("def neg(a)"));
    assert!(
        !ran.exists(),
        "a hook ran: {:?}",
        std::fs::read_to_string(&ran)
    );
}
