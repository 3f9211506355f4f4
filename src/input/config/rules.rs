//! The rules every settings layer applies the same way, whichever layer a value comes
//! from: where a relative path points, when a claude binary is a path rather than a
//! command, and what a budget in dollars may be.
//!
//! The `config.toml` layer (`file`) and the loader of the other layers (`load`) both
//! use them; they live here, below both, so neither imports the other for them.

use std::path::{Path, PathBuf};

/// A flag or variable path: relative ones are taken from `base`.
pub(super) fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || base.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A repository setting: a remote's URL is kept as written, a folder is taken from
/// `base` when relative.
pub(super) fn repo_path(base: &Path, p: &Path) -> PathBuf {
    if crate::input::values::is_remote_url(&p.to_string_lossy()) {
        p.to_path_buf()
    } else {
        relative_to(base, p)
    }
}

/// A claude binary given as a bare name (`claude`) is a command looked up in PATH,
/// not a file in the current directory, so only names with a `/` are anchored.
pub(super) fn path_or_command(cwd: &Path, v: &str) -> PathBuf {
    if v.contains('/') {
        relative_to(cwd, Path::new(v))
    } else {
        PathBuf::from(v)
    }
}

/// A budget in US dollars: finite and more than 0.
pub(super) fn dollars(x: Option<f64>) -> Result<f64, &'static str> {
    match x {
        Some(x) if x.is_finite() && x > 0.0 => Ok(x),
        Some(x) if x.is_finite() => Err("must be more than 0 US dollars"),
        _ => Err("expected a number of US dollars, e.g. 5 or 2.50"),
    }
}
