//! The fleet at a glance, read from the store (so it works from another process while
//! `borg run` writes): instances and what they run (with their agents' reported
//! progress and current file), the work outside agents hold and their progress, the
//! queue by state, parking and breaker, handoffs, task claims, file leases, the newest
//! decisions and messages, totals and per-role metrics. `borg status` prints it; `borg serve`'s dashboard renders it.

use crate::outcome::transcript::summarize_file;
use crate::outcome::Status;
use crate::show::report;
use crate::store::agents::{agent_of_owner, ProgressRow};
use crate::store::coord::{DecisionRow, LeaseRow, MessageRow};
use crate::store::{HandoffRow, Store, StoreError, TaskRow};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Its role.
    pub role: String,
    /// busy or idle.
    pub state: String,
    /// The task it runs now.
    pub task: Option<String>,
    /// The attempt number.
    pub attempt: Option<i64>,
    /// The tool call in progress (e.g. `Edit src/a.rs`).
    pub tool: Option<String>,
    /// Time since the attempt started.
    pub elapsed_ms: Option<i64>,
    /// Turns so far.
    pub turns: u64,
    /// Cost so far.
    pub cost_usd: f64,
    /// The attempt's timeout, when known (for a progress bar of time used).
    pub timeout_ms: Option<i64>,
    /// What its agent reported (`report_progress`) and the file it works on.
    pub progress: Option<u8>,
    /// The step its agent reported.
    pub step: Option<String>,
    /// The file it works on (the coordination hook's record).
    pub current_file: Option<String>,
}

/// A task an outside agent holds.
#[derive(Debug, Clone, Serialize)]
pub struct OutsideView {
    /// Task id.
    pub task: String,
    /// Its role.
    pub role: String,
    /// The agent holding it.
    pub agent: String,
    /// Time since it was claimed.
    pub elapsed_ms: i64,
    /// Its latest progress report.
    pub progress: Option<ProgressRow>,
}

/// A claim held now: the task's lease.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimView {
    /// Task id.
    pub task: String,
    /// Holder (a borg owner id, or `agent:<id>`).
    pub owner: String,
    /// Fencing token.
    pub fence: i64,
    /// Lease expiry, epoch ms.
    pub expires_ms: Option<i64>,
}

/// The whole view.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// Instances.
    pub instances: Vec<InstanceView>,
    /// Tasks outside agents hold now.
    pub outside: Vec<OutsideView>,
    /// Queue state → task ids (every key of [`QUEUE_STATES`] present).
    pub queue: BTreeMap<&'static str, Vec<String>>,
    /// Parking, while it lasts.
    pub parked: Option<serde_json::Value>,
    /// The breaker, while open.
    pub breaker: Option<serde_json::Value>,
    /// Totals.
    pub totals: report::Totals,
    /// Per role.
    pub roles: BTreeMap<String, report::RoleMetrics>,
    /// Every handoff.
    pub handoffs: Vec<HandoffRow>,
    /// Task claims held now.
    pub claims: Vec<ClaimView>,
    /// Live file leases.
    pub leases: Vec<LeaseRow>,
    /// The newest decisions.
    pub decisions: Vec<DecisionRow>,
    /// The newest messages.
    pub messages: Vec<MessageRow>,
}

/// The queue's states, in the order views list them. `outside`: ready, but of an
/// external role, so waiting for an outside agent (`borg serve`); `approval`: made from
/// a handoff that waits for a person to accept it.
pub const QUEUE_STATES: [&str; 9] = [
    "ready", "outside", "approval", "running", "waiting", "parked", "done", "failed", "skipped",
];

/// Reads the view. `external` names the roles only outside agents do; `recent` is how
/// many of the newest decisions and messages to show.
pub fn view(
    store: &dyn Store,
    external: &[String],
    recent: usize,
    now: i64,
) -> Result<StatusView, StoreError> {
    let tasks = store.tasks()?;
    let parked = store.fleet("parked")?.filter(|v| {
        v.get("until_ms")
            .and_then(|u| u.as_i64())
            .is_some_and(|u| u > now)
    });
    let handoffs = store.handoffs(None)?;
    let awaiting: Vec<&str> = handoffs
        .iter()
        .filter(|h| h.state == crate::store::HandoffState::Pending)
        .filter_map(|h| h.new_task.as_deref())
        .collect();
    let queue = queue(&tasks, external, &awaiting, parked.is_some(), now);
    let instances = instance_views(store, &tasks, now)?;
    let outside = outside(&tasks, store.progress()?, now);
    let mut reports = Vec::new();
    for t in &tasks {
        reports.push(report::live_task_report(t, &store.attempts(&t.id)?));
    }
    let (totals, roles) = report::totals(&reports);
    Ok(StatusView {
        instances,
        outside,
        queue,
        parked,
        breaker: store
            .fleet("breaker")?
            .filter(|b| b.get("open").and_then(|o| o.as_bool()).unwrap_or(false)),
        totals,
        roles,
        handoffs,
        leases: store.leases(now)?.into_iter().filter(|l| l.live).collect(),
        decisions: store.decisions(None, recent)?,
        messages: store.messages(recent)?,
        claims: tasks
            .iter()
            .filter(|t| t.status == Status::Running)
            .filter_map(|t| {
                Some(ClaimView {
                    task: t.id.clone(),
                    owner: t.owner.clone()?,
                    fence: t.fence,
                    expires_ms: t.lease_expires_ms,
                })
            })
            .collect(),
    })
}

