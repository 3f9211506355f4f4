//! Starting a process with `posix_spawn`: vfork-like, so the spawner's pages are never
//! copied (borg's address space, the reaper's), in a process group of its own, with
//! chosen descriptors moved onto 0, 1, 2 (and 3), a working directory, an explicit
//! environment, an empty signal mask and default signal actions.
//!
//! Why the clean signal state: a child inherits its spawner's blocked signals and
//! ignored ones across exec. The reaper blocks the signals it waits for and Rust
//! ignores SIGPIPE; claude would inherit both, and then the ladder's SIGINT and SIGTERM
//! would stay pending forever so that only SIGKILL could stop it (observed with the
//! old shim: SigBlk 0x14207 in the child before this reset).

use std::ffi::CString;
use std::os::fd::RawFd;

/// Signals reset to their default action in the child.
const DEFAULTED: [libc::c_int; 8] = [
    libc::SIGPIPE,
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGQUIT,
    libc::SIGUSR2,
];

/// One process to start.
pub struct Spawn {
    /// The program, an absolute or relative path (no PATH search here: see [`lookup`]).
    pub program: CString,
    /// argv, argv[0] included.
    pub argv: Vec<CString>,
    /// The complete environment, `NAME=value`.
    pub envp: Vec<CString>,
    /// Working directory, if not the spawner's.
    pub cwd: Option<CString>,
    /// `(fd in the spawner, fd number in the child)`, applied in order with `dup2`.
    pub fds: Vec<(RawFd, RawFd)>,
    /// Descriptors opened on `/dev/null` in the child (e.g. stdin).
    pub null: Vec<RawFd>,
}

fn invalid() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EINVAL)
}

/// A string as a C string; a NUL byte inside makes it unusable (EINVAL).
pub fn cstr(s: &str) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| invalid())
}

/// The program to run: `program` itself when it holds a `/`, else the first
/// executable file of that name on `path` (the child's PATH, as `execvp` would do).
pub fn lookup(program: &str, path: Option<&str>) -> std::io::Result<CString> {
    if program.contains('/') {
        return cstr(program);
    }
    use std::os::unix::fs::PermissionsExt;
    let found = path
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    match found {
        Some(p) => cstr(&p.to_string_lossy()),
        None => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
    }
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    match r {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Starts `s` in a new process group; returns its pid.
pub fn spawn(s: &Spawn) -> std::io::Result<i32> {
    let mut argv: Vec<*mut libc::c_char> = s.argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = s.envp.iter().map(|a| a.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());
    let devnull = c"/dev/null";
    // SAFETY: the attribute and file-action objects are initialised before use and
    // destroyed after; every pointer handed to posix_spawn (program, argv, envp, the
    // paths in the file actions) points into values that outlive the call, and the
    // vectors are NUL-terminated.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let mut acts: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawnattr_init(&mut attr))?;
        if let Err(e) = check(libc::posix_spawn_file_actions_init(&mut acts)) {
            libc::posix_spawnattr_destroy(&mut attr);
            return Err(e);
        }
        let result = (|| {
            clean_signals(&mut attr)?;
            check(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK
                    | libc::POSIX_SPAWN_SETSIGDEF
                    | libc::POSIX_SPAWN_SETPGROUP) as libc::c_short,
            ))?;
            for &(from, to) in &s.fds {
                check(libc::posix_spawn_file_actions_adddup2(&mut acts, from, to))?;
            }
            for &fd in &s.null {
                check(libc::posix_spawn_file_actions_addopen(
                    &mut acts,
                    fd,
                    devnull.as_ptr(),
                    libc::O_RDWR,
                    0,
                ))?;
            }
            if let Some(dir) = &s.cwd {
                check(libc::posix_spawn_file_actions_addchdir_np(
                    &mut acts,
                    dir.as_ptr(),
                ))?;
            }
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                s.program.as_ptr(),
                &acts,
                &attr,
                argv.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut acts);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

/// An empty signal mask and default actions for every signal borg or the reaper
/// touches.
///
/// # Safety
/// `attr` must be an initialised spawn attribute object.
unsafe fn clean_signals(attr: &mut libc::posix_spawnattr_t) -> std::io::Result<()> {
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    check(libc::posix_spawnattr_setsigmask(attr, &none))?;
    let mut defaults: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut defaults);
    for s in DEFAULTED {
        libc::sigaddset(&mut defaults, s);
    }
    check(libc::posix_spawnattr_setsigdefault(attr, &defaults))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_starts_in_its_own_group_with_a_clean_signal_state() {
        let (r, w) = nix::unistd::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let s = Spawn {
            program: lookup("sh", Some("/bin:/usr/bin")).unwrap(),
            argv: vec![
                cstr("sh").unwrap(),
                cstr("-c").unwrap(),
                cstr("grep -E '^(SigBlk|SigIgn)' /proc/self/status; echo \"$K\"; pwd").unwrap(),
            ],
            envp: vec![cstr("K=v").unwrap()],
            cwd: Some(cstr("/").unwrap()),
            fds: vec![(w.as_raw_fd(), 1)],
            null: vec![0],
        };
        let pid = spawn(&s).unwrap();
        drop(w);
        let mut out = String::new();
        use std::io::Read;
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert!(
            matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "{st:?}"
        );
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        assert!(out.contains("\nv\n/\n"), "{out}");
        let missing = lookup("no-such-program-anywhere", Some("/bin"));
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }
}
