//! Handoffs becoming tasks: the follow-up task of a declared (`handoff_to`) or
//! agent-requested handoff, with the context its prompt carries, and the stored form
//! of task definitions (so a changed definition can be noticed between runs).

use crate::input::tasklist::TaskSpec;
use crate::outcome::AttemptRecord;
use crate::run::attempt::StoredSpec;
use crate::run::prompt::HandoffContext;
use crate::store::{NewTask, TaskRow};
use std::collections::BTreeMap;

/// Builds the follow-up task of a handoff: id `<source>.<role>-<n>`, role = target,
/// depending on the source, its prompt carrying the context.
pub fn handoff_task(
    task: &TaskRow,
    src: Option<&StoredSpec>,
    instance: &str,
    req: &crate::store::HandoffRequest,
    rec: &AttemptRecord,
    existing: &[String],
    taken: &mut Vec<String>,
) -> Option<NewTask> {
    let id = (1..1000)
        .map(|n| format!("{}.{}-{n}", task.id, req.to_role))
        .find(|c| !existing.contains(c) && !taken.contains(c))?;
    taken.push(id.clone());
    let mut spec = TaskSpec {
        id: id.clone(),
        prompt: format!(
            "Task `{}` ({} role) handed its work on to you, as the {}. Read the handoff context below, \
             check the current state of the files in your working directory, then carry the work on.",
            task.id, task.role, req.to_role
        ),
        role: req.to_role.clone(),
        priority: task.priority,
        depends_on: vec![task.id.clone()],
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
        order: task.order as usize,
    };
    if let Some(s) = &src {
        spec.timeout = s.task.timeout;
        spec.retries = s.task.retries;
        spec.env = s.task.env.clone();
    }
    let ctx = HandoffContext {
        source_task: task.id.clone(),
        source_role: task.role.clone(),
        source_instance: Some(instance.to_string()),
        reason: req.reason.clone(),
        state: req.state.clone(),
        next_steps: req.next_steps.clone(),
        files_changed: rec.files_changed.clone(),
        result_text: rec.result_text.clone(),
    };
    let stored = StoredSpec {
        task: spec,
        handoff: Some(ctx),
    };
    Some(new_task(&stored, 1))
}

/// The store row of a task definition.
pub fn new_task(spec: &StoredSpec, default_retries: u32) -> NewTask {
    NewTask {
        id: spec.task.id.clone(),
        role: spec.task.role.clone(),
        priority: spec.task.priority,
        order: spec.task.order as i64,
        depends_on: spec.task.depends_on.clone(),
        instance: spec.task.instance.clone(),
        max_attempts: spec.task.retries.unwrap_or(default_retries) as i64 + 1,
        spec: serde_json::to_value(spec).unwrap_or_default(),
        hash: definition_hash(&spec.task),
    }
}

/// A stable hash of a task's definition (its list position excluded, so inserting a
/// task elsewhere in the list does not make the others look changed).
pub fn definition_hash(t: &TaskSpec) -> String {
    let mut t = t.clone();
    t.order = 0;
    let text = serde_json::to_string(&t).unwrap_or_default();
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The task a handoff-created task came from, if it was created by a handoff.
pub fn source_of(t: &TaskRow) -> Option<&str> {
    t.spec.get("handoff")?.get("source_task")?.as_str()
}
