//! `borg worker`: joins the fleet on this host. It registers as a host of the store,
//! claims ready tasks (of any list, or of `--list NAME`; of any role, or of
//! `--roles`) and runs them in this host's own workspaces exactly as `borg run` does,
//! until SIGINT or SIGTERM: then it stops claiming, hands back what runs (the children
//! get the stop ladder; their tasks go back to the pool for another host) and exits 0.
//!
//! `--roles` is global (the roles folder); after `worker` a value that is not a folder
//! names the roles to claim, comma-separated (`borg worker --roles developer,tester`).

use super::run::{execute_until, inputs, open_store};
use super::Ctx;
use crate::cli::{RunArgs, WorkerArgs};
use crate::error::{UsageError, EXIT_FAILED, EXIT_OK};
use crate::git::repo::BASE_KEY;
use crate::run::attempt::now_ms;
use crate::run::summary::RunOptions;
use crate::store::location::StoreLocation;
use crate::store::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    tracing::debug!(claude_version = ?version, "worker started");
    let (store, owner) = open_store(ctx, &inputs, a.host_id.as_deref()).await?;
    loop {
        // Git mode when the store's runs worked on a repository or a remote.
        let git = (&mut inputs.git, None, &inputs.settings);
        super::run::repo::prepare(ctx, &as_run, git, store.as_ref())?;
        let watch = (inputs.git.is_none() && inputs.settings.paths.template.is_none())
            .then(|| watch_for_remote(store.clone()));
        let opts = options(&a, &inputs, store.as_ref())?;
        banner(&a, &inputs, &owner);
        let until = watch.as_ref().map(|(t, _)| t.clone());
        let summary = execute_until(ctx, a.progress, inputs, &store, &owner, opts, until).await;
        let switch = watch.is_some_and(|(t, h)| {
            h.abort();
            t.is_cancelled()
        });
        if switch && summary.is_ok() {
            inputs = inputs::load(ctx, &as_run)?;
            continue;
        }
        let _ = store.release_owner(&owner.id, now_ms());
        return Ok(ended(&owner.host_id, summary));
    }
}

/// How often a worker in template mode looks for a remote recorded in the store.
const REMOTE_WATCH: std::time::Duration = std::time::Duration::from_secs(2);

/// A worker that started on a store naming no repository works in template mode; once
/// a `borg run --repo` records one, the returned token is cancelled (after saying so),
/// which stops the worker as a SIGTERM would so it can start again in git mode: a
/// template-mode worker must not take a git-mode list's tasks.
fn watch_for_remote(store: Arc<dyn Store>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let t = token.clone();
    let h = tokio::spawn(async move {
        loop {
            tokio::time::sleep(REMOTE_WATCH).await;
            let s = store.clone();
            let rec = tokio::task::spawn_blocking(move || s.fleet(BASE_KEY)).await;
            if let Ok(Ok(Some(v))) = rec {
                if v.get("remote")
                    .or(v.get("repo"))
                    .is_some_and(|r| r.is_string())
                {
                    eprintln!("borg worker: the store now names a repository; handing back what runs and starting again in git mode");
                    t.cancel();
                    return;
                }
            }
        }
    });
    (token, h)
}

/// What the worker claims.
fn options(a: &Claims, inputs: &inputs::Inputs, store: &dyn Store) -> anyhow::Result<RunOptions> {
    let scope = match &a.list {
        Some(name) => crate::run::lists::members(store, name)?,
        None => Vec::new(),
    };
    Ok(RunOptions {
        scope,
        concurrency: inputs.settings.run.concurrency.max(1),
        budget_usd: None,
        forever: true,
        roles: (!a.roles.is_empty()).then(|| a.roles.clone()),
        list: a.list.clone(),
        merge: None,
    })
}

/// The line a worker says when it starts claiming.
fn banner(a: &Claims, inputs: &inputs::Inputs, owner: &crate::store::OwnerInfo) {
    eprintln!(
        "borg worker {} (pid {}) on {}: claiming {}{} with up to {} at once; Ctrl-C or SIGTERM stops it",
        owner.host_id,
        owner.pid,
        StoreLocation::of(&inputs.settings.paths.store).shown(),
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
}

/// The worker's last line and exit code.
fn ended(host: &str, summary: anyhow::Result<crate::run::summary::RunSummary>) -> i32 {
    match summary {
        Ok(s) => {
            eprintln!(
                "borg worker {host}: stopped{}",
                if s.stopped_tasks.is_empty() {
                    String::new()
                } else {
                    format!("; handed back {}", s.stopped_tasks.join(", "))
                }
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("borg: error: {e:#}");
            EXIT_FAILED
        }
    }
}

/// The worker's arguments as `borg run`'s: no list, no report; a repository as given
/// (`--repo`, `BORG_REPO`), else as the store recorded it.
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
        no_repo: false,
        repo: a.repo.clone(),
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
    repo: Option<std::path::PathBuf>,
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
            repo: a.repo,
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
