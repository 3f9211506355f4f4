//! The runner: runs one attempt of a task as a claude child under the shim, streams
//! its output to the logs and the transcript parser, enforces the watchdogs, and stops
//! it through the stop ladder (SIGINT, SIGTERM, then SIGKILL of the whole tree).
//!
//! Data path: claude writes straight into borg's pipes (the shim only forks it). One
//! reader task per pipe moves chunks into a small bounded queue, so a slow disk or
//! parser delays the reader only once that queue is full, and memory stays bounded
//! whatever the child writes; a blocking consumer appends the raw bytes to the log
//! and splits lines for the parser. Completion never waits on EOF alone: after claude
//! exits, the pipes get `leak_timeout` to close, then the shim kills what is left.

use crate::outcome::transcript::TranscriptSummary;
use crate::outcome::{ExitInfo, Watchdog};
use crate::supervise::shim;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long to wait for the tree and pipes after the final kill before giving up on them.
const AFTER_KILL: Duration = Duration::from_secs(3);

mod stream;
use stream::spawn_stream;

/// The watchdog and ladder durations of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Watchdogs {
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Stdout-silence limit.
    pub idle_timeout: Duration,
    /// Limit of life after the `result` line.
    pub result_grace: Duration,
    /// Ladder: wait after SIGINT.
    pub interrupt_grace: Duration,
    /// Ladder: wait after SIGTERM.
    pub term_grace: Duration,
    /// After claude exits: wait for pipes and descendants.
    pub leak_timeout: Duration,
}

/// Everything needed to start one attempt.
#[derive(Debug, Clone)]
pub struct AttemptPlan {
    /// The claude binary.
    pub program: PathBuf,
    /// Its arguments (the prompt is never among them).
    pub args: Vec<String>,
    /// Its complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory (the instance's project-files/).
    pub cwd: PathBuf,
    /// The prompt, written to stdin, then stdin is closed.
    pub prompt: String,
    /// Raw stdout log.
    pub stdout_log: PathBuf,
    /// Raw stderr log.
    pub stderr_log: PathBuf,
    /// Watchdogs and ladder.
    pub watchdogs: Watchdogs,
    /// Longest stdout line that is parsed.
    pub max_line: usize,
}

/// Pids of a started attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildIds {
    /// The shim (borg's direct child).
    pub shim_pid: i32,
    /// claude.
    pub pid: i32,
    /// claude's process group (claude leads it).
    pub pgid: i32,
    /// claude's start time (clock ticks since boot).
    pub start_time: u64,
}

/// A live view of a running attempt, for status displays.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    /// Session id once known.
    pub session_id: Option<String>,
    /// The tool call in flight.
    pub current_tool: Option<String>,
    /// Assistant turns so far (or the result's num_turns).
    pub turns: u64,
    /// Cost so far (known at the result).
    pub cost_usd: f64,
    /// Stdout lines so far.
    pub lines: u64,
}

/// How borg asks a running attempt to stop.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Cancelled: stop through the ladder (the attempt ends `interrupted`).
    pub stop: CancellationToken,
    /// Cancelled: kill the whole tree at once.
    pub kill: CancellationToken,
}

/// What happened during an attempt.
#[derive(Debug, Clone, Default)]
pub struct AttemptOutput {
    /// Pids, once started.
    pub ids: Option<ChildIds>,
    /// How claude ended (None if it never started or its end was not seen).
    pub exit: Option<ExitInfo>,
    /// The parsed transcript.
    pub summary: TranscriptSummary,
    /// The end of stderr (lossy UTF-8).
    pub stderr_tail: String,
    /// The watchdog that fired, if any.
    pub watchdog: Option<Watchdog>,
    /// borg stopped it (Ctrl-C, shutdown, lost claim).
    pub interrupted: bool,
    /// Something of the tree had to be killed after claude exited (or at the end).
    pub leaked: bool,
    /// How many processes the final kill hit.
    pub killed_processes: usize,
    /// The spawn failed with this error.
    pub spawn_error: Option<String>,
    /// Wall time from spawn to the end.
    pub duration: Duration,
    /// Bytes written by claude on stdout and stderr.
    pub stdout_bytes: u64,
    /// Bytes on stderr.
    pub stderr_bytes: u64,
    /// From the first stop action to the whole tree gone.
    pub stop_latency: Option<Duration>,
}

