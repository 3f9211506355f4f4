//! Task-list parsing and validation through the public API.

use borg::input::tasklist::{parse_str, TaskList, TaskListError};
use std::path::Path;
use std::time::{Duration, Instant};

fn roles() -> Vec<String> {
    ["architect", "developer", "documenter", "reviewer", "tester"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn parse(text: &str) -> Result<TaskList, TaskListError> {
    parse_str(Path::new("tasks.toml"), text, &roles())
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A task "x" with prompt "p" and the `extra` lines (each ending in a newline).
fn task_x(extra: &str) -> String {
    format!("[[task]]\nid = \"x\"\nprompt = \"p\"\n{extra}")
}

const EXAMPLE: &str = r#"
[defaults]            # optional: any task field
role = "developer"
timeout = "30m"

[[task]]
id = "db"
prompt = "Create the schema."

[[task]]
id = "auth-api"        # required, unique, [A-Za-z0-9._-]
prompt = "..."         # required
role = "developer"     # default: developer
priority = 0           # higher first among ready tasks
depends_on = ["db"]    # starts only after all of these succeeded
timeout = "15m"        # humantime
retries = 0
handoff_to = "tester"  # optional: after success, a follow-up task for that role
instance = "dev-1"     # optional: pin to one instance
env = { KEY = "v" }    # optional: extra environment for the child
"#;

#[test]
fn example_parses_with_defaults_applied() {
    let list = parse(EXAMPLE).unwrap();
    assert_eq!(list.tasks.len(), 2);
    let db = &list.tasks[0];
    assert_eq!(db.id, "db");
    assert_eq!(db.role, "developer");
    assert_eq!(db.timeout, Some(Duration::from_secs(1800)));
    assert_eq!(db.order, 0);
    let t = &list.tasks[1];
    assert_eq!(t.id, "auth-api");
    assert_eq!(t.prompt, "...");
    assert_eq!(t.depends_on, vec!["db"]);
    assert_eq!(t.timeout, Some(Duration::from_secs(900)));
    assert_eq!(t.retries, Some(0));
    assert_eq!(t.handoff_to.as_deref(), Some("tester"));
    assert_eq!(t.instance.as_deref(), Some("dev-1"));
    assert_eq!(t.env.get("KEY").map(String::as_str), Some("v"));
    assert_eq!(t.order, 1);
}

#[test]
fn optional_fields_and_defaults() {
    let list = parse(
        r#"
[defaults]
env = { A = "1", B = "2" }
model = "sonnet"
[[task]]
id = "x"
prompt = "p"
idle_timeout = "2m"
result_grace = "10s"
max_turns = 5
max_budget_usd = 1.5
permission_mode = "acceptEdits"
env = { B = "3" }
"#,
    )
    .unwrap();
    let t = &list.tasks[0];
    assert_eq!(t.role, "developer");
    assert_eq!(t.priority, 0);
    assert_eq!(t.timeout, None);
    assert_eq!(t.idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(t.result_grace, Some(Duration::from_secs(10)));
    assert_eq!(t.max_turns, Some(5));
    assert_eq!(t.max_budget_usd, Some(1.5));
    assert_eq!(t.permission_mode.as_deref(), Some("acceptEdits"));
    assert_eq!(t.model.as_deref(), Some("sonnet"));
    assert_eq!(t.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(t.env.get("B").map(String::as_str), Some("3"));
}

#[test]
fn syntax_error_has_file_line_column() {
    let e = parse("[[task]]\nid = \"a\"\nprompt = = \"x\"\n").unwrap_err();
    match &e {
        TaskListError::Syntax { line, column, .. } => {
            assert_eq!(*line, 3);
            assert!(*column > 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("tasks.toml:3:"), "{e}");
}

#[test]
fn unknown_key_names_key_and_task() {
    let m = err("[[task]]\nid = \"a\"\nprompt = \"x\"\npromt = \"y\"\n");
    assert!(m.contains("task \"a\""), "{m}");
    assert!(m.contains("unknown key \"promt\""), "{m}");
    assert!(m.contains("did you mean \"prompt\""), "{m}");
    assert!(m.contains("line 4"), "{m}");
    let m = err("[[tasks]]\nid = \"a\"\n");
    assert!(m.starts_with("tasks.toml:1:"), "{m}");
    assert!(m.contains("tasks"), "{m}");
}

#[test]
fn duplicate_ids() {
    let m = err("[[task]]\nid = \"a\"\nprompt = \"x\"\n\n[[task]]\nid = \"a\"\nprompt = \"y\"\n");
    assert!(
        m.contains("duplicate task id \"a\" (first defined on line 1)"),
        "{m}"
    );
    assert!(m.contains("line 5"), "{m}");
}

#[test]
fn invalid_id_characters() {
    for id in ["a b", "a/b", "..", "", "é"] {
        let m = err(&format!("[[task]]\nid = {id:?}\nprompt = \"x\"\n"));
        assert!(m.contains("not a valid id"), "{m}");
    }
    let m = err("[[task]]\nprompt = \"x\"\n");
    assert!(m.contains("task #1 has no id"), "{m}");
}

#[test]
fn unknown_dependency() {
    let m = err("[[task]]\nid = \"a\"\nprompt = \"x\"\n[[task]]\nid = \"b\"\nprompt = \"x\"\ndepends_on = [\"zz\"]\n");
    assert!(
        m.contains("task \"b\" depends on \"zz\", which is not in the list"),
        "{m}"
    );
    assert!(m.contains("line 4"), "{m}");
}

#[test]
fn cycles_are_printed() {
    let m = err(
        "[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"b\"]\n[[task]]\nid = \"b\"\nprompt = \"x\"\ndepends_on = [\"a\"]\n",
    );
    assert!(m.contains("dependency cycle: a -> b -> a"), "{m}");
    let m = err("[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = [\"a\"]\n");
    assert!(m.contains("dependency cycle: a -> a"), "{m}");
    // A cycle reached through a tail is printed without the tail.
    let m = err(
        "[[task]]\nid = \"s\"\nprompt = \"x\"\ndepends_on = [\"c1\"]\n\
         [[task]]\nid = \"c1\"\nprompt = \"x\"\ndepends_on = [\"c2\"]\n\
         [[task]]\nid = \"c2\"\nprompt = \"x\"\ndepends_on = [\"c3\"]\n\
         [[task]]\nid = \"c3\"\nprompt = \"x\"\ndepends_on = [\"c1\"]\n",
    );
    assert!(m.contains("dependency cycle: c1 -> c2 -> c3 -> c1"), "{m}");
}

#[test]
fn unknown_roles() {
    let m = err(&task_x("role = \"testr\"\n"));
    assert!(
        m.contains("unknown role \"testr\" in task \"x\"; roles that exist: architect, developer, documenter, reviewer, tester"),
        "{m}"
    );
    let m = err(&task_x("handoff_to = \"testr\"\n"));
    assert!(
        m.contains("handoff_to: unknown role \"testr\" in task \"x\"; roles that exist"),
        "{m}"
    );
    assert!(m.contains("line 4"), "{m}");
}

#[test]
fn bad_durations_and_values() {
    let m = err(&task_x("timeout = \"5 parsecs\"\n"));
    assert!(
        m.contains("task \"x\": timeout = \"5 parsecs\": not a duration"),
        "{m}"
    );
    assert!(m.contains("line 4"), "{m}");
    let m = err("[defaults]\nidle_timeout = \"soon\"\n[[task]]\nid = \"x\"\nprompt = \"p\"\n");
    assert!(
        m.contains("[defaults]: idle_timeout = \"soon\": not a duration"),
        "{m}"
    );
    let m = err(&task_x("priority = \"high\"\n"));
    assert!(
        m.contains("priority = \"high\": expected an integer"),
        "{m}"
    );
    let m = err(&task_x("retries = -1\n"));
    assert!(m.contains("retries = -1"), "{m}");
    let m = err(&task_x("max_budget_usd = -2.0\n"));
    assert!(m.contains("max_budget_usd"), "{m}");
    let m = err(&task_x("permission_mode = \"yolo\"\n"));
    assert!(m.contains("unknown permission mode"), "{m}");
    let m = err(&task_x("instance = \"../etc\"\n"));
    assert!(m.contains("not a valid instance id"), "{m}");
}

#[test]
fn prompt_missing_or_empty() {
    let m = err("[[task]]\nid = \"x\"\n");
    assert!(m.contains("task \"x\" has no prompt"), "{m}");
    let m = err("[[task]]\nid = \"x\"\nprompt = \"  \\n \"\n");
    assert!(m.contains("task \"x\": prompt is empty"), "{m}");
}

#[test]
fn empty_list_is_an_error() {
    for text in ["", "# nothing\n", "[defaults]\nrole = \"tester\"\n"] {
        let m = err(text);
        assert!(m.contains("no tasks"), "{m}");
    }
}

#[test]
fn empty_role_list_skips_role_check() {
    let list = parse_str(
        Path::new("t.toml"),
        "[[task]]\nid = \"x\"\nprompt = \"p\"\nrole = \"anything\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(list.tasks[0].role, "anything");
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "\u{0}\u{1}",
        "[[task]]\nid = 5\n",
        "task = 3",
        "[[task]]\nid = \"a\"\nprompt = \"x\"\ndepends_on = 7\n",
        "[[task]]\nid = \"a\"\nprompt = \"x\"\nenv = \"no\"\n",
        "[[task]]\nid = \"a\"\nprompt = \"x\"\nenv = { \"A=B\" = \"1\" }\n",
        "[defaults]\nid = \"a\"\n[[task]]\nid = \"b\"\nprompt = \"x\"\n",
        "[[task]]\nid = \"a\"\nprompt = [\"x\"]\n",
        "[[task]]\nid = \"a\"\nprompt = \"x\"\ntimeout = 1.5\n",
        "[[task]]\nid = \"a\"\nprompt = \"x\"\nmax_turns = 0\n",
    ];
    for s in samples {
        assert!(parse(s).is_err(), "{s}");
    }
}

fn generated(n: usize) -> String {
    let mut s = String::from("[defaults]\nrole = \"developer\"\ntimeout = \"10m\"\n\n");
    for i in 0..n {
        s.push_str(&format!(
            "[[task]]\nid = \"t{i}\"\nprompt = \"do thing {i}\"\npriority = {}\n",
            i % 7
        ));
        // A long chain plus a few extra edges: the worst case for a recursive search.
        if i > 0 {
            s.push_str(&format!("depends_on = [\"t{}\"", i - 1));
            if i > 10 {
                s.push_str(&format!(", \"t{}\"", i / 2));
            }
            s.push_str("]\n");
        }
        s.push('\n');
    }
    s
}

#[test]
fn ten_thousand_tasks_parse_fast() {
    let text = generated(10_000);
    let t0 = Instant::now();
    let list = parse(&text).unwrap();
    let took = t0.elapsed();
    assert_eq!(list.tasks.len(), 10_000);
    println!("10 000 tasks with dependencies parsed and validated in {took:?}");
}

#[test]
fn ten_thousand_long_cycle_is_found_without_overflow() {
    let mut text = generated(10_000);
    text = text.replacen(
        "id = \"t0\"\nprompt = \"do thing 0\"\n",
        "id = \"t0\"\nprompt = \"do thing 0\"\ndepends_on = [\"t9999\"]\n",
        1,
    );
    let m = err(&text);
    assert!(m.contains("dependency cycle: t0 -> t9999 -> t9998"), "{m}");
    assert!(m.contains("(9981 more) -> t9 -> "), "{m}");
    assert!(m.ends_with("t1 -> t0"), "{m}");
}

#[test]
fn inherited_dependency_skips_the_task_it_names() {
    let list = parse(
        "[defaults]\ndepends_on = [\"setup\"]\n[[task]]\nid = \"setup\"\nprompt = \"p\"\n[[task]]\nid = \"work\"\nprompt = \"p\"\n",
    )
    .unwrap();
    assert!(list.tasks[0].depends_on.is_empty());
    assert_eq!(list.tasks[1].depends_on, vec!["setup"]);
}

#[test]
fn session_is_fresh_or_continue_and_defaults_apply() {
    use borg::input::tasklist::SessionMode;
    let l = parse(&format!(
        "[defaults]\nsession = \"continue\"\n{}[[task]]\nid = \"y\"\nprompt = \"p\"\nsession = \"fresh\"\n",
        task_x("")
    ))
    .unwrap();
    assert_eq!(l.tasks[0].session, Some(SessionMode::Continue));
    assert_eq!(l.tasks[1].session, Some(SessionMode::Fresh));
    assert_eq!(parse(&task_x("")).unwrap().tasks[0].session, None);
    let e = err(&task_x("session = \"forever\"\n"));
    assert!(
        e.contains("session") && e.contains("continue") && e.contains("line 4"),
        "{e}"
    );
}
