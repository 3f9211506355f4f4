//! Stage 5, record: in git mode the attempt's commit kept under its ref and the
//! worktree readied for the next task (see [`super::seal::settle`]), and with a
//! shared remote the result pushed there, fenced ([`super::publish`]; a push the
//! fence refuses records nothing); the attempt's
//! entry in session.md, then what the task does next (the run's policy: done, retry,
//! park; and the follow-up tasks of its handoffs), committed to the store in the same
//! transaction as the attempt's record, fenced by the claim. A refused commit (the
//! claim was lost) records nothing.

use super::publish::{push_result, Published};
use super::{now_ms, Attempt, AttemptDone};
use crate::outcome::fault::Classified;
use crate::outcome::{FaultClass, Status};
use crate::run::handoff::{follow_ups, Approval, FollowUps, Source};
use crate::run::spec::StoredSpec;
use crate::store::{call, AttemptFinish, Disposition, StoreError, TaskRow};
use crate::workspace::instance::SessionEntry;

/// Records the attempt and moves the task on.
pub(crate) async fn commit(
    mut att: Attempt,
    classified: Classified,
    spec: Option<&StoredSpec>,
    decide: impl FnOnce(&Classified, &TaskRow) -> Disposition,
) -> AttemptDone {
    let r = &mut att.record;
    r.status = Some(classified.status);
    r.fault = classified.fault;
    r.cause.clone_from(&classified.cause);
    r.error.clone_from(&classified.error);
    r.resets_at = classified.resets_at;
    super::seal::settle(&mut att, classified.status).await;
    let mut classified = classified;
    if !att.claim_lost {
        match push_result(&att, classified.status).await {
            Published::Done => {}
            Published::Lost(why) => return discarded(att, classified, why),
            Published::Failed(why) => {
                classified = unpushed(why);
                let r = &mut att.record;
                r.status = Some(classified.status);
                r.fault = classified.fault;
                r.cause.clone_from(&classified.cause);
                r.error.clone_from(&classified.error);
            }
        }
    }
    append_session(&att, &classified, spec);
    let disposition = decide(&classified, &att.claim.task);
    let next = if classified.status == Status::Succeeded {
        let approval = Approval::new(&att.shared.settings.handoff, &att.shared.roles);
        let src = Source {
            task: &att.claim.task,
            spec,
            instance: &att.instance.id,
            record: &att.record,
            approval: &approval,
        };
        follow_ups(&att.shared.store, &att.claim.token, &src).await
    } else {
        FollowUps::default()
    };
    let retry_at = match disposition {
        Disposition::Retry { not_before_ms, .. } => Some(not_before_ms),
        _ => None,
    };
    let created: Vec<String> = next.new_tasks.iter().map(|t| t.id.clone()).collect();
    let fin = AttemptFinish {
        status: classified.status,
        record: serde_json::to_value(&att.record).unwrap_or_default(),
        disposition,
        new_tasks: next.new_tasks,
        converted_handoffs: next.converted,
        cost_usd: att.record.cost_usd,
        now_ms: now_ms(),
    };
    let lost = finish(&att, fin).await;
    let agent_tasks = att.record.created_tasks.clone();
    AttemptDone {
        task: att.claim.task.id.clone(),
        role: att.claim.task.role.clone(),
        instance: att.instance.id.clone(),
        record: att.record,
        classified,
        new_tasks: if lost.is_none() { created } else { Vec::new() },
        retry_at: retry_at.filter(|_| lost.is_none()),
        waits_for: None,
        agent_tasks,
        lost_claim: lost,
    }
}

/// Commits the finish; while the store cannot be reached, tries again (the fence
/// decides when it is back: the claim is still ours, or another host took the task
/// over and this result is refused). Gives up after `FINISH_PATIENCE` leases.
async fn finish(att: &Attempt, fin: AttemptFinish) -> Option<String> {
    let lease = att.shared.settings.run.lease;
    let began = std::time::Instant::now();
    loop {
        let (token, f) = (att.claim.token.clone(), fin.clone());
        match call(&att.shared.store, move |st| st.finish_attempt(&token, &f)).await {
            Ok(()) => return None,
            Err(e @ StoreError::Unreachable { .. })
                if began.elapsed() < lease * FINISH_PATIENCE =>
            {
                tracing::warn!("recording {}: {e}; trying again", att.claim.task.id);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// The attempt's result could not be pushed to the shared remote: a failed attempt,
/// worth trying again (its work stays on this host under its attempt ref).
fn unpushed(why: String) -> Classified {
    Classified {
        status: Status::Failed,
        fault: Some(FaultClass::Transient),
        error: Some(why),
        cause: Some("git_push".into()),
        resets_at: None,
        limit_kind: None,
    }
}

/// The end of an attempt whose claim another host took over: nothing is recorded.
fn discarded(att: Attempt, classified: Classified, why: String) -> AttemptDone {
    AttemptDone {
        task: att.claim.task.id.clone(),
        role: att.claim.task.role.clone(),
        instance: att.instance.id.clone(),
        agent_tasks: att.record.created_tasks.clone(),
        record: att.record,
        classified,
        new_tasks: Vec::new(),
        retry_at: None,
        waits_for: None,
        lost_claim: Some(why),
    }
}

/// How many leases a finish keeps trying to reach the store.
const FINISH_PATIENCE: u32 = 10;

/// Appends the attempt to the instance's session.md (its memory of earlier tasks).
fn append_session(att: &Attempt, classified: &Classified, spec: Option<&StoredSpec>) {
    let r = &att.record;
    let summary = r
        .result_text
        .clone()
        .or_else(|| r.error.clone())
        .unwrap_or_default();
    let entry = SessionEntry {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        task_id: r.task.clone(),
        attempt: r.attempt,
        prompt: spec.map(|s| s.task.prompt.clone()).unwrap_or_default(),
        status: classified.status,
        files_changed: r.changes(),
        summary: summary.chars().take(2000).collect(),
    };
    if let Err(e) = att.instance.append_session(&entry) {
        let path = att.instance.session_path();
        tracing::warn!("cannot append to {}: {e}", path.display());
    }
}
