//! Agents that coordinate while they run (issue 15), end to end: `borg run` with
//! fake-claude children that call borg's MCP tools (`#fake mcp TOOL JSON`) and whose
//! Write/Edit steps run borg's PreToolUse hook from the per-attempt settings, exactly
//! as the real CLI does. File leases (explicit and auto), the fair wait, deadlock
//! detection, decisions and messages reaching later prompts, agent-created tasks and
//! their bound, lease violations through the shell, a server that does not start.
//!
//! Task ids carry a `-cx` suffix: `task_procs` scans every process on the machine.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/template");

/// The parsed stdout transcript of a task's attempt 1.
fn transcript(sb: &Sandbox, report: &Value, id: &str) -> Vec<Value> {
    let inst = task(report, id)["instance"].as_str().unwrap().to_string();
    let log = sb
        .ws()
        .join(inst)
        .join("logs")
        .join(format!("{id}.1.stdout.jsonl"));
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The tool results of a transcript, in order: (tool name, is_error, content text).
fn results(t: &[Value]) -> Vec<(String, bool, String)> {
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for l in t {
        for b in l["message"]["content"].as_array().into_iter().flatten() {
            if b["type"] == "tool_use" {
                names.insert(
                    b["id"].as_str().unwrap_or("").to_string(),
                    b["name"].as_str().unwrap_or("").to_string(),
                );
            }
            if b["type"] == "tool_result" {
                let name = names
                    .get(b["tool_use_id"].as_str().unwrap_or(""))
                    .cloned()
                    .unwrap_or_default();
                let text = match &b["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push((name, b["is_error"] == true, text));
            }
        }
    }
    out
}

fn project(sb: &Sandbox, report: &Value, id: &str) -> PathBuf {
    let inst = task(report, id)["instance"].as_str().unwrap().to_string();
    sb.ws().join(inst).join("project-files")
}

fn run_ok(sb: &Sandbox, tasks: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--template", TEMPLATE];
    args.extend_from_slice(extra);
    let (out, rep) = sb.run_json(tasks, &args);
    assert!(out.status.code().is_some(), "{}", stderr(&out));
    rep
}

#[test]
fn a_second_agent_is_denied_a_leased_file_and_gets_it_by_waiting_when_the_first_ends() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}",
        one(
            "first-cx",
            r#"#fake mcp lock_files '{"paths":["calc.py"],"reason":"fixing add"}'
#fake write notes.md "auto-locked by its first write"
#fake read calc.py
#fake write calc.py "first\n"
#fake sleep 2500"#
        ),
        one(
            "second-cx",
            r#"#fake sleep 1000
#fake read calc.py
#fake write calc.py "denied\n"
#fake write notes.md "denied too"
#fake mcp lock_files '{"paths":["calc.py"],"reason":"my turn","wait_s":60}'
#fake write calc.py "second\n""#
        ),
    );
    let rep = run_ok(&sb, &tasks, &["--concurrency", "2"]);
    assert_eq!(task(&rep, "first-cx")["status"], "succeeded", "{rep:#}");
    assert_eq!(task(&rep, "second-cx")["status"], "succeeded", "{rep:#}");
    let first_inst = task(&rep, "first-cx")["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let r = results(&transcript(&sb, &rep, "second-cx"));
    // The explicit lease: the Write is denied naming the holder, its task and reason.
    let denied = &r[1];
    assert_eq!(denied.0, "Write");
    assert!(denied.1, "{r:#?}");
    assert!(
        denied.2.contains("calc.py is locked by")
            && denied.2.contains(&first_inst)
            && denied.2.contains("first-cx")
            && denied.2.contains("fixing add"),
        "{}",
        denied.2
    );
    // The auto-lock of the first's first write: denied too, and the file untouched.
    assert!(r[2].1 && r[2].2.contains("notes.md is locked by"), "{r:#?}");
    assert!(!project(&sb, &rep, "second-cx").join("notes.md").exists());
    // The wait is granted once the first ends (its leases go with it), then the write.
    assert!(
        !r[3].1 && r[3].2.contains("\"granted\":[\"calc.py\"]"),
        "{r:#?}"
    );
    assert!(!r[4].1, "{r:#?}");
    assert_eq!(
        std::fs::read_to_string(project(&sb, &rep, "second-cx").join("calc.py")).unwrap(),
        "second\n"
    );
    // The denials are in the result's permission_denials, as the CLI lists them.
    let t = transcript(&sb, &rep, "second-cx");
    let res = t.iter().find(|l| l["type"] == "result").unwrap();
    assert_eq!(res["permission_denials"].as_array().unwrap().len(), 2);
    // Nothing is held after the run.
    let locks = sb.json(&["locks", "--json"]);
    assert_eq!(locks.as_array().unwrap().len(), 0, "{locks:#}");
}

