//! stdio MCP servers, started the way the real CLI starts those of `--mcp-config`
//! (claude-cli-mcp-hooks.md §1): each server is a child in our process group, cwd the
//! project, with our whole environment plus its config `env` and the CLI's own
//! variables; the handshake is `initialize` (protocol 2025-11-25, client
//! `claude-code`), `notifications/initialized`, `tools/list`; each call is one
//! `tools/call` with `_meta` naming the tool_use id.
//!
//! Timing as observed: a server with `"alwaysLoad": true` is waited for up to
//! `MCP_TIMEOUT` ms (default 30000), else `failed` (and left running, as the CLI leaks
//! it); other servers get ~2 s before the first turn, else `pending`. A server that
//! exits or answers an unknown protocol version is `failed`. A server that dies during
//! a call gives `MCP error -32000: Connection closed` and is started again on the next
//! call (`initialize` + `initialized`, no `tools/list`). At exit, connected servers get
//! SIGINT, then SIGTERM and SIGKILL; pending and failed ones are left alone.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Protocol versions a server may answer with and still be connected.
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// One server entry of an `--mcp-config`.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name (tools are `mcp__<name>__<tool>`).
    pub name: String,
    /// Command.
    pub command: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// `alwaysLoad`.
    pub always_load: bool,
}

