//! `borg instance create | list | show | rm`.

use super::{print_json, Ctx};
use crate::cli::InstanceCmd;
use crate::error::EXIT_OK;
use crate::input::config::Overrides;
use crate::workspace::instance::Workspaces;

/// Runs `borg instance ...`.
pub fn run(ctx: &Ctx, cmd: InstanceCmd) -> anyhow::Result<i32> {
    let template = match &cmd {
        InstanceCmd::Create { template, .. } => template.clone(),
        _ => None,
    };
    let s = ctx.settings(Overrides {
        template,
        ..Default::default()
    })?;
    let ws = Workspaces::new(&s.paths.workspaces);
    match cmd {
        InstanceCmd::Create {
            role, name, json, ..
        } => {
            let roles = ctx.roles(&s)?;
            let role = roles.get(&role)?;
            let i = ws.create(role, name.as_deref(), s.paths.template.as_deref())?;
            if json {
                print_json(&serde_json::json!({"id": i.id, "role": i.role, "path": i.path}))?;
            } else {
                println!("created {} instance at {}", i.role, i.path.display());
                println!("{}", i.id);
            }
        }
        InstanceCmd::List { json } => {
            let list = ws.list()?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no instances in {}", ws.root.display());
            } else {
                println!("{:<32} {:<12} CREATED", "ID", "ROLE");
                for i in list {
                    println!("{:<32} {:<12} {}", i.id, i.role, i.created_at);
                }
            }
        }
        InstanceCmd::Show { id, json } => {
            let i = ws.get(&id)?;
            let history = i.history().unwrap_or_default();
            if json {
                print_json(
                    &serde_json::json!({"id": i.id, "role": i.role, "path": i.path, "created_at": i.created_at, "tasks": history}),
                )?;
            } else {
                println!(
                    "id:      {}\nrole:    {}\npath:    {}\ncreated: {}\ntasks:   {}",
                    i.id,
                    i.role,
                    i.path.display(),
                    i.created_at,
                    history.len()
                );
                for e in history {
                    println!(
                        "  {} {} (attempt {}): {}, {} file(s)",
                        e.time,
                        e.task_id,
                        e.attempt,
                        e.status,
                        e.files_changed.len()
                    );
                }
            }
        }
        InstanceCmd::Rm { id } => {
            ws.remove(&id)?;
            println!("removed {id}");
        }
    }
    Ok(EXIT_OK)
}
