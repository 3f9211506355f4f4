//! Starting an attempt: the three stdio pipes made by borg, their child ends handed to
//! the reaper with the request to start claude (so claude's data flows straight
//! between claude and borg), the prompt written to claude's stdin, the reaper's
//! reports turned into events, and the stream jobs of stdout and stderr.

use super::stream::Streams;
use super::{AttemptPlan, Ev, LiveView};
use crate::supervise::reaper::{self, AttemptHandle, Report, SpawnRequest};
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

/// A started attempt, as the watch needs it.
pub(super) struct Spawned {
    /// The attempt's line to the reaper.
    pub(super) handle: AttemptHandle,
    /// The reaper's reports and the streams' events.
    pub(super) events: mpsc::UnboundedReceiver<Ev>,
    /// The stream jobs of stdout and stderr.
    pub(super) streams: Streams,
    /// Milliseconds from the stdout stream's start to its last chunk (idle watchdog).
    pub(super) last_activity: Arc<AtomicU64>,
}

/// borg's ends of the three pipes, and the child's.
struct Pipes {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    child: [OwnedFd; 3],
}

impl Pipes {
    fn new() -> std::io::Result<Pipes> {
        use nix::fcntl::OFlag;
        use nix::unistd::pipe2;
        let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC)?;
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
        Ok(Pipes {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
            child: [in_r, out_w, err_w],
        })
    }
}

/// Asks the reaper to start the plan's command line and wires its pipes.
pub(super) async fn start(
    plan: &AttemptPlan,
    live: Option<Arc<Mutex<LiveView>>>,
) -> Result<Spawned, String> {
    if !plan.cwd.is_dir() {
        return Err(format!(
            "working directory {} does not exist or is not a directory",
            plan.cwd.display()
        ));
    }
    let pipes = Pipes::new().map_err(|e| format!("cannot make the child's pipes: {e}"))?;
    let reaper = reaper::get().map_err(|e| format!("cannot start the reaper: {e}"))?;
    let (handle, reports) = reaper
        .spawn(request(plan)?, pipes.child)
        .map_err(|e| format!("cannot start claude through the reaper: {e}"))?;
    tracing::debug!(reaper = handle.reaper_pid(), program = %plan.program.display(), cwd = %plan.cwd.display(), "asked the reaper to start claude");
    let (ev_tx, events) = mpsc::unbounded_channel::<Ev>();
    let last_activity = Arc::new(AtomicU64::new(0));
    write_prompt(pipes.stdin, plan.prompt.clone())?;
    tokio::spawn(forward_reports(reports, ev_tx.clone()));
    let stdout = pipe::Receiver::from_owned_fd(pipes.stdout).ok();
    let stderr = pipe::Receiver::from_owned_fd(pipes.stderr).ok();
    let streams = Streams::start(stdout, stderr, plan, ev_tx, last_activity.clone(), live);
    Ok(Spawned {
        handle,
        events,
        streams,
        last_activity,
    })
}

/// The reaper's request: the plan's command, environment and working directory, the
/// attempt cookie and the memory limit.
fn request(plan: &AttemptPlan) -> Result<SpawnRequest, String> {
    let text = |p: &std::path::Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{} is not valid UTF-8", p.display()))
    };
    // The cookie the reaper tells an attempt's orphans by is the one in its
    // environment: that is what they inherit.
    let uid = plan
        .env
        .iter()
        .find(|(k, _)| k == "BORG_ATTEMPT_UID")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Ok(SpawnRequest {
        id: 0,
        program: text(&plan.program)?,
        args: plan.args.clone(),
        env: plan.env.clone(),
        cwd: text(&plan.cwd)?,
        uid,
        max_rss_kb: plan.watchdogs.max_memory_kb,
    })
}

/// The prompt goes on stdin, then stdin is closed (claude -p reads to EOF).
fn write_prompt(stdin: OwnedFd, prompt: String) -> Result<(), String> {
    let mut tx = pipe::Sender::from_owned_fd(stdin).map_err(|e| format!("stdin pipe: {e}"))?;
    tokio::spawn(async move {
        let _ = tx.write_all(prompt.as_bytes()).await;
        let _ = tx.shutdown().await;
    });
    Ok(())
}

/// Turns the reaper's reports into events; when the channel closes without `done`,
/// the reaper was lost. Then reports the channel closed.
async fn forward_reports(mut rx: mpsc::UnboundedReceiver<Report>, tx: mpsc::UnboundedSender<Ev>) {
    let mut done = false;
    while let Some(rep) = rx.recv().await {
        let ev = match rep {
            Report::Started {
                pid, start_time, ..
            } => Ev::Started(pid, start_time),
            Report::SpawnError { message, .. } => Ev::SpawnError(message),
            Report::Exited { code, .. } => Ev::Exited(code),
            Report::Signaled { signal, .. } => Ev::Signaled(signal),
            Report::Killed { count, .. } => Ev::Killed(count),
            Report::Memory { rss_kb, .. } => Ev::Memory(rss_kb),
            Report::Done { peak_rss_kb, .. } => {
                done = true;
                Ev::Done(peak_rss_kb)
            }
        };
        let _ = tx.send(ev);
    }
    if !done {
        let _ = tx.send(Ev::ReaperLost);
    }
    let _ = tx.send(Ev::StatusClosed);
}
