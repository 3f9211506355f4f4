//! `borg mcp` and `borg hook EVENT`: the two helpers claude starts for every child
//! borg runs (the per-attempt MCP config and settings name them). Both drop every
//! credential variable before anything else (`main` does it, before the runtime
//! starts); the hook skips the runtime altogether: it runs before every write and
//! must answer in milliseconds.

use super::{Ctx, HookEvent};
use crate::coord::env::AttemptEnv;
use crate::coord::hook;
use std::io::{Read, Write};

/// Largest hook payload read (a Write's payload carries the whole file).
const MAX_PAYLOAD: u64 = 512 << 20;

/// `borg mcp` as claude starts it (`main` calls it before parsing anything else):
/// serves until claude closes stdin; 1 when it cannot start. Every child of a
/// coordinated run starts one and most never call a tool, so it starts lean: no
/// command-line parser, no settings or `.env`, no log filter unless `BORG_LOG` is set in
/// its environment, a current-thread
/// runtime (tool calls still run on a blocking thread, made at the first call), and
/// the store opened at the first tool call.
pub fn mcp_main() -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("borg mcp: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let env = AttemptEnv::from_process().map_err(|e| e.0);
    let fault = std::env::var("BORG_MCP_FAULT").ok();
    match rt.block_on(crate::coord::mcp::serve(env, fault)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("borg mcp: {e}");
            1
        }
    }
}

/// `borg mcp` through the command line parser (global flags given): as
/// [`mcp_main`], on the caller's runtime.
pub async fn mcp(ctx: &Ctx) -> anyhow::Result<i32> {
    let env = AttemptEnv::from_vars(|k| ctx.env.get(k).cloned()).map_err(|e| e.0);
    let fault = ctx.env.get("BORG_MCP_FAULT").cloned();
    match crate::coord::mcp::serve(env, fault).await {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("borg mcp: {e}");
            Ok(1)
        }
    }
}

/// `borg hook EVENT` through the command line parser.
pub fn hook(event: HookEvent) -> i32 {
    let name = match event {
        HookEvent::PreToolUse => "pre-tool-use",
        HookEvent::PostToolUse => "post-tool-use",
    };
    hook_main(&[name.to_string()])
}

/// The hook's fast path (`main` calls it before parsing anything else): reads the
/// payload on stdin, answers on stdout, exits 0. An answer that cannot be printed is
/// a deny by exit code 2 (the CLI's other blocking form).
pub fn hook_main(args: &[String]) -> i32 {
    let event = args.first().map(String::as_str).unwrap_or("");
    if !matches!(event, "pre-tool-use" | "post-tool-use") {
        eprintln!("borg hook: unknown event {event:?}; use pre-tool-use or post-tool-use");
        return 2;
    }
    let mut payload = String::new();
    let read = std::io::stdin()
        .take(MAX_PAYLOAD)
        .read_to_string(&mut payload);
    let env = AttemptEnv::from_process().map_err(|e| e.0);
    let answer = match read {
        Ok(_) => hook::run(event, &payload, env),
        Err(e) if event == "pre-tool-use" => {
            hook::deny(&format!("borg could not read the hook payload ({e})"))
        }
        Err(_) => hook::Answer(None),
    };
    let Some(v) = answer.0 else {
        return 0;
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{v}").and_then(|_| out.flush()).is_err() {
        eprintln!("borg hook: could not answer: {}", v);
        return 2;
    }
    0
}
