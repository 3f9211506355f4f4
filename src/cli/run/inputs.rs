//! `borg run`, step 1: the inputs, checked before anything starts. Settings (flags
//! over environment over `.env` over config.toml), roles, the task list, the
//! workspace template or (git mode) the repository, the claude binary and the
//! root/bypassPermissions rule; and the `--version` preflight of the CLI.

use crate::cli::{Ctx, RunArgs};
use crate::error::UsageError;
use crate::input::config::{Overrides, Settings};
use crate::input::roles::RoleSet;
use crate::input::tasklist::{self, TaskList};
use crate::supervise::claude;
use std::path::PathBuf;

/// What `borg run` works from.
pub(crate) struct Inputs {
    /// Resolved settings, paths absolute.
    pub settings: Settings,
    /// Roles.
    pub roles: RoleSet,
    /// The task list, when one was given.
    pub list: Option<TaskList>,
    /// The claude binary.
    pub claude: PathBuf,
    /// Git mode: the repository.
    pub git: Option<super::repo::Chosen>,
}

/// Loads and checks every input; bad input is exit 2 before anything starts.
pub(crate) fn load(ctx: &Ctx, a: &RunArgs) -> anyhow::Result<Inputs> {
    let over = Overrides {
        claude: a.claude.clone(),
        concurrency: a.concurrency,
        timeout: a.timeout,
        template: a.template.clone(),
        repo: a.repo.clone(),
        budget_usd: a.budget_usd,
        ..Default::default()
    };
    let mut settings = ctx.settings(over)?;
    // Paths recorded in the store must not depend on the cwd of this run.
    let url = crate::store::location::StoreLocation::of(&settings.paths.store).is_shared();
    if let Ok(abs) = std::path::absolute(&settings.paths.workspaces) {
        settings.paths.workspaces = abs;
    }
    if !url {
        if let Ok(abs) = std::path::absolute(&settings.paths.store) {
            settings.paths.store = abs;
        }
    }
    let roles = ctx.roles(&settings)?;
    check_review_role(&settings, &roles)?;
    let list: Option<TaskList> = match &a.tasks {
        Some(p) => Some(tasklist::parse_file(p, &roles.names())?),
        None => None,
    };
    // With --repo a template from the config or the environment is not used.
    let template_used = a.repo.is_none();
    if let Some(t) = settings
        .paths
        .template
        .as_ref()
        .filter(|t| !t.is_dir() && template_used)
    {
        let msg = format!(
            "workspace template {} does not exist or is not a directory",
            t.display()
        );
        return Err(UsageError(msg).into());
    }
    let git = super::repo::choose(ctx, a, &settings, &roles, list.as_ref())?;
    let found = claude::resolve(
        settings.claude.path.as_deref(),
        ctx.env.get("PATH").map(String::as_str),
    );
    // --no-work starts no child: a host that only enqueues needs no claude.
    let claude = match found {
        Err(_) if a.no_work => PathBuf::from("claude"),
        r => r?,
    };
    let inputs = Inputs {
        settings,
        roles,
        list,
        claude,
        git,
    };
    check_root_bypass(ctx, &inputs)?;
    Ok(inputs)
}

/// `[verify] review_role` must name a role.
fn check_review_role(s: &Settings, roles: &RoleSet) -> Result<(), UsageError> {
    let names = roles.names();
    match &s.verify.review_role {
        Some(r) if !names.contains(r) => Err(UsageError(format!(
            "[verify] review_role = \"{r}\": no such role; the roles are: {}",
            names.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// The CLI refuses bypassPermissions as root outside a sandbox: say so before any
/// child starts rather than fail every attempt.
fn check_root_bypass(ctx: &Ctx, i: &Inputs) -> anyhow::Result<()> {
    let Some(list) = &i.list else {
        return Ok(());
    };
    let any_bypass = list.tasks.iter().any(|t| {
        i.roles
            .get(&t.role)
            .map(|r| claude::options(&i.settings, r, t).permission_mode == "bypassPermissions")
            .unwrap_or(false)
    });
    let root = nix::unistd::geteuid().is_root();
    if claude::root_bypass_refused(root, any_bypass, &i.settings, &ctx.env) {
        return Err(claude::ClaudeError::RootBypass.into());
    }
    Ok(())
}

/// The CLI's version, recorded in the report; a very old CLI gets a warning.
pub(crate) async fn preflight(ctx: &Ctx, claude: &std::path::Path) -> Option<String> {
    let env: Vec<(String, String)> = ctx
        .env
        .iter()
        .filter(|(k, _)| k.as_str() != "CLAUDECODE")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match claude::preflight_version(claude, &env).await {
        Ok(v) => {
            if claude::parse_version(&v).is_some_and(|(maj, _)| maj < 2) {
                eprintln!("borg: warning: {} reports version {v}; borg is verified against 2.1.197 and needs 2.0 or newer", claude.display());
            }
            Some(v)
        }
        Err(e) => {
            eprintln!("borg: warning: {e}");
            None
        }
    }
}
