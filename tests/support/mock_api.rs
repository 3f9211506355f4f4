//! A scripted stand-in for the Anthropic Messages API, for tests that drive the real
//! Claude Code CLI (`tests/real_cli.rs`).
//!
//! The server binds `127.0.0.1` on a free port, runs on its own thread and tokio
//! runtime, and stops when the [`MockApi`] is dropped. It answers:
//!
//! * `HEAD /` (the CLI's connection warm-up) with 200;
//! * `POST /v1/messages` from a [`Script`]: an ordered list of assistant turns, streamed
//!   as server-sent events when the request says `"stream": true`, or as one JSON
//!   message otherwise (the CLI's non-streaming fallback after a broken stream);
//! * anything else with 404.
//!
//! Which turn to answer is worked out from the request itself: the number of assistant
//! messages already in `messages`. That keeps the server stateless per conversation, so
//! the CLI's own retries and its non-streaming fallback get the same turn again.
//! Faults ([`Fault`]) are the one stateful part: each script consumes its queued faults
//! one per `POST`, in order, before it answers normally.
//!
//! `{{CWD}}` in a turn's text or tool input is replaced by the path on the
//! `Primary working directory:` line of the request's system prompt, so a script can
//! name files in whatever workspace borg gave the CLI.
//!
//! Every request is recorded ([`MockApi::requests`]): method, path, headers, JSON body.
//!
//! Prompt caching, when asked for ([`MockApi::start_caching`]): a request's input is
//! counted as its leading blocks (each system block, the tool list, each message) at
//! [`BYTES_PER_TOKEN`]; the blocks a request shares, from its start, with an earlier
//! request are reported as `cache_read_input_tokens`, the rest as `input_tokens`. That
//! is Anthropic's prefix cache with a breakpoint after every block and no minimum size,
//! close enough to compare conversations that resend their history with ones that do
//! not.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tokens reported per turn. With the CLI's default model ($5/M in, $25/M out) one turn
/// costs 1000 × 5e-6 + 100 × 25e-6 = $0.0075.
pub const INPUT_TOKENS: u64 = 1000;
/// Output tokens reported per turn.
pub const OUTPUT_TOKENS: u64 = 100;

/// With caching on: bytes of request JSON counted as one input token.
pub const BYTES_PER_TOKEN: u64 = 4;

/// One content block of a scripted assistant turn.
#[derive(Debug, Clone)]
pub enum Block {
    /// A text block.
    Text(String),
    /// A tool call: tool name and input (strings may hold `{{CWD}}`).
    Tool(String, Value),
}

/// A scripted assistant turn. Its stop reason is `tool_use` when it calls a tool,
/// else `end_turn`.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// The content blocks, in order.
    pub blocks: Vec<Block>,
}

impl Turn {
    /// A turn of only text.
    pub fn text(t: &str) -> Turn {
        Turn {
            blocks: vec![Block::Text(t.into())],
        }
    }

    /// Adds a text block.
    pub fn and_text(mut self, t: &str) -> Turn {
        self.blocks.push(Block::Text(t.into()));
        self
    }

    /// Adds a tool call.
    pub fn and_tool(mut self, name: &str, input: Value) -> Turn {
        self.blocks.push(Block::Tool(name.into(), input));
        self
    }

    /// A turn of one tool call.
    pub fn tool(name: &str, input: Value) -> Turn {
        Turn::default().and_tool(name, input)
    }
}

/// A way to fail one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An HTTP error with an Anthropic-style error body (`{"type":"error","error":{...}}`)
    /// and extra response headers (`retry-after`, rate-limit headers ...).
    Status {
        /// HTTP status (401, 429, 500, 529 ...).
        status: u16,
        /// `error.type` in the body (authentication_error, rate_limit_error ...).
        kind: String,
        /// `error.message` in the body.
        message: String,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// A streamed answer whose TCP connection is closed after this many SSE events
    /// (a non-streaming request gets its answer normally).
    CutStream(usize),
    /// A streamed answer whose HTTP body ends cleanly after this many SSE events, without
    /// `message_stop` (a non-streaming request gets its answer normally).
    EndStream(usize),
    /// The request is accepted and never answered (the connection stays open until the
    /// server stops).
    NoAnswer,
}

