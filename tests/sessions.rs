//! Sessions that continue (`session = "continue"`) and a Claude config folder per
//! instance, against fake-claude: the argv and prompt each child got, the fallback to a
//! fresh session when the CLI cannot resume, and `CLAUDE_CONFIG_DIR` per instance.

mod common;
use common::*;

/// fake-claude's session id of a task's attempt N (its argv record).
fn session_of(sb: &Sandbox, task: &str, n: usize) -> String {
    sb.argv(task)[n - 1]["session_id"]
        .as_str()
        .expect("a session id")
        .to_string()
}

fn resume_arg(argv: &serde_json::Value) -> Option<String> {
    argv_strings(argv)
        .into_iter()
        .find_map(|a| a.strip_prefix("--resume=").map(String::from))
}

/// Two tasks on one instance, the second after the first; `session` on the role.
fn two_on_one_instance(first: &str, second: &str) -> String {
    format!(
        "[defaults]\ninstance = \"dev-cont\"\nsession = \"continue\"\n\n\
         [[task]]\nid = \"{first}\"\nprompt = '''\n#fake write a.txt \"one\"\n#fake result \"first done\"\n'''\n\n\
         [[task]]\nid = \"{second}\"\ndepends_on = [\"{first}\"]\nprompt = '''\nSECOND TASK BODY\n#fake result \"second done\"\n'''\n"
    )
}

#[test]
fn a_continued_task_resumes_the_instance_session_with_only_the_new_task() {
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json(&two_on_one_instance("cont-a1", "cont-b1"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "cont-b1")["status"], "succeeded");
    // The first task had no session to continue: a fresh one, the full prompt.
    let first = &sb.argv("cont-a1")[0];
    assert_eq!(resume_arg(first), None, "{first}");
    let p1 = sb.prompt("cont-a1", 1);
    assert!(
        p1.contains("## Your task") && p1.contains("# Role: Developer"),
        "{p1}"
    );
    // The second resumes the first one's session, and its prompt is only the task.
    let s1 = session_of(&sb, "cont-a1", 1);
    let second = &sb.argv("cont-b1")[0];
    assert_eq!(resume_arg(second).as_deref(), Some(s1.as_str()), "{second}");
    let p = sb.prompt("cont-b1", 1);
    assert!(
        p.contains("## Your next task") && p.contains("SECOND TASK BODY"),
        "{p}"
    );
    assert!(
        !p.contains("## Your earlier tasks"),
        "history summary sent: {p}"
    );
    assert!(
        !p.contains("# Role: Developer"),
        "role context sent again: {p}"
    );
    assert!(p.contains("first done"), "dependency context missing: {p}");
    assert_eq!(task(&rep, "cont-b1")["session_id"], s1.as_str());
    let v = sb.json(&["task", "show", "cont-b1", "--json"]);
    assert_eq!(v["attempts"][0]["record"]["resumed_session"], s1.as_str());
}

