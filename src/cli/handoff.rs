//! `borg handoff request | list | accept | reject`. `request` runs inside a task (the
//! agent calls it through `$BORG_BIN`); it proves its right with the claim token.

use super::{print_json, Ctx};
use crate::cli::HandoffCmd;
use crate::error::{UsageError, EXIT_OK};
use crate::input::config::Overrides;
use crate::run::attempt::now_ms;
use crate::store::location::StoreLocation;
use crate::store::{ClaimToken, HandoffRequest, Store};
use std::sync::Arc;

/// Runs `borg handoff ...`.
pub fn run(ctx: &Ctx, cmd: HandoffCmd) -> anyhow::Result<i32> {
    match cmd {
        HandoffCmd::Request {
            to,
            reason,
            next_steps,
            state,
        } => request(
            ctx,
            HandoffRequest {
                to_role: to,
                reason,
                state,
                next_steps,
            },
        )?,
        HandoffCmd::List { json } => list(ctx, json)?,
        HandoffCmd::Accept { id } => {
            let h = configured_store(ctx)?.accept_handoff(id, now_ms())?;
            println!(
                "handoff {} accepted ({} → {})",
                h.id, h.task, h.request.to_role
            );
        }
        HandoffCmd::Reject { id, reason } => {
            let h = configured_store(ctx)?.reject_handoff(id, &reason, now_ms())?;
            println!(
                "handoff {} rejected ({} → {}): {reason}",
                h.id, h.task, h.request.to_role
            );
        }
    }
    Ok(EXIT_OK)
}

/// The store of the settings: list, accept and reject work on it; `request` instead
/// finds its store through the task's environment.
fn configured_store(ctx: &Ctx) -> anyhow::Result<Arc<dyn Store>> {
    ctx.store(&ctx.settings(Overrides::default())?)
}

/// `borg handoff request`, from inside a task: the task, its claim and its store come
/// from the environment borg gave the child.
fn request(ctx: &Ctx, req: HandoffRequest) -> anyhow::Result<()> {
    let need = |k: &str| {
        ctx.env.get(k).cloned().ok_or_else(|| {
            UsageError(format!(
                "{k} is not set: `borg handoff request` runs inside a task started by borg"
            ))
        })
    };
    let task = need("BORG_TASK_ID")?;
    let fence: i64 = need("BORG_CLAIM_TOKEN")?
        .parse()
        .map_err(|_| UsageError("BORG_CLAIM_TOKEN is not a number".into()))?;
    let store_path = ctx
        .global
        .store
        .clone()
        .map(Ok)
        .unwrap_or_else(|| need("BORG_STORE").map(std::path::PathBuf::from))?;
    let s = ctx.settings(Overrides::default())?;
    let roles = ctx.roles(&s)?;
    roles.get(&req.to_role)?;
    let store = StoreLocation::of(&store_path).open()?;
    let owner = store.task(&task)?.and_then(|t| t.owner).unwrap_or_default();
    let token = ClaimToken {
        task: task.clone(),
        fence,
        owner,
    };
    let id = store.request_handoff(
        &token,
        ctx.env.get("BORG_INSTANCE_ID").map(String::as_str),
        &req,
        now_ms(),
    )?;
    println!(
        "handoff {id} recorded: {task} → {} (it becomes a task when this one succeeds)",
        req.to_role
    );
    Ok(())
}

/// `borg handoff list`: a table, or JSON.
fn list(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let rows = configured_store(ctx)?.handoffs(None)?;
    if json {
        return print_json(&rows);
    }
    println!(
        "{:>4}  {:<24} {:<10} {:<10} {:<9} {:<24} REASON",
        "ID", "FROM TASK", "FROM", "TO", "STATE", "NEW TASK"
    );
    for h in rows {
        let state = serde_json::to_value(h.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        println!(
            "{:>4}  {:<24} {:<10} {:<10} {:<9} {:<24} {}",
            h.id,
            h.task,
            h.from_role,
            h.request.to_role,
            state,
            h.new_task.as_deref().unwrap_or("-"),
            h.request.reason
        );
    }
    Ok(())
}
