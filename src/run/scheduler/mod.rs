//! The scheduler: the run loop, a state machine driven by events. It owns the run's
//! state (instances and busy slots, per-role counts, the breaker, parking, the budget,
//! the scope, the live views) and has one handler per thing that can happen:
//!
//! - an attempt finished ([`Scheduler::on_finished`]): free its slot, apply the
//!   policy (retry, park, breaker), count it;
//! - the store changed, from another process ([`Scheduler::on_store_changed`]): a
//!   handoff accepted, a task retried from another shell, a dependency finished by
//!   another borg;
//! - a timer fired ([`Scheduler::on_timer`]): lease maintenance, the end of parking
//!   or of a retry's backoff, the redraw of live progress;
//! - a signal arrived ([`Scheduler::on_stop`]): stop dispatching.
//!
//! On a store shared with other hosts (`others`): an unreachable store pauses
//! dispatching until it is back, tasks other hosts finish show in the progress, and a
//! worker on a named list follows the list as it grows. A worker (`forever`) never
//! ends on its own.
//!
//! After each event it starts what can start (`dispatch`: the best ready task
//! whenever a slot is free, within the global concurrency, per-role `max_instances`
//! and pins) and ends when nothing is left to run or wait for. It never polls the
//! tables: it sleeps until the next event.

mod dispatch;
mod finished;
mod fleet;
mod memory;
mod merging;
mod others;

pub use memory::FLEET_KEY as MEMORY_FLEET_KEY;

use crate::run::attempt::{now_ms, AttemptDone, Shared};
use crate::run::policy::Breaker;
use crate::run::summary::{local_time, RunOptions, RunSummary, StopReason};
use crate::show::progress::{Event, Progress};
use crate::store::feed::{self, ChangeFeed};
use crate::store::location::StoreLocation;
use crate::store::{call as db, OwnerInfo, Store, StoreError};
use crate::supervise::runner::LiveView;
use crate::supervise::signals::Shutdown;
use fleet::Fleet;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{JoinError, JoinSet};

/// How often the live lines of running tasks are redrawn.
const REDRAW: Duration = Duration::from_millis(500);

/// Something the loop waits for.
enum Wake {
    /// An attempt task ended (or panicked).
    Finished(Box<Result<(tokio::task::Id, AttemptDone), JoinError>>),
    /// Another process changed the store.
    StoreChanged,
    /// A deadline passed (maintenance, parking, a backoff, a redraw).
    Timer,
    /// The first Ctrl-C / SIGTERM / SIGHUP.
    Stop,
    /// A pass of the merge queue ended (`--merge`).
    Merged(Box<merging::PassResult>),
}

/// A launched attempt task, as the run loop must know it to clean up after a panic.
struct Launched {
    /// The task.
    task: String,
    /// Its role (the role slot it holds).
    role: String,
    /// The instance it occupies.
    instance: String,
    /// The attempt number.
    attempt: u32,
    /// Its claim.
    token: crate::store::ClaimToken,
}

/// The tasks this run works on.
struct Scope {
    /// Task ids (the list plus the handoffs it created); empty = the whole store.
    ids: HashSet<String>,
    /// Claims are restricted to the ids registered for this owner in the store.
    scoped: bool,
}

/// The run loop's state.
pub(crate) struct Scheduler<'p> {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    owner: OwnerInfo,
    opts: RunOptions,
    shutdown: Shutdown,
    progress: &'p mut dyn Progress,
    summary: RunSummary,
    fleet: Fleet,
    running: JoinSet<AttemptDone>,
    /// What each attempt task runs, by its task id: what to free and fail should it
    /// panic (a `JoinError` says nothing else).
    launched: HashMap<tokio::task::Id, Launched>,
    lives: HashMap<String, (Arc<Mutex<LiveView>>, Instant)>,
    breaker: Breaker,
    scope: Scope,
    feed: ChangeFeed,
    /// When the current parking began, epoch ms (None: not parked).
    park_started: Option<i64>,
    /// The fleet is parked until then, epoch ms.
    parked_until: Option<i64>,
    /// The parking state must be read again: the store changed, an attempt hit a usage
    /// limit, or a deadline passed (else it is not read after every event).
    parked_stale: bool,
    /// Instances other borgs use, as last read; read again once another process
    /// changed the store (only others' changes can change it).
    taken: Option<HashSet<String>>,
    /// The next lease maintenance, epoch ms.
    next_maintenance: i64,
    /// Backoffs this run knows of (its own retries, tasks given back), epoch ms.
    retry_at: Vec<i64>,
    /// (tasks in scope, terminal ones), and when that was counted.
    counts: ((usize, usize), Instant),
    /// Waiting for memory (`min_available_memory`): when to look again, epoch ms.
    memory_wait: Option<i64>,
    /// The store has been unreachable since then.
    store_down: Option<Instant>,
    /// Statuses at the last look (to tell what other hosts finished since).
    seen: HashMap<String, crate::outcome::Status>,
    /// The merge queue, run as tasks succeed (`--merge`).
    merge: Option<merging::MergeLoop>,
}

