//! The dashboard's panels as HTML: alerts, instances (with a bar of the time used),
//! handoffs waiting for a person (Accept / Reject), the tasks outside agents hold
//! (with their reported progress), live log tails of running attempts, the queue by
//! state, file leases, decisions, messages, task claims, cost and tokens per role, and
//! the registered agents.

use super::esc;
use crate::serve::error::iso;
use crate::show::fleet::{InstanceView, OutsideView, StatusView, QUEUE_STATES};
use crate::store::agents::AgentRow;
use crate::store::HandoffState;
use std::fmt::Write;

/// Every panel. `timeout_ms` is the run's attempt timeout, for tasks without their own.
pub fn panels(v: &StatusView, agents: &[AgentRow], external: &[String], timeout_ms: i64) -> String {
    let mut o = String::with_capacity(8192);
    alerts(&mut o, v);
    instances(&mut o, &v.instances, timeout_ms);
    handoffs(&mut o, v);
    outside(&mut o, &v.outside, external);
    tails(&mut o, v);
    queue(&mut o, v);
    leases(&mut o, v);
    decisions(&mut o, v);
    messages(&mut o, v);
    claims(&mut o, v);
    roles(&mut o, v);
    agents_panel(&mut o, agents);
    o
}

fn pct_bar(o: &mut String, pct: f64, label: &str) {
    let p = pct.clamp(0.0, 100.0);
    let _ = write!(
        o,
        "<div class=\"bar\" data-pct=\"{p:.0}\" title=\"{}\"><span style=\"width:{p:.1}%\"></span><em>{}</em></div>",
        esc(label),
        esc(label)
    );
}

fn alerts(o: &mut String, v: &StatusView) {
    if let Some(p) = &v.parked {
        let until = p
            .get("until_ms")
            .and_then(|u| u.as_i64())
            .map(crate::serve::error::iso);
        let _ = write!(
            o,
            "<div class=\"alert\" id=\"parked\">Parked on a usage limit until {}</div>",
            esc(&until.unwrap_or_default())
        );
    }
    if let Some(m) = &v.memory {
        let mib = |k: &str| m.get(k).and_then(|x| x.as_u64()).unwrap_or(0) / (1024 * 1024);
        let _ = write!(
            o,
            "<div class=\"alert bad\" id=\"memory\">Waiting for memory: {} MiB available, below min_available_memory ({} MiB); no new child starts</div>",
            mib("available_bytes"),
            mib("min_available_bytes")
        );
    }
    if let Some(b) = &v.breaker {
        let m = b.get("message").and_then(|m| m.as_str()).unwrap_or("");
        let _ = write!(
            o,
            "<div class=\"alert bad\" id=\"breaker\">Breaker open: {}</div>",
            esc(m)
        );
    }
    let t = &v.totals;
    let _ = write!(
        o,
        "<div class=\"totals\" id=\"totals\"><b>{}</b> tasks · <b class=\"ok\">{}</b> succeeded · <b class=\"bad\">{}</b> failed · {} skipped · <b>{}</b> running · {} pending · <b>${:.4}</b> · {} in / {} out tokens</div>",
        t.tasks, t.succeeded, t.failed, t.skipped, t.running, t.pending, t.cost_usd, t.tokens.input, t.tokens.output
    );
}

fn instances(o: &mut String, list: &[InstanceView], timeout_ms: i64) {
    o.push_str("<section class=\"panel\" id=\"instances\"><h2>Instances</h2><div class=\"scroll\"><table><thead><tr><th>instance</th><th>role</th><th>state</th><th>task</th><th>progress</th><th>current</th><th>turns</th><th>cost</th></tr></thead><tbody>");
    if list.is_empty() {
        o.push_str("<tr><td colspan=\"8\" class=\"dim\">no instance yet</td></tr>");
    }
    for i in list {
        let _ = write!(
            o,
            "<tr data-instance=\"{}\" data-task=\"{}\" class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(&i.id),
            esc(i.task.as_deref().unwrap_or("")),
            esc(&i.state),
            esc(&i.id),
            esc(&i.role),
            esc(&i.state),
            esc(i.task.as_deref().unwrap_or("–"))
        );
        match (i.progress, i.elapsed_ms) {
            // What the agent reported (report_progress), else the time used.
            (Some(p), _) => {
                let step = i.step.as_deref().unwrap_or("");
                pct_bar(o, f64::from(p), &format!("{p}% {step}"));
            }
            (None, Some(e)) => {
                let t = i.timeout_ms.unwrap_or(timeout_ms);
                let label = format!("{}s of {}s", e.max(0) / 1000, t / 1000);
                pct_bar(o, e as f64 * 100.0 / t.max(1) as f64, &label);
            }
            (None, None) => {}
        }
        let current = i
            .current_file
            .as_deref()
            .or(i.tool.as_deref())
            .unwrap_or("");
        let _ = write!(
            o,
            "</td><td class=\"tool\">{}</td><td class=\"turns\">{}</td><td>${:.4}</td></tr>",
            esc(current),
            i.turns,
            i.cost_usd
        );
    }
    o.push_str("</tbody></table></div></section>");
}