#[test]
fn a_wait_that_would_close_a_cycle_is_refused_at_once_naming_it() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}",
        one(
            "hold-a-cx",
            r#"#fake mcp lock_files '{"paths":["a.txt"],"reason":"a first"}'
#fake sleep 800
#fake mcp lock_files '{"paths":["b.txt"],"reason":"then b","wait_s":60}'"#
        ),
        one(
            "hold-b-cx",
            r#"#fake mcp lock_files '{"paths":["b.txt"],"reason":"b first"}'
#fake sleep 2500
#fake mcp lock_files '{"paths":["a.txt"],"reason":"then a","wait_s":60}'"#
        ),
    );
    let rep = run_ok(&sb, &tasks, &["--concurrency", "2"]);
    let b = results(&transcript(&sb, &rep, "hold-b-cx"));
    let refused = &b[1];
    assert!(
        !refused.1,
        "a refusal is an answer, not a tool error: {b:#?}"
    );
    assert!(refused.2.contains("\"deadlock\":true"), "{}", refused.2);
    for word in ["deadlock", "a.txt", "b.txt", "hold-a-cx", "hold-b-cx"] {
        assert!(refused.2.contains(word), "{word} in {}", refused.2);
    }
    // Refused at once: the B task did not wait out its 60 s.
    assert!(
        task(&rep, "hold-b-cx")["duration_ms"].as_u64().unwrap() < 20_000,
        "{rep:#}"
    );
    // A's wait is granted when B ends.
    let a = results(&transcript(&sb, &rep, "hold-a-cx"));
    assert!(a[1].2.contains("\"granted\":[\"b.txt\"]"), "{a:#?}");
}

