//! `KernelCache`: makes the kernel forget what it cached about the tree when the tree changes
//! without the kernel's knowledge.
//!
//! The kernel caches names, attributes and file pages of tree entries (long TTLs, pages kept
//! across opens; see `fuse::adapter`). A change made through this mount is one the kernel made
//! itself: it updated its own dentries, pages and attributes (or marked them stale) before
//! answering the caller, so such changes need nothing from here. Everything else must come
//! through [`KernelCache`]: changes applied for other nodes (cluster mode), a whole tree replaced
//! by a sync, and local side effects the kernel did not ask for (an unlock request that removes a
//! lock directory while the kernel asked for an mtime change).
//!
//! How: the caller computes, under the tree lock, what the kernel may hold about the change
//! (names in their old directory, attributes, pages), maps memdb inodes to kernel inodes and
//! queues it; a thread of its own writes the notifications to `/dev/fuse` in queue order. The
//! applying thread never blocks on the kernel: a notification about an inode waits for that
//! inode's lock, which the kernel holds while a FUSE request on it is in flight, and in cluster
//! mode that request's thread may itself be waiting for the applying thread.
//!
//! What a reader may still see: between the apply and the kernel taking the notification
//! (microseconds, or as long as a FUSE request on that inode is in flight) a reader can be
//! served the previous content from the page cache, as a reader racing a write would be.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use lwcfs_fuse::{KIno, KernelNotifier, NodeRef};
use lwcfs_memdb::{Applied, Change, Inode, Memdb, Op};

/// One thing the kernel must forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inval {
    /// The entry's attributes changed (mtime, version), not its content.
    Attrs(Inode),
    /// The entry's content changed: attributes and pages.
    Content(Inode),
    /// `name` in `parent` no longer names what it named.
    Entry { parent: Inode, name: String },
    /// `name` in `parent`, which was `child`, is gone.
    Removed {
        parent: Inode,
        child: Inode,
        name: String,
    },
}

/// What the kernel may have cached that `applied` (the result of `op` on `db`, which is now the
/// tree after it) made wrong.
pub fn invalidations(db: &Memdb, op: &Op, applied: &Applied) -> Vec<Inval> {
    if applied.changes.is_empty() {
        return Vec::new();
    }
    match op {
        // A new name: the kernel holds nothing under it (a failed lookup is not cached).
        Op::Create { .. } | Op::Mkdir { .. } => Vec::new(),
        Op::Write { .. } => vec![Inval::Content(applied.inode)],
        Op::Mtime { .. } => vec![Inval::Attrs(applied.inode)],
        Op::Delete { path } => vec![Inval::Removed {
            parent: applied.parent,
            child: applied.inode,
            name: path.name().unwrap_or_default().to_owned(),
        }],
        Op::Rename { from, to } => {
            let mut out = Vec::new();
            // The source's old directory still exists: only the entry itself moved.
            if let Some(old_parent) = db.resolve(&from.parent()) {
                out.push(Inval::Entry {
                    parent: old_parent,
                    name: from.name().unwrap_or_default().to_owned(),
                });
            }
            for c in &applied.changes {
                if let Change::Delete(replaced) = c {
                    out.push(Inval::Removed {
                        parent: applied.parent,
                        child: *replaced,
                        name: to.name().unwrap_or_default().to_owned(),
                    });
                }
            }
            out.push(Inval::Attrs(applied.inode));
            out
        }
    }
}

/// What the kernel may have cached about `old` that is wrong in `new` (a tree replaced as a
/// whole): every entry that is gone, moved, or has another version.
pub fn tree_invalidations(old: &Memdb, new: &Memdb) -> Vec<Inval> {
    let mut out = Vec::new();
    for r in old.records() {
        match new.record(r.inode) {
            None => out.push(Inval::Removed {
                parent: r.parent,
                child: r.inode,
                name: r.name,
            }),
            Some(n) if n.parent != r.parent || n.name != r.name => {
                out.push(Inval::Entry {
                    parent: r.parent,
                    name: r.name,
                });
                out.push(Inval::Content(r.inode));
            }
            Some(n) if n.version != r.version || n.mtime != r.mtime || n.data != r.data => {
                out.push(Inval::Content(r.inode))
            }
            Some(_) => {}
        }
    }
    out
}

