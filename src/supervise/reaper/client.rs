//! borg's side of the reaper: starts it once (from a thread that lives as long as it
//! does, because the death signal follows the thread that spawned it), sends it
//! requests, and routes its reports to the attempts they are about.
//!
//! One writer task sends requests in order (a request split in chunks is never
//! interleaved with another), one reader task routes reports: each attempt gets its
//! own channel, closed after `done`, or at once for every attempt when the reaper is
//! lost (its socket closed: it died, or was killed).

use super::posix::{self, cstr, Spawn};
use super::proto::{self, Assembler, Report, Request, SpawnRequest, RECV_BUF};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// A request on its way, with the descriptors it carries (closed once sent).
struct Outgoing {
    chunks: Vec<Vec<u8>>,
    fds: Vec<OwnedFd>,
}

/// A running reaper, as borg talks to it.
pub struct Reaper {
    /// The reaper's pid.
    pid: i32,
    sock: Arc<AsyncFd<OwnedFd>>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    routes: Mutex<HashMap<u64, mpsc::UnboundedSender<Report>>>,
    next_id: AtomicU64,
    lost: AtomicBool,
    /// Resolves once the reaper process was reaped.
    exited: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// One attempt's line to the reaper.
#[derive(Clone)]
pub struct AttemptHandle {
    reaper: Arc<Reaper>,
    id: u64,
}

impl AttemptHandle {
    /// The reaper's pid.
    pub fn reaper_pid(&self) -> i32 {
        self.reaper.pid
    }

    /// Asks the reaper to forward `sig` to the child (while it is unreaped). False
    /// when the reaper is gone.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> bool {
        self.reaper.send(
            &Request::Signal {
                id: self.id,
                signal: sig as i32,
            },
            Vec::new(),
        )
    }

    /// Asks the reaper to kill the child's whole tree. False when the reaper is gone:
    /// the caller must clean up by itself.
    pub fn kill(&self) -> bool {
        self.reaper.send(&Request::Kill { id: self.id }, Vec::new())
    }
}

static CURRENT: Mutex<Option<Arc<Reaper>>> = Mutex::new(None);

/// The reaper of this borg, started on first use (and again if it was lost).
pub fn get() -> std::io::Result<Arc<Reaper>> {
    let mut cur = CURRENT
        .lock()
        .map_err(|_| std::io::Error::other("reaper lock poisoned"))?;
    if let Some(r) = cur.as_ref().filter(|r| !r.lost.load(Ordering::Relaxed)) {
        return Ok(r.clone());
    }
    let r = Reaper::start()?;
    *cur = Some(r.clone());
    Ok(r)
}

/// Ends the reaper (every tree it still holds dies with it) and waits up to 5 s for
/// it to exit. Called when borg is done; a later [`get`] starts a new one.
pub fn shutdown() {
    let Some(r) = CURRENT.lock().ok().and_then(|mut c| c.take()) else {
        return;
    };
    // Ending it on purpose is no loss worth a warning.
    r.lost.store(true, Ordering::Relaxed);
    // Other handles may still hold the socket: shut it down rather than drop it, so
    // the reaper sees the end now.
    // SAFETY: shutdown(2) on a socket we own; no memory is involved.
    unsafe { libc::shutdown(r.sock.get_ref().as_raw_fd(), libc::SHUT_RDWR) };
    let rx = r.exited.lock().ok().and_then(|mut e| e.take());
    if let Some(rx) = rx {
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
}

impl Reaper {
    /// Starts the reaper process and the two tasks that talk to it.
    fn start() -> std::io::Result<Arc<Reaper>> {
        // Registering the socket needs the runtime's reactor (and panics without one).
        tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let (mine, theirs) = proto::socket_pair()?;
        proto::set_nonblocking(&mine)?;
        let (pid, exited) = spawn_reaper(theirs)?;
        // SAFETY: `mine` is an open socket owned by the AsyncFd from here on, so its
        // descriptor stays valid and the same for the AsyncFd's whole life.
        let sock = Arc::new(unsafe { AsyncFd::register(mine) }.map_err(std::io::Error::from)?);
        let (outbox, rx) = mpsc::unbounded_channel();
        let r = Arc::new(Reaper {
            pid,
            sock,
            outbox,
            routes: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            lost: AtomicBool::new(false),
            exited: Mutex::new(Some(exited)),
        });
        tracing::debug!(pid, "started the reaper");
        tokio::spawn(write_requests(r.clone(), rx));
        tokio::spawn(read_reports(r.clone()));
        Ok(r)
    }

    /// Asks the reaper to start a child with `stdio` (its stdin, stdout and stderr).
    /// Returns the attempt's handle and the channel of its reports.
    pub fn spawn(
        self: &Arc<Self>,
        mut req: SpawnRequest,
        stdio: [OwnedFd; 3],
    ) -> std::io::Result<(AttemptHandle, mpsc::UnboundedReceiver<Report>)> {
        req.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(req.id, tx);
        }
        let id = req.id;
        if !self.send(&Request::Spawn(req), stdio.into()) {
            self.forget(id);
            return Err(std::io::Error::other("the reaper is gone"));
        }
        let handle = AttemptHandle {
            reaper: self.clone(),
            id,
        };
        Ok((handle, rx))
    }

    fn send(&self, req: &Request, fds: Vec<OwnedFd>) -> bool {
        if self.lost.load(Ordering::Relaxed) {
            return false;
        }
        let out = Outgoing {
            chunks: proto::chunks(req),
            fds,
        };
        self.outbox.send(out).is_ok()
    }

    fn forget(&self, id: u64) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&id);
        }
    }

    /// The reaper is gone: every attempt's channel closes without `done`.
    fn lose(&self) {
        if !self.lost.swap(true, Ordering::Relaxed) {
            tracing::warn!(pid = self.pid, "the reaper is gone");
        }
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
    }
}

