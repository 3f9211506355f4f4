//! What the user gives borg: the settings (flags, environment, `.env`, config.toml,
//! defaults, in that order of precedence), the task list and the roles. Everything
//! here is parsed and validated before any child starts; bad input is exit 2 with the
//! file, the line and the offending name.

pub mod config;
pub mod roles;
pub mod tasklist;
