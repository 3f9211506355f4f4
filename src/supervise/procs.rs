//! Facts about processes read from `/proc`, and signals sent by pid.
//!
//! borg only ever signals processes it can prove it started: the reaper's descendants
//! (found by walking parent links), process groups it created, or processes whose
//! recorded start time and boot id still match (so a reused pid is never hit).

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::fs;

/// The fields of `/proc/PID/stat` that borg needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// State letter (R, S, Z, ...).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// Start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

/// Reads `/proc/PID/stat`; None when the process is gone.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of a `/proc/PID/stat` file. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    Some(ProcStat {
        pid,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgid: rest.get(2)?.parse().ok()?,
        sid: rest.get(3)?.parse().ok()?,
        start_time: rest.get(19)?.parse().ok()?,
    })
}

/// This machine's boot id (changes at every boot), or "" when unreadable. Read once:
/// it cannot change while this process lives, and every attempt records it.
pub fn boot_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
    .clone()
}

/// Every live process, by pid.
pub fn all() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter_map(stat)
        .collect()
}

/// Every descendant of `root` (not `root` itself), found by following parent links.
pub fn descendants(root: i32) -> Vec<i32> {
    descendants_in(&children_map(&all()), root)
}

/// Children of each process, from one scan of `/proc`: parent pid → child pids.
pub fn children_map(procs: &[ProcStat]) -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    children
}

/// Every descendant of `root` in a children map (not `root` itself).
pub fn descendants_in(children: &HashMap<i32, Vec<i32>>, root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(c) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

/// The direct children of `pid`: its threads' `children` files when the kernel has
/// them (one small read for a single-threaded process), else a scan of `/proc`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.filter_map(|e| e.ok()) {
        match fs::read_to_string(t.path().join("children")) {
            Ok(text) => out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            ),
            Err(_) => {
                return all()
                    .into_iter()
                    .filter(|p| p.ppid == pid)
                    .map(|p| p.pid)
                    .collect()
            }
        }
    }
    out
}

/// Resident memory of one process in KiB (`/proc/PID/statm`), 0 when it is gone.
pub fn rss_kb(pid: i32) -> u64 {
    static PAGE_KB: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let page = *PAGE_KB.get_or_init(|| {
        // SAFETY: sysconf with a constant name has no preconditions.
        let b = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if b > 0 {
            b as u64 / 1024
        } else {
            4
        }
    });
    fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// The value of `key` in the environment a process started with, if readable.
pub fn environ_value(pid: i32, key: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Kills what is left of an attempt whose supervisor is gone: the recorded process
/// group while the recorded pid is still the same process (start time and boot id
/// match, so a reused pid is never hit), and every process carrying the attempt's
/// cookie `uid`. Returns how many processes were signalled.
pub fn kill_leftovers(pid: i64, pgid: i64, start_time: u64, boot: &str, uid: &str) -> usize {
    let mut n = 0;
    if same_process(pid, start_time, boot) {
        signal_group(pgid as i32, Signal::SIGKILL);
        signal(pid as i32, Signal::SIGKILL);
        n += 1;
    }
    if !uid.is_empty() && boot == boot_id() {
        for p in with_env("BORG_ATTEMPT_UID", uid) {
            signal(p, Signal::SIGKILL);
            n += 1;
        }
    }
    n
}

/// The machine's available memory (`MemAvailable` of `/proc/meminfo`), bytes; None
/// when unreadable.
pub fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Pids whose environment holds `key=value` (the attempt cookie), self excluded.
/// Processes of other users are skipped silently (their environ is unreadable).
pub fn with_env(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// True when `pid` is alive and is the same process that was recorded (same start
/// time, same boot). A zombie counts as gone.
pub fn same_process(pid: i64, start_time: u64, boot: &str) -> bool {
    if boot != boot_id() || pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    matches!(stat(pid as i32), Some(s) if s.start_time == start_time && s.state != 'Z')
}

/// Sends `sig` to one pid, ignoring "no such process".
pub fn signal(pid: i32, sig: Signal) {
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Sends `sig` to a process group, ignoring "no such process".
pub fn signal_group(pgid: i32, sig: Signal) {
    if pgid > 1 {
        let _ = kill(Pid::from_raw(-pgid), sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let s = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.pid, p.state, p.ppid, p.pgid, p.sid, p.start_time),
            (1234, 'S', 1, 1234, 1234, 98765)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn own_process_is_recognised_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i64;
        let st = stat(me as i32).unwrap().start_time;
        assert!(same_process(me, st, &boot_id()));
        assert!(!same_process(me, st + 1, &boot_id()));
        assert!(!same_process(me, st, "another-boot"));
    }
}
