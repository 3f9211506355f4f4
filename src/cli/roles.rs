//! `borg roles list`.

use super::{print_json, Ctx};
use crate::cli::RolesCmd;
use crate::error::EXIT_OK;
use crate::input::config::Overrides;

/// Runs `borg roles ...`.
pub fn run(ctx: &Ctx, cmd: RolesCmd) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let roles = ctx.roles(&s)?;
    let RolesCmd::List { json } = cmd;
    if json {
        print_json(&roles.roles)?;
    } else {
        for r in &roles.roles {
            let src = r
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in".into());
            println!("{:<14} {}", r.name, src);
        }
    }
    Ok(EXIT_OK)
}
