//! The step dispatcher: what each scenario step does to the running engine. `step` is
//! the table; the steps that are more than one call are named methods below it, by
//! family (endings, timing, supervision torture).

use super::api_failure::ApiFacts;
use super::{env_ms, Engine};
use crate::dsl::Step;
use crate::out::{End, R};
use crate::signals;

impl Engine {
    /// Runs one step. `Err(End(code))` ends the run.
    pub fn step(&mut self, s: &Step) -> R {
        if signals::interrupted() {
            // SIGINT outside a tool: the CLI was waiting on the API and exits 0.
            return Err(End(0));
        }
        match s {
            Step::Text(t) => self.emit_text(t),
            Step::Tool {
                tool: tool @ crate::dsl::Tool::Structured(_),
                join,
            } => self.structured_output(tool, *join),
            Step::Tool { tool, join } => self.emit_tool(tool, *join),
            Step::Turn => self.close_turn(),
            Step::Result(t) => self.ensure_result(t.as_deref()),
            Step::Stderr(t) => {
                eprintln!("{t}");
                Ok(())
            }
            Step::ApiError(api, r) => self.api_error(*api, *r),
            Step::ApiRetry(api, n) => self.api_retry(*api, *n),
            Step::RateLimit(secs, ms) => self.rate_limited(*secs, *ms),
            Step::MaxTurns => self.max_turns_now(),
            Step::MaxBudget => {
                self.close_turn()?;
                self.fail_budget()
            }
            Step::NoResult(c) => self.exit_with(*c, ""),
            Step::Exit(c, msg) => self.exit_with(*c, msg),
            Step::CrashMidLine(abort) => self.crash_mid_line(*abort),
            Step::NoConversation => self.no_conversation(),
            Step::Sleep(ms) => self.sleep(*ms),
            Step::Slow(n, ms) => self.slow(*n, *ms),
            Step::Hang => {
                self.close_turn()?;
                signals::forever();
                Err(End(0))
            }
            Step::HangAfterResult => {
                self.ensure_result(None)?;
                signals::forever();
                Err(End(0))
            }
            Step::AfterResultLines(ms) => self.after_result_lines(*ms),
            // Attempt filters are resolved before the run; whatever is left runs as is.
            Step::OnAttempt(_, inner) | Step::First(_, inner) | Step::AfterAttempt(_, inner) => {
                self.step(inner)
            }
            Step::GrandchildSetsid => {
                let pid = crate::torture::grandchild_setsid();
                self.note_pid("setsid", pid);
                Ok(())
            }
            Step::GrandchildHoldsStdout(ms) => {
                let pid = crate::torture::grandchild_holds_stdout(*ms);
                self.note_pid("holds-stdout", pid);
                Ok(())
            }
            Step::IgnoreSignals => {
                signals::ignore();
                Ok(())
            }
            Step::Flood(n, to_stderr) => self.flood(*n, *to_stderr),
            Step::Alloc(n) => {
                crate::torture::alloc(*n);
                Ok(())
            }
            Step::HugeLine(n) => self.huge_line(*n),
            Step::BadUtf8 => {
                self.close_turn()?;
                self.bad_utf8()
            }
            Step::Instant => self.instant(),
        }
    }

    // Endings.

    /// `structured`: the StructuredOutput call in its message, then (the tool having
    /// taken the output) the result at once: `result` is the JSON text,
    /// `structured_output` the object, `stop_reason` `tool_use` (fixture
    /// `json-schema`). Without `--json-schema` the tool does not exist.
    fn structured_output(&mut self, tool: &crate::dsl::Tool, join: bool) -> R {
        self.emit_tool(tool, join)?;
        self.close_turn()?;
        match self.structured.clone() {
            Some(json) => {
                self.success_result_as(&json, "tool_use", "completed")?;
                Err(End(0))
            }
            None => Ok(()),
        }
    }

    /// `api-retry`: COUNT `api_retry` lines (the cap is at least COUNT), then go on.
    fn api_retry(&mut self, api: crate::dsl::Api, count: u32) -> R {
        self.close_turn()?;
        let facts = ApiFacts::of(api);
        let max = Self::env_max_retries().unwrap_or(10).max(count);
        self.retry_lines(facts.status, facts.retry_error, count, max)
    }

    /// `max-turns`: `error_max_turns` now, with `--max-turns` or the turns so far.
    fn max_turns_now(&mut self) -> R {
        self.close_turn()?;
        let n = self.cfg.max_turns.unwrap_or(self.msg_turns());
        self.fail_max_turns(n)
    }

    /// `no-result` / `exit`: the stderr text if any, then exit without a result.
    fn exit_with(&mut self, code: i32, stderr: &str) -> R {
        self.close_turn()?;
        if !stderr.is_empty() {
            eprintln!("{stderr}");
        }
        Err(End(code))
    }

    /// `crash-mid-line`: half a JSON line without its newline, then exit 1 or abort.
    fn crash_mid_line(&mut self, abort: bool) -> R {
        self.close_turn()?;
        let line = self.sample_line("this line is cut in the middle by a crash");
        let half = &line.as_bytes()[..line.len() / 2];
        self.out.raw(half)?;
        if abort {
            std::process::abort();
        }
        Err(End(1))
    }

    // Timing.

    /// `sleep` / `silence`: no output for a while; SIGINT meanwhile exits 0.
    fn sleep(&mut self, ms: u64) -> R {
        self.close_turn()?;
        if signals::nap(ms) {
            return Err(End(0));
        }
        Ok(())
    }

    /// `slow`: one message of N text blocks, a pause before each.
    fn slow(&mut self, n: u32, ms: u64) -> R {
        self.close_turn()?;
        for i in 1..=n {
            if signals::nap(ms) {
                return Err(End(0));
            }
            self.emit_text(&format!("slow line {i} of {n}"))?;
        }
        self.close_turn()
    }

    /// `after-result-lines`: the result, the background-task grace, then the task lines.
    fn after_result_lines(&mut self, ms: Option<u64>) -> R {
        self.ensure_result(None)?;
        let wait = ms.unwrap_or_else(|| env_ms("FAKE_CLAUDE_AFTER_RESULT_MS", 5000));
        if signals::nap(wait) {
            return Err(End(0));
        }
        self.task_lines()
    }

    // Supervision torture.

    /// `flood`: at least N bytes of ~1 KiB lines, on stdout or stderr.
    fn flood(&mut self, n: u64, to_stderr: bool) -> R {
        self.close_turn()?;
        let text = format!("flood {}", "f".repeat(700));
        let line = format!("{}\n", self.sample_line(&text));
        crate::torture::flood(&mut self.out, &line, n, to_stderr)
    }

    /// `huge-line`: one valid assistant line of N bytes, its text padded.
    fn huge_line(&mut self, n: u64) -> R {
        self.close_turn()?;
        let line = self.sample_line("HUGE_LINE_PADDING");
        let (pre, suf) = line.split_once("HUGE_LINE_PADDING").unwrap_or((&line, ""));
        let (pre, suf) = (pre.to_string(), suf.to_string());
        crate::torture::huge_line(&mut self.out, &pre, &suf, n)
    }

    /// `instant`: one `Done.` message and the result, nothing else.
    fn instant(&mut self) -> R {
        self.emit_text("Done.")?;
        self.close_turn()?;
        self.success_result("Done.")
    }
}
