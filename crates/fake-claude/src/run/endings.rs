//! Every way a run ends with a `result` line (success, API failure after retries,
//! usage limit, max turns, max budget, aborted tool, unknown session), plus the
//! `api_retry` lines and the synthetic assistant error line that precede API failures.
//! The shapes differ per ending exactly as in the real captures (docs §4.4).

use super::api_failure::ApiFacts;
use super::{env_ms, Engine};
use crate::dsl::Api;
use crate::out::{arr, b62, epoch_secs, uuid, End, Obj, R};
use crate::signals;

/// The tool_result text after SIGINT aborts a tool (fixture `sigint-during-bash`).
const REJECTED: &str = "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed.";

impl Engine {
    /// The `usage` object of results (`zero`: all counts 0, as after API failures).
    pub(super) fn usage(&self, zero: bool) -> Obj {
        let (i, o) = if zero {
            (0, 0)
        } else {
            (self.in_tok - self.base.1, self.out_tok - self.base.2)
        };
        Obj::new()
            .v("input_tokens", &i)
            .v("cache_creation_input_tokens", &0)
            .v("cache_read_input_tokens", &0)
            .v("output_tokens", &o)
            .o(
                "server_tool_use",
                Obj::new()
                    .v("web_search_requests", &0)
                    .v("web_fetch_requests", &0),
            )
            .s("service_tier", "standard")
            .o(
                "cache_creation",
                Obj::new()
                    .v("ephemeral_1h_input_tokens", &0)
                    .v("ephemeral_5m_input_tokens", &0),
            )
            .s("inference_geo", "")
            .raw("iterations", "[]")
            .s("speed", "standard")
    }

    /// `modelUsage`: `{}` before any successful call, else one entry for the model.
    pub(super) fn model_usage(&self) -> String {
        if self.turns == 0 {
            return "{}".into();
        }
        let (_, _, ctx, max_out) = self.pricing();
        let m = Obj::new()
            .v("inputTokens", &self.in_tok)
            .v("outputTokens", &self.out_tok)
            .v("cacheReadInputTokens", &0)
            .v("cacheCreationInputTokens", &0)
            .v("webSearchRequests", &0)
            .f("costUSD", self.cost)
            .v("contextWindow", &ctx)
            .v("maxOutputTokens", &max_out);
        Obj::new().o(&self.cfg.model, m).end()
    }

    /// (`duration_ms`, `duration_api_ms`) so far.
    pub(super) fn durations(&self) -> (u64, u64) {
        let d = self.start.elapsed().as_millis() as u64;
        (d, d * 3 / 10)
    }

    /// The normal `success` result (exit 0 at the end of the run).
    pub(super) fn success_result(&mut self, text: &str) -> R {
        self.success_result_as(text, "end_turn", "completed")
    }

    /// A success result with these `stop_reason` and `terminal_reason` (a hook's
    /// `continue: false` ends the run `tool_use` / `hook_stopped`, as observed).
    pub(super) fn success_result_as(&mut self, text: &str, stop: &str, terminal: &str) -> R {
        let (dur, api) = self.durations();
        // Time to first token of the first call: a slice of the API time.
        let ttft = api / u64::from(self.msg_turns().max(1));
        let j = Obj::new()
            .s("type", "result")
            .s("subtype", "success")
            .v("is_error", &false)
            .null("api_error_status")
            .v("duration_ms", &dur)
            .v("duration_api_ms", &api)
            .v("ttft_ms", &ttft)
            .v("ttft_stream_ms", &(ttft * 95 / 100))
            .v("time_to_request_ms", &(ttft * 85 / 100))
            .v("num_turns", &self.num_turns())
            .s("result", text)
            .s("stop_reason", stop)
            .s("session_id", &self.sid())
            .f("total_cost_usd", self.cost)
            .o("usage", self.usage(false))
            .raw("modelUsage", &self.model_usage())
            .raw("permission_denials", &arr(self.denials.clone()));
        let j = match &self.structured {
            Some(s) => j.raw("structured_output", s),
            None => j,
        }
        .s("terminal_reason", terminal)
        .s("fast_mode_state", "off")
        .s("uuid", &uuid())
        .end();
        self.result_done = true;
        self.out.result(&j, text)
    }

