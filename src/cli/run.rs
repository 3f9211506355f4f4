//! `borg run TASKS.toml`: validate, preflight, recover, run, report.

use super::Ctx;
use crate::cli::{ProgressMode, RunArgs};
use crate::error::{UsageError, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};
use crate::input::config::Overrides;
use crate::input::tasklist::{self, TaskList};
use crate::outcome::Status;
use crate::run::attempt::{now_ms, Shared, StoredSpec};
use crate::run::scheduler;
use crate::run::summary::RunOptions;
use crate::show::progress::{Plain, Progress, Silent, Tty};
use crate::show::report::{self, Report};
use crate::store::{OwnerInfo, Store};
use crate::supervise::signals::Shutdown;
use anyhow::Context;
use std::io::IsTerminal;
use std::sync::Arc;

/// Runs `borg run`.
pub async fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<i32> {
    let over = Overrides {
        claude: a.claude.clone(),
        concurrency: a.concurrency,
        timeout: a.timeout,
        template: a.template.clone(),
        budget_usd: a.budget_usd,
        ..Default::default()
    };
    let mut settings = ctx.settings(over)?;
    // Paths recorded in the store must not depend on the cwd of this run.
    for p in [&mut settings.paths.workspaces, &mut settings.paths.store] {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    let roles = ctx.roles(&settings)?;
    let list: Option<TaskList> = match &a.tasks {
        Some(p) => Some(tasklist::parse_file(p, &roles.names())?),
        None => None,
    };
    if let Some(t) = &settings.paths.template {
        if !t.is_dir() {
            return Err(UsageError(format!(
                "workspace template {} does not exist or is not a directory",
                t.display()
            ))
            .into());
        }
    }
    let claude = crate::supervise::claude::resolve(
        settings.claude.path.as_deref(),
        ctx.env.get("PATH").map(String::as_str),
    )?;
    if let Some(list) = &list {
        let any_bypass = list.tasks.iter().any(|t| {
            roles
                .get(&t.role)
                .map(|r| {
                    crate::supervise::claude::options(&settings, r, t).permission_mode
                        == "bypassPermissions"
                })
                .unwrap_or(false)
        });
        let root = nix::unistd::geteuid().is_root();
        if crate::supervise::claude::root_bypass_refused(root, any_bypass, &settings, &ctx.env) {
            return Err(crate::supervise::claude::ClaudeError::RootBypass.into());
        }
    }
    if a.dry_run {
        let Some(list) = list else {
            return Err(UsageError("--dry-run needs a task list".into()).into());
        };
        return dry_run(&list, &claude, a.json);
    }

    // Preflight: the version is recorded in the report; a very old CLI gets a warning.
    let env_for_version: Vec<(String, String)> = ctx
        .env
        .iter()
        .filter(|(k, _)| k.as_str() != "CLAUDECODE")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let version = match crate::supervise::claude::preflight_version(&claude, &env_for_version).await
    {
        Ok(v) => {
            if crate::supervise::claude::parse_version(&v).is_some_and(|(maj, _)| maj < 2) {
                eprintln!("borg: warning: {} reports version {v}; borg is verified against 2.1.197 and needs 2.0 or newer", claude.display());
            }
            Some(v)
        }
        Err(e) => {
            eprintln!("borg: warning: {e}");
            None
        }
    };

    tracing::debug!(claude = %claude.display(), version = ?version, store = %settings.paths.store.display(), "preflight done");
    let store = ctx.store(&settings)?;
    let store_dyn: Arc<dyn Store> = store.clone();
    let owner = register_owner(&store_dyn)?;
    // Before anything else: take back what dead borgs held and kill their leftovers.
    crate::run::recovery::maintenance(&store_dyn, &owner).await;

    let mut changed_after_success = Vec::new();
    let scope: Vec<String> = match &list {
        Some(list) => {
            let rows: Vec<_> = list
                .tasks
                .iter()
                .map(|t| {
                    crate::run::spec::new_task(
                        &StoredSpec {
                            task: t.clone(),
                            handoff: None,
                        },
                        settings.run.retries,
                    )
                })
                .collect();
            let rep = store.sync_tasks(&rows, now_ms())?;
            for id in &rep.changed_after_success {
                eprintln!("borg: task {id} changed since it succeeded; not re-running it (use `borg task retry {id}` to run it again)");
            }
            changed_after_success = rep.changed_after_success;
            with_handoffs(
                store.as_ref(),
                list.tasks.iter().map(|t| t.id.clone()).collect(),
            )?
        }
        None => {
            // Without a list, borg resumes the store's unfinished tasks; with none, say so
            // rather than print an empty report.
            if store.statuses()?.iter().all(|(_, st)| st.is_terminal()) {
                return Err(UsageError(format!(
                    "no task list given and the store {} has no unfinished task; run `borg run TASKS.toml`",
                    settings.paths.store.display()
                ))
                .into());
            }
            Vec::new()
        }
    };

    let workspaces = crate::workspace::instance::Workspaces::new(&settings.paths.workspaces);
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        roles,
        claude: claude.clone(),
        parent_env: ctx.env.clone(),
        store: store_dyn.clone(),
        store_path: settings.paths.store.clone(),
        workspaces,
    });
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    let color = ctx.env.get("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut progress: Box<dyn Progress> = match a.progress {
        ProgressMode::None => Box::new(Silent),
        ProgressMode::Tty => Box::new(Tty::new(color)),
        ProgressMode::Auto if std::io::stderr().is_terminal() => Box::new(Tty::new(color)),
        _ => Box::new(Plain),
    };
    let started_at = chrono::Utc::now();
    let opts = RunOptions {
        scope: scope.clone(),
        concurrency: settings.run.concurrency.max(1),
        budget_usd: settings.run.budget_usd,
    };
    let summary = scheduler::run(shared, owner.clone(), opts, shutdown, progress.as_mut()).await;
    progress.finish();
    let summary = summary?;
    let _ = store.release_owner(&owner.id, now_ms());

    // The report covers this run's tasks (or the whole store without a list).
    let rows = store.tasks()?;
    let scope_set: std::collections::HashSet<&String> = summary.scope.iter().collect();
    let not_started =
        summary
            .stop
            .as_ref()
            .map(|s| s.short().to_string())
            .or(if summary.interrupted {
                Some("interrupted".into())
            } else {
                None
            });
    let mut tasks = Vec::new();
    for t in rows
        .iter()
        .filter(|t| scope.is_empty() || scope_set.contains(&t.id))
    {
        let attempts = store.attempts(&t.id)?;
        let mut r = report::task_report(t, &attempts, not_started.as_deref());
        r.changed_after_success = changed_after_success.contains(&t.id);
        tasks.push(r);
    }
    // Every task a handoff created names its source: that gives each source its
    // follow-ups, declared or requested alike.
    let index: std::collections::HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    for t in &rows {
        if let Some(&i) = crate::run::spec::source_of(t).and_then(|src| index.get(src)) {
            let r = &mut tasks[i];
            r.handoff_to.get_or_insert_with(|| t.role.clone());
            r.handoff_tasks.push(t.id.clone());
        }
    }
    let (totals, role_metrics) = report::totals(&tasks);
    let rep = Report {
        run_id: owner.id.clone(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        claude_version: version,
        tasks,
        totals,
        roles: role_metrics,
        interrupted: summary.interrupted,
        stop_reason: summary.stop.as_ref().map(|s| s.message().to_string()),
    };
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(&rep)?)
            .with_context(|| format!("writing the report {}", p.display()))?;
    }
    if let Some(p) = &a.junit {
        std::fs::write(p, report::junit(&rep))
            .with_context(|| format!("writing the JUnit report {}", p.display()))?;
    }
    if a.json {
        super::print_json(&rep)?;
    } else {
        eprint!("\n{}", report::table(&rep));
    }
    if summary.interrupted {
        let stopped = if summary.stopped_tasks.is_empty() {
            "none".to_string()
        } else {
            summary.stopped_tasks.join(", ")
        };
        let done = rep
            .tasks
            .iter()
            .filter(|t| t.status.is_terminal() && t.status != Status::Interrupted)
            .count();
        eprintln!("borg: interrupted: stopped {stopped}; {done} of {} tasks had finished; run the same command again to resume", rep.tasks.len());
        return Ok(EXIT_INTERRUPTED);
    }
    if let Some(s) = &summary.stop {
        // The table ends with the same message ("stopped early: ..."): say it once.
        if a.json {
            eprintln!("borg: {}", s.message());
        }
        return Ok(EXIT_FAILED);
    }
    Ok(if rep.tasks.iter().all(|t| t.status == Status::Succeeded) {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// Adds to `ids` the tasks created by handoffs from them, transitively.
fn with_handoffs(store: &dyn Store, mut ids: Vec<String>) -> anyhow::Result<Vec<String>> {
    let rows = store.tasks()?;
    loop {
        let before = ids.len();
        for t in &rows {
            if crate::run::spec::source_of(t).is_some_and(|src| ids.iter().any(|i| i == src))
                && !ids.contains(&t.id)
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
