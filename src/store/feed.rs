//! The store's change feed: tells a run loop that another process changed the store
//! (a handoff accepted, a task retried from another shell, a task created by an agent
//! or over HTTP, a dependency finished by another borg), so that the loop waits on
//! events instead of polling the tables.
//!
//! Two sources, chosen by the backend (`Store::subscribe`):
//! - pushed notes (PostgreSQL's LISTEN/NOTIFY: the actor of each committed change),
//!   with a slow look at the event log as a backstop, since a notification sent while
//!   the listener reconnects is lost;
//! - polling (SQLite): every state change appends to the event log in its own
//!   transaction, so the newest event id is a complete and cheap change detector, read
//!   on a short timer (another process's commit cannot be pushed to us).
//!
//! Changes this owner made itself are ignored: the loop learns of its own attempts
//! directly.

use super::{call, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// How often the SQLite change detector looks: the worst-case delay between another
/// process's change and the loop reacting to it.
pub const POLL: Duration = Duration::from_millis(50);

/// With pushed notes, how often the event log is looked at anyway.
pub const BACKSTOP: Duration = Duration::from_secs(2);

/// Events read at once when the newest id moved, to see who wrote them.
const PAGE: usize = 256;

/// A running change feed; stops when dropped.
pub struct ChangeFeed {
    notify: Arc<Notify>,
    stop: CancellationToken,
}

impl ChangeFeed {
    /// Starts watching `store` for changes made by anyone but `me` (an owner id);
    /// `every` is the polling period when the backend cannot push.
    pub fn start(store: Arc<dyn Store>, me: String, every: Duration) -> ChangeFeed {
        let notify = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (n, s) = (notify.clone(), stop.clone());
        let notes = store.subscribe();
        tokio::spawn(async move {
            let mut last = call(&store, |st| st.last_event_id()).await.unwrap_or(0);
            let Some(mut notes) = notes else {
                return poll(&store, &me, last, every, &n, &s).await;
            };
            loop {
                let pushed = tokio::select! {
                    _ = s.cancelled() => return,
                    note = notes.recv() => Some(note),
                    _ = tokio::time::sleep(BACKSTOP) => None,
                };
                let moved = match pushed {
                    Some(Ok(actor)) => actor != me,
                    // Lagged: notes were dropped, some may be others'.
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => true,
                    Some(Err(broadcast::error::RecvError::Closed)) => {
                        return poll(&store, &me, last, every, &n, &s).await;
                    }
                    None => {
                        let (moved, newest) = changed_by_others(&store, &me, last).await;
                        last = newest;
                        moved
                    }
                };
                if moved {
                    n.notify_one();
                }
            }
        });
        ChangeFeed { notify, stop }
    }

    /// Resolves once the store changed since the last call (a change that happened
    /// while nobody waited is kept, once).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

/// The polling source: the newest event id every `every`.
async fn poll(
    store: &Arc<dyn Store>,
    me: &str,
    mut last: i64,
    every: Duration,
    n: &Notify,
    s: &CancellationToken,
) {
    loop {
        tokio::select! {
            _ = s.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let (moved, newest) = changed_by_others(store, me, last).await;
        last = newest;
        if moved {
            n.notify_one();
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whether events after `last` include one written by someone other than `me`, and
/// the newest id seen. A store error counts as no change (the next look retries).
async fn changed_by_others(store: &Arc<dyn Store>, me: &str, last: i64) -> (bool, i64) {
    let newest = call(store, |st| st.last_event_id()).await.unwrap_or(last);
    if newest <= last {
        return (false, last);
    }
    let mut after = last;
    while after < newest {
        let page = call(store, move |st| st.events_since(after, PAGE))
            .await
            .unwrap_or_default();
        let Some(end) = page.last().map(|e| e.id) else {
            break;
        };
        if page.iter().any(|e| e.actor != me) {
            return (true, newest);
        }
        after = end;
    }
    (false, newest)
}