/// Messages to the attempt's control loop.
enum Ev {
    Started(i32, u64),
    Exited(i32),
    Signaled(i32),
    Killed(usize),
    SpawnError(String),
    StatusClosed,
    StdoutEof,
    StderrEof,
    ResultSeen,
}

/// Rungs of the stop ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rung {
    None,
    Interrupt,
    Terminate,
    Killed,
}

/// Runs one attempt to its end. `on_start` is called once claude's pids are known and
/// before anything else happens; when it fails (e.g. the claim was lost) the attempt
/// is killed at once. `live` receives a small view as lines arrive.
pub async fn run_attempt(
    plan: AttemptPlan,
    ctl: Control,
    on_start: impl FnOnce(&ChildIds) -> Result<(), String> + Send + 'static,
    live: Option<Arc<Mutex<LiveView>>>,
) -> AttemptOutput {
    let started = Instant::now();
    let mut out = AttemptOutput::default();
    if !plan.cwd.is_dir() {
        out.spawn_error = Some(format!(
            "working directory {} does not exist or is not a directory",
            plan.cwd.display()
        ));
        return out;
    }
    let (mut child, status_rx) = match spawn_shim(&plan).await {
        Ok(x) => x,
        Err(e) => {
            out.spawn_error = Some(e);
            return out;
        }
    };
    let shim_pid = child.id().map(|p| p as i32).unwrap_or(0);
    tracing::debug!(shim_pid, program = %plan.program.display(), cwd = %plan.cwd.display(), "spawned the shim");
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Ev>();
    let last_activity = Arc::new(AtomicU64::new(0));

    // The prompt goes on stdin, then stdin is closed (claude -p reads to EOF).
    if let Some(mut stdin) = child.stdin.take() {
        let prompt = plan.prompt.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    tokio::spawn(read_status(status_rx, ev_tx.clone()));
    let stdout_job = child.stdout.take().map(|s| {
        spawn_stream(
            s,
            plan.stdout_log.clone(),
            ev_tx.clone(),
            Ev::StdoutEof,
            last_activity.clone(),
            Some((plan.max_line, live)),
        )
    });
    let stderr_job = child.stderr.take().map(|s| {
        spawn_stream(
            s,
            plan.stderr_log.clone(),
            ev_tx.clone(),
            Ev::StderrEof,
            Arc::new(AtomicU64::new(0)),
            None,
        )
    });
    drop(ev_tx);

    let w = plan.watchdogs;
    let mut on_start = Some(on_start);
    let (mut stdout_eof, mut stderr_eof, mut shim_done) =
        (stdout_job.is_none(), stderr_job.is_none(), false);
    let mut claude_end: Option<Instant> = None;
    let mut result_at: Option<Instant> = None;
    let mut rung = Rung::None;
    let mut rung_at = started;
    let mut stop_began: Option<Instant> = None;
    let mut kill_sent_at: Option<Instant> = None;
    let mut status_closed = false;
    let mut shim_status: Option<std::process::ExitStatus> = None;
    let signal_shim = |sig: Signal, done: bool| {
        // Only while the shim is unreaped: its pid cannot have been reused.
        if !done {
            crate::supervise::procs::signal(shim_pid, sig);
        }
    };

    loop {
        if shim_done && stdout_eof && stderr_eof && status_closed {
            break;
        }
        let now = Instant::now();
        // The next moment something must be checked.
        let next = if let Some(k) = kill_sent_at {
            k + AFTER_KILL
        } else if let Some(end) = claude_end {
            end + w.leak_timeout
        } else if rung == Rung::Interrupt {
            rung_at + w.interrupt_grace
        } else if rung == Rung::Terminate {
            rung_at + w.term_grace
        } else {
            let idle_at = started
                + Duration::from_millis(last_activity.load(Ordering::Relaxed))
                + w.idle_timeout;
            let mut t = (started + w.timeout).min(idle_at);
            if let Some(r) = result_at {
                t = t.min(r + w.result_grace);
            }
            t
        };
        tokio::select! {
            ev = ev_rx.recv() => match ev {
                Some(Ev::Started(pid, start_time)) => {
                    tracing::debug!(pid, start_time, "claude started");
                    let ids = ChildIds { shim_pid, pid, pgid: pid, start_time };
                    out.ids = Some(ids);
                    if let Some(f) = on_start.take() {
                        // A durable store write: off the async workers, which keep
                        // draining the pipes and running the watchdogs meanwhile.
                        let recorded = tokio::task::spawn_blocking(move || f(&ids))
                            .await
                            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                        if let Err(e) = recorded {
                            tracing::warn!("stopping attempt at once: {e}");
                            out.interrupted = true;
                            stop_began.get_or_insert(Instant::now());
                            signal_shim(Signal::SIGUSR1, shim_done);
                            kill_sent_at = Some(Instant::now());
                        }
                    }
                }
                Some(Ev::Exited(code)) => {
                    out.exit = Some(ExitInfo { code: Some(code), signal: None });
                    claude_end.get_or_insert(Instant::now());
                }
                Some(Ev::Signaled(sig)) => {
                    out.exit = Some(ExitInfo { code: None, signal: Some(sig) });
                    claude_end.get_or_insert(Instant::now());
                }
                Some(Ev::Killed(n)) => out.killed_processes += n,
                Some(Ev::SpawnError(e)) => {
                    out.spawn_error = Some(format!("cannot start {}: {e}", plan.program.display()));
                    claude_end.get_or_insert(Instant::now());
                }
                Some(Ev::StatusClosed) => status_closed = true,
                Some(Ev::StdoutEof) => stdout_eof = true,
                Some(Ev::StderrEof) => stderr_eof = true,
                Some(Ev::ResultSeen) => { result_at.get_or_insert(Instant::now()); }
                None => { stdout_eof = true; stderr_eof = true; status_closed = true; }
            },
            st = child.wait(), if !shim_done => {
                shim_done = true;
                shim_status = st.ok();
                claude_end.get_or_insert(Instant::now());
            },
            _ = ctl.stop.cancelled(), if rung == Rung::None && claude_end.is_none() && kill_sent_at.is_none() => {
                out.interrupted = true;
                stop_began.get_or_insert(Instant::now());
                rung = Rung::Interrupt;
                rung_at = Instant::now();
                signal_shim(Signal::SIGINT, shim_done);
            },
            _ = ctl.kill.cancelled(), if kill_sent_at.is_none() => {
                out.interrupted = true;
                stop_began.get_or_insert(Instant::now());
                rung = Rung::Killed;
                signal_shim(Signal::SIGUSR1, shim_done);
                kill_sent_at = Some(Instant::now());
            },
            _ = tokio::time::sleep_until(next.max(now).into()) => {
                let now = Instant::now();
                if kill_sent_at.is_some() {
                    // The tree is dead; a pipe still open belongs to nobody we can reach.
                    break;
                } else if claude_end.is_some() {
                    // claude is gone but its pipes or descendants are not: leaked.
                    out.leaked = true;
                    signal_shim(Signal::SIGUSR1, shim_done);
                    kill_sent_at = Some(now);
                } else if rung == Rung::Interrupt {
                    rung = Rung::Terminate;
                    rung_at = now;
                    signal_shim(Signal::SIGTERM, shim_done);
                } else if rung == Rung::Terminate {
                    rung = Rung::Killed;
                    signal_shim(Signal::SIGUSR1, shim_done);
                    kill_sent_at = Some(now);
                } else if rung == Rung::None {
                    let idle_for = now.duration_since(started + Duration::from_millis(last_activity.load(Ordering::Relaxed)));
                    let fired = if now >= started + w.timeout {
                        Some(Watchdog::Timeout)
                    } else if idle_for >= w.idle_timeout {
                        Some(Watchdog::Idle)
                    } else if result_at.is_some_and(|r| now >= r + w.result_grace) {
                        Some(Watchdog::ResultGrace)
                    } else {
                        None
                    };
                    if let Some(wd) = fired {
                        tracing::info!("watchdog {} fired after {:?}", wd.as_str(), now - started);
                        out.watchdog = Some(wd);
                        stop_began.get_or_insert(now);
                        rung = Rung::Interrupt;
                        rung_at = now;
                        signal_shim(Signal::SIGINT, shim_done);
                    }
                }
            },
        }
    }
    if !shim_done {
        // Gave up waiting on pipes held by processes outside our reach; reap the shim.
        signal_shim(Signal::SIGUSR1, false);
        let _ = tokio::time::timeout(AFTER_KILL, child.wait()).await;
    }
    if out.exit.is_none() && out.spawn_error.is_none() && out.ids.is_none() {
        // The shim never reported claude's start: it failed (or was killed) first.
        use std::os::unix::process::ExitStatusExt;
        let how = shim_status.map(|st| match (st.code(), st.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(sig)) => format!("signal {sig}"),
            _ => "unknown status".into(),
        });
        out.spawn_error = Some(format!(
            "the shim ended before starting claude ({})",
            how.unwrap_or_else(|| "not reaped".into())
        ));
    }
    if out.killed_processes > 0 && rung == Rung::None && out.watchdog.is_none() && !out.interrupted
    {
        out.leaked = true;
    }
    if let Some(s) = stop_began {
        out.stop_latency = Some(s.elapsed());
    }
    if let Some(job) = stdout_job {
        if let Ok(Ok(r)) = tokio::time::timeout(AFTER_KILL, job).await {
            out.summary = r.summary.unwrap_or_default();
            out.stdout_bytes = r.bytes;
        }
    }
    if let Some(job) = stderr_job {
        if let Ok(Ok(r)) = tokio::time::timeout(AFTER_KILL, job).await {
            out.stderr_tail = String::from_utf8_lossy(&r.tail).into_owned();
            out.stderr_bytes = r.bytes;
        }
    }
    out.duration = started.elapsed();
    out
}

