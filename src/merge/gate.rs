//! The merge queue's integration gates, run one after the other in borg's
//! integration worktree, and judged against the baseline.
//!
//! A gate is `sh -c COMMAND` in a process group of its own (so a gate's whole tree is
//! killed with it, and a Ctrl-C at the terminal reaches borg only), with the child's
//! allowlisted environment, its stdout and stderr going to a log file, killed with
//! its tree at the `[verify] timeout`. The log is capped: past [`LOG_CAP`] the head
//! and the tail are kept. This is the queue's own minimal runner: the task-level
//! gates (`src/verify/`) were being written at the same time.
//!
//! The baseline rule is the one of the task-level gates: where the output names the
//! failing tests, a batch fails only on a test that did not already fail at the
//! baseline commit; where it gives only counts, when the failures grew or the gate
//! exited non-zero while the baseline exited 0; else on a non-zero exit when the
//! baseline exited 0.

use crate::outcome::{testnames, testsummary, TestCounts};
use crate::supervise::procs;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A gate's log is cut to its head and tail past this size.
pub const LOG_CAP: u64 = 8 * 1024 * 1024;
/// The tail of a gate's output kept for the report and fix prompts.
pub const TAIL_BYTES: usize = 16 * 1024;
/// At most this many lines of the tail.
pub const TAIL_LINES: usize = 200;
/// How much of a gate's output is read for test counts and names.
const SCAN_BYTES: u64 = 1024 * 1024;

/// What one run of one gate found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    /// The command line.
    pub command: String,
    /// Its exit code (None: killed).
    pub exit_code: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Wall time.
    pub duration_ms: u64,
    /// Test counts its output gave.
    pub tests: Option<TestCounts>,
    /// Failing tests its output named.
    pub failing: Vec<String>,
    /// The tail of its output.
    pub output_tail: String,
    /// Its log file.
    pub log: PathBuf,
}

/// Where and how gates run.
#[derive(Debug, Clone)]
pub struct GateEnv {
    /// The environment of every gate.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit of one gate.
    pub timeout: Duration,
    /// The folder the logs go to.
    pub logs: PathBuf,
}

impl GateEnv {
    /// Runs `command` in `dir`; `name` names its log file.
    pub fn run(&self, command: &str, dir: &Path, name: &str) -> std::io::Result<GateOutcome> {
        std::fs::create_dir_all(&self.logs)?;
        let log = self.logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let began = Instant::now();
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
        let sh = crate::git::which("sh", path).unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let mut child = Command::new(sh)
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()?;
        let pid = child.id() as i32;
        let (mut exit_code, mut timed_out) = (None, false);
        loop {
            if let Some(st) = child.try_wait()? {
                exit_code = st.code();
                break;
            }
            if began.elapsed() >= self.timeout {
                timed_out = true;
                kill_tree(pid);
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // What the gate left running behind it (a daemon in its group) goes too.
        procs::signal_group(pid, Signal::SIGKILL);
        cap(&log)?;
        let text = read_tail(&log, SCAN_BYTES)?;
        Ok(GateOutcome {
            command: command.to_string(),
            exit_code,
            timed_out,
            duration_ms: began.elapsed().as_millis() as u64,
            tests: testsummary::recognise(&text),
            failing: testnames::failing(&text),
            output_tail: tail(&text),
            log,
        })
    }
}

/// Kills a gate's process group and every descendant that left it.
fn kill_tree(pid: i32) {
    let below = procs::descendants(pid);
    procs::signal_group(pid, Signal::SIGKILL);
    procs::signal(pid, Signal::SIGKILL);
    for p in below {
        procs::signal(p, Signal::SIGKILL);
    }
}

/// Cuts a log past [`LOG_CAP`] to its first and last halves of the cap.
fn cap(log: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(log)?.len();
    if len <= LOG_CAP {
        return Ok(());
    }
    let half = LOG_CAP / 2;
    let mut f = std::fs::File::open(log)?;
    let mut head = vec![0; half as usize];
    f.read_exact(&mut head)?;
    let mut end = Vec::new();
    f.seek(SeekFrom::Start(len - half))?;
    f.read_to_end(&mut end)?;
    let mut all = head;
    all.extend_from_slice(
        format!("\n[borg: {} bytes of output left out]\n", len - LOG_CAP).as_bytes(),
    );
    all.extend_from_slice(&end);
    std::fs::write(log, all)
}

/// The last `max` bytes of a file, as text.
fn read_tail(p: &Path, max: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The last [`TAIL_LINES`] lines of `text`, at most [`TAIL_BYTES`].
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    let mut t = lines[from..].join("\n");
    if t.len() > TAIL_BYTES {
        let mut cut = t.len() - TAIL_BYTES;
        while !t.is_char_boundary(cut) {
            cut += 1;
        }
        t = t[cut..].to_string();
    }
    t
}

/// The project's own test command, from the files at `commit` (seed 001's project
/// assessment): `Cargo.toml` → `cargo test`, `go.mod` → `go test ./...`, a
/// `package.json` with a `test` script → `npm test`, `pyproject.toml`, `pytest.ini` or
/// `setup.cfg` → `python3 -m pytest -q`; None when there is none of these.
pub fn detect(repo: &crate::git::Repo, commit: &str) -> Option<String> {
    let out = repo
        .git
        .at(&repo.dir)
        .args(["ls-tree", "-z", "--name-only", commit])
        .ok()
        .ok()?;
    let names: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("Cargo.toml") {
        return Some("cargo test".into());
    }
    if has("go.mod") {
        return Some("go test ./...".into());
    }
    if has("package.json") {
        let spec = format!("{commit}:package.json");
        let text = repo
            .git
            .at(&repo.dir)
            .args(["cat-file", "blob", &spec])
            .ok()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text.stdout).ok()?;
        if v.get("scripts").and_then(|s| s.get("test")).is_some() {
            return Some("npm test".into());
        }
    }
    ["pyproject.toml", "pytest.ini", "setup.cfg"]
        .iter()
        .any(|n| has(n))
        .then(|| "python3 -m pytest -q".into())
}

/// What a gate gave at the baseline commit, as cached in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Its exit code (None: killed).
    pub exit_code: Option<i32>,
    /// Its test counts.
    pub tests: Option<TestCounts>,
    /// The failing tests it named.
    pub failing: Vec<String>,
}

