//! Who is asking, and may they: tokens, cross-site protection, the dashboard's login.
//!
//! - Agents send `Authorization: Bearer reg_<uuid>`; the server keeps only the token's
//!   SHA-256 (`agents` table) and compares digests in constant time.
//! - The admin token (`--token`, `BORG_SERVE_TOKEN`, `[serve] token`) is required to
//!   listen off loopback. With it, every route but `/health` needs a token (agent or
//!   admin), registering needs the admin token, and the dashboard asks for it once
//!   (`/login`), then holds an HttpOnly, SameSite=Strict session cookie.
//! - Without it (loopback only), the dashboard page carries a per-process CSRF token
//!   that its buttons send back in `X-Borg-Csrf`; a request carrying it acts for the
//!   person at the machine. The Host header must then name the loopback (a DNS
//!   rebinding page cannot read the token).
//! - Every state-changing request, and every WebSocket upgrade, that a browser marks
//!   cross-site (`Sec-Fetch-Site`, or an `Origin` that is not this server) is refused,
//!   and cookie sessions need the CSRF header too: a page elsewhere cannot act through
//!   a person's browser, nor read the event stream through it.

use super::error::ApiError;
use super::App;
use crate::store::agents::AgentRow;
use crate::store::call;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// The dashboard session cookie.
pub const SESSION_COOKIE: &str = "borg_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-borg-csrf";

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin token, a dashboard session, or (loopback) the dashboard's CSRF token.
    Admin,
    /// A registered outside agent.
    Agent(AgentRow),
    /// No credentials.
    Anonymous,
}

/// The server's secrets.
pub struct Auth {
    /// SHA-256 of the admin token.
    admin: Option<[u8; 32]>,
    /// The CSRF token of the dashboard page without an admin token.
    page_csrf: String,
    /// Dashboard sessions: session id → CSRF token.
    sessions: Mutex<HashMap<String, String>>,
    /// Listening on loopback: Host headers must name it.
    pub loopback: bool,
}

/// SHA-256, lowercase hex.
pub fn sha256_hex(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A fresh agent token, `reg_<uuid>`.
pub fn new_agent_token() -> String {
    format!("reg_{}", uuid::Uuid::new_v4())
}

fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Auth {
    /// Secrets for a server with this admin token.
    pub fn new(token: Option<&str>, loopback: bool) -> Auth {
        Auth {
            admin: token.map(digest),
            page_csrf: random_secret(),
            sessions: Mutex::new(HashMap::new()),
            loopback,
        }
    }

    /// Whether an admin token is set (then nothing but /health is open).
    pub fn token_mode(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether `t` is the admin token (constant time).
    pub fn is_admin_token(&self, t: &str) -> bool {
        self.admin.is_some_and(|a| bool::from(a.ct_eq(&digest(t))))
    }

    /// The CSRF token a page served to this request carries: its session's, or the
    /// page token without an admin token.
    pub fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        if !self.token_mode() {
            return Some(self.page_csrf.clone());
        }
        let sid = cookie(headers, SESSION_COOKIE)?;
        self.sessions.lock().ok()?.get(&sid).cloned()
    }

    /// Opens a dashboard session for the admin token: (session id, CSRF token).
    pub fn login(&self, token: &str) -> Option<(String, String)> {
        if !self.is_admin_token(token) {
            return None;
        }
        let (sid, csrf) = (random_secret(), random_secret());
        self.sessions.lock().ok()?.insert(sid.clone(), csrf.clone());
        Some((sid, csrf))
    }

    fn session_csrf(&self, headers: &HeaderMap) -> Option<String> {
        let sid = cookie(headers, SESSION_COOKIE)?;
        self.sessions.lock().ok()?.get(&sid).cloned()
    }
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(digest(a).ct_eq(&digest(b)))
}

/// The middleware every route runs behind: the Host check, the cross-site check, and
/// the caller, put in the request's extensions.
pub async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    // The body is not Sync: keep no reference to the request across an await.
    let (headers, method) = (req.headers().clone(), req.method().clone());
    match check(&app, &headers, &method).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn check(app: &Arc<App>, h: &HeaderMap, method: &Method) -> Result<Caller, ApiError> {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if app.auth.loopback && !loopback_host(host) {
        return Err(ApiError::forbidden(format!(
            "Host {host:?} is not this machine's loopback; borg serve on loopback answers only http://127.0.0.1, localhost or [::1] (to serve other names, listen on them with --token)"
        )).code("HOST_NOT_ALLOWED"));
    }
    let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    // A WebSocket has no same-origin protection of its own: any page may open one to
    // the loopback and read what comes back, so its upgrade is checked like a write.
    let upgrade = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if unsafe_method || upgrade {
        cross_site(h, host)?;
    }
    caller(app, h, unsafe_method).await
}

/// Refuses a state-changing request a browser made from another site.
fn cross_site(h: &HeaderMap, host: &str) -> Result<(), ApiError> {
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let foreign_site = matches!(site, Some("cross-site" | "same-site"));
    let foreign_origin = origin.is_some_and(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            != Some(host)
    });
    if foreign_site || foreign_origin {
        return Err(ApiError::forbidden(
            "cross-site request refused: state-changing requests must come from this server's own pages or from a client with a token",
        )
        .code("CSRF_REJECTED"));
    }
    Ok(())
}

