//! `borg run TASKS.toml`, as a sequence of steps: load the inputs (and stop there for
//! `--dry-run`), open the store and take back what dead borgs held, sync the list
//! into it, run the scheduler until the list is done, then report.

pub(crate) mod inputs;
mod merge;
pub(crate) mod repo;
mod report;

use super::Ctx;
use crate::cli::{ProgressMode, RunArgs};
use crate::error::{UsageError, EXIT_OK};
use crate::input::tasklist::TaskList;
use crate::run::attempt::{now_ms, Shared};
use crate::run::scheduler;
use crate::run::spec::{new_task, StoredSpec};
use crate::run::summary::{RunOptions, RunSummary};
use crate::show::progress::{Plain, Progress, Silent, Tty};
use crate::store::{OwnerInfo, Store};
use crate::supervise::signals::Shutdown;
use anyhow::Context;
use inputs::Inputs;
use std::io::IsTerminal;
use std::sync::Arc;

/// Runs `borg run`.
pub async fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<i32> {
    let inputs = inputs::load(ctx, &a)?;
    if a.dry_run {
        let Some(list) = &inputs.list else {
            return Err(UsageError("--dry-run needs a task list".into()).into());
        };
        return dry_run(list, &inputs, a.json);
    }
    let version = if a.no_work {
        None
    } else {
        inputs::preflight(ctx, &inputs.claude).await
    };
    tracing::debug!(claude = %inputs.claude.display(), version = ?version, store = %crate::store::location::StoreLocation::of(&inputs.settings.paths.store).shown(), "preflight done");
    let (store, owner) = open_store(ctx, &inputs, None).await?;
    let mut inputs = inputs;
    let git = (&mut inputs.git, inputs.list.as_ref(), &inputs.settings);
    repo::prepare(ctx, &a, git, store.as_ref())?;
    let server = match serve_beside(&a, &inputs, &store).await {
        Ok(s) => s,
        Err(e) => {
            let _ = store.release_owner(&owner.id, now_ms());
            return Err(e);
        }
    };
    let synced = sync_list(store.as_ref(), &inputs, a.list.as_deref())?;
    let started_at = chrono::Utc::now();
    let opts = RunOptions {
        scope: synced.scope.clone(),
        // --no-work: start nothing, wait for the other hosts
        concurrency: if a.no_work {
            0
        } else {
            inputs.settings.run.concurrency.max(1)
        },
        budget_usd: inputs.settings.run.budget_usd,
        ..RunOptions::default()
    };
    let merging = merge::wanted(&a, &inputs)?;
    let shared = shared(ctx, inputs, &store);
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    let queue = match merging {
        true => merge::queue(ctx, &shared, (&owner, &shutdown), synced.name.as_deref())?,
        false => None,
    };
    let mut opts = opts;
    opts.merge = queue.as_ref().map(|(m, _)| m.clone());
    let summary = schedule(ctx, a.progress, &shared, &owner, opts, &shutdown).await?;
    if let Some(e) = &summary.merge_error {
        let _ = store.release_owner(&owner.id, now_ms());
        return Err(anyhow::anyhow!("{e}"));
    }
    let merged = match &queue {
        Some((_, target)) => merge::summary(&shared, target)?,
        None => None,
    };
    let _ = store.release_owner(&owner.id, now_ms());
    if let Some((stop, handle)) = server {
        stop.cancel();
        let _ = handle.await;
    }
    let facts = report::RunFacts {
        run_id: &owner.id,
        started_at,
        claude_version: version,
        scope: &synced.scope,
        changed_after_success: &synced.changed_after_success,
        summary: &summary,
        merge: merged,
    };
    let rep = report::build(store.as_ref(), &facts)?;
    report::deliver(&rep, &a, &summary)
}

