//! `borg messages list | send --to X BODY`: the messages between agents, and a way
//! for a person to join the conversation (a message to an instance, a role, a task or
//! all reaches the agent in its next prompt, or when it calls `read_messages`).

use super::{print_json, Ctx};
use crate::cli::MessagesCmd;
use crate::coord::notes;
use crate::error::{UsageError, EXIT_OK};
use crate::input::config::Overrides;
use crate::run::attempt::now_ms;

/// Runs `borg messages ...`.
pub fn run(ctx: &Ctx, cmd: MessagesCmd) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    match cmd {
        MessagesCmd::List { limit, json } => {
            let rows = store.messages(limit)?;
            if json {
                print_json(&rows)?;
                return Ok(EXIT_OK);
            }
            if rows.is_empty() {
                println!("no messages");
            }
            for m in &rows {
                let from = m.from_instance.clone().unwrap_or_else(|| m.author.clone());
                let read = if m.read_by.is_empty() {
                    "unread".to_string()
                } else {
                    format!("read by {}", m.read_by.join(", "))
                };
                let subject = m
                    .subject
                    .as_deref()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default();
                println!(
                    "#{} {} {} → {}{subject} ({read})",
                    m.id,
                    crate::coord::leases::clock(m.created_ms),
                    from,
                    m.to.label()
                );
                println!("  {}", notes::one_line(&m.body, 300));
            }
        }
        MessagesCmd::Send { to, subject, body } => {
            let roles = ctx.roles(&s)?.names();
            let folders: Vec<String> =
                crate::workspace::instance::Workspaces::new(&s.paths.workspaces)
                    .list()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
            let m = notes::message(
                store.as_ref(),
                &roles,
                &folders,
                &to,
                subject.as_deref(),
                &body,
            )
            .map_err(|e| UsageError(e.0))?;
            let row = store.send_message(None, &m, now_ms())?;
            println!("message {} sent to {}", row.id, row.to.label());
        }
    }
    Ok(EXIT_OK)
}
