//! The kernel contract in plain types. Errors are errno values.
//!
//! Contract notes (fuser/kernel): every request is answered exactly once; inode numbers are
//! stable and never reused (generation 0), so lookup counts need no bookkeeping; `readdir`
//! returns the whole directory and the adapter pages it by index.

use crate::inodes::KIno;

/// `Err(errno)` on failure.
pub type FsResult<T> = Result<T, i32>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

/// What the kernel sees of a node: the service has already applied the mode policy
/// ([`crate::attr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAttr {
    pub ino: KIno,
    pub kind: NodeKind,
    pub size: u64,
    pub mtime: u32,
    pub perm: u16,
    /// How long the kernel may cache this entry and its attributes, in milliseconds.
    pub ttl_ms: u32,
}

/// A setattr request, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// New mtime in seconds (the kernel's "now" already resolved).
    pub mtime: Option<u32>,
    /// Only the atime was given (`touch -a`).
    pub atime_only: bool,
    /// The open file handle, when the request came through one (ftruncate).
    pub fh: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namemax: u32,
}

pub trait FsService: Send + Sync + 'static {
    fn lookup(&self, parent: KIno, name: &str) -> FsResult<NodeAttr>;
    fn getattr(&self, ino: KIno) -> FsResult<NodeAttr>;
    /// The children of a directory, without `.` and `..`.
    fn readdir(&self, ino: KIno) -> FsResult<Vec<(String, KIno, NodeKind)>>;
    fn readlink(&self, ino: KIno) -> FsResult<Vec<u8>>;
    /// Open a file; `flags` are the open(2) flags. Returns the file handle.
    fn open(&self, ino: KIno, flags: i32) -> FsResult<u64>;
    fn read(&self, ino: KIno, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>>;
    fn write(&self, ino: KIno, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32>;
    /// The last reference to a handle is gone.
    fn release(&self, ino: KIno, fh: u64);
    /// fsync/fsyncdir: return when the node's state is on stable storage.
    fn fsync(&self, ino: KIno) -> FsResult<()>;
    fn create(&self, parent: KIno, name: &str, flags: i32) -> FsResult<(NodeAttr, u64)>;
    fn mkdir(&self, parent: KIno, name: &str) -> FsResult<NodeAttr>;
    fn unlink(&self, parent: KIno, name: &str) -> FsResult<()>;
    fn rmdir(&self, parent: KIno, name: &str) -> FsResult<()>;
    fn rename(
        &self,
        parent: KIno,
        name: &str,
        newparent: KIno,
        newname: &str,
        noreplace: bool,
    ) -> FsResult<()>;
    fn setattr(&self, ino: KIno, set: SetAttr) -> FsResult<NodeAttr>;
    fn statfs(&self) -> StatFs;
}
