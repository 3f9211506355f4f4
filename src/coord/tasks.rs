//! Tasks an agent creates while it runs (`create_task`): checked like a task list's
//! (id, role, dependencies that exist, a prompt), stored in the creating claim's run
//! so that the same `borg run` claims them, and bounded per run by
//! `[coord] max_agent_tasks` so that a runaway agent cannot flood the queue.

use super::env::AttemptEnv;
use super::notes::{text, NoteError, MAX_TEXT};
use crate::input::tasklist::{valid_id, TaskSpec};
use crate::store::{NewTask, Store};
use std::collections::BTreeMap;

/// What an agent asks for.
#[derive(Debug, Clone, Default)]
pub struct TaskAsk {
    /// The prompt.
    pub prompt: String,
    /// The role.
    pub role: String,
    /// The id (default: `<parent>.task-N`).
    pub id: Option<String>,
    /// Tasks that must succeed first (ids in the store).
    pub depends_on: Vec<String>,
    /// Priority (default: the parent's).
    pub priority: Option<i64>,
}

/// Checks the request against the store and builds the task row; the store then
/// inserts it fenced and bounded.
pub fn build(store: &dyn Store, env: &AttemptEnv, ask: &TaskAsk) -> Result<NewTask, NoteError> {
    let prompt = text("prompt", &ask.prompt, MAX_TEXT, false)?;
    let roles = &env.config.roles;
    if !roles.contains(&ask.role) {
        return Err(NoteError(format!(
            "role {:?} does not exist; roles: {}",
            ask.role,
            roles.join(", ")
        )));
    }
    let parent = store
        .task(&env.actor.task)
        .map_err(|e| NoteError(e.to_string()))?
        .ok_or_else(|| NoteError(format!("task {} is not in the store", env.actor.task)))?;
    for d in &ask.depends_on {
        if store
            .task(d)
            .map_err(|e| NoteError(e.to_string()))?
            .is_none()
        {
            return Err(NoteError(format!(
                "depends_on names {d:?}, which is not a task of this run; use ids from mcp__borg__status"
            )));
        }
    }
    let id = match &ask.id {
        Some(id) if valid_id(id) => id.clone(),
        Some(id) => {
            return Err(NoteError(format!(
                "id {:?} is not valid: use 1 to 64 of A-Z a-z 0-9 . _ -",
                id.chars().take(80).collect::<String>()
            )))
        }
        None => free_id(store, &parent.id),
    };
    let spec = TaskSpec {
        id: id.clone(),
        prompt,
        role: ask.role.clone(),
        priority: ask.priority.unwrap_or(parent.priority),
        depends_on: ask.depends_on.clone(),
        timeout: None,
        idle_timeout: None,
        result_grace: None,
        retries: None,
        handoff_to: None,
        instance: None,
        env: BTreeMap::new(),
        model: None,
        max_turns: None,
        max_budget_usd: None,
        permission_mode: None,
        verify: None,
        review: None,
        fix_rounds: None,
        session: None,
        order: parent.order.max(0) as usize,
    };
    Ok(NewTask {
        id,
        role: spec.role.clone(),
        priority: spec.priority,
        order: parent.order,
        depends_on: spec.depends_on.clone(),
        instance: None,
        max_attempts: i64::from(env.config.retries) + 1,
        hash: spec.definition_hash(),
        // The stored form is the task list's definition (a handoff-less `StoredSpec`).
        spec: serde_json::to_value(&spec).unwrap_or_default(),
        awaits_person: false,
    })
}

/// The first `<parent>.task-N` not taken.
fn free_id(store: &dyn Store, parent: &str) -> String {
    let base: String = parent.chars().take(50).collect();
    (1..10_000)
        .map(|n| format!("{base}.task-{n}"))
        .find(|c| store.task(c).ok().flatten().is_none())
        .unwrap_or_else(|| format!("{base}.{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
}
