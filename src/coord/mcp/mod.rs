//! `borg mcp`: the stdio MCP server borg gives every claude child (official SDK,
//! `rmcp`). It answers `initialize` with the client's protocol version when it
//! supports it, lists the tools of `catalog`, and runs each call against the store for
//! the attempt named in its environment (`coord::env`): `leases` (status, lock,
//! unlock), `notes` (decisions, messages, context), `work` (progress, handoff, tasks).
//!
//! Bad input is a tool error (`isError: true`) with a sentence the model can act on,
//! never a crash; a store that cannot be reached is said in the tool result and the
//! attempt goes on. No state lives in this process (the CLI restarts a crashed
//! server on the next call): every call opens what it needs from the store. It exits
//! when its stdin closes (claude gone, even by SIGKILL) or on SIGINT/SIGTERM.

mod catalog;
mod leases;
mod notes;
mod work;

use super::env::AttemptEnv;
use crate::store::location::StoreLocation;
use crate::store::Store;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// What a tool returns: a JSON object for the model (success) or a sentence (error).
pub(crate) type Out = Result<Value, String>;

/// What every tool works with.
pub(crate) struct Ctx<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// The attempt.
    pub env: &'a AttemptEnv,
}

/// The server: the attempt from the environment, and the store once opened.
#[derive(Clone)]
pub struct Server {
    env: Arc<Result<AttemptEnv, String>>,
    store: Arc<Mutex<Option<Arc<dyn Store>>>>,
}

impl Server {
    /// A server for the attempt `env` names (or the reason it names none).
    pub fn new(env: Result<AttemptEnv, String>) -> Server {
        Server {
            env: Arc::new(env),
            store: Arc::new(Mutex::new(None)),
        }
    }

    /// The store, opened on first use (and again after a failure).
    fn store(&self, env: &AttemptEnv) -> Result<Arc<dyn Store>, String> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = StoreLocation::of(&env.store).open_light().map_err(|e| {
            format!("borg cannot reach its store right now ({e}); carry on with your task and try again later")
        })?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Runs one tool call (blocking: store calls and lock waits).
    pub fn call(&self, name: &str, args: Value) -> CallToolResult {
        let out = match self.env.as_ref() {
            Err(e) => Err(format!("borg's coordination is not available here: {e}")),
            Ok(env) => self.store(env).and_then(|store| {
                let ctx = Ctx {
                    store: store.as_ref(),
                    env,
                };
                dispatch(&ctx, name, args)
            }),
        };
        match out {
            Ok(v) => CallToolResult::structured(v),
            Err(text) => CallToolResult::error(vec![ContentBlock::text(text)]),
        }
    }
}

/// The tool of that name.
fn dispatch(ctx: &Ctx<'_>, name: &str, args: Value) -> Out {
    match name {
        "status" => leases::status(ctx),
        "lock_files" => leases::lock(ctx, args),
        "unlock_files" => leases::unlock(ctx, args),
        "log_decision" => notes::log_decision(ctx, args),
        "list_decisions" => notes::list_decisions(ctx, args),
        "send_message" => notes::send_message(ctx, args),
        "read_messages" => notes::read_messages(ctx),
        "save_context" => notes::save_context(ctx, args),
        "get_context" => notes::get_context(ctx, args),
        "report_progress" => work::report_progress(ctx, args),
        "request_handoff" => work::request_handoff(ctx, args),
        "create_task" => work::create_task(ctx, args),
        other => Err(format!(
            "borg has no tool named {other:?}; its tools: {}",
            catalog::tools()
                .iter()
                .map(|t| t.0)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Reads a tool's arguments into `T`, or says what is wrong with them.
pub(crate) fn args<T: serde::de::DeserializeOwned>(tool: &str, v: Value) -> Result<T, String> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    serde_json::from_value(v)
        .map_err(|e| format!("bad input for {tool}: {e}; see the tool's input schema"))
}

/// The tool list, as rmcp wants it.
fn tool_list() -> Vec<Tool> {
    catalog::tools()
        .into_iter()
        .map(|(name, description, schema)| {
            let obj = match schema {
                Value::Object(m) => m,
                _ => Default::default(),
            };
            Tool::new(name, description, Arc::new(obj))
        })
        .collect()
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("borg", env!("CARGO_PKG_VERSION")))
            .with_instructions(catalog::INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let me = self.clone();
        let name = request.name.to_string();
        let args = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let res = tokio::task::spawn_blocking(move || me.call(&name, args))
            .await
            .unwrap_or_else(|e| {
                CallToolResult::error(vec![ContentBlock::text(format!(
                    "borg's tool failed unexpectedly ({e}); try again"
                ))])
            });
        Ok(res.into())
    }
}

/// Serves MCP on stdin/stdout until the client goes away. `fault` is the fault
/// injection knob `BORG_MCP_FAULT` (only ever set by a person or a test, through
/// `[claude.env]`): `exit` exits 1 at start, as a broken server would; `hang` never
/// answers `initialize`, as a stuck one would.
pub async fn serve(env: Result<AttemptEnv, String>, fault: Option<String>) -> Result<(), String> {
    match fault.as_deref() {
        Some("exit") => return Err("BORG_MCP_FAULT=exit: exiting at start, as asked".into()),
        // Never answers `initialize` (a server stuck at start), until killed.
        Some("hang") => std::future::pending::<()>().await,
        _ => {}
    }
    let server = Server::new(env);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP handshake failed: {e}"))?;
    // SIGINT/SIGTERM keep their default action (no state to save): the CLI stops its
    // servers with SIGINT, and a SIGKILLed CLI closes stdin, which ends `waiting`.
    running.waiting().await.map_err(|e| e.to_string())?;
    Ok(())
}
