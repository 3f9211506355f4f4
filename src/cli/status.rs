//! `borg status`: the fleet at a glance, read from the store (so it works from another
//! terminal while `borg run` writes): instances and what they run, the queue by state,
//! parking and breaker, run totals and per-role metrics, and the hosts of the fleet
//! (`hosts`).

mod hosts;

use super::{print_json, Ctx};
use crate::cli::StatusArgs;
use crate::error::EXIT_OK;
use crate::input::config::Overrides;
use crate::outcome::Status;
use crate::run::attempt::now_ms;
use crate::show::report;
use crate::store::{AttemptRow, FleetView, Store, TaskRow};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Duration;

/// One instance line.
#[derive(Debug, Serialize)]
struct InstanceView {
    id: String,
    role: String,
    state: String,
    task: Option<String>,
    attempt: Option<i64>,
    tool: Option<String>,
    elapsed_ms: Option<i64>,
    turns: u64,
    cost_usd: f64,
    /// What its agent reported (`report_progress`) and the file it works on.
    progress: Option<u8>,
    step: Option<String>,
    current_file: Option<String>,
}

/// The whole view.
#[derive(Debug, Serialize)]
struct StatusView {
    hosts: Vec<hosts::HostView>,
    instances: Vec<InstanceView>,
    queue: BTreeMap<&'static str, Vec<String>>,
    parked: Option<serde_json::Value>,
    breaker: Option<serde_json::Value>,
    /// No new child starts: the machine's memory is below `min_available_memory`.
    memory: Option<serde_json::Value>,
    totals: report::Totals,
    roles: BTreeMap<String, report::RoleMetrics>,
    handoffs: Vec<crate::store::HandoffRow>,
    /// Live file leases.
    leases: Vec<crate::store::coord::LeaseRow>,
    /// The newest decisions.
    decisions: Vec<crate::store::coord::DecisionRow>,
    /// The newest messages.
    messages: Vec<crate::store::coord::MessageRow>,
}

