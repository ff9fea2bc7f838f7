//! Telling the kernel to forget what it cached: the FUSE notifications, in plain types.
//!
//! Each call writes one notification to `/dev/fuse` and may block until the kernel can take the
//! locks it needs (the inode, its pages, the parent directory). Never call these from a thread
//! that serves FUSE requests or from one that such a thread waits for: a notification about an
//! inode whose request is in flight would wait for that request forever. The daemon sends them
//! from a thread of their own.
//!
//! The kernel answers `ENOENT` when it has nothing cached for the inode or name; that is success
//! here (nothing to forget).

use std::ffi::OsStr;
use std::io;

use fuser::{INodeNo, Notifier};

use crate::inodes::KIno;

/// A handle on a mounted session's notification channel.
#[derive(Clone, Debug)]
pub struct KernelNotifier(Notifier);

impl KernelNotifier {
    pub(crate) fn new(n: Notifier) -> KernelNotifier {
        KernelNotifier(n)
    }

    /// Forget the attributes of `ino` (size, mtime, mode): the next stat asks the daemon.
    pub fn attrs(&self, ino: KIno) -> io::Result<()> {
        // A negative offset keeps the cached pages.
        self.0.inval_inode(INodeNo(ino.0), -1, 0)
    }

    /// Forget the attributes and every cached page of `ino`.
    pub fn content(&self, ino: KIno) -> io::Result<()> {
        self.0.inval_inode(INodeNo(ino.0), 0, 0)
    }

    /// Forget the name `name` in directory `parent` (the next path walk looks it up again).
    pub fn entry(&self, parent: KIno, name: &str) -> io::Result<()> {
        self.0.inval_entry(INodeNo(parent.0), OsStr::new(name))
    }

    /// `name` in `parent`, which was `child`, is gone: the kernel drops the name and marks the
    /// inode unlinked (inotify watchers see a deletion). Fails with `ENOTEMPTY` if the kernel
    /// still holds names below a directory `child`.
    pub fn deleted(&self, parent: KIno, child: KIno, name: &str) -> io::Result<()> {
        self.0
            .delete(INodeNo(parent.0), INodeNo(child.0), OsStr::new(name))
    }
}
