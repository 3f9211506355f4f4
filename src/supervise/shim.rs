//! The per-attempt shim: a tiny supervisor (borg re-executed as `borg __shim`) that
//! sits between borg and claude, so that no process of an attempt can outlive borg.
//!
//! Why a separate process: the claude CLI runs each Bash tool command in its own
//! session, so a process-group kill misses it, and SIGTERM/SIGKILL of the CLI leaves
//! those shells running (claude-cli.md §6). The shim therefore
//! - makes itself a child subreaper, so every orphan of the attempt reparents to it
//!   and stays findable by walking parent links, whatever session it moved to;
//! - asks the kernel for a death signal when borg dies (PR_SET_PDEATHSIG), and checks
//!   `getppid()` afterwards because borg may have died before the prctl took effect;
//! - starts claude in a process group of its own and reaps everything;
//! - turns borg's requests into actions: SIGINT and SIGTERM are forwarded to claude
//!   (the first two rungs of the stop ladder), SIGUSR1 means "kill every descendant
//!   now" and is also the death signal.
//!
//! It talks to borg over fd 3 (a pipe, which borg may pass on another fd named in the
//! first argument, `PARENT_PID:FD`; the shim moves it to 3), one line per fact:
//! `started PID STARTTIME`, `exited CODE`, `signaled SIG`, `killed N`, `spawn_error ERRNO MESSAGE`.
//! stdin, stdout and stderr are claude's own: the shim never touches the data.

use crate::supervise::procs;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::CString;

/// The fd on which the shim reports to borg.
pub const STATUS_FD: i32 = 3;

/// Name of the hidden subcommand.
pub const SUBCOMMAND: &str = "__shim";

fn report(line: &str) {
    // fd 3 may be missing (shim run by hand); writing then fails harmlessly.
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = nix::unistd::write(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(STATUS_FD) },
        &buf,
    );
}

/// The shim's view of its one direct child, claude.
struct Claude {
    pid: i32,
    alive: bool,
    /// Shell-style exit code: the code, or 128 + signal.
    code: i32,
}

