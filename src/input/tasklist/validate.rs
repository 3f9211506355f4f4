//! The checks that need the whole list: unique ids, dependencies that exist, no
//! dependency cycles; plus the "did you mean" helper for misspelt keys.

use super::{Cx, TaskListError, TaskSpec};
use std::collections::HashMap;

/// Duplicate ids: the second definition is the error, naming the line of the first.
pub(super) fn check_unique(
    cx: &Cx<'_>,
    tasks: &[TaskSpec],
    lines: &[usize],
) -> Result<(), TaskListError> {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if let Some(&j) = first.get(t.id.as_str()) {
            let (first_line, _) = cx.lines.locate(cx.text, lines[j]);
            return Err(cx.invalid(
                Some(lines[i]),
                format!(
                    "duplicate task id \"{}\" (first defined on line {first_line})",
                    t.id
                ),
            ));
        }
        first.insert(&t.id, i);
    }
    Ok(())
}

/// Unknown dependencies, then cycles. The cycle search is an iterative depth-first
/// search (white/grey/black), O(tasks + edges), so a 10 000-long chain cannot overflow
/// the stack.
pub(super) fn check_dependencies(
    cx: &Cx<'_>,
    tasks: &[TaskSpec],
    lines: &[usize],
) -> Result<(), TaskListError> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let mut out = Vec::with_capacity(t.depends_on.len());
        for d in &t.depends_on {
            match index.get(d.as_str()) {
                Some(&j) => out.push(j),
                None => {
                    return Err(cx.invalid(
                        Some(lines[i]),
                        format!(
                            "task \"{}\" depends on \"{d}\", which is not in the list",
                            t.id
                        ),
                    ))
                }
            }
        }
        edges.push(out);
    }
    if let Some(cycle) = find_cycle(&edges) {
        let mut names: Vec<String> = cycle.iter().map(|&i| tasks[i].id.clone()).collect();
        // A cycle through thousands of tasks would bury the message; keep both ends.
        if names.len() > 25 {
            let hidden = names.len() - 20;
            names.splice(10..names.len() - 10, [format!("... ({hidden} more)")]);
        }
        return Err(cx.invalid(
            Some(lines[cycle[0]]),
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
    Ok(())
}

/// The first cycle in file order, as node indices with the first node repeated at the
/// end (`a -> b -> a`), or None.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = vec![WHITE; edges.len()];
    // (node, index of the next edge to follow); the stack is also the current path.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if color[root] != WHITE {
            continue;
        }
        color[root] = GREY;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if next < edges[node].len() {
                top.1 += 1;
                let to = edges[node][next];
                match color[to] {
                    WHITE => {
                        color[to] = GREY;
                        stack.push((to, 0));
                    }
                    GREY => {
                        let from = stack.iter().position(|&(n, _)| n == to).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        cycle.push(to);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                color[node] = BLACK;
                stack.pop();
            }
        }
    }
    None
}

/// The known key closest to a misspelt one (edit distance at most 2), for a hint.
pub(crate) fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
