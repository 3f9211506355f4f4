//! `borg status`: the fleet at a glance (`show::fleet`), as text or JSON, once or
//! every second: the hosts of the fleet (`hosts`), instances and what they run,
//! outside agents' work, the queue by state (tasks of external roles wait for an
//! outside agent), parking and breaker, file leases, the newest decisions and
//! messages, run totals and per-role metrics.

mod hosts;

use super::{print_json, Ctx};
use crate::cli::StatusArgs;
use crate::error::EXIT_OK;
use crate::input::config::Overrides;
use crate::run::attempt::now_ms;
use crate::show::fleet::{shape, InstanceView, OutsideView, StatusView, QUEUE_STATES};
use crate::show::report;
use crate::store::agents::AGENT_HOST;
use crate::store::{OwnerInfo, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// What `borg status` shows: the hosts, then the fleet view (flattened in the JSON).
#[derive(Debug, Serialize)]
struct Shown {
    hosts: Vec<hosts::HostView>,
    #[serde(flatten)]
    fleet: StatusView,
}

/// The owners that are borg processes: outside agents (`borg serve`) have a section
/// of their own and no heartbeat to judge.
fn borg_owners(owners: &[OwnerInfo]) -> Vec<OwnerInfo> {
    owners
        .iter()
        .filter(|o| o.host != AGENT_HOST)
        .cloned()
        .collect()
}

/// Runs `borg status`.
pub async fn run(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    let external = ctx.roles(&s).map(|r| r.external()).unwrap_or_default();
    loop {
        let v = frame(store.as_ref(), &external, s.run.lease)?;
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

/// One frame: the whole fleet read in one go (one read of the store, one snapshot),
/// then shaped.
fn frame(store: &dyn Store, external: &[String], lease: Duration) -> anyhow::Result<Shown> {
    let now = now_ms();
    let v = store.fleet_view(now)?;
    let hosts = hosts::hosts(&borg_owners(&v.owners), &v.tasks, lease, now);
    Ok(Shown {
        hosts,
        fleet: shape(v, external, now),
    })
}

/// The text view: instances, queue, alerts, totals. Writing to a `String` cannot fail,
/// hence the ignored `fmt::Result`s.
fn text(shown: &Shown) -> String {
    let mut o = String::new();
    let v = &shown.fleet;
    hosts::write_hosts(&mut o, &shown.hosts);
    write_instances(&mut o, &v.instances);
    write_outside(&mut o, &v.outside);
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

/// The tasks outside agents hold, with their latest progress.
fn write_outside(o: &mut String, outside: &[OutsideView]) {
    if outside.is_empty() {
        return;
    }
    let _ = writeln!(o, "OUTSIDE AGENTS");
    for w in outside {
        let (pct, step) = w
            .progress
            .as_ref()
            .map(|p| (format!("{:.0}%", p.report.percent), p.report.step.clone()))
            .unwrap_or_else(|| ("-".into(), String::new()));
        let _ = writeln!(
            o,
            "  {:<28} {:<11} {:<24} {:>5} {}",
            w.agent, w.role, w.task, pct, step
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
        let note = match (k, ids.is_empty()) {
            ("outside", false) => "  (waiting for an outside agent)",
            ("approval", false) => "  (waiting for a person: borg handoff accept ID)",
            _ => "",
        };
        let _ = writeln!(
            o,
            "  {:<8} {:>5}  {}{}{note}",
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
                awaits_person: false,
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
            let v = frame(&st, &[], Duration::from_secs(60)).unwrap().fleet;
            assert_eq!(v.queue["running"].len(), n);
            assert_eq!(
                st.read_transactions() - before,
                1,
                "one frame of {n} tasks read the store more than once"
            );
        }
    }
}
