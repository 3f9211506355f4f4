//! `borg instance create | list | show | rm`. In git mode (`[workspace] repo` or
//! `BORG_REPO` set, no `--template`) a new instance's `project-files/` is a worktree of
//! the repository; `list` shows each instance's branch; `rm` removes a worktree with
//! git.

use super::{print_json, Ctx};
use crate::cli::InstanceCmd;
use crate::error::EXIT_OK;
use crate::git::worktree::Worktree;
use crate::git::{Git, Repo};
use crate::input::config::{Overrides, Settings};
use crate::workspace::instance::{Instance, Project, Workspaces};

/// Runs `borg instance ...`.
pub fn run(ctx: &Ctx, cmd: InstanceCmd) -> anyhow::Result<i32> {
    let template = match &cmd {
        InstanceCmd::Create { template, .. } => template.clone(),
        _ => None,
    };
    let s = ctx.settings(Overrides {
        template,
        ..Default::default()
    })?;
    let ws = Workspaces::new(&s.paths.workspaces);
    match cmd {
        InstanceCmd::Create {
            role, name, json, ..
        } => create(ctx, &s, &ws, &role, name.as_deref(), json)?,
        InstanceCmd::List { json } => list(ctx, &s, &ws, json)?,
        InstanceCmd::Show { id, json } => show(&ws, &id, json)?,
        InstanceCmd::Rm { id, force } => {
            let i = ws.get(&id)?;
            if Worktree::of_instance(&i.path).exists() {
                ws.remove_worktree(&id, &Git::new(&ctx.env), force)?;
            } else {
                ws.remove(&id)?;
            }
            println!("removed {id}");
        }
    }
    Ok(EXIT_OK)
}

/// `borg instance create`: a template copy, or a worktree when a repository is set
/// and no template.
fn create(
    ctx: &Ctx,
    s: &Settings,
    ws: &Workspaces,
    role: &str,
    name: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let roles = ctx.roles(s)?;
    let role = roles.get(role)?;
    let repo = match (&s.paths.repo, &s.paths.template) {
        (Some(dir), None) => Some(open_repo(ctx, s, dir)?),
        _ => None,
    };
    let project = match &repo {
        Some(r) => Project::Worktree(r),
        None => Project::template(s.paths.template.as_deref()),
    };
    let i = ws.create_in(role, name, project)?;
    if json {
        print_json(&serde_json::json!({"id": i.id, "role": i.role, "path": i.path}))?;
    } else {
        println!("created {} instance at {}", i.role, i.path.display());
        println!("{}", i.id);
    }
    Ok(())
}

/// The repository an instance is a worktree of: a folder, or for a remote's URL this
/// host's mirror of it, at the remote's `HEAD`.
fn open_repo(ctx: &Ctx, s: &Settings, dir: &std::path::Path) -> anyhow::Result<Repo> {
    let (git, p, r) = (
        Git::new(&ctx.env),
        &s.git.branch_prefix,
        &s.git.resolver_role,
    );
    let text = dir.to_string_lossy();
    if !crate::git::remote::is_url(&text) {
        return Ok(Repo::open(git, dir, p, r)?);
    }
    let mirror = s.paths.workspaces.join(crate::git::mirror::MIRROR_DIR);
    let mut repo = Repo::mirror(git, &text, &mirror, p, r)?;
    repo.sync(None)?;
    Ok(repo)
}

/// `borg instance list`, with each worktree's branch.
fn list(ctx: &Ctx, s: &Settings, ws: &Workspaces, json: bool) -> anyhow::Result<()> {
    let list = ws.list()?;
    let git = Git::new(&ctx.env);
    let rows: Vec<(Instance, Option<String>)> = list
        .into_iter()
        .map(|i| {
            let b = branch_of(&git, s, &i);
            (i, b)
        })
        .collect();
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(i, b)| {
                let mut v = serde_json::to_value(i).unwrap_or_default();
                if let (Some(b), Some(o)) = (b, v.as_object_mut()) {
                    o.insert("branch".into(), b.clone().into());
                }
                v
            })
            .collect();
        print_json(&v)?;
    } else if rows.is_empty() {
        println!("no instances in {}", ws.root.display());
    } else {
        println!("{:<32} {:<12} {:<32} CREATED", "ID", "ROLE", "BRANCH");
        for (i, b) in rows {
            let b = b.unwrap_or_else(|| "-".into());
            println!("{:<32} {:<12} {:<32} {}", i.id, i.role, b, i.created_at);
        }
    }
    Ok(())
}

/// The branch of an instance's worktree: the one checked out while a task runs, else
/// (detached between tasks) the branch of the last task it ran, marked `(idle)`.
fn branch_of(git: &Git, s: &Settings, i: &Instance) -> Option<String> {
    let wt = Worktree::of_instance(&i.path);
    if !wt.exists() {
        return None;
    }
    let out = git
        .at(&wt.dir)
        .args(["symbolic-ref", "-q", "--short", "HEAD"])
        .run()
        .ok()?;
    if out.code == 0 {
        return Some(out.text());
    }
    let last = i.recent_history(1).ok()?.pop();
    Some(match last {
        Some(e) => format!("{}{} (idle)", s.git.branch_prefix, e.task_id),
        None => "(detached, no task yet)".into(),
    })
}

/// `borg instance show`.
fn show(ws: &Workspaces, id: &str, json: bool) -> anyhow::Result<()> {
    let i = ws.get(id)?;
    let history = i.history().unwrap_or_default();
    if json {
        print_json(
            &serde_json::json!({"id": i.id, "role": i.role, "path": i.path, "created_at": i.created_at, "tasks": history}),
        )?;
        return Ok(());
    }
    println!(
        "id:      {}\nrole:    {}\npath:    {}\ncreated: {}\ntasks:   {}",
        i.id,
        i.role,
        i.path.display(),
        i.created_at,
        history.len()
    );
    for e in history {
        println!(
            "  {} {} (attempt {}): {}, {} file(s)",
            e.time,
            e.task_id,
            e.attempt,
            e.status,
            e.files_changed.len()
        );
    }
    Ok(())
}
