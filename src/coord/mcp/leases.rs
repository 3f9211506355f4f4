//! The tools about who does what: `status` (seed 002's `coord-status`), `lock_files`
//! and `unlock_files`.

use super::{args, Ctx, Out};
use crate::coord::leases::{self, clock, deadlock, refusal};
use crate::coord::notes::one_line;
use crate::coord::paths;
use crate::store::coord::{LockRequest, Reader};
use crate::store::HandoffState;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `status`: the fleet, the leases, pending handoffs, my unread messages, decisions.
pub(super) fn status(ctx: &Ctx<'_>) -> Out {
    let st = ctx.store;
    let e = |x: crate::store::StoreError| x.to_string();
    let acts = st.activities().map_err(e)?;
    let fleet: Vec<Value> = st
        .instances()
        .map_err(e)?
        .into_iter()
        .map(|i| {
            let a = i.current_task.as_ref().and_then(|t| acts.iter().find(|a| &a.task == t));
            json!({ "instance": i.id, "role": i.role, "state": i.state, "task": i.current_task,
                    "progress": a.and_then(|a| a.activity.percent), "step": a.and_then(|a| a.activity.step.clone()),
                    "current_file": a.and_then(|a| a.activity.current_file.clone()),
                    "last_tool": a.and_then(|a| a.activity.last_tool.clone()),
                    "you": i.id == ctx.env.actor.instance })
        })
        .collect();
    let held: Vec<Value> = st
        .leases(now())
        .map_err(e)?
        .into_iter()
        .filter(|l| l.live)
        .map(|l| json!({ "path": l.path, "instance": l.instance, "task": l.task, "role": l.role,
                          "reason": l.reason, "since": clock(l.since_ms), "yours": l.task == ctx.env.actor.task && l.fence == ctx.env.actor.fence }))
        .collect();
    let handoffs: Vec<Value> = st
        .handoffs(None)
        .map_err(e)?
        .into_iter()
        .filter(|h| h.state == HandoffState::Pending)
        .map(|h| json!({ "id": h.id, "from_task": h.task, "to_role": h.request.to_role, "reason": h.request.reason }))
        .collect();
    let unread = st
        .unread_messages(&reader(ctx), false, 50, now())
        .map_err(e)?;
    let decisions: Vec<Value> = st
        .decisions(None, 10)
        .map_err(e)?
        .into_iter()
        .map(|d| json!({ "id": d.id, "category": d.category, "title": d.title }))
        .collect();
    Ok(json!({
        "you": { "instance": ctx.env.actor.instance, "task": ctx.env.actor.task, "role": ctx.env.config.role },
        "fleet": fleet, "leases": held, "pending_handoffs": handoffs,
        "unread_messages": unread.iter().map(|m| json!({ "id": m.id, "from": m.from_instance.clone().unwrap_or_else(|| m.author.clone()),
            "subject": m.subject, "preview": one_line(&m.body, 120) })).collect::<Vec<_>>(),
        "recent_decisions": decisions,
        "hint": if unread.is_empty() { "" } else { "call read_messages to read (and mark read) your messages" },
    }))
}

/// Who reads this attempt's messages.
pub(super) fn reader(ctx: &Ctx<'_>) -> Reader {
    Reader {
        instance: ctx.env.actor.instance.clone(),
        role: ctx.env.config.role.clone(),
        task: Some(ctx.env.actor.task.clone()),
    }
}

#[derive(Deserialize)]
struct LockArgs {
    paths: Vec<String>,
    reason: String,
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    wait_s: Option<u64>,
}

/// The normalised patterns of `raw`, or the first one that is refused.
fn patterns(ctx: &Ctx<'_>, raw: &[String]) -> Result<Vec<String>, String> {
    if raw.is_empty() {
        return Err("paths is empty; name at least one path".into());
    }
    if raw.len() > 200 {
        return Err(format!(
            "{} paths at once; at most 200 (use a glob such as \"src/auth/**\")",
            raw.len()
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for p in raw {
        let n = paths::pattern(&ctx.env.config.root, p).map_err(|e| e.0)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// `lock_files`.
pub(super) fn lock(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: LockArgs = args("lock_files", v)?;
    let paths = patterns(ctx, &a.paths)?;
    let reason =
        crate::coord::notes::text("reason", &a.reason, crate::coord::notes::MAX_TITLE, true)
            .map_err(|e| e.0)?;
    if a.ttl_s == Some(0) || a.ttl_s.is_some_and(|t| t > 86_400) {
        return Err("ttl_s must be between 1 and 86400 seconds".into());
    }
    if a.wait_s.is_some_and(|w| w > leases::MAX_WAIT.as_secs()) {
        return Err(format!(
            "wait_s is at most {} seconds",
            leases::MAX_WAIT.as_secs()
        ));
    }
    let ttl = a
        .ttl_s
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_millis(ctx.env.config.lease_ttl_ms.max(1000)));
    let req = LockRequest {
        paths,
        reason,
        ttl,
        auto: false,
        queue: None,
    };
    let wait = Duration::from_secs(a.wait_s.unwrap_or(0));
    let out = leases::lock(ctx.store, &ctx.env.actor, &req, wait, now).map_err(|e| match e {
        crate::store::StoreError::StaleClaim { .. } => format!(
            "this attempt's claim on task {} is no longer current; it cannot take leases. Stop working and end your turn",
            ctx.env.actor.task
        ),
        other => other.to_string(),
    })?;
    let refused: Vec<Value> = out
        .refused
        .iter()
        .map(|b| json!({ "path": b.path, "held_by": { "instance": b.held.instance, "task": b.held.task, "role": b.held.role,
                  "reason": b.held.reason, "since": clock(b.held.since_ms), "lease": b.held.path,
                  "kind": if b.held.reason.is_empty() && b.kind == crate::store::coord::BlockKind::Queued { "queued" } else { "lease" } },
                  "why": refusal(b) }))
        .collect();
    let message = match (&out.deadlock, out.refused.is_empty()) {
        (Some(c), _) => deadlock(c),
        (None, true) => format!("granted: {}", out.granted.join(", ")),
        (None, false) => out
            .refused
            .iter()
            .map(refusal)
            .collect::<Vec<_>>()
            .join("; "),
    };
    Ok(
        json!({ "granted": out.granted, "refused": refused, "deadlock": out.deadlock.is_some(), "message": message }),
    )
}

#[derive(Deserialize)]
struct UnlockArgs {
    paths: Vec<String>,
}

/// `unlock_files`.
pub(super) fn unlock(ctx: &Ctx<'_>, v: Value) -> Out {
    let a: UnlockArgs = args("unlock_files", v)?;
    let paths = patterns(ctx, &a.paths)?;
    let released = ctx
        .store
        .unlock_paths(&ctx.env.actor, &paths, now())
        .map_err(|e| e.to_string())?;
    let not_held: Vec<&String> = paths.iter().filter(|p| !released.contains(p)).collect();
    Ok(json!({ "released": released, "not_held": not_held,
               "message": format!("released {} lease(s)", released.len()) }))
}
