//! How `logs --follow` waits for something to show: filesystem notifications (inotify)
//! on the folders of the log being followed and of the store, so that a silent task
//! costs no wakeups. After a write it stops listening and looks every [`POLL`] for
//! [`HOT`] (a write to the store is seen before its commit becomes visible, see
//! `store::feed`, and more writes usually follow), then listens again. Where
//! notifications are unavailable it looks every [`POLL`]; either way it also looks
//! every [`SAFETY`], in case a notification was missed.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Between looks without notifications.
pub const POLL: Duration = Duration::from_millis(200);
/// Between looks with notifications, when none came.
pub const SAFETY: Duration = Duration::from_secs(5);
/// How long after a write the follower looks every [`POLL`] instead of listening.
pub const HOT: Duration = Duration::from_millis(500);

/// Waits for a change in the watched folders.
pub struct Waiter {
    /// None: notifications are unavailable; polling.
    watcher: Option<notify::RecommendedWatcher>,
    changed: Arc<Notify>,
    /// The folders to listen to.
    watched: HashSet<PathBuf>,
    /// Not listening until then (a write was seen): looking every [`POLL`].
    paused_until: Option<Instant>,
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
            paused_until: None,
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
        if self.watcher.is_none() || self.watched.contains(dir) || !dir.is_dir() {
            return false;
        }
        if self.paused_until.is_none() && !self.listen(dir) {
            return false;
        }
        self.watched.insert(dir.to_path_buf())
    }

    fn listen(&mut self, dir: &Path) -> bool {
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("cannot watch {}: {e}", dir.display());
                false
            }
        }
    }

    /// Returns after a write in a watched folder (or after [`SAFETY`]); after [`POLL`]
    /// shortly after a write or without notifications.
    pub async fn wait(&mut self) {
        if self.watcher.is_none() {
            return tokio::time::sleep(POLL).await;
        }
        match self.paused_until {
            Some(t) if Instant::now() < t => tokio::time::sleep(POLL).await,
            Some(_) => self.resume(),
            None => {
                tokio::select! {
                    _ = self.changed.notified() => self.pause(),
                    _ = tokio::time::sleep(SAFETY) => {}
                }
            }
        }
    }

    /// Stops listening for [`HOT`].
    fn pause(&mut self) {
        self.paused_until = Some(Instant::now() + HOT);
        if let Some(w) = self.watcher.as_mut() {
            for d in &self.watched {
                let _ = w.unwatch(d);
            }
        }
    }

    /// Listens again (the caller looks at once: writes made meanwhile went unnoticed).
    fn resume(&mut self) {
        self.paused_until = None;
        let dirs: Vec<PathBuf> = self.watched.iter().cloned().collect();
        self.watched.retain(|_| false);
        for d in dirs {
            if self.listen(&d) {
                self.watched.insert(d);
            }
        }
    }
}
