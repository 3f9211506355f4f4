//! A dedicated, never-ending thread that performs every fork of borg.
//!
//! PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, not the
//! process (supervision.md F6). The shim relies on that signal to clean up when borg
//! dies, so it must never fire while borg lives: tokio's blocking-pool threads retire
//! after 10 s idle, and worker threads end with the runtime. Forking from one thread
//! that lives as long as the process closes that hole.
//!
//! The thread also creates the status pipe of each shim right before its spawn and
//! lets only that spawn inherit the write end (cleared close-on-exec, closed again at
//! once). No `pre_exec` hook is needed then, so std starts the shim with
//! `posix_spawn` (vfork-like) instead of `fork`: borg's address space (runtime
//! threads, SQLite cache) is never copied, and its threads take no copy-on-write faults
//! after each spawn. Only this thread forks, so no other child can inherit that fd.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Builds the command once the fd number of the status pipe's write end is known.
type Build = Box<dyn FnOnce(i32) -> Command + Send>;

type Job = (
    Build,
    tokio::runtime::Handle,
    oneshot::Sender<std::io::Result<(Child, OwnedFd)>>,
);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn sender() -> std::io::Result<mpsc::Sender<Job>> {
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("borg-spawner".into())
            .spawn(move || {
                while let Ok((build, handle, reply)) = rx.recv() {
                    // tokio's process driver needs the caller's runtime to register the child.
                    let _guard = handle.enter();
                    let _ = reply.send(spawn_now(build));
                }
                // The channel lives in a static and is never closed: this thread,
                // and with it every death signal, lasts until the process ends.
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the spawner thread: {e}"));
        Mutex::new(tx)
    });
    tx.lock()
        .map(|g| g.clone())
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))
}

/// On the spawner thread: the pipe, the spawn, then the write end closed in borg.
fn spawn_now(build: Build) -> std::io::Result<(Child, OwnedFd)> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cmd = build(wr.as_raw_fd());
    let child = cmd.spawn();
    drop(wr);
    Ok((child?, rd))
}

/// Spawns the command made by `build` from the spawner thread. `build` receives the fd
/// number (in the child) of the write end of a fresh pipe; the read end is returned.
pub async fn spawn_with_pipe(
    build: impl FnOnce(i32) -> Command + Send + 'static,
) -> std::io::Result<(Child, OwnedFd)> {
    let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let (reply, rx) = oneshot::channel();
    sender()?
        .send((Box::new(build), handle, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.await
        .map_err(|_| std::io::Error::other("the spawner thread dropped the request"))?
}
