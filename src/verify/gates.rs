//! Which gates a task runs, and how many fix rounds and which reviewer it gets: the
//! task's own field, else its role's front matter, else `[verify]`. `"auto"` becomes
//! the project's own test command, read from its files as a project assessment would
//! (`Cargo.toml` → `cargo test`, `go.mod` → `go test ./...`, `package.json` with a
//! `test` script → `npm test`, `pyproject.toml` / `pytest.ini` / `setup.cfg` →
//! `python3 -m pytest -q`), or no gate, said in one line.

use crate::input::config::VerifySettings;
use crate::input::gates::GateSpec;
use crate::input::roles::Role;
use crate::input::tasklist::TaskSpec;
use std::path::Path;

/// The gates of one task, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    /// The command lines, run with `sh -c` one after the other.
    pub commands: Vec<String>,
    /// Where they come from: `task`, `role`, `[verify]`, or none.
    pub from: &'static str,
    /// For `"auto"`: what was found, in one line.
    pub auto: Option<String>,
}

/// The gate spec that applies to `task` and where it comes from.
pub fn spec_for(
    settings: &VerifySettings,
    role: &Role,
    task: &TaskSpec,
) -> Option<(GateSpec, &'static str)> {
    if let Some(s) = &task.verify {
        return Some((s.clone(), "task"));
    }
    if let Some(s) = &role.meta.verify {
        return Some((s.clone(), "role"));
    }
    settings.commands.clone().map(|s| (s, "[verify]"))
}

/// The gates of `task`, `"auto"` detected in `project` (the worktree, or the folder
/// the dry run reads).
pub fn resolve(settings: &VerifySettings, role: &Role, task: &TaskSpec, project: &Path) -> Gates {
    match spec_for(settings, role, task) {
        None => Gates::default(),
        Some((GateSpec::Commands(c), from)) => Gates {
            commands: c,
            from,
            auto: None,
        },
        Some((GateSpec::Auto, from)) => {
            let (cmd, said) = detect(project);
            Gates {
                commands: cmd.into_iter().collect(),
                from,
                auto: Some(said),
            }
        }
    }
}

/// The number of fix rounds of `task` (task > role > `[verify]`).
pub fn fix_rounds(settings: &VerifySettings, role: &Role, task: &TaskSpec) -> u32 {
    task.fix_rounds
        .or(role.meta.fix_rounds)
        .unwrap_or(settings.fix_rounds)
}

/// The role that reviews `task`'s work, if any (task > role > `[verify] review_role`).
pub fn reviewer(settings: &VerifySettings, role: &Role, task: &TaskSpec) -> Option<String> {
    task.review
        .clone()
        .or_else(|| role.meta.review.clone())
        .or_else(|| settings.review_role.clone())
}

/// The project's own test command, from the files at the top of `dir`, and what was
/// found in one line.
pub fn detect(dir: &Path) -> (Option<String>, String) {
    detect_from(
        |f| dir.join(f).is_file(),
        |f| std::fs::read_to_string(dir.join(f)).ok(),
    )
}

/// The same from any view of a project's top folder (`has`: is there such a file;
/// `read`: its text), e.g. a commit's tree for the merge queue's gates.
pub fn detect_from(
    has: impl Fn(&str) -> bool,
    read: impl Fn(&str) -> Option<String>,
) -> (Option<String>, String) {
    let found = |file: &str, cmd: &str| (Some(cmd.to_string()), format!("{file} → {cmd}"));
    if has("Cargo.toml") {
        return found("Cargo.toml", "cargo test");
    }
    if has("go.mod") {
        return found("go.mod", "go test ./...");
    }
    if has("package.json") && read("package.json").is_some_and(|t| npm_test_script(&t)) {
        return found("package.json (scripts.test)", "npm test");
    }
    for f in ["pyproject.toml", "pytest.ini", "setup.cfg"] {
        if has(f) {
            return found(f, "python3 -m pytest -q");
        }
    }
    (
        None,
        "no test command found (no Cargo.toml, go.mod, package.json with a test script, pyproject.toml, pytest.ini or setup.cfg): no gate".into(),
    )
}

/// Whether a `package.json` has a real `test` script (not npm's placeholder).
fn npm_test_script(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    v["scripts"]["test"]
        .as_str()
        .is_some_and(|s| !s.trim().is_empty() && !s.contains("no test specified"))
}

/// The dry run's line for one task's gates.
pub fn describe(g: &Gates) -> String {
    let mut s = if g.commands.is_empty() {
        "no gate".to_string()
    } else {
        g.commands
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !g.from.is_empty() {
        s.push_str(&format!(" (from {})", g.from));
    }
    if let Some(a) = &g.auto {
        s.push_str(&format!("; auto: {a}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_order_and_placeholder() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect(d.path()).0, None);
        std::fs::write(
            d.path().join("package.json"),
            r#"{"scripts":{"test":"echo \"Error: no test specified\" && exit 1"}}"#,
        )
        .unwrap();
        assert_eq!(detect(d.path()).0, None);
        std::fs::write(d.path().join("pytest.ini"), "").unwrap();
        assert_eq!(detect(d.path()).0.as_deref(), Some("python3 -m pytest -q"));
        std::fs::write(
            d.path().join("package.json"),
            r#"{"scripts":{"test":"vitest run"}}"#,
        )
        .unwrap();
        assert_eq!(detect(d.path()).0.as_deref(), Some("npm test"));
        std::fs::write(d.path().join("go.mod"), "module x").unwrap();
        assert_eq!(detect(d.path()).0.as_deref(), Some("go test ./..."));
        std::fs::write(d.path().join("Cargo.toml"), "").unwrap();
        let (c, said) = detect(d.path());
        assert_eq!(c.as_deref(), Some("cargo test"));
        assert_eq!(said, "Cargo.toml → cargo test");
    }
}
