//! Identities, kinds and the limits of the C data model (`memdb.h`).

/// A memdb inode number. The root is inode 0; new entries get the new global version as their
/// inode, so inode numbers are unique, increasing and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inode(pub u64);

impl Inode {
    pub const ROOT: Inode = Inode(0);
}

impl std::fmt::Display for Inode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The Corosync node id of the writer of a change; 0 in local mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NodeId(pub u32);

/// Seconds since the epoch, as C stores them (32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mtime(pub u32);

/// Entry type, stored as the `DT_*` value in the `type` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
}

impl Kind {
    pub const DT_REG: u8 = 8;
    pub const DT_DIR: u8 = 4;

    pub fn dt(self) -> u8 {
        match self {
            Kind::File => Self::DT_REG,
            Kind::Dir => Self::DT_DIR,
        }
    }

    pub fn from_dt(dt: i64) -> Option<Kind> {
        match dt {
            8 => Some(Kind::File),
            4 => Some(Kind::Dir),
            _ => None,
        }
    }
}

/// Largest file: 1 MiB (`MEMDB_MAX_FILE_SIZE`); a write ending past it fails with `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Block size reported by statfs and used for `st_blocks`.
pub const BLOCK_SIZE: u64 = 4096;
/// Total size reported by statfs: 128 MiB in blocks. Reported, not enforced (as C).
pub const MAX_BLOCKS: u64 = 128 * 1024 * 1024 / BLOCK_SIZE;
/// Entries reported by statfs. Reported, not enforced (as C).
pub const MAX_INODES: u64 = 256 * 1024;
/// Name length reported by statfs.
pub const NAME_MAX: u64 = 256;
