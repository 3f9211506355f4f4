//! The store's change feed: tells a run loop that another process changed the store
//! (a handoff accepted, a task retried from another shell, a task created by an agent
//! or over HTTP, a dependency finished by another borg), so that the loop waits on
//! events instead of polling the tables.
//!
//! Every state change appends to the event log in its own transaction, so the newest
//! event id is a complete and cheap change detector: for SQLite it is read on a short
//! timer (one indexed lookup; another process's commit cannot be pushed to us). Events
//! this owner wrote itself are ignored: the loop learns of its own attempts directly.
//! A backend that can push (PostgreSQL's LISTEN/NOTIFY) can feed the same `Notify`.

use super::{call, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the SQLite change detector looks: the worst-case delay between another
/// process's change and the loop reacting to it.
pub const POLL: Duration = Duration::from_millis(50);

/// Events read at once when the newest id moved, to see who wrote them.
const PAGE: usize = 256;

/// A running change feed; stops when dropped.
pub struct ChangeFeed {
    notify: Arc<Notify>,
    stop: CancellationToken,
}

impl ChangeFeed {
    /// Starts watching `store` for changes made by anyone but `me` (an owner id).
    pub fn start(store: Arc<dyn Store>, me: String, every: Duration) -> ChangeFeed {
        let notify = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (n, s) = (notify.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = call(&store, |st| st.last_event_id()).await.unwrap_or(0);
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let (moved, newest) = changed_by_others(&store, &me, last).await;
                last = newest;
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