impl From<&GateOutcome> for Baseline {
    fn from(g: &GateOutcome) -> Baseline {
        Baseline {
            exit_code: g.exit_code,
            tests: g.tests,
            failing: g.failing.clone(),
        }
    }
}

/// The judgement of one gate run.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The gate passes.
    pub passed: bool,
    /// New failures (by name), or a one-line reason when the runner names none.
    pub regressions: Vec<String>,
}

/// Judges `run` against `base` (None: no baseline; the exit code decides).
pub fn judge(run: &GateOutcome, base: Option<&Baseline>) -> Judged {
    if run.exit_code == Some(0) {
        return Judged {
            passed: true,
            regressions: Vec::new(),
        };
    }
    let Some(b) = base.filter(|b| b.exit_code != Some(0)) else {
        return Judged {
            passed: false,
            regressions: run.failing.clone(),
        };
    };
    if run.timed_out {
        return Judged {
            passed: false,
            regressions: vec!["the gate timed out".into()],
        };
    }
    if !run.failing.is_empty() || !b.failing.is_empty() {
        let new: Vec<String> = run
            .failing
            .iter()
            .filter(|n| !b.failing.contains(n))
            .cloned()
            .collect();
        return Judged {
            passed: new.is_empty(),
            regressions: new,
        };
    }
    let grew = match (run.tests, b.tests) {
        (Some(r), Some(b)) => r.failed > b.failed,
        _ => false,
    };
    Judged {
        passed: !grew,
        regressions: if grew {
            vec!["more tests fail than at the baseline".into()]
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: i32, failing: &[&str]) -> GateOutcome {
        GateOutcome {
            exit_code: Some(code),
            failing: failing.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_new_failures_fail_a_gate() {
        let base = Baseline {
            exit_code: Some(1),
            failing: vec!["a".into()],
            ..Default::default()
        };
        assert!(judge(&run(1, &["a"]), Some(&base)).passed);
        let j = judge(&run(1, &["a", "b"]), Some(&base));
        assert!(!j.passed);
        assert_eq!(j.regressions, vec!["b".to_string()]);
        assert!(!judge(&run(1, &[]), None).passed);
        let clean = Baseline {
            exit_code: Some(0),
            ..Default::default()
        };
        assert!(!judge(&run(1, &["a"]), Some(&clean)).passed);
        assert!(judge(&run(0, &[]), Some(&clean)).passed);
    }

    #[test]
    fn a_hanging_gate_is_killed_with_its_tree_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let g = GateEnv {
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            timeout: Duration::from_millis(300),
            logs: dir.path().join("logs"),
        };
        let began = Instant::now();
        let out = g
            .run(
                "sleep 30 & echo $! > bg.pid; echo started; sleep 30",
                dir.path(),
                "hang",
            )
            .unwrap();
        assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
        assert!(began.elapsed() < Duration::from_secs(5));
        assert_eq!(out.output_tail, "started");
        let pid: i32 = std::fs::read_to_string(dir.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            procs::stat(pid).is_none_or(|s| s.state == 'Z')
        });
        assert!(gone, "the gate's background child {pid} was killed too");
    }

    #[test]
    fn tails_are_bounded() {
        let text: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert_eq!(t.lines().count(), TAIL_LINES);
        assert!(t.ends_with("line 499"));
    }
}