/// Runs tasks until the scope is done, the run is stopped, or nothing can progress.
pub async fn run(
    shared: Arc<Shared>,
    owner: OwnerInfo,
    opts: RunOptions,
    shutdown: Shutdown,
    progress: &mut dyn Progress,
) -> Result<RunSummary, StoreError> {
    let mut s = Scheduler::start(shared, owner, opts, shutdown, progress).await?;
    s.remember_statuses().await;
    loop {
        s.maintain_if_due().await;
        s.check_limits().await;
        s.dispatch().await?;
        s.start_merge();
        if s.is_over().await? {
            break;
        }
        s.draw_live();
        match s.next_wake().await {
            Wake::Finished(joined) => s.on_finished(*joined).await,
            Wake::StoreChanged => s.on_store_changed().await,
            Wake::Timer => s.on_timer(),
            Wake::Stop => s.on_stop(),
            Wake::Merged(r) => s.on_merged(*r).await,
        }
    }
    s.end_memory_wait().await;
    Ok(s.into_summary())
}

impl<'p> Scheduler<'p> {
    /// Sets the run up: a closed breaker, the pins, the scope registered in the store,
    /// the change feed.
    async fn start(
        shared: Arc<Shared>,
        owner: OwnerInfo,
        opts: RunOptions,
        shutdown: Shutdown,
        progress: &'p mut dyn Progress,
    ) -> Result<Scheduler<'p>, StoreError> {
        let store = shared.store.clone();
        close_breaker(&store).await;
        let pins: HashSet<String> = db(&store, |st| st.tasks())
            .await?
            .into_iter()
            .filter_map(|t| t.instance)
            .collect();
        let scope = register_scope(&store, &owner, &opts.scope, opts.list.is_some()).await?;
        let mut instances = shared.workspaces.list().unwrap_or_default();
        if shared.git.is_some() {
            // Git mode runs tasks only in worktrees; template copies are left alone.
            instances.retain(|i| crate::git::worktree::Worktree::of_instance(&i.path).exists());
        }
        let fleet = Fleet::new(instances, pins);
        let file = match StoreLocation::of(&shared.store_path) {
            StoreLocation::Sqlite(p) => Some(p),
            StoreLocation::Postgres(_) => None,
        };
        let feed = ChangeFeed::start(store.clone(), owner.id.clone(), feed::POLL, file.as_deref());
        note_outside(&store, &shared, &scope, progress).await;
        let opts_merge = opts.merge.clone();
        Ok(Scheduler {
            shared,
            store,
            owner,
            opts,
            shutdown,
            progress,
            summary: RunSummary::default(),
            fleet,
            running: JoinSet::new(),
            launched: HashMap::new(),
            lives: HashMap::new(),
            breaker: Breaker::default(),
            scope,
            feed,
            park_started: None,
            parked_until: None,
            parked_stale: true,
            taken: None,
            next_maintenance: 0,
            retry_at: Vec::new(),
            counts: ((0, 0), Instant::now() - Duration::from_secs(1)),
            memory_wait: None,
            store_down: None,
            seen: HashMap::new(),
            merge: opts_merge.map(merging::MergeLoop::new),
        })
    }

    /// Still starting new tasks: no signal, no early stop.
    fn dispatching(&self) -> bool {
        !self.shutdown.stop.is_cancelled() && self.summary.stop.is_none()
    }

    /// Heartbeat, dead borgs' claims and expired leases back, when due.
    async fn maintain_if_due(&mut self) {
        let now = now_ms();
        if now >= self.next_maintenance {
            match crate::run::recovery::maintenance(&self.store, &self.owner).await {
                Ok(()) => self.store_back(),
                Err(e) => self.store_away(&e),
            }
            let lease = self.shared.settings.run.lease.as_millis() as i64;
            self.next_maintenance = now + (lease / 3).clamp(500, 5000);
        }
    }

    /// Parking (and its limit, `max_park`) and the budget: either may stop the run.
    async fn check_limits(&mut self) {
        let now = now_ms();
        if std::mem::take(&mut self.parked_stale) {
            self.parked_until = db(&self.store, |st| st.fleet("parked"))
                .await
                .ok()
                .flatten()
                .and_then(|v| v.get("until_ms").and_then(|x| x.as_i64()));
        }
        self.parked_until = self.parked_until.filter(|&u| u > now);
        match self.parked_until {
            Some(until) => {
                let started = *self.park_started.get_or_insert(now);
                let max = self.shared.settings.run.max_park;
                if until - started > max.as_millis() as i64 && self.summary.stop.is_none() {
                    let why = StopReason::Park(format!(
                        "the fleet has been parked on a usage limit since {} and the limit resets at {}, beyond max_park ({}); run again after the reset",
                        local_time(started),
                        local_time(until),
                        humantime::format_duration(max)
                    ));
                    self.stop_with(why);
                }
            }
            None => self.park_started = None,
        }
        if self.dispatching() && !self.budget_left() {
            let b = self.opts.budget_usd.unwrap_or(0.0);
            let why = StopReason::Budget(format!(
                "the run budget of ${b:.2} is spent (${:.4}); no new task starts",
                self.summary.cost_usd
            ));
            self.stop_with(why);
        }
    }

    fn budget_left(&self) -> bool {
        self.opts
            .budget_usd
            .is_none_or(|b| self.summary.cost_usd < b)
    }

    /// Stops starting tasks for `why`, and says so once.
    fn stop_with(&mut self, why: StopReason) {
        self.progress.event(&Event::Note(why.message().to_string()));
        self.summary.stop = Some(why);
    }

    /// Nothing runs and nothing is left to wait for: the run is stopped, or every
    /// task in scope is terminal (a task given back to wait counts as open).
    async fn is_over(&mut self) -> Result<bool, StoreError> {
        if !self.running.is_empty() || self.merge_running() {
            return Ok(false);
        }
        if !self.dispatching() {
            return Ok(true);
        }
        if self.opts.forever {
            return Ok(false);
        }
        let rows = match db(&self.store, |st| st.statuses()).await {
            Ok(rows) => rows,
            Err(e) if others::is_outage(&e) => {
                self.store_away(&e);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let all = self.opts.scope.is_empty();
        let open = rows
            .iter()
            .any(|(id, st)| (all || self.scope.ids.contains(id)) && !st.is_terminal());
        // Else: waiting on other workers' claims, on a backoff or on parking.
        Ok(!open && !self.final_merge())
    }

    /// Refreshes the live line of every running task.
    fn draw_live(&mut self) {
        if !self.progress.wants_live() {
            return;
        }
        for (task, (live, since)) in &self.lives {
            if let Ok(v) = live.lock() {
                self.progress.live(task, &v, since.elapsed());
            }
        }
    }

    /// Sleeps until the next event.
    async fn next_wake(&mut self) -> Wake {
        let deadline = self.next_deadline();
        let dispatching = self.dispatching();
        let running = !self.running.is_empty();
        let passing = self.merge_running();
        tokio::select! {
            r = merging::pass_end(&mut self.merge), if passing => Wake::Merged(Box::new(r)),
            Some(joined) = self.running.join_next_with_id(), if running => Wake::Finished(Box::new(joined)),
            _ = self.shutdown.stop.cancelled(), if dispatching => Wake::Stop,
            _ = self.feed.changed(), if dispatching => Wake::StoreChanged,
            _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
        }
    }

    /// The earliest of: the next maintenance, the end of parking, a known backoff,
    /// and the next redraw while tasks run (only when live lines are shown: an idle
    /// fleet should not wake borg twice a second for nothing).
    fn next_deadline(&self) -> Instant {
        let now = now_ms();
        let mut at = self.next_maintenance;
        if let Some(u) = self.parked_until {
            at = at.min(u);
        }
        if let Some(r) = self.retry_at.iter().min() {
            at = at.min(*r);
        }
        if let Some(m) = self.memory_wait {
            at = at.min(m);
        }
        if let Some(o) = self.outage_deadline() {
            at = at.min(o);
        }
        let mut deadline = Instant::now() + Duration::from_millis((at - now).max(0) as u64);
        if !self.running.is_empty() && self.progress.wants_live() {
            deadline = deadline.min(Instant::now() + REDRAW);
        }
        deadline
    }

    /// Another process changed the store: the next dispatch looks again; tasks other
    /// hosts finished are shown, a named list's new tasks taken in.
    async fn on_store_changed(&mut self) {
        tracing::trace!("the store changed");
        self.parked_stale = true;
        self.taken = None;
        self.refresh_list().await;
        self.follow_others().await;
    }

    /// A deadline passed: forget the backoffs that ended (maintenance and parking are
    /// checked by the loop itself).
    fn on_timer(&mut self) {
        self.parked_stale = true;
        self.taken = None;
        let now = now_ms();
        self.retry_at.retain(|&t| t > now);
    }

    /// The first signal: no new task starts; running children get the stop ladder
    /// through their own tokens, and the loop waits for them.
    fn on_stop(&mut self) {
        tracing::debug!("stop requested; waiting for the running attempts");
    }

    fn into_summary(mut self) -> RunSummary {
        self.summary.interrupted = self.shutdown.stop.is_cancelled();
        self.summary.scope = std::mem::take(&mut self.scope.ids).into_iter().collect();
        self.summary
    }
}

/// Says once which tasks of the run only outside agents can do (external roles): the
/// run waits for them, and borg starts no child for them.
async fn note_outside(
    store: &Arc<dyn Store>,
    shared: &Shared,
    scope: &Scope,
    progress: &mut dyn Progress,
) {
    let external = shared.roles.external();
    if external.is_empty() {
        return;
    }
    let tasks = db(store, |st| st.tasks()).await.unwrap_or_default();
    let waiting: Vec<String> = tasks
        .into_iter()
        .filter(|t| scope.ids.is_empty() || scope.ids.contains(&t.id))
        .filter(|t| external.contains(&t.role) && !t.status.is_terminal())
        .map(|t| t.id)
        .collect();
    if !waiting.is_empty() {
        progress.event(&Event::Note(format!(
            "{} task(s) of external roles wait for outside agents (borg serve): {}",
            waiting.len(),
            waiting.join(", ")
        )));
    }
}

/// A new run starts with a closed breaker: so must the store (and `borg status`).
async fn close_breaker(store: &Arc<dyn Store>) {
    let open = db(store, |st| st.fleet("breaker")).await.ok().flatten();
    if open.is_some_and(|b| b.get("open").and_then(|o| o.as_bool()) == Some(true)) {
        let v = serde_json::json!({"open": false});
        let _ = db(store, move |st| st.set_fleet("breaker", &v, now_ms())).await;
    }
}

/// With every task of the store in scope the claim need not filter by id; else the
/// scope is registered in the store once (and grows with handoffs), so that a claim
/// costs the same whatever the size of the list.
async fn register_scope(
    store: &Arc<dyn Store>,
    owner: &OwnerInfo,
    ids: &[String],
    named_list: bool,
) -> Result<Scope, StoreError> {
    let set: HashSet<String> = ids.iter().cloned().collect();
    if named_list {
        // A named list grows while the worker runs: always claim through its scope.
        let (me, list) = (owner.id.clone(), ids.to_vec());
        db(store, move |st| st.add_scope(&me, &list)).await?;
        return Ok(Scope {
            ids: set,
            scoped: true,
        });
    }
    if ids.is_empty() {
        return Ok(Scope {
            ids: set,
            scoped: false,
        });
    }
    let all = db(store, |st| st.statuses()).await?;
    if all.iter().all(|(id, _)| set.contains(id)) {
        return Ok(Scope {
            ids: set,
            scoped: false,
        });
    }
    let (me, list) = (owner.id.clone(), ids.to_vec());
    db(store, move |st| st.add_scope(&me, &list)).await?;
    Ok(Scope {
        ids: set,
        scoped: true,
    })
}
