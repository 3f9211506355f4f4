//! The prompt a child receives on stdin, in this order: the role context, a short
//! summary of the instance's earlier tasks, the task's prompt verbatim, then what the
//! work depends on: each dependency's outcome and, for a handoff, its context.
//!
//! A task that continues its instance's session (`session = "continue"`) gets only the
//! task and what it depends on ([`build_continued`]): the session already holds the
//! role and the earlier tasks, for real.

use crate::input::roles::Role;
use crate::outcome::{FileChange, Status};
use crate::workspace::instance::SessionEntry;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Earlier tasks shown in the summary (the newest ones).
pub const HISTORY: usize = 10;
/// Longest result text quoted from a dependency or handoff.
const RESULT_CHARS: usize = 4000;

/// What a dependency produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepOutcome {
    /// Task id.
    pub id: String,
    /// Its role.
    pub role: String,
    /// Its status.
    pub status: Status,
    /// Files it changed.
    pub files_changed: Vec<FileChange>,
    /// Its result text (or error).
    pub result_text: Option<String>,
}

/// The context of a handoff that created a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoffContext {
    /// Source task.
    pub source_task: String,
    /// Source role.
    pub source_role: String,
    /// Source instance.
    pub source_instance: Option<String>,
    /// Why it was handed off.
    pub reason: String,
    /// The state of the work.
    pub state: Option<String>,
    /// Next steps.
    pub next_steps: Vec<String>,
    /// Files the source changed.
    pub files_changed: Vec<FileChange>,
    /// The source's result text.
    pub result_text: Option<String>,
}

/// Builds the prompt.
pub fn build(
    role: &Role,
    history: &[SessionEntry],
    task_prompt: &str,
    deps: &[DepOutcome],
    handoff: Option<&HandoffContext>,
) -> String {
    let mut p = String::with_capacity(role.context.len() + task_prompt.len() + 1024);
    p.push_str(role.context.trim_end());
    p.push_str("\n\n");
    if !history.is_empty() {
        p.push_str("## Your earlier tasks in this workspace\n\n");
        let skip = history.len().saturating_sub(HISTORY);
        for e in &history[skip..] {
            // The earlier prompts are not repeated: they are in session.md, and a
            // summary line is enough to orient the agent.
            let _ = writeln!(
                p,
                "- {} (attempt {}): {}, {} file(s) changed. {}",
                e.task_id,
                e.attempt,
                e.status,
                e.files_changed.len(),
                one_line(&e.summary, 200)
            );
        }
        p.push('\n');
    }
    push_task(&mut p, "## Your task\n\n", task_prompt, deps, handoff);
    p
}

/// The prompt of a task that resumes its instance's previous session: the new task
/// and its dependencies' and handoff's context, without the role context or the
/// summary of earlier tasks the session already holds.
pub fn build_continued(
    task_prompt: &str,
    deps: &[DepOutcome],
    handoff: Option<&HandoffContext>,
) -> String {
    let mut p = String::with_capacity(task_prompt.len() + 512);
    push_task(&mut p, "## Your next task\n\n", task_prompt, deps, handoff);
    p
}

/// The task under `heading`, then its handoff context and dependencies.
fn push_task(
    p: &mut String,
    heading: &str,
    task_prompt: &str,
    deps: &[DepOutcome],
    handoff: Option<&HandoffContext>,
) {
    p.push_str(heading);
    p.push_str(task_prompt);
    if !task_prompt.ends_with('\n') {
        p.push('\n');
    }
    if let Some(h) = handoff {
        p.push_str("\n## Handoff context\n\n");
        let _ = writeln!(
            p,
            "This task was handed to you from task `{}` ({} role{}).",
            h.source_task,
            h.source_role,
            h.source_instance
                .as_deref()
                .map(|i| format!(", instance {i}"))
                .unwrap_or_default()
        );
        let _ = writeln!(p, "Reason: {}", h.reason);
        if let Some(s) = &h.state {
            let _ = writeln!(p, "Current state: {s}");
        }
        if !h.next_steps.is_empty() {
            p.push_str("Next steps:\n");
            for s in &h.next_steps {
                let _ = writeln!(p, "- {s}");
            }
        }
        write_files(p, &h.files_changed);
        if let Some(r) = &h.result_text {
            let _ = writeln!(p, "Its final report:\n{}", quote(r));
        }
    }
    if !deps.is_empty() {
        p.push_str("\n## What this task depends on\n");
        for d in deps {
            let _ = writeln!(p, "\n### Task `{}` ({} role): {}", d.id, d.role, d.status);
            write_files(p, &d.files_changed);
            if let Some(r) = &d.result_text {
                let _ = writeln!(p, "Its final report:\n{}", quote(r));
            }
        }
    }
}

/// Git mode: where the work happens and what becomes of it.
pub fn git_note(branch: &str, has_deps: bool) -> String {
    let deps = if has_deps {
        " It already holds the work of the tasks above, merged."
    } else {
        ""
    };
    format!(
        "\n## Where you work\n\nYour working directory is a git worktree on branch `{branch}`.{deps} \
         When you are done, borg commits whatever you leave there (files your .gitignore ignores \
         aside); you may commit yourself too. Do not switch branches, rebase or reset: stay on \
         `{branch}`.\n"
    )
}

fn write_files(p: &mut String, files: &[FileChange]) {
    if files.is_empty() {
        p.push_str("Files changed: none\n");
    } else {
        p.push_str("Files changed:\n");
        for f in files {
            let _ = writeln!(
                p,
                "- {} ({})",
                f.path,
                serde_json::to_value(f.change)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            );
        }
    }
}

fn quote(text: &str) -> String {
    let t: String = text.chars().take(RESULT_CHARS).collect();
    let mut out: String = t.lines().map(|l| format!("> {l}\n")).collect();
    if text.chars().count() > RESULT_CHARS {
        out.push_str("> […]\n");
    }
    out
}

fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::roles::RoleMeta;
    use crate::outcome::ChangeKind;

    #[test]
    fn sections_come_in_order_and_the_prompt_is_verbatim() {
        let role = Role {
            name: "tester".into(),
            context: "You test.".into(),
            meta: RoleMeta::default(),
            path: None,
        };
        let hist = vec![SessionEntry {
            time: "t".into(),
            task_id: "old".into(),
            attempt: 1,
            prompt: "#fake secret directive".into(),
            status: Status::Succeeded,
            files_changed: vec![],
            summary: "did it".into(),
        }];
        let prompt = "  Test the *calc* module.\n\n```\nexact\n```";
        let deps = vec![DepOutcome {
            id: "impl".into(),
            role: "developer".into(),
            status: Status::Succeeded,
            files_changed: vec![FileChange {
                path: "calc.py".into(),
                change: ChangeKind::Modified,
            }],
            result_text: Some("fixed add".into()),
        }];
        let p = build(&role, &hist, prompt, &deps, None);
        let (a, b, c, d) = (
            p.find("You test.").unwrap(),
            p.find("- old").unwrap(),
            p.find(prompt).unwrap(),
            p.find("calc.py (modified)").unwrap(),
        );
        assert!(a < b && b < c && c < d, "{p}");
        assert!(p.contains("> fixed add"));
        assert!(
            !p.contains("secret directive"),
            "earlier prompts are not repeated"
        );
    }
}
