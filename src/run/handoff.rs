//! Handoffs becoming tasks: after an attempt succeeded, its declared handoff
//! (`handoff_to`) and the handoffs its agent requested (still open) each become a
//! follow-up task for the target role, whose prompt carries the handoff's context.
//! Under `approval = "person"` (`[handoff]` or the target role's front matter) the
//! task is created but waits for a person to accept its handoff; a declared handoff
//! then gets a handoff row of its own, so that there is something to accept.

use crate::input::config::HandoffSettings;
use crate::input::roles::RoleSet;
use crate::input::tasklist::TaskSpec;
use crate::outcome::AttemptRecord;
use crate::run::prompt::HandoffContext;
use crate::run::spec::{new_task, StoredSpec};
use crate::store::{
    call, ClaimToken, HandoffRequest, HandoffRow, HandoffState, NewTask, Store, TaskRow,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Which handoffs wait for a person: `[handoff] approval`, overridden by the target
/// role's `approval`.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    /// `[handoff] approval = "person"`.
    pub person: bool,
    /// Roles that say otherwise: role → waits for a person.
    pub roles: HashMap<String, bool>,
}

impl Approval {
    /// From the settings and the roles.
    pub fn new(settings: &HandoffSettings, roles: &RoleSet) -> Approval {
        Approval {
            person: settings.approval == "person",
            roles: roles
                .roles
                .iter()
                .filter_map(|r| Some((r.name.clone(), r.meta.approval.as_deref()? == "person")))
                .collect(),
        }
    }

    /// Whether a handoff to `role` waits for a person.
    pub fn waits(&self, role: &str) -> bool {
        self.roles.get(role).copied().unwrap_or(self.person)
    }
}

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
    /// Which handoffs wait for a person.
    pub approval: &'a Approval,
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
        if let Some(mut t) = handoff_task(src, &req, &existing, &mut taken) {
            if let Some(h) = declared_row(store, token, src, &req).await {
                t.awaits_person = true;
                out.converted.push((h, t.id.clone()));
            }
            out.new_tasks.push(t);
        }
    }
    for h in open {
        if let Some(mut t) = handoff_task(src, &h.request, &existing, &mut taken) {
            t.awaits_person = src.approval.waits(&h.request.to_role);
            out.converted.push((h.id, t.id.clone()));
            out.new_tasks.push(t);
        }
    }
    out
}

/// A declared handoff that waits for a person gets a handoff row (requested under the
/// claim, like an agent's), so that a person has something to accept; None when it
/// runs at once (or the row could not be written: then it runs at once too).
async fn declared_row(
    store: &Arc<dyn Store>,
    token: &ClaimToken,
    src: &Source<'_>,
    req: &HandoffRequest,
) -> Option<i64> {
    if !src.approval.waits(&req.to_role) {
        return None;
    }
    let (token, req, inst) = (token.clone(), req.clone(), src.instance.to_string());
    let now = chrono::Utc::now().timestamp_millis();
    call(store, move |st| {
        st.request_handoff(&token, Some(&inst), &req, now)
    })
    .await
    .map_err(|e| tracing::warn!("cannot record the declared handoff: {e}"))
    .ok()
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
        session: None,
        order: task.order as usize,
    }
}
