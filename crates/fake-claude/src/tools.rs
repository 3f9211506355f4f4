//! The four tools a scenario can call, executed for real in the cwd like the CLI does,
//! with the CLI's result texts and `tool_use_result` shapes (docs §4.3, fixtures
//! `success`, `file-changes`, `tool-errors`, `sigint-during-bash`).

use crate::out::{arr, jstr, Obj};
use crate::signals;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Suffix the CLI appends to successful Write/Edit results.
const FRESH: &str = " (file state is current in your context — no need to Read it back)";

/// What a tool call produced.
pub enum Outcome {
    /// Success: message `content`, whether to print `"is_error":false` (Bash does),
    /// and the `tool_use_result` object as JSON.
    Ok {
        /// Text of the tool_result.
        content: String,
        /// Bash prints `"is_error":false`; the file tools leave it out.
        bash: bool,
        /// `tool_use_result` JSON.
        tur: String,
    },
    /// Failure: message `content` (is_error true) and the plain-string `tool_use_result`.
    Err {
        /// Text of the tool_result.
        content: String,
        /// `tool_use_result`: `Error: …`.
        tur: String,
    },
    /// SIGINT arrived while the tool ran; its processes are already gone.
    Interrupted,
}

/// Shorthand for [`Outcome::Err`].
fn err(content: String, tur: String) -> Outcome {
    Outcome::Err { content, tur }
}

/// Makes `p` absolute against `cwd`, as the model would pass it.
pub fn abs(cwd: &Path, p: &str) -> PathBuf {
    let pb = PathBuf::from(p);
    if pb.is_absolute() {
        pb
    } else {
        cwd.join(pb)
    }
}

/// Lines as jsdiff sees them: each line without its `\n`, no empty tail element.
fn diff_lines(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.split('\n').collect()
}

