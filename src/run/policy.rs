//! The policy applied after each attempt: retry with exponential backoff and jitter,
//! park the fleet on a usage limit (and resume the session after the reset), open the
//! circuit breaker when the same fleet-wide or transient cause repeats, with one
//! message that names the cause and the fix.

use crate::outcome::{FaultClass, Status};
use crate::run::attempt::{now_ms, AttemptDone};
use crate::run::summary::{local_time, RunSummary, StopReason};
use crate::show::progress::{Event, Progress};
use crate::store::{call as db, Disposition, TaskRow};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// Consecutive failures with the same cause.
#[derive(Debug, Default)]
pub struct Breaker {
    /// The cause repeating.
    pub cause: Option<String>,
    /// How many times in a row.
    pub count: u32,
}

/// Decides what happens to a task after an attempt.
pub fn disposition(
    c: &crate::outcome::fault::Classified,
    t: &TaskRow,
    base: Duration,
    cap: Duration,
) -> Disposition {
    let now = now_ms();
    match (c.status, c.fault) {
        (Status::Succeeded, _) => Disposition::Succeeded,
        (_, Some(FaultClass::Interrupted)) => Disposition::Retry {
            not_before_ms: now,
            counts: false,
        },
        (_, Some(FaultClass::UsageLimit)) => {
            let until = c
                .resets_at
                .map(|r| r * 1000)
                .unwrap_or(now + cap.as_millis() as i64);
            Disposition::Retry {
                not_before_ms: until.max(now) + rand::thread_rng().gen_range(1000..5000),
                counts: false,
            }
        }
        (_, Some(FaultClass::Transient | FaultClass::CoordinationUnavailable))
            if t.counted_attempts + 1 < t.max_attempts =>
        {
            let exp = base.as_millis() as f64 * 2f64.powi(t.counted_attempts.clamp(0, 30) as i32);
            let d = exp.min(cap.as_millis() as f64);
            let jitter = rand::thread_rng().gen_range(0.75..1.25);
            Disposition::Retry {
                not_before_ms: now + (d * jitter) as i64,
                counts: true,
            }
        }
        (st, _) => Disposition::Final(st),
    }
}

/// Updates the breaker, parking and progress after an attempt.
pub async fn react(
    done: &AttemptDone,
    s: &crate::input::config::Settings,
    breaker: &mut Breaker,
    summary: &mut RunSummary,
    store: &Arc<dyn crate::store::Store>,
    progress: &mut dyn Progress,
) {
    let c = &done.classified;
    match c.fault {
        None => *breaker = Breaker::default(),
        Some(
            FaultClass::Transient | FaultClass::FleetWide | FaultClass::CoordinationUnavailable,
        ) => {
            let cause = c.cause.clone().unwrap_or_else(|| "unknown".into());
            if breaker.cause.as_deref() == Some(&cause) {
                breaker.count += 1;
            } else {
                *breaker = Breaker {
                    cause: Some(cause.clone()),
                    count: 1,
                };
            }
            if breaker.count >= s.run.breaker_threshold.max(1) && summary.stop.is_none() {
                let msg = breaker_message(&cause, breaker.count, c.error.as_deref().unwrap_or(""));
                let _ = db(store, {
                    let v = serde_json::json!({"open": true, "cause": cause, "message": msg});
                    move |st| st.set_fleet("breaker", &v, now_ms())
                })
                .await;
                progress.event(&Event::Note(format!(
                    "circuit breaker open: {} attempts in a row failed the same way ({cause}); no new task starts",
                    breaker.count
                )));
                summary.stop = Some(StopReason::Breaker(msg));
            }
        }
        Some(FaultClass::UsageLimit) => {
            let until = c
                .resets_at
                .map(|r| r * 1000)
                .unwrap_or(now_ms() + s.run.backoff_cap.as_millis() as i64)
                + rand::thread_rng().gen_range(1000..5000);
            let kind = c.limit_kind.clone().unwrap_or_else(|| "usage".into());
            progress.event(&Event::Note(format!(
                "usage limit ({kind}): parking the fleet until {}; {} will resume its session",
                local_time(until),
                done.task
            )));
            let v = serde_json::json!({"until_ms": until, "kind": kind, "task": done.task});
            let _ = db(store, move |st| st.set_fleet("parked", &v, now_ms())).await;
        }
        Some(
            FaultClass::Permanent
            | FaultClass::Interrupted
            | FaultClass::OutOfScope
            | FaultClass::Verification
            | FaultClass::Integration,
        ) => {}
    }
    if matches!(c.fault, Some(FaultClass::Transient)) {
        if let Ok(Some(t)) = db(store, {
            let id = done.task.clone();
            move |st| st.task(&id)
        })
        .await
        {
            if t.status == Status::Pending {
                progress.event(&Event::Note(format!(
                    "{}: retrying at {} ({})",
                    t.id,
                    local_time(t.not_before_ms),
                    c.cause.as_deref().unwrap_or("transient")
                )));
            }
        }
    }
}

/// The breaker's one message: the cause and the fix.
pub fn breaker_message(cause: &str, n: u32, error: &str) -> String {
    let first = error.lines().next().unwrap_or("").trim();
    match cause {
        "auth_401" => format!("the API key was refused by the API (401) on {n} attempts in a row; check ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN / your login)"),
        "not_logged_in" => format!("claude is not logged in on {n} attempts in a row; set ANTHROPIC_API_KEY or log in with `claude` once"),
        "claude_missing" => format!("the claude binary could not be started on {n} attempts in a row ({first}); check --claude / CLAUDE_CODE_PATH"),
        "network" => format!("the API could not be reached on {n} attempts in a row ({first}); check ANTHROPIC_BASE_URL, proxies and the network"),
        c if c.starts_with("api_5") || c == "api_529" => format!("the API failed ({c}) on {n} attempts in a row ({first}); the service may be down, run again later"),
        "coordination_unavailable" => format!("borg's coordination server (`borg mcp`) did not connect on {n} attempts in a row ({first}); check that the borg binary runs and the store is reachable, or see the attempt's stderr log"),
        "idle" => format!("{n} attempts in a row went silent past idle_timeout; the API may be stalled, run again later"),
        c => format!("the same failure ({c}) on {n} attempts in a row: {first}"),
    }
}
