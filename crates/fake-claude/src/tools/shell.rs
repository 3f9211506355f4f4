//! The Bash tool's shell: `/bin/bash -c` in its own session, stdin /dev/null, stdout
//! and stderr merged into one pipe, for foreground calls (waited for, SIGINT kills the
//! whole group) and `run_in_background` ones (left to run, output into a file).

use super::{err, Outcome};
use crate::out::Obj;
use crate::signals;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// Bash: `/bin/bash -c COMMAND` in its own session (like the CLI's tool shell), stdin
/// /dev/null, stdout and stderr merged into one pipe. SIGINT kills the shell's whole
/// process group and reports [`Outcome::Interrupted`]; SIGTERM exits the fake at once
/// (signal handler) and leaves the shell running, which is the real behaviour.
///
/// Like the CLI, the command runs as `eval '<command>' < /dev/null && pwd -P >| <file>`
/// so a `cd` carries over to the next Bash call: `shell_cwd` is updated from the file
/// (which lives in `$TMPDIR`, never in the cwd, and is removed afterwards).
pub fn bash(shell_cwd: &mut PathBuf, command: &str) -> Outcome {
    let cwd_file = std::env::temp_dir().join(format!("fake-claude-{}-cwd", crate::out::b62(10)));
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let script = format!(
        "eval {} < /dev/null && pwd -P >| {}",
        quote(command),
        quote(&cwd_file.display().to_string())
    );
    let outcome = run_shell(shell_cwd, &script);
    if let Ok(dir) = std::fs::read_to_string(&cwd_file) {
        let dir = PathBuf::from(dir.trim_end_matches('\n'));
        if dir.is_dir() {
            *shell_cwd = dir;
        }
    }
    let _ = std::fs::remove_file(&cwd_file);
    outcome
}

/// Starts a `run_in_background` Bash command: its own session (the CLI kills it at exit,
/// see `Engine::finish_background`), stdin /dev/null, stdout+stderr into `output`.
pub fn spawn_background(
    cwd: &Path,
    command: &str,
    output: &Path,
) -> std::io::Result<std::process::Child> {
    if let Some(d) = output.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::fs::File::create(output)?;
    let f2 = f.try_clone()?;
    bash_in_own_session(cwd, command, f, f2).spawn()
}

/// `bash -c COMMAND` in `cwd`, leader of its own session with default SIGINT/SIGTERM,
/// stdin /dev/null: the one way both foreground and background Bash tools start, so the
/// CLI can kill the whole group and the tool is not left ignoring signals.
fn bash_in_own_session(
    cwd: &Path,
    command: &str,
    stdout: impl Into<Stdio>,
    stderr: impl Into<Stdio>,
) -> Command {
    let mut cmd = Command::new("/bin/bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            // Undo `ignore-signals` for the tool: SIG_IGN would survive exec.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// A failed tool call whose text is `m` (and `Error: m` as its `tool_use_result`).
fn failed(m: String) -> Outcome {
    let tur = format!("Error: {m}");
    err(m, tur)
}

/// Runs `bash -c SCRIPT` in its own session and waits; SIGINT kills its process group.
fn run_shell(cwd: &Path, command: &str) -> Outcome {
    let (child, output) = match spawn_merged(cwd, command) {
        Ok(started) => started,
        Err(outcome) => return outcome,
    };
    match wait_or_kill(child) {
        Ok(status) => shell_outcome(status, output.text()),
        Err(outcome) => outcome,
    }
}

/// Starts the shell with stdout and stderr on one pipe, already being read.
fn spawn_merged(cwd: &Path, command: &str) -> Result<(Child, Captured), Outcome> {
    let (rd, wr) = nix::unistd::pipe().map_err(|e| failed(format!("pipe: {e}")))?;
    let wr2 = wr.try_clone().map_err(|e| failed(format!("pipe: {e}")))?;
    let mut cmd = bash_in_own_session(cwd, command, wr, wr2);
    let spawned = cmd.spawn();
    drop(cmd); // closes our copies of the pipe's write end, or EOF never comes
    let child = spawned.map_err(|e| failed(format!("spawn /bin/bash: {e}")))?;
    Ok((child, Captured::start(rd)))
}

/// Waits for the shell, polling for SIGINT: then its whole group is killed.
fn wait_or_kill(mut child: Child) -> Result<ExitStatus, Outcome> {
    let pid = child.id() as libc::pid_t;
    loop {
        if signals::interrupted() {
            // The shell leads its own group (setsid): kill the whole group.
            // SAFETY: plain kill(2) on a group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(Outcome::Interrupted);
        }
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) => {
                signals::nap(5);
            }
            Err(e) => return Err(failed(format!("wait: {e}"))),
        }
    }
}

/// The tool result for a finished shell: its output, or `Exit code N` and the output.
fn shell_outcome(status: ExitStatus, output: String) -> Outcome {
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if code != 0 {
        let body = if output.is_empty() {
            format!("Exit code {code}")
        } else {
            format!("Exit code {code}\n{output}")
        };
        return failed(body);
    }
    let content = if output.is_empty() {
        "(Bash completed with no output)".to_string()
    } else {
        output.clone()
    };
    let tur = Obj::new()
        .s("stdout", &output)
        .s("stderr", "")
        .v("interrupted", &false)
        .v("isImage", &false)
        .v("noOutputExpected", &false)
        .end();
    Outcome::Ok {
        content,
        bash: true,
        tur,
    }
}

/// The shell's merged output, collected by a thread as it comes (the pipe must be
/// drained while we wait, or a chatty command blocks on a full pipe).
struct Captured {
    /// The bytes read so far.
    buf: Arc<Mutex<Vec<u8>>>,
    /// Signalled when the reader reaches EOF.
    eof: Receiver<()>,
}

impl Captured {
    /// Starts reading `rd` to EOF in a thread.
    fn start(rd: OwnedFd) -> Self {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let (tx, eof) = std::sync::mpsc::channel::<()>();
        let b2 = buf.clone();
        let mut rd = std::fs::File::from(rd);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 65536];
            while let Ok(n) = rd.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut g) = b2.lock() {
                    g.extend_from_slice(&chunk[..n]);
                }
            }
            let _ = tx.send(());
        });
        Captured { buf, eof }
    }

    /// The output once the shell exited, without trailing newlines.
    fn text(self) -> String {
        // A backgrounded grandchild may keep the pipe open: don't wait for EOF for long.
        let _ = self.eof.recv_timeout(std::time::Duration::from_millis(300));
        let raw = self.buf.lock().map(|g| g.clone()).unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        text.trim_end_matches(['\n', '\r']).to_string()
    }
}
