//! Shared helpers for the integration tests: a sandbox with its own workspaces,
//! config and fake-claude state, a way to run the real `borg` binary in it, and
//! `/proc` checks for processes left behind.
#![allow(dead_code)]

pub mod git;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built borg binary.
pub fn borg_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_borg"))
}

/// The built fake-claude binary: the workspace's other crate, built beside borg by
/// `cargo test` at the root (its own integration tests make cargo build it).
pub fn fake_bin() -> PathBuf {
    let p = borg_bin().with_file_name("fake-claude");
    assert!(
        p.is_file(),
        "{} is missing: run the tests from the workspace root (`cargo test --workspace`), \
         or build it first with `cargo build -p fake-claude`",
        p.display()
    );
    p
}

/// One test's private world.
pub struct Sandbox {
    /// Removed on drop.
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// A new sandbox with a config that keeps the ladder short.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("borg-it-")
            .tempdir()
            .expect("tempdir");
        let s = Sandbox { dir };
        std::fs::create_dir_all(s.path().join("state")).unwrap();
        s.config("");
        s
    }

    /// Writes config.toml: short ladder graces, fake-claude's state dir passed to the
    /// child (its environment is an allowlist), plus `run_extra` lines under [run].
    pub fn config(&self, run_extra: &str) {
        let text = format!(
            "[run]\ninterrupt_grace = \"1s\"\nterm_grace = \"1s\"\nleak_timeout = \"500ms\"\nresult_grace = \"3s\"\n{run_extra}\n\n[claude.env]\nFAKE_CLAUDE_STATE_DIR = \"{}\"\nFAKE_CLAUDE_NO_RATE_LIMIT_EVENT = \"1\"\n",
            self.state().display()
        );
        self.write("config.toml", &text);
    }

    /// The sandbox folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The workspaces folder.
    pub fn ws(&self) -> PathBuf {
        self.path().join("workspaces")
    }

    /// fake-claude's state folder.
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes a file (relative to the sandbox).
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A borg command run in the sandbox, with a clean environment.
    pub fn borg(&self, args: &[&str]) -> Command {
        let mut c = Command::new(borg_bin());
        c.current_dir(self.path())
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.path())
            .env("FAKE_CLAUDE_STATE_DIR", self.state())
            .env("FAKE_CLAUDE_NO_RATE_LIMIT_EVENT", "1")
            .env("IS_SANDBOX", "1")
            .args(["--workspaces", self.ws().to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// The command `borg run FILE --claude CLAUDE ARGS...` (any claude binary, or a
    /// path that is not one).
    pub fn run_with(&self, file: &Path, claude: &Path, extra: &[&str]) -> Command {
        let mut c = self.borg(&[]);
        c.args(run_args(file, claude, extra));
        c
    }

    /// The command `borg run FILE --claude fake-claude ARGS...`, the progress mode left
    /// to borg.
    pub fn fake_run(&self, file: &Path, extra: &[&str]) -> Command {
        self.run_with(file, &fake_bin(), extra)
    }

    /// The command `borg run FILE --claude fake-claude --progress plain ARGS...`.
    pub fn run_cmd(&self, file: &Path, extra: &[&str]) -> Command {
        let mut args = vec!["--progress", "plain"];
        args.extend_from_slice(extra);
        self.fake_run(file, &args)
    }

    /// Writes `tasks` to tasks.toml and starts it (see `run_cmd`) in the background,
    /// stdout and stderr piped.
    pub fn spawn_run(&self, tasks: &str, extra: &[&str]) -> Child {
        let file = self.write("tasks.toml", tasks);
        self.run_cmd(&file, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start borg")
    }

    /// `borg instance create --role ROLE --name NAME`, which must succeed.
    pub fn create_instance(&self, role: &str, name: &str) {
        self.succeed(&["instance", "create", "--role", role, "--name", name]);
    }

    /// Writes `tasks` to tasks.toml and runs it (see `run_cmd`), waited for.
    pub fn run(&self, tasks: &str, extra: &[&str]) -> Output {
        let file = self.write("tasks.toml", tasks);
        self.run_cmd(&file, extra).output().expect("run borg")
    }

    /// A borg command that must exit 0 (`task retry ID` ...), run to the end.
    pub fn succeed(&self, args: &[&str]) -> Output {
        let o = self.borg(args).output().expect("run borg");
        assert_eq!(o.status.code(), Some(0), "borg {args:?}: {}", stderr(&o));
        o
    }

    /// A borg command that must succeed and print JSON (`task show ID --json` ...).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.succeed(args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "borg {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }

    /// The same with `--json`, returning the parsed report too.
    pub fn run_json(&self, tasks: &str, extra: &[&str]) -> (Output, serde_json::Value) {
        let mut e = vec!["--json"];
        e.extend_from_slice(extra);
        let out = self.run(tasks, &e);
        let v = json_of(&out);
        (out, v)
    }

    /// fake-claude's recorded argv files for a task (attempt order).
    pub fn argv(&self, task: &str) -> Vec<serde_json::Value> {
        (1..100)
            .map_while(|n| {
                std::fs::read_to_string(self.state().join(task).join(format!("argv.{n}.json"))).ok()
            })
            .map(|t| serde_json::from_str(&t).unwrap())
            .collect()
    }

    /// The prompt fake-claude received for a task's attempt N.
    pub fn prompt(&self, task: &str, n: u32) -> String {
        std::fs::read_to_string(self.state().join(task).join(format!("prompt.{n}.txt")))
            .unwrap_or_default()
    }
}

/// The arguments `run FILE --claude CLAUDE ARGS...` of a borg command line.
pub fn run_args(file: &Path, claude: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["run".into(), file.into(), "--claude".into(), claude.into()];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// A one-task list whose prompt is a TOML literal string (backslashes kept).
pub fn one(id: &str, prompt: &str) -> String {
    format!("[[task]]\nid = \"{id}\"\nprompt = '''\n{prompt}\n'''\n\n")
}

/// The task entry of a report.
pub fn task<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("no task {id} in report: {report:#}"))
}

/// Pids of live processes whose environment has `key=value`.
pub fn procs_with_env(key: &str, value: &str) -> Vec<i32> {
    borg::supervise::procs::with_env(key, value)
        .into_iter()
        .filter(|&p| borg::supervise::procs::stat(p).is_some_and(|s| s.state != 'Z'))
        .collect()
}

/// Waits until `f` is true or the time is up; returns whether it became true.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON a finished borg printed on stdout (a report, a list), or a panic showing
/// its stdout and stderr.
pub fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

/// Pids of the live processes of a task's attempts (their `BORG_TASK_ID`).
pub fn task_procs(id: &str) -> Vec<i32> {
    procs_with_env("BORG_TASK_ID", id)
}

/// Sends `sig` to a child started in the background (a borg).
pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

/// Epoch ms of an attempt's start, from fake-claude's argv record.
pub fn started_ms(a: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(a["time"].as_str().expect("an argv record's time"))
        .expect("an RFC 3339 time")
        .timestamp_millis()
}

/// The command line of fake-claude's argv record, as strings.
pub fn argv_strings(a: &serde_json::Value) -> Vec<String> {
    a["argv"]
        .as_array()
        .expect("an argv record's argv")
        .iter()
        .map(|s| s.as_str().expect("an argument").to_string())
        .collect()
}