/// Opens the store, registers this borg in it (as host `host_id`) and, before anything
/// else, takes back what dead borgs held and kills their leftovers.
pub(crate) async fn open_store(
    ctx: &Ctx,
    inputs: &Inputs,
    host_id: Option<&str>,
) -> anyhow::Result<(Arc<dyn Store>, OwnerInfo)> {
    let store = ctx.store(&inputs.settings)?;
    let owner = crate::run::recovery::register(store.as_ref(), host_id)?;
    crate::run::recovery::maintenance(&store, &owner).await?;
    Ok((store, owner))
}

/// `--serve[=ADDR]`: the server, started on the run's store before the run (exit 2
/// when its address cannot be used), stopped after it.
async fn serve_beside(
    a: &RunArgs,
    inputs: &Inputs,
    store: &Arc<dyn Store>,
) -> anyhow::Result<
    Option<(
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    )>,
> {
    let Some(listen) = &a.serve else {
        return Ok(None);
    };
    let s = super::serve::start(&inputs.settings, &inputs.roles, store.clone(), listen).await?;
    Ok(Some(s))
}

/// The list as synced into the store.
struct Synced {
    /// The run's task ids (the list plus the handoffs it created); empty without a list.
    scope: Vec<String>,
    /// Tasks whose definition changed after they succeeded.
    changed_after_success: Vec<String>,
    /// The list's name (None without a list).
    name: Option<String>,
}

/// Inserts new tasks and updates changed pending ones, and registers them under the
/// list's name (`name`, else the file's stem) for `borg worker --list`; without a
/// list, the store's unfinished tasks are the run (and with none, say so rather than
/// print an empty report).
fn sync_list(store: &dyn Store, inputs: &Inputs, name: Option<&str>) -> anyhow::Result<Synced> {
    let Some(list) = &inputs.list else {
        if store.statuses()?.iter().all(|(_, st)| st.is_terminal()) {
            return Err(UsageError(format!(
                "no task list given and the store {} has no unfinished task; run `borg run TASKS.toml`",
                crate::store::location::StoreLocation::of(&inputs.settings.paths.store).shown()
            ))
            .into());
        }
        return Ok(Synced {
            scope: Vec::new(),
            changed_after_success: Vec::new(),
            name: None,
        });
    };
    let retries = inputs.settings.run.retries;
    let rows: Vec<_> = list
        .tasks
        .iter()
        .map(|t| {
            let spec = StoredSpec {
                task: t.clone(),
                handoff: None,
                resolve: None,
            };
            new_task(&spec, retries)
        })
        .collect();
    let rep = store.sync_tasks(&rows, now_ms())?;
    for id in &rep.changed_after_success {
        eprintln!("borg: task {id} changed since it succeeded; not re-running it (use `borg task retry {id}` to run it again)");
    }
    let ids: Vec<String> = list.tasks.iter().map(|t| t.id.clone()).collect();
    let name = name.map_or_else(|| crate::run::lists::default_name(&list.path), String::from);
    crate::run::lists::register(store, &name, &ids)?;
    if inputs.git.is_some() {
        store.set_fleet(
            crate::cli::merge::LIST_KEY,
            &serde_json::json!(name),
            now_ms(),
        )?;
    }
    Ok(Synced {
        scope: with_handoffs(store, ids)?,
        changed_after_success: rep.changed_after_success,
        name: Some(name),
    })
}

/// Runs the scheduler with `opts`, with signal handling and progress display (what
/// `borg worker` does); also stopped, as by the first SIGTERM, when `until` is
/// cancelled.
pub(crate) async fn execute_until(
    ctx: &Ctx,
    progress: ProgressMode,
    inputs: Inputs,
    store: &Arc<dyn Store>,
    owner: &OwnerInfo,
    opts: RunOptions,
    until: Option<tokio_util::sync::CancellationToken>,
) -> anyhow::Result<RunSummary> {
    let shared = shared(ctx, inputs, store);
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    if let Some(until) = until {
        let stop = shutdown.stop.clone();
        tokio::spawn(async move {
            until.cancelled().await;
            stop.cancel();
        });
    }
    schedule(ctx, progress, &shared, owner, opts, &shutdown).await
}

