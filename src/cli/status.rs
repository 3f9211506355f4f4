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
use crate::store::{Store, TaskRow};
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

fn view(store: &dyn Store, lease: Duration) -> anyhow::Result<StatusView> {
    let now = now_ms();
    let tasks = store.tasks()?;
    let by_id: HashMap<&str, &TaskRow> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let parked = store.fleet("parked")?.filter(|v| {
        v.get("until_ms")
            .and_then(|u| u.as_i64())
            .is_some_and(|u| u > now)
    });
    let mut queue: BTreeMap<&'static str, Vec<String>> =
        QUEUE_STATES.into_iter().map(|k| (k, Vec::new())).collect();
    for t in &tasks {
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
                } else if parked.is_some() || t.not_before_ms > now {
                    "parked"
                } else {
                    "ready"
                }
            }
            _ => "failed",
        };
        queue.entry(k).or_default().push(t.id.clone());
    }
    let instances = instance_views(store, now)?;
    let mut reports = Vec::new();
    for t in &tasks {
        reports.push(report::live_task_report(t, &store.attempts(&t.id)?));
    }
    let (totals, roles) = report::totals(&reports);
    Ok(StatusView {
        hosts: hosts::hosts(&store.owners()?, &tasks, lease, now),
        instances,
        queue,
        parked,
        breaker: store
            .fleet("breaker")?
            .filter(|b| b.get("open").and_then(|o| o.as_bool()).unwrap_or(false)),
        totals,
        roles,
        handoffs: store.handoffs(None)?,
        leases: store.leases(now)?.into_iter().filter(|l| l.live).collect(),
        decisions: store.decisions(None, 5)?,
        messages: store.messages(5)?,
    })
}

/// Each instance with what it runs now (from its live transcript and the activity its
/// agent reported).
fn instance_views(store: &dyn Store, now: i64) -> anyhow::Result<Vec<InstanceView>> {
    let running = store.running_attempts()?;
    let acts = store.activities()?;
    let mut instances = Vec::new();
    for i in store.instances()? {
        let att = running.iter().find(|a| a.start.instance == i.id);
        let act = att.and_then(|a| acts.iter().find(|x| x.task == a.task && x.fence == a.fence));
        let live = att.and_then(|a| {
            crate::outcome::transcript::summarize_file(std::path::Path::new(&a.start.stdout_log))
                .ok()
        });
        instances.push(InstanceView {
            id: i.id.clone(),
            role: i.role.clone(),
            state: if att.is_some() {
                "busy".into()
            } else {
                "idle".into()
            },
            task: att.map(|a| a.task.clone()),
            attempt: att.map(|a| a.attempt),
            tool: live.as_ref().and_then(|l| l.current_tool.clone()),
            elapsed_ms: att.map(|a| now - a.started_ms),
            turns: live.as_ref().map(|l| l.num_turns).unwrap_or(0),
            cost_usd: live.as_ref().map(|l| l.cost_usd).unwrap_or(0.0),
            progress: act.and_then(|a| a.activity.percent),
            step: act.and_then(|a| a.activity.step.clone()),
            current_file: act.and_then(|a| a.activity.current_file.clone()),
        });
    }
    Ok(instances)
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
