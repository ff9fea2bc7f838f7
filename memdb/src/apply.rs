//! `Memdb::apply`: the only mutating entry point.
//!
//! Determinism: the same sequence of `(Op, Ctx)` applied to the same tree gives the same tree,
//! the same global version and the same inode numbers on every node. `Ctx::now` only feeds the
//! node-local lock timers, never the tree.
//!
//! Each successful operation bumps the global version by exactly one; a failed one changes
//! nothing. The checks run in C's order, so the errno is the one C returns.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Error;
use crate::locks::entry_csum;
use crate::path::TreePath;
use crate::tree::{Body, Entry, Memdb};
use crate::types::{Inode, Mtime, NodeId, MAX_FILE_SIZE};
use crate::vmlist::GuestPath;

/// A replicated command, mirroring the DCDB message types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create an empty file (`EEXIST` if the name exists).
    Create {
        path: TreePath,
    },
    /// Write `data` at `offset`; with `truncate` the size becomes exactly `offset + data.len()`.
    /// A truncate to N is `Write { offset: N, data: [], truncate: true }`.
    Write {
        path: TreePath,
        offset: u64,
        data: Vec<u8>,
        truncate: bool,
    },
    Mkdir {
        path: TreePath,
    },
    /// unlink and rmdir alike.
    Delete {
        path: TreePath,
    },
    Rename {
        from: TreePath,
        to: TreePath,
    },
    /// Set the modification time (utimens).
    Mtime {
        path: TreePath,
        mtime: Mtime,
    },
}

/// Who applies an operation and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// Stored as the writer of every entry the operation touches.
    pub writer: NodeId,
    /// Stored as the mtime of every entry the operation touches (except `Op::Mtime`'s target).
    pub mtime: Mtime,
    /// This node's clock, for the lock timers only.
    pub now: Mtime,
}

/// One inode the backend must bring up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// The entry was created or modified: store its current state.
    Upsert(Inode),
    /// The entry is gone.
    Delete(Inode),
}

/// The effect of a successful operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry the operation created, changed, moved or removed.
    pub inode: Inode,
    /// The parent directory the entry is in after the operation (before it, for a delete).
    pub parent: Inode,
    /// What the backend must store; the global version is always to be stored with it.
    pub changes: Vec<Change>,
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::Access);
    }
    Ok(())
}

impl Memdb {
    /// Apply one operation.
    pub fn apply(&mut self, op: &Op, ctx: Ctx) -> Result<Applied, Error> {
        match op {
            Op::Create { path } => self.pwrite(path, 0, &[], false, true, ctx),
            Op::Write {
                path,
                offset,
                data,
                truncate,
            } => self.pwrite(path, *offset, data, *truncate, false, ctx),
            Op::Mkdir { path } => self.mkdir(path, ctx),
            Op::Delete { path } => self.delete(path, ctx),
            Op::Rename { from, to } => self.rename(from, to, ctx),
            Op::Mtime { path, mtime } => self.set_mtime(path, *mtime, ctx),
        }
    }

