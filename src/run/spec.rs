//! The stored form of a task: the definition kept in the store's `spec` column (the
//! list's definition plus the context of the handoff it came from), the store row
//! made from it, and the hash that tells a changed definition between runs.

use crate::input::tasklist::TaskSpec;
use crate::run::prompt::HandoffContext;
use crate::store::{NewTask, TaskRow};
use serde::{Deserialize, Serialize};

/// A task as kept in the store's `spec` column: the list's definition, plus the
/// context of the handoff it came from, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSpec {
    /// The task definition.
    #[serde(flatten)]
    pub task: TaskSpec,
    /// Set when a handoff created this task.
    #[serde(default)]
    pub handoff: Option<HandoffContext>,
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
        awaits_person: false,
    }
}

/// A stable hash of a task's definition (its list position excluded, so inserting a
/// task elsewhere in the list does not make the others look changed).
pub fn definition_hash(t: &TaskSpec) -> String {
    t.definition_hash()
}

/// The task a handoff-created task came from, if it was created by a handoff.
pub fn source_of(t: &TaskRow) -> Option<&str> {
    t.spec.get("handoff")?.get("source_task")?.as_str()
}
