//! `borg decisions list [--category C] | add ...`: the run's decision log (seed 002),
//! read by people and agents alike; a person can add one.

use super::{print_json, Ctx};
use crate::cli::DecisionsCmd;
use crate::coord::notes;
use crate::error::{UsageError, EXIT_OK};
use crate::input::config::Overrides;
use crate::run::attempt::now_ms;

/// Runs `borg decisions ...`.
pub fn run(ctx: &Ctx, cmd: DecisionsCmd) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    match cmd {
        DecisionsCmd::List {
            category,
            limit,
            json,
        } => {
            let rows = store.decisions(category.as_deref(), limit)?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("no decisions");
            }
            for d in rows.iter().filter(|_| !json) {
                println!("[{}] {}", d.id, d.title);
                println!(
                    "  Category: {}{}",
                    d.category,
                    d.scope
                        .as_deref()
                        .map(|s| format!("  Scope: {s}"))
                        .unwrap_or_default()
                );
                println!(
                    "  By: {}{}  At: {}",
                    d.author,
                    d.task
                        .as_deref()
                        .map(|t| format!(" (task {t})"))
                        .unwrap_or_default(),
                    chrono::DateTime::from_timestamp_millis(d.created_ms)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                );
                println!("  {}", notes::one_line(&d.description, 300));
            }
        }
        DecisionsCmd::Add {
            category,
            title,
            description,
            scope,
        } => {
            let d = notes::decision(&category, &title, &description, scope.as_deref())
                .map_err(|e| UsageError(e.0))?;
            let row = store.log_decision(None, &d, now_ms())?;
            println!("{}", row.id);
        }
    }
    Ok(EXIT_OK)
}
