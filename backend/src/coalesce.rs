//! The pure part of the writer: which inodes are pending, when they may be committed, and what
//! one batch writes. No I/O and no clock: every instant comes in as an argument.
//!
//! Rules (the durability promise; see the crate docs):
//! - A changed inode is *pending* until a commit has stored the state it had at or after its
//!   last change.
//! - A pending inode is *committable* when it has no holders (no open file handle wrote it), or
//!   a change to it came with `at_once`, or it has been pending for `hold_bound`.
//! - A batch is due `commit_delay` after the first of the pending inodes became committable. It
//!   stores every committable inode, plus every held inode already on disk whose *place*
//!   changed (moved, removed): the stored tree must stay loadable, so structure never waits for
//!   a holder. A held file that is not on disk yet waits for its release like its content: it
//!   is a leaf, nothing stored depends on it.
//! - A batch stores what the tree holds at commit time, so intermediate states collapse, and an
//!   inode that never reached the disk and is gone again writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use lwcfs_memdb::load::RootRecord;
use lwcfs_memdb::{Change, Inode, NodeRecord};

/// When pending inodes are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long after the first pending inode became committable its batch is committed.
    pub commit_delay: Duration,
    /// How long a held inode may stay pending before it is committed anyway.
    pub hold_bound: Duration,
}

/// The inode of a change.
pub fn inode_of(c: &Change) -> Inode {
    match *c {
        Change::Upsert(i) | Change::Delete(i) => i,
    }
}

#[derive(Clone, Debug)]
struct Dirty {
    /// The first change since the inode was last stored.
    since: Instant,
    /// When it became committable through having no holder or through `at_once`; `Some` exactly
    /// when it is forced or has no holder.
    ready_at: Option<Instant>,
    /// A change came with `at_once`.
    forced: bool,
}

/// What the disk holds, as far as the writer needs to know: where every stored inode is, and
/// the stored `__version__` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnDisk {
    places: HashMap<Inode, (Inode, String)>,
    pub root: RootRecord,
}

impl OnDisk {
    /// `rows` are `(inode, parent, name)` of every stored row but `__version__`.
    pub fn new(rows: impl IntoIterator<Item = (Inode, Inode, String)>, root: RootRecord) -> OnDisk {
        OnDisk {
            places: rows.into_iter().map(|(i, p, n)| (i, (p, n))).collect(),
            root,
        }
    }

    pub fn contains(&self, inode: Inode) -> bool {
        self.places.contains_key(&inode)
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Record a committed batch.
    pub fn apply(&mut self, batch: &Batch) {
        for i in &batch.deletes {
            self.places.remove(i);
        }
        for r in &batch.upserts {
            self.places.insert(r.inode, (r.parent, r.name.clone()));
        }
        self.root = batch.root;
    }

    /// True if storing `rec` changes where its inode is (or creates it).
    fn moves(&self, rec: &NodeRecord) -> bool {
        self.places
            .get(&rec.inode)
            .is_none_or(|(p, n)| *p != rec.parent || *n != rec.name)
    }
}

/// One transaction's worth of rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Rows to REPLACE.
    pub upserts: Vec<NodeRecord>,
    /// Stored inodes to DELETE.
    pub deletes: Vec<Inode>,
    /// The `__version__` row, REPLACEd in the same transaction.
    pub root: RootRecord,
    /// The pending inodes this batch resolves (written, or nothing to write).
    pub settled: Vec<Inode>,
    /// Write the `__version__` row even if no other row changes (a flush of a version that no
    /// row carries, e.g. after a mkdir and rmdir that never reached the disk).
    pub version_only: bool,
}

impl Batch {
    /// True if the batch needs no transaction at all.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty() && !self.version_only
    }

    /// Bytes of file content the batch writes.
    pub fn blob_bytes(&self) -> u64 {
        self.upserts.iter().map(|r| r.data.len() as u64).sum()
    }
}

