//! Resolve tasks (git mode): when the dependencies of a task conflict as they are
//! merged into its start commit, borg never picks a side. It creates a task for the
//! resolver role (`<task>.resolve-<n>`), in a worktree where that merge is in
//! progress, whose prompt names the conflicting files, the tasks on each side, their
//! roles and their result texts, and asks for a resolution that keeps both intents.
//! The waiting task depends on it: it starts from the resolution, or is skipped with
//! its dependents when the resolution fails.

use crate::outcome::AttemptRecord;
use crate::run::handoff::follow_up_spec;
use crate::run::spec::{new_task, ResolveContext, StoredSpec};
use crate::store::{NewTask, TaskRow};
use std::fmt::Write;

/// Longest result text quoted per task.
const RESULT_CHARS: usize = 2000;

/// Who resolves, and the ids taken.
pub struct Resolver<'a> {
    /// The resolver role.
    pub role: &'a str,
    /// Retries when the task list sets none.
    pub default_retries: u32,
    /// Every task id (the new one must be free).
    pub existing: &'a [String],
}

/// The resolve task of `ctx` for `waiting` (whose stored definition is `spec`);
/// `rows` holds the tasks named in `ctx`.
pub fn resolve_task(
    waiting: &TaskRow,
    spec: &StoredSpec,
    ctx: ResolveContext,
    rows: &[TaskRow],
    by: &Resolver<'_>,
) -> NewTask {
    let (role, existing) = (by.role, by.existing);
    let id = (1..)
        .map(|n| format!("{}.resolve-{n}", waiting.id))
        .find(|c| !existing.contains(c))
        .unwrap_or_default();
    let mut task = follow_up_spec(waiting, &id, role);
    task.depends_on = Vec::new();
    task.prompt = prompt(&ctx, rows, &id);
    task.timeout = spec.task.timeout;
    task.retries = spec.task.retries;
    task.env = spec.task.env.clone();
    let stored = StoredSpec {
        task,
        handoff: None,
        resolve: Some(ctx),
    };
    new_task(&stored, by.default_retries)
}

/// Why the waiting task waits, in one line.
pub fn reason(ctx: &ResolveContext) -> String {
    format!(
        "merging {} into its start conflicts in {}",
        ctx.theirs_task,
        ctx.files.join(", ")
    )
}

/// The prompt of a resolve task.
fn prompt(ctx: &ResolveContext, rows: &[TaskRow], id: &str) -> String {
    let mut p = String::new();
    let into = match &ctx.into {
        Some(t) => format!("the merge target `{t}` (the merge queue)"),
        None => format!("the start of task `{}`", ctx.of),
    };
    let _ = writeln!(
        p,
        "Merging the work of task `{}` into {into} conflicts. Your working directory \
         (branch for task `{id}`) has that merge in progress: the conflicting files hold git's conflict \
         markers (`<<<<<<<`, `=======`, `>>>>>>>`).\n",
        ctx.theirs_task
    );
    p.push_str("Conflicting files:\n");
    for f in &ctx.files {
        let _ = writeln!(p, "- {f}");
    }
    let ours = if let Some(t) = &ctx.into {
        if ctx.ours_tasks.is_empty() {
            format!("the branch `{t}`")
        } else {
            format!(
                "the branch `{t}` with the work of {} landed",
                named(&ctx.ours_tasks, rows)
            )
        }
    } else if ctx.ours_tasks.is_empty() {
        "the base commit".to_string()
    } else {
        format!("the base with the work of {}", named(&ctx.ours_tasks, rows))
    };
    let _ = writeln!(
        p,
        "\nOne side (\"ours\", HEAD): {ours}.\nThe other side (\"theirs\", being merged): the work of {}.",
        named(std::slice::from_ref(&ctx.theirs_task), rows)
    );
    p.push_str("\n## What each side's tasks did\n");
    for t in ctx
        .ours_tasks
        .iter()
        .chain(std::iter::once(&ctx.theirs_task))
    {
        describe(&mut p, t, rows);
    }
    p.push_str(
        "\n## What to do\n\nResolve every conflict so that both intents are kept: the result must do what each \
         task set out to do. Do not pick one side and drop the other. Remove every conflict marker and \
         check that the code still works (run the tests if there are any). You may `git add` the files; \
         borg commits the merge when you are done (or conclude it yourself with `git commit --no-edit`). \
         Do not abort the merge.\n",
    );
    p
}

/// `` `a` (developer role), `b` (tester role) ``.
fn named(ids: &[String], rows: &[TaskRow]) -> String {
    ids.iter()
        .map(|id| match rows.iter().find(|r| &r.id == id) {
            Some(r) => format!("`{id}` ({} role)", r.role),
            None => format!("`{id}`"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One task's section: its role, its prompt's first line and its result text.
fn describe(p: &mut String, id: &str, rows: &[TaskRow]) {
    let Some(r) = rows.iter().find(|r| r.id == id) else {
        return;
    };
    let _ = writeln!(p, "\n### Task `{id}` ({} role)", r.role);
    if let Some(first) = r.spec.get("prompt").and_then(|v| v.as_str()).and_then(|t| {
        t.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("#fake"))
    }) {
        let _ = writeln!(p, "Its task: {first}");
    }
    let rec = AttemptRecord::from_stored(r.last_record.as_ref());
    if let Some(text) = rec.and_then(|r| r.result_text) {
        let t: String = text.chars().take(RESULT_CHARS).collect();
        p.push_str("Its final report:\n");
        for l in t.lines() {
            let _ = writeln!(p, "> {l}");
        }
    }
}
