//! Decisions, messages and the shared context as agents and people write them: the
//! limits every field is checked against (a sentence naming the field when it is
//! broken, so an agent can fix its call), and the resolution of a message's `to`
//! (an instance, a role, a task, or `all`).

use crate::store::coord::{NewDecision, NewMessage, Recipient};
use crate::store::Store;

/// Longest category, key or subject.
pub const MAX_NAME: usize = 128;
/// Longest title.
pub const MAX_TITLE: usize = 300;
/// Longest description, message body or context value (bytes).
pub const MAX_TEXT: usize = 64 * 1024;

/// A field that breaks its limits (the sentence goes to the caller as it is).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NoteError(pub String);

/// `s` trimmed, non-empty, at most `max` bytes, no control characters but newlines and
/// tabs (and none at all when `one_line`).
pub fn text(field: &str, s: &str, max: usize, one_line: bool) -> Result<String, NoteError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(NoteError(format!("{field} is empty; give it some text")));
    }
    if t.len() > max {
        return Err(NoteError(format!(
            "{field} is {} bytes long; the most is {max}: shorten it (put long material in a file of the repository and name it)",
            t.len()
        )));
    }
    let bad = |c: char| c.is_control() && (one_line || !matches!(c, '\n' | '\t' | '\r'));
    if t.chars().any(bad) {
        let what = if one_line {
            "line breaks or control characters"
        } else {
            "control characters"
        };
        return Err(NoteError(format!("{field} must not contain {what}")));
    }
    Ok(t.to_string())
}

/// A decision with every field checked.
pub fn decision(
    category: &str,
    title: &str,
    description: &str,
    scope: Option<&str>,
) -> Result<NewDecision, NoteError> {
    Ok(NewDecision {
        category: text("category", category, MAX_NAME, true)?,
        title: text("title", title, MAX_TITLE, true)?,
        description: text("description", description, MAX_TEXT, false)?,
        scope: scope
            .filter(|s| !s.trim().is_empty())
            .map(|s| text("scope", s, MAX_NAME, true))
            .transpose()?,
    })
}

/// A context key: 1–128 of `A-Z a-z 0-9 . _ - : /`.
pub fn key(k: &str) -> Result<String, NoteError> {
    let ok = !k.is_empty()
        && k.len() <= MAX_NAME
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b));
    if ok {
        Ok(k.to_string())
    } else {
        Err(NoteError(format!(
            "key {:?} is not usable: use 1 to {MAX_NAME} of A-Z a-z 0-9 . _ - : /",
            k.chars().take(80).collect::<String>()
        )))
    }
}

/// A context value: at most `MAX_TEXT` bytes (may be empty).
pub fn value(v: &str) -> Result<String, NoteError> {
    if v.len() > MAX_TEXT {
        return Err(NoteError(format!(
            "value is {} bytes long; the most is {MAX_TEXT}: store a path to a file instead",
            v.len()
        )));
    }
    Ok(v.to_string())
}

/// Who `to` names: `all`, `instance:X`, `role:X`, `task:X`, or a bare name looked up as
/// an instance (of the store, or among `folders`: instances that exist on disk), then
/// a role, then a task.
pub fn recipient(
    store: &dyn Store,
    roles: &[String],
    folders: &[String],
    to: &str,
) -> Result<Recipient, NoteError> {
    let to = to.trim();
    let unknown = |what: &str| {
        NoteError(format!(
            "no {what} named {to:?}; `to` is an instance id, a role, a task id or \"all\" (see mcp__borg__status)"
        ))
    };
    let instance = |n: &str| {
        folders.iter().any(|f| f == n)
            || store
                .instances()
                .unwrap_or_default()
                .iter()
                .any(|i| i.id == n)
    };
    let task = |n: &str| store.task(n).ok().flatten().is_some();
    let (kind, name) = to.split_once(':').unwrap_or(("", to));
    match kind {
        "instance" if instance(name) => Ok(Recipient::Instance(name.into())),
        "instance" => Err(unknown("instance")),
        "role" if roles.iter().any(|r| r == name) => Ok(Recipient::Role(name.into())),
        "role" => Err(unknown("role")),
        "task" if task(name) => Ok(Recipient::Task(name.into())),
        "task" => Err(unknown("task")),
        _ if to.eq_ignore_ascii_case("all") => Ok(Recipient::All),
        _ if instance(to) => Ok(Recipient::Instance(to.into())),
        _ if roles.iter().any(|r| r == to) => Ok(Recipient::Role(to.into())),
        _ if task(to) => Ok(Recipient::Task(to.into())),
        _ => Err(unknown("instance, role or task")),
    }
}

/// A message with every field checked and its recipient resolved.
pub fn message(
    store: &dyn Store,
    roles: &[String],
    folders: &[String],
    to: &str,
    subject: Option<&str>,
    body: &str,
) -> Result<NewMessage, NoteError> {
    Ok(NewMessage {
        to: recipient(store, roles, folders, to)?,
        subject: subject
            .filter(|s| !s.trim().is_empty())
            .map(|s| text("subject", s, MAX_TITLE, true))
            .transpose()?,
        body: text("body", body, MAX_TEXT, false)?,
    })
}

/// One line of text for lists: newlines folded, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
