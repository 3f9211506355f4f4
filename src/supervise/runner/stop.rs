//! The stop ladder of one attempt: SIGINT, then SIGTERM, then the kill of the whole
//! tree. Every rung is a signal to the shim, which forwards SIGINT and SIGTERM to
//! claude and answers SIGUSR1 by killing every descendant; the ladder knows which rung
//! it is on since when, and when borg first acted to stop the attempt.

use super::{Watchdogs, AFTER_KILL};
use crate::supervise::procs;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// A rung of the ladder, and since when it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rung {
    /// Not stopping.
    Ground,
    /// SIGINT sent: claude may finish its turn and exit.
    Interrupt(Instant),
    /// SIGTERM sent.
    Terminate(Instant),
    /// SIGUSR1 sent: the shim kills the whole tree.
    Killed(Instant),
}

/// Where one attempt stands on the stop ladder.
pub(super) struct Ladder {
    shim_pid: i32,
    /// The shim was reaped: its pid may name another process now, so it is never
    /// signalled again.
    shim_reaped: bool,
    rung: Rung,
    /// The first stop action (a rung, or an immediate kill), from which stop latency
    /// counts; killing what claude left behind after it exited is no stop.
    stop_began: Option<Instant>,
}

impl Ladder {
    /// A ladder for the shim `shim_pid`, on the ground.
    pub(super) fn new(shim_pid: i32) -> Self {
        Ladder {
            shim_pid,
            shim_reaped: false,
            rung: Rung::Ground,
            stop_began: None,
        }
    }

    /// The shim's pid (0 if it had none).
    pub(super) fn shim_pid(&self) -> i32 {
        self.shim_pid
    }

    /// Records that the shim was reaped.
    pub(super) fn set_shim_reaped(&mut self) {
        self.shim_reaped = true;
    }

    /// The shim was reaped.
    pub(super) fn shim_reaped(&self) -> bool {
        self.shim_reaped
    }

    /// No rung climbed and nothing killed.
    pub(super) fn on_ground(&self) -> bool {
        self.rung == Rung::Ground
    }

    /// On SIGINT or SIGTERM, waiting for its grace to run out.
    pub(super) fn climbing(&self) -> bool {
        matches!(self.rung, Rung::Interrupt(_) | Rung::Terminate(_))
    }

    /// The kill was sent.
    pub(super) fn kill_sent(&self) -> bool {
        matches!(self.rung, Rung::Killed(_))
    }

    /// When the wait after the kill is over: the tree and its pipes had their time to
    /// go away. None before the kill.
    pub(super) fn kill_wait_end(&self) -> Option<Instant> {
        match self.rung {
            Rung::Killed(at) => Some(at + AFTER_KILL),
            _ => None,
        }
    }

    /// When the grace of SIGINT or SIGTERM runs out, while on one of them.
    pub(super) fn grace_end(&self, w: &Watchdogs) -> Option<Instant> {
        match self.rung {
            Rung::Interrupt(at) => Some(at + w.interrupt_grace),
            Rung::Terminate(at) => Some(at + w.term_grace),
            Rung::Ground | Rung::Killed(_) => None,
        }
    }

    /// A stop begins with the first rung: SIGINT to claude.
    pub(super) fn interrupt(&mut self, now: Instant) {
        self.stop_began.get_or_insert(now);
        self.rung = Rung::Interrupt(now);
        self.signal(Signal::SIGINT);
    }

    /// A stop that cannot wait: the whole tree is killed at once.
    pub(super) fn kill(&mut self, now: Instant) {
        self.stop_began.get_or_insert(now);
        self.send_kill(now);
    }

    /// claude is gone but its pipes or descendants are not: kill what is left, which
    /// is cleanup, not a stop.
    pub(super) fn kill_leftovers(&mut self, now: Instant) {
        self.send_kill(now);
    }

    /// The current rung's grace ran out: SIGINT is followed by SIGTERM, SIGTERM by
    /// the kill.
    pub(super) fn escalate(&mut self, now: Instant) {
        match self.rung {
            Rung::Interrupt(_) => {
                self.rung = Rung::Terminate(now);
                self.signal(Signal::SIGTERM);
            }
            Rung::Terminate(_) => self.send_kill(now),
            Rung::Ground | Rung::Killed(_) => {}
        }
    }

    /// From the first stop action to now, if there was one.
    pub(super) fn stop_latency(&self) -> Option<Duration> {
        self.stop_began.map(|s| s.elapsed())
    }

    /// Reaps a shim the watch gave up on (pipes held by processes outside our reach),
    /// killing its tree first; waits at most [`AFTER_KILL`].
    pub(super) async fn reap_shim(&self, child: &mut tokio::process::Child) {
        if !self.shim_reaped {
            self.signal(Signal::SIGUSR1);
            let _ = tokio::time::timeout(AFTER_KILL, child.wait()).await;
        }
    }

    fn send_kill(&mut self, now: Instant) {
        self.rung = Rung::Killed(now);
        self.signal(Signal::SIGUSR1);
    }

    fn signal(&self, sig: Signal) {
        // Only while the shim is unreaped: its pid cannot have been reused.
        if !self.shim_reaped {
            procs::signal(self.shim_pid, sig);
        }
    }
}
