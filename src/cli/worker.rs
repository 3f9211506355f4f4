//! `borg worker`: joins the fleet on this host. It registers as a host of the store,
//! claims ready tasks (of any list, or of `--list NAME`; of any role, or of
//! `--roles`) and runs them in this host's own workspaces exactly as `borg run` does,
//! until SIGINT or SIGTERM: then it stops claiming, hands back what runs (the children
//! get the stop ladder; their tasks go back to the pool for another host) and exits 0.
//!
//! `--roles` is global (the roles folder); after `worker` a value that is not a folder
//! names the roles to claim, comma-separated (`borg worker --roles developer,tester`).

use super::run::{execute, inputs, open_store};
use super::Ctx;
use crate::cli::{RunArgs, WorkerArgs};
use crate::error::{UsageError, EXIT_FAILED, EXIT_OK};
use crate::run::attempt::now_ms;
use crate::run::summary::RunOptions;
use crate::store::location::StoreLocation;

/// Runs `borg worker`.
pub async fn run(ctx: &Ctx, a: WorkerArgs) -> anyhow::Result<i32> {
    let (ctx, roles) = split_roles(ctx);
    let (ctx, a) = (&ctx, Claims { roles, ..a.into() });
    let as_run = as_run(&a);
    let mut inputs = inputs::load(ctx, &as_run)?;
    check_roles(&a.roles, &inputs.roles.names())?;
    if let Some(id) = a.host_id.as_deref().filter(|id| !valid_host_id(id)) {
        return Err(UsageError(format!(
            "--host-id {id:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
        .into());
    }
    let version = inputs::preflight(ctx, &inputs.claude).await;
    let at = StoreLocation::of(&inputs.settings.paths.store);
    let (store, owner) = open_store(ctx, &inputs, a.host_id.as_deref()).await?;
    // Git mode when the store's runs worked on a repository (it must be on this host).
    let git = (&mut inputs.git, None, &inputs.settings);
    super::run::repo::prepare(ctx, &as_run, git, store.as_ref())?;
    let scope = match &a.list {
        Some(name) => crate::run::lists::members(store.as_ref(), name)?,
        None => Vec::new(),
    };
    eprintln!(
        "borg worker {} (pid {}) on {}: claiming {}{} with up to {} at once; Ctrl-C or SIGTERM stops it",
        owner.host_id,
        owner.pid,
        at.shown(),
        a.list
            .as_ref()
            .map_or("every list".to_string(), |l| format!("list {l}")),
        if a.roles.is_empty() {
            String::new()
        } else {
            format!(" (roles {})", a.roles.join(","))
        },
        inputs.settings.run.concurrency.max(1),
    );
    tracing::debug!(claude_version = ?version, "worker started");
    let opts = RunOptions {
        scope,
        concurrency: inputs.settings.run.concurrency.max(1),
        budget_usd: None,
        forever: true,
        roles: (!a.roles.is_empty()).then(|| a.roles.clone()),
        list: a.list.clone(),
        merge: None,
    };
    let summary = execute(ctx, a.progress, inputs, &store, &owner, opts).await;
    let _ = store.release_owner(&owner.id, now_ms());
    match summary {
        Ok(s) => {
            eprintln!(
                "borg worker {}: stopped{}",
                owner.host_id,
                if s.stopped_tasks.is_empty() {
                    String::new()
                } else {
                    format!("; handed back {}", s.stopped_tasks.join(", "))
                }
            );
            Ok(EXIT_OK)
        }
        Err(e) => {
            eprintln!("borg: error: {e:#}");
            Ok(EXIT_FAILED)
        }
    }
}

/// The worker's arguments as `borg run`'s: no list, no report; a repository only as the
/// store recorded it.
fn as_run(a: &Claims) -> RunArgs {
    RunArgs {
        tasks: None,
        concurrency: a.concurrency,
        timeout: a.timeout,
        claude: a.claude.clone(),
        template: a.template.clone(),
        json: false,
        report: None,
        junit: None,
        dry_run: false,
        budget_usd: None,
        progress: a.progress,
        no_work: false,
        list: None,
        repo: None,
        no_repo: false,
        base: None,
        merge: false,
        serve: None,
    }
}

/// The worker's arguments, with the roles to claim.
struct Claims {
    host_id: Option<String>,
    concurrency: Option<usize>,
    roles: Vec<String>,
    list: Option<String>,
    timeout: Option<std::time::Duration>,
    claude: Option<std::path::PathBuf>,
    template: Option<std::path::PathBuf>,
    progress: crate::cli::ProgressMode,
}

impl From<WorkerArgs> for Claims {
    fn from(a: WorkerArgs) -> Claims {
        Claims {
            host_id: a.host_id,
            concurrency: a.concurrency,
            roles: Vec::new(),
            list: a.list,
            timeout: a.timeout,
            claude: a.claude,
            template: a.template,
            progress: a.progress,
        }
    }
}

/// `--roles VALUE`: a folder stays the roles folder; anything else is the roles to
/// claim (and the roles folder comes from the environment, the config or the default).
fn split_roles(ctx: &Ctx) -> (Ctx, Vec<String>) {
    let mut global = ctx.global.clone();
    let mut roles = Vec::new();
    if let Some(v) = global.roles.clone().filter(|p| !p.is_dir()) {
        roles = v
            .to_string_lossy()
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        global.roles = None;
    }
    let env = ctx.env.clone();
    (Ctx { global, env }, roles)
}

/// A host id: what a task id may be (it ends up in owner ids and in `borg status`).
fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Every `--roles` name must be a role borg knows.
fn check_roles(asked: &[String], known: &[String]) -> anyhow::Result<()> {
    for r in asked {
        if !known.contains(r) {
            return Err(UsageError(format!(
                "--roles: unknown role {r:?}; the roles are {}",
                known.join(", ")
            ))
            .into());
        }
    }
    Ok(())
}
