//! How `logs --follow` waits for something to show: filesystem notifications (inotify)
//! on the folders of the log being followed and of the store, so that a silent task
//! costs no wakeups. After a write it keeps looking every [`POLL`] for [`HOT`]: a write
//! to the store is seen before its commit becomes visible (see `store::feed`). Where
//! notifications are unavailable it looks every [`POLL`]; either way it also looks
//! every [`SAFETY`], in case a notification was missed.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Between looks without notifications.
pub const POLL: Duration = Duration::from_millis(200);
/// Between looks with notifications, when none came.
pub const SAFETY: Duration = Duration::from_secs(5);
/// How long after a write the follower keeps looking every [`POLL`].
pub const HOT: Duration = Duration::from_millis(600);

/// Waits for a change in the watched folders.
pub struct Waiter {
    /// None: notifications are unavailable; polling.
    watcher: Option<notify::RecommendedWatcher>,
    changed: Arc<Notify>,
    watched: HashSet<PathBuf>,
    /// Until then, look every [`POLL`] (a write was seen shortly before).
    hot_until: tokio::time::Instant,
}

impl Waiter {
    /// A waiter watching nothing yet.
    pub fn new() -> Waiter {
        let changed = Arc::new(Notify::new());
        let n = changed.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if matches!(
                    ev.kind,
                    EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
                ) {
                    n.notify_one();
                }
            }
        })
        .ok();
        Waiter {
            watcher,
            changed,
            watched: HashSet::new(),
            hot_until: tokio::time::Instant::now(),
        }
    }

    /// Gives notifications up: looks every [`POLL`] (for a store on a database server,
    /// whose changes make no notification on this machine).
    pub fn poll_only(&mut self) {
        self.watcher = None;
    }

    /// Also wakes on writes in `dir` (not recursive); a folder that does not exist yet
    /// is tried again at the next call. True when a watch was just added: what was
    /// written before it went unnoticed, so the caller must look once more before it
    /// waits.
    pub fn watch(&mut self, dir: &Path) -> bool {
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        if self.watched.contains(dir) || !dir.is_dir() {
            return false;
        }
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => self.watched.insert(dir.to_path_buf()),
            Err(e) => {
                tracing::debug!("cannot watch {}: {e}", dir.display());
                false
            }
        }
    }

    /// Returns after a write in a watched folder (or after [`SAFETY`]); after [`POLL`]
    /// shortly after a write or without notifications.
    pub async fn wait(&mut self) {
        let hot = tokio::time::Instant::now() < self.hot_until;
        let limit = if self.watcher.is_some() && !hot {
            SAFETY
        } else {
            POLL
        };
        tokio::select! {
            _ = self.changed.notified() => {
                self.hot_until = tokio::time::Instant::now() + HOT;
            }
            _ = tokio::time::sleep(limit) => {}
        }
    }
}