/// Reads every `--mcp-config` value (a JSON text, or a file holding one).
pub fn specs(values: &[String]) -> Result<Vec<Spec>, String> {
    let mut out: Vec<Spec> = Vec::new();
    for v in values {
        let text = if v.trim_start().starts_with('{') {
            v.clone()
        } else {
            std::fs::read_to_string(v)
                .map_err(|e| format!("MCP config file not found: {v} ({e})"))?
        };
        let cfg: Value =
            serde_json::from_str(&text).map_err(|e| format!("Invalid MCP configuration: {e}"))?;
        let Some(servers) = cfg["mcpServers"].as_object() else {
            return Err("Invalid MCP configuration: mcpServers: expected an object".into());
        };
        for (name, s) in servers {
            let env = s["env"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            out.retain(|o| o.name != *name);
            out.push(Spec {
                name: name.clone(),
                command: s["command"].as_str().unwrap_or("").to_string(),
                args: s["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                env,
                always_load: s["alwaysLoad"].as_bool().unwrap_or(false),
            });
        }
    }
    Ok(out)
}

/// A running server process and its line channel.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u64,
}

/// One server and what the handshake made of it.
struct Server {
    spec: Spec,
    status: &'static str,
    tools: Vec<String>,
    proc: Option<Proc>,
}

/// The servers of a run.
#[derive(Default)]
pub struct Servers {
    list: Vec<Server>,
    cwd: std::path::PathBuf,
    session: String,
    /// Our version, for `clientInfo`.
    version: String,
}

/// What a `tools/call` gave.
pub enum CallOutcome {
    /// The result object (`content`, `structuredContent`, `isError`).
    Result(Value),
    /// A protocol or transport failure, worded as the CLI shows it.
    Failed(String),
}

fn ms_env(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Servers {
    /// Starts every server and runs the handshakes, before the init line.
    pub fn start(specs: Vec<Spec>, cwd: &std::path::Path, session: &str, version: &str) -> Servers {
        let mut s = Servers {
            list: Vec::new(),
            cwd: cwd.to_path_buf(),
            session: session.to_string(),
            version: version.to_string(),
        };
        for spec in specs {
            let wait = if spec.always_load {
                ms_env("MCP_TIMEOUT", 30_000)
            } else {
                2_000
            };
            let mut server = Server {
                spec,
                status: "failed",
                tools: Vec::new(),
                proc: None,
            };
            if let Some(mut p) = s.spawn(&server.spec) {
                match handshake(&mut p, &s.version, Duration::from_millis(wait), true) {
                    Ok(tools) => {
                        server.status = "connected";
                        server.tools = tools;
                        server.proc = Some(p);
                    }
                    Err(Handshake::Timeout) if !server.spec.always_load => {
                        server.status = "pending"
                    }
                    Err(_) => {} // failed; a hung process is left running, as the CLI does
                }
            }
            s.list.push(server);
        }
        s
    }

    /// Starts a server process.
    fn spawn(&self, spec: &Spec) -> Option<Proc> {
        let mut cmd = Command::new(&spec.command);
        cmd.args(&spec.args)
            .current_dir(&self.cwd)
            .envs(spec.env.iter().cloned())
            .env("CLAUDECODE", "1")
            .env("CLAUDE_CODE_ENTRYPOINT", "sdk-cli")
            .env("CLAUDE_CODE_SESSION_ID", &self.session)
            .env("CLAUDE_PROJECT_DIR", &self.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().ok()?;
        let stdin = child.stdin.take()?;
        let stdout = child.stdout.take()?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Some(Proc {
            child,
            stdin,
            lines,
            next_id: 0,
        })
    }

    /// `(name, status)` of every server, for the init line.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .map(|s| (s.spec.name.clone(), s.status.to_string()))
            .collect()
    }

    /// The tool names the model sees (`mcp__server__tool`) of connected servers.
    pub fn tool_names(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|s| s.status == "connected")
            .flat_map(|s| {
                s.tools
                    .iter()
                    .map(move |t| format!("mcp__{}__{t}", s.spec.name))
            })
            .collect()
    }

    /// Calls `mcp__server__tool`; `None` when no connected server has it (the caller
    /// gives the CLI's "No such tool available" error).
    pub fn call(
        &mut self,
        full: &str,
        args: &Value,
        tool_use_id: &str,
        token: u64,
    ) -> Option<CallOutcome> {
        let (server, tool) = full.strip_prefix("mcp__")?.split_once("__")?;
        let idx = self.list.iter().position(|s| {
            s.spec.name == server && s.status == "connected" && s.tools.iter().any(|t| t == tool)
        })?;
        if self.list[idx].proc.is_none() {
            // Died during an earlier call: started again, without tools/list.
            let spec = self.list[idx].spec.clone();
            let mut p = self.spawn(&spec)?;
            let version = self.version.clone();
            if handshake(
                &mut p,
                &version,
                Duration::from_millis(ms_env("MCP_TIMEOUT", 30_000)),
                false,
            )
            .is_err()
            {
                return Some(CallOutcome::Failed(
                    "MCP error -32000: Connection closed".into(),
                ));
            }
            self.list[idx].proc = Some(p);
        }
        let p = self.list[idx].proc.as_mut()?;
        let params = json!({ "name": tool, "arguments": args, "_meta": { "claudecode/toolUseId": tool_use_id, "progressToken": token } });
        match request(p, "tools/call", params, None) {
            Ok(v) if v.get("result").is_some() => Some(CallOutcome::Result(v["result"].clone())),
            Ok(v) => Some(CallOutcome::Failed(format!(
                "MCP error {}: {}",
                v["error"]["code"],
                v["error"]["message"].as_str().unwrap_or("")
            ))),
            Err(_) => {
                self.list[idx].proc = None;
                Some(CallOutcome::Failed(
                    "MCP error -32000: Connection closed".into(),
                ))
            }
        }
    }

    /// At exit: connected servers get SIGINT, then SIGTERM, then SIGKILL; the others
    /// are left running (the CLI leaks them; borg's tree kill does not).
    pub fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for s in self.list.iter_mut() {
            let Some(mut p) = s.proc.take() else { continue };
            let pid = Pid::from_raw(p.child.id() as i32);
            for (sig, wait) in [
                (Signal::SIGINT, 100),
                (Signal::SIGTERM, 400),
                (Signal::SIGKILL, 1000),
            ] {
                let _ = kill(pid, sig);
                let until = Instant::now() + Duration::from_millis(wait);
                while Instant::now() < until {
                    if matches!(p.child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if matches!(p.child.try_wait(), Ok(Some(_))) {
                    break;
                }
            }
            let _ = p.child.try_wait();
        }
    }
}

/// Why a handshake did not connect.
enum Handshake {
    Timeout,
    Broken,
}

/// `initialize` (+ `notifications/initialized`, + `tools/list` when `list`).
fn handshake(
    p: &mut Proc,
    version: &str,
    wait: Duration,
    list: bool,
) -> Result<Vec<String>, Handshake> {
    let init = json!({ "protocolVersion": "2025-11-25", "capabilities": { "roots": {}, "elicitation": {} },
        "clientInfo": { "name": "claude-code", "title": "Claude Code", "version": version,
                        "description": "Anthropic's agentic coding tool", "websiteUrl": "https://claude.com/claude-code" } });
    let v = request(p, "initialize", init, Some(wait))?;
    let version = v["result"]["protocolVersion"].as_str().unwrap_or("");
    if !VERSIONS.contains(&version) {
        return Err(Handshake::Broken);
    }
    notify(p, "notifications/initialized").map_err(|_| Handshake::Broken)?;
    if !list {
        return Ok(Vec::new());
    }
    let v = request(p, "tools/list", json!({}), Some(wait))?;
    Ok(v["result"]["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// Sends a request and waits for the answer with its id (notifications in between are
/// skipped). `None` waits as long as it takes.
fn request(
    p: &mut Proc,
    method: &str,
    params: Value,
    wait: Option<Duration>,
) -> Result<Value, Handshake> {
    let id = p.next_id;
    p.next_id += 1;
    let msg = json!({ "method": method, "params": params, "jsonrpc": "2.0", "id": id });
    writeln!(p.stdin, "{msg}")
        .and_then(|_| p.stdin.flush())
        .map_err(|_| Handshake::Broken)?;
    let until = wait.map(|w| Instant::now() + w);
    loop {
        let left = match until {
            Some(u) => u.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return Err(Handshake::Timeout);
        }
        match p.lines.recv_timeout(left) {
            Ok(line) => {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["id"].as_u64() == Some(id) {
                    return Ok(v);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if until.is_some() {
                    return Err(Handshake::Timeout);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(Handshake::Broken),
        }
    }
}

/// Sends a notification.
fn notify(p: &mut Proc, method: &str) -> std::io::Result<()> {
    let msg = json!({ "method": method, "jsonrpc": "2.0" });
    writeln!(p.stdin, "{msg}")?;
    p.stdin.flush()
}

/// "Lock Files" for `lock_files`: the display name the CLI puts in `tool_use_meta`.
pub fn display_name(tool: &str) -> String {
    tool.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
