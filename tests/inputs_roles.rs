//! Roles: built-ins, a custom folder, front matter.

use borg::input::roles::{parse_role_text, RoleError, RoleSet, BUILTIN};
use std::path::Path;

#[test]
fn builtins_when_folder_is_missing() {
    let set = RoleSet::load(Path::new("/nonexistent/borg-roles")).unwrap();
    assert_eq!(
        set.names(),
        vec!["architect", "developer", "documenter", "reviewer", "tester"]
    );
    for role in &set.roles {
        assert!(role.path.is_none());
        assert!(role.context.starts_with("# Role: "), "{}", role.name);
        assert!(
            role.context.contains("BORG_BIN"),
            "{} must explain handoff",
            role.name
        );
        assert!(
            role.context.contains("handoff request --to"),
            "{}",
            role.name
        );
        assert!(role.context.contains("project-files/"), "{}", role.name);
        assert!(!role.context.contains("+++"), "{}", role.name);
        assert!(!role.meta.capabilities.is_empty(), "{}", role.name);
    }
    assert_eq!(
        set.get("tester").unwrap().meta.capabilities,
        vec!["testing", "debugging"]
    );
}

#[test]
fn shipped_files_parse_and_match_builtins() {
    assert_eq!(BUILTIN.len(), 5);
    for (name, text) in BUILTIN {
        parse_role_text(Path::new(name), text).unwrap();
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("roles");
    let from_dir = RoleSet::load(&dir).unwrap();
    let built = RoleSet::builtin();
    assert_eq!(from_dir.names(), built.names());
    for (a, b) in from_dir.roles.iter().zip(&built.roles) {
        assert_eq!(a.context, b.context);
        assert_eq!(a.meta, b.meta);
    }
}

#[test]
fn custom_folder_with_front_matter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("security.md"),
        "+++\ncapabilities = [\"security\"]\nmodel = \"opus\"\npermission_mode = \"acceptEdits\"\nallowed_tools = [\"Read\", \"Bash\"]\nmax_turns = 30\n+++\n\n# Security\n\nFind holes.\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("plain.md"), "# Plain\nNo front matter.\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a role").unwrap();
    std::fs::write(dir.path().join(".swap.md"), "hidden").unwrap();
    let set = RoleSet::load(dir.path()).unwrap();
    assert_eq!(set.names(), vec!["plain", "security"]);
    let sec = set.get("security").unwrap();
    assert_eq!(sec.context, "# Security\n\nFind holes.");
    assert_eq!(sec.meta.capabilities, vec!["security"]);
    assert_eq!(sec.meta.model.as_deref(), Some("opus"));
    assert_eq!(sec.meta.permission_mode.as_deref(), Some("acceptEdits"));
    assert_eq!(sec.meta.allowed_tools, vec!["Read", "Bash"]);
    assert_eq!(sec.meta.max_turns, Some(30));
    assert_eq!(
        sec.path.as_deref(),
        Some(dir.path().join("security.md").as_path())
    );
    let plain = set.get("plain").unwrap();
    assert_eq!(plain.context, "# Plain\nNo front matter.");
    assert_eq!(plain.meta, Default::default());
    let e = set.get("developer").unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown role \"developer\"; roles that exist: plain, security"
    );
}

#[test]
fn bad_front_matter() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.md");
    std::fs::write(
        &f,
        "+++\ncapabilities = [\"a\"]\ncolour = \"red\"\n+++\nbody\n",
    )
    .unwrap();
    let e = RoleSet::load(dir.path()).unwrap_err();
    assert!(matches!(e, RoleError::FrontMatter { .. }));
    let m = e.to_string();
    assert!(m.contains("x.md"), "{m}");
    assert!(m.contains("colour"), "{m}");
    assert!(m.contains("line 3"), "{m}");

    std::fs::write(&f, "+++\nmodel = \"x\"\nbody with no closing\n").unwrap();
    let m = RoleSet::load(dir.path()).unwrap_err().to_string();
    assert!(m.contains("never closed"), "{m}");

    std::fs::write(&f, "+++\npermission_mode = \"yolo\"\n+++\n").unwrap();
    let m = RoleSet::load(dir.path()).unwrap_err().to_string();
    assert!(m.contains("permission_mode"), "{m}");

    std::fs::write(&f, "+++\nmax_turns = \"ten\"\n+++\n").unwrap();
    let m = RoleSet::load(dir.path()).unwrap_err().to_string();
    assert!(m.contains("x.md") && m.contains("line 2"), "{m}");
}

#[test]
fn bad_names_and_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let e = RoleSet::load(dir.path()).unwrap_err();
    assert!(matches!(e, RoleError::Empty(_)), "{e}");
    std::fs::write(dir.path().join("two words.md"), "x").unwrap();
    let e = RoleSet::load(dir.path()).unwrap_err();
    assert!(matches!(e, RoleError::BadName { .. }), "{e}");
}
