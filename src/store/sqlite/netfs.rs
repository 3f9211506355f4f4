//! Refuses to put the store on a network filesystem: SQLite's WAL needs shared memory
//! and POSIX locks that work only between processes of one host, and NFS/SMB locking is
//! unreliable enough to corrupt the file. Detected by the `statfs` magic number of the
//! directory that holds the database.
//!
//! Deliberately not refused: 9p (used by local VMs and WSL for host folders) and FUSE
//! (sshfs cannot be told apart from local FUSE filesystems), where refusing would break
//! more local setups than it protects remote ones.

use crate::store::StoreError;
use std::path::Path;

/// Set to `1` to open a store on a network filesystem anyway.
pub const ALLOW_ENV: &str = "BORG_ALLOW_NETWORK_FS";

/// The name of a network filesystem for a `statfs` f_type, or None when it is local
/// (or not known to be remote).
pub(crate) fn network_fs_name(f_type: i64) -> Option<&'static str> {
    // Magic numbers from linux/magic.h and the filesystems' own headers.
    Some(match f_type {
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x5346_414F => "afs",
        0x6B41_4653 => "kafs",
        0x00C3_6400 => "ceph",
        0x7375_7245 => "coda",
        0x564C => "ncp",
        0x0BD0_0BD0 => "lustre",
        0x4750_4653 => "gpfs",
        _ => return None,
    })
}

/// Checks the directory that will hold the database.
pub(crate) fn check(dir: &Path, shown: &str) -> Result<(), StoreError> {
    if std::env::var(ALLOW_ENV).map(|v| v == "1").unwrap_or(false) {
        return Ok(());
    }
    let st = match nix::sys::statfs::statfs(dir) {
        Ok(st) => st,
        // Cannot tell: let SQLite try; a real problem shows up when it opens the file.
        Err(_) => return Ok(()),
    };
    // f_type is a signed or unsigned word depending on the libc; compare its low 32 bits,
    // where every magic number lives (CIFS's 0xFF534D42 is negative as an i32).
    #[allow(clippy::unnecessary_cast)]
    let raw = st.filesystem_type().0 as i64 & 0xFFFF_FFFF;
    match network_fs_name(raw) {
        Some(fs) => Err(StoreError::NetworkFs {
            path: shown.to_string(),
            fs: fs.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_magic_numbers() {
        assert_eq!(network_fs_name(0x6969), Some("nfs"));
        assert_eq!(network_fs_name(0xFF53_4D42), Some("cifs"));
        assert_eq!(network_fs_name(0xFE53_4D42), Some("smb2"));
        assert_eq!(network_fs_name(0x517B), Some("smb"));
        // ext4, tmpfs, btrfs, xfs, overlayfs, 9p, fuse: local (or allowed)
        for local in [
            0xEF53,
            0x0102_1994,
            0x9123_683E,
            0x5846_5342,
            0x794C_7630,
            0x0102_1997,
            0x6573_5546,
        ] {
            assert_eq!(network_fs_name(local), None, "{local:#x}");
        }
    }

    #[test]
    fn local_temp_dir_passes() {
        let dir = std::env::temp_dir();
        assert!(check(&dir, "x").is_ok());
    }
}
