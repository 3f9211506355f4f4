//! `borg task list | show | retry`: the tasks of the store.

use super::{print_json, Ctx};
use crate::cli::TaskCmd;
use crate::error::{UsageError, EXIT_OK};
use crate::input::config::Overrides;
use crate::outcome::AttemptRecord;
use crate::run::attempt::now_ms;

/// Runs `borg task ...`.
pub fn run(ctx: &Ctx, cmd: TaskCmd) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    match cmd {
        TaskCmd::List { json } => {
            let rows = store.tasks()?;
            if json {
                print_json(&rows)?;
            } else {
                println!(
                    "{:<28} {:<11} {:<12} {:>5} {:>8}  DEPENDS ON",
                    "TASK", "ROLE", "STATUS", "TRIES", "PRIORITY"
                );
                for t in rows {
                    println!(
                        "{:<28} {:<11} {:<12} {:>5} {:>8}  {}",
                        t.id,
                        t.role,
                        t.status,
                        t.attempts,
                        t.priority,
                        t.depends_on.join(", ")
                    );
                }
            }
        }
        TaskCmd::Show { id, json } => {
            let Some(t) = store.task(&id)? else {
                return Err(UsageError(format!(
                    "no task {id:?} in the store {}",
                    crate::store::location::StoreLocation::of(&s.paths.store).shown()
                ))
                .into());
            };
            let attempts = store.attempts(&id)?;
            if json {
                print_json(&serde_json::json!({"task": t, "attempts": attempts}))?;
            } else {
                println!("task:      {}\nrole:      {}\nstatus:    {}\npriority:  {}\ndepends:   {}\nattempts:  {} (max {} counted)", t.id, t.role, t.status, t.priority, t.depends_on.join(", "), t.attempts, t.max_attempts);
                if let Some(o) = &t.owner {
                    println!("claimed:   by {o} (fence {})", t.fence);
                }
                if let Some(p) = t.spec.get("prompt").and_then(|p| p.as_str()) {
                    println!(
                        "prompt:\n{}",
                        p.lines()
                            .map(|l| format!("  {l}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
                for a in attempts {
                    let rec = AttemptRecord::from_stored(a.record.as_ref());
                    let err = rec
                        .as_ref()
                        .and_then(|r| r.error.clone())
                        .map(|e| format!(" — {}", e.lines().next().unwrap_or("")))
                        .unwrap_or_default();
                    let cost = rec
                        .as_ref()
                        .map(|r| format!(" ${:.4}", r.cost_usd))
                        .unwrap_or_default();
                    println!(
                        "  attempt {} on {}: {}{}{}  log: {}",
                        a.attempt, a.start.instance, a.status, cost, err, a.start.stdout_log
                    );
                }
            }
        }
        TaskCmd::Retry { id } => {
            store.retry_task(&id, now_ms())?;
            println!("{id} re-queued; run `borg run` to run it");
        }
    }
    Ok(EXIT_OK)
}
