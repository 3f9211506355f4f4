//! The live event stream (seed 000's `subscribeToUpdates`): `GET /api/events` as
//! Server-Sent Events and `GET /api/ws` as a WebSocket, both read from the store's
//! durable events table, so a second `borg serve` sees what any borg wrote.
//!
//! One reader per server waits on the store's change feed (`store::feed`: inotify on
//! an SQLite store's files, NOTIFY on PostgreSQL, each with its slow safety look, and
//! a 50 ms poll only where neither works), then reads the new rows and broadcasts
//! them, so an idle server does not wake 20 times a second. Each client first replays
//! from the store what it missed (after `Last-Event-ID` or `?since=`; by default from
//! now), then follows the broadcast, skipping ids it sent already, and re-reads the
//! store if it fell behind. Every event carries the store's
//! id, so a client that reconnects with the last id it saw misses nothing and gets
//! nothing twice.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::App;
use crate::store::agents::agent_of_owner;
use crate::store::feed::{self, ChangeFeed};
use crate::store::location::StoreLocation;
use crate::store::{call, EventRow, Store};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Extension;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Without change notifications (no inotify on the store's folder), how often the
/// reader looks at the events table: the worst-case delay of an event.
pub const POLL: Duration = crate::store::feed::POLL;
/// Rows read from the store at once.
const PAGE: usize = 256;

/// New events, broadcast to every client.
pub struct EventHub {
    tx: broadcast::Sender<Arc<EventRow>>,
    /// The newest id broadcast.
    pub latest: AtomicI64,
}

impl EventHub {
    /// A hub starting after the store's newest event.
    pub fn new(latest: i64) -> EventHub {
        EventHub {
            tx: broadcast::channel(1024).0,
            latest: AtomicI64::new(latest),
        }
    }

    /// Reads the store's new events after each change `feed` reports, until `stop`,
    /// broadcasting them.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        feed: ChangeFeed,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            // First what was written since the hub was made, then after each change.
            self.drain(&store).await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = feed.changed() => {}
            }
        }
    }

    /// Broadcasts every event after the newest one broadcast.
    async fn drain(&self, store: &Arc<dyn Store>) {
        loop {
            let after = self.latest.load(Ordering::Acquire);
            let page = call(store, move |st| st.events_since(after, PAGE))
                .await
                .unwrap_or_default();
            let Some(last) = page.last().map(|e| e.id) else {
                return;
            };
            self.latest.store(last, Ordering::Release);
            for e in page {
                // No receiver is not an error: nobody is listening now.
                let _ = self.tx.send(Arc::new(e));
            }
        }
    }
}

/// The change feed the event reader waits on: every change, this process's own
/// included (the server writes progress, claims and handoffs itself), watched through
/// the store's file when `store_setting` names an SQLite store.
pub fn feed_for(store: Arc<dyn Store>, store_setting: &std::path::Path) -> ChangeFeed {
    let file = match StoreLocation::of(store_setting) {
        StoreLocation::Sqlite(p) => Some(p),
        StoreLocation::Postgres(_) => None,
    };
    ChangeFeed::start(store, feed::NOBODY.to_string(), POLL, file.as_deref())
}

/// Where a client starts: after `Last-Event-ID`, else `?since=`, else now.
fn start_after(app: &App, headers: &HeaderMap, q: &ApiQuery) -> Result<i64, ApiError> {
    let given = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.0.get("since").cloned());
    match given {
        None => Ok(app.hub.latest.load(Ordering::Acquire)),
        Some(s) => s.trim().parse::<i64>().map(|n| n.max(0)).map_err(|_| {
            ApiError::invalid(format!(
                "since / Last-Event-ID must be an event id (a whole number), not {s:?}"
            ))
        }),
    }
}

/// One client's position in the stream.
struct Follower {
    store: Arc<dyn Store>,
    rx: broadcast::Receiver<Arc<EventRow>>,
    stop: tokio_util::sync::CancellationToken,
    /// The last id sent.
    cursor: i64,
    backlog: VecDeque<Arc<EventRow>>,
    /// Whether the store may hold events after `cursor` that the broadcast will not bring.
    replay: bool,
}

impl Follower {
    fn new(app: &App, after: i64) -> Follower {
        Follower {
            store: app.store.clone(),
            // Subscribed before the replay, so nothing falls between the two.
            rx: app.hub.tx.subscribe(),
            stop: app.stop.clone(),
            cursor: after,
            backlog: VecDeque::new(),
            replay: true,
        }
    }