fn outside(o: &mut String, list: &[OutsideView], external: &[String]) {
    let _ = write!(
        o,
        "<section class=\"panel\" id=\"outside\"><h2>Outside agents</h2><p class=\"dim\">External roles (done only by outside agents): {}</p><div class=\"scroll\"><table><thead><tr><th>agent</th><th>task</th><th>role</th><th>progress</th><th>step</th><th>files</th></tr></thead><tbody>",
        esc(&if external.is_empty() { "none".to_string() } else { external.join(", ") })
    );
    if list.is_empty() {
        o.push_str(
            "<tr><td colspan=\"6\" class=\"dim\">no task held by an outside agent</td></tr>",
        );
    }
    for w in list {
        let _ = write!(
            o,
            "<tr data-task=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(&w.task),
            esc(&w.agent),
            esc(&w.task),
            esc(&w.role)
        );
        let (pct, step, files) = w
            .progress
            .as_ref()
            .map(|p| {
                (
                    p.report.percent,
                    p.report.step.clone(),
                    p.report.files.join(", "),
                )
            })
            .unwrap_or((0.0, String::new(), String::new()));
        pct_bar(o, pct, &format!("{pct:.0}%"));
        let _ = write!(
            o,
            "</td><td>{}</td><td>{}</td></tr>",
            esc(&step),
            esc(&files)
        );
    }
    o.push_str("</tbody></table></div></section>");
}

fn tails(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel wide\" id=\"attempts\"><h2>Running attempts</h2>");
    let running: Vec<&InstanceView> = v.instances.iter().filter(|i| i.task.is_some()).collect();
    if running.is_empty() {
        o.push_str("<p class=\"dim\">nothing runs now</p>");
    }
    for i in running {
        let task = i.task.as_deref().unwrap_or("");
        let _ = write!(
            o,
            "<div class=\"attempt\"><h3>{} <span class=\"dim\">on {} · attempt {}</span></h3><pre class=\"tail\" data-tail=\"{}\"></pre></div>",
            esc(task),
            esc(&i.id),
            i.attempt.unwrap_or(0),
            esc(task)
        );
    }
    o.push_str("</section>");
}

fn handoffs(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"handoffs\"><h2>Handoffs waiting for a person</h2>");
    let pending: Vec<_> = v
        .handoffs
        .iter()
        .filter(|h| h.state == HandoffState::Pending)
        .collect();
    if pending.is_empty() {
        o.push_str("<p class=\"dim\">none</p>");
    }
    for h in pending {
        let what = match &h.new_task {
            Some(t) => format!("task {t} waits for you"),
            None => "its source is still running".to_string(),
        };
        let _ = write!(
            o,
            "<div class=\"handoff\" data-handoff=\"{id}\"><div><b>#{id}</b> {} → <b>{}</b> <span class=\"dim\">({})</span></div><div>{}</div><div class=\"buttons\"><button class=\"accept\" data-accept=\"{id}\">Accept</button><button class=\"reject\" data-reject=\"{id}\">Reject</button></div></div>",
            esc(&h.task),
            esc(&h.request.to_role),
            esc(&what),
            esc(&h.request.reason),
            id = h.id
        );
    }
    o.push_str("</section>");
}

fn queue(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"queue\"><h2>Queue</h2><dl>");
    for k in QUEUE_STATES {
        let ids = v.queue.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let label = if k == "outside" {
            "outside (waiting for an outside agent)"
        } else {
            k
        };
        let _ = write!(
            o,
            "<dt class=\"q-{k}\">{} <b>{}</b></dt><dd data-queue=\"{k}\">",
            esc(label),
            ids.len()
        );
        for id in ids.iter().take(40) {
            let _ = write!(o, "<span class=\"chip\">{}</span>", esc(id));
        }
        if ids.len() > 40 {
            let _ = write!(o, "<span class=\"dim\">+{}</span>", ids.len() - 40);
        }
        o.push_str("</dd>");
    }
    o.push_str("</dl></section>");
}

