//! Starting an attempt: the shim (which starts claude), the prompt written to claude's
//! stdin, the status pipe read into events, and the stream jobs of stdout and stderr.

use super::stream::Streams;
use super::{AttemptPlan, Ev, LiveView};
use crate::supervise::shim;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A started attempt, as the watch needs it.
pub(super) struct Spawned {
    /// The shim.
    pub(super) child: Child,
    /// The shim's pid (0 if it had none).
    pub(super) shim_pid: i32,
    /// The status pipe's reports and the streams' events.
    pub(super) events: mpsc::UnboundedReceiver<Ev>,
    /// The stream jobs of stdout and stderr.
    pub(super) streams: Streams,
    /// Milliseconds from the stdout stream's start to its last chunk (idle watchdog).
    pub(super) last_activity: Arc<AtomicU64>,
}

/// Starts the shim with the plan's command line and wires its pipes.
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
    let (mut child, status_rx) = spawn_shim(plan).await?;
    let shim_pid = child.id().map(|p| p as i32).unwrap_or(0);
    tracing::debug!(shim_pid, program = %plan.program.display(), cwd = %plan.cwd.display(), "spawned the shim");
    let (ev_tx, events) = mpsc::unbounded_channel::<Ev>();
    let last_activity = Arc::new(AtomicU64::new(0));
    write_prompt(&mut child, plan.prompt.clone());
    tokio::spawn(read_status(status_rx, ev_tx.clone()));
    let streams = Streams::start(&mut child, plan, ev_tx, last_activity.clone(), live);
    Ok(Spawned {
        child,
        shim_pid,
        events,
        streams,
        last_activity,
    })
}

/// The prompt goes on stdin, then stdin is closed (claude -p reads to EOF).
fn write_prompt(child: &mut Child, prompt: String) {
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
}

/// Starts `borg __shim <borg pid>:<status fd> <claude> <args>` with claude's
/// environment, its cwd, piped stdio and the status pipe (moved to fd 3 by the shim),
/// in a process group of its own so that a Ctrl-C at the terminal reaches borg only.
async fn spawn_shim(plan: &AttemptPlan) -> Result<(Child, pipe::Receiver), String> {
    // /proc/self/exe is the running binary even after its file was replaced (an upgrade
    // during a long run), when current_exe() names a path ending in " (deleted)".
    let self_exe = std::path::Path::new("/proc/self/exe");
    let exe = if self_exe.exists() {
        self_exe.to_path_buf()
    } else {
        std::env::current_exe().map_err(|e| format!("cannot find borg's own executable: {e}"))?
    };
    let (program, args, env, cwd) = (
        plan.program.clone(),
        plan.args.clone(),
        plan.env.clone(),
        plan.cwd.clone(),
    );
    let build = move |status_fd: i32| {
        let mut cmd = Command::new(exe);
        cmd.arg(shim::SUBCOMMAND)
            .arg(format!("{}:{status_fd}", std::process::id()))
            .arg(program)
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        cmd
    };
    let (child, rd) = crate::supervise::spawner::spawn_with_pipe(build)
        .await
        .map_err(|e| format!("cannot start the shim: {e}"))?;
    let rx = pipe::Receiver::from_owned_fd(rd).map_err(|e| format!("status pipe: {e}"))?;
    Ok((child, rx))
}

/// Turns the shim's status lines into events, then reports the pipe closed.
async fn read_status(rx: pipe::Receiver, tx: mpsc::UnboundedSender<Ev>) {
    let mut lines = tokio::io::BufReader::new(rx).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(ev) = status_event(&line) {
            let _ = tx.send(ev);
        }
    }
    let _ = tx.send(Ev::StatusClosed);
}

/// One status line (see the shim's module doc); None for a line of no known kind.
fn status_event(line: &str) -> Option<Ev> {
    let mut it = line.splitn(3, ' ');
    let (kind, a, b) = (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    );
    Some(match kind {
        "started" => Ev::Started(a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
        "exited" => Ev::Exited(a.parse().unwrap_or(-1)),
        "signaled" => Ev::Signaled(a.parse().unwrap_or(0)),
        "killed" => Ev::Killed(a.parse().unwrap_or(0)),
        "spawn_error" => Ev::SpawnError(b.to_string()),
        _ => return None,
    })
}
