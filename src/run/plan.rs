//! The plan of a dry run: waves of tasks that could run together (every dependency in
//! an earlier wave), each wave in start order (priority, then list order). O(V + E).

use crate::input::tasklist::TaskSpec;
use std::collections::HashMap;

/// Tasks grouped into waves; indices into `tasks`.
pub fn waves(tasks: &[TaskSpec]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut indegree = vec![0usize; tasks.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for d in &t.depends_on {
            if let Some(&j) = index.get(d.as_str()) {
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut wave: Vec<usize> = (0..tasks.len()).filter(|&i| indegree[i] == 0).collect();
    let mut out = Vec::new();
    while !wave.is_empty() {
        wave.sort_by(|&a, &b| {
            tasks[b]
                .priority
                .cmp(&tasks[a].priority)
                .then(tasks[a].order.cmp(&tasks[b].order))
        });
        let mut next = Vec::new();
        for &i in &wave {
            for &j in &dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    next.push(j);
                }
            }
        }
        out.push(std::mem::replace(&mut wave, next));
    }
    out
}
