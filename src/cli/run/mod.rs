//! `borg run TASKS.toml`, as a sequence of steps: load the inputs (and stop there for
//! `--dry-run`), open the store and take back what dead borgs held, sync the list
//! into it, run the scheduler until the list is done, then report.

mod inputs;
mod report;

use super::Ctx;
use crate::cli::{ProgressMode, RunArgs};
use crate::error::{UsageError, EXIT_OK};
use crate::input::tasklist::TaskList;
use crate::run::attempt::{now_ms, Shared};
use crate::run::scheduler;
use crate::run::spec::{new_task, source_of, StoredSpec};
use crate::run::summary::{RunOptions, RunSummary};
use crate::show::progress::{Plain, Progress, Silent, Tty};
use crate::store::sqlite::SqliteStore;
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
        return dry_run(list, &inputs.claude, a.json);
    }
    let version = inputs::preflight(ctx, &inputs.claude).await;
    tracing::debug!(claude = %inputs.claude.display(), version = ?version, store = %inputs.settings.paths.store.display(), "preflight done");
    let (store, owner) = open_store(ctx, &inputs).await?;
    let server = match serve_beside(&a, &inputs, &store).await {
        Ok(s) => s,
        Err(e) => {
            let _ = store.release_owner(&owner.id, now_ms());
            return Err(e);
        }
    };
    let synced = sync_list(&store, &inputs)?;
    let started_at = chrono::Utc::now();
    let summary = execute(ctx, &a, inputs, &store, &owner, synced.scope.clone()).await?;
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
    };
    let rep = report::build(store.as_ref(), &facts)?;
    report::deliver(&rep, &a, &summary)
}

/// Opens the store, registers this borg in it and, before anything else, takes back
/// what dead borgs held and kills their leftovers.
async fn open_store(ctx: &Ctx, inputs: &Inputs) -> anyhow::Result<(Arc<SqliteStore>, OwnerInfo)> {
    let store = ctx.store(&inputs.settings)?;
    let store_dyn: Arc<dyn Store> = store.clone();
    let owner = register_owner(&store_dyn)?;
    crate::run::recovery::maintenance(&store_dyn, &owner).await;
    Ok((store, owner))
}

/// `--serve[=ADDR]`: the server, started on the run's store before the run (exit 2
/// when its address cannot be used), stopped after it.
async fn serve_beside(
    a: &RunArgs,
    inputs: &Inputs,
    store: &Arc<SqliteStore>,
) -> anyhow::Result<
    Option<(
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    )>,
> {
    let Some(listen) = &a.serve else {
        return Ok(None);
    };
    let st: Arc<dyn Store> = store.clone();
    let s = super::serve::start(&inputs.settings, &inputs.roles, st, listen).await?;
    Ok(Some(s))
}

/// The list as synced into the store.
struct Synced {
    /// The run's task ids (the list plus the handoffs it created); empty without a list.
    scope: Vec<String>,
    /// Tasks whose definition changed after they succeeded.
    changed_after_success: Vec<String>,
}

/// Inserts new tasks and updates changed pending ones; without a list, the store's
/// unfinished tasks are the run (and with none, say so rather than print an empty
/// report).
fn sync_list(store: &SqliteStore, inputs: &Inputs) -> anyhow::Result<Synced> {
    let Some(list) = &inputs.list else {
        if store.statuses()?.iter().all(|(_, st)| st.is_terminal()) {
            return Err(UsageError(format!(
                "no task list given and the store {} has no unfinished task; run `borg run TASKS.toml`",
                inputs.settings.paths.store.display()
            ))
            .into());
        }
        return Ok(Synced {
            scope: Vec::new(),
            changed_after_success: Vec::new(),
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
            };
            new_task(&spec, retries)
        })
        .collect();
    let rep = store.sync_tasks(&rows, now_ms())?;
    for id in &rep.changed_after_success {
        eprintln!("borg: task {id} changed since it succeeded; not re-running it (use `borg task retry {id}` to run it again)");
    }
    let ids = list.tasks.iter().map(|t| t.id.clone()).collect();
    Ok(Synced {
        scope: with_handoffs(store, ids)?,
        changed_after_success: rep.changed_after_success,
    })
}

/// Runs the scheduler over the scope, with signal handling and progress display.
async fn execute(
    ctx: &Ctx,
    a: &RunArgs,
    inputs: Inputs,
    store: &Arc<SqliteStore>,
    owner: &OwnerInfo,
    scope: Vec<String>,
) -> anyhow::Result<RunSummary> {
    let settings = inputs.settings;
    let opts = RunOptions {
        scope,
        concurrency: settings.run.concurrency.max(1),
        budget_usd: settings.run.budget_usd,
    };
    let shared = Arc::new(Shared {
        workspaces: crate::workspace::instance::Workspaces::new(&settings.paths.workspaces),
        store_path: settings.paths.store.clone(),
        settings,
        roles: inputs.roles,
        claude: inputs.claude,
        parent_env: ctx.env.clone(),
        store: store.clone(),
    });
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    let mut progress = progress_display(ctx, a.progress);
    let summary = scheduler::run(shared, owner.clone(), opts, shutdown, progress.as_mut()).await;
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
fn with_handoffs(store: &dyn Store, mut ids: Vec<String>) -> anyhow::Result<Vec<String>> {
    let rows = store.tasks()?;
    loop {
        let before = ids.len();
        for t in &rows {
            if source_of(t).is_some_and(|src| ids.iter().any(|i| i == src)) && !ids.contains(&t.id)
            {
                ids.push(t.id.clone());
            }
        }
        if ids.len() == before {
            return Ok(ids);
        }
    }
}

/// Records this borg process in the store.
fn register_owner(store: &Arc<dyn Store>) -> anyhow::Result<OwnerInfo> {
    let pid = std::process::id() as i64;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let now = now_ms();
    let owner = OwnerInfo {
        id: format!(
            "borg-{host}-{pid}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ),
        host,
        pid,
        start_time: crate::supervise::procs::stat(pid as i32)
            .map(|s| s.start_time)
            .unwrap_or(0),
        boot_id: crate::supervise::procs::boot_id(),
        started_at_ms: now,
        heartbeat_ms: now,
    };
    store.register_owner(&owner)?;
    Ok(owner)
}

/// Prints the plan: waves of tasks that can run together.
fn dry_run(list: &TaskList, claude: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    let waves = crate::run::plan::waves(&list.tasks);
    if json {
        let w: Vec<Vec<&str>> = waves
            .iter()
            .map(|w| w.iter().map(|&i| list.tasks[i].id.as_str()).collect())
            .collect();
        super::print_json(
            &serde_json::json!({"tasks": list.tasks.len(), "claude": claude, "waves": w}),
        )?;
    } else {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        writeln!(
            out,
            "{}: {} tasks in {} waves; claude: {}",
            list.path.display(),
            list.tasks.len(),
            waves.len(),
            claude.display()
        )?;
        for (n, w) in waves.iter().enumerate() {
            let ids: Vec<String> = w
                .iter()
                .map(|&i| format!("{} ({})", list.tasks[i].id, list.tasks[i].role))
                .collect();
            writeln!(out, "wave {}: {}", n + 1, ids.join(", "))?;
        }
        out.flush()?;
    }
    Ok(EXIT_OK)
}