/// The pending inodes and the holders of inodes.
#[derive(Clone, Debug)]
pub struct Pending {
    policy: Policy,
    dirty: BTreeMap<Inode, Dirty>,
    holders: HashMap<Inode, u32>,
}

impl Pending {
    pub fn new(policy: Policy) -> Pending {
        Pending {
            policy,
            dirty: BTreeMap::new(),
            holders: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }

    pub fn len(&self) -> usize {
        self.dirty.len()
    }

    pub fn is_pending(&self, inode: Inode) -> bool {
        self.dirty.contains_key(&inode)
    }

    fn held(&self, inode: Inode) -> bool {
        self.holders.contains_key(&inode)
    }

    /// The pending inodes, in inode order.
    pub fn inodes(&self) -> Vec<Inode> {
        self.dirty.keys().copied().collect()
    }

    /// Changes just applied to the tree.
    pub fn changed(&mut self, changes: &[Change], at_once: bool, now: Instant) {
        for c in changes {
            let inode = inode_of(c);
            let held = self.held(inode);
            let d = self.dirty.entry(inode).or_insert(Dirty {
                since: now,
                ready_at: None,
                forced: false,
            });
            d.forced |= at_once;
            if (at_once || !held) && d.ready_at.is_none() {
                d.ready_at = Some(now);
            }
        }
    }

    /// A file handle wrote `inode`. Holds are counted: each needs one [`Pending::release`].
    pub fn hold(&mut self, inode: Inode) {
        let n = self.holders.entry(inode).or_insert(0);
        *n += 1;
        if *n == 1 {
            if let Some(d) = self.dirty.get_mut(&inode).filter(|d| !d.forced) {
                d.ready_at = None;
            }
        }
    }

    /// A handle that wrote `inode` was closed.
    pub fn release(&mut self, inode: Inode, now: Instant) {
        let Some(n) = self.holders.get_mut(&inode) else {
            tracing::debug!(?inode, "release without hold");
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.holders.remove(&inode);
            if let Some(d) = self.dirty.get_mut(&inode) {
                d.ready_at.get_or_insert(now);
            }
        }
    }

    /// When the inode became (or will become) committable.
    fn ready(&self, d: &Dirty) -> Instant {
        let bound = d.since + self.policy.hold_bound;
        d.ready_at.map_or(bound, |r| r.min(bound))
    }

    fn committable(&self, d: &Dirty, now: Instant) -> bool {
        self.ready(d) <= now
    }

    /// When the next batch is due, if anything is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.dirty
            .values()
            .map(|d| self.ready(d) + self.policy.commit_delay)
            .min()
    }

    /// Plan the batch for a snapshot of the pending inodes taken at `root`. With `all`, held
    /// inodes are committed too (flush, shutdown), and the `__version__` row is written even
    /// when no other row is.
    pub fn plan(
        &self,
        snapshot: Vec<(Inode, Option<NodeRecord>)>,
        root: RootRecord,
        disk: &OnDisk,
        now: Instant,
        all: bool,
    ) -> Batch {
        let mut b = Batch {
            root,
            ..Batch::default()
        };
        for (inode, rec) in snapshot {
            let Some(d) = self.dirty.get(&inode) else {
                continue;
            };
            let due = all || self.committable(d, now);
            match rec {
                // A removal is structural: it is stored even for a held inode.
                None => {
                    if disk.contains(inode) {
                        b.deletes.push(inode);
                    }
                    b.settled.push(inode);
                }
                Some(r) if due || (disk.contains(inode) && disk.moves(&r)) => {
                    b.upserts.push(r);
                    b.settled.push(inode);
                }
                Some(_) => {}
            }
        }
        b.version_only = all && b.upserts.is_empty() && b.deletes.is_empty() && root != disk.root;
        b
    }

