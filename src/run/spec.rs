//! The stored form of a task: the definition kept in the store's `spec` column (the
//! list's definition plus the context of the handoff or the merge conflict it came
//! from), the store row made from it, and the hash that tells a changed definition
//! between runs.

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
    /// Set when borg created this task to resolve a merge conflict (git mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<ResolveContext>,
}

/// What a resolve task resolves: merging `theirs` into `ours` conflicted while
/// making the start commit of task `of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveContext {
    /// The task that waits for the resolution.
    pub of: String,
    /// The start so far (the base with the dependencies before `theirs_task` merged).
    pub ours: String,
    /// The commit of the dependency that conflicts.
    pub theirs: String,
    /// The tasks whose work `ours` holds.
    pub ours_tasks: Vec<String>,
    /// The dependency that conflicts.
    pub theirs_task: String,
    /// The conflicting files.
    pub files: Vec<String>,
    /// Set when the merge queue made the task: the target branch `of`'s work is
    /// being merged into (`ours` is that branch's head; `of` is the task itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
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

/// The task a resolve task resolves the start of, if it is one.
pub fn resolve_of(t: &TaskRow) -> Option<&str> {
    t.spec.get("resolve")?.get("of")?.as_str()
}
