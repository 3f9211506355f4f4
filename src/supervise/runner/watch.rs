//! Watching a running attempt: one state machine that takes the reaper's reports and
//! the streams' events, borg's stop and kill requests and its own deadlines, enforces
//! the watchdogs and climbs the stop ladder, until the reaper says the tree is gone
//! and every pipe is closed (or the tree is dead and waiting longer is pointless).

use super::spawn::Spawned;
use super::stop::Ladder;
use super::{AttemptOutput, AttemptPlan, ChildIds, Control, Ev, Watchdogs, AFTER_KILL};
use crate::outcome::{ExitInfo, Watchdog};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// The caller's hook run once claude's pids are known (a store write); an error stops
/// the attempt at once.
pub(super) type OnStart = Box<dyn FnOnce(&ChildIds) -> Result<(), String> + Send>;

/// The state of one attempt while it runs.
pub(super) struct Watch {
    w: Watchdogs,
    /// When the attempt began: the wall-clock and idle watchdogs count from here.
    started: Instant,
    /// claude, for the spawn error message.
    program: PathBuf,
    /// Milliseconds from the stdout stream's start to its last chunk.
    last_activity: Arc<AtomicU64>,
    on_start: Option<OnStart>,
    ladder: Ladder,
    /// claude's end was seen (its exit, its spawn error, the tree's end, the reaper's).
    claude_end: Option<Instant>,
    /// The `result` line was parsed: the result_grace watchdog runs from here.
    result_at: Option<Instant>,
    stdout_eof: bool,
    stderr_eof: bool,
    status_closed: bool,
    out: AttemptOutput,
}

impl Watch {
    /// The watch of a just spawned attempt.
    pub(super) fn new(
        plan: &AttemptPlan,
        started: Instant,
        spawned: &Spawned,
        on_start: OnStart,
    ) -> Self {
        // A pipe that was never there is as good as closed.
        let (stdout_open, stderr_open) = spawned.streams.open();
        Watch {
            w: plan.watchdogs,
            started,
            program: plan.program.clone(),
            last_activity: spawned.last_activity.clone(),
            on_start: Some(on_start),
            ladder: Ladder::new(spawned.handle.clone(), cookie(plan)),
            claude_end: None,
            result_at: None,
            stdout_eof: !stdout_open,
            stderr_eof: !stderr_open,
            status_closed: false,
            out: AttemptOutput::default(),
        }
    }

    /// The event loop: runs until the tree is gone and every pipe closed, or until
    /// the wait after the final kill is over.
    pub(super) async fn run(&mut self, events: &mut UnboundedReceiver<Ev>, ctl: &Control) {
        while !self.is_over() {
            let now = Instant::now();
            let next = self.next_deadline();
            tokio::select! {
                ev = events.recv() => self.on_event(ev).await,
                _ = ctl.stop.cancelled(), if self.may_interrupt() => self.on_stop_requested(),
                _ = ctl.kill.cancelled(), if !self.ladder.kill_sent() => self.on_kill_requested(),
                _ = tokio::time::sleep_until(next.max(now).into()) => {
                    if self.on_deadline().is_break() {
                        break;
                    }
                },
            }
        }
    }

