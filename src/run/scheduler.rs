//! The scheduler: the run loop. It claims the best ready task from the store whenever
//! a slot is free (global concurrency, per-role `max_instances`, pinned instances),
//! gives it an idle instance of its role (creating one when needed), and reacts to
//! each attempt's end: retry with backoff, park the fleet on a usage limit, open the
//! circuit breaker on a fleet-wide fault, stop at the run budget. Between claims it
//! runs `recovery::maintenance` (heartbeats, dead borgs' claims, expired leases).

use crate::outcome::Status;
use crate::run::attempt::{self, now_ms, AttemptDone, Shared};
use crate::run::policy::{disposition, react, Breaker};
use crate::show::progress::{Event, Progress};
use crate::store::{
    call as db, ClaimRequest, Disposition, InstanceRow, OwnerInfo, StoreError, TaskRow,
};
use crate::supervise::runner::{Control, LiveView};
use crate::supervise::signals::Shutdown;
use crate::workspace::instance::Instance;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

/// Why a run stopped before its list was done.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The circuit breaker opened (message names the cause and the fix).
    Breaker(String),
    /// The run budget was reached.
    Budget(String),
    /// Parked longer than `max_park`.
    Park(String),
}

impl StopReason {
    /// The message for people.
    pub fn message(&self) -> &str {
        match self {
            StopReason::Breaker(m) | StopReason::Budget(m) | StopReason::Park(m) => m,
        }
    }