    /// An `error_*` result: no `result` field, `errors[]` last. Ends the run with 1.
    pub(super) fn error_result(
        &mut self,
        subtype: &str,
        turns: u32,
        terminal: Option<&str>,
        errors: &[String],
        text: &str,
    ) -> R {
        let (dur, api) = self.durations();
        let mut o = Obj::new()
            .s("type", "result")
            .s("subtype", subtype)
            .v("duration_ms", &dur)
            .v("duration_api_ms", &api)
            .v("is_error", &true)
            .v("num_turns", &turns)
            .s("stop_reason", "tool_use")
            .s("session_id", &self.sid())
            .f("total_cost_usd", self.cost)
            .o("usage", self.usage(false))
            .raw("modelUsage", &self.model_usage())
            .raw("permission_denials", &arr(self.denials.clone()));
        if let Some(t) = terminal {
            o = o.s("terminal_reason", t);
        }
        let j = o
            .s("fast_mode_state", "off")
            .s("uuid", &uuid())
            .v("errors", errors)
            .end();
        self.result_done = true;
        self.out.result(&j, text)?;
        Err(End(1))
    }

    /// `error_max_turns` with limit N; ends the run with 1.
    pub(super) fn fail_max_turns(&mut self, n: u32) -> R {
        let e = vec![format!("Reached maximum number of turns ({n})")];
        let turns = self.num_turns();
        self.error_result(
            "error_max_turns",
            turns,
            Some("max_turns"),
            &e,
            &format!("Error: Reached max turns ({n})"),
        )
    }

    /// `error_max_budget_usd`; ends the run with 1.
    pub(super) fn fail_budget(&mut self) -> R {
        let shown = match &self.cfg.max_budget {
            Some((_, s)) => s.clone(),
            None => format!("{:.2}", self.cost),
        };
        let e = vec![format!("Reached maximum budget (${shown})")];
        let turns = self.msg_turns();
        self.error_result(
            "error_max_budget_usd",
            turns,
            None,
            &e,
            &format!("Error: Reached maximum budget (${shown})"),
        )
    }

    /// SIGINT during a tool: rejected tool_result, the interrupt user line, then
    /// `error_during_execution` / `aborted_tools`; ends the run with 1.
    pub(super) fn abort_tool(&mut self, id: &str) -> R {
        self.user_err(id, REJECTED, "User rejected tool use")?;
        let b = Obj::new()
            .s("type", "text")
            .s("text", "[Request interrupted by user for tool use]")
            .end();
        let line = self.user_line(b, None);
        self.emit(line)?;
        let e = vec![
            "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"
                .to_string(),
        ];
        let turns = self.num_turns() + 1;
        self.error_result(
            "error_during_execution",
            turns,
            Some("aborted_tools"),
            &e,
            "Error: aborted",
        )
    }

    /// `--resume` of an unknown id (fixture `resume-unknown`): stderr + error result.
    pub fn no_conversation(&mut self) -> R {
        let msg = format!("No conversation found with session ID: {}", self.sid());
        eprintln!("{msg}");
        let j = Obj::new()
            .s("type", "result")
            .s("subtype", "error_during_execution")
            .v("duration_ms", &0)
            .v("duration_api_ms", &0)
            .v("is_error", &true)
            .v("num_turns", &0)
            .null("stop_reason")
            .s("session_id", &self.sid())
            .v("total_cost_usd", &0)
            .o("usage", self.usage(true))
            .raw("modelUsage", "{}")
            .raw("permission_denials", "[]")
            .s("uuid", &uuid())
            .v("errors", &[&msg])
            .end();
        self.result_done = true;
        self.out.result(&j, &msg)?;
        Err(End(1))
    }

    /// The synthetic `"model":"<synthetic>"` assistant line that carries an API error.
    pub(super) fn synthetic(&mut self, text: &str, error: &str, with_request: bool) -> R {
        let usage = Obj::new()
            .v("input_tokens", &0)
            .v("output_tokens", &0)
            .v("cache_creation_input_tokens", &0)
            .v("cache_read_input_tokens", &0)
            .o(
                "server_tool_use",
                Obj::new()
                    .v("web_search_requests", &0)
                    .v("web_fetch_requests", &0),
            )
            .null("service_tier")
            .o(
                "cache_creation",
                Obj::new()
                    .v("ephemeral_1h_input_tokens", &0)
                    .v("ephemeral_5m_input_tokens", &0),
            )
            .null("inference_geo")
            .null("iterations")
            .null("speed");
        let message = Obj::new()
            .s("id", &uuid())
            .null("container")
            .s("model", "<synthetic>")
            .s("role", "assistant")
            .null("stop_details")
            .s("stop_reason", "stop_sequence")
            .s("stop_sequence", "")
            .s("type", "message")
            .o("usage", usage)
            .raw("content", &arr([Self::text_block(text)]))
            .null("context_management");
        let mut o = Obj::new()
            .s("type", "assistant")
            .o("message", message)
            .null("parent_tool_use_id")
            .s("session_id", &self.sid())
            .s("uuid", &uuid())
            .s("error", error);
        if with_request {
            o = o.s("request_id", &format!("req_011C{}", b62(20)));
        }
        let line = o.end();
        self.emit(line)
    }

