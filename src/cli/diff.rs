//! `borg diff TASK [--stat] [--attempt N]`: a task's work in git mode, as git shows
//! it: the diff from the attempt's start commit to its final commit (coloured on a
//! terminal unless `NO_COLOR` is set).

use super::Ctx;
use crate::cli::DiffArgs;
use crate::error::UsageError;
use crate::git::mirror::MIRROR_DIR;
use crate::git::repo::BASE_KEY;
use crate::git::{Git, Repo};
use crate::input::config::{Overrides, Settings};
use crate::outcome::AttemptRecord;
use crate::store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Runs `borg diff`.
pub fn run(ctx: &Ctx, a: DiffArgs) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    let rec = record_of(store.as_ref(), &a)?;
    let (Some(base), Some(commit)) = (rec.git.base.clone(), rec.git.commit.clone()) else {
        return Err(UsageError(format!(
            "task {} has no commit to show (attempt {}): it did not run in git mode, or made no commit",
            a.task, rec.attempt
        ))
        .into());
    };
    let repo = repo_dir(ctx, &s, store.as_ref(), &rec)?;
    let color = if std::io::stdout().is_terminal()
        && ctx.env.get("NO_COLOR").is_none_or(|v| v.is_empty())
    {
        "--color=always"
    } else {
        "--color=never"
    };
    let mut args = vec!["diff", color, "-M", "--no-ext-diff"];
    if a.stat {
        args.push("--stat");
    }
    args.extend([base.as_str(), commit.as_str()]);
    let code = Git::new(&ctx.env).at(&repo).args(&args).show()?;
    Ok(if code == 0 {
        0
    } else {
        crate::error::EXIT_FAILED
    })
}

/// The record of the attempt asked for (`--attempt N`), else of the last attempt.
fn record_of(store: &dyn Store, a: &DiffArgs) -> anyhow::Result<AttemptRecord> {
    let no_task = || UsageError(format!("no task {:?} in the store", a.task));
    let task = store.task(&a.task)?.ok_or_else(no_task)?;
    let attempts = store.attempts(&task.id)?;
    let row = match a.attempt {
        Some(n) => attempts
            .iter()
            .find(|r| r.attempt == i64::from(n))
            .ok_or_else(|| {
                UsageError(format!(
                    "task {} has no attempt {n} (it has {})",
                    task.id,
                    attempts.len()
                ))
            })?,
        None => attempts
            .iter()
            .rev()
            .find(|r| r.record.is_some())
            .ok_or_else(|| UsageError(format!("task {} has not run yet", task.id)))?,
    };
    AttemptRecord::from_stored(row.record.as_ref()).ok_or_else(|| {
        UsageError(format!(
            "attempt {} of {} has no record",
            row.attempt, task.id
        ))
        .into()
    })
}

/// The repository the store's runs worked on; with a shared remote, this host's
/// mirror of it, with the attempt's commits fetched when another host made them.
fn repo_dir(
    ctx: &Ctx,
    s: &Settings,
    store: &dyn Store,
    rec: &AttemptRecord,
) -> anyhow::Result<PathBuf> {
    let v = store.fleet(BASE_KEY)?;
    let field = |k: &str| v.as_ref().and_then(|v| v.get(k)).and_then(|d| d.as_str());
    if let Some(url) = field("remote") {
        let dir = s.paths.workspaces.join(MIRROR_DIR);
        let (p, r) = (&s.git.branch_prefix, &s.git.resolver_role);
        let repo = Repo::mirror(Git::new(&ctx.env), url, &dir, p, r)?;
        fetch_attempt(&repo, rec)?;
        return Ok(dir);
    }
    let dir = field("repo").ok_or_else(|| {
        UsageError("this store has no git-mode run (no repository recorded)".into())
    })?;
    Ok(PathBuf::from(dir))
}

/// Fetches the attempt's commit from the remote when the mirror lacks it: from its
/// attempt ref, else from the task's branch.
fn fetch_attempt(repo: &Repo, rec: &AttemptRecord) -> anyhow::Result<()> {
    let Some(commit) = rec.git.commit.clone() else {
        return Ok(());
    };
    let lacks = |r: &Repo| {
        r.missing(std::slice::from_ref(&commit))
            .map(|m| !m.is_empty())
    };
    let mut tried = Vec::new();
    let from_ref = rec.git.attempt_ref.clone();
    let branch = (
        repo.remote_branch(&rec.task),
        repo.fetched_branch(&rec.task),
    );
    for (src, dst) in from_ref.map(|r| (r.clone(), r)).into_iter().chain([branch]) {
        if !lacks(repo)? {
            return Ok(());
        }
        if let Err(e) = repo.fetch(&[(src.clone(), dst)]) {
            tried.push(format!("{src}: {e}"));
        }
    }
    if lacks(repo)? {
        return Err(UsageError(format!(
            "the commit {} of task {} is neither in this host's mirror nor on the remote ({})",
            crate::git::short(&commit),
            rec.task,
            tried.join("; ")
        ))
        .into());
    }
    Ok(())
}