/// A unified-diff `structuredPatch` (3 lines of context) between two texts.
pub fn structured_patch(old: &str, new: &str) -> String {
    let a = diff_lines(old);
    let b = diff_lines(new);
    // Trim the common head and tail first: edits are local, so the LCS table stays tiny.
    let mut pre = 0;
    while pre < a.len() && pre < b.len() && a[pre] == b[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre && suf < b.len() - pre && a[a.len() - 1 - suf] == b[b.len() - 1 - suf]
    {
        suf += 1;
    }
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    // ops: (' ' | '-' | '+', text)
    let mut ops: Vec<(char, &str)> = a[..pre].iter().map(|l| (' ', *l)).collect();
    let (n, m) = (am.len(), bm.len());
    if n * m <= 4_000_000 {
        let mut t = vec![0u32; (n + 1) * (m + 1)];
        let idx = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                t[idx(i, j)] = if am[i] == bm[j] {
                    t[idx(i + 1, j + 1)] + 1
                } else {
                    t[idx(i + 1, j)].max(t[idx(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((' ', am[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || t[idx(i + 1, j)] >= t[idx(i, j + 1)]) {
                ops.push(('-', am[i]));
                i += 1;
            } else {
                ops.push(('+', bm[j]));
                j += 1;
            }
        }
    } else {
        ops.extend(am.iter().map(|l| ('-', *l)));
        ops.extend(bm.iter().map(|l| ('+', *l)));
    }
    ops.extend(a[a.len() - suf..].iter().map(|l| (' ', *l)));

    const CTX: usize = 3;
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(i, _)| i)
        .collect();
    let mut hunks = Vec::new();
    let mut k = 0;
    while k < changes.len() {
        let first = changes[k];
        let mut last = first;
        while k + 1 < changes.len() && changes[k + 1] - last <= 2 * CTX {
            k += 1;
            last = changes[k];
        }
        k += 1;
        let start = first.saturating_sub(CTX);
        let end = (last + CTX + 1).min(ops.len());
        let old_before = ops[..start].iter().filter(|o| o.0 != '+').count();
        let new_before = ops[..start].iter().filter(|o| o.0 != '-').count();
        let slice = &ops[start..end];
        let old_lines = slice.iter().filter(|o| o.0 != '+').count();
        let new_lines = slice.iter().filter(|o| o.0 != '-').count();
        let lines = arr(slice.iter().map(|(c, l)| jstr(&format!("{c}{l}"))));
        hunks.push(
            Obj::new()
                .v("oldStart", &(old_before + 1))
                .v("oldLines", &old_lines)
                .v("newStart", &(new_before + 1))
                .v("newLines", &new_lines)
                .raw("lines", &lines)
                .end(),
        );
    }
    arr(hunks)
}

/// Write: create or overwrite (overwriting needs a prior Read in this session).
pub fn write(path: &Path, content: &str, was_read: bool) -> Outcome {
    let p = path.display().to_string();
    let original = std::fs::read_to_string(path).ok();
    if original.is_some() && !was_read {
        let m = "File has not been read yet. Read it first before writing to it.";
        return err(
            format!("<tool_use_error>{m}</tool_use_error>"),
            format!("Error: {m}"),
        );
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, content) {
        let m = format!("Cannot write {p}: {e}");
        return err(m.clone(), format!("Error: {m}"));
    }
    match original {
        None => Outcome::Ok {
            content: format!("File created successfully at: {p}{FRESH}"),
            bash: false,
            tur: Obj::new()
                .s("type", "create")
                .s("filePath", &p)
                .s("content", content)
                .raw("structuredPatch", "[]")
                .null("originalFile")
                .v("userModified", &false)
                .end(),
        },
        Some(orig) => Outcome::Ok {
            content: format!("The file {p} has been updated successfully.{FRESH}"),
            bash: false,
            tur: Obj::new()
                .s("type", "update")
                .s("filePath", &p)
                .s("content", content)
                .raw("structuredPatch", &structured_patch(&orig, content))
                .s("originalFile", &orig)
                .v("userModified", &false)
                .end(),
        },
    }
}

/// Read: `cat -n`-style numbered lines.
pub fn read(cwd: &Path, path: &Path) -> Outcome {
    let p = path.display().to_string();
    let Ok(text) = std::fs::read_to_string(path) else {
        let m = format!(
            "File does not exist. Note: your current working directory is {}.",
            cwd.display()
        );
        return err(m.clone(), format!("Error: {m}"));
    };
    // The CLI numbers `split('\n')`, so a trailing newline gives a last empty line.
    let lines: Vec<&str> = text.split('\n').collect();
    let numbered: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}\t{l}", i + 1))
        .collect();
    let file = Obj::new()
        .s("filePath", &p)
        .s("content", &text)
        .v("numLines", &lines.len())
        .v("startLine", &1)
        .v("totalLines", &lines.len());
    Outcome::Ok {
        content: numbered.join("\n"),
        bash: false,
        tur: Obj::new().s("type", "text").o("file", file).end(),
    }
}

/// Edit: replace `old` with `new` (once, or every match with `all`).
pub fn edit(cwd: &Path, path: &Path, old: &str, new: &str, all: bool, was_read: bool) -> Outcome {
    let p = path.display().to_string();
    let tool_err = |m: String| {
        err(
            format!("<tool_use_error>{m}</tool_use_error>"),
            format!("Error: {m}"),
        )
    };
    let Ok(orig) = std::fs::read_to_string(path) else {
        let m = format!(
            "File does not exist. Note: your current working directory is {}.",
            cwd.display()
        );
        return tool_err(m);
    };
    if !was_read {
        return tool_err("File has not been read yet. Read it first before writing to it.".into());
    }
    let count = if old.is_empty() {
        0
    } else {
        orig.matches(old).count()
    };
    if count == 0 {
        return tool_err(format!(
            "String to replace not found in file.\nString: {old}"
        ));
    }
    if count > 1 && !all {
        return tool_err(format!(
            "Found {count} matches of the string to replace, but replace_all is false. To replace all occurrences, set replace_all to true. To replace only one occurrence, please provide more context to uniquely identify the instance.\nString: {old}"
        ));
    }
    let updated = if all {
        orig.replace(old, new)
    } else {
        orig.replacen(old, new, 1)
    };
    if let Err(e) = std::fs::write(path, &updated) {
        return tool_err(format!("cannot write {p}: {e}"));
    }
    let content = if all {
        format!("The file {p} has been updated. All occurrences were successfully replaced.{FRESH}")
    } else {
        format!("The file {p} has been updated successfully.{FRESH}")
    };
    let tur = Obj::new()
        .s("filePath", &p)
        .s("oldString", old)
        .s("newString", new)
        .s("originalFile", &orig)
        .raw("structuredPatch", &structured_patch(&orig, &updated))
        .v("userModified", &false)
        .v("replaceAll", &all)
        .end();
    Outcome::Ok {
        content,
        bash: false,
        tur,
    }
}

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

/// Runs `bash -c SCRIPT` in its own session and waits; SIGINT kills its process group.
fn run_shell(cwd: &Path, command: &str) -> Outcome {
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return err(format!("pipe: {e}"), format!("Error: pipe: {e}")),
    };
    let wr2 = match wr.try_clone() {
        Ok(w) => w,
        Err(e) => return err(format!("pipe: {e}"), format!("Error: pipe: {e}")),
    };
    let mut cmd = bash_in_own_session(cwd, command, wr, wr2);
    let spawned = cmd.spawn();
    drop(cmd); // closes our copies of the pipe's write end, or EOF never comes
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return err(
                format!("spawn /bin/bash: {e}"),
                format!("Error: spawn /bin/bash: {e}"),
            )
        }
    };
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
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
    let pid = child.id() as libc::pid_t;
    let status = loop {
        if signals::interrupted() {
            // The shell leads its own group (setsid): kill the whole group.
            // SAFETY: plain kill(2) on a group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Outcome::Interrupted;
        }
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {
                signals::nap(5);
            }
            Err(e) => return err(format!("wait: {e}"), format!("Error: wait: {e}")),
        }
    };
    // A backgrounded grandchild may keep the pipe open: don't wait for EOF for long.
    let _ = rx.recv_timeout(std::time::Duration::from_millis(300));
    let raw = buf.lock().map(|g| g.clone()).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let output = text.trim_end_matches(['\n', '\r']).to_string();
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if code != 0 {
        let body = if output.is_empty() {
            format!("Exit code {code}")
        } else {
            format!("Exit code {code}\n{output}")
        };
        return err(body.clone(), format!("Error: {body}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_like_the_cli() {
        let orig = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
        let new = orig.replacen("a - b", "a + b", 1);
        assert_eq!(
            structured_patch(orig, &new),
            r#"[{"oldStart":1,"oldLines":5,"newStart":1,"newLines":5,"lines":[" def add(a, b):","-    return a - b","+    return a + b"," "," "," def mul(a, b):"]}]"#
        );
        assert_eq!(
            structured_patch("# scratch\n", "# rewritten\n\nnew body\n"),
            r##"[{"oldStart":1,"oldLines":1,"newStart":1,"newLines":3,"lines":["-# scratch","+# rewritten","+","+new body"]}]"##
        );
    }
}
