//! Hosts for the many-hosts tests: borg commands with a workspaces folder and a store
//! of their own, `borg worker` processes with their stderr in a file, and the store's
//! view of a run (every task succeeded exactly once).
#![allow(dead_code)]

use crate::common::*;
use borg::outcome::Status;
use borg::store::postgres::PgStore;
use borg::store::Store;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A borg command in the sandbox with its own workspaces folder and the store `url`.
pub fn borg_at(sb: &Sandbox, ws: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(borg_bin());
    c.current_dir(sb.path())
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("HOME", sb.path())
        .env("FAKE_CLAUDE_STATE_DIR", sb.state())
        .env("FAKE_CLAUDE_NO_RATE_LIMIT_EVENT", "1")
        .env("IS_SANDBOX", "1")
        .env("BORG_LOG", "borg=warn")
        .args(["--workspaces", ws.to_str().unwrap(), "--store", url])
        .args(args)
        .stdin(Stdio::null());
    c
}

/// A running `borg worker`, its stderr in a file.
pub struct Worker {
    /// The process.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Worker {
    pub fn start(sb: &Sandbox, url: &str, host: &str, concurrency: usize) -> Worker {
        Worker::start_with(sb, url, host, concurrency, &[])
    }

    /// The same with more arguments after `worker`.
    pub fn start_with(
        sb: &Sandbox,
        url: &str,
        host: &str,
        concurrency: usize,
        extra: &[&str],
    ) -> Worker {
        let ws = sb.path().join(format!("ws-{host}"));
        let log = sb
            .path()
            .join(format!("{host}-{}.log", uuid::Uuid::new_v4()));
        let n = concurrency.to_string();
        let fake = fake_bin();
        let mut args = vec![
            "worker",
            "--host-id",
            host,
            "--concurrency",
            &n,
            "--claude",
            fake.to_str().unwrap(),
            "--progress",
            "plain",
        ];
        args.extend_from_slice(extra);
        let child = borg_at(sb, &ws, url, &args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start borg worker");
        Worker { child, log }
    }

    /// What it said so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then its exit status must be 0.
    pub fn stop(mut self) -> String {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let st = self.child.wait().unwrap();
        let err = self.stderr();
        assert!(st.success(), "worker exited {st:?}: {err}");
        err
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds on the store, up to `limit`.
pub fn wait_store(s: &PgStore, limit: Duration, cond: impl Fn(&[(String, Status)]) -> bool) {
    let ok = wait_until(limit, || s.statuses().map(|r| cond(&r)).unwrap_or(false));
    assert!(ok, "timed out waiting on the store");
}

/// How many tasks succeeded.
pub fn succeeded(rows: &[(String, Status)]) -> usize {
    rows.iter().filter(|(_, s)| *s == Status::Succeeded).count()
}

/// Every task succeeded, each with exactly one succeeded attempt; returns the owners
/// of interrupted attempts.
pub fn exactly_once(s: &PgStore, n: usize) -> Vec<(String, String)> {
    let tasks = s.tasks().unwrap();
    assert_eq!(tasks.len(), n);
    let mut interrupted = Vec::new();
    for t in &tasks {
        assert_eq!(t.status, Status::Succeeded, "{} is {}", t.id, t.status);
        let att = s.attempts(&t.id).unwrap();
        let ok = att.iter().filter(|a| a.status == Status::Succeeded).count();
        assert_eq!(ok, 1, "{}: {ok} succeeded attempts", t.id);
        for a in att.iter().filter(|a| a.status == Status::Interrupted) {
            interrupted.push((t.id.clone(), a.owner.clone()));
        }
    }
    interrupted
}
