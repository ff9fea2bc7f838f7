//! The lock table for `priv/lock/<name>` directories (C `memdb.c`, `CFS_LOCK_TIMEOUT`).
//!
//! Each node remembers, per lock path, when it first saw the lock in its current state (`ltime`)
//! and a digest of that state. The stored mtime is deliberately not used (clock skew). A lock is
//! expired when the same state has been seen for more than the timeout. `now` is always an
//! argument: this module never reads a clock.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::tree::{Body, Entry};
use crate::types::{Inode, Mtime};

/// C's lock timeout: 120 s.
pub const LOCK_TIMEOUT: u32 = 120;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockInfo {
    pub ltime: Mtime,
    pub csum: [u8; 32],
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Locks {
    pub(crate) table: HashMap<String, LockInfo>,
}

impl Locks {
    /// C `memdb_lock_expired`: record a lock seen for the first time or in a new state; report
    /// expiry when the same state is older than `timeout`.
    pub fn expired(&mut self, path: &str, csum: [u8; 32], now: Mtime, timeout: u32) -> bool {
        match self.table.get_mut(path) {
            Some(li) if li.csum != csum => {
                *li = LockInfo { ltime: now, csum };
                false
            }
            Some(li) => now.0 > li.ltime.0 && now.0 - li.ltime.0 > timeout,
            None => {
                self.table
                    .insert(path.to_owned(), LockInfo { ltime: now, csum });
                false
            }
        }
    }

    /// Start the timer of a lock afresh (after mkdir or a refresh).
    pub fn reset(&mut self, path: &str, csum: [u8; 32], now: Mtime) {
        self.table
            .insert(path.to_owned(), LockInfo { ltime: now, csum });
    }

    pub fn remove(&mut self, path: &str) {
        self.table.remove(path);
    }
}

/// C `memdb_tree_entry_csum`: SHA-256 over inode, version, writer, mtime, size, type, parent,
/// name and (files only) data, integers in host (little-endian) byte order.
pub(crate) fn entry_csum(inode: Inode, e: &Entry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(inode.0.to_le_bytes());
    h.update(e.version.to_le_bytes());
    h.update(e.writer.0.to_le_bytes());
    h.update(e.mtime.0.to_le_bytes());
    h.update((e.size() as u32).to_le_bytes());
    h.update([e.kind().dt()]);
    h.update(e.parent.0.to_le_bytes());
    h.update(e.name.as_bytes());
    if let Body::File(d) = &e.body {
        h.update(d.as_slice());
    }
    h.finalize().into()
}
