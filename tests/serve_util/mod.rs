//! Helpers of the `borg serve` tests: starting the real binary on a free loopback
//! port (it prints the address it bound), HTTP calls that return the status, the
//! JSON body and the headers whatever the status, seeding a store from a task list
//! with borg's own loader, and registering agents.
#![allow(dead_code)]

use crate::common::Sandbox;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running borg (serve, or run --serve) and its base URL.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `borg serve --listen 127.0.0.1:0 EXTRA...` in the sandbox.
    pub fn start(sb: &Sandbox, extra: &[&str]) -> Server {
        let mut c = sb.borg(&["serve", "--listen", "127.0.0.1:0"]);
        c.args(extra);
        Server::spawn(c)
    }

    /// Starts `c` and waits for the address it listens on (its stderr line
    /// `listening on http://ADDR`).
    pub fn spawn(mut c: Command) -> Server {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start borg");
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                l.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "borg did not say where it listens: {:?}",
                    log.lock().unwrap()
                )
            });
        Server {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own child, by pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, JSON body (Null when not JSON), headers.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `data` of a success, asserting it is one.
    pub fn data(&self) -> &Value {
        assert_eq!(
            self.status, 200,
            "not a success: {} {}",
            self.status, self.text
        );
        assert_eq!(self.body["success"], true, "{}", self.text);
        &self.body["data"]
    }

    /// Asserts the error shape with this status and code.
    pub fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.body["success"], false, "{}", self.text);
        let e = &self.body["error"];
        assert_eq!(e["code"], code, "{}", self.text);
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text
        );
        assert!(e["retryable"].is_boolean(), "{}", self.text);
        e
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .redirects(0)
        .build()
}

/// One request: METHOD URL with headers and an optional raw body (sent as JSON).
pub fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let mut r = agent().request(method, url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let res = match body {
        Some(b) => {
            let r = if headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                r
            } else {
                r.set("Content-Type", "application/json")
            };
            r.send_string(b)
        }
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| Some((n.clone(), resp.header(&n)?.to_string())))
        .collect();
    let text = resp.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        text,
        headers,
    }
}

/// GET with an optional bearer token.
pub fn get(url: &str, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    call("GET", url, &h, None)
}

/// POST of a JSON value with an optional bearer token.
pub fn post(url: &str, token: Option<&str>, body: &Value) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    call("POST", url, &h, Some(&body.to_string()))
}

/// Registers an agent; returns its token.
pub fn register(s: &Server, id: &str, caps: &[&str]) -> String {
    let a = post(
        &s.url("/api/claude/register"),
        None,
        &json!({"agentId": id, "capabilities": caps, "version": "1.0.0"}),
    );
    a.data().as_str().expect("a token").to_string()
}

/// Writes `roles/NAME.md` files: (name, front matter TOML).
pub fn roles(sb: &Sandbox, list: &[(&str, &str)]) {
    for (name, meta) in list {
        sb.write(
            &format!("roles/{name}.md"),
            &format!("+++\n{meta}\n+++\n# Role: {name}\n\nYou are the {name}.\n"),
        );
    }
}

/// Puts a task list into the sandbox's store with borg's own loader (what `borg run`
/// syncs), without running anything.
pub fn seed(sb: &Sandbox, toml: &str) {
    let file = sb.write("seed.toml", toml);
    let roles = borg::input::roles::RoleSet::load(&sb.path().join("roles")).unwrap();
    let list = borg::input::tasklist::parse_file(&file, &roles.names()).unwrap();
    let rows: Vec<_> = list
        .tasks
        .iter()
        .map(|t| {
            let spec = borg::run::spec::StoredSpec {
                task: t.clone(),
                handoff: None,
                resolve: None,
            };
            borg::run::spec::new_task(&spec, 0)
        })
        .collect();
    let store = open(sb);
    use borg::store::Store;
    store.sync_tasks(&rows, now()).unwrap();
}

/// The sandbox's store.
pub fn open(sb: &Sandbox) -> borg::store::sqlite::SqliteStore {
    borg::store::sqlite::SqliteStore::open(&sb.ws().join("borg.db")).unwrap()
}

/// Epoch ms.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether fake-claude ever started a task (its argv record).
pub fn started(sb: &Sandbox, task: &str) -> bool {
    Path::new(&sb.state().join(task).join("argv.1.json")).exists()
}
