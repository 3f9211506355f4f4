//! Instance workspaces: create, list, get, remove, templates, session records.

use borg::input::roles::RoleSet;
use borg::outcome::{ChangeKind, FileChange, Status};
use borg::workspace::instance::{InstanceError, SessionEntry, Workspaces};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn role(name: &str) -> borg::input::roles::Role {
    RoleSet::builtin().get(name).unwrap().clone()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn create_list_get_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspaces::new(tmp.path().join("ws"));
    let dev = ws.create(&role("developer"), None, None).unwrap();
    assert!(dev.id.starts_with("developer-"), "{}", dev.id);
    let hex = &dev.id["developer-".len()..];
    assert_eq!(hex.len(), 8);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(dev.role, "developer");
    assert!(dev.project_dir().is_dir());
    assert!(dev.logs_dir().is_dir());
    let session = std::fs::read_to_string(dev.session_path()).unwrap();
    let mut lines = session.lines();
    assert_eq!(lines.next(), Some("# DEVELOPER Instance Session"));
    assert_eq!(lines.next(), Some(""));
    assert_eq!(lines.next(), Some("# Role: Developer"));

    let t = ws.create(&role("tester"), Some("qa-1"), None).unwrap();
    assert_eq!(t.id, "qa-1");
    let e = ws.create(&role("tester"), Some("qa-1"), None).unwrap_err();
    assert!(matches!(e, InstanceError::Exists(_)), "{e}");

    let list = ws.list().unwrap();
    let ids: Vec<&str> = list.iter().map(|i| i.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 2);
    assert_eq!(ws.get("qa-1").unwrap(), t);
    assert_eq!(ws.get(&dev.id).unwrap(), dev);
    // Only instance folders and no leftovers of the temporary build folders.
    assert_eq!(
        entries(&ws.root),
        sorted.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );

    ws.remove("qa-1").unwrap();
    assert!(matches!(ws.get("qa-1"), Err(InstanceError::NotFound(..))));
    assert!(matches!(
        ws.remove("qa-1"),
        Err(InstanceError::NotFound(..))
    ));
    assert_eq!(ws.list().unwrap().len(), 1);
}

