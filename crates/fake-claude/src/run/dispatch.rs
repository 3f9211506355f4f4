//! The step dispatcher: what each scenario step does to the running engine.

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
            Step::Tool { tool, join } => self.emit_tool(tool, *join),
            Step::Turn => self.close_turn(),
            Step::Result(t) => self.ensure_result(t.as_deref()),
            Step::ApiError(api, r) => self.api_error(*api, *r),
            Step::ApiRetry(api, n) => {
                self.close_turn()?;
                let (status, err, ..) = Self::api_facts(*api);
                let max = Self::env_max_retries().unwrap_or(10).max(*n);
                self.retry_lines(status, err, *n, max)
            }
            Step::MaxTurns => {
                self.close_turn()?;
                let n = self.cfg.max_turns.unwrap_or(self.msg_turns());
                self.fail_max_turns(n)
            }
            Step::MaxBudget => {
                self.close_turn()?;
                self.fail_budget()
            }
            Step::NoResult(c) => {
                self.close_turn()?;
                Err(End(*c))
            }
            Step::Exit(c, msg) => {
                self.close_turn()?;
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                Err(End(*c))
            }
            Step::Stderr(t) => {
                eprintln!("{t}");
                Ok(())
            }
            Step::CrashMidLine(abort) => {
                self.close_turn()?;
                let line = self.sample_line("this line is cut in the middle by a crash");
                let half = &line.as_bytes()[..line.len() / 2];
                self.out.raw(half)?;
                if *abort {
                    std::process::abort();
                }
                Err(End(1))
            }
            Step::Sleep(ms) => {
                self.close_turn()?;
                if signals::nap(*ms) {
                    return Err(End(0));
                }
                Ok(())
            }
            Step::Slow(n, ms) => {
                self.close_turn()?;
                for i in 1..=*n {
                    if signals::nap(*ms) {
                        return Err(End(0));
                    }
                    self.emit_text(&format!("slow line {i} of {n}"))?;
                }
                self.close_turn()
            }
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
            Step::AfterResultLines(ms) => {
                self.ensure_result(None)?;
                let wait = ms.unwrap_or_else(|| env_ms("FAKE_CLAUDE_AFTER_RESULT_MS", 5000));
                if signals::nap(wait) {
                    return Err(End(0));
                }
                self.task_lines()
            }
            Step::RateLimit(secs, ms) => self.rate_limited(*secs, *ms),
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
            Step::Flood(n, to_stderr) => {
                self.close_turn()?;
                let text = format!("flood {}", "f".repeat(700));
                let line = format!("{}\n", self.sample_line(&text));
                crate::torture::flood(&mut self.out, &line, *n, *to_stderr)
            }
            Step::HugeLine(n) => {
                self.close_turn()?;
                let line = self.sample_line("HUGE_LINE_PADDING");
                let (pre, suf) = line.split_once("HUGE_LINE_PADDING").unwrap_or((&line, ""));
                let (pre, suf) = (pre.to_string(), suf.to_string());
                crate::torture::huge_line(&mut self.out, &pre, &suf, *n)
            }
            Step::BadUtf8 => {
                self.close_turn()?;
                self.bad_utf8()
            }
            Step::NoConversation => self.no_conversation(),
            Step::Instant => {
                self.emit_text("Done.")?;
                self.close_turn()?;
                self.success_result("Done.")
            }
        }
    }
}
