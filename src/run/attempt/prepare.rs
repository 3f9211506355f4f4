//! Stage 2, prepare: the workspace and the prompt. Dependencies' outcomes go into the
//! prompt. Their work reaches this instance (instances are isolated; a tester must
//! see what the developer wrote): in template mode their changed files are copied
//! in; in git mode the worktree is put on the task's branch at the base with their
//! results merged ([`super::start`]), or the task waits for a resolve task when they
//! conflict. A task parked on a usage limit resumes its session so its work is kept,
//! and a task with `session = "continue"` resumes its instance's previous session
//! (then the prompt carries only the new task).

use super::admit::Admitted;
use super::start::{self, Begun};
use super::Attempt;
use crate::input::tasklist::SessionMode;
use crate::outcome::fault::Classified;
use crate::outcome::{AttemptRecord, FaultClass, FileChange, Status};
use crate::run::prompt::{self, DepOutcome};
use crate::store::{call, NewTask, TaskRow};

/// The workspace made ready for the child.
pub(crate) struct Prepared {
    /// Outcomes of the task's dependencies, for the prompt.
    pub deps: Vec<DepOutcome>,
    /// The session to resume: the task's own after a usage limit, or the instance's
    /// previous one for `session = "continue"`.
    pub resume: Option<String>,
    /// `resume` is the instance's previous session, continued.
    pub continued: bool,
    /// The prompt's coordination section (decisions, messages, others' leases).
    pub brief: String,
}

/// Why the child cannot start.
pub(crate) enum Unready {
    /// Git mode: the dependencies conflict; the task waits for this resolve task.
    Waits {
        /// The resolve task.
        task: NewTask,
        /// Why, in one line.
        why: String,
    },
    /// The workspace could not be made ready (a git failure).
    Failed(Classified),
}

/// Readies the workspace and collects the dependencies' outcomes.
pub(crate) async fn workspace(att: &mut Attempt, a: &Admitted) -> Result<Prepared, Unready> {
    let rows = source_rows(att, a).await;
    let deps = rows
        .iter()
        .filter(|r| a.spec.task.depends_on.contains(&r.id))
        .map(outcome_of)
        .collect();
    if att.shared.git.is_some() {
        match start::begin(att, a, rows).await {
            Begun::Ready(g) => att.git = Some(g),
            Begun::Waits { task, why } => return Err(Unready::Waits { task, why }),
            Begun::Failed(e) => return Err(Unready::Failed(git_failure(e))),
            Begun::Unavailable(e) => return Err(Unready::Failed(remote_failure(e))),
        }
    } else {
        carry_over(att, &rows);
    }
    let (resume, continued) = match resumed_session(att) {
        Some(s) => (Some(s), false),
        None => match continued_session(att, a).await {
            Some(s) => (Some(s), true),
            None => (None, false),
        },
    };
    Ok(Prepared {
        deps,
        resume,
        continued,
        brief: brief(att, a).await,
    })
}

/// For `session = "continue"` (the task's, else its role's): the instance's newest
/// session, if it has one.
async fn continued_session(att: &Attempt, a: &Admitted) -> Option<String> {
    let mode = a
        .spec
        .task
        .session
        .or(a.role.meta.session)
        .unwrap_or_default();
    if mode != SessionMode::Continue {
        return None;
    }
    let id = att.instance.id.clone();
    call(&att.shared.store, move |st| st.last_session(&id))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("cannot read the instance's last session: {e}");
            None
        })
}

/// The CLI refused to resume the session (it does not have it: another instance's
/// config folder, or a transcript removed): the attempt goes on at once in a fresh
/// session, with the full prompt, and its record says so.
pub(crate) fn fresh_after_refusal(att: &mut Attempt, p: Prepared) -> Prepared {
    let old = p.resume.unwrap_or_default();
    let whose = if p.continued {
        "the instance's session"
    } else {
        "the session parked on a usage limit"
    };
    let note =
        format!("could not resume {whose} {old} (No conversation found); ran in a fresh session");
    tracing::info!(task = %att.record.task, "{note}");
    att.record.session_fallback = Some(note);
    Prepared {
        deps: p.deps,
        resume: None,
        continued: false,
        brief: p.brief,
    }
}