impl Claude {
    /// Reaps every exited child without blocking, reporting claude's own end.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == self.pid => {
                    self.alive = false;
                    self.code = code;
                    report(&format!("exited {code}"));
                }
                Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == self.pid => {
                    self.alive = false;
                    self.code = 128 + s as i32;
                    report(&format!("signaled {}", s as i32));
                }
                Ok(_) => {}
            }
        }
    }

    /// Kills every descendant of the shim, in rounds until none is left (a process
    /// may fork while we kill its parent; its child then reparents to us and is
    /// caught in the next round). Returns how many distinct processes were signalled.
    fn kill_tree(&mut self, me: i32) -> usize {
        let mut killed = std::collections::HashSet::new();
        if self.alive {
            procs::signal_group(self.pid, Signal::SIGKILL);
        }
        for _ in 0..100 {
            self.reap();
            let live: Vec<i32> = procs::descendants(me)
                .into_iter()
                .filter(|&p| procs::stat(p).is_some_and(|s| s.state != 'Z'))
                .collect();
            if live.is_empty() {
                break;
            }
            for p in live {
                procs::signal(p, Signal::SIGKILL);
                killed.insert(p);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.reap();
        killed.len()
    }
}

fn has_children() -> bool {
    // Only ECHILD proves that no child at all is left.
    !matches!(
        nix::sys::wait::waitid(
            nix::sys::wait::Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Err(nix::errno::Errno::ECHILD)
    )
}

/// Runs the shim: `borg __shim PARENT_PID[:STATUS_FD] PROGRAM ARGS...`. Never returns.
pub fn main(args: &[String]) -> ! {
    let code = run(args);
    std::process::exit(code)
}

/// The shim's steps, in an order that matters: the status fd and the signal mask are
/// in place before the death signal can arrive, and the parent is checked after the
/// death signal was asked for, before claude is started.
fn run(args: &[String]) -> i32 {
    let Some(inv) = Invocation::parse(args) else {
        eprintln!("usage: borg {SUBCOMMAND} PARENT_PID[:STATUS_FD] PROGRAM [ARGS...]");
        return 2;
    };
    adopt_status_fd(inv.status_fd);
    let Some(signals) = block_signals() else {
        return 2;
    };
    if !tie_to_parent(inv.parent) {
        return 1;
    }
    let Some(mut claude) = start_claude(inv.program, inv.args) else {
        return 127;
    };
    supervise(&mut claude, &signals, inv.parent)
}

/// The shim's command line.
struct Invocation<'a> {
    /// borg's pid: the shim's parent for as long as borg lives.
    parent: i32,
    /// Where borg passed the status pipe (moved to [`STATUS_FD`]).
    status_fd: i32,
    /// claude.
    program: &'a str,
    /// claude's arguments.
    args: &'a [String],
}

impl<'a> Invocation<'a> {
    /// Reads `PARENT_PID[:STATUS_FD] PROGRAM ARGS...`; None when it is malformed.
    fn parse(args: &'a [String]) -> Option<Self> {
        // PARENT_PID, or PARENT_PID:FD when borg passed the status pipe on another fd.
        let (parent, status_fd) = match args.first().map(|a| a.split_once(':')) {
            Some(Some((p, fd))) => (p.parse::<i32>().ok(), fd.parse::<i32>().ok()),
            Some(None) => (args[0].parse::<i32>().ok(), Some(STATUS_FD)),
            None => (None, None),
        };
        Some(Invocation {
            parent: parent?,
            status_fd: status_fd?,
            program: args.get(1)?,
            args: args.get(2..).unwrap_or_default(),
        })
    }
}

/// Moves the status pipe to [`STATUS_FD`] and keeps it away from claude and its tools.
fn adopt_status_fd(status_fd: i32) {
    // SAFETY: plain fd calls with integer arguments; nothing else runs yet.
    unsafe {
        if status_fd != STATUS_FD {
            libc::dup2(status_fd, STATUS_FD);
            libc::close(status_fd);
        }
        libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// Blocks the signals the shim handles before the death signal is asked for or claude
/// exists, so none is lost or acted on by a default disposition; they are taken
/// synchronously with `sigtimedwait` in [`supervise`]. None when the mask cannot be set.
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

/// Asks for SIGUSR1 when borg dies and becomes the subreaper of the attempt's
/// orphans. False when borg is already gone.
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
    // borg may have died between our fork and the prctl: then no death signal will
    // ever come, and our parent is now someone else.
    !orphaned(parent)
}

/// Our parent is no longer borg: it died.
fn orphaned(parent: i32) -> bool {
    nix::unistd::getppid().as_raw() != parent
}

/// Starts claude and tells borg: `started PID STARTTIME`, or `spawn_error ERRNO
/// MESSAGE` and None.
fn start_claude(program: &str, args: &[String]) -> Option<Claude> {
    let pid = match spawn_claude(program, args) {
        Ok(pid) => pid,
        Err(e) => {
            report(&format!(
                "spawn_error {} {}",
                e.raw_os_error().unwrap_or(0),
                e
            ));
            return None;
        }
    };
    let start = procs::stat(pid).map(|s| s.start_time).unwrap_or(0);
    report(&format!("started {pid} {start}"));
    Some(Claude {
        pid,
        alive: true,
        code: 0,
    })
}

/// The wait/signal loop: reaps children as they exit, forwards the ladder's SIGINT and
/// SIGTERM to claude, and kills the whole tree on SIGUSR1 (borg's kill, or the death
/// signal) or when borg is found gone. Returns the shim's exit code once claude and
/// every other child are gone.
fn supervise(claude: &mut Claude, signals: &SigSet, parent: i32) -> i32 {
    let me = std::process::id() as i32;
    loop {
        match wait_signal(signals, 500) {
            Some(Signal::SIGCHLD) | None => {
                claude.reap();
                if !claude.alive && !has_children() {
                    return claude.code;
                }
                if orphaned(parent) {
                    // Our parent died and the death signal was missed: clean up anyway.
                    final_kill(claude, me);
                    return 1;
                }
            }
            Some(Signal::SIGINT) if claude.alive => procs::signal(claude.pid, Signal::SIGINT),
            Some(Signal::SIGTERM | Signal::SIGHUP) if claude.alive => {
                procs::signal(claude.pid, Signal::SIGTERM)
            }
            Some(Signal::SIGUSR1 | Signal::SIGQUIT) => {
                final_kill(claude, me);
                return claude.code;
            }
            Some(_) => {}
        }
    }
}

/// Kills every descendant and tells borg how many: `killed N`.
fn final_kill(claude: &mut Claude, me: i32) {
    let n = claude.kill_tree(me);
    report(&format!("killed {n}"));
}

/// Starts claude with `posix_spawnp` (vfork-like: the shim's pages are never copied,
/// which halves what the shim costs per attempt next to fork + exec), in a process
/// group of its own, with the PATH lookup `Command` would do.
///
/// claude must start clean: the shim blocks the signals it waits for, and Rust ignores
/// SIGPIPE; a child inherits both across exec, and then the ladder's SIGINT and SIGTERM
/// would stay pending forever so that only SIGKILL could stop it (observed: SigBlk
/// 0x14207 in the child before this reset). The attributes therefore empty the mask and
/// put every signal the shim touches back to its default action.
fn spawn_claude(program: &str, args: &[String]) -> std::io::Result<i32> {
    let invalid = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let prog = CString::new(program).map_err(|_| invalid())?;
    let mut argv_owned = vec![prog.clone()];
    for a in args {
        argv_owned.push(CString::new(a.as_str()).map_err(|_| invalid())?);
    }
    let mut argv: Vec<*mut libc::c_char> = argv_owned
        .iter()
        .map(|a| a.as_ptr() as *mut libc::c_char)
        .collect();
    argv.push(std::ptr::null_mut());
    extern "C" {
        static environ: *const *mut libc::c_char;
    }
    let check = |r: libc::c_int| match r {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    };
    // SAFETY: the attribute object is initialised before use and destroyed after; the
    // argument vector is NUL-terminated and outlives the call; `environ` is the
    // process's environment, read (not changed) by posix_spawnp.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawnattr_init(&mut attr))?;
        let result = (|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &none))?;
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            for s in [
                libc::SIGPIPE,
                libc::SIGCHLD,
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGUSR1,
                libc::SIGQUIT,
            ] {
                libc::sigaddset(&mut defaults, s);
            }
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &defaults))?;
            check(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK
                    | libc::POSIX_SPAWN_SETSIGDEF
                    | libc::POSIX_SPAWN_SETPGROUP) as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawnp(
                &mut pid,
                prog.as_ptr(),
                std::ptr::null(),
                &attr,
                argv.as_ptr(),
                environ,
            ))?;
            Ok(pid)
        })();
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

/// Waits up to `ms` for one of the blocked signals.
fn wait_signal(set: &SigSet, ms: i64) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    // SAFETY: the set and timespec are valid for the call; info may be null.
    let r = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if r > 0 {
        Signal::try_from(r).ok()
    } else {
        None
    }
}
