//! The reaper process itself (`borg __reaper PARENT_PID`, fd 3 its socket to borg):
//! one single-threaded loop over the socket and a signalfd.
//!
//! Its steps at start, in an order that matters: block the signals it takes through
//! the signalfd (before the death signal can arrive), ask for SIGUSR1 when the thread
//! of borg that spawned it dies and become a child subreaper, then check that its
//! parent is still borg (borg may have died before the prctl took effect). Then it
//! serves: starts children, forwards the ladder's signals, kills trees, reaps, samples
//! memory once a second while anything runs, and reports.
//!
//! When borg goes (its end of the socket closes, or the death signal comes and the
//! parent is no longer borg, or someone sends the reaper SIGTERM, SIGINT, SIGHUP or
//! SIGQUIT) it kills every tree at once and exits.

use super::posix::{self, cstr, Spawn};
use super::proto::{self, Assembler, Report, Request, SpawnRequest, RECV_BUF};
use super::tree::{Attempt, Scan, Tracker};
use crate::supervise::procs;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The fd on which the reaper talks to borg.
pub const SOCKET_FD: RawFd = 3;
/// How often the trees are sampled (memory) while attempts run. A child that lives
/// less than that still has its peak: the kernel's, taken when it is reaped.
const SAMPLE: Duration = Duration::from_secs(1);

/// Runs the reaper: `borg __reaper PARENT_PID`. Never returns.
pub fn main(args: &[String]) -> ! {
    let code = match args.first().and_then(|a| a.parse::<i32>().ok()) {
        Some(parent) => run(parent),
        None => {
            eprintln!(
                "usage: borg {} PARENT_PID (fd 3: borg's socket)",
                proto::SUBCOMMAND
            );
            2
        }
    };
    std::process::exit(code)
}

fn run(parent: i32) -> i32 {
    // SAFETY: fd 3 is the socket borg passed; nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    // SAFETY: fcntl with integer arguments on our own descriptor.
    unsafe { libc::fcntl(SOCKET_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let Some(mask) = block_signals() else {
        return 2;
    };
    if !tie_to_parent(parent) {
        return 1;
    }
    let Ok(sigfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        return 2;
    };
    if proto::set_nonblocking(&sock).is_err() {
        return 2;
    }
    let mut r = Reaper {
        parent,
        sock,
        tracker: Tracker::new(std::process::id() as i32),
        out: VecDeque::new(),
        asm: Assembler::default(),
        buf: vec![0u8; RECV_BUF],
        next_sample: Instant::now() + SAMPLE,
    };
    r.serve(&sigfd);
    r.kill_everything();
    0
}

/// Blocks the signals the reaper takes through its signalfd.
fn block_signals() -> Option<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).ok()?;
    Some(set)
}

/// Asks for SIGUSR1 when borg's spawning thread dies and becomes the subreaper of
/// every orphan of the attempts. False when borg is already gone.
fn tie_to_parent(parent: i32) -> bool {
    // SAFETY: plain prctl calls with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGUSR1 as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
    nix::unistd::getppid().as_raw() == parent
}

/// The reaper's state.
struct Reaper {
    /// borg's pid.
    parent: i32,
    /// The socket to borg (non-blocking).
    sock: OwnedFd,
    tracker: Tracker,
    /// Reports not yet sent (the socket was full).
    out: VecDeque<Vec<u8>>,
    asm: Assembler,
    buf: Vec<u8>,
    next_sample: Instant,
}

/// Why the serving loop ended.
enum Next {
    Go,
    Stop,
}

impl Reaper {
    /// The loop: until borg is gone.
    fn serve(&mut self, sigfd: &SignalFd) {
        loop {
            let (sock_ev, sig_ev) = match self.wait(sigfd) {
                Some(r) => r,
                None => continue,
            };
            if sig_ev && matches!(self.on_signals(sigfd), Next::Stop) {
                return;
            }
            if sock_ev.intersects(PollFlags::POLLOUT) {
                self.flush();
            }
            if sock_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                && matches!(self.on_readable(), Next::Stop)
            {
                return;
            }
            if !self.tracker.attempts.is_empty() && Instant::now() >= self.next_sample {
                self.on_sample();
            }
        }
    }