#[test]
fn fresh_is_the_default_and_sends_the_history_summary() {
    let sb = Sandbox::new();
    let list = two_on_one_instance("fresh-a2", "fresh-b2").replace("session = \"continue\"\n", "");
    let (out, _) = sb.run_json(&list, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(resume_arg(&sb.argv("fresh-b2")[0]), None);
    let p = sb.prompt("fresh-b2", 1);
    assert!(
        p.contains("## Your earlier tasks") && p.contains("fresh-a2"),
        "{p}"
    );
}

#[test]
fn an_unknown_session_falls_back_to_a_fresh_one_at_once_and_says_so() {
    let sb = Sandbox::new();
    // fake-claude remembers the sessions it ran; with strict sessions, --resume of one
    // it does not know answers like the CLI: "No conversation found".
    sb.config("");
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("{cfg}FAKE_CLAUDE_STRICT_SESSIONS = \"1\"\n"),
    );
    let list = two_on_one_instance("lost-a3", "lost-b3");
    let first = "[defaults]\ninstance = \"dev-cont\"\n[[task]]\nid = \"lost-a3\"\nprompt = \"#fake result \\\"first done\\\"\"\n";
    let (out, _) = sb.run_json(first, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s1 = session_of(&sb, "lost-a3", 1);
    // The session is forgotten (as if its transcript were removed).
    std::fs::remove_dir_all(sb.state().join("sessions")).unwrap();
    let (out, rep) = sb.run_json(&list, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let b = task(&rep, "lost-b3");
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["attempts"], 1, "the fallback is part of the same attempt");
    let runs = sb.argv("lost-b3");
    assert_eq!(
        runs.len(),
        2,
        "the CLI should have run twice: resume, then fresh"
    );
    assert_eq!(resume_arg(&runs[0]).as_deref(), Some(s1.as_str()));
    assert_eq!(resume_arg(&runs[1]), None);
    assert!(sb.prompt("lost-b3", 2).contains("## Your task"));
    let v = sb.json(&["task", "show", "lost-b3", "--json"]);
    let rec = &v["attempts"][0]["record"];
    let note = rec["session_fallback"].as_str().unwrap_or("");
    assert!(note.contains(&s1) && note.contains("fresh"), "{rec}");
    assert!(rec["resumed_session"].is_null(), "{rec}");
}

#[test]
fn each_instance_gets_its_own_claude_config_folder_and_instance_rm_removes_it() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"cfg-a4\"\ninstance = \"cfg-one\"\nprompt = '''\n#fake bash \"echo $CLAUDE_CONFIG_DIR > seen.txt\"\n'''\n\
                 [[task]]\nid = \"cfg-b4\"\ninstance = \"cfg-two\"\nprompt = '''\n#fake bash \"echo $CLAUDE_CONFIG_DIR > seen.txt\"\n'''\n";
    // Two at once: per-instance is the default when concurrency > 1.
    let (out, _) = sb.run_json(tasks, &["--concurrency", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for inst in ["cfg-one", "cfg-two"] {
        let seen =
            std::fs::read_to_string(sb.ws().join(inst).join("project-files/seen.txt")).unwrap();
        let want = sb.ws().join(inst).join("claude-config");
        assert_eq!(seen.trim(), want.display().to_string());
        assert!(want.is_dir());
    }
    sb.succeed(&["instance", "rm", "cfg-one"]);
    assert!(!sb.ws().join("cfg-one/claude-config").exists());
    // One at a time and not asked for: the user's own folder, as before.
    let one = "[[task]]\nid = \"cfg-c4\"\ninstance = \"cfg-three\"\nprompt = '''\n#fake bash \"echo [$CLAUDE_CONFIG_DIR] > seen.txt\"\n'''\n";
    let (out, _) = sb.run_json(one, &["--concurrency", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = std::fs::read_to_string(sb.ws().join("cfg-three/project-files/seen.txt")).unwrap();
    assert_eq!(seen.trim(), "[]");
    assert!(!sb.ws().join("cfg-three/claude-config").exists());
}

#[test]
fn a_subscription_login_is_linked_into_the_instance_folder_never_copied() {
    let sb = Sandbox::new();
    // The sandbox's HOME is its own folder: a login there.
    let user = sb.path().join(".claude");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join(".credentials.json"),
        "{\"secret\":\"do-not-log-me\"}",
    )
    .unwrap();
    sb.config("");
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("[claude]\nconfig_dir = \"per-instance\"\n{cfg}"),
    );
    let (out, _) = sb.run_json(
        "[[task]]\nid = \"login-a5\"\ninstance = \"login-one\"\nprompt = \"#fake result \\\"ok\\\"\"\n",
        &["--concurrency", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let link = sb.ws().join("login-one/claude-config/.credentials.json");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "copied, not linked");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        user.join(".credentials.json")
    );
    assert!(!stderr(&out).contains("do-not-log-me"));
    for f in walk(&sb.ws()) {
        if std::fs::symlink_metadata(&f).unwrap().file_type().is_file() {
            let text = std::fs::read(&f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains("do-not-log-me"),
                "the credentials reached {}",
                f.display()
            );
        }
    }
}

/// Every path under `dir` (symlinks not followed).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}