fn claims(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"claims\"><h2>Task claims</h2><div class=\"scroll\"><table><thead><tr><th>task</th><th>holder</th><th>fence</th><th>lease expires</th></tr></thead><tbody>");
    if v.claims.is_empty() {
        o.push_str("<tr><td colspan=\"4\" class=\"dim\">no claim held</td></tr>");
    }
    for l in &v.claims {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.task),
            esc(&l.owner),
            l.fence,
            esc(&l.expires_ms.map(iso).unwrap_or_default())
        );
    }
    o.push_str("</tbody></table></div></section>");
}

fn leases(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"leases\"><h2>File leases</h2><div class=\"scroll\"><table><thead><tr><th>path</th><th>holder</th><th>task</th><th>since</th><th>reason</th></tr></thead><tbody>");
    if v.leases.is_empty() {
        o.push_str("<tr><td colspan=\"5\" class=\"dim\">no file leased</td></tr>");
    }
    for l in &v.leases {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"tool\">{}</td></tr>",
            esc(&l.path),
            esc(&l.instance),
            esc(&l.task),
            esc(&iso(l.since_ms)),
            esc(&l.reason)
        );
    }
    o.push_str("</tbody></table></div></section>");
}

fn decisions(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"decisions\"><h2>Decisions</h2>");
    if v.decisions.is_empty() {
        o.push_str("<p class=\"dim\">none logged</p>");
    }
    for d in &v.decisions {
        let _ = write!(
            o,
            "<div class=\"note\"><b>{}</b> <span class=\"chip\">{}</span> {}<div class=\"dim\">{} · {}</div></div>",
            esc(&d.id),
            esc(&d.category),
            esc(&d.title),
            esc(d.instance.as_deref().unwrap_or(&d.author)),
            esc(&iso(d.created_ms))
        );
    }
    o.push_str("</section>");
}

fn messages(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"messages\"><h2>Messages</h2>");
    if v.messages.is_empty() {
        o.push_str("<p class=\"dim\">none sent</p>");
    }
    for m in &v.messages {
        let from = m.from_instance.clone().unwrap_or_else(|| m.author.clone());
        let _ = write!(
            o,
            "<div class=\"note\"><b>{}</b> → <b>{}</b>{}: {}<div class=\"dim\">{}</div></div>",
            esc(&from),
            esc(&m.to.label()),
            m.subject
                .as_deref()
                .map(|s| format!(" <i>{}</i>", esc(s)))
                .unwrap_or_default(),
            esc(&m.body),
            esc(&iso(m.created_ms))
        );
    }
    o.push_str("</section>");
}

fn roles(o: &mut String, v: &StatusView) {
    o.push_str("<section class=\"panel\" id=\"roles\"><h2>Cost and tokens per role</h2><div class=\"scroll\"><table><thead><tr><th>role</th><th>tasks</th><th>ok</th><th>mean</th><th>p95</th><th>cost</th><th>tokens in / out</th></tr></thead><tbody>");
    for (r, m) in &v.roles {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{:.0}%</td><td>{:.1}s</td><td>{:.1}s</td><td>${:.4}</td><td>{} / {}</td></tr>",
            esc(r),
            m.tasks,
            m.success_rate * 100.0,
            m.mean_duration_ms as f64 / 1000.0,
            m.p95_duration_ms as f64 / 1000.0,
            m.cost_usd,
            m.tokens.input,
            m.tokens.output
        );
    }
    o.push_str("</tbody></table></div></section>");
}

fn agents_panel(o: &mut String, agents: &[AgentRow]) {
    o.push_str("<section class=\"panel\" id=\"agents\"><h2>Registered agents</h2>");
    if agents.is_empty() {
        o.push_str("<p class=\"dim\">none (POST /api/claude/register)</p>");
    }
    for a in agents {
        let _ = write!(
            o,
            "<div class=\"agent\"><b>{}</b> <span class=\"dim\">{}</span> {}</div>",
            esc(&a.id),
            esc(a.version.as_deref().unwrap_or("")),
            a.capabilities
                .iter()
                .map(|c| format!("<span class=\"chip\">{}</span>", esc(c)))
                .collect::<String>()
        );
    }
    o.push_str("</section>");
}
