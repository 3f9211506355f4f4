//! The house rules of `src/`, checked on the source itself (README "Layout"): every
//! module says what it is for, no function is over ~80 lines and no file over ~500
//! (tests and generated tables aside), and no two files import each other in a
//! circle: a type two rooms share lives in the lower one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;
const MAX_FILE_LINES: usize = 500;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn roots() -> Vec<(PathBuf, &'static str)> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        (top.join("src"), "crate"),
        (top.join("crates/fake-claude/src"), "fake"),
    ]
}

/// The part of a file before its unit tests.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .collect()
}

/// A line with string literals and line comments blanked, for brace counting.
fn strip(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '\'' => {
                // A char literal ('{', '\'') or a lifetime ('a): skip the literal only.
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            '/' if chars.peek() == Some(&'/') => break,
            c => out.push(c),
        }
    }
    out
}

/// (name, first line, length) of every fn with a body.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let is_fn = t
            .split_whitespace()
            .take_while(|w| !w.starts_with("fn"))
            .all(|w| {
                matches!(w, "pub" | "async" | "const" | "unsafe" | "extern")
                    || w.starts_with("pub(")
            })
            && t.split_whitespace().any(|w| w == "fn")
            && !t.starts_with("//");
        if !is_fn || t.trim_end().ends_with(';') {
            i += 1;
            continue;
        }
        let name = t
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("")
            .to_string();
        let (mut depth, mut started, mut j) = (0i64, false, i);
        while j < lines.len() {
            let s = strip(lines[j]);
            if !started && s.trim_end().ends_with(';') && !s.contains('{') {
                break; // a declaration without a body (trait method)
            }
            depth += s.matches('{').count() as i64 - s.matches('}').count() as i64;
            started |= s.contains('{');
            if started && depth <= 0 {
                break;
            }
            j += 1;
        }
        if started {
            out.push((name, i + 1, j - i + 1));
        }
        i = j.max(i) + 1;
    }
    out
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut missing = Vec::new();
    for (root, _) in roots() {
        for f in rust_files(&root) {
            let text = std::fs::read_to_string(&f).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(f.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a `//!` doc comment: {missing:#?}"
    );
}

#[test]
fn no_function_over_80_lines_and_no_file_over_500() {
    let mut long = Vec::new();
    for (root, _) in roots() {
        for f in rust_files(&root) {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = code_lines(&text);
            if lines.len() > MAX_FILE_LINES {
                long.push(format!("{}: {} lines", f.display(), lines.len()));
            }
            for (name, at, n) in functions(&lines) {
                if n > MAX_FN_LINES {
                    long.push(format!("{}:{at} fn {name}: {n} lines", f.display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "split these into named steps: {long:#?}");
}

/// Module path (`crate::run::attempt`) of each file under `root`.
fn module_paths(root: &Path, krate: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for f in rust_files(root) {
        let rel = f.strip_prefix(root).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        let path = std::iter::once(krate.to_string())
            .chain(parts)
            .collect::<Vec<_>>()
            .join("::");
        out.insert(path, f);
    }
    out
}

/// The module of `path` (a `::` path): its longest prefix that is a file.
fn owner<'a>(path: &str, modules: &'a BTreeMap<String, PathBuf>) -> Option<&'a str> {
    let mut p = path.to_string();
    loop {
        if let Some((k, _)) = modules.get_key_value(&p) {
            return Some(k);
        }
        p = p.rsplit_once("::")?.0.to_string();
    }
}

/// Absolute `::` paths a file refers to (`crate::…`, `super::…`).
fn references(text: &str, me: &str, krate: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for line in code_lines(text) {
        let s = strip(line);
        for (i, _) in s.match_indices("crate::").chain(s.match_indices("super::")) {
            if i > 0 && s[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if i >= 2 && &s[i - 2..i] == "::" {
                continue; // the tail of a longer path (super::super::x)
            }
            let tail: String = s[i..].chars().take_while(|&c| ident(c)).collect();
            let mut base: Vec<&str> = me.split("::").collect();
            let mut rest = tail.as_str();
            if let Some(r) = rest.strip_prefix("crate::") {
                base = vec![krate];
                rest = r;
            }
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let full = std::iter::once(base.join("::"))
                .chain(rest.split("::").filter(|x| !x.is_empty()).map(String::from))
                .collect::<Vec<_>>()
                .join("::");
            out.insert(full);
        }
    }
    out
}

/// The circles in `edges`: one per back edge of a depth-first search.
fn find_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match colour.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    found.push(c);
                }
                0 => visit(m, edges, colour, stack, found),
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_string(), 2);
    }
    let (mut colour, mut found) = (BTreeMap::new(), Vec::new());
    for n in edges.keys() {
        if colour.get(n).copied().unwrap_or(0) == 0 {
            visit(n, edges, &mut colour, &mut Vec::new(), &mut found);
        }
    }
    found
}

/// The import graph of one crate: file → files it refers to (a module using its own
/// submodules is containment, not an import).
fn import_graph(root: &Path, krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules = module_paths(root, krate);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (me, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for r in references(&text, me, krate) {
            let Some(to) = owner(&r, &modules) else {
                continue;
            };
            if !(to == me.as_str() || to.starts_with(&format!("{me}::"))) {
                edges.entry(me.clone()).or_default().insert(to.to_string());
            }
        }
    }
    edges
}

/// The same graph one level up: an import from `a::x::…` to `a::y::…` is an edge
/// between the sibling rooms `a::x` and `a::y` (so `input::config` and
/// `input::tasklist` may not import each other through any of their files).
fn room_graph(files: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in files {
        for to in tos {
            let (f, t): (Vec<&str>, Vec<&str>) =
                (from.split("::").collect(), to.split("::").collect());
            let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
            if common >= f.len() || common >= t.len() {
                continue; // one contains the other: a child using its parent's types
            }
            let a = f[..=common].join("::");
            let b = t[..=common].join("::");
            edges.entry(a).or_default().insert(b);
        }
    }
    edges
}

#[test]
fn no_import_circles_between_files() {
    let mut circles = Vec::new();
    for (root, krate) in roots() {
        let files = import_graph(&root, krate);
        for graph in [&files, &room_graph(&files)] {
            circles.extend(find_cycles(graph).iter().map(|c| c.join(" -> ")));
        }
    }
    circles.sort();
    circles.dedup();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}
