//! Signal behaviour of the real CLI (docs §6): SIGTERM ends the process at once with
//! exit 143 and leaves tool processes alive; SIGINT is noticed by the run loop, which
//! either aborts the running Bash tool (error result, exit 1) or, while "waiting for
//! the API", exits 0 without a result. Handlers are installed without SA_RESTART so a
//! sleeping `nanosleep` wakes up with EINTR and the loop reacts immediately.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the SIGINT handler.
static SIGINT_SEEN: AtomicBool = AtomicBool::new(false);

/// SIGINT handler: only records it.
extern "C" fn on_int(_: libc::c_int) {
    SIGINT_SEEN.store(true, Ordering::SeqCst);
}

/// SIGTERM handler: exit 143 at once, like the CLI.
extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. Lines are written whole by one write(2)
    // each, so there is no user-space buffer to lose.
    unsafe { libc::_exit(143) }
}

/// Installs a disposition for one signal (no SA_RESTART).
fn set(sig: Signal, h: SigHandler) {
    let act = SigAction::new(h, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handlers only touch an atomic or call _exit.
    let _ = unsafe { sigaction(sig, &act) };
}

/// Installs the CLI-like handlers for SIGINT and SIGTERM.
pub fn install() {
    set(Signal::SIGINT, SigHandler::Handler(on_int));
    set(Signal::SIGTERM, SigHandler::Handler(on_term));
}

/// The `ignore-signals` step: SIGINT and SIGTERM do nothing from now on.
pub fn ignore() {
    set(Signal::SIGINT, SigHandler::SigIgn);
    set(Signal::SIGTERM, SigHandler::SigIgn);
}

/// Whether a SIGINT arrived (and was not ignored).
pub fn interrupted() -> bool {
    SIGINT_SEEN.load(Ordering::SeqCst)
}

/// Sleeps `ms` milliseconds, in slices so a SIGINT that lands between the check and the
/// sleep is still seen soon. Returns true when interrupted by SIGINT.
pub fn nap(ms: u64) -> bool {
    // A huge MS would overflow `Instant`: treat it as forever.
    let Some(deadline) =
        std::time::Instant::now().checked_add(std::time::Duration::from_millis(ms))
    else {
        while !nap(3_600_000) {}
        return true;
    };
    loop {
        if interrupted() {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        let left = (deadline - now).min(std::time::Duration::from_millis(100));
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: plain nanosleep; EINTR just returns early and we loop.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
}

/// Sleeps forever (until SIGINT when not ignored). Returns when interrupted.
pub fn forever() {
    while !nap(3_600_000) {}
}
