//! Which of a list's tasks the queue can take now, and in what order: the tasks that
//! succeeded (resolve tasks aside: their work reaches the target through the task
//! they resolve), minus those the target's queue has landed or rejected; a task whose
//! branch conflicted comes back with its resolve task's commit once that succeeded,
//! is rejected when it did not, and waits while it runs. Dependency order first (a
//! task's commit contains its dependencies' work, so it never lands before them, and
//! is rejected with them), then priority (highest first), then finish time, then id.
//! A task waits while a task of higher priority has not ended, so that a queue
//! running beside the run (`borg run --merge`) lands the same work in the same order
//! whichever agent finishes first.

use crate::outcome::{AttemptRecord, Status};
use crate::run::spec::resolve_of;
use crate::store::merge::{MergeEntry, MergeState};
use crate::store::TaskRow;
use std::collections::{HashMap, HashSet};

/// A task whose work can be merged now.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The task.
    pub task: String,
    /// The commit to merge: the task's final commit, or its resolve task's.
    pub commit: String,
    /// The resolve task whose commit this is.
    pub via: Option<String>,
    /// The task's dependencies.
    pub depends_on: Vec<String>,
    /// Its merge commit's subject.
    pub subject: String,
    /// Its merge commit's trailers (the queue's own added when merging).
    pub trailers: Vec<(String, String)>,
}

/// Where a task of the list stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// It can be merged now.
    Ready(Candidate),
    /// It waits (for its resolve task, or for a dependency's).
    Waits {
        /// The task.
        task: String,
        /// Why.
        why: String,
    },
    /// It cannot land.
    Reject {
        /// The task.
        task: String,
        /// Its commit.
        commit: String,
        /// Why.
        why: String,
    },
}

impl Standing {
    /// The task.
    pub fn task(&self) -> &str {
        match self {
            Standing::Ready(c) => &c.task,
            Standing::Waits { task, .. } | Standing::Reject { task, .. } => task,
        }
    }
}

/// The standings of the tasks of `scope`, in queue order.
pub fn standings(rows: &[TaskRow], scope: &[String], entries: &[MergeEntry]) -> Vec<Standing> {
    let by_id: HashMap<&str, &TaskRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let entry: HashMap<&str, &MergeEntry> = entries.iter().map(|e| (e.task.as_str(), e)).collect();
    let mut picked: Vec<(&TaskRow, Standing)> = scope
        .iter()
        .filter_map(|id| by_id.get(id.as_str()).copied())
        .filter(|r| resolve_of(r).is_none() && r.status == Status::Succeeded)
        .filter_map(|r| Some((r, own_standing(r, entry.get(r.id.as_str()), &by_id)?)))
        .collect();
    picked.sort_by(|(a, _), (b, _)| {
        (-a.priority, finished_ms(a), &a.id).cmp(&(-b.priority, finished_ms(b), &b.id))
    });
    let ordered = topological(picked);
    let ordered = behind_open(ordered, rows, scope);
    with_dependencies(ordered, &entry)
}

/// While a task of the scope with a higher priority has not ended, a ready task
/// waits for it: what lands, and in what order, does not depend on which agent
/// happened to finish first (the queue runs while the run goes on, `--merge`).
fn behind_open(ordered: Vec<Standing>, rows: &[TaskRow], scope: &[String]) -> Vec<Standing> {
    let ids: HashSet<&str> = scope.iter().map(String::as_str).collect();
    let open = rows
        .iter()
        .filter(|r| ids.contains(r.id.as_str()) && !r.status.is_terminal())
        .max_by_key(|r| (r.priority, std::cmp::Reverse(r.id.as_str())));
    let Some(open) = open else {
        return ordered;
    };
    let priority: HashMap<&str, i64> = rows.iter().map(|r| (r.id.as_str(), r.priority)).collect();
    ordered
        .into_iter()
        .map(|s| match s {
            Standing::Ready(c) if priority.get(c.task.as_str()) < Some(&open.priority) => {
                Standing::Waits {
                    why: format!(
                        "waits for {} (priority {}) to end: it lands first",
                        open.id, open.priority
                    ),
                    task: c.task,
                }
            }
            other => other,
        })
        .collect()
}