#[test]
fn decisions_and_messages_reach_later_prompts_and_the_cli() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}[[task]]\nid = \"check-cx\"\nrole = \"tester\"\ndepends_on = [\"decide-cx\"]\nprompt = '''\n#fake mcp read_messages\n'''\n",
        one(
            "decide-cx",
            r#"#fake mcp log_decision '{"category":"api-design","title":"Use JWT with 15min expiry","description":"refresh tokens last 7 days","scope":"auth"}'
#fake mcp send_message '{"to":"tester","subject":"tokens","body":"please test the expiry of JWT tokens"}'"#
        ),
        one("later-cx", "#fake text \"nothing\"").replace("[[task]]\nid = \"later-cx\"", "[[task]]\nid = \"later-cx\"\ndepends_on = [\"decide-cx\"]"),
    );
    let rep = run_ok(&sb, &tasks, &[]);
    for id in ["decide-cx", "later-cx", "check-cx"] {
        assert_eq!(task(&rep, id)["status"], "succeeded", "{rep:#}");
    }
    let id = task(&rep, "decide-cx")["decisions"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        regex::Regex::new(r"^DEC-\d{8}-0001$")
            .unwrap()
            .is_match(&id),
        "{id}"
    );
    // A later task's prompt carries the decision; the tester's the message to its role.
    let later = sb.prompt("later-cx", 1);
    assert!(
        later.contains(&format!("[{id}] Use JWT with 15min expiry (api-design)")),
        "{later}"
    );
    assert!(
        !later.contains("please test the expiry"),
        "not for a developer: {later}"
    );
    let tester = sb.prompt("check-cx", 1);
    assert!(
        tester.contains("please test the expiry of JWT tokens"),
        "{tester}"
    );
    // Delivered in the prompt, so read: read_messages has nothing left.
    let r = results(&transcript(&sb, &rep, "check-cx"));
    assert!(r[0].2.contains("\"count\":0"), "{r:#?}");
    assert_eq!(task(&rep, "decide-cx")["messages"]["sent"], 1);
    assert_eq!(task(&rep, "check-cx")["messages"]["received"], 1);
    // People see both.
    let list = sb.succeed(&["decisions", "list", "--category", "api-design"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(&id) && text.contains("Use JWT with 15min expiry"),
        "{text}"
    );
    let msgs = sb.json(&["messages", "list", "--json"]);
    assert_eq!(
        msgs[0]["to"],
        serde_json::json!({"kind": "role", "name": "tester"})
    );
    assert_eq!(msgs[0]["read_by"].as_array().unwrap().len(), 1);
    let status = sb.json(&["status", "--json"]);
    assert_eq!(status["decisions"][0]["id"], id.as_str());
    assert_eq!(
        status["messages"][0]["body"],
        "please test the expiry of JWT tokens"
    );
}