/// What every attempt of the run shares.
fn shared(ctx: &Ctx, inputs: Inputs, store: &Arc<dyn Store>) -> Arc<Shared> {
    let settings = inputs.settings;
    Arc::new(Shared {
        workspaces: crate::workspace::instance::Workspaces::new(&settings.paths.workspaces),
        store_path: settings.paths.store.clone(),
        settings,
        roles: inputs.roles,
        claude: inputs.claude,
        parent_env: ctx.env.clone(),
        store: store.clone(),
        git: inputs.git.map(|c| Arc::new(c.repo)),
    })
}

/// One run of the scheduler with its progress display.
async fn schedule(
    ctx: &Ctx,
    progress: ProgressMode,
    shared: &Arc<Shared>,
    owner: &OwnerInfo,
    opts: RunOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<RunSummary> {
    let mut progress = progress_display(ctx, progress);
    let summary = scheduler::run(
        shared.clone(),
        owner.clone(),
        opts,
        shutdown.clone(),
        progress.as_mut(),
    )
    .await;
    progress.finish();
    Ok(summary?)
}

/// The progress display `--progress` asks for (auto: live lines on a terminal).
fn progress_display(ctx: &Ctx, mode: ProgressMode) -> Box<dyn Progress> {
    let color = ctx.env.get("NO_COLOR").is_none_or(|v| v.is_empty());
    match mode {
        ProgressMode::None => Box::new(Silent),
        ProgressMode::Tty => Box::new(Tty::new(color)),
        ProgressMode::Auto if std::io::stderr().is_terminal() => Box::new(Tty::new(color)),
        _ => Box::new(Plain),
    }
}

/// Adds to `ids` the tasks created by handoffs from them, transitively.
fn with_handoffs(store: &dyn Store, ids: Vec<String>) -> anyhow::Result<Vec<String>> {
    Ok(crate::run::lists::with_handoffs(&store.tasks()?, ids))
}

/// Prints the plan: waves of tasks that can run together, and the gates each task
/// will run (`"auto"` detected in the repository, else the template).
fn dry_run(list: &TaskList, inputs: &Inputs, json: bool) -> anyhow::Result<i32> {
    let waves = crate::run::plan::waves(&list.tasks);
    let project = match (&inputs.git, &inputs.settings.paths.template) {
        (Some(g), _) => g.repo.dir.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => std::path::PathBuf::from("."),
    };
    let gates: Vec<crate::verify::gates::Gates> = list
        .tasks
        .iter()
        .map(|t| match inputs.roles.get(&t.role) {
            Ok(r) => crate::verify::gates::resolve(&inputs.settings.verify, r, t, &project),
            Err(_) => Default::default(),
        })
        .collect();
    if json {
        let w: Vec<Vec<&str>> = waves
            .iter()
            .map(|w| w.iter().map(|&i| list.tasks[i].id.as_str()).collect())
            .collect();
        let g: serde_json::Map<String, serde_json::Value> = list
            .tasks
            .iter()
            .zip(&gates)
            .map(|(t, g)| (t.id.clone(), serde_json::json!(g.commands)))
            .collect();
        super::print_json(&serde_json::json!({
            "tasks": list.tasks.len(), "claude": inputs.claude, "waves": w, "gates": g
        }))?;
        return Ok(EXIT_OK);
    }
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "{}: {} tasks in {} waves; claude: {}",
        list.path.display(),
        list.tasks.len(),
        waves.len(),
        inputs.claude.display()
    )?;
    for (n, w) in waves.iter().enumerate() {
        let ids: Vec<String> = w
            .iter()
            .map(|&i| format!("{} ({})", list.tasks[i].id, list.tasks[i].role))
            .collect();
        writeln!(out, "wave {}: {}", n + 1, ids.join(", "))?;
    }
    if gates
        .iter()
        .any(|g| !g.commands.is_empty() || g.auto.is_some())
    {
        writeln!(out, "gates:")?;
        for (t, g) in list.tasks.iter().zip(&gates) {
            writeln!(out, "  {}: {}", t.id, crate::verify::gates::describe(g))?;
        }
    }
    out.flush()?;
    Ok(EXIT_OK)
}