#[test]
fn invalid_names_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    let ws = Workspaces::new(&root);
    let long = "a".repeat(65);
    for bad in ["..", ".", "/", "a/b", "", "../x", "a b", long.as_str()] {
        let e = ws.create(&role("developer"), Some(bad), None).unwrap_err();
        assert!(matches!(e, InstanceError::InvalidName(_)), "{bad:?}: {e}");
        assert!(
            matches!(ws.remove(bad), Err(InstanceError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(entries(&root).is_empty());
    assert!(entries(tmp.path()) == vec!["ws"] || entries(tmp.path()).is_empty());
    ws.create(&role("developer"), Some(&"a".repeat(64)), None)
        .unwrap();
}

#[test]
fn remove_refuses_non_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspaces::new(tmp.path());
    std::fs::create_dir(tmp.path().join("precious")).unwrap();
    std::fs::write(tmp.path().join("precious/data"), "x").unwrap();
    assert!(matches!(
        ws.remove("precious"),
        Err(InstanceError::NotFound(..))
    ));
    assert!(tmp.path().join("precious/data").exists());
    assert!(ws.list().unwrap().is_empty());
}

#[test]
fn template_is_copied_with_modes_symlinks_and_dotfiles() {
    let tmp = tempfile::tempdir().unwrap();
    let tpl = tmp.path().join("tpl");
    std::fs::create_dir_all(tpl.join("src/deep")).unwrap();
    std::fs::create_dir_all(tpl.join(".git")).unwrap();
    std::fs::write(tpl.join(".git/HEAD"), "ref").unwrap();
    std::fs::write(tpl.join(".env"), "A=1").unwrap();
    std::fs::write(tpl.join("src/deep/lib.rs"), "fn x() {}").unwrap();
    std::fs::write(tpl.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(tpl.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/deep/lib.rs", tpl.join("link")).unwrap();
    let ws = Workspaces::new(tmp.path().join("ws"));
    let inst = ws
        .create(&role("developer"), Some("d1"), Some(&tpl))
        .unwrap();
    let p = inst.project_dir();
    assert_eq!(
        std::fs::read_to_string(p.join("src/deep/lib.rs")).unwrap(),
        "fn x() {}"
    );
    assert_eq!(std::fs::read_to_string(p.join(".git/HEAD")).unwrap(), "ref");
    assert_eq!(std::fs::read_to_string(p.join(".env")).unwrap(), "A=1");
    let mode = std::fs::metadata(p.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let link = std::fs::symlink_metadata(p.join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(p.join("link")).unwrap(),
        Path::new("src/deep/lib.rs")
    );

    let e = ws
        .create(
            &role("developer"),
            Some("d2"),
            Some(&tmp.path().join("nope")),
        )
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(matches!(ws.get("d2"), Err(InstanceError::NotFound(..))));
    assert_eq!(entries(&ws.root), vec!["d1"]);
}

#[test]
fn failed_copy_leaves_nothing() {
    if nix::unistd::geteuid().is_root() {
        return; // root reads unreadable files, so the failure cannot be provoked
    }
    let tmp = tempfile::tempdir().unwrap();
    let tpl = tmp.path().join("tpl");
    std::fs::create_dir_all(&tpl).unwrap();
    std::fs::write(tpl.join("secret"), "x").unwrap();
    std::fs::set_permissions(tpl.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let ws = Workspaces::new(tmp.path().join("ws"));
    assert!(ws
        .create(&role("developer"), Some("d1"), Some(&tpl))
        .is_err());
    assert!(entries(&ws.root).is_empty(), "{:?}", entries(&ws.root));
}

fn sample_entries() -> Vec<SessionEntry> {
    vec![
        SessionEntry {
            time: "2026-11-21T20:00:00Z".into(),
            task_id: "auth-api".into(),
            attempt: 1,
            prompt: "Implement login.\n\n## Not a heading\n```rust\nfn main() {}\n```\n````\nfour\n".into(),
            status: Status::Failed,
            files_changed: vec![
                FileChange { path: "src/auth.rs".into(), change: ChangeKind::Created },
                FileChange { path: "weird `name`.txt".into(), change: ChangeKind::Modified },
                FileChange { path: "old.rs".into(), change: ChangeKind::Deleted },
            ],
            summary: "Rate limited; **try** again.\n## 2026-01-01T00:00:00Z · task fake · attempt 9 · succeeded".into(),
        },
        SessionEntry {
            time: "2026-11-21T20:05:00Z".into(),
            task_id: "auth-api".into(),
            attempt: 2,
            prompt: "no trailing newline".into(),
            status: Status::Succeeded,
            files_changed: vec![],
            summary: String::new(),
        },
        SessionEntry {
            time: "2026-11-21T20:06:00Z".into(),
            task_id: "t.3".into(),
            attempt: 1,
            prompt: "> quoted\n~~~\n  ```\n".into(),
            status: Status::TimedOut,
            files_changed: vec![FileChange { path: " spaced ".into(), change: ChangeKind::Modified }],
            summary: "`".into(),
        },
    ]
}

#[test]
fn session_append_and_history_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspaces::new(tmp.path());
    let inst = ws.create(&role("reviewer"), Some("r1"), None).unwrap();
    // The role context has headings and fenced blocks of its own; none is a record.
    assert!(inst.history().unwrap().is_empty());
    let want = sample_entries();
    for e in &want {
        inst.append_session(e).unwrap();
    }
    assert_eq!(inst.history().unwrap(), want);
    let text = std::fs::read_to_string(inst.session_path()).unwrap();
    assert!(text.starts_with("# REVIEWER Instance Session\n\n# Role: Reviewer"));
    assert!(text.contains("\n## 2026-11-21T20:05:00Z · task auth-api · attempt 2 · succeeded\n"));
}

#[test]
fn hand_edited_session_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspaces::new(tmp.path());
    let inst = ws.create(&role("developer"), Some("d"), None).unwrap();
    for e in sample_entries() {
        inst.append_session(&e).unwrap();
    }
    let text = std::fs::read_to_string(inst.session_path()).unwrap();
    // Cut the file at every line boundary and garble it: history() must always return.
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for cut in 0..lines.len() {
        std::fs::write(inst.session_path(), lines[..cut].concat()).unwrap();
        let _ = inst.history().unwrap();
    }
    std::fs::write(
        inst.session_path(),
        "## bad · heading\n## x · task · attempt q · nope\n````text\nunclosed\n## 1 · task a · attempt 1 · failed\n",
    )
    .unwrap();
    assert!(inst.history().unwrap().is_empty());
    std::fs::write(
        inst.session_path(),
        "## t · task a · attempt 3 · failed\n**Files changed:**\n- frobbed x\n- created `y`\n",
    )
    .unwrap();
    let h = inst.history().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].attempt, 3);
    assert_eq!(
        h[0].files_changed,
        vec![FileChange {
            path: "y".into(),
            change: ChangeKind::Created
        }]
    );
    std::fs::write(inst.session_path(), [0xff, 0xfe, b'\n']).unwrap();
    assert!(inst.history().unwrap().is_empty());
}

#[test]
fn folder_without_metadata_is_read_from_session_title() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("old-1/project-files")).unwrap();
    std::fs::write(
        tmp.path().join("old-1/session.md"),
        "# TESTER Instance Session\n\nctx\n",
    )
    .unwrap();
    let ws = Workspaces::new(tmp.path());
    let i = ws.get("old-1").unwrap();
    assert_eq!(i.role, "tester");
    assert_eq!(ws.list().unwrap().len(), 1);
}