/// Runs `borg status`.
pub async fn run(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    loop {
        let v = view(store.as_ref(), s.run.lease)?;
        if a.json {
            print_json(&v)?;
        } else {
            if a.watch {
                // Clear the screen between frames.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", text(&v));
        }
        if !a.watch {
            return Ok(EXIT_OK);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The queue's states, in the order the text view lists them; the JSON view has a key
/// for each even when empty, so both are built from this one list.
const QUEUE_STATES: [&str; 7] = [
    "ready", "running", "waiting", "parked", "done", "failed", "skipped",
];

/// One frame: the whole fleet read in one go (one snapshot), then shaped.
fn view(store: &dyn Store, lease: Duration) -> anyhow::Result<StatusView> {
    let now = now_ms();
    let mut v = store.fleet_view(now)?;
    let parked = v.fleet.remove("parked").filter(|p| {
        p.get("until_ms")
            .and_then(|u| u.as_i64())
            .is_some_and(|u| u > now)
    });
    let flag = |x: &serde_json::Value, k: &str| x.get(k).and_then(|o| o.as_bool()) == Some(true);
    let breaker = v.fleet.remove("breaker").filter(|b| flag(b, "open"));
    let memory = v
        .fleet
        .remove(crate::run::scheduler::MEMORY_FLEET_KEY)
        .filter(|m| flag(m, "waiting"));
    let queue = queue_of(&v.tasks, parked.is_some(), now);
    let mut by_task: HashMap<&str, Vec<AttemptRow>> = HashMap::new();
    for a in &v.attempts {
        by_task.entry(a.task.as_str()).or_default().push(a.clone());
    }
    let instances = instance_views(&v, now);
    let reports: Vec<_> = v
        .tasks
        .iter()
        .map(|t| report::live_task_report(t, by_task.get(t.id.as_str()).map_or(&[], Vec::as_slice)))
        .collect();
    let (totals, roles) = report::totals(&reports);
    let hosts = hosts::hosts(&v.owners, &v.tasks, lease, now);
    Ok(StatusView {
        hosts,
        instances,
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
    })
}

/// The queue: every task by the state the person cares about.
fn queue_of(tasks: &[TaskRow], parked: bool, now: i64) -> BTreeMap<&'static str, Vec<String>> {
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
                if !deps_done {
                    "waiting"
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

/// Each instance with what it runs now (from its live transcript and the activity its
/// agent reported).
fn instance_views(v: &FleetView, now: i64) -> Vec<InstanceView> {
    let running: Vec<&AttemptRow> = v
        .attempts
        .iter()
        .filter(|a| a.status == Status::Running)
        .collect();
    v.instances
        .iter()
        .map(|i| {
            let att = running.iter().find(|a| a.start.instance == i.id);
            let act = att.and_then(|a| {
                v.activities
                    .iter()
                    .find(|x| x.task == a.task && x.fence == a.fence)
            });
            let live = att.and_then(|a| {
                crate::outcome::transcript::summarize_file(std::path::Path::new(
                    &a.start.stdout_log,
                ))
                .ok()
            });
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
                progress: act.and_then(|a| a.activity.percent),
                step: act.and_then(|a| a.activity.step.clone()),
                current_file: act.and_then(|a| a.activity.current_file.clone()),
            }
        })
        .collect()
}

/// The text view: instances, queue, alerts, totals. Writing to a `String` cannot fail,
/// hence the ignored `fmt::Result`s.
fn text(v: &StatusView) -> String {
    let mut o = String::new();
    hosts::write_hosts(&mut o, &v.hosts);
    write_instances(&mut o, &v.instances);
    write_queue(&mut o, &v.queue);
    write_alerts(&mut o, v);
    write_coordination(&mut o, v);
    write_totals(&mut o, &v.totals, &v.roles);
    o
}

/// Leases, the newest decisions and messages (each section only when not empty).
fn write_coordination(o: &mut String, v: &StatusView) {
    use crate::coord::{leases::clock, notes::one_line};
    if !v.leases.is_empty() {
        let _ = writeln!(o, "LEASES   {} held", v.leases.len());
        for l in &v.leases {
            let _ = writeln!(
                o,
                "  {:<36} {:<28} {:<24} since {}  {}",
                l.path,
                l.instance,
                l.task,
                clock(l.since_ms),
                one_line(&l.reason, 50)
            );
        }
    }
    if !v.decisions.is_empty() {
        let _ = writeln!(o, "DECISIONS (newest)");
        for d in &v.decisions {
            let _ = writeln!(
                o,
                "  [{}] {} ({})",
                d.id,
                one_line(&d.title, 80),
                d.category
            );
        }
    }
    if !v.messages.is_empty() {
        let _ = writeln!(o, "MESSAGES (newest)");
        for m in &v.messages {
            let from = m.from_instance.clone().unwrap_or_else(|| m.author.clone());
            let _ = writeln!(
                o,
                "  #{} {} → {}: {}",
                m.id,
                from,
                m.to.label(),
                one_line(&m.body, 80)
            );
        }
    }
}

fn write_instances(o: &mut String, instances: &[InstanceView]) {
    let _ = writeln!(o, "INSTANCES");
    if instances.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for i in instances {
        let elapsed = i
            .elapsed_ms
            .map(|ms| {
                humantime::format_duration(Duration::from_secs((ms / 1000).max(0) as u64))
                    .to_string()
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  {:<28} {:<11} {:<5} {:<24} {:<28} {:>10} {:>4} turns ${:.4}",
            i.id,
            i.role,
            i.state,
            i.task.as_deref().unwrap_or("-"),
            i.tool.as_deref().unwrap_or("-"),
            elapsed,
            i.turns,
            i.cost_usd
        );
    }
}

/// One line per queue state: its count and the first few ids.
fn write_queue(o: &mut String, queue: &BTreeMap<&'static str, Vec<String>>) {
    let _ = writeln!(o, "QUEUE");
    for k in QUEUE_STATES {
        let ids = queue.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let shown: Vec<&str> = ids.iter().take(8).map(String::as_str).collect();
        let more = if ids.len() > 8 {
            format!(" … (+{})", ids.len() - 8)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  {:<8} {:>5}  {}{}",
            k,
            ids.len(),
            shown.join(", "),
            more
        );
    }
}

/// What needs a person's eye: parking, an open breaker, handoffs.
fn write_alerts(o: &mut String, v: &StatusView) {
    if let Some(p) = &v.parked {
        let until = p
            .get("until_ms")
            .and_then(|u| u.as_i64())
            .map(crate::run::summary::local_time)
            .unwrap_or_default();
        let kind = p.get("kind").and_then(|k| k.as_str()).unwrap_or("usage");
        let _ = writeln!(o, "PARKED   parked until {until} ({kind} limit)");
    }
    if let Some(m) = &v.memory {
        let mib = |k: &str| m.get(k).and_then(|x| x.as_u64()).unwrap_or(0) / (1024 * 1024);
        let _ = writeln!(
            o,
            "MEMORY   waiting: {} MiB available, below min_available_memory ({} MiB); no new child starts, tasks wait",
            mib("available_bytes"),
            mib("min_available_bytes")
        );
    }
    if let Some(b) = &v.breaker {
        let _ = writeln!(
            o,
            "BREAKER  open: {}",
            b.get("message").and_then(|m| m.as_str()).unwrap_or("")
        );
    }
    let pending_handoffs = v
        .handoffs
        .iter()
        .filter(|h| h.state == crate::store::HandoffState::Pending)
        .count();
    if !v.handoffs.is_empty() {
        let _ = writeln!(
            o,
            "HANDOFFS {} ({} pending)",
            v.handoffs.len(),
            pending_handoffs
        );
    }
}

/// Run totals, then one line per role.
fn write_totals(o: &mut String, t: &report::Totals, roles: &BTreeMap<String, report::RoleMetrics>) {
    let _ = writeln!(
        o,
        "TOTALS   {} tasks: {} succeeded, {} failed, {} skipped, {} running, {} pending; ${:.4}; {} in / {} out tokens",
        t.tasks,
        t.succeeded,
        t.failed,
        t.skipped,
        t.running,
        t.pending,
        t.cost_usd,
        t.tokens.input,
        t.tokens.output
    );
    for (r, m) in roles {
        let _ = writeln!(
            o,
            "  {:<11} {} tasks, {:.0}% ok, mean {:.1}s, p95 {:.1}s, ${:.4}",
            r,
            m.tasks,
            m.success_rate * 100.0,
            m.mean_duration_ms as f64 / 1000.0,
            m.p95_duration_ms as f64 / 1000.0,
            m.cost_usd
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ClaimRequest, NewTask, Store};

    /// A store of `n` tasks, each claimed and started once.
    fn store_of(n: usize) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let st = SqliteStore::open(&dir.path().join("borg.db")).unwrap();
        let tasks: Vec<NewTask> = (0..n)
            .map(|i| NewTask {
                id: format!("t{i:03}"),
                role: "developer".into(),
                priority: 0,
                order: i as i64,
                depends_on: vec![],
                instance: None,
                max_attempts: 1,
                spec: serde_json::json!({"prompt": "p"}),
                hash: format!("h{i}"),
            })
            .collect();
        st.sync_tasks(&tasks, 0).unwrap();
        let req = ClaimRequest {
            owner: "o".into(),
            roles: vec!["developer".into()],
            idle_instances: vec![],
            reuse: vec![],
            only: vec![],
            scoped: false,
            lease: Duration::from_secs(60),
            now_ms: 1,
        };
        while let Some(c) = st.claim_next(&req).unwrap() {
            let start = crate::store::AttemptStart {
                instance: "i".into(),
                ..Default::default()
            };
            st.start_attempt(&c.token, &start).unwrap();
        }
        (dir, st)
    }

    #[test]
    fn a_frame_reads_the_store_once_whatever_the_number_of_tasks() {
        for n in [3, 40] {
            let (_d, st) = store_of(n);
            let before = st.read_transactions();
            let v = view(&st, Duration::from_secs(60)).unwrap();
            assert_eq!(v.queue["running"].len(), n);
            assert_eq!(
                st.read_transactions() - before,
                1,
                "one frame of {n} tasks read the store more than once"
            );
        }
    }
}
