//! The run loop's view of its instances: which exist, which run a task now, how many
//! per role, which are named by pins; and finding an instance for a claimed task,
//! acquired in the store so that no other borg uses it at the same time.

use crate::input::roles::Role;
use crate::run::attempt::{now_ms, Shared};
use crate::store::{call as db, InstanceRow, OwnerInfo, Store, TaskRow};
use crate::workspace::instance::{Instance, InstanceError, Project};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Instances and their use by this run.
#[derive(Default)]
pub(super) struct Fleet {
    /// Every instance known to this run.
    pub instances: Vec<Instance>,
    /// Instance id → the task it runs now.
    busy: HashMap<String, String>,
    /// Role → attempts running now.
    per_role: HashMap<String, usize>,
    /// Instances named by pins. One that does not exist yet counts as idle (it is
    /// created when its task is claimed), else a task pinned to it would wait forever.
    pub pins: HashSet<String>,
}

impl Fleet {
    /// A fleet of `instances`, none of them busy yet.
    pub fn new(instances: Vec<Instance>, pins: HashSet<String>) -> Fleet {
        Fleet {
            instances,
            pins,
            ..Fleet::default()
        }
    }

    /// The roles that may start one more attempt now (`max_instances` per role).
    /// External roles are never among them: outside agents do their tasks.
    pub fn roles_with_room(&self, shared: &Shared) -> Vec<String> {
        let limits = &shared.settings.roles;
        shared
            .roles
            .roles
            .iter()
            .filter(|r| !r.meta.external)
            .map(|r| r.name.clone())
            .filter(|r| {
                limits
                    .get(r)
                    .and_then(|l| l.max_instances)
                    .is_none_or(|m| self.per_role.get(r).copied().unwrap_or(0) < m)
            })
            .collect()
    }

    /// Instances free for a claim, given those other borgs use now: `(idle ids
    /// including pins not created yet, (role, id) of reusable ones)`.
    pub fn free(&self, taken: &HashSet<String>) -> (Vec<String>, Vec<(String, String)>) {
        let free: Vec<&Instance> = self
            .instances
            .iter()
            .filter(|i| !self.busy.contains_key(&i.id) && !taken.contains(&i.id))
            .collect();
        let reuse = free
            .iter()
            .map(|i| (i.role.clone(), i.id.clone()))
            .collect();
        let mut idle: Vec<String> = free.iter().map(|i| i.id.clone()).collect();
        let missing = self
            .pins
            .iter()
            .filter(|p| !self.instances.iter().any(|i| &i.id == *p));
        idle.extend(missing.cloned());
        (idle, reuse)
    }

    /// An existing instance by id.
    pub fn get(&self, id: &str) -> Option<Instance> {
        self.instances.iter().find(|i| i.id == id).cloned()
    }

    /// `inst` now runs `task` of `role`.
    pub fn occupy(&mut self, inst: &str, task: &str, role: &str) {
        self.busy.insert(inst.to_string(), task.to_string());
        *self.per_role.entry(role.to_string()).or_default() += 1;
    }

    /// `inst` (of `role`) is free again.
    pub fn release(&mut self, inst: &str, role: &str) {
        self.busy.remove(inst);
        if let Some(n) = self.per_role.get_mut(role) {
            *n = n.saturating_sub(1);
        }
    }

    /// An instance for the task, acquired in the store: its pinned one (created if
    /// missing; None when another borg holds it), else an idle one of its role, else
    /// a new one.
    pub async fn pick(
        &mut self,
        shared: &Arc<Shared>,
        owner: &OwnerInfo,
        task: &TaskRow,
    ) -> Result<Option<Instance>, InstanceError> {
        let store = &shared.store;
        if let Some(pin) = &task.instance {
            let inst = self.pinned(shared, pin, task).await?;
            return Ok(acquire(store, owner, &inst, task).await.then_some(inst));
        }
        let candidates: Vec<Instance> = self
            .instances
            .iter()
            .filter(|i| i.role == task.role && !self.busy.contains_key(&i.id))
            .cloned()
            .collect();
        for c in candidates {
            if acquire(store, owner, &c, task).await {
                return Ok(Some(c));
            }
        }
        let i = create(shared, task, None).await?;
        self.instances.push(i.clone());
        acquire(store, owner, &i, task).await;
        Ok(Some(i))
    }

    /// The pinned instance, created when it does not exist yet.
    async fn pinned(
        &mut self,
        shared: &Arc<Shared>,
        pin: &str,
        task: &TaskRow,
    ) -> Result<Instance, InstanceError> {
        if let Some(i) = self.get(pin) {
            return Ok(i);
        }
        let ws = &shared.workspaces;
        let i = match ws.get(pin) {
            Ok(i) => i,
            // Another borg may have created it a moment ago.
            Err(_) => match create(shared, task, Some(pin)).await {
                Ok(i) => i,
                Err(_) => ws.get(pin)?,
            },
        };
        self.instances.push(i.clone());
        Ok(i)
    }
}

/// Creates an instance for `task`'s role on the blocking pool: copying a template or
/// checking out a worktree of a large repository takes seconds, which must not hold
/// up the async workers draining running children's pipes.
async fn create(
    shared: &Arc<Shared>,
    task: &TaskRow,
    name: Option<&str>,
) -> Result<Instance, InstanceError> {
    let role = role_of(shared, task)?.clone();
    let (sh, name) = (shared.clone(), name.map(String::from));
    tokio::task::spawn_blocking(move || {
        sh.workspaces
            .create_in(&role, name.as_deref(), project_of(&sh))
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// What a new instance's `project-files/` is: a worktree in git mode, else the
/// template (or an empty folder).
fn project_of(shared: &Shared) -> Project<'_> {
    match &shared.git {
        Some(repo) => Project::Worktree(repo),
        None => Project::template(shared.settings.paths.template.as_deref()),
    }
}

fn role_of<'a>(shared: &'a Shared, task: &TaskRow) -> Result<&'a Role, InstanceError> {
    shared
        .roles
        .get(&task.role)
        .map_err(|e| InstanceError::InvalidName(e.to_string()))
}

/// Marks `inst` busy with `task` for `owner` in the store, unless another borg uses it.
async fn acquire(
    store: &Arc<dyn Store>,
    owner: &OwnerInfo,
    inst: &Instance,
    task: &TaskRow,
) -> bool {
    let row = InstanceRow {
        id: inst.id.clone(),
        role: inst.role.clone(),
        state: "busy".into(),
        current_task: Some(task.id.clone()),
        owner: Some(owner.id.clone()),
        updated_ms: now_ms(),
    };
    db(store, move |st| st.acquire_instance(&row).unwrap_or(false)).await
}
