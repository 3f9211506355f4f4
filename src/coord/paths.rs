//! Paths as leases name them: relative to the repository root (the attempt's working
//! directory), `/`-separated, without `.` or `..`. An agent may write `./src/a.rs`,
//! `src/../src/a.rs` or the absolute path inside its worktree: all are `src/a.rs`.
//! A path that leaves the root (`../x`, `/etc/passwd`) is refused for a lease; for a
//! write it is reported as outside. A folder written with a trailing `/` means
//! everything under it (`src/auth/` is `src/auth/**`).

use std::path::{Component, Path, PathBuf};

/// Longest pattern accepted.
pub const MAX_LEN: usize = 1024;

/// Why a lease pattern was refused (the sentence goes to the model as it is).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

/// Lexically normalises `p` (no filesystem access): drops `.`, resolves `..`. `None`
/// when `..` climbs above the start.
fn lexical(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// `path` relative to `root` when it is inside it (both lexically normalised).
fn inside(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let s: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(s.join("/"))
}

/// A lease pattern from what an agent or a person wrote: a path or glob, relative to
/// the root or absolute inside it.
pub fn pattern(root: &Path, input: &str) -> Result<String, PathError> {
    let raw = input.trim();
    if raw.is_empty() {
        return Err(PathError("an empty path cannot be leased".into()));
    }
    if raw.len() > MAX_LEN || raw.contains('\0') {
        return Err(PathError(format!(
            "{:?} is not a usable path (at most {MAX_LEN} bytes, no NUL)",
            clip(raw)
        )));
    }
    let folder = raw.ends_with('/');
    let p = Path::new(raw);
    let rel = if p.is_absolute() {
        let abs = lexical(p).ok_or_else(|| outside(raw))?;
        let root = lexical(root).unwrap_or_else(|| root.to_path_buf());
        inside(&root, &abs).ok_or_else(|| outside(raw))?
    } else {
        let norm = lexical(p).ok_or_else(|| outside(raw))?;
        if norm.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(outside(raw));
        }
        norm.to_string_lossy().into_owned()
    };
    let rel = match (rel.is_empty(), folder) {
        (true, _) => "**".to_string(),
        (false, true) => format!("{rel}/**"),
        (false, false) => rel,
    };
    if crate::store::coord::leasing::is_glob(&rel) {
        globset::Glob::new(&rel)
            .map_err(|e| PathError(format!("{:?} is not a valid glob: {e}", clip(raw))))?;
    }
    Ok(rel)
}

fn outside(raw: &str) -> PathError {
    PathError(format!(
        "{:?} is outside the repository: leases name paths relative to the repository root (your working directory), e.g. \"src/main.rs\" or \"src/auth/**\"",
        clip(raw)
    ))
}

/// At most 80 characters of `s`, for messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Where a tool's `file_path` lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Inside the repository: the relative path.
    Inside(String),
    /// Outside it: the absolute, normalised path.
    Outside(PathBuf),
}

/// Resolves a tool's `file_path` (absolute, or relative to `cwd`) against `root`,
/// following symbolic links of the folders that exist, so a link inside the worktree
/// pointing out of it is seen as outside (and a link into it as inside).
pub fn target(root: &Path, cwd: &Path, file_path: &str) -> Target {
    let p = Path::new(file_path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let abs = lexical(&joined).unwrap_or(joined);
    let real = resolve_existing(&abs);
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if let Some(rel) = inside(&real_root, &real).filter(|r| !r.is_empty()) {
        return Target::Inside(rel);
    }
    let lex_root = lexical(root).unwrap_or_else(|| root.to_path_buf());
    // A root given through a link (or not existing yet): compare as written too.
    match inside(&lex_root, &abs).filter(|r| !r.is_empty()) {
        Some(rel) if real == abs => Target::Inside(rel),
        _ => Target::Outside(real),
    }
}

/// `abs` with its longest existing ancestor canonicalised (links resolved) and the
/// rest appended.
fn resolve_existing(abs: &Path) -> PathBuf {
    let mut head = abs.to_path_buf();
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&head) {
            let mut out = c;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return out;
        }
        match (head.file_name().map(|f| f.to_os_string()), head.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                head = parent.to_path_buf();
            }
            _ => return abs.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_normalised_relative_to_the_root() {
        let root = Path::new("/w/dev-1/project-files");
        assert_eq!(pattern(root, "./src/a.rs").unwrap(), "src/a.rs");
        assert_eq!(pattern(root, "src/../src/a.rs").unwrap(), "src/a.rs");
        assert_eq!(
            pattern(root, "/w/dev-1/project-files/calc.py").unwrap(),
            "calc.py"
        );
        assert_eq!(pattern(root, "src/auth/").unwrap(), "src/auth/**");
        assert_eq!(pattern(root, "src/auth/**").unwrap(), "src/auth/**");
        assert!(pattern(root, "../x").is_err());
        assert!(pattern(root, "src/../../x").is_err());
        assert!(pattern(root, "/etc/passwd").is_err());
        assert!(pattern(root, "/w/dev-1/project-files/../other/x").is_err());
        assert!(pattern(root, "").is_err());
        assert!(pattern(root, "src/[").is_err());
        assert!(pattern(root, &"a".repeat(5000)).is_err());
    }

    #[test]
    fn write_targets_follow_links() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("out")).unwrap();
        assert_eq!(
            target(&root, &root, "src/new.rs"),
            Target::Inside("src/new.rs".into())
        );
        let abs = root.join("src/x.rs").display().to_string();
        assert_eq!(
            target(&root, &root, &abs),
            Target::Inside("src/x.rs".into())
        );
        assert!(matches!(
            target(&root, &root, "out/evil"),
            Target::Outside(_)
        ));
        assert!(matches!(target(&root, &root, "../x"), Target::Outside(_)));
        assert!(matches!(
            target(&root, &root, "/etc/hosts"),
            Target::Outside(_)
        ));
    }
}
