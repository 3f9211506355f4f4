//! `borg run`, git mode: which repository (`--repo`, `[workspace] repo` or
//! `BORG_REPO`, else the repository the task list lives in when no template is
//! given; `--no-repo` opts out), checked before anything starts; then, once the store
//! is open, the run's base (recorded there, so a resumed run keeps it), the one line
//! saying so, the workspaces folder kept out of the user's `git status`, and a
//! warning when the user's work tree has uncommitted changes.

use crate::cli::{Ctx, RunArgs};
use crate::error::UsageError;
use crate::git::mirror::MIRROR_DIR;
use crate::git::repo::BASE_KEY;
use crate::git::{short, Git, Repo};
use crate::input::config::Settings;
use crate::input::roles::RoleSet;
use crate::input::tasklist::TaskList;
use crate::input::values::is_remote_url as is_url;
use crate::store::location::StoreLocation;
use crate::store::Store;
use std::path::Path;
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
    let repo = match remote_of(&dir, s) {
        Some(url) => {
            let mut r = Repo::mirror(
                git,
                &url,
                &mirror_dir(s),
                &s.git.branch_prefix,
                &s.git.resolver_role,
            )?;
            r.sync(a.base.as_deref())?;
            r
        }
        None => {
            let mut r = Repo::open(git, &dir, &s.git.branch_prefix, &s.git.resolver_role)?;
            if let Some(rev) = &a.base {
                r.set_base(rev)?;
            }
            r
        }
    };
    roles.get(&s.git.resolver_role)?;
    if let Some(l) = list {
        repo.check_ids(l.tasks.iter().map(|t| t.id.as_str()))?;
    }
    Ok(Some(Chosen {
        repo,
        how,
        base_given: a.base.is_some(),
    }))
}

/// The remote to work through, when there is one: the repository setting is a URL,
/// or the store is shared by hosts (then a folder is the remote too: a bare
/// repository on shared storage, the same path on every host).
fn remote_of(dir: &Path, s: &Settings) -> Option<String> {
    let text = dir.to_string_lossy();
    if is_url(&text) {
        return Some(text.trim().to_string());
    }
    StoreLocation::of(&s.paths.store)
        .is_shared()
        .then(|| std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()))
        .map(|p| p.display().to_string())
}

/// This host's mirror of the remote.
fn mirror_dir(s: &Settings) -> PathBuf {
    s.paths.workspaces.join(MIRROR_DIR)
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
    let Some(rec) = store.fleet(BASE_KEY)? else {
        return Ok(None);
    };
    let field = |k: &str| rec.get(k).and_then(|v| v.as_str()).map(String::from);
    let Some(dir) = field("remote").or_else(|| field("repo")) else {
        return Ok(None);
    };
    let git = Git::new(&ctx.env);
    let (p, r) = (&s.git.branch_prefix, &s.git.resolver_role);
    let repo = match remote_of(Path::new(&dir), s).or(field("remote")) {
        Some(url) => Repo::mirror(git, &url, &mirror_dir(s), p, r)?,
        None => Repo::open(git, Path::new(&dir), p, r)?,
    };
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
    let head = c.repo.base.clone();
    let recorded = store.fleet(BASE_KEY)?;
    let same_repo = recorded.as_ref().is_some_and(|v| is_same(v, &c.repo));
    if !same_repo {
        c.repo.check_no_refs_of(ids.iter().map(String::as_str))?;
    }
    // A host joining without a list (a worker, whatever URL it reaches the remote by)
    // takes the recorded base and leaves the record as the run made it.
    let joins = ids.is_empty()
        && c.repo.remote.is_some()
        && recorded
            .as_ref()
            .is_some_and(|v| v.get("remote").is_some_and(|r| r.is_string()));
    let kept = recorded
        .as_ref()
        .filter(|_| (same_repo || joins) && !c.base_given)
        .and_then(|v| v.get("base")?.as_str().map(String::from));
    keep_base(&mut c.repo, kept)?;
    let repo = &c.repo;
    if !joins {
        if repo.remote.is_some() {
            repo.publish_base()?;
        }
        let v = serde_json::json!({"repo": repo.remote.clone().unwrap_or_else(|| repo.dir.display().to_string()),
            "remote": repo.remote, "common_dir": repo.common_dir, "base": repo.base});
        store.set_fleet(BASE_KEY, &v, crate::run::attempt::now_ms())?;
    }
    let mut line = repo.describe(c.how);
    if repo.base != head && !head.is_empty() && !c.base_given {
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

/// Whether the store's record names this repository: the same remote, or the same
/// repository folder.
fn is_same(rec: &serde_json::Value, repo: &Repo) -> bool {
    let field = |k: &str| rec.get(k).and_then(|v| v.as_str());
    match &repo.remote {
        Some(url) => field("remote") == Some(url.as_str()),
        None => field("common_dir").map(PathBuf::from).as_ref() == Some(&repo.common_dir),
    }
}

/// Keeps the recorded base when there is one: in a mirror it is fetched from the
/// remote if needed (and must be there); in a repository it is kept when it still
/// exists. A mirror opened from the store's record has no other base.
fn keep_base(repo: &mut Repo, kept: Option<String>) -> anyhow::Result<()> {
    match (kept, repo.remote.is_some()) {
        (Some(b), true) => repo.ensure_base(&b)?,
        (Some(b), false) if repo.commit_of(&b).is_ok() => repo.base = b,
        (None, true) if repo.base.is_empty() => {
            return Err(UsageError(
                "the store records no base for the remote; run `borg run TASKS.toml --repo URL` once to enqueue a list".into(),
            )
            .into())
        }
        _ => {}
    }
    Ok(())
}
