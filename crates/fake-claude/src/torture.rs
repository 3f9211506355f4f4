//! Supervision torture: processes that escape or outlive fake-claude, output that is
//! huge, fast or not UTF-8 (docs/supervision.md F1, F2, F4, F11, F12), and memory that
//! grows (`alloc`).

use crate::out::{Out, R};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// argv[1] of the hidden sleeper mode: `fake-claude --fake-claude-sleeper MS [ignore]`.
pub const SLEEPER: &str = "--fake-claude-sleeper";

/// The hidden sleeper mode: sleep MS (0 = forever), optionally deaf to SIGINT/SIGTERM.
pub fn sleeper(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "ignore") {
        crate::signals::ignore();
    }
    let ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
    if ms == 0 {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
    0
}

/// This binary's path, for re-executing it as the sleeper.
fn self_exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into())
}

/// Spawns the sleeper in a new session, deaf to SIGINT/SIGTERM, stdio on /dev/null, with
/// our environment (so borg's cookie, e.g. `BORG_TASK_ID`, is there). Returns its pid.
/// It is deliberately never waited for.
pub fn grandchild_setsid() -> Option<u32> {
    let mut cmd = Command::new(self_exe());
    cmd.arg(SLEEPER)
        .arg("0")
        .arg("ignore")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd.spawn().ok()?;
    let pid = child.id();
    std::mem::forget(child);
    Some(pid)
}

/// Spawns the sleeper in our process group with our stdout (and stderr) inherited, so
/// the pipe stays open after fake-claude exits. Returns its pid.
pub fn grandchild_holds_stdout(ms: u64) -> Option<u32> {
    let child = Command::new(self_exe())
        .arg(SLEEPER)
        .arg(ms.max(1).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let pid = child.id();
    std::mem::forget(child);
    Some(pid)
}

/// Writes at least `total` bytes of copies of `line` (one JSON line with its newline)
/// to stdout, or plain text lines to stderr, in 64 KiB writes.
pub fn flood(out: &mut Out, line: &str, total: u64, to_stderr: bool) -> R {
    let unit: Vec<u8> = if to_stderr {
        let mut v = b"flood: ".to_vec();
        v.extend(std::iter::repeat_n(b'e', 1016));
        v.push(b'\n');
        v
    } else {
        line.as_bytes().to_vec()
    };
    let mut chunk = Vec::with_capacity(65536 + unit.len());
    while chunk.len() < 65536 {
        chunk.extend_from_slice(&unit);
    }
    let mut written: u64 = 0;
    let mut err = std::io::stderr().lock();
    while written < total {
        let left = total - written;
        // The last write is cut at a whole line, so every line stays valid.
        let n = if (left as usize) < chunk.len() {
            let lines = (left as usize).div_ceil(unit.len());
            lines * unit.len()
        } else {
            chunk.len()
        };
        if to_stderr {
            if err.write_all(&chunk[..n]).is_err() {
                return Ok(());
            }
        } else {
            out.raw(&chunk[..n])?;
        }
        written += n as u64;
    }
    Ok(())
}

/// One line of exactly `total` bytes (newline included, when `total` allows): `prefix`,
/// then `x` padding, then `suffix`. Streamed in 1 MiB writes, never held in memory.
pub fn huge_line(out: &mut Out, prefix: &str, suffix: &str, total: u64) -> R {
    let fixed = (prefix.len() + suffix.len() + 1) as u64;
    let pad = total.saturating_sub(fixed);
    out.raw(prefix.as_bytes())?;
    let block = vec![b'x'; 1 << 20];
    let mut left = pad;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.raw(&block[..n])?;
        left -= n as u64;
    }
    out.raw(suffix.as_bytes())?;
    out.raw(b"\n")
}

/// `alloc BYTES`: allocates and writes every page of BYTES (so the kernel counts it as
/// resident), and keeps it for the rest of the process's life.
pub fn alloc(bytes: u64) {
    let Ok(n) = usize::try_from(bytes) else {
        return;
    };
    let mut block = vec![0u8; n];
    for i in (0..n).step_by(4096) {
        block[i] = 1;
    }
    std::mem::forget(block);
}
