//! The store's change feed: tells a run loop that another process changed the store
//! (a handoff accepted, a task retried from another shell, a task created by an agent
//! or over HTTP, a dependency finished by another borg), so that the loop waits on
//! events instead of polling the tables.
//!
//! Every state change appends to the event log in its own transaction, so the newest
//! event id is a complete and cheap change detector (one indexed lookup). For SQLite
//! another process's commit cannot be pushed to us, but it writes the store's files:
//! the feed watches their folder with filesystem notifications (inotify) and looks
//! after a write, then again [`POLL`], 2 × [`POLL`], 4 × … later until [`HOT`] has
//! passed since that write (a write is seen before its commit becomes visible: the
//! journal's frames are written, then synced, then published in the shared-memory
//! index, which makes no notification), and otherwise only every [`SAFETY`]; an idle
//! fleet costs no wakeups. Where notifications are unavailable it looks every
//! [`POLL`]. Events this owner wrote itself are
//! ignored: the loop learns of its own attempts directly. A backend that can push
//! (PostgreSQL's LISTEN/NOTIFY) can feed the same `Notify`.

use super::{call, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the SQLite change detector looks at most (and always, without
/// notifications): the worst-case delay between another process's change and the loop
/// reacting to it.
pub const POLL: Duration = Duration::from_millis(50);

/// With notifications: how often the detector looks even though none came.
pub const SAFETY: Duration = Duration::from_secs(5);

/// With notifications: how long after the last write the detector keeps looking, at
/// growing intervals (the commit of that write may become visible only then).
pub const HOT: Duration = Duration::from_secs(1);

/// Events read at once when the newest id moved, to see who wrote them.
const PAGE: usize = 256;

/// A running change feed; stops when dropped.
pub struct ChangeFeed {
    notify: Arc<Notify>,
    stop: CancellationToken,
}

impl ChangeFeed {
    /// Starts watching `store` for changes made by anyone but `me` (an owner id),
    /// looking every `every`; with `files` (the store's file), only after that file
    /// or its journal was written (see the module doc).
    pub fn start(
        store: Arc<dyn Store>,
        me: String,
        every: Duration,
        files: Option<&Path>,
    ) -> ChangeFeed {
        let notify = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let hint = Arc::new(Notify::new());
        let watcher = files.and_then(|f| watch_writes(f, hint.clone()));
        let idle = if watcher.is_some() { SAFETY } else { every };
        let (n, s) = (notify.clone(), stop.clone());
        tokio::spawn(async move {
            // Dropped with the task: the watcher lives as long as the feed.
            let _watcher = watcher;
            let mut last = call(&store, |st| st.last_event_id()).await.unwrap_or(0);
            let mut hot_until = tokio::time::Instant::now();
            let mut step = every;
            loop {
                let now = tokio::time::Instant::now();
                let wait = if now < hot_until { step } else { idle };
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = hint.notified() => {
                        hot_until = tokio::time::Instant::now() + HOT;
                        step = every;
                    }
                    _ = tokio::time::sleep(wait) => step = (step * 2).min(HOT),
                }
                let (moved, newest) = changed_by_others(&store, &me, last).await;
                last = newest;
                if moved {
                    n.notify_one();
                }
                // At most one look per `every`; a write meanwhile leaves its hint.
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
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

/// Watches the folder of the store's file `file` for writes to it and its journals
/// (`-wal`, `-journal`); each wakes `hint`. None when notifications are unavailable.
fn watch_writes(file: &Path, hint: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file.file_name()?.to_os_string();
    let ours = move |p: &PathBuf| {
        p.file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(name.as_encoded_bytes()))
    };
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let write = matches!(
                ev.kind,
                EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
            );
            if write && ev.paths.iter().any(&ours) {
                hint.notify_one();
            }
        }
    })
    .ok()?;
    w.watch(dir, RecursiveMode::NonRecursive).ok()?;
    Some(w)
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