impl Fault {
    /// HTTP 401, as the API says it for a bad key.
    pub fn unauthorized() -> Fault {
        Fault::Status {
            status: 401,
            kind: "authentication_error".into(),
            message: "invalid x-api-key".into(),
            headers: vec![],
        }
    }

    /// HTTP 429 with `retry-after: secs`.
    pub fn too_many(secs: u64) -> Fault {
        Fault::Status {
            status: 429,
            kind: "rate_limit_error".into(),
            message: "Number of request tokens has exceeded your per-minute rate limit".into(),
            headers: vec![("retry-after".into(), secs.to_string())],
        }
    }

    /// HTTP 500.
    pub fn server_error() -> Fault {
        Fault::Status {
            status: 500,
            kind: "api_error".into(),
            message: "Internal server error".into(),
            headers: vec![],
        }
    }

    /// HTTP 529 (overloaded).
    pub fn overloaded() -> Fault {
        Fault::Status {
            status: 529,
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
            headers: vec![],
        }
    }
}

/// What the server answers for one kind of conversation.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Picks this script when the conversation's text contains it (None: the default).
    pub marker: Option<String>,
    /// The assistant turns, in order. A request past the last turn gets a short
    /// `end_turn` text.
    pub turns: Vec<Turn>,
    /// Faults, consumed one per `POST` in order before normal answers.
    pub faults: VecDeque<Fault>,
    /// A fault for every request once `faults` is used up.
    pub always: Option<Fault>,
    /// Turns are counted from the newest user message holding the marker (a
    /// conversation resumed with `--resume` carries earlier tasks' turns before it).
    pub per_prompt: bool,
}

impl Script {
    /// A script of these turns.
    pub fn new(turns: Vec<Turn>) -> Script {
        Script {
            turns,
            ..Script::default()
        }
    }

    /// Chosen only for conversations whose text contains `marker`.
    pub fn when(mut self, marker: &str) -> Script {
        self.marker = Some(marker.into());
        self
    }

    /// Queues a fault for the next request.
    pub fn then_fail(mut self, f: Fault) -> Script {
        self.faults.push_back(f);
        self
    }

    /// Counts turns from the newest user message holding the marker (see
    /// [`Script::per_prompt`]); needs a marker.
    pub fn per_prompt(mut self) -> Script {
        self.per_prompt = true;
        self
    }

    /// Fails every request (after the queued faults).
    pub fn always_fail(mut self, f: Fault) -> Script {
        self.always = Some(f);
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// When it arrived, from the server's start.
    pub at: Duration,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The JSON body (Null when empty or not JSON).
    pub body: Value,
    /// Index of the script that answered (POST /v1/messages only).
    pub script: Option<usize>,
    /// What was answered: "stream", "json", "fault:…".
    pub answer: String,
}

impl Logged {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True for a Messages API call.
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path.starts_with("/v1/messages")
    }

    /// The `stream` field of the body.
    pub fn streamed(&self) -> bool {
        self.body["stream"].as_bool() == Some(true)
    }
}

struct State {
    started: Instant,
    scripts: Mutex<Vec<Script>>,
    log: Mutex<Vec<Logged>>,
    next_id: AtomicU64,
    /// With caching on: hashes of every block prefix of earlier requests.
    cache: Option<Mutex<std::collections::HashSet<u64>>>,
}

/// The running mock. Dropping it stops the server and cancels open requests.
pub struct MockApi {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockApi {
    /// Starts a server answering from `scripts` (the first without a marker, or else the
    /// first, is the default).
    pub fn start(scripts: Vec<Script>) -> MockApi {
        Self::start_with(scripts, false)
    }