fn kino(i: Inode) -> KIno {
    NodeRef::Mem(i).into()
}

/// The handle the daemon keeps: cheap to call under the tree lock, never blocks.
pub struct KernelCache {
    tx: Sender<Vec<Inval>>,
    /// The receiving end until [`KernelCache::attach`] hands it to the notifying thread.
    rx: Mutex<Option<Receiver<Vec<Inval>>>>,
    /// Batches queued, and batches the thread has finished sending.
    queued: AtomicU64,
    sent: Arc<AtomicU64>,
}

impl Default for KernelCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelCache {
    /// Invalidations queue up from here on; they reach the kernel once [`Self::attach`]ed.
    pub fn new() -> KernelCache {
        let (tx, rx) = mpsc::channel();
        KernelCache {
            tx,
            rx: Mutex::new(Some(rx)),
            queued: AtomicU64::new(0),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Start the thread that sends the queued invalidations to the mounted session. A second
    /// call does nothing. The thread ends when the `KernelCache` is dropped.
    pub fn attach(&self, notifier: KernelNotifier) -> std::io::Result<()> {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(rx) = rx else { return Ok(()) };
        let sent = self.sent.clone();
        std::thread::Builder::new()
            .name("kernel-cache".into())
            .spawn(move || {
                for batch in rx {
                    for inval in &batch {
                        send(&notifier, inval);
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })?;
        Ok(())
    }

    /// `applied` is the result of `op`, just applied to `db` by something other than a request
    /// of this mount (a message from another node, an unlock request's removal). Call it while
    /// still holding the tree lock, so invalidations are queued in apply order.
    pub fn applied(&self, db: &Memdb, op: &Op, applied: &Applied) {
        self.queue(invalidations(db, op, applied));
    }

    /// The tree `old` is being replaced by `new` (a sync from the cluster).
    pub fn replaced(&self, old: &Memdb, new: &Memdb) {
        self.queue(tree_invalidations(old, new));
    }

    /// Batches queued but not yet taken by the kernel (for `lwcfs stats`: once it is 0 after a
    /// change was applied, every read that starts sees the change).
    pub fn pending(&self) -> u64 {
        self.queued
            .load(Ordering::SeqCst)
            .saturating_sub(self.sent.load(Ordering::SeqCst))
    }

    fn queue(&self, v: Vec<Inval>) {
        if !v.is_empty() {
            self.queued.fetch_add(1, Ordering::SeqCst);
            // The receiver lives as long as the thread, which lives as long as `self`.
            let _ = self.tx.send(v);
        }
    }
}

fn send(n: &KernelNotifier, inval: &Inval) {
    let r = match inval {
        Inval::Attrs(i) => n.attrs(kino(*i)),
        Inval::Content(i) => n.content(kino(*i)),
        Inval::Entry { parent, name } => n.entry(kino(*parent), name),
        Inval::Removed {
            parent,
            child,
            name,
        } => n.deleted(kino(*parent), kino(*child), name).or_else(|e| {
            // A directory the kernel still knows children of: forget the name and the inode.
            tracing::debug!(%child, "delete notification refused ({e}); invalidating instead");
            n.entry(kino(*parent), name)
                .and_then(|()| n.content(kino(*child)))
        }),
    };
    if let Err(e) = r {
        // ENOENT is already success; anything else (the session is gone) loses nothing that
        // the TTLs would not end.
        tracing::debug!(?inval, "kernel cache invalidation failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use lwcfs_memdb::{Ctx, Mtime, NodeId, TreePath};

    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            writer: NodeId(1),
            mtime: Mtime(100),
            now: Mtime(100),
        }
    }

    fn apply(db: &mut Memdb, op: Op) -> Vec<Inval> {
        let a = db.apply(&op, ctx()).expect("op applies");
        invalidations(db, &op, &a)
    }

    fn p(s: &str) -> TreePath {
        TreePath::parse(s)
    }

    fn tree() -> Memdb {
        let mut db = Memdb::new();
        for op in [
            Op::Mkdir { path: p("a") },
            Op::Mkdir { path: p("b") },
            Op::Create { path: p("a/f") },
            Op::Create { path: p("b/g") },
        ] {
            db.apply(&op, ctx()).unwrap();
        }
        db
    }

    #[test]
    fn new_names_need_nothing() {
        let mut db = tree();
        assert_eq!(apply(&mut db, Op::Create { path: p("a/new") }), vec![]);
        assert_eq!(apply(&mut db, Op::Mkdir { path: p("a/dir") }), vec![]);
    }

    #[test]
    fn write_drops_pages_and_mtime_drops_attributes() {
        let mut db = tree();
        let f = db.resolve(&p("a/f")).unwrap();
        let write = Op::Write {
            path: p("a/f"),
            offset: 0,
            data: b"x".to_vec(),
            truncate: true,
        };
        assert_eq!(apply(&mut db, write), vec![Inval::Content(f)]);
        let mtime = Op::Mtime {
            path: p("a/f"),
            mtime: Mtime(5),
        };
        assert_eq!(apply(&mut db, mtime), vec![Inval::Attrs(f)]);
    }

    #[test]
    fn delete_removes_the_name_in_its_parent() {
        let mut db = tree();
        let a = db.resolve(&p("a")).unwrap();
        let f = db.resolve(&p("a/f")).unwrap();
        assert_eq!(
            apply(&mut db, Op::Delete { path: p("a/f") }),
            vec![Inval::Removed {
                parent: a,
                child: f,
                name: "f".into()
            }]
        );
    }

    /// A rename over an existing file: the old name in the old directory, the replaced file
    /// under the new name, and the moved entry's attributes (its mtime changed).
    #[test]
    fn rename_over_forgets_both_names() {
        let mut db = tree();
        let (a, b) = (db.resolve(&p("a")).unwrap(), db.resolve(&p("b")).unwrap());
        let (f, g) = (
            db.resolve(&p("a/f")).unwrap(),
            db.resolve(&p("b/g")).unwrap(),
        );
        let op = Op::Rename {
            from: p("a/f"),
            to: p("b/g"),
        };
        assert_eq!(
            apply(&mut db, op),
            vec![
                Inval::Entry {
                    parent: a,
                    name: "f".into()
                },
                Inval::Removed {
                    parent: b,
                    child: g,
                    name: "g".into()
                },
                Inval::Attrs(f),
            ]
        );
        let op = Op::Rename {
            from: p("b/g"),
            to: p("b/h"),
        };
        assert_eq!(
            apply(&mut db, op),
            vec![
                Inval::Entry {
                    parent: b,
                    name: "g".into()
                },
                Inval::Attrs(f)
            ]
        );
    }

    #[test]
    fn rename_onto_itself_changes_nothing() {
        let mut db = tree();
        let op = Op::Rename {
            from: p("a/f"),
            to: p("a/f"),
        };
        assert_eq!(apply(&mut db, op), vec![]);
    }

    #[test]
    fn replaced_tree_forgets_what_differs() {
        let old = tree();
        let mut new = old.clone();
        let (a, f, g) = (
            old.resolve(&p("a")).unwrap(),
            old.resolve(&p("a/f")).unwrap(),
            old.resolve(&p("b/g")).unwrap(),
        );
        let b = old.resolve(&p("b")).unwrap();
        new.apply(
            &Op::Write {
                path: p("b/g"),
                offset: 0,
                data: b"new".to_vec(),
                truncate: false,
            },
            ctx(),
        )
        .unwrap();
        new.apply(&Op::Delete { path: p("a/f") }, ctx()).unwrap();
        new.apply(&Op::Create { path: p("a/z") }, ctx()).unwrap();
        assert_eq!(
            tree_invalidations(&old, &new),
            vec![
                Inval::Removed {
                    parent: a,
                    child: f,
                    name: "f".into()
                },
                Inval::Content(g),
            ]
        );
        new.apply(
            &Op::Rename {
                from: p("b/g"),
                to: p("a/g"),
            },
            ctx(),
        )
        .unwrap();
        assert!(tree_invalidations(&old, &new).contains(&Inval::Entry {
            parent: b,
            name: "g".into()
        }));
        assert_eq!(tree_invalidations(&old, &old.clone()), vec![]);
    }

    #[test]
    fn queued_before_attach_is_kept() {
        let kc = KernelCache::new();
        let mut db = tree();
        let op = Op::Delete { path: p("b/g") };
        let a = db.apply(&op, ctx()).unwrap();
        kc.applied(&db, &op, &a);
        let rx = kc.rx.lock().unwrap().take().unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), 1);
    }
}
