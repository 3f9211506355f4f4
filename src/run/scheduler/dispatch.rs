//! Starting what can start: while a slot is free (global concurrency, per-role
//! `max_instances`) and the machine has the memory (`min_available_memory`), claim
//! the best ready task in the store, give it an instance of
//! its role (acquired in the same transaction when one is idle, else picked or
//! created), and start its attempt.

use super::Scheduler;
use crate::outcome::Status;
use crate::run::attempt::{self, now_ms, AttemptDone};
use crate::run::policy::disposition;
use crate::show::progress::Event;
use crate::store::{
    call as db, AttemptFinish, Claim, ClaimRequest, ClaimToken, Disposition, InstanceRow, Store,
    StoreError,
};
use crate::supervise::runner::{Control, LiveView};
use crate::workspace::instance::Instance;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

impl Scheduler<'_> {
    /// Claims and starts tasks while slots are free and nothing holds the run back.
    pub(super) async fn dispatch(&mut self) -> Result<(), StoreError> {
        if !self.dispatching() || self.parked_until.is_some() || !self.budget_left() {
            return Ok(());
        }
        if self.running.len() >= self.opts.concurrency || !self.memory_admits().await {
            return Ok(());
        }
        let taken = match self.taken.take() {
            Some(t) => t,
            None => self.taken_by_others().await,
        };
        while self.running.len() < self.opts.concurrency {
            let mut roles = self.fleet.roles_with_room(&self.shared);
            if let Some(only) = &self.opts.roles {
                roles.retain(|r| only.contains(r));
            }
            if roles.is_empty() {
                break;
            }
            let (idle, reuse) = self.fleet.free(&taken);
            let req = ClaimRequest {
                owner: self.owner.id.clone(),
                roles,
                idle_instances: idle,
                reuse,
                only: Vec::new(),
                scoped: self.scope.scoped,
                lease: self.shared.settings.run.lease,
                now_ms: now_ms(),
            };
            let claim = match db(&self.store, move |st| st.claim_next(&req)).await {
                Ok(c) => c,
                Err(e) if super::others::is_outage(&e) => {
                    self.store_away(&e);
                    break;
                }
                Err(e) => return Err(e),
            };
            self.store_back();
            let Some(claim) = claim else {
                break;
            };
            if self.refuses_in_template_mode(&claim).await? {
                break;
            }
            tracing::debug!(task = %claim.task.id, fence = claim.token.fence, attempt = claim.attempt, "claimed");
            if let Some(inst) = self.instance_for(&claim).await? {
                self.launch(claim, inst);
            }
        }
        self.taken = Some(taken);
        Ok(())
    }

    /// A worker in template mode never runs a task once the store names a repository
    /// (its lists are git-mode lists): it gives the claim back, untouched, for a host in
    /// git mode (`borg worker` starts again in git mode when it notices the record).
    async fn refuses_in_template_mode(&mut self, claim: &Claim) -> Result<bool, StoreError> {
        if !self.opts.forever || self.shared.git.is_some() {
            return Ok(false);
        }
        let rec = db(&self.store, |st| st.fleet(crate::git::repo::BASE_KEY)).await?;
        if !rec.is_some_and(|v| v.get("repo").is_some_and(|r| r.is_string())) {
            return Ok(false);
        }
        let at = now_ms() + 2000;
        self.retry_at.push(at);
        let why = "the store names a git repository and this worker runs in template mode";
        let wait = Disposition::Retry {
            not_before_ms: at,
            counts: false,
        };
        give_back(
            &self.store,
            &claim.token,
            Status::Interrupted,
            why.into(),
            wait,
        )
        .await?;
        Ok(true)
    }

    /// Instances other borg processes are using now are not idle for us. Read once per
    /// dispatch: the claim acquires its instance atomically anyway, so a stale view
    /// costs at most a fallback to `Fleet::pick`.
    async fn taken_by_others(&self) -> HashSet<String> {
        let me = self.owner.id.clone();
        db(&self.store, |st| st.instances())
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.state == "busy" && r.owner.as_deref() != Some(me.as_str()))
            .map(|r| r.id)
            .collect()
    }

    /// The instance the claim runs on; None when the claim was given back.
    async fn instance_for(&mut self, claim: &Claim) -> Result<Option<Instance>, StoreError> {
        if let Some(i) = claim.instance.as_deref().and_then(|id| self.fleet.get(id)) {
            return Ok(Some(i));
        }
        match self
            .fleet
            .pick(&self.shared, &self.owner, &claim.task)
            .await
        {
            Ok(Some(i)) => Ok(Some(i)),
            Ok(None) => {
                // Its pinned instance was taken by another borg in the meantime: give
                // the task back, untouched, for a moment later.
                let at = now_ms() + 1000;
                self.retry_at.push(at);
                let why = "its pinned instance is in use by another borg".to_string();
                let wait = Disposition::Retry {
                    not_before_ms: at,
                    counts: false,
                };
                give_back(&self.store, &claim.token, Status::Interrupted, why, wait).await?;
                Ok(None)
            }
            Err(e) => {
                // Cannot even create a workspace: the task cannot run.
                tracing::error!("{e}");
                let fin = Disposition::Final(Status::SpawnFailed);
                give_back(
                    &self.store,
                    &claim.token,
                    Status::SpawnFailed,
                    e.to_string(),
                    fin,
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// Starts the attempt of `claim` on `inst`.
    fn launch(&mut self, claim: Claim, inst: Instance) {
        self.fleet
            .occupy(&inst.id, &claim.task.id, &claim.task.role);
        self.progress.event(&Event::Started {
            task: claim.task.id.clone(),
            instance: inst.id.clone(),
            attempt: claim.attempt as u32,
        });
        let ctl = Control {
            stop: self.shutdown.stop.child_token(),
            kill: self.shutdown.kill.child_token(),
        };
        let live = Arc::new(Mutex::new(LiveView::default()));
        let now = std::time::Instant::now();
        self.lives
            .insert(claim.task.id.clone(), (live.clone(), now));
        let launched = super::Launched {
            task: claim.task.id.clone(),
            role: claim.task.role.clone(),
            instance: inst.id.clone(),
            attempt: claim.attempt as u32,
            token: claim.token.clone(),
        };
        let shared = self.shared.clone();
        let (base, cap) = (
            shared.settings.run.backoff_base,
            shared.settings.run.backoff_cap,
        );
        let handle = self.running.spawn(async move {
            let store = shared.store.clone();
            let decide = move |c: &_, t: &_| disposition(c, t, base, cap);
            let done = attempt::run(shared, claim, inst, ctl, live, decide).await;
            free_if_lost(&store, done).await
        });
        self.launched.insert(handle.id(), launched);
    }
}

/// The attempt's finish released its instance in the same commit. When the finish
/// was refused (the claim was lost), release it here, durably, before the scheduler
/// may hand it out again.
async fn free_if_lost(store: &Arc<dyn Store>, done: AttemptDone) -> AttemptDone {
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
    let _ = db(store, move |st| st.upsert_instance(&row)).await;
    done
}

/// Ends a claim that never ran a child (its pinned instance was taken, or no workspace
/// could be made), recording `error` as the attempt's outcome.
async fn give_back(
    store: &Arc<dyn Store>,
    token: &ClaimToken,
    status: Status,
    error: String,
    disposition: Disposition,
) -> Result<(), StoreError> {
    let fin = AttemptFinish {
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