    /// The next event, in id order, each once.
    async fn next(&mut self) -> Option<Arc<EventRow>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.id > self.cursor {
                    self.cursor = e.id;
                    return Some(e);
                }
                continue;
            }
            if self.replay {
                let after = self.cursor;
                let page = call(&self.store, move |st| st.events_since(after, PAGE))
                    .await
                    .ok()?;
                self.replay = page.len() == PAGE;
                self.backlog.extend(page.into_iter().map(Arc::new));
                continue;
            }
            let got = tokio::select! {
                r = self.rx.recv() => r,
                _ = self.stop.cancelled() => return None,
            };
            match got {
                Ok(e) => self.backlog.push_back(e),
                Err(broadcast::error::RecvError::Lagged(_)) => self.replay = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The seed's event type of a store event kind (other kinds keep their name).
pub fn event_type(kind: &str) -> String {
    match kind {
        "claimed" => "task-claimed",
        "started" => "task-started",
        "succeeded" => "task-completed",
        "failed" | "timed_out" | "killed" | "spawn_failed" | "interrupted" | "rate_limited" => {
            "task-failed"
        }
        "skipped" => "task-skipped",
        "retry" => "task-retry",
        "created" => "task-created",
        "progress" => "progress-update",
        "handoff-awaiting" => "handoff-awaiting-approval",
        "fleet-breaker" => "breaker-changed",
        "fleet-parked" => "park-changed",
        // The coordination store's kinds (file leases, decisions, messages, context).
        "lease-granted" => "lock-acquired",
        "lease-released" | "lease-force-released" => "lock-released",
        "lease-deadlock" => "lock-deadlock",
        "lease-violation" => "lock-violation",
        "decision" => "decision-logged",
        "context-saved" => "context-updated",
        other => other,
    }
    .to_string()
}

/// The JSON of one event, as both streams send it.
pub fn event_json(e: &EventRow) -> Value {
    let mut v = json!({
        "id": e.id,
        "type": event_type(&e.kind),
        "kind": e.kind,
        "timestamp": super::error::iso(e.at_ms),
        "taskId": e.task,
        "fence": e.fence,
        "actor": e.actor,
        "agentId": agent_of_owner(&e.actor).unwrap_or(&e.actor),
        "data": e.data,
    });
    if e.kind == "progress" {
        v["progress"] = json!({
            "percentComplete": e.data.get("percent"),
            "currentStep": e.data.get("step"),
            "filesModified": e.data.get("files"),
            "blockers": e.data.get("blockers"),
        });
    }
    if e.kind.starts_with("handoff-") {
        v["handoffId"] = e.data.get("handoff").cloned().unwrap_or(Value::Null);
        v["fromAgent"] = json!(agent_of_owner(&e.actor).unwrap_or(&e.actor));
        v["toAgent"] = e.data.get("to_role").cloned().unwrap_or(Value::Null);
    }
    v
}

/// `GET /api/events`: Server-Sent Events.
pub async fn sse(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: ApiQuery,
) -> ApiResult {
    caller.may_read(&app)?;
    let after = start_after(&app, &headers, &q)?;
    let follower = Follower::new(&app, after);
    let s: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::unfold(follower, |mut f| async move {
            let e = f.next().await?;
            let ev = Event::default()
                .id(e.id.to_string())
                .event(event_type(&e.kind))
                .data(event_json(&e).to_string());
            Some((Ok(ev), f))
        }));
    Ok(Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `GET /api/ws`: the same events as WebSocket text frames.
pub async fn ws(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: ApiQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult {
    caller.may_read(&app)?;
    let after = start_after(&app, &headers, &q)?;
    let upgrade =
        upgrade.map_err(|e| ApiError::invalid(format!("not a WebSocket upgrade: {e}")))?;
    let follower = Follower::new(&app, after);
    Ok(upgrade.on_upgrade(move |socket| pump(socket, follower)))
}

/// Sends events until the client goes away.
async fn pump(mut socket: WebSocket, mut f: Follower) {
    loop {
        tokio::select! {
            e = f.next() => {
                let Some(e) = e else { return };
                if socket.send(Message::Text(event_json(&e).to_string().into())).await.is_err() {
                    return;
                }
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
