//! `borg serve`: the coordination server of seed 000 over borg's own claim table, so
//! that agents outside the fleet (an interactive Claude Code session, another tool, a
//! borg elsewhere) take work from the same queue without ever taking a task a borg
//! child holds; a live event stream; Prometheus metrics; and the fleet dashboard.
//!
//! Layout: `api/` (the routes, one file per group), `events` (SSE and WebSocket from
//! the store's events table), `metrics`, `dashboard/` (the page, its panels, its
//! script and style, embedded), `auth` (tokens, CSRF, the login), `ratelimit`,
//! `extract` and `error` (reading requests and answering in the seed's shapes).

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod extract;
pub mod metrics;
pub mod ratelimit;

use crate::input::config::Settings;
use crate::input::roles::RoleSet;
use crate::store::{call, Store};
use auth::{Auth, Caller};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Extension, Form, Router};
use error::ApiError;
use events::EventHub;
use metrics::Metrics;
use ratelimit::RateLimiter;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything a request handler needs.
pub struct App {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The roles (capabilities, external roles, approval).
    pub roles: RoleSet,
    /// The settings (`[serve]`, `[handoff]`).
    pub settings: Settings,
    /// Tokens and sessions.
    pub auth: Auth,
    /// Per-agent rate limits.
    pub limits: RateLimiter,
    /// New events.
    pub hub: Arc<EventHub>,
    /// Counters of this process.
    pub metrics: Metrics,
    /// Cancelled to stop the server (and end the event streams, so that the graceful
    /// shutdown does not wait for them forever).
    pub stop: CancellationToken,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Off loopback without a token.
    #[error("refusing to listen on {0} without a token: anyone who can reach it could take tasks and accept handoffs. Give --token (or BORG_SERVE_TOKEN, [serve] token), or listen on 127.0.0.1")]
    NeedsToken(String),
    /// Not an address.
    #[error("cannot listen on {addr:?}: {message}")]
    Address {
        /// The address given.
        addr: String,
        /// Why.
        message: String,
    },
}

/// Resolves the listen address; off loopback a token is required.
pub fn check_address(listen: &str, token: Option<&str>) -> Result<SocketAddr, ServeError> {
    use std::net::ToSocketAddrs;
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| ServeError::Address {
            addr: listen.into(),
            message: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ServeError::Address {
            addr: listen.into(),
            message: "no address".into(),
        })?;
    if !addr.ip().is_loopback() && token.is_none_or(|t| t.is_empty()) {
        return Err(ServeError::NeedsToken(listen.into()));
    }
    Ok(addr)
}

/// The application state for a server on `addr`.
pub async fn app(
    store: Arc<dyn Store>,
    roles: RoleSet,
    settings: Settings,
    addr: SocketAddr,
) -> Arc<App> {
    let latest = call(&store, |st| st.last_event_id()).await.unwrap_or(0);
    Arc::new(App {
        auth: Auth::new(settings.serve.token.as_deref(), addr.ip().is_loopback()),
        limits: RateLimiter::new(settings.serve.rate_limit),
        hub: Arc::new(EventHub::new(latest)),
        metrics: Metrics::default(),
        stop: CancellationToken::new(),
        store,
        roles,
        settings,
    })
}

/// Every route, behind the guard (Host, cross-site, caller), the rate limit and the
/// request counter.
pub fn router(app: Arc<App>) -> Router {
    use api::{agents, coord, fleet, handoff, health, tasks, work};
    let body = app.settings.serve.body_limit;
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route(
            "/assets/style.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    dashboard::CSS,
                )
            }),
        )
        .route(
            "/assets/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    dashboard::JS,
                )
            }),
        )
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::render))
        .route("/api/events", get(events::sse))
        .route("/api/ws", get(events::ws))
        .route("/api/claude/register", post(agents::register))
        .route("/api/claude/tasks", get(tasks::list))
        .route("/api/claude/tasks/{id}/claim", post(tasks::claim))
        .route("/api/claude/tasks/{id}/progress", post(work::progress))
        .route("/api/claude/tasks/{id}/complete", post(work::complete))
        .route("/api/claude/handoff", post(handoff::request))
        .route("/api/claude/locks", post(coord::lock))
        .route("/api/claude/locks/{token}", delete(coord::unlock))
        .route(
            "/api/claude/context/{id}",
            get(coord::get_context).put(coord::put_context),
        )
        .route("/api/handoffs", get(handoff::list))
        .route("/api/handoffs/{id}/accept", post(handoff::accept))
        .route("/api/handoffs/{id}/reject", post(handoff::reject))
        .route("/api/status", get(fleet::status))
        .route("/api/dashboard/panels", get(fleet::panels))
        .route("/api/tasks/{id}/tail", get(fleet::tail))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            ratelimit::limit,
        ))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth::guard))
        .route_layer(middleware::from_fn_with_state(app.clone(), metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body))
        .layer(middleware::from_fn_with_state(app.clone(), extract::buffer))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "NOT_FOUND",
        "no such route; see GET /health and the README's \"borg serve\"",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not take that method",
    )
}

/// The dashboard, or the login form when a token is needed and not given.
async fn index(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
) -> Response {
    if caller.may_read(&app).is_err() {
        return Redirect::to("/login").into_response();
    }
    let csrf = app.auth.csrf_for(&headers).unwrap_or_default();
    let panels = match api::fleet::snapshot(&app).await {
        Ok((v, agents)) => dashboard::panels(
            &v,
            &agents,
            &app.roles.external(),
            app.settings.run.timeout.as_millis() as i64,
        ),
        Err(e) => format!("<p class=\"bad\">{}</p>", dashboard::esc(&e.to_string())),
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(dashboard::page(&panels, &csrf)),
    )
        .into_response()
}

async fn login_form() -> Html<String> {
    Html(dashboard::login(false))
}

/// The login form's body.
#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// Opens a dashboard session for the admin token.
async fn login(
    State(app): State<Arc<App>>,
    form: Result<Form<Login>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(l)) = form else {
        return (StatusCode::BAD_REQUEST, Html(dashboard::login(true))).into_response();
    };
    match app.auth.login(&l.token) {
        Some((sid, _)) => {
            let cookie = format!(
                "{}={sid}; HttpOnly; SameSite=Strict; Path=/",
                auth::SESSION_COOKIE
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, Html(dashboard::login(true))).into_response(),
    }
}

/// Serves on `listener` until `app.stop` is cancelled: starts the event reader, then
/// answers; the event streams end with the stop, so the graceful shutdown finishes.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let stop = app.stop.clone();
    let feed = events::feed_for(app.store.clone(), &app.settings.paths.store);
    let poller = tokio::spawn(app.hub.clone().run(app.store.clone(), feed, stop.clone()));
    let expiry = tokio::spawn(release_expired(app.store.clone(), stop.clone()));
    let router = router(app);
    let s = stop.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { s.cancelled().await })
        .await?;
    stop.cancel();
    let _ = poller.await;
    let _ = expiry.await;
    Ok(())
}

/// How often a server gives back claims whose lease ran out.
const EXPIRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Gives back claims whose lease ran out (an agent that went away), as every borg run
/// does, so that the listing and the dashboard do not show them running when no run
/// is there to do it; leftovers of an expired attempt on this machine are swept as a
/// run would.
async fn release_expired(store: Arc<dyn Store>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EXPIRY) => {}
        }
        let now = chrono::Utc::now().timestamp_millis();
        if let Ok(expired) = call(&store, move |st| st.release_expired(now)).await {
            crate::run::recovery::sweep(&expired);
        }
    }
}
