//! Files in and out of an instance's `project-files/` in template mode: the template
//! copied in when the instance is made, and the files a dependency changed carried
//! over from its instance.

use super::{io, InstanceError};
use crate::outcome::FileChange;
use std::path::{Path, PathBuf};

/// Copies `from` to the new folder `to`, dotfiles included, keeping file modes and
/// copying symlinks as symlinks. Walks with an explicit stack so depth is unlimited.
/// Sockets, FIFOs and devices are skipped: they cannot be meaningfully copied.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), InstanceError> {
    use std::os::unix::fs::PermissionsExt;
    // Folder permissions are applied last so a read-only folder can still be filled.
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        let md = std::fs::symlink_metadata(&src).map_err(io(&src))?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst).map_err(io(&dst))?;
            dir_modes.push((dst.clone(), md.permissions().mode()));
            for entry in std::fs::read_dir(&src).map_err(io(&src))? {
                let entry = entry.map_err(io(&src))?;
                stack.push((entry.path(), dst.join(entry.file_name())));
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io(&src))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(io(&dst))?;
        } else if ft.is_file() {
            // fs::copy also copies the permission bits.
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    for (dir, mode) in dir_modes.into_iter().rev() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).map_err(io(&dir))?;
    }
    Ok(())
}

/// Copies the files a dependency changed from its instance into this one (and
/// removes the ones it deleted), so work flows along the dependency graph.
pub fn carry_over(src: &Path, dst: &Path, files: &[FileChange]) {
    for f in files {
        if f.path.split('/').any(|c| c == ".." || c.is_empty()) {
            continue;
        }
        let (from, to) = (src.join(&f.path), dst.join(&f.path));
        match f.change {
            crate::outcome::ChangeKind::Deleted => {
                let _ = std::fs::remove_file(&to);
            }
            _ => {
                if let Some(parent) = to.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                if let Err(e) = std::fs::copy(&from, &to) {
                    tracing::debug!("carry over {}: {e}", from.display());
                }
            }
        }
    }
}