/// The coordination section of the prompt; the messages in it are delivered (read).
async fn brief(att: &Attempt, a: &Admitted) -> String {
    if !att.shared.settings.coord.enabled {
        return String::new();
    }
    let reader = crate::store::coord::Reader {
        instance: att.instance.id.clone(),
        role: a.spec.task.role.clone(),
        task: Some(a.spec.task.id.clone()),
    };
    let b = call(&att.shared.store, move |st| {
        crate::coord::brief::gather(st, &reader, super::now_ms())
    })
    .await;
    crate::coord::brief::render(&b)
}

/// The rows of the tasks whose work this one builds on: its dependencies as stored
/// (in git mode that includes resolve tasks), those of its definition, and the
/// source of the handoff that created it.
async fn source_rows(att: &Attempt, a: &Admitted) -> Vec<TaskRow> {
    let mut ids = att.claim.task.depends_on.clone();
    for d in &a.spec.task.depends_on {
        if !ids.contains(d) {
            ids.push(d.clone());
        }
    }
    if let Some(h) = &a.spec.handoff {
        if !ids.contains(&h.source_task) {
            ids.push(h.source_task.clone());
        }
    }
    let mut rows = Vec::new();
    for id in ids {
        let row = call(&att.shared.store, move |st| st.task(&id)).await;
        rows.extend(row.ok().flatten());
    }
    rows
}

/// A dependency's outcome, for the prompt.
fn outcome_of(row: &TaskRow) -> DepOutcome {
    let rec = AttemptRecord::from_stored(row.last_record.as_ref());
    DepOutcome {
        id: row.id.clone(),
        role: row.role.clone(),
        status: row.status,
        files_changed: rec.as_ref().map(|r| r.changes()).unwrap_or_default(),
        result_text: rec
            .as_ref()
            .and_then(|r| r.result_text.clone().or_else(|| r.error.clone())),
    }
}

/// Template mode: copies the files each source changed in its own instance into
/// this one.
fn carry_over(att: &Attempt, rows: &[TaskRow]) {
    let project = att.instance.project_dir();
    for row in rows {
        let rec = AttemptRecord::from_stored(row.last_record.as_ref());
        let Some(rec) = rec.filter(|r| is_other_instance(r, att)) else {
            continue;
        };
        let files: Vec<FileChange> = rec.changes();
        let from = att
            .shared
            .workspaces
            .root
            .join(&rec.instance)
            .join("project-files");
        crate::workspace::instance::carry_over(&from, &project, &files);
    }
}

fn is_other_instance(rec: &AttemptRecord, att: &Attempt) -> bool {
    rec.instance != att.instance.id && !rec.instance.is_empty()
}

/// A workspace that git could not make ready: the child never starts.
fn git_failure(error: String) -> Classified {
    Classified {
        status: Status::SpawnFailed,
        fault: Some(FaultClass::Permanent),
        error: Some(error),
        cause: Some("git".into()),
        resets_at: None,
        limit_kind: None,
    }
}

/// The shared remote could not be reached before the child started: worth trying
/// again, like an API that could not be reached.
fn remote_failure(error: String) -> Classified {
    Classified {
        status: Status::SpawnFailed,
        fault: Some(FaultClass::Transient),
        error: Some(error),
        cause: Some("git_remote".into()),
        resets_at: None,
        limit_kind: None,
    }
}

/// A task parked on a usage limit resumes its session so its work is kept.
fn resumed_session(att: &Attempt) -> Option<String> {
    AttemptRecord::from_stored(att.claim.task.last_record.as_ref())
        .filter(|r| r.status == Some(Status::RateLimited))
        .and_then(|r| r.session_id)
}

/// The prompt: role context, the instance's recent history, the task, its
/// dependencies and handoff context (only the last three when the session
/// continues); in git mode, where the work happens.
pub(crate) fn prompt(att: &Attempt, a: &Admitted, p: &Prepared) -> String {
    let mut text = if p.continued {
        prompt::build_continued(&a.spec.task.prompt, &p.deps, a.spec.handoff.as_ref())
    } else {
        let history = att
            .instance
            .recent_history(prompt::HISTORY)
            .unwrap_or_default();
        prompt::build(
            &a.role,
            &history,
            &a.spec.task.prompt,
            &p.deps,
            a.spec.handoff.as_ref(),
        )
    };
    if let Some(g) = &att.git {
        text.push_str(&prompt::git_note(&g.branch, !p.deps.is_empty()));
    }
    if !p.brief.is_empty() {
        text.push('\n');
        text.push_str(&p.brief);
    }
    text
}