    /// A few words for each task it kept from starting (the message itself is shown once).
    pub fn short(&self) -> &'static str {
        match self {
            StopReason::Breaker(_) => "the circuit breaker opened",
            StopReason::Budget(_) => "the run budget was spent",
            StopReason::Park(_) => "parked longer than max_park",
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Ctrl-C / SIGTERM / SIGHUP stopped it.
    pub interrupted: bool,
    /// It stopped early for this reason.
    pub stop: Option<StopReason>,
    /// Task ids of this run (the list plus the handoffs it created).
    pub scope: Vec<String>,
    /// Money spent by this run's attempts.
    pub cost_usd: f64,
    /// Tasks whose attempts were stopped by the interrupt.
    pub stopped_tasks: Vec<String>,
}

/// Knobs of one run.
pub struct RunOptions {
    /// Task ids in scope; empty = every task of the store.
    pub scope: Vec<String>,
    /// At most this many children at once.
    pub concurrency: usize,
    /// Stop starting tasks once this much is spent.
    pub budget_usd: Option<f64>,
}

/// Runs tasks until the scope is done, the run is stopped, or nothing can progress.
pub async fn run(
    shared: Arc<Shared>,
    owner: OwnerInfo,
    mut opts: RunOptions,
    shutdown: Shutdown,
    progress: &mut dyn Progress,
) -> Result<RunSummary, StoreError> {
    let store = shared.store.clone();
    let s = shared.settings.clone();
    let mut summary = RunSummary::default();
    let mut instances: Vec<Instance> = shared.workspaces.list().unwrap_or_default();
    let mut busy: HashMap<String, String> = HashMap::new(); // instance → task
    let mut per_role: HashMap<String, usize> = HashMap::new();
    let mut running: JoinSet<AttemptDone> = JoinSet::new();
    let mut breaker = Breaker::default();
    let mut park_started: Option<i64> = None;
    let mut next_maintenance = 0i64;
    let mut scope: HashSet<String> = opts.scope.iter().cloned().collect();
    let poll = Duration::from_millis(250);
    let mut whole_store = false;
    let mut lives: HashMap<String, (Arc<Mutex<LiveView>>, std::time::Instant)> = HashMap::new();
    // A new run starts with a closed breaker: so must the store (and `borg status`).
    let open = db(&store, |st| st.fleet("breaker")).await.ok().flatten();
    if open.is_some_and(|b| b.get("open").and_then(|o| o.as_bool()) == Some(true)) {
        let v = serde_json::json!({"open": false});
        let _ = db(&store, move |st| st.set_fleet("breaker", &v, now_ms())).await;
    }
    // Instances named by pins: one that does not exist yet counts as idle (it is created
    // when its task is claimed), else a task pinned to it would wait forever.
    let pins: HashSet<String> = db(&store, |st| st.tasks())
        .await?
        .into_iter()
        .filter_map(|t| t.instance)
        .collect();

    let mut counts = (0usize, 0usize);
    let mut counted_at = std::time::Instant::now() - Duration::from_secs(1);
    // With every task of the store in scope, the claim need not filter by id; else the
    // scope is registered in the store once (and grows with handoffs), so that a claim
    // costs the same whatever the size of the list.
    if !opts.scope.is_empty() {
        let all = db(&store, |st| st.statuses()).await?;
        if all.iter().all(|(id, _)| scope.contains(id)) {
            whole_store = true;
        } else {
            let (me, ids) = (owner.id.clone(), opts.scope.clone());
            db(&store, move |st| st.add_scope(&me, &ids)).await?;
        }
    }
    let scoped = !opts.scope.is_empty() && !whole_store;
    loop {
        let now = now_ms();
        if now >= next_maintenance {
            crate::run::recovery::maintenance(&store, &owner).await;
            next_maintenance = now + (s.run.lease.as_millis() as i64 / 3).clamp(500, 5000);
        }
        let dispatching = !shutdown.stop.is_cancelled() && summary.stop.is_none();
        let parked_until = db(&store, |st| st.fleet("parked"))
            .await
            .ok()
            .flatten()
            .and_then(|v| v.get("until_ms").and_then(|x| x.as_i64()))
            .filter(|&u| u > now);
        if let Some(until) = parked_until {
            let started = *park_started.get_or_insert(now);
            if until - started > s.run.max_park.as_millis() as i64 && summary.stop.is_none() {
                let why = StopReason::Park(format!(
                    "the fleet has been parked on a usage limit since {} and the limit resets at {}, beyond max_park ({}); run again after the reset",
                    local_time(started),
                    local_time(until),
                    humantime::format_duration(s.run.max_park)
                ));
                stop_with(&mut summary, progress, why);
            }
        } else {
            park_started = None;
        }
        let budget_left = opts.budget_usd.is_none_or(|b| summary.cost_usd < b);
        if dispatching && !budget_left && summary.stop.is_none() {
            let b = opts.budget_usd.unwrap_or(0.0);
            let why = StopReason::Budget(format!(
                "the run budget of ${b:.2} is spent (${:.4}); no new task starts",
                summary.cost_usd
            ));
            stop_with(&mut summary, progress, why);
        }
        let mut claimed_any = false;
        if dispatching
            && parked_until.is_none()
            && budget_left
            && summary.stop.is_none()
            && running.len() < opts.concurrency
        {
            // Instances other borg processes are using now are not idle for us. Read
            // once per round: the claim acquires its instance atomically anyway, so a
            // stale view costs at most a fallback to `pick_instance`.
            let taken: HashSet<String> = db(&store, |st| st.instances())
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.state == "busy" && r.owner.as_deref() != Some(owner.id.as_str()))
                .map(|r| r.id)
                .collect();
            while running.len() < opts.concurrency {
                let roles: Vec<String> = shared
                    .roles
                    .names()
                    .into_iter()
                    .filter(|r| {
                        s.roles
                            .get(r)
                            .and_then(|l| l.max_instances)
                            .is_none_or(|m| per_role.get(r).copied().unwrap_or(0) < m)
                    })
                    .collect();
                if roles.is_empty() {
                    break;
                }
                let free: Vec<&Instance> = instances
                    .iter()
                    .filter(|i| !busy.contains_key(&i.id) && !taken.contains(&i.id))
                    .collect();
                let reuse: Vec<(String, String)> = free
                    .iter()
                    .map(|i| (i.role.clone(), i.id.clone()))
                    .collect();
                let mut idle: Vec<String> = free.iter().map(|i| i.id.clone()).collect();
                idle.extend(
                    pins.iter()
                        .filter(|p| !instances.iter().any(|i| &i.id == *p))
                        .cloned(),
                );
                let req = ClaimRequest {
                    owner: owner.id.clone(),
                    roles,
                    idle_instances: idle,
                    reuse,
                    only: Vec::new(),
                    scoped,
                    lease: s.run.lease,
                    now_ms: now_ms(),
                };
                let Some(claim) = db(&store, move |st| st.claim_next(&req)).await? else {
                    break;
                };
                claimed_any = true;
                tracing::debug!(task = %claim.task.id, fence = claim.token.fence, attempt = claim.attempt, "claimed");
                let acquired = claim
                    .instance
                    .as_ref()
                    .and_then(|id| instances.iter().find(|i| &i.id == id).cloned());
                let picked = match acquired {
                    Some(i) => Ok(Some(i)),
                    None => {
                        pick_instance(&shared, &store, &owner, &mut instances, &busy, &claim.task)
                            .await
                    }
                };
                let inst = match picked {
                    Ok(Some(i)) => i,
                    Ok(None) => {
                        // Its pinned instance was taken by another borg in the meantime:
                        // give the task back, untouched, for a moment later.
                        give_back(
                            &store,
                            &claim.token,
                            Status::Interrupted,
                            "its pinned instance is in use by another borg".into(),
                            Disposition::Retry {
                                not_before_ms: now_ms() + 1000,
                                counts: false,
                            },
                        )
                        .await?;
                        continue;
                    }
                    Err(e) => {
                        // Cannot even create a workspace: the task cannot run.
                        tracing::error!("{e}");
                        give_back(
                            &store,
                            &claim.token,
                            Status::SpawnFailed,
                            e.to_string(),
                            Disposition::Final(Status::SpawnFailed),
                        )
                        .await?;
                        continue;
                    }
                };
                busy.insert(inst.id.clone(), claim.task.id.clone());
                *per_role.entry(claim.task.role.clone()).or_default() += 1;
                progress.event(&Event::Started {
                    task: claim.task.id.clone(),
                    instance: inst.id.clone(),
                    attempt: claim.attempt as u32,
                });
                let ctl = Control {
                    stop: shutdown.stop.child_token(),
                    kill: shutdown.kill.child_token(),
                };
                let live = Arc::new(Mutex::new(LiveView::default()));
                lives.insert(
                    claim.task.id.clone(),
                    (live.clone(), std::time::Instant::now()),
                );
                let sh = shared.clone();
                let (base, cap) = (s.run.backoff_base, s.run.backoff_cap);
                let st = store.clone();
                running.spawn(async move {
                    let done = attempt::run(sh, claim, inst, ctl, live, move |c, t| {
                        disposition(c, t, base, cap)
                    })
                    .await;
                    // The attempt's finish released its instance in the same commit.
                    // When the finish was refused (the claim was lost), release it
                    // here, durably, before the scheduler may hand it out again.
                    if done.lost_claim.is_none() {
                        return done;
                    }
                    let row = InstanceRow {
                        id: done.instance.clone(),
                        role: done.role.clone(),
                        state: "idle".into(),
                        current_task: None,
                        owner: None,
                        updated_ms: now_ms(),
                    };
                    let _ = db(&st, move |st| st.upsert_instance(&row)).await;
                    done
                });
            }
        }
        if running.is_empty() && !claimed_any {
            if !dispatching || summary.stop.is_some() {
                break;
            }
            let rows = db(&store, |st| st.statuses()).await?;
            let open = rows.iter().any(|(id, status)| {
                (opts.scope.is_empty() || scope.contains(id)) && !status.is_terminal()
            });
            if !open {
                break;
            }
            // Waiting on other workers' claims, on a retry backoff or on parking.
        }
        for (task, (live, since)) in &lives {
            if let Ok(v) = live.lock() {
                progress.live(task, &v, since.elapsed());
            }
        }
        tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let done = match joined {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!("an attempt task failed: {e}");
                        continue;
                    }
                };
                tracing::info!(task = %done.task, status = %done.classified.status, cause = ?done.classified.cause, "attempt finished");
                busy.remove(&done.instance);
                lives.remove(&done.task);
                if let Some(n) = per_role.get_mut(&done.role) { *n = n.saturating_sub(1); }
                summary.cost_usd += done.record.cost_usd;
                if let Some(e) = &done.lost_claim {
                    progress.event(&Event::Note(format!("{}: result discarded: {e}", done.task)));
                }
                if scoped && !done.new_tasks.is_empty() {
                    let (me, ids) = (owner.id.clone(), done.new_tasks.clone());
                    if let Err(e) = db(&store, move |st| st.add_scope(&me, &ids)).await {
                        tracing::error!("cannot add the handoff tasks to this run: {e}");
                    }
                }
                for t in &done.new_tasks {
                    scope.insert(t.clone());
                    if !opts.scope.is_empty() { opts.scope.push(t.clone()); }
                    progress.event(&Event::Note(format!("handoff: {} created from {}", t, done.task)));
                }
                if done.classified.status == Status::Interrupted {
                    summary.stopped_tasks.push(done.task.clone());
                }
                react(&done, &s, &mut breaker, &mut summary, &store, progress).await;
                // Counting reads every task's status: at most a few times a second.
                if counted_at.elapsed() >= Duration::from_millis(300) || running.is_empty() {
                    counts = count_done(&store, &opts.scope).await;
                    counted_at = std::time::Instant::now();
                } else {
                    counts.1 += 1;
                }
                let (total, finished) = counts;
                progress.event(&Event::Finished {
                    task: done.task.clone(),
                    status: done.classified.status,
                    duration_ms: done.record.duration_ms,
                    cost_usd: done.record.cost_usd,
                    error: done.classified.error.clone(),
                    done: finished,
                    total,
                });
                progress.totals(finished, total, summary.cost_usd);
            }
            _ = shutdown.stop.cancelled(), if dispatching => {}
            _ = tokio::time::sleep(poll), if running.is_empty() || !dispatching => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    summary.interrupted = shutdown.stop.is_cancelled();
    summary.scope = scope.into_iter().collect();
    Ok(summary)
}

