//! Git mode, after the child: the attempt's work committed and read back.
//!
//! - [`seal`] (in observe): `git add -A` and one commit of what the agent left, on
//!   the task's branch after any commits it made itself, authored by the instance,
//!   with the `Borg-*` trailers; then the files changed and the diffstat from the
//!   start commit, from git alone (no tree walk); a resolve task's result is checked
//!   (merge concluded, no conflict marker left), and is a failure when it is not.
//! - [`settle`] (in record): the final commit kept under
//!   `refs/borg/attempts/<task>/<n>`; a failed, timed-out or interrupted attempt's
//!   worktree reset to the start (its branch with it), so a retry starts clean; the
//!   worktree detached so the branch is free; the attempt's marker removed.

use super::Attempt;
use crate::git::commit::{subject, Message};
use crate::git::Repo;
use crate::outcome::fault::Classified;
use crate::outcome::{FaultClass, Status};
use std::time::Instant;

/// Commits the attempt's work and fills the record's files, commit and diffstat.
pub(crate) async fn seal(att: &mut Attempt, classified: &mut Classified) {
    let Some(g) = att.git.clone() else {
        return;
    };
    let msg = message(att, classified);
    let instance = att.instance.id.clone();
    let began = Instant::now();
    let ok = classified.status == Status::Succeeded;
    let job = g.clone();
    let res = tokio::task::spawn_blocking(move || {
        let untouched = match (&job.resolve, ok) {
            (Some(_), true) => job.wt.untouched_unmerged(&job.repo, &job.conflicts)?,
            _ => Vec::new(),
        };
        let made = job.wt.commit_all(&job.repo, &instance, &msg)?;
        let head = match made {
            Some(c) => c,
            None => job.wt.head(&job.repo)?,
        };
        let (files, stat) = job.repo.diff(&job.start, &head)?;
        let mut problems = match (&job.resolve, ok) {
            (Some(ctx), true) => {
                job.repo
                    .resolution_problems(&job.wt, &ctx.ours, &ctx.theirs, &head, &ctx.files)?
            }
            _ => Vec::new(),
        };
        if !untouched.is_empty() {
            problems.insert(
                0,
                format!(
                    "left unmerged as the merge wrote them: {}",
                    untouched.join(", ")
                ),
            );
        }
        Ok::<_, crate::git::GitError>((head, files, stat, problems))
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let r = &mut att.record;
    r.git.branch = Some(g.branch.clone());
    r.git.base = Some(g.start.clone());
    r.git.start_ms = Some(g.start_ms);
    match res {
        Ok((head, files, stat, problems)) => {
            r.files_changed = files;
            r.git.commit = Some(head);
            r.git.diffstat = Some(stat);
            r.git.seal_ms = Some(began.elapsed().as_millis() as u64);
            if let Some(a) = att.git.as_mut() {
                a.sealed = true;
            }
            if !problems.is_empty() {
                *classified = unresolved(&problems);
            }
        }
        Err(e) => {
            tracing::error!(task = %att.claim.task.id, "{e}");
            *classified = failure(format!("cannot commit the attempt's work: {e}"), "git");
        }
    }
}

/// The commit message: subject from the task id and the result (or the status and
/// error of an attempt that did not succeed), and the trailers.
fn message(att: &Attempt, c: &Classified) -> Message {
    let r = &att.record;
    let (status, text) = if c.status == Status::Succeeded {
        (None, r.result_text.as_deref())
    } else {
        (
            Some(c.status.as_str()),
            c.error.as_deref().or(r.result_text.as_deref()),
        )
    };
    Message {
        subject: subject(&r.task, status, text),
        trailers: vec![
            ("Borg-Task".into(), r.task.clone()),
            ("Borg-Attempt".into(), r.attempt.to_string()),
            ("Borg-Role".into(), r.role.clone()),
            ("Borg-Instance".into(), r.instance.clone()),
            (
                "Borg-Session".into(),
                r.session_id.clone().unwrap_or_else(|| "none".into()),
            ),
            ("Borg-Cost".into(), format!("{:.4}", r.cost_usd)),
            ("Borg-Status".into(), c.status.as_str().into()),
        ],
    }
}

/// A resolve task whose result is not a resolution.
fn unresolved(problems: &[String]) -> Classified {
    failure(
        format!("the conflict is not resolved: {}", problems.join("; ")),
        "unresolved_conflict",
    )
}

/// A permanent failure found by borg after the child.
fn failure(error: String, cause: &str) -> Classified {
    Classified {
        status: Status::Failed,
        fault: Some(FaultClass::Permanent),
        error: Some(error),
        cause: Some(cause.into()),
        resets_at: None,
        limit_kind: None,
    }
}

/// Keeps the attempt's commit under its ref and readies the worktree for the next
/// task; a failed attempt's worktree (and branch) goes back to the start.
pub(crate) async fn settle(att: &mut Attempt, status: Status) {
    let Some(g) = att.git.clone().filter(|g| g.sealed) else {
        return;
    };
    let commit = att.record.git.commit.clone();
    let (task, n, path) = (
        att.record.task.clone(),
        att.record.attempt,
        att.instance.path.clone(),
    );
    let res = tokio::task::spawn_blocking(move || {
        let kept = match commit.filter(|c| *c != g.start) {
            Some(c) => {
                let name = Repo::attempt_ref(&task, n);
                g.repo.set_ref(&name, &c, "borg: attempt")?;
                Some(name)
            }
            None => None,
        };
        if !matches!(status, Status::Succeeded | Status::RateLimited) {
            g.wt.reset_hard(&g.repo, &g.start)?;
        }
        g.wt.detach(&g.repo)?;
        crate::git::recover::InFlight::clear(&path);
        Ok::<_, crate::git::GitError>(kept)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match res {
        Ok(kept) => att.record.git.attempt_ref = kept,
        Err(e) => tracing::error!(task = %att.record.task, "cannot settle the worktree: {e}"),
    }
}