    /// When the watch gave up before the reaper said the tree was gone: asks for the
    /// kill again and waits at most [`AFTER_KILL`] for the tree's end.
    pub(super) async fn settle(&mut self, events: &mut UnboundedReceiver<Ev>) {
        if self.ladder.done() {
            return;
        }
        self.ladder.kill_again();
        let until = Instant::now() + AFTER_KILL;
        while !self.ladder.done() {
            match tokio::time::timeout_at(until.into(), events.recv()).await {
                Ok(Some(ev)) => self.on_event(Some(ev)).await,
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// What happened, with the conclusions only the end can draw: a reaper that never
    /// started claude, a kill nobody asked for, the stop latency.
    pub(super) fn into_output(mut self) -> AttemptOutput {
        let out = &mut self.out;
        if out.exit.is_none() && out.spawn_error.is_none() && out.ids.is_none() {
            // The reaper never reported claude's start: it died (or was killed) first.
            out.spawn_error = Some("the reaper ended before starting claude".into());
        }
        // The reaper killed processes though borg never stopped the attempt: something
        // of the tree outlived claude.
        if out.killed_processes > 0
            && self.ladder.on_ground()
            && out.watchdog.is_none()
            && !out.interrupted
        {
            out.leaked = true;
        }
        out.stop_latency = self.ladder.stop_latency();
        self.out
    }

    fn is_over(&self) -> bool {
        self.ladder.done() && self.stdout_eof && self.stderr_eof && self.status_closed
    }

    /// The next moment something must be checked: the end of the wait after the kill,
    /// then of the pipes' grace after claude's end, then of the current rung's grace,
    /// else the first watchdog due.
    fn next_deadline(&self) -> Instant {
        self.ladder
            .kill_wait_end()
            .or_else(|| self.claude_end.map(|end| end + self.w.leak_timeout))
            .or_else(|| self.ladder.grace_end(&self.w))
            .unwrap_or_else(|| self.watchdog_due())
    }

    /// The first moment a watchdog may fire.
    fn watchdog_due(&self) -> Instant {
        let idle_at = self.last_output() + self.w.idle_timeout;
        let mut t = (self.started + self.w.timeout).min(idle_at);
        if let Some(r) = self.result_at {
            t = t.min(r + self.w.result_grace);
        }
        t
    }

    /// A message from the status pipe or a stream; None once every sender is gone.
    async fn on_event(&mut self, ev: Option<Ev>) {
        match ev {
            Some(Ev::Started(pid, start_time)) => self.on_claude_started(pid, start_time).await,
            Some(Ev::Exited(code)) => self.on_claude_end(ExitInfo {
                code: Some(code),
                signal: None,
            }),
            Some(Ev::Signaled(sig)) => self.on_claude_end(ExitInfo {
                code: None,
                signal: Some(sig),
            }),
            Some(Ev::Killed(n)) => self.out.killed_processes += n,
            Some(Ev::SpawnError(e)) => {
                let program = self.program.display();
                self.out.spawn_error = Some(format!("cannot start {program}: {e}"));
                self.claude_end.get_or_insert(Instant::now());
            }
            Some(Ev::Memory(rss_kb)) => self.on_memory(rss_kb),
            Some(Ev::Done(peak_kb)) => {
                self.out.peak_rss_kb = self.out.peak_rss_kb.max(peak_kb);
                self.ladder.set_done();
                self.claude_end.get_or_insert(Instant::now());
            }
            Some(Ev::ReaperLost) => {
                self.ladder.set_lost();
                self.claude_end.get_or_insert(Instant::now());
            }
            Some(Ev::StatusClosed) => self.status_closed = true,
            Some(Ev::StdoutEof) => self.stdout_eof = true,
            Some(Ev::StderrEof) => self.stderr_eof = true,
            Some(Ev::ResultSeen) => {
                self.result_at.get_or_insert(Instant::now());
            }
            None => {
                self.stdout_eof = true;
                self.stderr_eof = true;
                self.status_closed = true;
            }
        }
    }

    /// claude runs: its pids are recorded through `on_start`, whose failure (e.g. a
    /// lost claim) kills the attempt at once.
    async fn on_claude_started(&mut self, pid: i32, start_time: u64) {
        tracing::debug!(pid, start_time, "claude started");
        self.ladder.set_started(pid, start_time);
        let ids = ChildIds {
            reaper_pid: self.ladder.reaper_pid(),
            pid,
            pgid: pid,
            start_time,
        };
        self.out.ids = Some(ids);
        let Some(record) = self.on_start.take() else {
            return;
        };
        // A durable store write: off the async workers, which keep draining the pipes
        // and running the watchdogs meanwhile.
        let recorded = tokio::task::spawn_blocking(move || record(&ids))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if let Err(e) = recorded {
            tracing::warn!("stopping attempt at once: {e}");
            self.out.interrupted = true;
            self.ladder.kill(Instant::now());
        }
    }

    fn on_claude_end(&mut self, exit: ExitInfo) {
        self.out.exit = Some(exit);
        self.claude_end.get_or_insert(Instant::now());
    }

    /// The tree passed the memory limit: the memory watchdog fires, unless the
    /// attempt is already being stopped or is over.
    fn on_memory(&mut self, rss_kb: u64) {
        self.out.peak_rss_kb = self.out.peak_rss_kb.max(rss_kb);
        if self.ladder.on_ground() && self.claude_end.is_none() {
            tracing::info!(
                "watchdog memory fired: the tree holds {} MiB",
                rss_kb / 1024
            );
            self.out.watchdog = Some(Watchdog::Memory);
            self.ladder.interrupt(Instant::now());
        }
    }

    /// A stop is only started while claude runs and nothing else stops it.
    fn may_interrupt(&self) -> bool {
        self.ladder.on_ground() && self.claude_end.is_none()
    }

    fn on_stop_requested(&mut self) {
        self.out.interrupted = true;
        self.ladder.interrupt(Instant::now());
    }

    fn on_kill_requested(&mut self) {
        self.out.interrupted = true;
        self.ladder.kill(Instant::now());
    }

    /// The moment from [`Self::next_deadline`] came: give up after the kill, kill what
    /// claude left behind, climb the ladder, or fire a watchdog.
    fn on_deadline(&mut self) -> ControlFlow<()> {
        let now = Instant::now();
        if self.ladder.kill_sent() {
            // The tree is dead; a pipe still open belongs to nobody we can reach.
            return ControlFlow::Break(());
        }
        if self.claude_end.is_some() {
            // claude is gone but its pipes or descendants are not: leaked.
            self.out.leaked = true;
            self.ladder.kill_leftovers(now);
        } else if self.ladder.climbing() {
            self.ladder.escalate(now);
        } else if let Some(wd) = self.fired_watchdog(now) {
            tracing::info!(
                "watchdog {} fired after {:?}",
                wd.as_str(),
                now - self.started
            );
            self.out.watchdog = Some(wd);
            self.ladder.interrupt(now);
        }
        ControlFlow::Continue(())
    }

    fn fired_watchdog(&self, now: Instant) -> Option<Watchdog> {
        let idle_for = now.duration_since(self.last_output());
        if now >= self.started + self.w.timeout {
            Some(Watchdog::Timeout)
        } else if idle_for >= self.w.idle_timeout {
            Some(Watchdog::Idle)
        } else if self
            .result_at
            .is_some_and(|r| now >= r + self.w.result_grace)
        {
            Some(Watchdog::ResultGrace)
        } else {
            None
        }
    }

    /// When stdout last carried something (the start, before it ever did).
    fn last_output(&self) -> Instant {
        self.started + Duration::from_millis(self.last_activity.load(Ordering::Relaxed))
    }
}

/// The attempt cookie of a plan (the reaper finds the attempt's orphans by it).
fn cookie(plan: &AttemptPlan) -> String {
    plan.env
        .iter()
        .find(|(k, _)| k == "BORG_ATTEMPT_UID")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}
