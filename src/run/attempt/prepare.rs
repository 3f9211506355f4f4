//! Stage 2, prepare: the workspace and the prompt. Dependencies' outcomes go into the
//! prompt and their changed files into this instance (instances are isolated; a
//! tester must see what the developer wrote); a task parked on a usage limit resumes
//! its session so its work is kept.

use super::admit::Admitted;
use super::Attempt;
use crate::outcome::{AttemptRecord, FileChange, Status};
use crate::run::prompt::{self, DepOutcome};
use crate::store::call;

/// The workspace made ready for the child.
pub(crate) struct Prepared {
    /// Outcomes of the task's dependencies, for the prompt.
    pub deps: Vec<DepOutcome>,
    /// The session to resume, when the last attempt hit a usage limit.
    pub resume: Option<String>,
    /// The prompt's coordination section (decisions, messages, others' leases).
    pub brief: String,
}

/// Carries the dependencies' (and the handoff source's) changed files into this
/// instance and collects their outcomes.
pub(crate) async fn workspace(att: &Attempt, a: &Admitted) -> Prepared {
    let mut deps = Vec::new();
    let mut sources: Vec<(String, Vec<FileChange>)> = Vec::new();
    for d in &sources_of(a) {
        let id = d.clone();
        let row = call(&att.shared.store, move |st| st.task(&id))
            .await
            .ok()
            .flatten();
        let Some(row) = row else { continue };
        let rec = AttemptRecord::from_stored(row.last_record.as_ref());
        if let Some(rec) = rec.as_ref().filter(|r| is_other_instance(r, att)) {
            sources.push((rec.instance.clone(), rec.files_changed.clone()));
        }
        if a.spec.task.depends_on.contains(d) {
            deps.push(DepOutcome {
                id: row.id.clone(),
                role: row.role.clone(),
                status: row.status,
                files_changed: rec
                    .as_ref()
                    .map(|r| r.files_changed.clone())
                    .unwrap_or_default(),
                result_text: rec
                    .as_ref()
                    .and_then(|r| r.result_text.clone().or_else(|| r.error.clone())),
            });
        }
    }
    let project = att.instance.project_dir();
    for (src, files) in &sources {
        let from = att.shared.workspaces.root.join(src).join("project-files");
        crate::workspace::instance::carry_over(&from, &project, files);
    }
    Prepared {
        deps,
        resume: resumed_session(att),
        brief: brief(att, a).await,
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

/// The tasks whose work this one builds on: its dependencies, and the source of the
/// handoff that created it.
fn sources_of(a: &Admitted) -> Vec<String> {
    let mut ids = a.spec.task.depends_on.clone();
    if let Some(h) = &a.spec.handoff {
        if !ids.contains(&h.source_task) {
            ids.push(h.source_task.clone());
        }
    }
    ids
}

fn is_other_instance(rec: &AttemptRecord, att: &Attempt) -> bool {
    rec.instance != att.instance.id && !rec.instance.is_empty()
}

/// A task parked on a usage limit resumes its session so its work is kept.
fn resumed_session(att: &Attempt) -> Option<String> {
    AttemptRecord::from_stored(att.claim.task.last_record.as_ref())
        .filter(|r| r.status == Some(Status::RateLimited))
        .and_then(|r| r.session_id)
}

/// The prompt: role context, the instance's recent history, the task, its
/// dependencies and handoff context.
pub(crate) fn prompt(att: &Attempt, a: &Admitted, p: &Prepared) -> String {
    let history = att
        .instance
        .recent_history(prompt::HISTORY)
        .unwrap_or_default();
    let mut text = prompt::build(
        &a.role,
        &history,
        &a.spec.task.prompt,
        &p.deps,
        a.spec.handoff.as_ref(),
    );
    if !p.brief.is_empty() {
        text.push('\n');
        text.push_str(&p.brief);
    }
    text
}
