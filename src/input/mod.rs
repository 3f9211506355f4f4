//! What the user gives borg: the settings (flags, environment, `.env`, config.toml,
//! defaults, in that order of precedence), the task list and the roles. Everything
//! here is parsed and validated before any child starts; bad input is exit 2 with the
//! file, the line and the offending name.

pub mod config;
pub mod gates;
pub mod roles;
pub mod tasklist;
pub mod values;

/// Byte offset -> 1-based (line, column) in `text`, the column counting characters.
///
/// Shared by the config file and role front-matter error messages, which each map one
/// parser span per error; an offset past the end is clamped, and one that is not on a
/// character boundary counts as the start of the text rather than panicking.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
