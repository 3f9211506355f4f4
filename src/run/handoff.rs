//! Handoffs becoming tasks: after an attempt succeeded, its declared handoff
//! (`handoff_to`) and the handoffs its agent requested (still open) each become a
//! follow-up task for the target role, whose prompt carries the handoff's context.

use crate::input::tasklist::TaskSpec;
use crate::outcome::AttemptRecord;
use crate::run::prompt::HandoffContext;
use crate::run::spec::{new_task, StoredSpec};
use crate::store::{
    call, ClaimToken, HandoffRequest, HandoffRow, HandoffState, NewTask, Store, TaskRow,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The follow-up tasks of one succeeded attempt, inserted with its finish.
#[derive(Debug, Default)]
pub struct FollowUps {
    /// Tasks to create.
    pub new_tasks: Vec<NewTask>,
    /// Requested handoffs (ids) that became tasks: (handoff id, new task id).
    pub converted: Vec<(i64, String)>,
}

/// What a finished attempt hands on: the task, its stored spec, the instance that ran
/// it and the attempt's record.
pub struct Source<'a> {
    /// The task as claimed.
    pub task: &'a TaskRow,
    /// Its stored definition, if readable.
    pub spec: Option<&'a StoredSpec>,
    /// The instance that ran it.
    pub instance: &'a str,
    /// The attempt's record.
    pub record: &'a AttemptRecord,
}

/// The follow-up tasks of a succeeded attempt: the declared handoff, then every
/// requested handoff that is still open.
pub async fn follow_ups(store: &Arc<dyn Store>, token: &ClaimToken, src: &Source<'_>) -> FollowUps {
    let id = src.task.id.clone();
    let handoffs = call(store, move |st| st.handoffs(Some(&id)))
        .await
        .unwrap_or_default();
    let resumed = src.record.resumed_session.is_some();
    let open: Vec<&HandoffRow> = handoffs
        .iter()
        .filter(|h| is_open(h, token.fence, resumed))
        .collect();
    let declared = src.spec.and_then(|s| s.task.handoff_to.clone());
    // Only read every id (to pick free follow-up ids) when a handoff needs one.
    let existing: Vec<String> = if declared.is_some() || !open.is_empty() {
        call(store, |st| st.statuses())
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.0)
            .collect()
    } else {
        Vec::new()
    };
    let mut taken: Vec<String> = Vec::new();
    let mut out = FollowUps::default();
    if let Some(to) = declared {
        let req = HandoffRequest {
            to_role: to,
            reason: "declared in the task list (handoff_to)".into(),
            state: None,
            next_steps: vec![],
        };
        out.new_tasks
            .extend(handoff_task(src, &req, &existing, &mut taken));
    }
    for h in open {
        if let Some(t) = handoff_task(src, &h.request, &existing, &mut taken) {
            out.converted.push((h.id, t.id.clone()));
            out.new_tasks.push(t);
        }
    }
    out
}

/// A requested handoff is converted when it is still open (pending, or accepted by a
/// person before the attempt ended, so no task exists for it yet) and was asked by
/// this claim, or by the usage-limited attempt whose session this one resumed.
fn is_open(h: &HandoffRow, fence: i64, resumed: bool) -> bool {
    let open = h.state == HandoffState::Pending
        || (h.state == HandoffState::Accepted && h.new_task.is_none());
    open && (h.fence == fence || resumed)
}

/// Builds the follow-up task of a handoff: id `<source>.<role>-<n>`, role = target,
/// depending on the source, its prompt carrying the context.
pub fn handoff_task(
    src: &Source<'_>,
    req: &HandoffRequest,
    existing: &[String],
    taken: &mut Vec<String>,
) -> Option<NewTask> {
    let task = src.task;
    let id = (1..1000)
        .map(|n| format!("{}.{}-{n}", task.id, req.to_role))
        .find(|c| !existing.contains(c) && !taken.contains(c))?;
    taken.push(id.clone());
    let mut spec = follow_up_spec(task, &id, &req.to_role);
    if let Some(s) = src.spec {
        spec.timeout = s.task.timeout;
        spec.retries = s.task.retries;
        spec.env = s.task.env.clone();
    }
    let ctx = HandoffContext {
        source_task: task.id.clone(),
        source_role: task.role.clone(),
        source_instance: Some(src.instance.to_string()),
        reason: req.reason.clone(),
        state: req.state.clone(),
        next_steps: req.next_steps.clone(),
        files_changed: src.record.changes(),
        result_text: src.record.result_text.clone(),
    };
    let stored = StoredSpec {
        task: spec,
        handoff: Some(ctx),
        resolve: None,
    };
    Some(new_task(&stored, 1))
}

/// The definition of a follow-up task for `role`, depending on its source.
pub fn follow_up_spec(task: &TaskRow, id: &str, role: &str) -> TaskSpec {
    TaskSpec {
        id: id.to_string(),
        prompt: format!(
            "Task `{}` ({} role) handed its work on to you, as the {role}. Read the handoff context below, \
             check the current state of the files in your working directory, then carry the work on.",
            task.id, task.role
        ),
        role: role.to_string(),
        priority: task.priority,
        depends_on: vec![task.id.clone()],
        timeout: None,
        idle_timeout: None,
        result_grace: None,
        retries: None,
        handoff_to: None,
        instance: None,
        env: BTreeMap::new(),
        model: None,
        max_turns: None,
        max_budget_usd: None,
        permission_mode: None,
        verify: None,
        review: None,
        fix_rounds: None,
        order: task.order as usize,
    }
}