#[test]
fn a_person_joins_the_conversation_from_the_command_line() {
    let sb = Sandbox::new();
    sb.create_instance("developer", "dev-cx");
    let id = String::from_utf8_lossy(
        &sb.succeed(&[
            "decisions",
            "add",
            "--category",
            "testing",
            "--title",
            "pytest only",
            "--description",
            "no unittest",
        ])
        .stdout,
    )
    .trim()
    .to_string();
    sb.succeed(&[
        "messages",
        "send",
        "--to",
        "dev-cx",
        "use the fixtures in conftest",
    ]);
    let rep = run_ok(
        &sb,
        &one("pinned-cx", "#fake mcp read_messages")
            .replace("prompt =", "instance = \"dev-cx\"\nprompt ="),
        &[],
    );
    let p = sb.prompt("pinned-cx", 1);
    assert!(p.contains(&format!("[{id}] pytest only (testing)")), "{p}");
    assert!(
        p.contains("from user to instance:dev-cx: use the fixtures in conftest"),
        "{p}"
    );
    assert_eq!(task(&rep, "pinned-cx")["status"], "succeeded");
    // Bad recipients and empty fields are refused with exit 2.
    let o = sb
        .borg(&["messages", "send", "--to", "nobody-cx", "hi"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no instance, role or task named"),
        "{}",
        stderr(&o)
    );
    let o = sb
        .borg(&[
            "decisions",
            "add",
            "--category",
            "x",
            "--title",
            " ",
            "--description",
            "d",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn tasks_created_by_an_agent_run_in_the_same_run_and_the_21st_is_refused() {
    let sb = Sandbox::new();
    let mut prompt = String::new();
    for n in 1..=21 {
        prompt.push_str(&format!(
            "#fake mcp create_task '{{\"id\":\"made-{n}-cx\",\"role\":\"tester\",\"prompt\":\"#fake text made {n}\"}}'\n"
        ));
    }
    let rep = run_ok(
        &sb,
        &one("maker-cx", prompt.trim_end()),
        &["--concurrency", "4"],
    );
    let r = results(&transcript(&sb, &rep, "maker-cx"));
    assert_eq!(r.len(), 21);
    assert!(r[..20].iter().all(|x| !x.1), "{r:#?}");
    assert!(
        r[20].1 && r[20].2.contains("max_agent_tasks"),
        "{:?}",
        r[20]
    );
    for n in 1..=20 {
        assert_eq!(
            task(&rep, &format!("made-{n}-cx"))["status"],
            "succeeded",
            "{rep:#}"
        );
    }
    assert!(rep["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != "made-21-cx"));
    assert_eq!(
        task(&rep, "maker-cx")["created_tasks"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(rep["totals"]["tasks"], 21);
}

#[test]
fn a_shell_change_to_a_leased_file_is_a_violation_and_fails_the_attempt_when_asked() {
    let sb = Sandbox::new();
    sb.write("config.toml", &format!(
        "[run]\nresult_grace = \"3s\"\n\n[coord]\non_violation = \"fail\"\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\n",
        sb.state().display()
    ));
    let tasks = format!(
        "{}{}",
        one(
            "owner-cx",
            r#"#fake mcp lock_files '{"paths":["calc.py"],"reason":"mine"}'
#fake sleep 3000"#
        ),
        one(
            "sneaky-cx",
            r#"#fake sleep 1000
#fake bash "sed -i s/a/b/ calc.py"
#fake text "should not get here""#
        ),
    );
    let rep = run_ok(&sb, &tasks, &["--concurrency", "2"]);
    let s = task(&rep, "sneaky-cx");
    assert_eq!(s["status"], "out_of_scope", "{rep:#}");
    assert_eq!(s["fault"], "out_of_scope");
    let owner = task(&rep, "owner-cx")["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let v = &s["lease_violations"][0];
    assert_eq!(v["path"], "calc.py");
    assert_eq!(v["holder_instance"], owner.as_str());
    assert_eq!(v["holder_task"], "owner-cx");
    assert!(s["error"].as_str().unwrap().contains("calc.py"), "{s:#}");
    // The hook stopped the agent after the Bash call: its later text never came.
    let t = transcript(&sb, &rep, "sneaky-cx");
    assert!(!t
        .iter()
        .any(|l| l.to_string().contains("should not get here")));
}

#[test]
fn a_shell_change_to_a_leased_file_is_told_and_recorded_under_warn() {
    let sb = Sandbox::new();
    let tasks = format!(
        "{}{}",
        one("owner2-cx", "#fake mcp lock_files '{\"paths\":[\"calc.py\"],\"reason\":\"mine\"}'\n#fake sleep 3000"),
        one("sneaky2-cx", "#fake sleep 1000\n#fake bash \"sed -i s/a/b/ calc.py\"\n#fake bash \"touch other.txt\""),
    );
    let rep = run_ok(&sb, &tasks, &["--concurrency", "2"]);
    let s = task(&rep, "sneaky2-cx");
    assert_eq!(s["status"], "succeeded", "{rep:#}");
    let v = s["lease_violations"].as_array().unwrap();
    assert_eq!(v.len(), 1, "{s:#}");
    assert_eq!(v[0]["path"], "calc.py");
}

#[test]
fn a_role_scope_and_borgs_own_files_are_enforced_before_the_write() {
    let sb = Sandbox::new();
    sb.write(
        "roles/tester.md",
        "+++\nwritable = [\"tests/**\", \"*.md\"]\n+++\nYou test.\n",
    );
    sb.write("roles/developer.md", "You develop.\n");
    let tasks = "[[task]]\nid = \"scoped-cx\"\nrole = \"tester\"\nprompt = '''\n#fake write tests/test_x.py \"ok\"\n#fake write NOTES.md \"ok\"\n#fake write src/x.py \"no\"\n#fake write ../coord/settings.json \"{}\"\n'''\n";
    let rep = run_ok(
        &sb,
        tasks,
        &["--roles", sb.path().join("roles").to_str().unwrap()],
    );
    let r = results(&transcript(&sb, &rep, "scoped-cx"));
    assert!(!r[0].1 && !r[1].1, "{r:#?}");
    assert!(
        r[2].1 && r[2].2.contains("outside the tester role's scope") && r[2].2.contains("tests/**"),
        "{r:#?}"
    );
    assert!(r[3].1, "{r:#?}");
    let pf = project(&sb, &rep, "scoped-cx");
    assert!(pf.join("tests/test_x.py").exists() && !pf.join("src/x.py").exists());
}

#[test]
fn a_borg_server_that_fails_at_start_fails_the_attempt_and_a_hung_one_is_killed() {
    let sb = Sandbox::new();
    let cfg = |extra: &str| {
        format!(
        "[run]\nresult_grace = \"3s\"\nleak_timeout = \"500ms\"\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\n{extra}\n",
        sb.state().display()
    )
    };
    sb.write("config.toml", &cfg("BORG_MCP_FAULT = \"exit\""));
    let rep = run_ok(&sb, &one("nomcp-cx", "#fake text hi"), &[]);
    let t = task(&rep, "nomcp-cx");
    assert_eq!(t["status"], "failed", "{rep:#}");
    assert_eq!(t["fault"], "coordination_unavailable");
    assert!(t["error"].as_str().unwrap().contains("failed"), "{t:#}");
    // A server that never answers: claude gives up (MCP_TIMEOUT) and leaves it running
    // in its process group, as the real CLI does; borg's tree kill ends it.
    sb.write(
        "config.toml",
        &cfg("BORG_MCP_FAULT = \"hang\"\nMCP_TIMEOUT = \"1500\""),
    );
    let rep = run_ok(&sb, &one("hungmcp-cx", "#fake text hi"), &[]);
    assert_eq!(
        task(&rep, "hungmcp-cx")["fault"],
        "coordination_unavailable",
        "{rep:#}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || task_procs("hungmcp-cx")
            .is_empty()),
        "{:?}",
        task_procs("hungmcp-cx")
    );
}

#[test]
fn the_child_gets_the_mcp_config_settings_and_setting_sources() {
    let sb = Sandbox::new();
    sb.write("config.toml", &format!(
        "[coord]\nstrict_mcp = true\n\n[claude]\nallowed_tools = [\"Read\"]\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nANTHROPIC_API_KEY = \"sk-test-secret\"\n",
        sb.state().display()
    ));
    let rep = run_ok(&sb, &one("argv-cx", "#fake mcp status"), &[]);
    assert_eq!(task(&rep, "argv-cx")["status"], "succeeded", "{rep:#}");
    let argv = argv_strings(&sb.argv("argv-cx")[0]);
    let inst = task(&rep, "argv-cx")["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = sb.ws().join(&inst).join("coord");
    assert!(
        argv.contains(&format!("--mcp-config={}", dir.join("mcp.json").display())),
        "{argv:?}"
    );
    assert!(
        argv.contains(&format!(
            "--settings={}",
            dir.join("settings.json").display()
        )),
        "{argv:?}"
    );
    for a in [
        "--strict-mcp-config",
        "--setting-sources=user",
        "--allowedTools=Read,mcp__borg",
    ] {
        assert!(argv.iter().any(|x| x == a), "{a} in {argv:?}");
    }
    let mcp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mcp.json")).unwrap()).unwrap();
    assert_eq!(mcp["mcpServers"]["borg"]["alwaysLoad"], true);
    assert_eq!(
        mcp["mcpServers"]["borg"]["args"],
        serde_json::json!(["mcp"])
    );
    let t = transcript(&sb, &rep, "argv-cx");
    assert_eq!(
        t[0]["mcp_servers"],
        serde_json::json!([{"name": "borg", "status": "connected"}])
    );
    assert!(t[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "mcp__borg__lock_files"));
    // No credential in borg's files for the child.
    for f in ["mcp.json", "settings.json"] {
        assert!(!std::fs::read_to_string(dir.join(f))
            .unwrap()
            .contains("sk-test-secret"));
    }
}

/// The files of a path, for `Path` comparisons in messages.
#[allow(dead_code)]
fn show(p: &Path) -> String {
    p.display().to_string()
}