/// Stops starting tasks for `why`, and says so once.
fn stop_with(summary: &mut RunSummary, progress: &mut dyn Progress, why: StopReason) {
    progress.event(&Event::Note(why.message().to_string()));
    summary.stop = Some(why);
}

/// Ends a claim that never ran a child (its pinned instance was taken, or no workspace
/// could be made), recording `error` as the attempt's outcome.
async fn give_back(
    store: &Arc<dyn crate::store::Store>,
    token: &crate::store::ClaimToken,
    status: Status,
    error: String,
    disposition: Disposition,
) -> Result<(), StoreError> {
    let fin = crate::store::AttemptFinish {
        status,
        record: serde_json::json!({"error": error, "status": status.as_str()}),
        disposition,
        new_tasks: vec![],
        converted_handoffs: vec![],
        cost_usd: 0.0,
        now_ms: now_ms(),
    };
    let token = token.clone();
    db(store, move |st| st.finish_attempt(&token, &fin)).await
}

/// (tasks in scope, terminal ones).
async fn count_done(store: &Arc<dyn crate::store::Store>, scope: &[String]) -> (usize, usize) {
    let rows = db(store, |st| st.statuses()).await.unwrap_or_default();
    let set: HashSet<&String> = scope.iter().collect();
    let inscope = rows
        .iter()
        .filter(|(id, _)| scope.is_empty() || set.contains(id));
    inscope.fold((0, 0), |(n, done), (_, st)| {
        (n + 1, done + usize::from(st.is_terminal()))
    })
}