    /// The API-failure result: subtype success, is_error true. Ends the run with 1.
    pub(super) fn api_result(&mut self, status: Option<u16>, text: &str, terminal: &str) -> R {
        let (dur, _) = self.durations();
        let j = Obj::new()
            .s("type", "result")
            .s("subtype", "success")
            .v("is_error", &true)
            .v("api_error_status", &status)
            .v("duration_ms", &dur)
            .v("duration_api_ms", &0)
            .v("num_turns", &(self.num_turns() + 1))
            .s("result", text)
            .s("stop_reason", "stop_sequence")
            .s("session_id", &self.sid())
            .f("total_cost_usd", self.cost)
            .o("usage", self.usage(self.msg_turns() == 0))
            .raw("modelUsage", &self.model_usage())
            .raw("permission_denials", &arr(self.denials.clone()))
            .s("terminal_reason", terminal)
            .s("fast_mode_state", "off")
            .s("uuid", &uuid())
            .end();
        self.result_done = true;
        self.out.result(&j, text)?;
        Err(End(1))
    }

    /// COUNT `system/api_retry` lines, sleeping `FAKE_CLAUDE_RETRY_DELAY_MS` after each.
    pub(super) fn retry_lines(
        &mut self,
        status: Option<u16>,
        error: &str,
        count: u32,
        max: u32,
    ) -> R {
        let sleep = env_ms("FAKE_CLAUDE_RETRY_DELAY_MS", 10);
        for i in 1..=count {
            let jitter = 1.0 + rand::random::<f64>() * 0.2;
            let shown = (500.0 * 2f64.powi(i as i32 - 1)).min(32_000.0) * jitter;
            let line = Obj::new()
                .s("type", "system")
                .s("subtype", "api_retry")
                .v("attempt", &i)
                .v("max_retries", &max)
                .f("retry_delay_ms", shown)
                .v("error_status", &status)
                .s("error", error)
                .s("session_id", &self.sid())
                .s("uuid", &uuid())
                .end();
            self.emit(line)?;
            if signals::nap(sleep) {
                return Err(End(0));
            }
        }
        Ok(())
    }

    /// `CLAUDE_CODE_MAX_RETRIES`, clamped to 15 like the CLI.
    pub(super) fn env_max_retries() -> Option<u32> {
        std::env::var("CLAUDE_CODE_MAX_RETRIES")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|v| v.min(15))
    }

    /// The `api-error` step: retries, synthetic line, is_error result; ends with 1.
    pub(super) fn api_error(&mut self, api: Api, retries: Option<u32>) -> R {
        self.close_turn()?;
        let facts = ApiFacts::of(api);
        if facts.retried {
            let (count, max) = match (Self::env_max_retries(), retries) {
                (Some(max), Some(r)) => (r.min(max), max),
                (Some(max), None) => (max, max),
                (None, Some(r)) => (r, r),
                (None, None) => (10, 10),
            };
            self.retry_lines(facts.status, facts.retry_error, count, max)?;
        }
        let with_request = !matches!(api, Api::NoKey | Api::Network);
        self.synthetic(&facts.text, facts.synthetic_error, with_request)?;
        self.api_result(facts.status, &facts.text, facts.terminal)
    }

    /// The `rate-limit` step: rejected `rate_limit_event`, synthetic line, 429 result.
    pub(super) fn rate_limited(&mut self, secs: i64, ms: bool) -> R {
        self.close_turn()?;
        let reset = epoch_secs().saturating_add(secs);
        self.rl_sent = true;
        self.rate_limit_line(
            "rejected",
            if ms {
                reset.saturating_mul(1000)
            } else {
                reset
            },
        )?;
        let text = format!("Claude AI usage limit reached|{reset}");
        self.synthetic(&text, "rate_limit", true)?;
        self.api_result(Some(429), &text, "completed")
    }
}
