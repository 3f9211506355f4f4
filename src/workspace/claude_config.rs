//! A Claude config folder per instance: `workspaces/<id>/claude-config/`, given to the
//! instance's children as `CLAUDE_CONFIG_DIR`. Concurrent children that share
//! `~/.claude.json` and `~/.claude/` race on them (a corrupted `.claude.json` is a known
//! failure of running many Claude Code instances); with a folder each, the CLI keeps its
//! `.claude.json`, `backups/` and session transcripts (`projects/<slug>/<id>.jsonl`)
//! there, HOME is left alone, and `--resume` finds the instance's sessions because
//! every attempt of the instance uses the same folder.
//!
//! Authentication keeps working: an API key in the environment needs nothing, and a
//! subscription login's credentials file in the user's own config folder is linked
//! (never copied) into the instance's folder. borg never reads it, and never logs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The folder's name inside an instance.
pub const DIR: &str = "claude-config";

/// The file a subscription login keeps its credentials in.
pub const CREDENTIALS: &str = ".credentials.json";

/// The user's own Claude config folder, as the CLI would find it from borg's
/// environment: `CLAUDE_CONFIG_DIR`, else `$HOME/.claude`.
pub fn user_dir(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let set = |k: &str| env.get(k).filter(|v| !v.trim().is_empty());
    set("CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| Path::new(h).join(".claude")))
}

/// Makes (or keeps) the instance's config folder, linking the user's credentials file
/// into it when there is one. Returns the folder (absolute when `instance` is).
pub fn prepare(instance: &Path, user: Option<&Path>) -> std::io::Result<PathBuf> {
    let dir = instance.join(DIR);
    std::fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Session transcripts and the CLI's state are the user's business only.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if let Some(user) = user.filter(|u| *u != dir) {
        link_credentials(&user.join(CREDENTIALS), &dir.join(CREDENTIALS))?;
    }
    Ok(dir)
}

/// Links `target` at `link` when the user has one and the instance has none (a link
/// left dangling by a logout is replaced or removed).
fn link_credentials(target: &Path, link: &Path) -> std::io::Result<()> {
    let present = target.is_file();
    match std::fs::symlink_metadata(link) {
        // The CLI may have written its own file there (a refresh that replaced the
        // link): keep what it wrote.
        Ok(m) if !m.file_type().is_symlink() => return Ok(()),
        Ok(_) if std::fs::read_link(link).ok().as_deref() == Some(target) && present => {
            return Ok(())
        }
        Ok(_) => std::fs::remove_file(link)?,
        Err(_) => {}
    }
    if present {
        std::os::unix::fs::symlink(target, link)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_are_linked_not_copied_and_follow_the_user() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("home/.claude");
        std::fs::create_dir_all(&user).unwrap();
        let inst = d.path().join("ws/dev-1");
        std::fs::create_dir_all(&inst).unwrap();
        // No login: nothing linked.
        let dir = prepare(&inst, Some(&user)).unwrap();
        assert!(std::fs::symlink_metadata(dir.join(CREDENTIALS)).is_err());
        // A login appears: linked, not copied.
        std::fs::write(user.join(CREDENTIALS), "{}").unwrap();
        prepare(&inst, Some(&user)).unwrap();
        let link = dir.join(CREDENTIALS);
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), user.join(CREDENTIALS));
        // A logout: the dangling link goes.
        std::fs::remove_file(user.join(CREDENTIALS)).unwrap();
        prepare(&inst, Some(&user)).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err());
        let env: BTreeMap<String, String> = [("HOME".to_string(), "/h".to_string())]
            .into_iter()
            .collect();
        assert_eq!(user_dir(&env), Some(PathBuf::from("/h/.claude")));
    }
}
