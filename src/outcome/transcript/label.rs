//! One-line labels of tool calls (`Write NOTES.md`, `Bash: cargo test`), shared by
//! the live status (`current_tool`) and the rendered log, so both name a call alike.

use super::wire::ToolInput;

/// What a tool call is about, for its one-line label.
pub(crate) enum ToolArg<'s> {
    /// Nothing worth showing: the name alone.
    None,
    /// A file path, shown relative to the session's cwd.
    File(&'s str),
    /// A shell command, shown by its first line.
    Command(&'s str),
    /// A pattern, URL, query or description.
    Other(&'s str),
}

/// The argument worth showing for a call, whatever the tool: commands first, then
/// files, then whatever names the target of search and fetch tools.
pub(super) fn tool_arg<'s>(input: &'s ToolInput<'_>) -> ToolArg<'s> {
    if let Some(c) = input.command.get() {
        return ToolArg::Command(c);
    }
    if let Some(f) = input.file_path.get().or(input.notebook_path.get()) {
        return ToolArg::File(f);
    }
    match input
        .pattern
        .get()
        .or(input.url.get())
        .or(input.query.get())
        .or(input.description.get())
        .or(input.path.get())
    {
        Some(o) => ToolArg::Other(o),
        None => ToolArg::None,
    }
}

/// Writes `Write NOTES.md` / `Edit src/calc.py` / `Bash: cargo test` into `out`: short
/// enough for a status column, with paths relative to the session's cwd.
pub(crate) fn write_tool_label(out: &mut String, name: &str, arg: &ToolArg<'_>, cwd: Option<&str>) {
    out.push_str(name);
    match arg {
        ToolArg::None => {}
        ToolArg::Command(c) => {
            out.push_str(": ");
            let first = c
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            push_abridged(out, first, 60);
            if c.trim().lines().nth(1).is_some() && !out.ends_with('…') {
                out.push_str(" …");
            }
        }
        ToolArg::File(f) => {
            out.push(' ');
            push_abridged(out, relative_path(f, cwd), 80);
        }
        ToolArg::Other(o) => {
            out.push(' ');
            push_abridged(out, o.lines().next().unwrap_or(""), 60);
        }
    }
}

/// `path` relative to `cwd` when it lies inside it, else unchanged.
fn relative_path<'p>(path: &'p str, cwd: Option<&str>) -> &'p str {
    if let Some(cwd) = cwd
        .map(|c| c.trim_end_matches('/'))
        .filter(|c| !c.is_empty())
    {
        if let Some(rest) = path.strip_prefix(cwd).and_then(|r| r.strip_prefix('/')) {
            if !rest.is_empty() {
                return rest;
            }
        }
    }
    path
}

/// At most `max` characters of `s`, marking a cut with `…`: `push_abridged` into a
/// fresh string, for callers that build a message with `format!` rather than appending.
pub(crate) fn abridged(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_abridged(&mut out, s, max);
    out
}

/// Appends at most `max` characters of `s`, marking a cut with `…`.
pub(crate) fn push_abridged(out: &mut String, s: &str, max: usize) {
    match s.char_indices().nth(max) {
        None => out.push_str(s),
        Some((cut, _)) => {
            out.push_str(&s[..cut]);
            out.push('…');
        }
    }
}
