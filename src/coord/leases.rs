//! File leases as agents and people meet them: the sentences that name a holder or a
//! deadlock (written for the model: who, which task, why, since when, what to do), and
//! the wait of `lock_files {wait_s}`, which polls the store's fair queue until the
//! paths are granted, the wait closes a cycle, or the time is up. The queue and the
//! cycle search are the store's (`store::coord`); nothing is kept in this process, so
//! a restarted `borg mcp` loses nothing.

use crate::store::coord::{
    BlockKind, Blocker, CoordStore, LeaseRow, LockOutcome, LockRequest, WaitEdge,
};
use crate::store::StoreError;
use std::time::{Duration, Instant};

/// Longest wait a `lock_files` may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often a waiting `lock_files` asks the store again.
pub const POLL: Duration = Duration::from_millis(100);

/// Local wall-clock time of an epoch-ms instant, `HH:MM:SS`.
pub fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "?".into())
}

/// "developer-3f2a (task auth-api, developer)".
pub fn who(l: &LeaseRow) -> String {
    format!("{} (task {}, {})", l.instance, l.task, l.role)
}

/// Why a path is refused, in a sentence the model can act on.
pub fn refusal(b: &Blocker) -> String {
    let l = &b.held;
    let on = if l.path == b.path {
        String::new()
    } else {
        format!(" (its lease on {})", l.path)
    };
    match b.kind {
        BlockKind::Lease => {
            let why = if l.reason.trim().is_empty() {
                String::new()
            } else {
                format!(": '{}'", l.reason.trim())
            };
            format!(
                "{} is locked by {}{on}{why}, since {}; work on something else, wait for it (mcp__borg__lock_files with wait_s), call mcp__borg__status, or message them (mcp__borg__send_message)",
                b.path,
                who(l),
                clock(l.since_ms)
            )
        }
        BlockKind::Queued => format!(
            "{} is being waited for by {}{on}, queued since {}; it goes to them first. Wait for it (mcp__borg__lock_files with wait_s) or work on something else",
            b.path,
            who(l),
            clock(l.since_ms)
        ),
    }
}

/// The cycle a wait would close, as one sentence.
pub fn deadlock(cycle: &[WaitEdge]) -> String {
    let steps: Vec<String> = cycle
        .iter()
        .map(|e| {
            format!(
                "{} (task {}) waits for {} held by {} (task {})",
                e.waiter.0, e.waiter.1, e.path, e.holder.0, e.holder.1
            )
        })
        .collect();
    format!(
        "deadlock: waiting would close a cycle: {}. Nothing was queued; release what you hold (mcp__borg__unlock_files) or work on something else",
        steps.join(", ")
    )
}

/// Asks for `req` and, with `wait`, keeps asking (holding the queue place) until every
/// path is granted, the wait would deadlock, or `wait` is over; then leaves the queue.
/// Paths granted along the way stay granted.
pub fn lock(
    store: &dyn CoordStore,
    who: &crate::store::coord::Actor,
    req: &LockRequest,
    wait: Duration,
    now_ms: impl Fn() -> i64,
) -> Result<LockOutcome, StoreError> {
    let wait = wait.min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let mut granted: Vec<String> = Vec::new();
    let mut ask = req.clone();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ask.queue = (!wait.is_zero()).then(|| left + Duration::from_secs(5));
        let out = store.lock_paths(who, &ask, now_ms())?;
        granted.extend(out.granted);
        let done = out.refused.is_empty() || out.deadlock.is_some() || left.is_zero();
        if done {
            if !out.refused.is_empty() && out.deadlock.is_none() && !wait.is_zero() {
                let paths: Vec<String> = out.refused.iter().map(|b| b.path.clone()).collect();
                store.cancel_waits(who, &paths)?;
            }
            return Ok(LockOutcome {
                granted,
                refused: out.refused,
                deadlock: out.deadlock,
            });
        }
        ask.paths = out.refused.iter().map(|b| b.path.clone()).collect();
        std::thread::sleep(POLL.min(left));
    }
}
