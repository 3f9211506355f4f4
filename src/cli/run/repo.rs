//! `borg run`, git mode: which repository (`--repo`, `[workspace] repo` or
//! `BORG_REPO`, else the repository the task list lives in when no template is
//! given; `--no-repo` opts out), checked before anything starts; then, once the store
//! is open, the run's base (recorded there, so a resumed run keeps it), the one line
//! saying so, the workspaces folder kept out of the user's `git status`, and a
//! warning when the user's work tree has uncommitted changes.

use crate::cli::{Ctx, RunArgs};
use crate::error::UsageError;
use crate::git::repo::BASE_KEY;
use crate::git::{short, Git, Repo};
use crate::input::config::Settings;
use crate::input::roles::RoleSet;
use crate::input::tasklist::TaskList;
use crate::store::Store;
use std::path::PathBuf;

/// The repository a run works on.
pub(crate) struct Chosen {
    /// The checked repository.
    pub repo: Repo,
    /// How it was chosen, for the start line.
    how: &'static str,
    /// `--base REV` was given.
    base_given: bool,
}

/// Chooses and checks the repository; None in template mode. Bad input is exit 2
/// before any child starts.
pub(crate) fn choose(
    ctx: &Ctx,
    a: &RunArgs,
    s: &Settings,
    roles: &RoleSet,
    list: Option<&TaskList>,
) -> anyhow::Result<Option<Chosen>> {
    let git = Git::new(&ctx.env);
    let Some((dir, how)) = which(&git, a, s, list)? else {
        return Ok(None);
    };
    let mut repo = Repo::open(git, &dir, &s.git.branch_prefix, &s.git.resolver_role)?;
    roles.get(&s.git.resolver_role)?;
    if let Some(rev) = &a.base {
        repo.set_base(rev)?;
    }
    if let Some(l) = list {
        repo.check_ids(l.tasks.iter().map(|t| t.id.as_str()))?;
    }
    Ok(Some(Chosen {
        repo,
        how,
        base_given: a.base.is_some(),
    }))
}

/// The repository's folder and how it was chosen.
fn which(
    git: &Git,
    a: &RunArgs,
    s: &Settings,
    list: Option<&TaskList>,
) -> anyhow::Result<Option<(PathBuf, &'static str)>> {
    if a.no_repo {
        return Ok(None);
    }
    if a.repo.is_some() {
        return Ok(s.paths.repo.clone().map(|r| (r, "--repo")));
    }
    if a.template.is_some() {
        return Ok(None);
    }
    match (&s.paths.repo, &s.paths.template) {
        (Some(_), Some(_)) => Err(UsageError(
            "both a workspace template ([workspace] template or BORG_TEMPLATE) and a repository \
             ([workspace] repo or BORG_REPO) are set; keep one, or choose with --template DIR or --repo DIR"
                .into(),
        )
        .into()),
        (Some(r), None) => Ok(Some((r.clone(), "[workspace] repo / BORG_REPO"))),
        (None, Some(_)) => Ok(None),
        (None, None) => Ok(detect(git, list)),
    }
}

/// The work tree the task list lives in, if any.
fn detect(git: &Git, list: Option<&TaskList>) -> Option<(PathBuf, &'static str)> {
    let file = std::path::absolute(&list?.path).ok()?;
    let out = git
        .at(file.parent()?)
        .args(["rev-parse", "--show-toplevel"])
        .run()
        .ok()?;
    (out.code == 0 && !out.text().is_empty()).then(|| {
        (
            PathBuf::from(out.text()),
            "the task list is in it; --no-repo to opt out",
        )
    })
}

/// Git mode, once the store is open: without a list, the repository the store
/// recorded; the base settled with the store (and said); then the worktrees a killed
/// borg left mid-attempt recovered, before any child starts.
pub(crate) fn prepare(
    ctx: &Ctx,
    a: &RunArgs,
    (git, list, s): (&mut Option<Chosen>, Option<&TaskList>, &Settings),
    store: &dyn Store,
) -> anyhow::Result<()> {
    if git.is_none() && list.is_none() {
        *git = recorded(ctx, a, s, store)?;
    }
    let Some(chosen) = git.as_mut() else {
        return Ok(());
    };
    let ids: Vec<String> = list
        .map(|l| l.tasks.iter().map(|t| t.id.clone()).collect())
        .unwrap_or_default();
    settle(store, chosen, &ids, &s.paths.workspaces)?;
    let ws = crate::workspace::instance::Workspaces::new(&s.paths.workspaces);
    for note in crate::run::recovery::worktrees(store, &ws, &chosen.repo) {
        eprintln!("borg: {note}");
    }
    Ok(())
}

/// Without a task list (the store's unfinished tasks are the run) and with no
/// repository or template named, the repository an earlier run of this store
/// worked on, if any.
fn recorded(
    ctx: &Ctx,
    a: &RunArgs,
    s: &Settings,
    store: &dyn Store,
) -> anyhow::Result<Option<Chosen>> {
    if a.no_repo || s.paths.template.is_some() {
        return Ok(None);
    }
    let Some(dir) = store
        .fleet(BASE_KEY)?
        .and_then(|v| v.get("repo")?.as_str().map(PathBuf::from))
    else {
        return Ok(None);
    };
    let git = Git::new(&ctx.env);
    let repo = Repo::open(git, &dir, &s.git.branch_prefix, &s.git.resolver_role)?;
    Ok(Some(Chosen {
        repo,
        how: "recorded in the store",
        base_given: false,
    }))
}

/// Settles the base with the store: `--base`, else the one an earlier run of this
/// store recorded for this repository, else `HEAD` now; records it; says so in one
/// line. A fresh run refuses to reuse the refs of an earlier one for `ids`.
fn settle(
    store: &dyn Store,
    c: &mut Chosen,
    ids: &[String],
    workspaces: &std::path::Path,
) -> anyhow::Result<()> {
    let repo = &mut c.repo;
    let recorded = store.fleet(BASE_KEY)?;
    let same_repo = recorded
        .as_ref()
        .and_then(|v| v.get("common_dir")?.as_str().map(PathBuf::from))
        .is_some_and(|d| d == repo.common_dir);
    let kept = recorded
        .as_ref()
        .filter(|_| same_repo && !c.base_given)
        .and_then(|v| v.get("base")?.as_str().map(String::from))
        .filter(|b| repo.commit_of(b).is_ok());
    let head = repo.base.clone();
    if !same_repo {
        repo.check_no_refs_of(ids.iter().map(String::as_str))?;
    }
    if let Some(b) = kept {
        repo.base = b;
    }
    let v = serde_json::json!({"repo": repo.dir, "common_dir": repo.common_dir, "base": repo.base});
    store.set_fleet(BASE_KEY, &v, crate::run::attempt::now_ms())?;
    let mut line = repo.describe(c.how);
    if repo.base != head && !c.base_given {
        line.push_str(&format!(
            " (kept from the earlier run; HEAD is now {})",
            short(&head)
        ));
    }
    eprintln!("borg: {line}");
    if let Some(l) = repo.exclude(workspaces)? {
        eprintln!(
            "borg: added {l} to {} so that git status stays as it was",
            repo.common_dir.join("info/exclude").display()
        );
    }
    let n = repo.uncommitted();
    if n > 0 {
        eprintln!("borg: warning: {n} uncommitted change(s) in {} are not part of the base; commit them first to include them", repo.dir.display());
    }
    Ok(())
}
