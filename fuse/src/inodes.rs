//! Kernel inode numbers. FUSE's root is 1 and memdb's root is 0, so a memdb inode `i` is kernel
//! inode `i + 1`. Virtual entries (symlinks and function files at the root) live in a reserved
//! range with the top bit set, which memdb inodes (versions) never reach. Inodes are never
//! reused, so the generation is always 0.

use lwcfs_memdb::Inode;

/// A kernel inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KIno(pub u64);

const VIRTUAL_BASE: u64 = 1 << 63;

/// What a kernel inode number names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeRef {
    Mem(Inode),
    /// Index into the daemon's table of virtual entries.
    Virtual(u32),
}

impl KIno {
    pub const ROOT: KIno = KIno(1);

    pub fn node(self) -> Option<NodeRef> {
        match self.0 {
            0 => None,
            n if n >= VIRTUAL_BASE => u32::try_from(n - VIRTUAL_BASE).ok().map(NodeRef::Virtual),
            n => Some(NodeRef::Mem(Inode(n - 1))),
        }
    }
}

impl From<NodeRef> for KIno {
    fn from(n: NodeRef) -> KIno {
        match n {
            NodeRef::Mem(Inode(i)) => KIno(i + 1),
            NodeRef::Virtual(v) => KIno(VIRTUAL_BASE + u64::from(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection() {
        assert_eq!(KIno::ROOT.node(), Some(NodeRef::Mem(Inode::ROOT)));
        for n in [
            NodeRef::Mem(Inode(0)),
            NodeRef::Mem(Inode(77)),
            NodeRef::Virtual(3),
        ] {
            assert_eq!(KIno::from(n).node(), Some(n));
        }
        assert_eq!(KIno(0).node(), None);
    }
}