/// Starts `borg __reaper BORG_PID` with `sock` as its fd 3, from a thread that then
/// waits for it: the death signal fires when the spawning *thread* exits, so that
/// thread must live as long as the reaper, and waiting for it is what it can do.
/// Returns the pid and a channel told when the reaper was reaped.
fn spawn_reaper(sock: OwnedFd) -> std::io::Result<(i32, std::sync::mpsc::Receiver<()>)> {
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("borg-reaper-keeper".into())
        .spawn(move || {
            let started = spawn_reaper_now(&sock);
            drop(sock);
            let pid = started.as_ref().ok().copied();
            let _ = pid_tx.send(started);
            if let Some(pid) = pid {
                use nix::sys::wait::{waitpid, WaitStatus};
                let p = nix::unistd::Pid::from_raw(pid);
                while !matches!(
                    waitpid(p, None),
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                        | Err(nix::errno::Errno::ECHILD)
                ) {}
                let _ = exit_tx.send(());
            }
        })?;
    let pid = pid_rx
        .recv()
        .map_err(|_| std::io::Error::other("the reaper's keeper thread died"))??;
    Ok((pid, exit_rx))
}

fn spawn_reaper_now(sock: &OwnedFd) -> std::io::Result<i32> {
    // dup2 of a descriptor onto its own number may leave it close-on-exec: move it off
    // the number it is to have in the reaper first.
    let moved;
    let sock = if sock.as_raw_fd() == super::server::SOCKET_FD {
        // SAFETY: fcntl with integer arguments; the new descriptor is owned below.
        let fd = unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by F_DUPFD_CLOEXEC and nothing else owns it.
        moved = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        &moved
    } else {
        sock
    };
    // /proc/self/exe is the running binary even after its file was replaced (an
    // upgrade during a long run), when current_exe() names a path ending " (deleted)".
    let exe = "/proc/self/exe";
    posix::spawn(&Spawn {
        program: cstr(exe)?,
        argv: vec![
            cstr("borg")?,
            cstr(proto::SUBCOMMAND)?,
            cstr(&std::process::id().to_string())?,
        ],
        envp: Vec::new(),
        cwd: Some(cstr("/")?),
        fds: vec![(sock.as_raw_fd(), super::server::SOCKET_FD)],
        null: vec![0, 1],
    })
}

/// Sends requests in order, waiting when the socket is full; the descriptors of a
/// request close once it is sent (the reaper holds its own copies).
async fn write_requests(r: Arc<Reaper>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        let raw: Vec<RawFd> = out.fds.iter().map(AsRawFd::as_raw_fd).collect();
        let last = out.chunks.len().saturating_sub(1);
        for (i, c) in out.chunks.iter().enumerate() {
            let fds = if i == last { &raw[..] } else { &[][..] };
            if send_one(&r.sock, c, fds).await.is_err() {
                r.lose();
                return;
            }
        }
    }
}

async fn send_one(sock: &AsyncFd<OwnedFd>, chunk: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    loop {
        let mut guard = sock.writable().await?;
        match guard.try_io(|s| proto::send_chunk(s.get_ref().as_raw_fd(), chunk, fds)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// Routes reports to their attempts until the reaper's socket closes.
async fn read_reports(r: Arc<Reaper>) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut asm = Assembler::default();
    loop {
        let got = async {
            loop {
                let mut guard = r.sock.readable().await?;
                match guard.try_io(|s| proto::recv_chunk(s.get_ref().as_raw_fd(), &mut buf)) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            }
        }
        .await;
        let chunk = match got {
            Ok(Some(c)) => c,
            Ok(None) | Err(_) => break,
        };
        let Some((body, _)) = asm.push(chunk) else {
            continue;
        };
        match serde_json::from_slice::<Report>(&body) {
            Ok(rep) => route(&r, rep),
            Err(e) => tracing::warn!("unreadable report from the reaper: {e}"),
        }
    }
    r.lose();
}

fn route(r: &Reaper, rep: Report) {
    let id = rep.id();
    let done = matches!(rep, Report::Done { .. });
    if let Ok(mut routes) = r.routes.lock() {
        if let Some(tx) = routes.get(&id) {
            let _ = tx.send(rep);
        }
        if done {
            routes.remove(&id);
        }
    }
}