    /// The directory a new or existing name lives in, with C's checks and errno order.
    fn parent_dir<'p>(&self, path: &'p TreePath) -> Result<(Inode, &'p str), Error> {
        let parent = self.resolve(&path.parent()).ok_or(Error::NotFound)?;
        if self.entries[&parent].children().is_none() {
            return Err(Error::NotDir);
        }
        let name = path.name().unwrap_or("");
        check_name(name)?;
        Ok((parent, name))
    }

    fn bump(&mut self, ctx: Ctx) -> u64 {
        self.version += 1;
        self.root_writer = ctx.writer;
        self.root_mtime = ctx.mtime;
        let root = self.entries.get_mut(&Inode::ROOT).expect("root exists");
        root.version = self.version;
        root.writer = ctx.writer;
        root.mtime = ctx.mtime;
        self.version
    }

    fn children_mut(&mut self, dir: Inode) -> &mut BTreeMap<String, Inode> {
        match &mut self.entries.get_mut(&dir).expect("parent exists").body {
            Body::Dir(c) => c,
            Body::File(_) => unreachable!("parent checked to be a directory"),
        }
    }

    fn pwrite(
        &mut self,
        path: &TreePath,
        offset: u64,
        data: &[u8],
        truncate: bool,
        create: bool,
        ctx: Ctx,
    ) -> Result<Applied, Error> {
        let end = offset.checked_add(data.len() as u64).ok_or(Error::TooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(Error::TooBig);
        }
        let (parent, name) = self.parent_dir(path)?;
        let guest = GuestPath::parse(path);
        if guest.as_ref().is_some_and(|g| self.vmlist.conflicts(g)) {
            return Err(Error::Exists);
        }
        let existing = self.entries[&parent]
            .children()
            .and_then(|c| c.get(name))
            .copied();
        let inode = match existing {
            Some(ino) => {
                if !matches!(self.entries[&ino].body, Body::File(_)) {
                    return Err(Error::NotDir);
                }
                if create {
                    return Err(Error::Exists);
                }
                self.bump(ctx);
                ino
            }
            None => {
                if !create {
                    return Err(Error::NotFound);
                }
                let ino = Inode(self.bump(ctx));
                self.children_mut(parent).insert(name.to_owned(), ino);
                let e = Entry {
                    parent,
                    version: 0,
                    writer: ctx.writer,
                    mtime: ctx.mtime,
                    name: name.to_owned(),
                    body: Body::File(Arc::default()),
                };
                self.entries.insert(ino, e);
                ino
            }
        };
        let version = self.version;
        let e = self.entries.get_mut(&inode).expect("entry exists");
        e.version = version;
        e.writer = ctx.writer;
        e.mtime = ctx.mtime;
        let Body::File(content) = &mut e.body else {
            unreachable!("checked to be a file")
        };
        let old_len = content.len() as u64;
        let end = end as usize;
        let offset = offset as usize;
        if end as u64 > old_len || (truncate && (end as u64) < old_len) {
            Arc::make_mut(content).resize(end, 0);
        }
        if !data.is_empty() {
            Arc::make_mut(content)[offset..end].copy_from_slice(data);
        }
        let new_len = content.len() as u64;
        self.total_size = self.total_size - old_len + new_len;
        if let Some(g) = guest {
            self.vmlist.register(&g);
        }
        Ok(Applied {
            inode,
            parent,
            changes: vec![crate::Change::Upsert(inode)],
        })
    }

    fn mkdir(&mut self, path: &TreePath, ctx: Ctx) -> Result<Applied, Error> {
        let (parent, name) = self.parent_dir(path)?;
        if self.entries[&parent]
            .children()
            .is_some_and(|c| c.contains_key(name))
        {
            return Err(Error::Exists);
        }
        let inode = Inode(self.bump(ctx));
        self.children_mut(parent).insert(name.to_owned(), inode);
        let e = Entry {
            parent,
            version: inode.0,
            writer: ctx.writer,
            mtime: ctx.mtime,
            name: name.to_owned(),
            body: Body::Dir(BTreeMap::new()),
        };
        if path.is_lock_dir() {
            self.locks
                .reset(&path.to_string(), entry_csum(inode, &e), ctx.now);
        }
        self.entries.insert(inode, e);
        Ok(Applied {
            inode,
            parent,
            changes: vec![Change::Upsert(inode)],
        })
    }

    fn delete(&mut self, path: &TreePath, ctx: Ctx) -> Result<Applied, Error> {
        let inode = self.resolve(path).ok_or(Error::NotFound)?;
        if inode == Inode::ROOT {
            return Err(Error::Access);
        }
        let e = &self.entries[&inode];
        if let Body::Dir(c) = &e.body {
            if !c.is_empty() {
                return Err(Error::NotEmpty);
            }
            self.locks.remove(&path.to_string());
        }
        let parent = e.parent;
        self.bump(ctx);
        self.unlink(inode);
        if let Some(g) = GuestPath::parse(path) {
            self.vmlist.remove(g.vmid);
        }
        Ok(Applied {
            inode,
            parent,
            changes: vec![Change::Delete(inode)],
        })
    }

    /// Remove an entry (a file or an empty directory) from its parent and the index.
    fn unlink(&mut self, inode: Inode) -> Entry {
        let e = self.entries.remove(&inode).expect("entry exists");
        self.children_mut(e.parent).remove(&e.name);
        self.total_size -= e.size();
        e
    }

    fn rename(&mut self, from: &TreePath, to: &TreePath, ctx: Ctx) -> Result<Applied, Error> {
        let src = self.resolve(from).ok_or(Error::NotFound)?;
        if src == Inode::ROOT {
            return Err(Error::Access);
        }
        let src_is_file = matches!(self.entries[&src].body, Body::File(_));
        let from_guest = GuestPath::parse(from);
        let to_guest = if src_is_file {
            GuestPath::parse(to)
        } else {
            None
        };
        if let Some(g) = &to_guest {
            let same_vm = from_guest.as_ref().is_some_and(|f| f.vmid == g.vmid);
            if self.vmlist.conflicts(g) && !same_vm {
                return Err(Error::Exists);
            }
        }
        if !src_is_file && from.is_below_lock() {
            return Err(Error::Access);
        }
        if from == to {
            // The kernel never sends this; C would corrupt its index. Nothing to do.
            return Ok(Applied {
                inode: src,
                parent: self.entries[&src].parent,
                changes: vec![],
            });
        }
        // C checks the target first and loses it when the source turns out to be a non-empty
        // directory (Appendix A #2); the source is checked first here.
        if self.entries[&src].children().is_some_and(|c| !c.is_empty()) {
            return Err(Error::NotEmpty);
        }
        let target = self.resolve(to);
        let (new_parent, new_name) = match target {
            Some(Inode::ROOT) => return Err(Error::Access),
            Some(t) => {
                if self.entries[&t].children().is_some_and(|c| !c.is_empty()) {
                    return Err(Error::NotEmpty);
                }
                (self.entries[&t].parent, to.name().unwrap_or("").to_owned())
            }
            None => {
                if !src_is_file && self.resolve(&to.parent()) == Some(src) {
                    // An (empty) directory moved into itself: C would make a loop.
                    return Err(Error::Invalid);
                }
                let (p, n) = self.parent_dir(to)?;
                (p, n.to_owned())
            }
        };
        let version = self.bump(ctx);
        let mut changes = Vec::with_capacity(2);
        if let Some(t) = target {
            self.unlink(t);
            changes.push(Change::Delete(t));
        }
        let mut e = self.unlink(src);
        e.parent = new_parent;
        e.name = new_name.clone();
        e.version = version;
        e.writer = ctx.writer;
        e.mtime = ctx.mtime;
        self.total_size += e.size();
        self.entries.insert(src, e);
        self.children_mut(new_parent).insert(new_name, src);
        if src_is_file {
            if let Some(f) = from_guest {
                self.vmlist.remove(f.vmid);
            }
            if let Some(g) = to_guest {
                self.vmlist.register(&g);
            }
        }
        changes.push(Change::Upsert(src));
        Ok(Applied {
            inode: src,
            parent: new_parent,
            changes,
        })
    }

    fn set_mtime(&mut self, path: &TreePath, mtime: Mtime, ctx: Ctx) -> Result<Applied, Error> {
        let (parent, name) = self.parent_dir(path)?;
        let inode = self.lookup(parent, name)?;
        let e = &self.entries[&inode];
        let is_lock = path.is_lock_dir() && e.children().is_some();
        if is_lock && (mtime < e.mtime || e.writer != ctx.writer) {
            return Err(Error::Access);
        }
        // C stamps the root with the new mtime too (`memdb_mtime`), not the request time.
        let version = self.bump(Ctx { mtime, ..ctx });
        let e = self.entries.get_mut(&inode).expect("entry exists");
        e.version = version;
        e.writer = ctx.writer;
        e.mtime = mtime;
        if is_lock {
            let csum = entry_csum(inode, e);
            self.locks.reset(&path.to_string(), csum, ctx.now);
        }
        Ok(Applied {
            inode,
            parent,
            changes: vec![Change::Upsert(inode)],
        })
    }

    /// C `memdb_lock_expired` for the lock directory at `path`: false if it is not a directory
    /// below `priv/lock/`; records first sightings and state changes; true once the same state has been
    /// seen for longer than `timeout` seconds.
    pub fn lock_expired(&mut self, path: &TreePath, now: Mtime, timeout: u32) -> bool {
        if !path.is_below_lock() {
            return false;
        }
        let Some(inode) = self.resolve(path) else {
            return false;
        };
        let e = &self.entries[&inode];
        if e.children().is_none() {
            return false;
        }
        let csum = entry_csum(inode, e);
        self.locks.expired(&path.to_string(), csum, now, timeout)
    }
}