/// An instance for the task, acquired in the store so no other borg uses it at the
/// same time: its pinned one (created if missing; None when another borg holds it),
/// else an idle one of its role, else a new one.
async fn pick_instance(
    shared: &Shared,
    store: &Arc<dyn crate::store::Store>,
    owner: &OwnerInfo,
    instances: &mut Vec<Instance>,
    busy: &HashMap<String, String>,
    task: &TaskRow,
) -> Result<Option<Instance>, crate::workspace::instance::InstanceError> {
    let role = || {
        shared
            .roles
            .get(&task.role)
            .map_err(|e| crate::workspace::instance::InstanceError::InvalidName(e.to_string()))
    };
    let acquire = |i: &Instance| {
        let row = InstanceRow {
            id: i.id.clone(),
            role: i.role.clone(),
            state: "busy".into(),
            current_task: Some(task.id.clone()),
            owner: Some(owner.id.clone()),
            updated_ms: now_ms(),
        };
        db(store, move |st| st.acquire_instance(&row).unwrap_or(false))
    };
    let template = shared.settings.paths.template.as_deref();
    if let Some(pin) = &task.instance {
        let inst = match instances.iter().find(|i| &i.id == pin) {
            Some(i) => i.clone(),
            None => {
                let i = match shared.workspaces.get(pin) {
                    Ok(i) => i,
                    // Another borg may have created it a moment ago.
                    Err(_) => shared
                        .workspaces
                        .create(role()?, Some(pin), template)
                        .or_else(|_| shared.workspaces.get(pin))?,
                };
                instances.push(i.clone());
                i
            }
        };
        return Ok(if acquire(&inst).await {
            Some(inst)
        } else {
            None
        });
    }
    let candidates: Vec<Instance> = instances
        .iter()
        .filter(|i| i.role == task.role && !busy.contains_key(&i.id))
        .cloned()
        .collect();
    for c in candidates {
        if acquire(&c).await {
            return Ok(Some(c));
        }
    }
    let i = shared.workspaces.create(role()?, None, template)?;
    instances.push(i.clone());
    acquire(&i).await;
    Ok(Some(i))
}

/// Epoch ms as local HH:MM.
pub fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
        .unwrap_or_default()
}
