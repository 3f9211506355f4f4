//! `borg logs ID`: the transcript of a task (or of every task an instance ran), for
//! people by default, byte-exact with `--raw`, and live with `--follow`, which goes on
//! across attempts, waits for a task that has not started and survives borg restarting
//! (it only reads the store and the log files). While following it sleeps until the
//! log or the store is written (filesystem notifications, see `wait`).

mod wait;

use super::Ctx;
use crate::cli::LogsArgs;
use crate::error::{UsageError, EXIT_OK};
use crate::input::config::Overrides;
use crate::outcome::lines::{Line, LineSplitter};
use crate::show::render::Renderer;
use crate::store::location::StoreLocation;
use crate::store::Store;
use crate::workspace::instance::Workspaces;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use wait::Waiter;

/// One log to show.
#[derive(Debug, Clone, PartialEq)]
struct LogRef {
    task: String,
    attempt: u32,
    stdout: PathBuf,
    running: bool,
}

/// Runs `borg logs`.
pub async fn run(ctx: &Ctx, a: LogsArgs) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let ws = Workspaces::new(&s.paths.workspaces);
    // The store may not exist yet when following a run that has not started.
    let at = StoreLocation::of(&s.paths.store);
    let mut store = if at.exists() {
        Some(ctx.store(&s)?)
    } else {
        None
    };
    let color = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut shown: Vec<(String, u32)> = Vec::new();
    let mut waited = false;
    let mut waiter = Waiter::new();
    loop {
        let new_watch = match &at {
            StoreLocation::Sqlite(file) => watch_store(&mut waiter, file),
            // A database server's changes make no notification here: look on a timer.
            StoreLocation::Postgres(_) => {
                waiter.poll_only();
                false
            }
        };
        if store.is_none() && at.exists() {
            store = ctx.store(&s).ok();
        }
        let logs = find_logs(store.as_deref(), &ws, &a.id, a.attempt)?;
        if logs.is_empty() && !a.follow {
            return Err(UsageError(format!(
                "no task or instance {:?} with logs (store {}, workspaces {})",
                a.id,
                at.shown(),
                ws.root.display()
            ))
            .into());
        }
        let mut progressed = false;
        let fresh: Vec<LogRef> = logs
            .into_iter()
            .filter(|l| !shown.contains(&(l.task.clone(), l.attempt)))
            .collect();
        for l in &fresh {
            if !a.raw {
                println!("── {} · attempt {} ──", l.task, l.attempt);
            }
            show(l, &a, color, store.as_deref(), &mut waiter).await?;
            shown.push((l.task.clone(), l.attempt));
            progressed = true;
        }
        if !a.follow {
            return Ok(EXIT_OK);
        }
        if !progressed && finished(store.as_deref(), &a.id) && !shown.is_empty() {
            return Ok(EXIT_OK);
        }
        if !progressed && !waited && shown.is_empty() {
            eprintln!("borg: waiting for {} to start…", a.id);
            waited = true;
        }
        if !new_watch {
            waiter.wait().await;
        }
    }
}

/// Wakes the follower on writes to the store (its folder), or to the folder it will be
/// created in. True when a watch was just added (see [`Waiter::watch`]).
fn watch_store(waiter: &mut Waiter, store: &Path) -> bool {
    let dir = store
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut fresh = waiter.watch(dir);
    if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        fresh |= waiter.watch(up);
    }
    fresh
}

/// True when the task is in a terminal state (nothing more will be written).
fn finished(store: Option<&dyn Store>, id: &str) -> bool {
    store
        .and_then(|s| s.task(id).ok().flatten())
        .is_some_and(|t| t.status.is_terminal())
}

/// The attempts' logs of a task, or of every task an instance ran.
fn find_logs(
    store: Option<&dyn Store>,
    ws: &Workspaces,
    id: &str,
    only: Option<u32>,
) -> anyhow::Result<Vec<LogRef>> {
    let mut out = Vec::new();
    if let Some(st) = store {
        if st.task(id)?.is_some() {
            for att in st.attempts(id)? {
                out.push(LogRef {
                    task: id.to_string(),
                    attempt: att.attempt as u32,
                    stdout: PathBuf::from(&att.start.stdout_log),
                    running: att.status == crate::outcome::Status::Running,
                });
            }
        }
    }
    if out.is_empty() && crate::input::tasklist::valid_id(id) {
        if let Ok(inst) = ws.get(id) {
            let mut files: Vec<(std::time::SystemTime, PathBuf)> =
                std::fs::read_dir(inst.logs_dir())
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .filter(|p| p.to_string_lossy().ends_with(".stdout.jsonl"))
                            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
                            .collect()
                    })
                    .unwrap_or_default();
            files.sort();
            for (_, p) in files {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let stem = name.trim_end_matches(".stdout.jsonl");
                let (task, n) = stem.rsplit_once('.').unwrap_or((stem, "1"));
                out.push(LogRef {
                    task: task.to_string(),
                    attempt: n.parse().unwrap_or(1),
                    stdout: p,
                    running: false,
                });
            }
        }
    }
    if let Some(n) = only {
        out.retain(|l| l.attempt == n);
    }
    out.retain(|l| !l.stdout.as_os_str().is_empty());
    Ok(out)
}

/// Prints one attempt's log; with --follow, keeps reading while the attempt runs.
async fn show(
    l: &LogRef,
    a: &LogsArgs,
    color: bool,
    store: Option<&dyn Store>,
    waiter: &mut Waiter,
) -> anyhow::Result<()> {
    let mut renderer = Renderer::new(color);
    let mut splitter = LineSplitter::new(8 * 1024 * 1024);
    let mut pos = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let stdout = std::io::stdout();
    loop {
        let mut grew = false;
        if let Ok(mut f) = std::fs::File::open(&l.stdout) {
            f.seek(SeekFrom::Start(pos))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                grew = true;
                pos += n as u64;
                let mut out = stdout.lock();
                if a.raw {
                    out.write_all(&buf[..n])?;
                } else {
                    let mut lines = Vec::new();
                    splitter.push(&buf[..n], |line| match line {
                        Line::Complete(b) => lines.extend(renderer.line(b)),
                        Line::Oversized(n) => lines.extend(renderer.oversized(n)),
                    });
                    for s in lines {
                        writeln!(out, "{s}")?;
                    }
                }
                out.flush()?;
            }
        }
        if !a.follow {
            break;
        }
        if grew {
            continue;
        }
        // Still running? Keep polling; otherwise this attempt is complete.
        let running = store
            .and_then(|s| s.attempts(&l.task).ok())
            .and_then(|v| v.into_iter().find(|x| x.attempt as u32 == l.attempt))
            .map_or(l.running, |x| x.status == crate::outcome::Status::Running);
        if !running {
            break;
        }
        let fresh = l.stdout.parent().is_some_and(|dir| waiter.watch(dir));
        if !fresh {
            waiter.wait().await;
        }
    }
    if !a.raw {
        let mut lines = Vec::new();
        splitter.finish(|line| {
            if let Line::Complete(b) = line {
                lines.extend(renderer.line(b));
            }
        });
        lines.extend(renderer.finish());
        let mut out = stdout.lock();
        for s in lines {
            writeln!(out, "{s}")?;
        }
    }
    Ok(())
}
