//! The runner: runs one attempt of a task as a claude child under the reaper, streams
//! its output to the logs and the transcript parser, enforces the watchdogs (time,
//! silence, life after the result, memory), and stops it through the stop ladder
//! (SIGINT, SIGTERM, then SIGKILL of the whole tree).
//!
//! Data path: claude writes straight into borg's pipes (the reaper only starts it). One
//! reader task per pipe moves chunks into a small bounded queue, so a slow disk or
//! parser delays the reader only once that queue is full, and memory stays bounded
//! whatever the child writes; a blocking consumer appends the raw bytes to the log
//! and splits lines for the parser. Completion never waits on EOF alone: after claude
//! exits, the pipes get `leak_timeout` to close, then the reaper kills what is left.
//!
//! [`run_attempt`] is a pipeline of stages, each in its own file: `spawn` makes the
//! pipes and has the reaper start claude, `stream` is the data path of one pipe,
//! `watch` is the event loop (the reaper's reports, borg's requests, the watchdogs)
//! and `stop` the
//! ladder it climbs; the finish (the watch's conclusions, the streams' results) closes
//! `run_attempt` itself.

use crate::outcome::transcript::TranscriptSummary;
use crate::outcome::{ExitInfo, Watchdog};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod spawn;
mod stop;
mod stream;
mod watch;

/// How long to wait for the tree and pipes after the final kill before giving up on them.
const AFTER_KILL: Duration = Duration::from_secs(3);

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
    /// Stop the attempt once its whole tree's resident memory passes this (KiB).
    pub max_memory_kb: Option<u64>,
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
    /// Most bytes kept in each log (None: all). What a verification gate prints is
    /// capped so that a runaway gate cannot fill the disk; claude's logs are not.
    pub log_cap: Option<u64>,
}

/// Pids of a started attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildIds {
    /// The reaper (borg's direct child, claude's parent).
    pub reaper_pid: i32,
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
    /// The largest resident memory of the whole tree, sampled by the reaper (KiB).
    pub peak_rss_kb: u64,
}

/// Messages to the watch: the reaper's reports and the streams' events.
enum Ev {
    Started(i32, u64),
    Exited(i32),
    Signaled(i32),
    Killed(usize),
    SpawnError(String),
    /// The tree passed its memory limit (KiB).
    Memory(u64),
    /// claude and its whole tree are gone (the tree's peak memory, KiB).
    Done(u64),
    /// The reaper died: nothing more will come from it.
    ReaperLost,
    StatusClosed,
    StdoutEof,
    StderrEof,
    ResultSeen,
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
    let mut spawned = match spawn::start(&plan, live).await {
        Ok(s) => s,
        Err(e) => {
            return AttemptOutput {
                spawn_error: Some(e),
                ..AttemptOutput::default()
            }
        }
    };
    let mut watch = watch::Watch::new(&plan, started, &spawned, Box::new(on_start));
    watch.run(&mut spawned.events, &ctl).await;
    // The watch may give up on pipes held by processes outside our reach before the
    // reaper said the tree was gone: kill it again and wait for that.
    watch.settle(&mut spawned.events).await;
    let mut out = watch.into_output();
    spawned.streams.collect(&mut out).await;
    out.duration = started.elapsed();
    out
}