/// A task's standing from its own entry (None: landed or rejected already).
fn own_standing(
    r: &TaskRow,
    e: Option<&&MergeEntry>,
    rows: &HashMap<&str, &TaskRow>,
) -> Option<Standing> {
    let rec = AttemptRecord::from_stored(r.last_record.as_ref())?;
    let commit = rec.git.commit.clone()?;
    let mut c = candidate(r, &rec, commit.clone());
    match e.map(|e| (e.state, e.resolve_task.as_deref())) {
        None => Some(Standing::Ready(c)),
        Some((MergeState::Landed | MergeState::Rejected, _)) => None,
        Some((MergeState::Conflict, res)) => {
            let res_row = res.and_then(|id| rows.get(id));
            let Some(rr) = res_row else {
                return Some(Standing::Reject {
                    task: r.id.clone(),
                    commit,
                    why: "its resolve task is gone from the store".into(),
                });
            };
            let res_commit =
                AttemptRecord::from_stored(rr.last_record.as_ref()).and_then(|x| x.git.commit);
            match (rr.status, res_commit) {
                (Status::Succeeded, Some(rc)) => {
                    c.commit = rc;
                    c.via = Some(rr.id.clone());
                    c.trailers.push(("Borg-Resolved-By".into(), rr.id.clone()));
                    Some(Standing::Ready(c))
                }
                (s, _) if s.is_terminal() => Some(Standing::Reject {
                    task: r.id.clone(),
                    commit,
                    why: format!(
                        "its conflict with the target was not resolved: resolve task {} ended {s}",
                        rr.id
                    ),
                }),
                _ => Some(Standing::Waits {
                    task: r.id.clone(),
                    why: format!("waits for its resolve task {}", rr.id),
                }),
            }
        }
    }
}

/// The merge of a task: subject and trailers from its last attempt.
fn candidate(r: &TaskRow, rec: &AttemptRecord, commit: String) -> Candidate {
    let mut trailers = vec![
        ("Borg-Task".to_string(), r.id.clone()),
        ("Borg-Role".into(), r.role.clone()),
        ("Borg-Attempt".into(), rec.attempt.to_string()),
        ("Borg-Instance".into(), rec.instance.clone()),
    ];
    if let Some(s) = &rec.session_id {
        trailers.push(("Borg-Session".into(), s.clone()));
    }
    trailers.push(("Borg-Cost".into(), format!("{:.4}", rec.cost_usd)));
    Candidate {
        task: r.id.clone(),
        commit,
        via: None,
        depends_on: r.depends_on.clone(),
        subject: crate::git::commit::subject(
            &format!("Merge {}", r.id),
            None,
            rec.result_text.as_deref(),
        ),
        trailers,
    }
}

/// When a task's last attempt ended, epoch ms (its row's last change without one).
fn finished_ms(r: &TaskRow) -> i64 {
    AttemptRecord::from_stored(r.last_record.as_ref())
        .and_then(|rec| {
            let start = chrono::DateTime::parse_from_rfc3339(&rec.started_at).ok()?;
            Some(start.timestamp_millis() + rec.duration_ms as i64)
        })
        .unwrap_or(r.updated_ms)
}

/// Stable topological order: at each step the first task (in the sorted order)
/// whose dependencies among the picked tasks are all placed.
fn topological(mut rest: Vec<(&TaskRow, Standing)>) -> Vec<Standing> {
    let ids: HashSet<String> = rest.iter().map(|(r, _)| r.id.clone()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let i = rest
            .iter()
            .position(|(r, _)| {
                r.depends_on
                    .iter()
                    .all(|d| !ids.contains(d) || placed.contains(d))
            })
            .unwrap_or(0);
        let (r, s) = rest.remove(i);
        placed.insert(r.id.clone());
        out.push(s);
    }
    out
}

/// A ready task whose dependency was rejected is rejected; one whose dependency
/// waits, waits.
fn with_dependencies(ordered: Vec<Standing>, entry: &HashMap<&str, &MergeEntry>) -> Vec<Standing> {
    let mut state: HashMap<String, &'static str> = HashMap::new();
    for (id, e) in entry {
        if e.state == MergeState::Rejected {
            state.insert(id.to_string(), "rejected");
        }
    }
    let mut out = Vec::new();
    for s in ordered {
        let s = match s {
            Standing::Ready(c) => {
                match c.depends_on.iter().find_map(|d| Some((d, state.get(d)?))) {
                    Some((d, &"rejected")) => Standing::Reject {
                        task: c.task.clone(),
                        commit: c.commit.clone(),
                        why: format!("its dependency {d} was not merged"),
                    },
                    Some((d, _)) => Standing::Waits {
                        task: c.task.clone(),
                        why: format!("its dependency {d} waits"),
                    },
                    None => Standing::Ready(c),
                }
            }
            other => other,
        };
        match &s {
            Standing::Reject { task, .. } => {
                state.insert(task.clone(), "rejected");
            }
            Standing::Waits { task, .. } => {
                state.insert(task.clone(), "waits");
            }
            Standing::Ready(_) => {}
        }
        out.push(s);
    }
    out
}
