//! The fleet at a glance, read from the store (so it works from another process while
//! `borg run` writes): instances and what they run (with their agents' reported
//! progress and current file), the work outside agents hold and their progress, the
//! queue by state, parking, the memory wait and breaker, handoffs, task claims, file
//! leases, the newest decisions and messages, totals and per-role metrics, all from one
//! read of the store (`ViewStore`), whatever the number of tasks. `borg status` prints
//! it; `borg serve`'s dashboard renders it.

use crate::outcome::transcript::summarize_file;
use crate::outcome::Status;
use crate::show::report;
use crate::store::agents::{agent_of_owner, ProgressRow};
use crate::store::coord::{DecisionRow, LeaseRow, MessageRow};
use crate::store::view::MEMORY_KEY;
use crate::store::{AttemptRow, FleetView, HandoffRow, Store, StoreError, TaskRow};
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
    /// While no new child starts because the machine's memory is below
    /// `min_available_memory` (the scheduler's record).
    pub memory: Option<serde_json::Value>,
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

/// Reads the view in one read of the store (one snapshot, whatever the number of
/// tasks). `external` names the roles only outside agents do; `recent` is how many of
/// the newest decisions and messages to show.
pub fn view(
    store: &dyn Store,
    external: &[String],
    recent: usize,
    now: i64,
) -> Result<StatusView, StoreError> {
    Ok(shape(store.fleet_view_of(now, recent)?, external, now))
}

/// Shapes a fleet read ([`FleetView`]) into the view people see.
pub fn shape(mut v: FleetView, external: &[String], now: i64) -> StatusView {
    let parked = v.fleet.remove("parked").filter(|p| {
        p.get("until_ms")
            .and_then(|u| u.as_i64())
            .is_some_and(|u| u > now)
    });
    let flag = |x: &serde_json::Value, k: &str| x.get(k).and_then(|o| o.as_bool()) == Some(true);
    let breaker = v.fleet.remove("breaker").filter(|b| flag(b, "open"));
    let memory = v.fleet.remove(MEMORY_KEY).filter(|m| flag(m, "waiting"));
    let awaiting: Vec<&str> = v
        .handoffs
        .iter()
        .filter(|h| h.state == crate::store::HandoffState::Pending)
        .filter_map(|h| h.new_task.as_deref())
        .collect();
    let queue = queue(&v.tasks, external, &awaiting, parked.is_some(), now);
    let instances = instance_views(&v, now);
    let outside = outside(&v.tasks, &v.progress, now);
    let mut by_task: HashMap<&str, Vec<AttemptRow>> = HashMap::new();
    for a in &v.attempts {
        by_task.entry(a.task.as_str()).or_default().push(a.clone());
    }
    let reports: Vec<_> = v
        .tasks
        .iter()
        .map(|t| report::live_task_report(t, by_task.get(t.id.as_str()).map_or(&[], Vec::as_slice)))
        .collect();
    let (totals, roles) = report::totals(&reports);
    StatusView {
        claims: claims(&v.tasks),
        instances,
        outside,
        queue,
        parked,
        breaker,
        memory,
        totals,
        roles,
        handoffs: std::mem::take(&mut v.handoffs),
        leases: std::mem::take(&mut v.leases),
        decisions: std::mem::take(&mut v.decisions),
        messages: std::mem::take(&mut v.messages),
    }
}

/// The task claims held now.
fn claims(tasks: &[TaskRow]) -> Vec<ClaimView> {
    tasks
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
        .collect()
}

/// Each instance with what it runs now: from its live transcript, and from the
/// activity its agent reported (progress, step, current file).
fn instance_views(v: &FleetView, now: i64) -> Vec<InstanceView> {
    let running: Vec<&AttemptRow> = v
        .attempts
        .iter()
        .filter(|a| a.status == Status::Running)
        .collect();
    let by_id: HashMap<&str, &TaskRow> = v.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    v.instances
        .iter()
        .map(|i| {
            let att = running.iter().find(|a| a.start.instance == i.id);
            let act = att.and_then(|a| {
                v.activities
                    .iter()
                    .find(|x| x.task == a.task && x.fence == a.fence)
            });
            let live = att.and_then(|a| summarize_file(Path::new(&a.start.stdout_log)).ok());
            let timeout_ms = att
                .and_then(|a| by_id.get(a.task.as_str()))
                .and_then(|t| t.spec.get("timeout").and_then(|d| d.as_i64()));
            InstanceView {
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
            }
        })
        .collect()
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
fn outside(tasks: &[TaskRow], progress: &[ProgressRow], now: i64) -> Vec<OutsideView> {
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
