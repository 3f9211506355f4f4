//! Named task lists in a shared store: `borg run TASKS.toml` registers its tasks under
//! the list's name (the file's stem, or `--list NAME`), and `borg worker --list NAME`
//! works on that list only. A list is the registered ids plus the tasks their handoffs
//! created, transitively; it is kept as a fleet value (`list:NAME`), so registering
//! needs no schema of its own.

use crate::run::attempt::now_ms;
use crate::run::spec::source_of;
use crate::store::{Store, StoreError, TaskRow};

/// The fleet key of a list.
fn key(name: &str) -> String {
    format!("list:{name}")
}

/// The list name a task file gives by default: its file stem.
pub fn default_name(file: &std::path::Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "list".into())
}

/// Adds `ids` to list `name` (keeping what is there).
pub fn register(store: &dyn Store, name: &str, ids: &[String]) -> Result<(), StoreError> {
    let mut all = registered(store, name)?;
    let before = all.len();
    for id in ids {
        if !all.contains(id) {
            all.push(id.clone());
        }
    }
    if all.len() == before && before > 0 {
        return Ok(());
    }
    store.set_fleet(&key(name), &serde_json::json!(all), now_ms())
}

/// The ids registered under `name` (empty for an unknown list).
fn registered(store: &dyn Store, name: &str) -> Result<Vec<String>, StoreError> {
    Ok(store
        .fleet(&key(name))?
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        .unwrap_or_default())
}

/// The tasks of list `name`: its registered ids and the tasks their handoffs created.
pub fn members(store: &dyn Store, name: &str) -> Result<Vec<String>, StoreError> {
    let ids = registered(store, name)?;
    Ok(with_handoffs(&store.tasks()?, ids))
}

/// Adds to `ids` the tasks of `rows` created by handoffs from them, transitively.
pub fn with_handoffs(rows: &[TaskRow], mut ids: Vec<String>) -> Vec<String> {
    loop {
        let before = ids.len();
        for t in rows {
            if source_of(t).is_some_and(|src| ids.iter().any(|i| i == src)) && !ids.contains(&t.id)
            {
                ids.push(t.id.clone());
            }
        }
        if ids.len() == before {
            return ids;
        }
    }
}