    /// Waits for the socket, a signal or the next sample; None on EINTR.
    fn wait(&self, sigfd: &SignalFd) -> Option<(PollFlags, bool)> {
        let mut want = PollFlags::POLLIN;
        if !self.out.is_empty() {
            want |= PollFlags::POLLOUT;
        }
        let timeout = if self.tracker.attempts.is_empty() {
            PollTimeout::NONE
        } else {
            let ms = self
                .next_sample
                .saturating_duration_since(Instant::now())
                .as_millis();
            PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::ZERO)
        };
        let mut fds = [
            PollFd::new(self.sock.as_fd(), want),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, timeout).ok()?;
        let sock_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let sig_ev = fds[1].revents().is_some_and(|r| !r.is_empty());
        Some((sock_ev, sig_ev))
    }

    /// Takes every pending signal: SIGCHLD reaps, the death signal and the stop
    /// signals end the reaper.
    fn on_signals(&mut self, sigfd: &SignalFd) -> Next {
        let mut next = Next::Go;
        let mut chld = false;
        while let Ok(Some(info)) = sigfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => chld = true,
                // The death signal fires when borg's spawning thread ends; only a
                // parent that is no longer borg means borg is gone.
                Ok(Signal::SIGUSR1) if nix::unistd::getppid().as_raw() == self.parent => {}
                Ok(_) => next = Next::Stop,
                Err(_) => {}
            }
        }
        if chld {
            self.reap_and_settle();
        }
        next
    }

    /// Reads requests until the socket is empty; Stop when borg closed it.
    fn on_readable(&mut self) -> Next {
        loop {
            match proto::recv_chunk(self.sock.as_raw_fd(), &mut self.buf) {
                Ok(Some(chunk)) => {
                    if let Some((body, fds)) = self.asm.push(chunk) {
                        self.on_request(&body, fds);
                    }
                }
                Ok(None) => return Next::Stop,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Go,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Stop,
            }
        }
    }

    fn on_request(&mut self, body: &[u8], fds: Vec<OwnedFd>) {
        match serde_json::from_slice::<Request>(body) {
            Ok(Request::Spawn(req)) => self.start(req, fds),
            Ok(Request::Signal { id, signal }) => {
                let child = self.tracker.attempts.get(&id).and_then(|a| a.child);
                if let (Some(pid), Ok(sig)) = (child, Signal::try_from(signal)) {
                    procs::signal(pid, sig);
                }
            }
            Ok(Request::Kill { id }) => self.kill_tree(id),
            Err(e) => eprintln!("borg reaper: unreadable request: {e}"),
        }
    }

    /// Starts one child with the three stdio ends that came with the request.
    fn start(&mut self, req: SpawnRequest, fds: Vec<OwnedFd>) {
        let id = req.id;
        match spawn_child(&req, &fds) {
            Ok(pid) => {
                drop(fds);
                let start_time = procs::stat(pid).map(|s| s.start_time).unwrap_or(0);
                self.tracker
                    .attempts
                    .insert(id, Attempt::new(req.uid, pid, req.max_rss_kb));
                self.report(&Report::Started {
                    id,
                    pid,
                    start_time,
                });
            }
            Err(e) => {
                self.report(&Report::SpawnError {
                    id,
                    errno: e.raw_os_error().unwrap_or(0),
                    message: e.to_string(),
                });
                self.report(&Report::Done { id, peak_rss_kb: 0 });
            }
        }
    }

    /// Reaps every exited child, reporting the end of attempts' children, then
    /// reports `done` for attempts whose trees are empty.
    fn reap_and_settle(&mut self) {
        self.reap();
        let ended: Vec<u64> = self
            .tracker
            .attempts
            .iter()
            .filter(|(_, a)| a.child.is_none())
            .map(|(&id, _)| id)
            .collect();
        if ended.is_empty() {
            return;
        }
        // A child's children are reparented before it is reaped, so an ended attempt
        // whose tree lives on has an orphan among the reaper's children. When there is
        // no orphan at all (the common case) no scan of /proc is needed.
        let me = std::process::id() as i32;
        let orphans = procs::children(me).into_iter().any(|p| {
            !self.tracker.attempts.values().any(|a| a.child == Some(p))
                && procs::stat(p).is_some_and(|s| s.state != 'Z')
        });
        if !orphans {
            for id in ended {
                self.finish(id);
            }
            return;
        }
        let scan = Scan::take();
        for id in ended {
            if self.tracker.members(id, &scan).is_empty() {
                self.finish(id);
            }
        }
    }

    fn reap(&mut self) {
        while let Some((pid, end, maxrss_kb)) = wait_any() {
            self.tracker.forget(pid);
            let Some(id) = self.tracker.child_reaped(pid) else {
                continue;
            };
            // The kernel's own peak of the child (and of the children it waited for):
            // exact even for a child that lived less than one sample.
            if let Some(a) = self.tracker.attempts.get_mut(&id) {
                a.peak_kb = a.peak_kb.max(maxrss_kb);
            }
            match end {
                End::Exited(code) => self.report(&Report::Exited { id, code }),
                End::Signaled(signal) => self.report(&Report::Signaled { id, signal }),
            }
        }
    }

    /// The attempt's tree is empty: `done`, and the reaper forgets it.
    fn finish(&mut self, id: u64) {
        if let Some(a) = self.tracker.attempts.remove(&id) {
            self.report(&Report::Done {
                id,
                peak_rss_kb: a.peak_kb,
            });
        }
    }

    /// Kills every process of the attempt's tree, in rounds until none is left (a
    /// process may fork while its parent is killed; the child then reparents to the
    /// reaper and is caught in the next round), then reports how many.
    fn kill_tree(&mut self, id: u64) {
        let Some(a) = self.tracker.attempts.get(&id) else {
            return;
        };
        if let Some(pid) = a.child {
            procs::signal_group(pid, Signal::SIGKILL);
        }
        let mut hit = HashSet::new();
        for _ in 0..100 {
            self.reap();
            let live = self.tracker.members(id, &Scan::take());
            if live.is_empty() {
                break;
            }
            for p in live {
                procs::signal(p, Signal::SIGKILL);
                hit.insert(p);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.reap();
        self.report(&Report::Killed {
            id,
            count: hit.len(),
        });
        if self
            .tracker
            .attempts
            .get(&id)
            .is_some_and(|a| a.child.is_none())
        {
            self.finish(id);
        }
    }

    /// borg is gone (or the run is over): every tree dies, and every orphan nobody
    /// claims, until the reaper has no child left.
    fn kill_everything(&mut self) {
        let ids: Vec<u64> = self.tracker.attempts.keys().copied().collect();
        for a in self.tracker.attempts.values() {
            if let Some(pid) = a.child {
                procs::signal_group(pid, Signal::SIGKILL);
            }
        }
        for id in ids {
            self.kill_tree(id);
        }
        for _ in 0..100 {
            self.reap();
            let me = std::process::id() as i32;
            let left = procs::descendants(me);
            if left.is_empty() {
                break;
            }
            for p in left {
                procs::signal(p, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.flush();
    }

    /// The periodic sample: memory peaks, limits passed, orphans nobody claims.
    fn on_sample(&mut self) {
        self.next_sample = Instant::now() + SAMPLE;
        for (id, rss_kb) in self.tracker.sample() {
            self.report(&Report::Memory { id, rss_kb });
        }
    }

    /// Queues a report and sends what the socket takes.
    fn report(&mut self, r: &Report) {
        self.out.extend(proto::chunks(r));
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(c) = self.out.front() {
            match proto::send_chunk(self.sock.as_raw_fd(), c, &[]) {
                Ok(()) => {
                    self.out.pop_front();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // borg is gone: nobody will read the reports.
                    self.out.clear();
                    return;
                }
            }
        }
    }
}

/// How a reaped process ended.
enum End {
    Exited(i32),
    Signaled(i32),
}

/// Reaps one exited child without blocking: its pid, how it ended and its peak
/// resident memory in KiB (`ru_maxrss`). None when no child has exited.
fn wait_any() -> Option<(i32, End, u64)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: both out-pointers point to live, writable values of the right type.
        let (pid, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let pid = libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage);
            (pid, usage)
        };
        if pid <= 0 {
            return None;
        }
        let end = if libc::WIFEXITED(status) {
            End::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            End::Signaled(libc::WTERMSIG(status))
        } else {
            continue;
        };
        return Some((pid, end, usage.ru_maxrss.max(0) as u64));
    }
}

/// Starts the child: the request's program in its cwd with its environment, its
/// stdin, stdout and stderr the three descriptors borg sent.
fn spawn_child(req: &SpawnRequest, fds: &[OwnedFd]) -> std::io::Result<i32> {
    let [stdin, stdout, stderr] = fds else {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    };
    let path = req
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = posix::lookup(&req.program, path)?;
    let mut argv = vec![cstr(&req.program)?];
    for a in &req.args {
        argv.push(cstr(a)?);
    }
    let envp = req
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<std::io::Result<Vec<_>>>()?;
    let raw = |f: &OwnedFd| -> RawFd { BorrowedFd::as_raw_fd(&f.as_fd()) };
    posix::spawn(&Spawn {
        program,
        argv,
        envp,
        cwd: Some(cstr(&req.cwd)?),
        fds: vec![(raw(stdin), 0), (raw(stdout), 1), (raw(stderr), 2)],
        null: Vec::new(),
    })
}
