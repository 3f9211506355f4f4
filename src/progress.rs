//! What a person sees while `borg run` works: plain timestamped event lines (CI,
//! pipes), or nothing. Diagnostics and progress go to stderr; stdout is kept for the
//! report (`--json`).

use crate::outcome::Status;
use std::io::Write;

/// Something worth telling a person during a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// An attempt started.
    Started {
        /// Task id.
        task: String,
        /// Instance id.
        instance: String,
        /// Attempt number.
        attempt: u32,
    },
    /// An attempt ended.
    Finished {
        /// Task id.
        task: String,
        /// Status.
        status: Status,
        /// Wall time, ms.
        duration_ms: u64,
        /// Cost.
        cost_usd: f64,
        /// Error, if any.
        error: Option<String>,
        /// Tasks done / total in scope.
        done: usize,
        /// Total in scope.
        total: usize,
    },
    /// Anything else (retries, parking, breaker, handoffs).
    Note(String),
}

/// A progress display.
pub trait Progress: Send {
    /// Shows one event.
    fn event(&mut self, ev: &Event);
}

/// Prints nothing.
pub struct Silent;

impl Progress for Silent {
    fn event(&mut self, _ev: &Event) {}
}

/// Plain timestamped lines on stderr.
pub struct Plain;

impl Progress for Plain {
    fn event(&mut self, ev: &Event) {
        let t = chrono::Local::now().format("%H:%M:%S");
        let line = match ev {
            Event::Started {
                task,
                instance,
                attempt,
            } => format!("[{t}] start  {task} on {instance} (attempt {attempt})"),
            Event::Finished {
                task,
                status,
                duration_ms,
                cost_usd,
                error,
                done,
                total,
            } => {
                let err = error
                    .as_deref()
                    .map(|e| format!(": {}", first_line(e)))
                    .unwrap_or_default();
                format!(
                    "[{t}] {status:<8} {task} in {:.1}s, ${cost_usd:.4} [{done}/{total}]{err}",
                    *duration_ms as f64 / 1000.0
                )
            }
            Event::Note(s) => format!("[{t}] {s}"),
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 160 {
        format!("{}…", l.chars().take(160).collect::<String>())
    } else {
        l.to_string()
    }
}