/// Who sent it, from the Authorization header, the session cookie or the CSRF header.
async fn caller(app: &Arc<App>, h: &HeaderMap, unsafe_method: bool) -> Result<Caller, ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "the token is not valid (expired by a new registration, or never issued); register again",
        )
    };
    if let Some(v) = h.get(header::AUTHORIZATION) {
        let t = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(invalid)?;
        if t.starts_with("reg_") {
            let hash = sha256_hex(t);
            let lookup = hash.clone();
            let row = call(&app.store, move |st| st.agent_by_token(&lookup)).await?;
            return match row {
                Some(a) if same(&a.token_sha256, &hash) => Ok(Caller::Agent(a)),
                _ => Err(invalid()),
            };
        }
        return if app.auth.is_admin_token(t) {
            Ok(Caller::Admin)
        } else {
            Err(invalid())
        };
    }
    let csrf_sent = h.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let bad_csrf = || {
        ApiError::forbidden("the dashboard's CSRF token is missing or wrong; reload the page")
            .code("CSRF_REJECTED")
    };
    if let Some(csrf) = app.auth.session_csrf(h) {
        if unsafe_method && !csrf_sent.is_some_and(|s| same(s, &csrf)) {
            return Err(bad_csrf());
        }
        return Ok(Caller::Admin);
    }
    match (csrf_sent, app.auth.token_mode()) {
        (Some(s), false) if same(s, &app.auth.page_csrf) => Ok(Caller::Admin),
        (Some(_), _) => Err(bad_csrf()),
        (None, _) => Ok(Caller::Anonymous),
    }
}

/// Whether a Host header names the loopback.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Caller {
    /// Reading the fleet (dashboard, events, metrics, task lists): anyone on loopback
    /// without an admin token; with one, any token.
    pub fn may_read(&self, app: &App) -> Result<(), ApiError> {
        match self {
            Caller::Anonymous if app.auth.token_mode() => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AGENT_NOT_REGISTERED",
                "this server needs a token: `Authorization: Bearer <agent or admin token>`",
            )),
            _ => Ok(()),
        }
    }

    /// The agent, for routes only agents use.
    pub fn agent(&self) -> Result<&AgentRow, ApiError> {
        match self {
            Caller::Agent(a) => Ok(a),
            Caller::Admin => Err(ApiError::forbidden(
                "this route is for registered agents: send an agent's token (reg_...)",
            )),
            Caller::Anonymous => Err(ApiError::unregistered()),
        }
    }

    /// A person's (admin) action: accepting a handoff, for instance.
    pub fn admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            _ => Err(ApiError::forbidden(
                "this action needs the admin token (Authorization: Bearer ...) or the dashboard",
            )),
        }
    }

    /// Registering: open on loopback without an admin token; else the admin token.
    pub fn may_register(&self, app: &App) -> Result<(), ApiError> {
        if app.auth.token_mode() {
            self.admin()
        } else {
            Ok(())
        }
    }

    /// The rate-limit key: an agent's id, or None (not limited).
    pub fn limit_key(&self) -> Option<&str> {
        match self {
            Caller::Agent(a) => Some(&a.id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:3456",
            "localhost:80",
            "[::1]:3456",
            "127.3.4.5",
            "LOCALHOST",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:3456",
            "10.0.0.1:3456",
            "",
            "[fe80::1]:1",
            "localhost.evil:1",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn admin_token_compares_digests() {
        let a = Auth::new(Some("s3cret"), true);
        assert!(a.is_admin_token("s3cret"));
        assert!(!a.is_admin_token("s3cre"));
        assert!(!Auth::new(None, true).is_admin_token(""));
        let (sid, csrf) = a.login("s3cret").unwrap();
        assert!(a.login("nope").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("x=1; {SESSION_COOKIE}={sid}").parse().unwrap(),
        );
        assert_eq!(a.csrf_for(&h), Some(csrf));
    }
}