    /// `settled` was stored as the snapshot of the batch showed it (or needed nothing). The
    /// snapshot was taken with every change drained, so these inodes are no longer pending.
    pub fn settle(&mut self, settled: &[Inode]) {
        for inode in settled {
            self.dirty.remove(inode);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lwcfs_memdb::{Kind, Mtime, NodeId};

    use super::*;

    const DELAY: Duration = Duration::from_millis(20);
    const BOUND: Duration = Duration::from_secs(5);

    fn pending() -> Pending {
        Pending::new(Policy {
            commit_delay: DELAY,
            hold_bound: BOUND,
        })
    }

    fn rec(inode: u64, parent: u64, name: &str, data: &[u8]) -> NodeRecord {
        NodeRecord {
            inode: Inode(inode),
            parent: Inode(parent),
            version: inode,
            writer: NodeId(0),
            mtime: Mtime(1),
            kind: Kind::File,
            name: name.into(),
            data: Arc::new(data.to_vec()),
        }
    }

    fn root(version: u64) -> RootRecord {
        RootRecord {
            version,
            writer: NodeId(0),
            mtime: Mtime(1),
        }
    }

    #[test]
    fn unheld_change_is_due_after_the_delay_from_the_first() {
        let t0 = Instant::now();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(5))], false, t0);
        p.changed(&[Change::Upsert(Inode(6))], false, t0 + DELAY / 2);
        // No debounce: the second change does not move the deadline.
        assert_eq!(p.deadline(), Some(t0 + DELAY));
    }

    #[test]
    fn held_change_waits_for_release_or_bound() {
        let t0 = Instant::now();
        let mut p = pending();
        p.hold(Inode(5));
        p.changed(&[Change::Upsert(Inode(5))], false, t0);
        assert_eq!(p.deadline(), Some(t0 + BOUND + DELAY));
        let disk = OnDisk::new([(Inode(5), Inode(0), "f".into())], root(4));
        let snap = vec![(Inode(5), Some(rec(5, 0, "f", b"x")))];
        let b = p.plan(snap.clone(), root(5), &disk, t0 + DELAY, false);
        assert!(b.is_empty(), "held content change waits: {b:?}");
        let b = p.plan(snap.clone(), root(5), &disk, t0 + BOUND, false);
        assert_eq!(b.upserts.len(), 1, "committed once the bound is over");
        let t1 = t0 + DELAY * 3;
        p.release(Inode(5), t1);
        assert_eq!(p.deadline(), Some(t1 + DELAY));
        let b = p.plan(snap, root(5), &disk, t1, false);
        assert_eq!(b.upserts.len(), 1);
    }

    #[test]
    fn at_once_commits_a_held_inode() {
        let t0 = Instant::now();
        let mut p = pending();
        p.hold(Inode(5));
        p.changed(&[Change::Upsert(Inode(5))], true, t0);
        assert_eq!(p.deadline(), Some(t0 + DELAY));
        let disk = OnDisk::new([(Inode(5), Inode(0), "f".into())], root(4));
        let b = p.plan(
            vec![(Inode(5), Some(rec(5, 0, "f", b"")))],
            root(5),
            &disk,
            t0,
            false,
        );
        assert_eq!(b.settled, vec![Inode(5)]);
    }

    #[test]
    fn held_inode_that_moved_is_stored_with_the_batch() {
        let t0 = Instant::now();
        let mut p = pending();
        p.hold(Inode(5));
        p.changed(&[Change::Upsert(Inode(5))], false, t0);
        let disk = OnDisk::new([(Inode(5), Inode(0), "f".into())], root(4));
        let b = p.plan(
            vec![(Inode(5), Some(rec(5, 0, "g", b"")))],
            root(5),
            &disk,
            t0,
            false,
        );
        assert_eq!(b.upserts.len(), 1, "a new place is structural");
        let b = p.plan(vec![(Inode(5), None)], root(5), &disk, t0, false);
        assert_eq!(b.deletes, vec![Inode(5)], "a removal is structural");
        let b = p.plan(
            vec![(Inode(6), Some(rec(6, 0, "h", b"")))],
            root(6),
            &disk,
            t0,
            false,
        );
        assert!(b.is_empty(), "inode 6 is not pending");
    }

    #[test]
    fn held_new_file_waits_for_its_release() {
        let t0 = Instant::now();
        let mut p = pending();
        p.hold(Inode(5));
        p.changed(&[Change::Upsert(Inode(5))], false, t0);
        let disk = OnDisk::new([], root(4));
        let snap = || vec![(Inode(5), Some(rec(5, 0, "new", b"half")))];
        let b = p.plan(snap(), root(5), &disk, t0 + DELAY, false);
        assert!(
            b.is_empty(),
            "a created file still being written stays in RAM: {b:?}"
        );
        p.release(Inode(5), t0 + DELAY);
        let b = p.plan(snap(), root(5), &disk, t0 + DELAY * 2, false);
        assert_eq!(b.upserts.len(), 1, "stored once released");
    }

    #[test]
    fn gone_inode_never_stored_writes_nothing() {
        let t0 = Instant::now();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(5))], true, t0);
        p.changed(&[Change::Delete(Inode(5))], true, t0);
        let disk = OnDisk::new([], root(4));
        let b = p.plan(vec![(Inode(5), None)], root(6), &disk, t0 + DELAY, false);
        assert!(b.is_empty());
        assert_eq!(b.settled, vec![Inode(5)]);
        p.settle(&b.settled);
        assert!(p.is_empty());
        // A flush still stores the version the tree reached.
        let b = p.plan(vec![], root(6), &disk, t0 + DELAY, true);
        assert!(b.version_only && !b.is_empty());
        let b = p.plan(vec![], root(4), &disk, t0 + DELAY, true);
        assert!(b.is_empty(), "nothing to flush");
    }

    #[test]
    fn held_inode_not_due_stays_pending() {
        let t0 = Instant::now();
        let mut p = pending();
        p.hold(Inode(5));
        p.changed(&[Change::Upsert(Inode(5))], false, t0);
        p.changed(&[Change::Upsert(Inode(6))], false, t0);
        let disk = OnDisk::new([(Inode(5), Inode(0), "f".into())], root(4));
        let snap = vec![
            (Inode(5), Some(rec(5, 0, "f", b"x"))),
            (Inode(6), Some(rec(6, 0, "g", b""))),
        ];
        let b = p.plan(snap, root(6), &disk, t0 + DELAY, false);
        assert_eq!(b.settled, vec![Inode(6)]);
        p.settle(&b.settled);
        assert!(p.is_pending(Inode(5)) && !p.is_pending(Inode(6)));
        assert_eq!(p.deadline(), Some(t0 + BOUND + DELAY));
    }

    #[test]
    fn hold_after_release_makes_it_wait_again() {
        let t0 = Instant::now();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(5))], false, t0);
        p.hold(Inode(5));
        assert_eq!(p.deadline(), Some(t0 + BOUND + DELAY));
        p.hold(Inode(5));
        p.release(Inode(5), t0 + DELAY);
        assert_eq!(p.deadline(), Some(t0 + BOUND + DELAY), "one holder is left");
        p.release(Inode(5), t0 + DELAY);
        assert_eq!(p.deadline(), Some(t0 + DELAY * 2));
        p.release(Inode(5), t0 + DELAY); // unmatched: ignored
        assert_eq!(p.deadline(), Some(t0 + DELAY * 2));
    }

    #[test]
    fn on_disk_follows_batches() {
        let mut disk = OnDisk::new([(Inode(5), Inode(0), "f".into())], root(5));
        let b = Batch {
            upserts: vec![rec(6, 0, "g", b"abc")],
            deletes: vec![Inode(5)],
            root: root(6),
            settled: vec![],
            version_only: false,
        };
        assert_eq!(b.blob_bytes(), 3);
        disk.apply(&b);
        assert!(!disk.contains(Inode(5)) && disk.contains(Inode(6)));
        assert_eq!((disk.len(), disk.root), (1, root(6)));
    }
}
