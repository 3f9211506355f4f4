//! # fake-claude: a scripted stand-in for `claude -p --output-format stream-json --verbose`
//!
//! borg's integration tests, and users' dry runs, put this binary in place of the real
//! Claude Code CLI (2.1.197). It speaks the same protocol: the same flags and argument
//! errors, the same stream-json events with the same field names and key order, the same
//! exit codes, and the same process and signal behaviour (see `docs/claude-cli.md` and
//! the real captures in `tests/fixtures/`). The "model" is a scenario you write.
//!
//! ## Invocation
//!
//! ```text
//! fake-claude -p --output-format stream-json --verbose [flags] < prompt.txt
//! ```
//!
//! * The prompt is read from stdin to EOF (or taken from a positional argument, in which
//!   case stdin is not read). Empty prompt → stderr
//!   `Error: Input must be provided either through stdin or as a prompt argument when using --print`, exit 1.
//! * `-p`/`--print` is required (no interactive mode). `--output-format stream-json` without
//!   `--verbose` → stderr `Error: When using --print, --output-format=stream-json requires --verbose`,
//!   exit 1, empty stdout. `text` and `json` formats work too (result only).
//! * Accepted: `--verbose`, `--permission-mode X` / `=X`, `--dangerously-skip-permissions`,
//!   `--model`, `--max-turns`, `--max-budget-usd`, `--allowedTools=…`, `--disallowedTools=…`,
//!   `--tools=…`, `--session-id UUID`, `--resume ID` / `-r ID` (the session id stays ID),
//!   `--continue`, `--fork-session` (new id), `--append-system-prompt`, `--input-format text|stream-json`,
//!   `--replay-user-messages`, and the other real flags (ignored). Variadic flags eat following words like commander
//!   does (write `--tools=Read`). Unknown flag → `error: unknown option '--x'`, exit 1.
//! * `--input-format stream-json`: each stdin line `{"type":"user","message":{"content":…}}`
//!   is one turn with its own `init` line, its user line echoed back (`"isReplay":true`)
//!   with `--replay-user-messages`, its own scenario (that message's `#fake` lines, or the
//!   scenario file, or the default) and its own `result`; `usage`/`num_turns` are per
//!   message, `total_cost_usd`/`modelUsage` cumulative, as observed. Attempt filters use
//!   the invocation's attempt number.
//! * `--version` → `2.1.197 (Claude Code)` (override the number with `FAKE_CLAUDE_VERSION`).
//! * Root (euid 0) with `bypassPermissions` or `--dangerously-skip-permissions`, without
//!   `IS_SANDBOX=1` → stderr `--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons`, exit 1.
//! * Permission modes act like the real ones: `bypassPermissions`/`auto` allow everything;
//!   `acceptEdits` allows Write/Edit/Read but denies Bash; `default`/`plan` deny Write/Edit/Bash;
//!   `dontAsk` denies them with its own text. `--allowedTools` rules (`Bash`, `Bash(git *)`,
//!   `Write`) lift a denial. Denials are is_error tool results, the run still succeeds, and
//!   they are listed in `result.permission_denials`. Read is always allowed. A tool missing
//!   from `--tools` or listed in `--disallowedTools` gives `No such tool available: X`.
//!
//! ## Where the scenario comes from
//!
//! 1. the file named by `$FAKE_CLAUDE_SCENARIO` (one step per line; blank lines and `#`
//!    comments skipped; a leading `#fake ` is allowed), else the file
//!    `$FAKE_CLAUDE_SCENARIO_DIR/<task key>` if it exists (the key as for the state dir
//!    below; a way to script the tasks borg creates, e.g. resolve tasks), else
//! 2. every prompt line whose trimmed text starts with `#fake ` (all of them, in order), else
//! 3. the default: `text "Done."` → a success result `Done.` (nothing written to the cwd).
//!
//! A bad scenario line → stderr `fake-claude: scenario line N: <why>: <line>`, exit **2**
//! (N is the line number in the prompt or file). Nothing is printed on stdout then.
//!
//! ## The scenario language
//!
//! One step per line. Words are separated by spaces; `"..."` quotes with the escapes
//! `\n \t \r \0 \\ \"`; `'...'` quotes literally. `MS` is milliseconds (`500`, `500ms`,
//! `2s`); `BYTES` takes `K/KiB/M/MiB/G/GiB` suffixes (`64MiB`, `1GiB`). Paths are relative
//! to the cwd (absolute paths work too); the events show absolute paths like the CLI.
//! `text`, `result` and `stderr` join several words with spaces (`text all done`).
//! Blank directive lines are skipped.
//!
//! ### Model turns
//!
//! Content steps (`text` and the tools) are grouped into model messages, each printed as
//! one `assistant` line per content block sharing one `message.id`, then the `user`
//! tool_result lines of that message's tools, in order, after the tools really ran:
//! * a `text` starts a new message if the current one already has a tool call, else it joins it;
//! * a tool step starts a new message if the current one already has a tool call, so
//!   **each tool is its own turn** by default, with any text just before it;
//! * prefix a tool step with `+` to keep it in the previous tool's message
//!   (`+ read calc.py`: several tool calls in one response);
//! * `turn` ends the current message; every non-content step also ends it first.
//!
//! Each message counts as one API call: 1000 input + 100 output tokens, priced by model
//! (opus $0.0075, sonnet $0.0045, haiku $0.0015 per call). `num_turns` = calls, + 1 if any
//! tool ran (as observed). With `--max-turns N` (or `CLAUDE_CODE_MAX_TURNS`), message N+1
//! is not made: `error_max_turns` instead. With `--max-budget-usd X`, the first message
//! whose cumulative cost exceeds X ends the run with `error_max_budget_usd`, its tool calls
//! never run. A `rate_limit_event` with status `allowed` is printed just before the first
//! message (set `FAKE_CLAUDE_NO_RATE_LIMIT_EVENT=1` to leave it out).
//!
//! ### Content steps
//!
//! | step | what it does |
//! |---|---|
//! | `text "TEXT"` | an assistant text block |
//! | `write PATH "CONTENT"` | Write tool: creates parent dirs, writes the file. Result `File created successfully at: …` (`tool_use_result.type` `create`) or, over an existing file, `The file … has been updated successfully.` (`update`, with `structuredPatch`). Overwriting needs a prior `read` in this run, like the CLI: else is_error `File has not been read yet. Read it first before writing to it.` |
//! | `read PATH` | Read tool: numbered lines (`1\tline`); a missing file is an is_error `File does not exist. …` |
//! | `edit PATH "OLD" "NEW" [all]` | Edit tool: really replaces OLD (once, or every match with `all`). Needs a prior `read`. Errors as the CLI: `String to replace not found in file.`, `Found N matches…` |
//! | `bash "COMMAND" ["DESCRIPTION"]` | Bash tool: runs `/bin/bash -c COMMAND` in the cwd, **in its own session** (setsid), stdin /dev/null, stdout+stderr merged; a `cd` carries over to later `bash` steps (the CLI's `eval '…' && pwd -P >| file` trick). Exit 0 → content = output (`is_error:false`); else `Exit code N\n<output>`, is_error. SIGINT kills the shell's whole process group (see Signals) |
//! | `bash-bg "COMMAND" ["DESCRIPTION"]` | Bash with `run_in_background:true`: starts the command in its own session (output to `$TMPDIR/fake-claude-<uid>/<cwd slug>/<session>/tasks/<id>.output`), prints `system/task_started`, and at once the tool result `Command running in background with ID: <id>. …` (`tool_use_result.backgroundTaskId`). At exit, after the result, running tasks get `FAKE_CLAUDE_AFTER_RESULT_MS` (5000) to finish, then their session is SIGKILLed and `system/task_updated` (`killed`) + `system/task_notification` (`stopped`) follow the result, as observed; a task that finished by then gets one `task_notification` `completed` (not observed). Without a result (SIGINT, `no-result` …) they are killed silently; SIGTERM leaves them running |
//! | `mcp TOOL ['{JSON}']` | a call of an MCP tool of a `--mcp-config` server: `TOOL` is `mcp__server__tool`, or a bare tool name of the `borg` server (`mcp lock_files '{"paths":["a.rs"],"reason":"r"}'`); the arguments default to `{}`. The `tool_use` line carries `tool_use_meta` (display names), the call is a real `tools/call` with `_meta` naming the tool_use id, and the result line has the CLI's shape: structured content as its JSON text (`tool_use_result` `{content, structuredContent}`), plain content blocks as they are, an error as its text with `is_error` (`tool_use_result` `Error: …`). A tool no connected server offers: `<tool_use_error>Error: No such tool available: …</tool_use_error>` |
//! | `structured '{JSON}'` | with `--json-schema` (which adds `StructuredOutput` to init's tools, after `Skill`): the StructuredOutput call with that object as input, its result `Structured output provided successfully`, then at once the success `result` with `result` = the JSON text, `structured_output` = the object and `stop_reason` `tool_use` (fixture `json-schema`); the run ends there. Without `--json-schema`: `No such tool available` |
//! | `+ TOOLSTEP` | the tool step in the same message as the previous tool |
//! | `turn` | end the current model message |
//!
//! ### Endings
//!
//! | step | what it does | exit |
//! |---|---|---|
//! | `result ["TEXT"]` | success result with TEXT (default: the last text) (a final assistant text block is printed first unless the open message ends with that text). Without TEXT: like the end of the scenario. Later steps still run (e.g. `hang-after-result`) | 0 |
//! | *(end of scenario)* | if no result yet: success result; when the last message had tool calls, one more message repeating the last text (or `Done.`) comes first, as a model answers after tool results | 0 |
//! | `api-error STATUS [RETRIES]` | RETRIES `system/api_retry` lines (default `CLAUDE_CODE_MAX_RETRIES` or 10; the env var caps RETRIES), the synthetic `"model":"<synthetic>"` assistant line with `error`, then `result` `subtype:"success"`, `is_error:true`, `api_error_status`. STATUS: a number (`500`, `502`, `503`, `529`, `401`, `429`, `400`, …), `network` (status null, `Unable to connect to API`), `nokey` (`Not logged in · Please run /login`, no retries). 400 = `Prompt is too long`, not retried, `terminal_reason:"prompt_too_long"` | 1 |
//! | `api-retry STATUS [COUNT]` | COUNT (default 1) `api_retry` lines, then the run goes on (a transient error the CLI absorbed) | – |
//! | `rate-limit [RESET_IN_SECS] [ms]` | `rate_limit_event` with `status:"rejected"`, `rateLimitType:"five_hour"`, `resetsAt` = now + RESET_IN_SECS (default 60; epoch seconds, or milliseconds with `ms`), then the synthetic line (`error:"rate_limit"`) and an is_error result, `api_error_status:429`, text `Claude AI usage limit reached|<epoch secs>` | 1 |
//! | `max-turns` | `error_max_turns`, `errors:["Reached maximum number of turns (N)"]` (N = `--max-turns` or turns so far), no `result` field | 1 |
//! | `max-budget` | `error_max_budget_usd`, `errors:["Reached maximum budget ($X)"]` | 1 |
//! | `no-result [CODE]` | stop without a result line | CODE (0) |
//! | `exit CODE ["STDERR"]` | print STDERR (if given) on stderr, stop without a result | CODE |
//! | `crash-mid-line [abort]` | write half a JSON line, no newline, then exit 1 (or `abort()`: SIGABRT) | 1 / signal |
//! | `no-conversation` (alias `resume-unknown`) | as the first step: no init; stderr and an `error_during_execution` result `No conversation found with session ID: <id>`, `num_turns:0` (what `--resume` of an unknown id does) | 1 |
//!
//! ### Timing
//!
//! | step | what it does |
//! |---|---|
//! | `sleep MS` / `silence MS` | no output for MS (like waiting for the API), then go on |
//! | `slow N MS` | one message with N text blocks `slow line i of N`, MS before each |
//! | `hang` | no output, forever (SIGINT → exit 0, SIGTERM → 143) |
//! | `hang-after-result` | the success result (if none yet), then stay alive forever |
//! | `after-result-lines [MS]` | the success result (if none yet), wait MS (default `FAKE_CLAUDE_AFTER_RESULT_MS` or 5000, like the CLI's background-task grace), then `system/task_updated` + `system/task_notification` lines, exit 0 |
//! | `stderr "TEXT"` | one line on stderr, go on |
//!
//! ### Retry state (stateful steps)
//!
//! | step | runs STEP only … |
//! |---|---|
//! | `on-attempt K STEP…` | on attempt number K |
//! | `first N STEP…` (alias `fail-first`) | on attempts 1..=N |
//! | `after-attempt N STEP…` | on attempts after N |
//!
//! The attempt number counts invocations per key: `$BORG_TASK_ID` (characters other than
//! `A-Za-z0-9-_.` become `_`), else `prompt-<fnv64 of the prompt, 16 hex digits>`. It and a record of each invocation live in
//! `$FAKE_CLAUDE_STATE_DIR/<key>/`, else `$BORG_WORKSPACE/.fake-claude/<key>/`, else
//! `$TMPDIR/fake-claude/<key>/` (`/tmp/fake-claude/<key>/`) — never in the cwd:
//! `argv.N.json` (`{"attempt","argv","cwd","session_id","pid","time"}`, created
//! exclusively, which is what claims attempt N), `prompt.N.txt`, `last_session`, and
//! `grandchildren` (`PID KIND` lines); every session id used is also marked in
//! `<state root>/sessions/<id>`. Only a scenario that starts with `instant` skips this
//! (no file IO at all). borg clears the child's environment: `FAKE_CLAUDE_*` variables
//! reach the fake only if borg passes them on (else `$BORG_WORKSPACE` decides). Examples:
//!
//! ```text
//! #fake first 1 api-error 500 0      ← attempt 1: HTTP 500, exit 1
//! #fake text "ok now"                ← attempt 2+: success
//!
//! #fake first 1 rate-limit 3         ← usage limit resetting in 3 s
//! #fake text "resumed"               ← next attempt (e.g. under --resume ID): success, same session id
//! ```
//!
//! ### Supervision torture
//!
//! | step | what it does |
//! |---|---|
//! | `grandchild-setsid` (alias `setsid-grandchild`) | spawns a grandchild (this binary in a hidden sleeper mode) in **its own session**, ignoring SIGINT and SIGTERM, stdio on /dev/null, with the full environment (`BORG_TASK_ID` …), sleeping forever; its pid goes to the state dir's `grandchildren` |
//! | `grandchild-holds-stdout [MS]` (alias `leak-grandchild`) | spawns a grandchild in our process group that inherits stdout/stderr and sleeps MS (default 1 h), so the pipe stays open after we exit |
//! | `ignore-signals` | this process ignores SIGINT and SIGTERM from now on |
//! | `alloc BYTES` | allocates BYTES, writes every page (so they count in its resident memory) and keeps them until it exits |
//! | `flood BYTES [stderr]` | at least BYTES of valid assistant JSON lines (~1 KiB each, whole lines) on stdout as fast as possible, or plain text lines on stderr; then go on |
//! | `huge-line BYTES` | one valid assistant JSON line of BYTES bytes (newline included), streamed |
//! | `bad-utf8` | a valid line, a JSON line with invalid UTF-8 in a string, a garbage line, a line with a split multi-byte char, a valid line |
//! | `instant` | the fastest run: init, one `Done.` text, result, no sleeps and (first step) no file IO |
//! | `demo` | a small realistic run: text, `bash "ls"`, write + read + edit `FAKE_CLAUDE_DEMO.md`, final text |
//!
//! ## Signals (as the real CLI, docs §6)
//!
//! * **SIGINT while a `bash` step runs**: the tool shell's whole session/process group is
//!   SIGKILLed, then the tool_result `The user doesn't want to proceed with this tool use…`
//!   (is_error, `tool_use_result:"User rejected tool use"`), the user text
//!   `[Request interrupted by user for tool use]`, a `result` `error_during_execution` with
//!   `terminal_reason:"aborted_tools"`; exit 1.
//! * **SIGINT while a message's other tool calls are still to run**: the next one is
//!   rejected the same way (`aborted_tools`, exit 1).
//! * **SIGINT at any other time** (sleeping, hanging, between steps, after the result):
//!   exit 0, no result.
//! * **SIGTERM**: exit 143 at once, no result; a running bash step's processes are left
//!   running (they are in another session).
//! * `ignore-signals` turns both off.
//! * A closed stdout (EPIPE) ends the run quietly with exit 1.
//!
//! ## MCP servers and hooks (claude-cli-mcp-hooks.md)
//!
//! * `--mcp-config=FILE|JSON` (repeatable): every stdio server of `mcpServers` is
//!   started before the init line, in our process group, cwd the project, with our
//!   environment, its `env` and `CLAUDECODE`, `CLAUDE_CODE_ENTRYPOINT`,
//!   `CLAUDE_CODE_SESSION_ID`, `CLAUDE_PROJECT_DIR`; handshake `initialize` (protocol
//!   `2025-11-25`, client `claude-code`), `notifications/initialized`, `tools/list`. A
//!   server with `"alwaysLoad": true` is waited for up to `MCP_TIMEOUT` ms (30000),
//!   others 2 s (then `pending`); a server that exits or answers an unknown protocol
//!   version is `failed`. Init lists `mcp_servers` (`connected`, `pending`, `failed`; in
//!   name order)
//!   and the connected servers' tools as `mcp__server__tool`. A server that dies during
//!   a call: `MCP error -32000: Connection closed`, and it is started again on the
//!   next call. At exit connected servers get SIGINT, then SIGTERM and SIGKILL;
//!   pending and failed ones are left running, as the CLI leaks them.
//! * `--settings=FILE|JSON` hooks, `PreToolUse` and `PostToolUse` (`command` hooks):
//!   run as `/bin/sh -c` in their own session with the JSON payload on stdin
//!   (`session_id`, `transcript_path`, `cwd`, `prompt_id`, `permission_mode`, `effort`,
//!   `hook_event_name`, `tool_name`, `tool_input`, `tool_use_id`, and `tool_response`
//!   after the tool), cwd the project, the entry's `timeout` (seconds, default 60).
//!   PreToolUse runs before every tool step whose name its matcher covers (`A|B`,
//!   `prefix.*`, `*`): exit 2 denies (`PreToolUse:TOOL hook error: [COMMAND]: STDERR`),
//!   a JSON `permissionDecision: "deny"` denies with its reason; the tool does not run,
//!   its result is that text with `is_error`, and it is listed in
//!   `permission_denials`. Anything else lets it through (hooks fail open). PostToolUse
//!   runs after a tool that succeeded; its JSON `"continue": false` ends the run at once
//!   with a success result of empty text, `stop_reason` `tool_use`, `terminal_reason`
//!   `hook_stopped` (as observed); a `"decision": "block"` reason reaches the real
//!   model but prints no line, so here it changes nothing. `--strict-mcp-config` and
//!   `--setting-sources` are accepted (no project settings are ever read here).
//!
//! ## Environment knobs
//!
//! `FAKE_CLAUDE_SCENARIO` (scenario file), `FAKE_CLAUDE_SCENARIO_DIR` (a scenario file
//! per task), `FAKE_CLAUDE_VERSION`, `FAKE_CLAUDE_STATE_DIR`,
//! `FAKE_CLAUDE_RETRY_DELAY_MS` (real sleep between `api_retry` lines, default 10; the
//! printed `retry_delay_ms` looks real), `FAKE_CLAUDE_TURN_DELAY_MS` (sleep before each
//! model message, default 0), `FAKE_CLAUDE_AFTER_RESULT_MS` (default 5000),
//! `FAKE_CLAUDE_NO_RATE_LIMIT_EVENT=1`, `FAKE_CLAUDE_STRICT_SESSIONS=1` (session ids
//! are checked like the real CLI does against its transcripts, using the ids earlier fake
//! runs recorded in `<state root>/sessions/`: `--resume ID` of an unknown id behaves like
//! `no-conversation`, and `--session-id ID` of a used id fails with stderr
//! `Error: Session ID ID is already in use.`, exit 1, empty stdout); and the real ones: `CLAUDE_CODE_MAX_RETRIES`,
//! `CLAUDE_CODE_MAX_TURNS`, `IS_SANDBOX`, `ANTHROPIC_API_KEY` (init `apiKeySource`),
//! `ANTHROPIC_BASE_URL` (named in 5xx error texts), `BORG_TASK_ID`, `BORG_WORKSPACE`.
//!
//! ## Not modelled
//!
//! Sub-agents, HTTP/SSE MCP servers, hooks other than PreToolUse/PostToolUse command
//! hooks, `--include-hook-events` lines, project `.mcp.json` and `.claude/settings.json`,
//! `--include-partial-messages` events, checking output against the `--json-schema`
//! schema, `--continue` picking the latest session
//! (it gets a new id), the Bash `timeout` (moving a command to the background), Bash
//! output truncation, and session transcripts under `~/.claude`.

