//! The presentation policy of C pmxcfs (local.md §3.3, §5), pure.
//!
//! Owner root, group www-data; modes synthesised from the kind, the privacy of the path and
//! quorum, then masked: private paths keep owner bits only, other directories and symlinks
//! `& 0755`, other files `& 0750`.

use crate::service::NodeKind;

/// Mode bits of a tree entry (memdb files and directories, the node symlinks).
pub fn perm(kind: NodeKind, private: bool, quorate: bool, exec: bool) -> u16 {
    let base: u16 = match (kind, quorate) {
        (NodeKind::File, true) => 0o666,
        (NodeKind::File, false) => 0o444,
        (_, true) => 0o777,
        (_, false) => 0o555,
    };
    let base = if exec && kind == NodeKind::File {
        base | 0o100
    } else {
        base
    };
    if private {
        base & 0o700
    } else if kind == NodeKind::File {
        base & 0o750
    } else {
        base & 0o755
    }
}

/// The root directory: 0755 whatever the quorum.
pub const ROOT_PERM: u16 = 0o755;
/// `.debug`.
pub const DEBUG_PERM: u16 = 0o640;
/// The other function files.
pub const FUNC_PERM: u16 = 0o440;

/// chmod is accepted (and changes nothing) only with the mode the file already has in the
/// quorate table: 0600 on private paths, 0640 elsewhere, whatever the kind (C quirk kept).
pub fn chmod_allowed(mode: u32, private: bool) -> bool {
    (mode & 0o7777) == if private { 0o600 } else { 0o640 }
}

/// chown is accepted (and changes nothing) only for uid 0 and gid www-data, or "unchanged".
pub fn chown_allowed(uid: Option<u32>, gid: Option<u32>, www_data: u32) -> bool {
    uid.is_none_or(|u| u == 0 || u == u32::MAX)
        && gid.is_none_or(|g| g == www_data || g == u32::MAX)
}

/// OpenVZ script names get the owner execute bit: `vps.<x>` or `<digits>.<x>` with x one of
/// mount, umount, start, stop, premount, postumount.
pub fn is_vz_script(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    let stem_ok = stem == "vps" || (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()));
    stem_ok
        && matches!(
            ext,
            "mount" | "umount" | "start" | "stop" | "premount" | "postumount"
        )
}

/// `st_blocks` as C reports it: whole 4 KiB blocks.
pub fn blocks(size: u64) -> u64 {
    size.div_ceil(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table_of_the_spec() {
        use NodeKind::*;
        assert_eq!(perm(Dir, false, true, false), 0o755);
        assert_eq!(perm(Dir, false, false, false), 0o555);
        assert_eq!(perm(File, false, true, false), 0o640);
        assert_eq!(perm(File, false, false, false), 0o440);
        assert_eq!(perm(Dir, true, true, false), 0o700);
        assert_eq!(perm(Dir, true, false, false), 0o500);
        assert_eq!(perm(File, true, true, false), 0o600);
        assert_eq!(perm(File, true, false, false), 0o400);
        assert_eq!(perm(Symlink, false, true, false), 0o755);
        assert_eq!(perm(Symlink, false, false, false), 0o555);
        assert_eq!(perm(File, false, true, true), 0o740);
    }

    #[test]
    fn chmod_chown_matrix() {
        assert!(chmod_allowed(0o100640, false));
        assert!(chmod_allowed(0o600, true));
        assert!(!chmod_allowed(0o755, false));
        assert!(!chmod_allowed(0o700, true));
        assert!(!chmod_allowed(0o640, true));
        assert!(chown_allowed(Some(0), Some(33), 33));
        assert!(chown_allowed(None, Some(u32::MAX), 33));
        assert!(!chown_allowed(Some(1), None, 33));
        assert!(!chown_allowed(None, Some(0), 33));
    }

    #[test]
    fn vz_scripts() {
        assert!(is_vz_script("vps.mount"));
        assert!(is_vz_script("101.premount"));
        assert!(!is_vz_script("101.conf"));
        assert!(!is_vz_script("x.mount"));
    }

    #[test]
    fn blocks_are_4k_units() {
        assert_eq!(blocks(0), 0);
        assert_eq!(blocks(12), 1);
        assert_eq!(blocks(4097), 2);
    }
}
