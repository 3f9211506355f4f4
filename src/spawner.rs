//! A dedicated, never-ending thread that performs every fork of borg.
//!
//! PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, not the
//! process (supervision.md F6). The shim relies on that signal to clean up when borg
//! dies, so it must never fire while borg lives: tokio's blocking-pool threads retire
//! after 10 s idle, and worker threads end with the runtime. Forking from one thread
//! that lives as long as the process closes that hole.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

type Job = (
    Command,
    tokio::runtime::Handle,
    oneshot::Sender<std::io::Result<Child>>,
);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn sender() -> std::io::Result<mpsc::Sender<Job>> {
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("borg-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, handle, reply)) = rx.recv() {
                    // tokio's process driver needs the caller's runtime to register the child.
                    let _guard = handle.enter();
                    let _ = reply.send(cmd.spawn());
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

/// Spawns `cmd` from the spawner thread and returns the child.
pub async fn spawn(cmd: Command) -> std::io::Result<Child> {
    let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let (reply, rx) = oneshot::channel();
    sender()?
        .send((cmd, handle, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.await
        .map_err(|_| std::io::Error::other("the spawner thread dropped the request"))?
}