mod cli;
mod dsl;
mod hooks;
mod mcp;
mod out;
mod prompt;
mod run;
mod scenario;
mod signals;
mod startup;
mod state;
mod tools;
mod torture;

use startup::Refusal;

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.first().map(String::as_str) == Some(torture::SLEEPER) {
        std::process::exit(torture::sleeper(&argv[1..]));
    }
    let code = start(&argv).unwrap_or_else(|refusal| refusal.exit());
    std::process::exit(code);
}

/// One invocation, step by step: argv → checked flags → prompt → scenario → session
/// checks → attempt → run. `Ok` is the exit code; a refusal comes before anything runs.
fn start(argv: &[String]) -> Result<i32, Refusal> {
    let args = cli::parse(argv).map_err(Refusal::usage)?;
    let version = startup::version();
    if let Some(answer) = startup::info(&args, &version) {
        println!("{answer}");
        return Ok(0);
    }
    let checked = startup::check(&args)?;
    // From here on SIGINT/SIGTERM act like the CLI's (a SIGINT while reading stdin makes
    // the run end with 0 right after init, as if it came while waiting for the API).
    signals::install();
    let input = prompt::read(&args)?;
    let mut plan = scenario::Plan::load(&input)?;
    plan.check_sessions(&args)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let session_id = startup::session_id(&args);
    let attempt = plan.claim(&input.prompt, argv, &cwd, &session_id);
    let cfg = run::Config {
        session_id,
        cwd,
        model: startup::model_name(args.model.as_deref()),
        perm_mode: checked.perm_mode,
        tools: startup::tools(&args),
        allowed: args.allowed.clone(),
        max_turns: checked.max_turns,
        max_budget: checked.max_budget,
        state_dir: attempt.state_dir,
        version: startup::short_version(&version),
        hooks: hooks::load(args.settings.as_deref()).map_err(Refusal::usage)?,
    };
    let specs = mcp::specs(&args.mcp_config).map_err(Refusal::usage)?;
    let servers = mcp::Servers::start(specs, &cfg.cwd, &cfg.session_id, &cfg.version);
    let mut engine = run::Engine::new(out::Out::new(checked.format, args.verbose), cfg);
    engine.attach_mcp(servers);
    Ok(plan.run(&mut engine, attempt.number, args.replay_user_messages))
}