    /// [`MockApi::start`] with prompt caching counted (see the module doc).
    pub fn start_caching(scripts: Vec<Script>) -> MockApi {
        Self::start_with(scripts, true)
    }

    fn start_with(scripts: Vec<Script>, caching: bool) -> MockApi {
        let state = Arc::new(State {
            started: Instant::now(),
            scripts: Mutex::new(scripts),
            log: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            cache: caching.then(|| Mutex::new(std::collections::HashSet::new())),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("mock-anthropic".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("mock runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                        .await
                        .expect("bind 127.0.0.1:0");
                    addr_tx
                        .send(listener.local_addr().expect("local addr"))
                        .expect("report the address");
                    let app = axum::Router::new().fallback(move |m, u, h, b| {
                        let st = st.clone();
                        async move { handle(st, m, u, h, b).await }
                    });
                    let server = axum::serve(listener, app);
                    // Not a graceful shutdown: a `NoAnswer` request would hold it forever.
                    tokio::select! {
                        _ = server => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("spawn the mock thread");
        let addr = addr_rx.recv().expect("mock address");
        MockApi {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The Messages API calls so far.
    pub fn messages(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_messages)
            .collect()
    }

    /// The distinct `X-Claude-Code-Session-Id` values, in order of first use.
    pub fn session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for r in self.messages() {
            if let Some(s) = r.header("x-claude-code-session-id") {
                if !ids.iter().any(|i| i == s) {
                    ids.push(s.to_string());
                }
            }
        }
        ids
    }

    /// A readable dump of the log, for assertion messages.
    pub fn dump(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "{:>6.2}s {} {} stream={} script={:?} -> {} session={}",
                    r.at.as_secs_f64(),
                    r.method,
                    r.path,
                    r.streamed(),
                    r.script,
                    r.answer,
                    r.header("x-claude-code-session-id").unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    st: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut entry = Logged {
        at: st.started.elapsed(),
        method: method.as_str().to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: json.clone(),
        script: None,
        answer: String::new(),
    };
    let n = st.next_id.fetch_add(1, Ordering::Relaxed);
    let (response, answer, script) = if method == Method::HEAD && uri.path() == "/" {
        (
            plain(StatusCode::OK, Body::empty()),
            "head".to_string(),
            None,
        )
    } else if method == Method::POST && uri.path() == "/v1/messages" {
        let (r, a, s) = messages(&st, &json, n);
        (r, a, Some(s))
    } else {
        (
            error_response(404, "not_found_error", &format!("no route for {path}"), &[]),
            "404".to_string(),
            None,
        )
    };
    entry.answer = answer.clone();
    entry.script = script;
    if let Ok(mut l) = st.log.lock() {
        l.push(entry);
    }
    if answer == "fault:no-answer" {
        // Hold the request open; the server's stop cancels this task.
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
    response
}

/// Answers one Messages API call: picks the script, applies a pending fault, or
/// renders the next turn. Returns the response, a word for the log and the script index.
fn messages(st: &State, req: &Value, n: u64) -> (Response, String, usize) {
    let text = conversation_text(req);
    let (index, fault, turn) = {
        let mut scripts = match st.scripts.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let index = pick(&scripts, &text);
        let Some(script) = scripts.get_mut(index) else {
            return (
                error_response(500, "api_error", "the mock has no script", &[]),
                "no-script".into(),
                index,
            );
        };
        let fault = script.faults.pop_front().or_else(|| script.always.clone());
        let done = match (&script.marker, script.per_prompt) {
            (Some(m), true) => assistant_turns_since(req, m),
            _ => assistant_turns(req),
        };
        let turn = script
            .turns
            .get(done)
            .cloned()
            .unwrap_or_else(|| Turn::text("(the mock script has no more turns)"));
        (index, fault, turn)
    };
    let stream = req["stream"].as_bool() == Some(true);
    let cwd = working_directory(req).unwrap_or_default();
    let model = req["model"].as_str().unwrap_or("claude-mock").to_string();
    let mut msg = render(&turn, &cwd, &model, n);
    if let Some(cache) = &st.cache {
        let (input, read) = cached_usage(cache, req);
        msg["usage"]["input_tokens"] = json!(input);
        msg["usage"]["cache_read_input_tokens"] = json!(read);
    }
    match fault {
        Some(Fault::Status {
            status,
            kind,
            message,
            headers,
        }) => (
            error_response(status, &kind, &message, &headers),
            format!("fault:{status}"),
            index,
        ),
        Some(Fault::NoAnswer) => (
            plain(StatusCode::OK, Body::empty()),
            "fault:no-answer".into(),
            index,
        ),
        Some(Fault::CutStream(k)) if stream => {
            let events = sse_events(&msg);
            let kept: Vec<Result<Bytes, std::io::Error>> = events
                .into_iter()
                .take(k)
                .map(Ok)
                .chain(std::iter::once(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the mock cuts the stream",
                ))))
                .collect();
            (
                sse_response(Body::from_stream(futures_util::stream::iter(kept)), n),
                format!("fault:cut-after-{k}"),
                index,
            )
        }
        Some(Fault::EndStream(k)) if stream => {
            let kept: Vec<Result<Bytes, std::io::Error>> =
                sse_events(&msg).into_iter().take(k).map(Ok).collect();
            (
                sse_response(Body::from_stream(futures_util::stream::iter(kept)), n),
                format!("fault:end-after-{k}"),
                index,
            )
        }
        _ if stream => {
            let events: Vec<Result<Bytes, std::io::Error>> =
                sse_events(&msg).into_iter().map(Ok).collect();
            (
                sse_response(Body::from_stream(futures_util::stream::iter(events)), n),
                "stream".into(),
                index,
            )
        }
        _ => {
            let mut r = plain(StatusCode::OK, Body::from(msg.to_string()));
            set(&mut r, "content-type", "application/json");
            set(&mut r, "request-id", &format!("req_mock_{n:06}"));
            (r, "json".into(), index)
        }
    }
}

/// The first script whose marker is in the conversation, else the first without one.
fn pick(scripts: &[Script], text: &str) -> usize {
    scripts
        .iter()
        .position(|s| s.marker.as_deref().is_some_and(|m| text.contains(m)))
        .or_else(|| scripts.iter().position(|s| s.marker.is_none()))
        .unwrap_or(0)
}

/// All the text of the request's user messages (where borg's prompt is).
fn conversation_text(req: &Value) -> String {
    let mut out = String::new();
    for m in req["messages"].as_array().into_iter().flatten() {
        if m["role"] != "user" {
            continue;
        }
        collect_text(&m["content"], &mut out);
    }
    out
}

fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|b| {
            if b["type"] == "text" {
                collect_text(&b["text"], out);
            }
        }),
        _ => {}
    }
}

/// How many assistant turns follow the newest user message holding `marker`.
fn assistant_turns_since(req: &Value, marker: &str) -> usize {
    let msgs = req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let start = msgs
        .iter()
        .rposition(|m| {
            let mut t = String::new();
            collect_text(&m["content"], &mut t);
            m["role"] == "user" && t.contains(marker)
        })
        .unwrap_or(0);
    msgs[start..]
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count()
}

/// A request's input as blocks, in order: each system block, the tool list, each
/// message.
fn input_blocks(req: &Value) -> Vec<String> {
    let mut out: Vec<String> = match &req["system"] {
        Value::Array(a) => a.iter().map(|b| b["text"].to_string()).collect(),
        Value::Null => vec![],
        other => vec![other.to_string()],
    };
    out.push(req["tools"].to_string());
    out.extend(
        req["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["content"].to_string()),
    );
    out
}

/// The estimated input tokens of a request (its blocks at [`BYTES_PER_TOKEN`]).
pub fn request_tokens(req: &Value) -> u64 {
    input_blocks(req)
        .iter()
        .map(|b| b.len() as u64)
        .sum::<u64>()
        / BYTES_PER_TOKEN
}

/// (input_tokens, cache_read_input_tokens) of a request, and its prefixes cached.
fn cached_usage(cache: &Mutex<std::collections::HashSet<u64>>, req: &Value) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let mut seen = match cache.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let (mut total, mut read, mut hit) = (0u64, 0u64, true);
    for b in input_blocks(req) {
        b.hash(&mut h);
        let key = h.finish();
        let tokens = b.len() as u64 / BYTES_PER_TOKEN;
        total += tokens;
        hit = hit && seen.contains(&key);
        if hit {
            read += tokens;
        }
        seen.insert(key);
    }
    (total - read, read)
}

/// How many assistant turns the conversation already holds.
fn assistant_turns(req: &Value) -> usize {
    req["messages"]
        .as_array()
        .map(|a| a.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0)
}

/// The path on the `Primary working directory:` line, searched in the system prompt
/// and then in the messages.
pub fn working_directory(req: &Value) -> Option<String> {
    let mut texts = Vec::new();
    match &req["system"] {
        Value::String(s) => texts.push(s.clone()),
        Value::Array(a) => texts.extend(
            a.iter()
                .filter_map(|b| b["text"].as_str().map(str::to_string)),
        ),
        _ => {}
    }
    let mut rest = String::new();
    for m in req["messages"].as_array().into_iter().flatten() {
        collect_text(&m["content"], &mut rest);
    }
    texts.push(rest);
    const KEY: &str = "Primary working directory:";
    texts.iter().find_map(|t| {
        let at = t.find(KEY)?;
        let line = t[at + KEY.len()..].lines().next()?.trim();
        (!line.is_empty()).then(|| line.to_string())
    })
}

fn fill(v: &Value, cwd: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{{CWD}}", cwd)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, cwd)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, cwd))).collect())
        }
        other => other.clone(),
    }
}

/// The full assistant message (the non-streaming form; the SSE form is cut from it).
fn render(turn: &Turn, cwd: &str, model: &str, n: u64) -> Value {
    let content: Vec<Value> = turn
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Block::Text(t) => json!({"type": "text", "text": t.replace("{{CWD}}", cwd)}),
            Block::Tool(name, input) => json!({
                "type": "tool_use",
                "id": format!("toolu_mock_{n:06}_{i}"),
                "name": name,
                "input": fill(input, cwd),
            }),
        })
        .collect();
    let uses_tool = turn.blocks.iter().any(|b| matches!(b, Block::Tool(..)));
    json!({
        "id": format!("msg_mock_{n:06}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": if uses_tool { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The message as Anthropic's SSE events: message_start, per block
/// content_block_start/delta/stop, message_delta, message_stop.
fn sse_events(msg: &Value) -> Vec<Bytes> {
    let mut start = msg.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut out = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    )];
    for (i, b) in msg["content"].as_array().into_iter().flatten().enumerate() {
        let (head, delta) = if b["type"] == "tool_use" {
            (
                json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": b["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": b["text"]}),
            )
        };
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": head}),
        ));
        out.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        ));
    }
    out.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": null},
            "usage": {"output_tokens": OUTPUT_TOKENS},
        }),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

fn plain(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn set(r: &mut Response, name: &str, value: &str) {
    if let (Ok(k), Ok(v)) = (
        axum::http::HeaderName::from_bytes(name.as_bytes()),
        axum::http::HeaderValue::from_str(value),
    ) {
        r.headers_mut().insert(k, v);
    }
}

fn sse_response(body: Body, n: u64) -> Response {
    let mut r = plain(StatusCode::OK, body);
    set(&mut r, "content-type", "text/event-stream");
    set(&mut r, "cache-control", "no-cache");
    set(&mut r, "request-id", &format!("req_mock_{n:06}"));
    r
}

fn error_response(
    status: u16,
    kind: &str,
    message: &str,
    headers: &[(String, String)],
) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = plain(code, Body::from(body.to_string()));
    set(&mut r, "content-type", "application/json");
    for (k, v) in headers {
        set(&mut r, k, v);
    }
    r
}
