//! The stop ladder of one attempt: SIGINT, then SIGTERM, then the kill of the whole
//! tree. Every rung is a request to the reaper, which forwards SIGINT and SIGTERM to
//! claude and kills every process of the tree on the last rung; the ladder knows which
//! rung it is on since when, and when borg first acted to stop the attempt.
//!
//! Should the reaper be gone, the ladder acts by itself on what it knows of claude
//! (its pid and start time, so a reused pid is never hit) and the attempt cookie.

use super::{Watchdogs, AFTER_KILL};
use crate::supervise::procs;
use crate::supervise::reaper::AttemptHandle;
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
    /// The kill asked: the reaper kills the whole tree.
    Killed(Instant),
}

/// What the ladder knows of claude, for acting without the reaper.
#[derive(Debug, Clone, Default)]
pub(super) struct Target {
    /// claude's pid (0 before it started).
    pub pid: i32,
    /// Its start time.
    pub start_time: u64,
    /// The attempt cookie.
    pub uid: String,
}

/// Where one attempt stands on the stop ladder.
pub(super) struct Ladder {
    handle: AttemptHandle,
    /// The reaper said the tree is gone: nothing is asked any more.
    done: bool,
    /// The reaper is gone: the ladder acts by itself.
    lost: bool,
    target: Target,
    rung: Rung,
    /// The first stop action (a rung, or an immediate kill), from which stop latency
    /// counts; killing what claude left behind after it exited is no stop.
    stop_began: Option<Instant>,
}

impl Ladder {
    /// A ladder for the attempt behind `handle`, on the ground.
    pub(super) fn new(handle: AttemptHandle, uid: String) -> Self {
        Ladder {
            handle,
            done: false,
            lost: false,
            target: Target {
                uid,
                ..Target::default()
            },
            rung: Rung::Ground,
            stop_began: None,
        }
    }

    /// The reaper's pid.
    pub(super) fn reaper_pid(&self) -> i32 {
        self.handle.reaper_pid()
    }

    /// claude started as `pid` at `start_time`.
    pub(super) fn set_started(&mut self, pid: i32, start_time: u64) {
        self.target.pid = pid;
        self.target.start_time = start_time;
    }

    /// Records that the tree is gone.
    pub(super) fn set_done(&mut self) {
        self.done = true;
    }

    /// Records that the reaper is gone.
    pub(super) fn set_lost(&mut self) {
        self.lost = true;
    }

    /// Nothing more will come from the reaper: the tree is gone, or the reaper is.
    pub(super) fn done(&self) -> bool {
        self.done || self.lost
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

    /// Asks for the kill again, without changing the rung (the watch gave up waiting
    /// for the tree; see [`super::watch::Watch::settle`]).
    pub(super) fn kill_again(&self) {
        self.kill_tree();
    }

    fn send_kill(&mut self, now: Instant) {
        self.rung = Rung::Killed(now);
        self.kill_tree();
    }

    fn kill_tree(&self) {
        if self.done {
            return;
        }
        if self.lost || !self.handle.kill() {
            // No reaper to ask: kill what can be proven to be the attempt's.
            let t = &self.target;
            let boot = procs::boot_id();
            procs::kill_leftovers(t.pid as i64, t.pid as i64, t.start_time, &boot, &t.uid);
        }
    }

    fn signal(&self, sig: Signal) {
        if self.done {
            return;
        }
        if self.lost || !self.handle.signal(sig) {
            let t = &self.target;
            if procs::same_process(t.pid as i64, t.start_time, &procs::boot_id()) {
                procs::signal(t.pid, sig);
            }
        }
    }
}

impl Drop for Ladder {
    /// An attempt dropped before its tree was seen gone (a panic in borg, or the
    /// attempt's future cancelled) must not leave its tree running unwatched.
    fn drop(&mut self) {
        if !self.done {
            self.kill_tree();
        }
    }
}
