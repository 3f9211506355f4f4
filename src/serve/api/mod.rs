//! The routes, one file per group: `health`, `agents` (registration), `tasks`
//! (listing and claiming), `work` (progress and completion), `handoff` (requests, and a
//! person's accept / reject), `coord` (file locks and shared context over the
//! coordination store), `fleet` (what the dashboard reads). Shared here: the
//! shapes of a task for agents, the capability rule, time stamps.

pub mod agents;
pub mod coord;
pub mod fleet;
pub mod handoff;
pub mod health;
pub mod tasks;
pub mod work;

use super::App;
use crate::store::agents::agent_of_owner;
use crate::store::TaskRow;
use serde_json::{json, Value};

pub use super::error::iso;

/// The capabilities a task needs: those of its role (front matter).
pub fn required(app: &App, task: &TaskRow) -> Option<Vec<String>> {
    app.roles
        .get(&task.role)
        .ok()
        .map(|r| r.meta.capabilities.clone())
}

/// The permission rule (seed 000): an agent may do a task when it declared every
/// capability the task's role lists.
pub fn can_do(offered: &[String], required: &[String]) -> bool {
    required.iter().all(|c| offered.contains(c))
}

/// The holder of a claim as agents see it: an agent's id, or the borg owner id.
pub fn holder(owner: &str) -> String {
    agent_of_owner(owner).unwrap_or(owner).to_string()
}

/// Seed 000's priority words for borg's numbers.
fn priority_word(p: i64) -> &'static str {
    match p {
        p if p > 0 => "high",
        0 => "normal",
        _ => "low",
    }
}

/// A task as agents see it.
pub fn task_json(app: &App, t: &TaskRow, created_ms: Option<i64>) -> Value {
    let prompt = t.spec.get("prompt").and_then(|p| p.as_str()).unwrap_or("");
    let timeout_min = t
        .spec
        .get("timeout")
        .and_then(|v| v.as_i64())
        .map(|ms| (ms + 59_999) / 60_000);
    json!({
        "id": t.id,
        "type": t.role,
        "role": t.role,
        "description": prompt,
        "priority": priority_word(t.priority),
        "priorityValue": t.priority,
        "estimatedMinutes": timeout_min,
        "requiredCapabilities": required(app, t).unwrap_or_default(),
        "dependsOn": t.depends_on,
        "status": t.status.as_str(),
        "createdAt": created_ms.map(iso),
        "deadline": Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_capability_must_be_offered() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(can_do(&s(&["a", "b"]), &s(&["a"])));
        assert!(!can_do(&s(&["a"]), &s(&["a", "b"])));
        assert!(can_do(&s(&["a"]), &s(&[])));
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    }
}
