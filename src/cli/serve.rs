//! `borg serve [--listen ADDR] [--token T]`: the coordination API, event stream,
//! metrics and dashboard over the store of `--workspaces` / `--store`, until Ctrl-C or
//! SIGTERM. Also started inside `borg run --serve` (see `start`). Off loopback it
//! refuses to start without a token (exit 2).

use super::Ctx;
use crate::cli::ServeArgs;
use crate::error::{UsageError, EXIT_OK};
use crate::input::config::{check_listen, Overrides, Settings};
use crate::input::roles::RoleSet;
use crate::serve::{self, App};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Runs `borg serve`.
pub async fn run(ctx: &Ctx, a: ServeArgs) -> anyhow::Result<i32> {
    let mut s = ctx.settings(Overrides::default())?;
    apply_flags(&mut s, a.listen, a.token)?;
    let roles = ctx.roles(&s)?;
    let store: Arc<dyn Store> = ctx.store(&s)?;
    let p = prepare(store, roles, s).await?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let stop = p.app.stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    let listener = bind(p.addr).await?;
    serve::serve(p.app, listener).await?;
    Ok(EXIT_OK)
}

/// `--listen` and `--token` over the settings.
fn apply_flags(
    s: &mut Settings,
    listen: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    if let Some(l) = listen.filter(|l| !l.is_empty()) {
        check_listen(&l).map_err(|m| UsageError(format!("--listen {l:?}: {m}")))?;
        s.serve.listen = l;
    }
    if let Some(t) = token {
        if t.trim().is_empty() {
            return Err(UsageError("--token is empty".into()).into());
        }
        s.serve.token = Some(t);
    }
    Ok(())
}

/// A server ready to start.
pub struct Prepared {
    /// Its state.
    pub app: Arc<App>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Checks the address (a token off loopback: else exit 2) and builds the state.
async fn prepare(store: Arc<dyn Store>, roles: RoleSet, s: Settings) -> anyhow::Result<Prepared> {
    let addr = serve::check_address(&s.serve.listen, s.serve.token.as_deref())
        .map_err(|e| UsageError(e.to_string()))?;
    let app = serve::app(store, roles, s, addr).await;
    Ok(Prepared { app, addr })
}

/// Binds the address (a port in use is the user's to fix: exit 2) and says where the
/// server listens (never the token).
async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| UsageError(format!("cannot listen on {addr}: {e}")))?;
    let at = l.local_addr()?;
    eprintln!("borg serve: listening on http://{at} (dashboard: http://{at}/, API: /api/claude, events: /api/events, metrics: /metrics)");
    Ok(l)
}

/// `borg run --serve[=ADDR]`: starts the server beside the run, on the run's store;
/// it stops when the returned token is cancelled. Fails (exit 2) before the run
/// starts when the address cannot be used.
pub async fn start(
    settings: &Settings,
    roles: &RoleSet,
    store: Arc<dyn Store>,
    listen: &str,
) -> anyhow::Result<(
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
)> {
    let mut s = settings.clone();
    apply_flags(&mut s, Some(listen.to_string()), None)?;
    let p = prepare(store, roles.clone(), s).await?;
    let stop = p.app.stop.clone();
    let listener = bind(p.addr).await?;
    let handle = tokio::spawn(async move {
        if let Err(e) = serve::serve(p.app, listener).await {
            eprintln!("borg: the server stopped: {e:#}");
        }
    });
    Ok((stop, handle))
}
