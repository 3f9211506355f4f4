//! The lease rules every backend applies inside its transaction, kept here (below the
//! backends) so that SQLite and PostgreSQL decide the same way: what a pattern is, the
//! indexed prefix stored with it, when two patterns conflict, and the search for a
//! cycle in the wait-for graph.
//!
//! Patterns are repository-relative, `/`-separated paths, or globs (`*`, `?`, `[..]`,
//! `{a,b}`, `**`; `*` does not cross `/`). Each is stored with a *prefix*: the literal
//! path itself, or for a glob its folder part before the first wildcard (`src/auth/`
//! for `src/auth/**`, `` for `**/*.rs`). A path can only be matched by patterns whose
//! prefix is the path or one of its folders ([`candidates`]), which is what makes the
//! write hook's check a single indexed lookup.

use std::collections::{BTreeMap, BTreeSet};

/// Characters that make a pattern a glob.
const META: &[char] = &['*', '?', '[', ']', '{', '}'];

/// True when the pattern has a wildcard.
pub fn is_glob(p: &str) -> bool {
    p.contains(META)
}

/// The stored prefix of a pattern (see the module docs).
pub fn prefix(p: &str) -> String {
    match p.find(META) {
        None => p.to_string(),
        Some(i) => match p[..i].rfind('/') {
            Some(slash) => p[..=slash].to_string(),
            None => String::new(),
        },
    }
}

/// The prefixes under which a pattern matching `path` can be stored: `` and each
/// folder of it (`a/`, `a/b/`), then the path itself.
pub fn candidates(path: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for (i, c) in path.char_indices() {
        if c == '/' {
            out.push(path[..=i].to_string());
        }
    }
    out.push(path.to_string());
    out
}

/// A compiled glob; `None` for a pattern that is not a valid glob (treated as a literal).
fn matcher(p: &str) -> Option<globset::GlobMatcher> {
    globset::GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// True when `pattern` covers `path` (a literal path).
pub fn matches(pattern: &str, path: &str) -> bool {
    if pattern == path {
        return true;
    }
    is_glob(pattern) && matcher(pattern).is_some_and(|m| m.is_match(path))
}

/// The literal part of a pattern before its first wildcard.
fn literal_head(p: &str) -> &str {
    match p.find(META) {
        Some(i) => &p[..i],
        None => p,
    }
}

/// Whether two patterns can cover a common path. Exact for a path against a path or a
/// glob; for two globs, conservative: they conflict unless their literal heads already
/// part ways (`src/a*` and `docs/**` never meet; `src/*.rs` and `src/*.py` are taken
/// to meet). Locking too much is safe; locking too little is not.
pub fn overlap(a: &str, b: &str) -> bool {
    match (is_glob(a), is_glob(b)) {
        (false, false) => a == b,
        (true, false) => matches(a, b),
        (false, true) => matches(b, a),
        (true, true) => {
            if matches(a, b) || matches(b, a) {
                return true;
            }
            let (ha, hb) = (literal_head(a), literal_head(b));
            ha.starts_with(hb) || hb.starts_with(ha)
        }
    }
}

/// A node of the wait-for graph: an attempt, as (task, fence).
pub type Node = (String, i64);

/// Searches the wait-for graph for a path from any of `start`'s new edges back to
/// `start`. `edges` maps each waiter to the attempts in its way, each with the path it
/// waits for. Returns the cycle as (waiter, path, holder) steps, first step from
/// `start`, last step into `start`.
pub fn find_cycle(
    start: &Node,
    edges: &BTreeMap<Node, Vec<(String, Node)>>,
) -> Option<Vec<(Node, String, Node)>> {
    let mut seen: BTreeSet<Node> = BTreeSet::new();
    let mut path: Vec<(Node, String, Node)> = Vec::new();
    if walk(start, start, edges, &mut seen, &mut path) {
        Some(path)
    } else {
        None
    }
}

/// Depth-first search from `at` for `goal`, keeping the steps taken in `path`.
fn walk(
    at: &Node,
    goal: &Node,
    edges: &BTreeMap<Node, Vec<(String, Node)>>,
    seen: &mut BTreeSet<Node>,
    path: &mut Vec<(Node, String, Node)>,
) -> bool {
    for (what, next) in edges.get(at).into_iter().flatten() {
        path.push((at.clone(), what.clone(), next.clone()));
        if next == goal {
            return true;
        }
        if seen.insert(next.clone()) && walk(next, goal, edges, seen, path) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_candidates() {
        assert_eq!(prefix("src/auth.rs"), "src/auth.rs");
        assert_eq!(prefix("src/auth/**"), "src/auth/");
        assert_eq!(prefix("src/au*.rs"), "src/");
        assert_eq!(prefix("**/*.rs"), "");
        assert_eq!(
            candidates("src/auth/token.rs"),
            ["", "src/", "src/auth/", "src/auth/token.rs"]
        );
        for p in ["src/auth/**", "src/au*", "**/*.rs", "src/auth/token.rs"] {
            assert!(candidates("src/auth/token.rs").contains(&prefix(p)), "{p}");
        }
    }

    #[test]
    fn overlaps() {
        assert!(overlap("calc.py", "calc.py"));
        assert!(!overlap("calc.py", "calc.pyc"));
        assert!(overlap("src/auth/**", "src/auth/token.rs"));
        assert!(overlap("src/auth/token.rs", "src/auth/**"));
        assert!(!overlap("src/*.rs", "src/auth/token.rs"), "* stops at /");
        assert!(overlap("src/**", "src/auth/**"));
        assert!(overlap("src/*.rs", "src/*.py"), "conservative");
        assert!(!overlap("src/a*", "docs/**"));
    }

    #[test]
    fn cycles_are_found_and_named_in_order() {
        let a: Node = ("a".into(), 1);
        let b: Node = ("b".into(), 1);
        let c: Node = ("c".into(), 1);
        let mut edges: BTreeMap<Node, Vec<(String, Node)>> = BTreeMap::new();
        edges.insert(a.clone(), vec![("x".into(), b.clone())]);
        edges.insert(b.clone(), vec![("y".into(), c.clone())]);
        assert!(find_cycle(&a, &edges).is_none());
        edges.insert(c.clone(), vec![("z".into(), a.clone())]);
        let cyc = find_cycle(&a, &edges).unwrap();
        let names: Vec<&str> = cyc.iter().map(|s| s.1.as_str()).collect();
        assert_eq!(names, ["x", "y", "z"]);
        assert_eq!(cyc[0].0, a);
        assert_eq!(cyc[2].2, a);
    }
}
