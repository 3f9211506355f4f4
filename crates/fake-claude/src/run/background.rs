//! `run_in_background` Bash tasks (fixture `bash-background`): a `system/task_started`
//! line and an immediate tool result naming the output file; at exit the CLI gives
//! running tasks about 5 s, then kills them and prints `task_updated` /
//! `task_notification` after the `result`.

use super::{env_ms, Engine};
use crate::out::{b62, uuid, Obj, R};
use crate::signals;
use crate::tools::{self, Outcome};
use std::path::PathBuf;

/// One background task.
pub(super) struct Bg {
    /// The CLI-style task id (`b` + 8 lowercase characters).
    task_id: String,
    /// The tool call that started it.
    tool_use_id: String,
    /// Its description (the notification's `summary`).
    desc: String,
    /// The shell, leader of its own session.
    child: std::process::Child,
    /// Where its output goes.
    output: PathBuf,
}

impl Engine {
    /// The working directory as the CLI names it in paths: `/` and `.` become `-`.
    /// Shared by the init line and the tasks' folder, which must agree as the CLI's do.
    pub(crate) fn cwd_slug(&self) -> String {
        self.cfg
            .cwd
            .display()
            .to_string()
            .chars()
            .map(|c| if c == '/' || c == '.' { '-' } else { c })
            .collect()
    }

    /// The tasks' folder: `$TMPDIR/fake-claude-<uid>/<cwd slug>/<session>/tasks/`, like the
    /// CLI's `/tmp/claude-<uid>/…` (removed again at exit).
    fn tasks_dir(&self) -> PathBuf {
        let slug = self.cwd_slug();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        std::env::temp_dir()
            .join(format!("fake-claude-{uid}"))
            .join(slug)
            .join(&self.cfg.session_id)
            .join("tasks")
    }

    /// Starts a background Bash task and returns the tool result the CLI gives at once.
    pub(super) fn start_background(&mut self, id: &str, command: &str, desc: &str) -> R<Outcome> {
        let task_id = format!("b{}", b62(8).to_lowercase());
        let output = self.tasks_dir().join(format!("{task_id}.output"));
        let child = match tools::spawn_background(&self.shell_cwd, command, &output) {
            Ok(c) => c,
            Err(e) => {
                let m = format!("Failed to start background command: {e}");
                return Ok(Outcome::Err {
                    content: m.clone(),
                    tur: format!("Error: {m}"),
                });
            }
        };
        let line = Obj::new()
            .s("type", "system")
            .s("subtype", "task_started")
            .s("task_id", &task_id)
            .s("tool_use_id", id)
            .s("description", desc)
            .s("task_type", "local_bash")
            .s("uuid", &uuid())
            .s("session_id", &self.sid())
            .end();
        self.emit(line)?;
        let content = format!(
            "Command running in background with ID: {task_id}. Output is being written to: {}. You will be notified when it completes. To check interim output, use Read on that file path.",
            output.display()
        );
        let tur = Obj::new()
            .s("stdout", "")
            .s("stderr", "")
            .v("interrupted", &false)
            .v("isImage", &false)
            .v("noOutputExpected", &false)
            .s("backgroundTaskId", &task_id)
            .end();
        self.bg.push(Bg {
            task_id,
            tool_use_id: id.to_string(),
            desc: desc.to_string(),
            child,
            output,
        });
        Ok(Outcome::Ok {
            content,
            bash: true,
            tur,
        })
    }

    /// At exit: with `lines`, waits up to `FAKE_CLAUDE_AFTER_RESULT_MS` (5000) for running
    /// tasks, then kills what still runs (its whole session) and prints the task lines.
    /// Without `lines` (no result, or SIGINT) the tasks are just killed.
    pub(super) fn finish_background(&mut self, lines: bool) -> R {
        if self.bg.is_empty() {
            return Ok(());
        }
        if lines {
            let deadline = std::time::Instant::now()
                + std::time::Duration::from_millis(env_ms("FAKE_CLAUDE_AFTER_RESULT_MS", 5000));
            while std::time::Instant::now() < deadline
                && self
                    .bg
                    .iter_mut()
                    .any(|t| matches!(t.child.try_wait(), Ok(None)))
            {
                if signals::nap(20) {
                    break;
                }
            }
        }
        let tasks = std::mem::take(&mut self.bg);
        let mut result = Ok(());
        for mut t in tasks {
            let running = matches!(t.child.try_wait(), Ok(None));
            if running {
                // SAFETY: kill(2) on the session/group this run created.
                unsafe { libc::kill(-(t.child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = t.child.wait();
            }
            if lines && result.is_ok() {
                result =
                    self.task_end_lines(&t.task_id, &t.tool_use_id, &t.desc, running, &t.output);
            }
            let _ = std::fs::remove_file(&t.output);
        }
        // Remove our task folder, then its parents while they are empty.
        let tasks = self.tasks_dir();
        if let Some(session_dir) = tasks.parent() {
            let _ = std::fs::remove_dir_all(session_dir);
            let mut up = session_dir.parent();
            for _ in 0..2 {
                match up {
                    Some(d) if std::fs::remove_dir(d).is_ok() => up = d.parent(),
                    _ => break,
                }
            }
        }
        result
    }
}