/// Starts `borg __shim <borg pid>:<status fd> <claude> <args>` with claude's
/// environment, its cwd, piped stdio and the status pipe (moved to fd 3 by the shim),
/// in a process group of its own so that a Ctrl-C at the terminal reaches borg only.
async fn spawn_shim(
    plan: &AttemptPlan,
) -> Result<(tokio::process::Child, tokio::net::unix::pipe::Receiver), String> {
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
        let mut cmd = tokio::process::Command::new(exe);
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
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(rd)
        .map_err(|e| format!("status pipe: {e}"))?;
    Ok((child, rx))
}

async fn read_status(rx: tokio::net::unix::pipe::Receiver, tx: mpsc::UnboundedSender<Ev>) {
    let mut lines = tokio::io::BufReader::new(rx).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut it = line.splitn(3, ' ');
        let (kind, a, b) = (
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
        );
        let ev = match kind {
            "started" => Ev::Started(a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
            "exited" => Ev::Exited(a.parse().unwrap_or(-1)),
            "signaled" => Ev::Signaled(a.parse().unwrap_or(0)),
            "killed" => Ev::Killed(a.parse().unwrap_or(0)),
            "spawn_error" => Ev::SpawnError(b.to_string()),
            _ => continue,
        };
        let _ = tx.send(ev);
    }
    let _ = tx.send(Ev::StatusClosed);
}
