//! One gate run: `sh -c COMMAND` in a worktree, under the runner that supervises
//! claude children (`supervise::runner`): its own process group under the shim, the
//! whole tree killed through the stop ladder at `[verify] timeout` or when borg
//! stops, the child's allowlisted environment, and its output (stderr merged into
//! stdout, in order) appended to the task's `logs/<task>.<n>.verify.log`, capped at
//! [`LOG_CAP`] per run. What it printed is then read back for test counts (the
//! test-summary recogniser, or the JUnit XML files it wrote) and failing test names.

use crate::outcome::{testnames, testsummary, TestCounts, Watchdog};
use crate::supervise::runner::{self, AttemptPlan, Control, Watchdogs};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most bytes of one gate run kept in the log (and read back).
pub const LOG_CAP: u64 = 4 * 1024 * 1024;
/// The tail of a gate's output given to fix prompts and reports: at most this many
/// lines ...
pub const TAIL_LINES: usize = 200;
/// ... and this many bytes.
pub const TAIL_BYTES: usize = 16 * 1024;

/// Everything one gate run needs.
#[derive(Debug, Clone)]
pub struct GateJob {
    /// The command line.
    pub command: String,
    /// Where it runs.
    pub cwd: PathBuf,
    /// Its complete environment (the child's allowlisted one).
    pub env: Vec<(String, String)>,
    /// The log its output is appended to.
    pub log: PathBuf,
    /// What the log's header line says of this run (`round 1, gate 2/3`).
    pub label: String,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// The stop ladder's waits (after SIGINT, after SIGTERM) and the wait for
    /// processes that keep its pipes open after it exits.
    pub ladder: (Duration, Duration, Duration),
    /// `[verify] junit`: the JUnit XML files it writes.
    pub junit: Option<String>,
    /// Its whole tree's resident memory limit, KiB (`[run] max_attempt_memory`).
    pub max_memory_kb: Option<u64>,
}

/// What one gate run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateOutput {
    /// Exit code (None: killed, or never started).
    pub exit_code: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// borg stopped it (Ctrl-C, a lost claim).
    pub interrupted: bool,
    /// Wall time.
    pub duration_ms: u64,
    /// Test counts (from its JUnit XML, else its output).
    pub tests: Option<TestCounts>,
    /// Failing test names (from its JUnit XML, else its output), sorted.
    pub failing: Vec<String>,
    /// The tail of its output.
    pub output_tail: String,
}

impl GateOutput {
    /// Exit 0 and not killed.
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.interrupted
    }
}

/// Runs one gate to its end.
pub async fn run(job: &GateJob, ctl: Control) -> GateOutput {
    let offset = header(&job.log, &job.label, &job.command);
    let since = SystemTime::now() - Duration::from_secs(1);
    let (int, term, leak) = job.ladder;
    let plan = AttemptPlan {
        program: PathBuf::from("/bin/sh"),
        // stderr joins stdout so that the log keeps the order things were printed in.
        args: vec!["-c".into(), format!("exec 2>&1\n{}", job.command)],
        env: job.env.clone(),
        cwd: job.cwd.clone(),
        prompt: String::new(),
        stdout_log: job.log.clone(),
        stderr_log: job.log.clone(),
        watchdogs: Watchdogs {
            timeout: job.timeout,
            // A quiet gate is not a stuck one; only the wall clock limits it.
            idle_timeout: job.timeout,
            result_grace: job.timeout,
            interrupt_grace: int,
            term_grace: term,
            leak_timeout: leak,
            max_memory_kb: job.max_memory_kb,
        },
        max_line: 64 * 1024,
        log_cap: Some(LOG_CAP),
    };
    let out = runner::run_attempt(plan, ctl, |_| Ok(()), None).await;
    let mut text = read_from(&job.log, offset);
    if let Some(e) = &out.spawn_error {
        text.push_str(&format!("\n[borg: the gate could not start: {e}]\n"));
    }
    let timed_out = out.watchdog == Some(Watchdog::Timeout);
    if timed_out {
        text.push_str(&format!(
            "\n[borg: killed at its timeout of {} s, with its whole process tree]\n",
            job.timeout.as_secs()
        ));
    }
    let report = job
        .junit
        .as_deref()
        .and_then(|g| super::junit::read(&job.cwd, g, since));
    let (tests, failing) = match report {
        Some(r) => (Some(r.counts), r.failing),
        None => (testsummary::recognise(&text), testnames::failing(&text)),
    };
    GateOutput {
        exit_code: out.exit.and_then(|e| e.code),
        timed_out,
        interrupted: out.interrupted,
        duration_ms: out.duration.as_millis() as u64,
        tests,
        failing,
        output_tail: tail(&text, TAIL_LINES, TAIL_BYTES),
    }
}

/// Appends the run's header line to the log; returns where its output starts.
fn header(log: &Path, label: &str, command: &str) -> u64 {
    if let Some(d) = log.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    else {
        return 0;
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let _ = writeln!(f, "==> {time} {label}: {command}");
    f.metadata().map(|m| m.len()).unwrap_or(0)
}

/// What the log holds from `offset` on (at most the cap and a little), as text.
fn read_from(log: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.take(LOG_CAP + 4096).read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `lines` lines of `text`, at most `bytes` bytes of it (cut at a character
/// boundary).
pub fn tail(text: &str, lines: usize, bytes: usize) -> String {
    let text = text.trim_end();
    let start = text
        .rmatch_indices('\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    let mut t = &text[start..];
    if t.len() > bytes {
        let mut cut = t.len() - bytes;
        while !t.is_char_boundary(cut) {
            cut += 1;
        }
        t = &t[cut..];
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_bounded_by_lines_and_bytes() {
        let text: String = (1..=300).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text, 200, 1 << 20);
        assert!(t.starts_with("line 101\n") && t.ends_with("line 300"));
        let t = tail(&text, 200, 20);
        assert!(t.len() <= 20 && t.ends_with("line 300"));
        assert_eq!(tail("é".repeat(10).as_str(), 5, 3), "é");
        assert_eq!(tail("", 5, 5), "");
    }
}