/// Each instance with what it runs now: from its live transcript, and from the
/// activity its agent reported (progress, step, current file).
fn instance_views(
    store: &dyn Store,
    tasks: &[TaskRow],
    now: i64,
) -> Result<Vec<InstanceView>, StoreError> {
    let running = store.running_attempts()?;
    let acts = store.activities()?;
    let by_id: HashMap<&str, &TaskRow> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut instances = Vec::new();
    for i in store.instances()? {
        let att = running.iter().find(|a| a.start.instance == i.id);
        let act = att.and_then(|a| acts.iter().find(|x| x.task == a.task && x.fence == a.fence));
        let live = att.and_then(|a| summarize_file(Path::new(&a.start.stdout_log)).ok());
        let timeout_ms = att
            .and_then(|a| by_id.get(a.task.as_str()))
            .and_then(|t| t.spec.get("timeout").and_then(|d| d.as_i64()));
        instances.push(InstanceView {
            id: i.id.clone(),
            role: i.role.clone(),
            state: if att.is_some() { "busy" } else { "idle" }.into(),
            task: att.map(|a| a.task.clone()),
            attempt: att.map(|a| a.attempt),
            tool: live.as_ref().and_then(|l| l.current_tool.clone()),
            elapsed_ms: att.map(|a| now - a.started_ms),
            turns: live.as_ref().map(|l| l.num_turns).unwrap_or(0),
            cost_usd: live.as_ref().map(|l| l.cost_usd).unwrap_or(0.0),
            timeout_ms,
            progress: act.and_then(|a| a.activity.percent),
            step: act.and_then(|a| a.activity.step.clone()),
            current_file: act.and_then(|a| a.activity.current_file.clone()),
        });
    }
    Ok(instances)
}

/// Every task in its queue state.
fn queue(
    tasks: &[TaskRow],
    external: &[String],
    awaiting: &[&str],
    parked: bool,
    now: i64,
) -> BTreeMap<&'static str, Vec<String>> {
    let by_id: HashMap<&str, &TaskRow> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut queue: BTreeMap<&'static str, Vec<String>> =
        QUEUE_STATES.into_iter().map(|k| (k, Vec::new())).collect();
    for t in tasks {
        let k = match t.status {
            Status::Running => "running",
            Status::Succeeded => "done",
            Status::Skipped => "skipped",
            Status::Pending | Status::RateLimited => {
                let deps_done = t.depends_on.iter().all(|d| {
                    by_id
                        .get(d.as_str())
                        .is_some_and(|p| p.status == Status::Succeeded)
                });
                if awaiting.contains(&t.id.as_str()) {
                    "approval"
                } else if !deps_done {
                    "waiting"
                } else if external.contains(&t.role) {
                    "outside"
                } else if parked || t.not_before_ms > now {
                    "parked"
                } else {
                    "ready"
                }
            }
            _ => "failed",
        };
        queue.entry(k).or_default().push(t.id.clone());
    }
    queue
}

/// The running tasks whose claim an outside agent holds, with their progress.
fn outside(tasks: &[TaskRow], progress: Vec<ProgressRow>, now: i64) -> Vec<OutsideView> {
    tasks
        .iter()
        .filter(|t| t.status == Status::Running)
        .filter_map(|t| {
            let agent = agent_of_owner(t.owner.as_deref()?)?.to_string();
            Some(OutsideView {
                task: t.id.clone(),
                role: t.role.clone(),
                agent,
                elapsed_ms: now - t.updated_ms,
                progress: progress
                    .iter()
                    .find(|p| p.task == t.id && p.fence == t.fence)
                    .cloned(),
            })
        })
        .collect()
}
