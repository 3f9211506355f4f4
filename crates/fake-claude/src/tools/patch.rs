//! The `structuredPatch` of Write and Edit results: a unified diff with 3 lines of
//! context, shaped like the jsdiff hunks the CLI prints.

use crate::out::{arr, jstr, Obj};

/// Lines of context around each change.
const CTX: usize = 3;

/// Above this many cells the LCS table is not built: the middle is replaced whole.
const MAX_TABLE: usize = 4_000_000;

/// One line of a diff: `' '` kept, `'-'` removed, `'+'` added, and its text.
type Op<'a> = (char, &'a str);

/// Lines as jsdiff sees them: each line without its `\n`, no empty tail element.
fn diff_lines(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.split('\n').collect()
}

/// A unified-diff `structuredPatch` (3 lines of context) between two texts.
pub fn structured_patch(old: &str, new: &str) -> String {
    let ops = diff_ops(&diff_lines(old), &diff_lines(new));
    arr(hunk_ranges(&ops)
        .into_iter()
        .map(|(start, end)| hunk_json(&ops, start, end)))
}

/// The line-by-line diff of `a` into `b`.
fn diff_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    // Trim the common head and tail first: edits are local, so the LCS table stays tiny.
    let mut pre = 0;
    while pre < a.len() && pre < b.len() && a[pre] == b[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre && suf < b.len() - pre && a[a.len() - 1 - suf] == b[b.len() - 1 - suf]
    {
        suf += 1;
    }
    let mut ops: Vec<Op> = a[..pre].iter().map(|l| (' ', *l)).collect();
    ops.extend(middle_ops(&a[pre..a.len() - suf], &b[pre..b.len() - suf]));
    ops.extend(a[a.len() - suf..].iter().map(|l| (' ', *l)));
    ops
}

/// The diff of the differing middle: a longest common subsequence walk, or, when the
/// table would be too big, all of `a` removed and all of `b` added.
fn middle_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    if n * m > MAX_TABLE {
        let removed = a.iter().map(|l| ('-', *l));
        return removed.chain(b.iter().map(|l| ('+', *l))).collect();
    }
    let t = lcs_table(a, b);
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || t[idx(i + 1, j)] >= t[idx(i, j + 1)]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    ops
}

/// The suffix LCS lengths: cell `(i, j)` (row-major, `b.len() + 1` wide) is the
/// longest common subsequence of `a[i..]` and `b[j..]`.
fn lcs_table(a: &[&str], b: &[&str]) -> Vec<u32> {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[idx(i, j)] = if a[i] == b[j] {
                t[idx(i + 1, j + 1)] + 1
            } else {
                t[idx(i + 1, j)].max(t[idx(i, j + 1)])
            };
        }
    }
    t
}

/// The `[start, end)` ranges of `ops` the hunks cover: each change with its context,
/// changes whose contexts meet merged into one hunk.
fn hunk_ranges(ops: &[Op]) -> Vec<(usize, usize)> {
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(i, _)| i)
        .collect();
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < changes.len() {
        let first = changes[k];
        let mut last = first;
        while k + 1 < changes.len() && changes[k + 1] - last <= 2 * CTX {
            k += 1;
            last = changes[k];
        }
        k += 1;
        ranges.push((first.saturating_sub(CTX), (last + CTX + 1).min(ops.len())));
    }
    ranges
}

/// One hunk object: where it starts in each text (1-based), its line counts and lines.
fn hunk_json(ops: &[Op], start: usize, end: usize) -> String {
    let old_before = ops[..start].iter().filter(|o| o.0 != '+').count();
    let new_before = ops[..start].iter().filter(|o| o.0 != '-').count();
    let slice = &ops[start..end];
    let old_lines = slice.iter().filter(|o| o.0 != '+').count();
    let new_lines = slice.iter().filter(|o| o.0 != '-').count();
    let lines = arr(slice.iter().map(|(c, l)| jstr(&format!("{c}{l}"))));
    Obj::new()
        .v("oldStart", &(old_before + 1))
        .v("oldLines", &old_lines)
        .v("newStart", &(new_before + 1))
        .v("newLines", &new_lines)
        .raw("lines", &lines)
        .end()
}
