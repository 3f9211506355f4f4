//! What a person sees while `borg run` works: plain timestamped event lines (CI,
//! pipes), or nothing. Diagnostics and progress go to stderr; stdout is kept for the
//! report (`--json`).

use crate::outcome::transcript::abridged;
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
    /// Refreshes the live line of a running task (called about twice a second).
    fn live(
        &mut self,
        _task: &str,
        _view: &crate::supervise::runner::LiveView,
        _elapsed: std::time::Duration,
    ) {
    }
    /// Whether [`Progress::live`] shows anything: when not, the run loop does not wake
    /// up twice a second to call it.
    fn wants_live(&self) -> bool {
        false
    }
    /// Sets the number of tasks in scope and how many are done.
    fn totals(&mut self, _done: usize, _total: usize, _cost_usd: f64) {}
    /// Removes every live line (before the final report is printed).
    fn finish(&mut self) {}
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
                    .map(|e| format!(": {}", abridged(e.lines().next().unwrap_or(""), 160)))
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

/// Live lines on a terminal: one per running task plus an overall bar.
pub struct Tty {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    lines: std::collections::HashMap<String, indicatif::ProgressBar>,
    color: bool,
}

impl Tty {
    /// A terminal display; `color` false when NO_COLOR is set.
    pub fn new(color: bool) -> Tty {
        let multi = indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        let tpl = if color {
            "{bar:30.cyan/blue} {pos}/{len} tasks · {elapsed_precise} · eta {eta} · {msg}"
        } else {
            "{bar:30} {pos}/{len} tasks · {elapsed_precise} · eta {eta} · {msg}"
        };
        let overall = multi.add(indicatif::ProgressBar::new(0));
        overall.set_style(
            indicatif::ProgressStyle::with_template(tpl)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        overall.set_message("$0.0000");
        overall.enable_steady_tick(std::time::Duration::from_millis(500));
        Tty {
            multi,
            overall,
            lines: Default::default(),
            color,
        }
    }

    fn style(&self) -> indicatif::ProgressStyle {
        let tpl = if self.color {
            "{spinner:.green} {prefix:.bold} {msg}"
        } else {
            "{spinner} {prefix} {msg}"
        };
        indicatif::ProgressStyle::with_template(tpl)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
    }
}

impl Progress for Tty {
    fn event(&mut self, ev: &Event) {
        match ev {
            Event::Started {
                task,
                instance,
                attempt,
            } => {
                let pb = self
                    .multi
                    .insert_before(&self.overall, indicatif::ProgressBar::new_spinner());
                pb.set_style(self.style());
                pb.set_prefix(format!("{task} [{instance}, attempt {attempt}]"));
                pb.set_message("starting");
                pb.enable_steady_tick(std::time::Duration::from_millis(250));
                self.lines.insert(task.clone(), pb);
            }
            Event::Finished {
                task, done, total, ..
            } => {
                if let Some(pb) = self.lines.remove(task) {
                    pb.finish_and_clear();
                }
                self.overall.set_length(*total as u64);
                self.overall.set_position(*done as u64);
                let mut plain = Plain;
                self.multi.suspend(|| plain.event(ev));
            }
            Event::Note(_) => {
                let mut plain = Plain;
                self.multi.suspend(|| plain.event(ev));
            }
        }
    }

    fn wants_live(&self) -> bool {
        true
    }

    fn live(
        &mut self,
        task: &str,
        v: &crate::supervise::runner::LiveView,
        elapsed: std::time::Duration,
    ) {
        if let Some(pb) = self.lines.get(task) {
            let tool = v.current_tool.as_deref().unwrap_or("thinking");
            pb.set_message(format!(
                "{:>5}s · {} turns · ${:.4} · {tool}",
                elapsed.as_secs(),
                v.turns,
                v.cost_usd
            ));
        }
    }

    fn totals(&mut self, done: usize, total: usize, cost_usd: f64) {
        self.overall.set_length(total as u64);
        self.overall.set_position(done as u64);
        self.overall.set_message(format!("${cost_usd:.4}"));
    }

    fn finish(&mut self) {
        for (_, pb) in self.lines.drain() {
            pb.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
