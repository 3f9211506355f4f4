//! `borg merge [--into BRANCH] [--dry-run]`: the run's finished work landed on a
//! target branch by the merge queue (`src/merge/`). Bad input is exit 2 before any
//! ref moves: no git-mode run in the store, an unknown list, a `--into` branch that
//! does not exist or that a work tree borg does not own has checked out (with the
//! command to run instead). Exit 0 when every ready task landed, 1 when a task was
//! rejected or waits for its resolve task (the tasks the queue created are run by
//! `borg run`, then `borg merge` again lands them).

use super::Ctx;
use crate::cli::MergeArgs;
use crate::error::{UsageError, EXIT_FAILED, EXIT_OK};
use crate::git::repo::BASE_KEY;
use crate::git::{Git, Repo};
use crate::input::config::{Overrides, Settings};
use crate::input::gates::GateSpec;
use crate::merge::{self, QueueSpec};
use crate::store::Store;
use crate::supervise::runner::Control;
use crate::supervise::signals::Shutdown;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

/// The fleet key naming the list of the store's last git-mode run.
pub const LIST_KEY: &str = "merge.list";

/// Runs `borg merge`.
pub async fn run(ctx: &Ctx, a: MergeArgs) -> anyhow::Result<i32> {
    let settings = ctx.settings(Overrides::default())?;
    let store = ctx.store(&settings)?;
    let repo = recorded_repo(ctx, &settings, store.as_ref())?;
    let owner = crate::run::recovery::register(store.as_ref(), None)?;
    crate::run::recovery::maintenance(&store, &owner).await?;
    let list = list_name(store.as_ref(), a.list.as_deref())?;
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    let spec = queue_spec(
        ctx,
        &settings,
        store.as_ref(),
        &repo,
        (&list, a.into.as_deref()),
        (&owner.id, control(&shutdown)),
    )?;
    if a.dry_run {
        let plan = merge::plan::plan(&spec, &repo, store.as_ref())?;
        let _ = store.release_owner(&owner.id, crate::run::attempt::now_ms());
        if a.json {
            super::print_json(
                &serde_json::json!({"target": spec.target, "batch": spec.batch, "gates": spec.commands, "plan": plan}),
            )?;
        } else {
            print!("{}", merge::plan::text(&spec, &plan));
        }
        return Ok(EXIT_OK);
    }
    let ran = run_queue(spec.clone(), repo.clone(), store.clone()).await;
    let _ = store.release_owner(&owner.id, crate::run::attempt::now_ms());
    let ran = ran?;
    let summary = merge::summary::read(store.as_ref(), &repo, &spec.target)?.unwrap_or_default();
    if a.json {
        super::print_json(&summary)?;
    } else {
        print!("{}", summary.text());
    }
    if !ran.created.is_empty() {
        eprintln!(
            "borg: merge: created {}; run them with `borg run`, then `borg merge` again to land their work",
            ran.created.join(", ")
        );
    }
    let waiting = summary.resolve_tasks.iter().any(|r| !r.landed);
    Ok(if summary.rejected.is_empty() && !waiting {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// The tokens a gate is stopped by: children of the process's.
pub(crate) fn control(s: &Shutdown) -> Control {
    Control {
        stop: s.stop.child_token(),
        kill: s.kill.child_token(),
    }
}

/// Runs the queue on the blocking pool; the tasks it created join the list.
pub(crate) async fn run_queue(
    spec: QueueSpec,
    repo: Repo,
    store: Arc<dyn Store>,
) -> anyhow::Result<merge::Ran> {
    let st = store.clone();
    let s = spec.clone();
    let ran = tokio::task::spawn_blocking(move || merge::run(&s, &repo, &st))
        .await
        .context("the merge queue stopped")??;
    crate::run::lists::register(store.as_ref(), &spec.list, &ran.created)?;
    Ok(ran)
}

/// The repository the store's git-mode runs worked on, and their base.
fn recorded_repo(ctx: &Ctx, s: &Settings, store: &dyn Store) -> anyhow::Result<Repo> {
    let v = store.fleet(BASE_KEY)?.ok_or_else(|| {
        UsageError("this store has no git-mode run (no repository recorded); run `borg run --repo DIR TASKS.toml` first".into())
    })?;
    let dir = v.get("repo").and_then(|d| d.as_str()).map(PathBuf::from);
    let base = v.get("base").and_then(|d| d.as_str()).map(String::from);
    let (Some(dir), Some(base)) = (dir, base) else {
        return Err(UsageError("this store's git-mode run recorded no repository".into()).into());
    };
    let (git, p, r) = (
        Git::new(&ctx.env),
        &s.git.branch_prefix,
        &s.git.resolver_role,
    );
    // Hosts sharing a remote: the queue works in this host's mirror of it.
    if let Some(url) = v.get("remote").and_then(|u| u.as_str()) {
        let mirror = s.paths.workspaces.join(crate::git::mirror::MIRROR_DIR);
        let mut repo = Repo::mirror(git, url, &mirror, p, r)?;
        repo.ensure_base(&base)?;
        return Ok(repo);
    }
    let mut repo = Repo::open(git, &dir, p, r)?;
    repo.set_base(&base)?;
    Ok(repo)
}

/// `--list NAME`, else the list of the store's last git-mode run.
fn list_name(store: &dyn Store, given: Option<&str>) -> anyhow::Result<String> {
    if let Some(n) = given {
        return Ok(n.to_string());
    }
    store
        .fleet(LIST_KEY)?
        .and_then(|v| v.as_str().map(String::from))
        .ok_or_else(|| {
            UsageError(
                "this store has no task list run in git mode; name one with --list NAME".into(),
            )
            .into()
        })
}

/// The queue of list `list` into `into` (else `borg/integration/<list>`), checked.
pub(crate) fn queue_spec(
    ctx: &Ctx,
    s: &Settings,
    store: &dyn Store,
    repo: &Repo,
    (list, into): (&str, Option<&str>),
    (owner, ctl): (&str, Control),
) -> anyhow::Result<QueueSpec> {
    let scope = crate::run::lists::members(store, list)?;
    if scope.is_empty() {
        return Err(UsageError(format!(
            "no task list {list:?} in the store; name one with --list NAME"
        ))
        .into());
    }
    let target = match into {
        Some(b) => {
            check_into(
                repo,
                b,
                &s.paths.workspaces,
                &format!("borg/integration/{list}"),
            )?;
            b.to_string()
        }
        None => format!("borg/integration/{list}"),
    };
    if into.is_none() {
        check_branch_name(repo, &target)?;
        check_not_checked_out(repo, &target, &s.paths.workspaces, &target)?;
    }
    let ws =
        std::path::absolute(&s.paths.workspaces).unwrap_or_else(|_| s.paths.workspaces.clone());
    let stem = target.replace('/', "-");
    Ok(QueueSpec {
        scope,
        list: list.to_string(),
        base: repo.base.clone(),
        owner: owner.to_string(),
        batch: s.merge.batch,
        commands: gate_commands(s, repo),
        baseline: s.verify.baseline,
        fix: s.merge.fix,
        retries: s.run.retries,
        dir: ws.join(".merge").join(&stem),
        gates: gate_env(ctx, s, &ws, &stem, ctl),
        target,
    })
}

/// How the queue's gates run: the child's allowlisted environment (Python writes and
/// reads no bytecode cache: the worktree changes trees within a second, and a cache
/// keyed by second-granular mtimes could test the last candidate's code), the
/// `[verify]` timeout and junit glob, the run's stop ladder and memory limit.
fn gate_env(
    ctx: &Ctx,
    s: &Settings,
    ws: &std::path::Path,
    stem: &str,
    ctl: Control,
) -> merge::gate::GateEnv {
    let mut env = crate::supervise::claude::allowlisted_env(&ctx.env, s);
    let pycache = ws.join(".merge").join("pycache").display().to_string();
    for (k, v) in [
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        ("PYTHONPYCACHEPREFIX", pycache),
    ] {
        if !env.iter().any(|(e, _)| e == k) {
            env.push((k.into(), v));
        }
    }
    merge::gate::GateEnv {
        env,
        timeout: s.verify.timeout,
        log: ws
            .join(".merge")
            .join("logs")
            .join(format!("{stem}.verify.log")),
        ladder: (s.run.interrupt_grace, s.run.term_grace, s.run.leak_timeout),
        junit: s.verify.junit.clone(),
        max_memory_kb: s.run.max_attempt_memory.map(|b| b.div_ceil(1024)),
        ctl,
    }
}

/// `--into BRANCH`: an existing branch no work tree of the user's has checked out.
fn check_into(
    repo: &Repo,
    branch: &str,
    workspaces: &std::path::Path,
    default: &str,
) -> anyhow::Result<()> {
    let refname = format!("refs/heads/{branch}");
    let exists = match repo.remote {
        Some(_) => repo
            .ls_remote(std::slice::from_ref(&refname))?
            .contains_key(&refname),
        None => repo.commit_of(&refname).is_ok(),
    };
    if !exists {
        return Err(UsageError(format!(
            "--into {branch}: no such branch in {}; create it first (`git branch {branch} <commit>`) or leave --into out to merge into borg/integration/<list>",
            repo.dir.display()
        ))
        .into());
    }
    check_not_checked_out(repo, branch, workspaces, default)
}

/// A branch checked out in a work tree borg does not own is never moved under it.
fn check_not_checked_out(
    repo: &Repo,
    branch: &str,
    workspaces: &std::path::Path,
    default: &str,
) -> anyhow::Result<()> {
    let ws = std::path::absolute(workspaces).unwrap_or_else(|_| workspaces.to_path_buf());
    let ws = ws.canonicalize().unwrap_or(ws);
    let theirs: Vec<PathBuf> = repo
        .checked_out(branch)?
        .into_iter()
        .filter(|p| {
            !p.canonicalize()
                .unwrap_or_else(|_| p.clone())
                .starts_with(&ws)
        })
        .collect();
    let Some(wt) = theirs.first() else {
        return Ok(());
    };
    Err(UsageError(format!(
        "{branch} is checked out in {}, a work tree borg does not own; borg will not move a branch under your work. \
         Run `borg merge` (it lands the work on {default}), then in {}: `git merge --ff-only {default}`",
        wt.display(),
        wt.display()
    ))
    .into())
}

/// The target must be a valid branch name.
fn check_branch_name(repo: &Repo, target: &str) -> anyhow::Result<()> {
    let ok = repo
        .git
        .at(&repo.dir)
        .args(["check-ref-format", "--branch", target])
        .run()
        .is_ok_and(|o| o.code == 0);
    if ok {
        return Ok(());
    }
    Err(UsageError(format!(
        "{target:?} is not a valid branch name; name another with --into BRANCH or the list with --list NAME"
    ))
    .into())
}

/// `[merge] verify`, else `[verify] commands`; `"auto"` is the project's own test
/// command, found from the files at the base (none found: no gate, said in one line).
fn gate_commands(s: &Settings, repo: &Repo) -> Vec<String> {
    match s.merge.verify.as_ref().or(s.verify.commands.as_ref()) {
        None => Vec::new(),
        Some(GateSpec::Commands(c)) => c.clone(),
        Some(GateSpec::Auto) => {
            let (found, said) = merge::gate::detect(repo, &repo.base);
            eprintln!("borg: merge: integration gate \"auto\": {said}");
            found.into_iter().collect()
        }
    }
}
