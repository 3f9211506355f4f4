//! The store's change feed: tells a run loop that another process changed the store
//! (a handoff accepted, a task retried from another shell, a task created by an agent
//! or over HTTP, a dependency finished by another borg), so that the loop waits on
//! events instead of polling the tables.
//!
//! Two sources, chosen by the backend (`Store::subscribe`):
//! - pushed notes (PostgreSQL's LISTEN/NOTIFY: the actor of each committed change),
//!   with a slow look at the event log as a backstop, since a notification sent while
//!   the listener reconnects is lost;
//! - looking at the event log (SQLite): every state change appends to it in its own
//!   transaction, so the newest event id is a complete and cheap change detector
//!   (another process's commit cannot be pushed to us). Such a commit writes the
//!   store's files, though: the feed watches their folder with filesystem
//!   notifications (inotify); after a write it stops listening and looks every
//!   [`POLL`] for [`HOT`] (a write is seen before its commit becomes visible: the
//!   journal's frames are written, then synced, then published in the shared-memory
//!   index, which makes no notification; and a busy run, writing all the time, is
//!   cheaper polled than woken at every write), then listens again. Otherwise it
//!   looks only every [`SAFETY`]: an idle fleet costs no wakeups. Without
//!   notifications it looks every [`POLL`].
//!
//! Changes this owner made itself are ignored: the loop learns of its own attempts
//! directly.

use super::{call, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// How often the SQLite change detector looks at most (and always, without
/// notifications): the worst-case delay between another process's change and the loop
/// reacting to it.
pub const POLL: Duration = Duration::from_millis(50);

/// With pushed notes, how often the event log is looked at anyway.
pub const BACKSTOP: Duration = Duration::from_secs(2);

/// With filesystem notifications: how often the detector looks even though none came.
pub const SAFETY: Duration = Duration::from_secs(5);

/// With filesystem notifications: how long after a write the detector looks every
/// [`POLL`] instead of listening (the commit of that write may become visible only
/// then, and more writes usually follow).
pub const HOT: Duration = Duration::from_secs(1);

/// An owner id that no change has (owners and agents never contain a NUL): a feed
/// started for it reports every change, its own process's included (the event
/// stream of `borg serve`).
pub const NOBODY: &str = "\u{0}nobody";

/// Events read at once when the newest id moved, to see who wrote them.
const PAGE: usize = 256;

/// A running change feed; stops when dropped.
pub struct ChangeFeed {
    notify: Arc<Notify>,
    stop: CancellationToken,
}

impl ChangeFeed {
    /// Starts watching `store` for changes made by anyone but `me` (an owner id).
    /// When the backend cannot push, it looks at most every `every`; with `files` (the
    /// store's file) only after that file or its journal was written (see the module
    /// doc).
    pub fn start(
        store: Arc<dyn Store>,
        me: String,
        every: Duration,
        files: Option<&Path>,
    ) -> ChangeFeed {
        let notify = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (n, s) = (notify.clone(), stop.clone());
        let notes = store.subscribe();
        let hint = Arc::new(Notify::new());
        // Filesystem notifications only matter when the backend cannot push.
        let watch = match notes {
            None => files.and_then(|f| Watch::start(f, hint.clone())),
            Some(_) => None,
        };
        let mut looks = Looks { every, hint, watch };
        tokio::spawn(async move {
            let last = call(&store, |st| st.last_event_id()).await.unwrap_or(0);
            let Some(notes) = notes else {
                return poll(&store, &me, last, &mut looks, &n, &s).await;
            };
            listen(&store, &me, last, notes, &mut looks, &n, &s).await;
        });
        ChangeFeed { notify, stop }
    }

    /// Resolves once the store changed since the last call (a change that happened
    /// while nobody waited is kept, once).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

/// When the looking source looks.
struct Looks {
    /// The shortest time between two looks (and the time between looks without
    /// notifications).
    every: Duration,
    /// Woken by a write to the store's files.
    hint: Arc<Notify>,
    /// The filesystem notifications, when available (they live as long as the feed).
    watch: Option<Watch>,
}

/// The pushed source: each note names the actor of a change; the event log is looked
/// at every [`BACKSTOP`] anyway. Falls back to looking when the notes stop.
async fn listen(
    store: &Arc<dyn Store>,
    me: &str,
    mut last: i64,
    mut notes: broadcast::Receiver<String>,
    looks: &mut Looks,
    n: &Notify,
    s: &CancellationToken,
) {
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
                return poll(store, me, last, looks, n, s).await;
            }
            None => {
                let (moved, newest) = changed_by_others(store, me, last).await;
                last = newest;
                moved
            }
        };
        if moved {
            n.notify_one();
        }
    }
}

/// The looking source: the newest event id every [`POLL`] for [`HOT`] after a write to
/// the store's files (not listening meanwhile), else every [`SAFETY`]; every `every`
/// without notifications.
async fn poll(
    store: &Arc<dyn Store>,
    me: &str,
    mut last: i64,
    looks: &mut Looks,
    n: &Notify,
    s: &CancellationToken,
) {
    let mut hot_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let wait = match hot_until {
            Some(t) if now < t => looks.every,
            Some(_) => {
                // Listen again; the look below sees what was written meanwhile.
                hot_until = None;
                if let Some(w) = looks.watch.as_mut() {
                    w.resume();
                }
                Duration::ZERO
            }
            // Without notifications (or when listening again failed), look on a timer.
            None if looks.watch.as_ref().is_some_and(|w| w.on) => SAFETY,
            None => looks.every,
        };
        tokio::select! {
            _ = s.cancelled() => return,
            _ = looks.hint.notified(), if hot_until.is_none() && !wait.is_zero() => {
                hot_until = Some(tokio::time::Instant::now() + HOT);
                if let Some(w) = looks.watch.as_mut() {
                    w.pause();
                }
            }
            _ = tokio::time::sleep(wait) => {}
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

/// Filesystem notifications of writes to the store's file and its journals (`-wal`,
/// `-journal`): each wakes the hint.
struct Watch {
    watcher: notify::RecommendedWatcher,
    dir: PathBuf,
    on: bool,
}

impl Watch {
    /// Watches the folder of the store's file `file`; None when notifications are
    /// unavailable.
    fn start(file: &Path, hint: Arc<Notify>) -> Option<Watch> {
        use notify::EventKind;
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = file.file_name()?.to_os_string();
        let ours = move |p: &PathBuf| {
            p.file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(name.as_encoded_bytes()))
        };
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
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
        let mut w = Watch {
            watcher,
            dir,
            on: false,
        };
        w.resume();
        w.on.then_some(w)
    }

    /// Stops listening (while the feed polls anyway).
    fn pause(&mut self) {
        use notify::Watcher;
        if self.on {
            self.on = self.watcher.unwatch(&self.dir).is_err();
        }
    }

    /// Listens again.
    fn resume(&mut self) {
        use notify::{RecursiveMode, Watcher};
        if !self.on {
            self.on = self
                .watcher
                .watch(&self.dir, RecursiveMode::NonRecursive)
                .is_ok();
        }
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
