//! The one error enum of memdb; errno is decided in [`Error::errno`] and nowhere else.

use crate::types::Inode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("file too large (limit 1 MiB)")]
    TooBig,
    #[error("permission denied")]
    Access,
    #[error("invalid argument")]
    Invalid,
}

impl Error {
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::NotDir => libc::ENOTDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::TooBig => libc::EFBIG,
            Error::Access => libc::EACCES,
            Error::Invalid => libc::EINVAL,
        }
    }
}

/// Why a stored tree could not be loaded. Every variant names the row at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("inode {0} has no name")]
    NoName(Inode),
    #[error("inode {0} has unknown type {1}")]
    BadType(Inode, i64),
    #[error("directory inode {0} has data")]
    DirWithData(Inode),
    #[error("inode 0 has unexpected name {0:?} (expected __version__)")]
    BadRootName(String),
    #[error("inode {0} appears twice")]
    Duplicate(Inode),
    #[error("inode {child} has a regular file {parent} as parent")]
    ParentNotDir { child: Inode, parent: Inode },
    #[error("inode {child}: name {name:?} already used in directory {parent}")]
    DuplicateName {
        child: Inode,
        parent: Inode,
        name: String,
    },
    #[error("missing directory inode {parent} (parent of {child})")]
    MissingParent { child: Inode, parent: Inode },
    #[error("inode {0} is not reachable from the root (parent loop)")]
    Unreachable(Inode),
    #[error("inode {inode}: file of {size} bytes is over the 1 MiB limit")]
    TooBig { inode: Inode, size: usize },
    #[error("inode {inode}: guest {vmid} is also configured on another node or type")]
    DuplicateVmid { inode: Inode, vmid: u32 },
}
