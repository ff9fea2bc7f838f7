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
//! - A new directory waits for its own `commit_delay` (unless something the batch stores lies
//!   in it): a directory made and removed within the delay (a lock) never reaches the disk,
//!   wherever the batch's deadline falls.
//! - Deferrable rewrites: a change may come with a [`Defer`] rule. When a batch would store such
//!   a file over the stored row at its place (a rewrite in place, or a new file renamed over
//!   it, whose old inode is removed), and the rule says the new content is the same as the
//!   stored one for its purpose, neither the new row nor the removal of the stored one is
//!   written: the stored file stays as it was. Only while no more than `bound` has passed since
//!   the first rewrite deferred over that stored row; any change without the rule, content the
//!   rule does not accept, a flush and the shutdown store it by the rules above. The pair is
//!   held back together, so the stored tree still has exactly one file at that place.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lwcfs_memdb::load::RootRecord;
use lwcfs_memdb::{Change, Inode, Kind, NodeRecord};

/// When pending inodes are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long after the first pending inode became committable its batch is committed.
    pub commit_delay: Duration,
    /// How long a held inode may stay pending before it is committed anyway.
    pub hold_bound: Duration,
}

/// May a file's new content stay in RAM while its stored row stays as it is? A property of
/// the change that set the content, decided by the daemon (which knows paths and formats).
#[derive(Clone, Copy, Debug)]
pub struct Defer {
    /// The longest a stored row stays in place under deferred rewrites, counted from the
    /// first rewrite deferred over it.
    pub bound: Duration,
    /// True if `current` may stay off disk while `stored` is the file's stored content.
    pub same: fn(stored: &[u8], current: &[u8]) -> bool,
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
    /// The rule the last change to the inode came with (changes without one clear it).
    defer: Option<Defer>,
    /// Held back by a deferrable rewrite until then (see [`Batch::deferred`]).
    deferred_until: Option<Instant>,
}

/// What the disk holds, as far as the writer needs to know: where every stored inode is, and
/// the stored `__version__` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnDisk {
    places: HashMap<Inode, (Inode, String)>,
    by_place: HashMap<(Inode, String), Inode>,
    /// The stored content of rows a [`Defer`] rule may be asked about.
    kept: HashMap<Inode, Arc<Vec<u8>>>,
    pub root: RootRecord,
}

impl OnDisk {
    /// `rows` are `(inode, parent, name)` of every stored row but `__version__`.
    pub fn new(rows: impl IntoIterator<Item = (Inode, Inode, String)>, root: RootRecord) -> OnDisk {
        let places: HashMap<Inode, (Inode, String)> =
            rows.into_iter().map(|(i, p, n)| (i, (p, n))).collect();
        let by_place = places.iter().map(|(i, pn)| (pn.clone(), *i)).collect();
        OnDisk {
            places,
            by_place,
            kept: HashMap::new(),
            root,
        }
    }

    /// The stored inode named `name` in directory `parent`.
    pub fn at(&self, parent: Inode, name: &str) -> Option<Inode> {
        self.by_place.get(&(parent, name.to_owned())).copied()
    }

    /// The stored content of `inode`, if known here.
    pub fn kept(&self, inode: Inode) -> Option<&[u8]> {
        self.kept.get(&inode).map(|d| d.as_slice())
    }

    /// Record the stored content of `inode` (read back from the database).
    pub fn keep(&mut self, inode: Inode, data: Arc<Vec<u8>>) {
        if self.places.contains_key(&inode) {
            self.kept.insert(inode, data);
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
            self.unplace(*i);
            self.kept.remove(i);
        }
        for r in &batch.upserts {
            self.unplace(r.inode);
            self.places.insert(r.inode, (r.parent, r.name.clone()));
            self.by_place.insert((r.parent, r.name.clone()), r.inode);
            if batch.keep.contains(&r.inode) {
                self.kept.insert(r.inode, r.data.clone());
            } else {
                self.kept.remove(&r.inode);
            }
        }
        self.root = batch.root;
    }

    fn unplace(&mut self, inode: Inode) {
        if let Some(place) = self.places.remove(&inode) {
            if self.by_place.get(&place) == Some(&inode) {
                self.by_place.remove(&place);
            }
        }
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
    /// Upserted inodes whose content the writer keeps (they carry a [`Defer`] rule).
    pub keep: Vec<Inode>,
    /// Deferrable rewrites held back by this batch: `(inode, stored inode at its place, the
    /// first deferral over that stored inode)`. Both inodes stay pending.
    pub deferred: Vec<(Inode, Inode, Instant)>,
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
    /// Stored inodes kept in place by deferred rewrites, with the first such deferral.
    streaks: HashMap<Inode, Instant>,
}

impl Pending {
    pub fn new(policy: Policy) -> Pending {
        Pending {
            policy,
            dirty: BTreeMap::new(),
            holders: HashMap::new(),
            streaks: HashMap::new(),
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

    /// Changes just applied to the tree. `defer` applies to the upserts among them (a removal is
    /// never deferred by itself); every change sets or clears the inode's rule, and a deferred
    /// inode that changes again is judged again.
    pub fn changed(
        &mut self,
        changes: &[Change],
        at_once: bool,
        defer: Option<Defer>,
        now: Instant,
    ) {
        for c in changes {
            let inode = inode_of(c);
            let held = self.held(inode);
            let d = self.dirty.entry(inode).or_insert(Dirty {
                since: now,
                ready_at: None,
                forced: false,
                defer: None,
                deferred_until: None,
            });
            d.forced |= at_once;
            if (at_once || !held) && d.ready_at.is_none() {
                d.ready_at = Some(now);
            }
            d.defer = match c {
                Change::Upsert(_) => defer,
                Change::Delete(_) => None,
            };
            d.deferred_until = None;
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
            .map(|d| {
                let due = self.ready(d) + self.policy.commit_delay;
                d.deferred_until.map_or(due, |t| t.max(due))
            })
            .min()
    }

    /// Stored inodes whose content [`Pending::plan`] would compare against and that `disk` does
    /// not know: the writer reads them from the database first.
    pub fn stored_to_compare(
        &self,
        snapshot: &[(Inode, Option<NodeRecord>)],
        disk: &OnDisk,
    ) -> Vec<Inode> {
        snapshot
            .iter()
            .filter_map(|(inode, rec)| {
                let r = rec.as_ref()?;
                self.dirty.get(inode)?.defer?;
                let stored = disk.at(r.parent, &r.name)?;
                disk.kept(stored).is_none().then_some(stored)
            })
            .collect()
    }

    /// The deferrable rewrites to hold back in a batch at `now` (see the module docs): pairs of
    /// `(inode, stored inode at its place, first deferral over it)`.
    fn deferrable(
        &self,
        snapshot: &[(Inode, Option<NodeRecord>)],
        disk: &OnDisk,
        now: Instant,
    ) -> Vec<(Inode, Inode, Instant)> {
        let gone: HashSet<Inode> = snapshot
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| *i)
            .collect();
        let mut out = Vec::new();
        for (inode, rec) in snapshot {
            let (Some(d), Some(r)) = (self.dirty.get(inode), rec) else {
                continue;
            };
            let Some(rule) = d.defer else { continue };
            if r.kind != Kind::File || !self.committable(d, now) {
                continue;
            }
            // The stored row at its place: the same inode (a rewrite in place), or one that is
            // gone from the tree (renamed over). Anything else is structure and is stored.
            let Some(stored) = disk.at(r.parent, &r.name) else {
                continue;
            };
            if stored != *inode && (disk.contains(*inode) || !gone.contains(&stored)) {
                continue;
            }
            let since = self.streaks.get(&stored).copied().unwrap_or(now);
            if now >= since + rule.bound {
                continue;
            }
            if disk
                .kept(stored)
                .is_some_and(|old| (rule.same)(old, &r.data))
            {
                out.push((*inode, stored, since));
            }
        }
        out
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
        if !all {
            b.deferred = self.deferrable(&snapshot, disk, now);
        }
        let mut held_back: HashSet<Inode> =
            b.deferred.iter().flat_map(|&(i, s, _)| [i, s]).collect();
        if !all {
            held_back.extend(self.young_dirs(&snapshot, disk, now, &held_back));
        }
        for (inode, rec) in snapshot {
            let Some(d) = self.dirty.get(&inode) else {
                continue;
            };
            if held_back.contains(&inode) {
                continue;
            }
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
                    if d.defer.is_some() {
                        b.keep.push(inode);
                    }
                    b.upserts.push(r);
                    b.settled.push(inode);
                }
                Some(_) => {}
            }
        }
        b.version_only = all && b.upserts.is_empty() && b.deletes.is_empty() && root != disk.root;
        b
    }

    /// New directories (not on disk) that became committable less than `commit_delay` ago and
    /// that nothing stored by this batch lies in: they wait for their own delay, so a directory
    /// made and removed within the delay (a lock) never reaches the disk, whenever the batch
    /// runs.
    fn young_dirs(
        &self,
        snapshot: &[(Inode, Option<NodeRecord>)],
        disk: &OnDisk,
        now: Instant,
        held_back: &HashSet<Inode>,
    ) -> HashSet<Inode> {
        let mut young: HashSet<Inode> = snapshot
            .iter()
            .filter(|(i, r)| {
                r.as_ref().is_some_and(|r| r.kind == Kind::Dir)
                    && !disk.contains(*i)
                    && self
                        .dirty
                        .get(i)
                        .is_some_and(|d| now < self.ready(d) + self.policy.commit_delay)
            })
            .map(|(i, _)| *i)
            .collect();
        if young.is_empty() {
            return young;
        }
        let parents: HashMap<Inode, Inode> = snapshot
            .iter()
            .filter_map(|(i, r)| r.as_ref().map(|r| (*i, r.parent)))
            .collect();
        for (inode, rec) in snapshot {
            let (Some(d), Some(r)) = (self.dirty.get(inode), rec) else {
                continue;
            };
            if young.contains(inode) || held_back.contains(inode) {
                continue;
            }
            if self.committable(d, now) || (disk.contains(*inode) && disk.moves(r)) {
                // Stored: every new directory above it must be stored too.
                let mut p = r.parent;
                while young.remove(&p) {
                    p = parents.get(&p).copied().unwrap_or(Inode::ROOT);
                }
            }
        }
        young
    }

    /// `batch` was committed (or needed no transaction): its settled inodes were stored as the
    /// snapshot showed them (the snapshot was taken with every change drained, so they are no
    /// longer pending), and its deferred ones wait for their bound. Returns how many rewrites
    /// this batch deferred that no earlier batch had.
    pub fn settle(&mut self, batch: &Batch) -> usize {
        for inode in &batch.settled {
            self.dirty.remove(inode);
            self.streaks.remove(inode);
        }
        let mut new = 0;
        for &(inode, stored, since) in &batch.deferred {
            let Some(rule) = self.dirty.get(&inode).and_then(|d| d.defer) else {
                continue;
            };
            let until = since + rule.bound;
            self.streaks.insert(stored, since);
            for i in [inode, stored] {
                if let Some(d) = self.dirty.get_mut(&i) {
                    if i == inode && d.deferred_until.is_none() {
                        new += 1;
                    }
                    d.deferred_until = Some(until);
                }
            }
        }
        new
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
        p.changed(&[Change::Upsert(Inode(5))], false, None, t0);
        p.changed(&[Change::Upsert(Inode(6))], false, None, t0 + DELAY / 2);
        // No debounce: the second change does not move the deadline.
        assert_eq!(p.deadline(), Some(t0 + DELAY));
    }

    #[test]
    fn held_change_waits_for_release_or_bound() {
        let t0 = Instant::now();
        let mut p = pending();
        p.hold(Inode(5));
        p.changed(&[Change::Upsert(Inode(5))], false, None, t0);
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
        p.changed(&[Change::Upsert(Inode(5))], true, None, t0);
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
        p.changed(&[Change::Upsert(Inode(5))], false, None, t0);
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
        p.changed(&[Change::Upsert(Inode(5))], false, None, t0);
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
        p.changed(&[Change::Upsert(Inode(5))], true, None, t0);
        p.changed(&[Change::Delete(Inode(5))], true, None, t0);
        let disk = OnDisk::new([], root(4));
        let b = p.plan(vec![(Inode(5), None)], root(6), &disk, t0 + DELAY, false);
        assert!(b.is_empty());
        assert_eq!(b.settled, vec![Inode(5)]);
        p.settle(&b);
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
        p.changed(&[Change::Upsert(Inode(5))], false, None, t0);
        p.changed(&[Change::Upsert(Inode(6))], false, None, t0);
        let disk = OnDisk::new([(Inode(5), Inode(0), "f".into())], root(4));
        let snap = vec![
            (Inode(5), Some(rec(5, 0, "f", b"x"))),
            (Inode(6), Some(rec(6, 0, "g", b""))),
        ];
        let b = p.plan(snap, root(6), &disk, t0 + DELAY, false);
        assert_eq!(b.settled, vec![Inode(6)]);
        p.settle(&b);
        assert!(p.is_pending(Inode(5)) && !p.is_pending(Inode(6)));
        assert_eq!(p.deadline(), Some(t0 + BOUND + DELAY));
    }

    #[test]
    fn hold_after_release_makes_it_wait_again() {
        let t0 = Instant::now();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(5))], false, None, t0);
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
            ..Batch::default()
        };
        assert_eq!(b.blob_bytes(), 3);
        disk.apply(&b);
        assert!(!disk.contains(Inode(5)) && disk.contains(Inode(6)));
        assert_eq!((disk.len(), disk.root), (1, root(6)));
    }

    /// The test rule: the same except for the last byte (a stand-in for a timestamp).
    fn same_but_last(stored: &[u8], current: &[u8]) -> bool {
        stored.len() == current.len()
            && !stored.is_empty()
            && stored[..stored.len() - 1] == current[..current.len() - 1]
    }

    const BOUND_D: Duration = Duration::from_secs(60);

    fn rule() -> Option<Defer> {
        Some(Defer {
            bound: BOUND_D,
            same: same_but_last,
        })
    }

    /// `lrm_status` (inode 5, content "state1") on disk, its content known.
    fn stored_status() -> OnDisk {
        let mut disk = OnDisk::new([(Inode(5), Inode(0), "lrm_status".into())], root(5));
        disk.keep(Inode(5), Arc::new(b"state1".to_vec()));
        disk
    }

    /// A new file `inode` with `data` renamed over inode `over` at `lrm_status`.
    fn rename_over(p: &mut Pending, inode: u64, over: u64, t: Instant) {
        p.changed(&[Change::Upsert(Inode(inode))], false, None, t);
        p.changed(
            &[Change::Delete(Inode(over)), Change::Upsert(Inode(inode))],
            true,
            rule(),
            t,
        );
    }

    fn snap(over: u64, inode: u64, data: &[u8]) -> Vec<(Inode, Option<NodeRecord>)> {
        vec![
            (Inode(over), None),
            (Inode(inode), Some(rec(inode, 0, "lrm_status", data))),
        ]
    }

    #[test]
    fn same_content_rename_over_is_held_back_until_the_bound() {
        let t0 = Instant::now();
        let disk = stored_status();
        let mut p = pending();
        rename_over(&mut p, 7, 5, t0);
        let b = p.plan(snap(5, 7, b"state2"), root(7), &disk, t0 + DELAY, false);
        assert!(b.is_empty(), "nothing written: {b:?}");
        assert_eq!(b.deferred, vec![(Inode(7), Inode(5), t0 + DELAY)]);
        assert_eq!(p.settle(&b), 1, "one rewrite deferred");
        assert!(p.is_pending(Inode(5)) && p.is_pending(Inode(7)));
        let until = t0 + DELAY + BOUND_D;
        assert_eq!(p.deadline(), Some(until));

        // The next rewrite replaces inode 7 (never stored); the bound still counts from the
        // first deferral over inode 5.
        let t1 = t0 + Duration::from_secs(5);
        rename_over(&mut p, 9, 7, t1);
        let snap2 = vec![
            (Inode(5), None),
            (Inode(7), None),
            (Inode(9), Some(rec(9, 0, "lrm_status", b"state3"))),
        ];
        let b = p.plan(snap2.clone(), root(9), &disk, t1 + DELAY, false);
        assert!(b.is_empty(), "{b:?}");
        assert_eq!(b.settled, vec![Inode(7)], "the replaced, never stored file");
        assert_eq!(b.deferred, vec![(Inode(9), Inode(5), t0 + DELAY)]);
        assert_eq!(p.settle(&b), 1);
        assert_eq!(p.deadline(), Some(until));

        // At the bound: the newest content replaces the stored row in one batch.
        let snap3 = snap2[..1].iter().chain(&snap2[2..]).cloned().collect();
        let b = p.plan(snap3, root(9), &disk, until, false);
        assert_eq!(b.deletes, vec![Inode(5)]);
        assert_eq!(b.upserts.len(), 1);
        assert_eq!(
            b.keep,
            vec![Inode(9)],
            "its content is kept for the next comparison"
        );
        assert!(b.deferred.is_empty());
        p.settle(&b);
        assert!(p.is_empty());
    }

    #[test]
    fn different_content_or_unknown_stored_content_is_stored_at_once() {
        let t0 = Instant::now();
        let mut p = pending();
        rename_over(&mut p, 7, 5, t0);
        let b = p.plan(
            snap(5, 7, b"other!"),
            root(7),
            &stored_status(),
            t0 + DELAY,
            false,
        );
        assert_eq!((b.deletes.len(), b.upserts.len()), (1, 1), "a real change");
        assert!(b.deferred.is_empty());

        let unknown = OnDisk::new([(Inode(5), Inode(0), "lrm_status".into())], root(5));
        let s = snap(5, 7, b"state2");
        assert_eq!(p.stored_to_compare(&s, &unknown), vec![Inode(5)]);
        assert!(p.stored_to_compare(&s, &stored_status()).is_empty());
        let b = p.plan(s, root(7), &unknown, t0 + DELAY, false);
        assert_eq!(
            (b.deletes.len(), b.upserts.len()),
            (1, 1),
            "nothing to compare with"
        );
    }

    #[test]
    fn a_real_change_after_deferred_rewrites_stores_the_newest_at_once() {
        let t0 = Instant::now();
        let disk = stored_status();
        let mut p = pending();
        rename_over(&mut p, 7, 5, t0);
        let b = p.plan(snap(5, 7, b"state2"), root(7), &disk, t0 + DELAY, false);
        p.settle(&b);
        let t1 = t0 + Duration::from_secs(1);
        rename_over(&mut p, 9, 7, t1);
        assert!(
            p.deadline().is_some_and(|d| d <= t1 + DELAY),
            "judged again within the commit delay"
        );
        let snap2 = vec![
            (Inode(5), None),
            (Inode(7), None),
            (Inode(9), Some(rec(9, 0, "lrm_status", b"CHANGE"))),
        ];
        let b = p.plan(snap2, root(9), &disk, t1 + DELAY, false);
        assert_eq!(b.deletes, vec![Inode(5)]);
        assert_eq!(b.upserts[0].inode, Inode(9));
    }

    #[test]
    fn flush_stores_deferred_rewrites() {
        let t0 = Instant::now();
        let disk = stored_status();
        let mut p = pending();
        rename_over(&mut p, 7, 5, t0);
        let b = p.plan(snap(5, 7, b"state2"), root(7), &disk, t0 + DELAY, false);
        p.settle(&b);
        let b = p.plan(snap(5, 7, b"state2"), root(7), &disk, t0 + DELAY, true);
        assert_eq!((b.deletes.len(), b.upserts.len()), (1, 1));
    }

    #[test]
    fn rewrite_in_place_is_held_back_and_a_change_without_the_rule_is_not() {
        let t0 = Instant::now();
        let disk = stored_status();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(5))], false, rule(), t0);
        let s = vec![(Inode(5), Some(rec(5, 0, "lrm_status", b"state9")))];
        let b = p.plan(s.clone(), root(6), &disk, t0 + DELAY, false);
        assert_eq!(b.deferred, vec![(Inode(5), Inode(5), t0 + DELAY)]);
        p.settle(&b);
        // An mtime change (no rule) is stored with the content.
        p.changed(&[Change::Upsert(Inode(5))], true, None, t0 + DELAY);
        let b = p.plan(s, root(7), &disk, t0 + DELAY * 2, false);
        assert_eq!(b.upserts.len(), 1);
        assert!(
            b.keep.is_empty(),
            "stored without the rule: its content is not kept"
        );
    }

    #[test]
    fn stored_file_still_in_the_tree_elsewhere_is_structure() {
        let t0 = Instant::now();
        let disk = stored_status();
        let mut p = pending();
        // lrm_status moved to lrm_status.old, then a new file renamed to lrm_status.
        p.changed(&[Change::Upsert(Inode(5))], true, None, t0);
        rename_over(&mut p, 7, 5, t0);
        let s = vec![
            (Inode(5), Some(rec(5, 0, "lrm_status.old", b"state1"))),
            (Inode(7), Some(rec(7, 0, "lrm_status", b"state2"))),
        ];
        let b = p.plan(s, root(7), &disk, t0 + DELAY, false);
        assert!(b.deferred.is_empty());
        assert_eq!(b.upserts.len(), 2);
    }

    #[test]
    fn a_zero_bound_never_defers() {
        let t0 = Instant::now();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(7))], false, None, t0);
        let zero = Defer {
            bound: Duration::ZERO,
            same: same_but_last,
        };
        p.changed(
            &[Change::Delete(Inode(5)), Change::Upsert(Inode(7))],
            true,
            Some(zero),
            t0,
        );
        let b = p.plan(
            snap(5, 7, b"state2"),
            root(7),
            &stored_status(),
            t0 + DELAY,
            false,
        );
        assert!(b.deferred.is_empty());
        assert_eq!(b.upserts.len(), 1);
    }

    #[test]
    fn on_disk_places_and_kept_content_follow_batches() {
        let mut disk = stored_status();
        assert_eq!(disk.at(Inode(0), "lrm_status"), Some(Inode(5)));
        let b = Batch {
            upserts: vec![rec(7, 0, "lrm_status", b"new")],
            deletes: vec![Inode(5)],
            root: root(7),
            keep: vec![Inode(7)],
            ..Batch::default()
        };
        disk.apply(&b);
        assert_eq!(disk.at(Inode(0), "lrm_status"), Some(Inode(7)));
        assert_eq!(disk.kept(Inode(7)), Some(&b"new"[..]));
        assert_eq!(disk.kept(Inode(5)), None);
        let b = Batch {
            upserts: vec![rec(7, 0, "renamed", b"new")],
            root: root(8),
            ..Batch::default()
        };
        disk.apply(&b);
        assert_eq!(disk.at(Inode(0), "lrm_status"), None);
        assert_eq!(disk.at(Inode(0), "renamed"), Some(Inode(7)));
        assert_eq!(disk.kept(Inode(7)), None, "stored without the rule");
        disk.keep(Inode(99), Arc::new(vec![]));
        assert_eq!(disk.kept(Inode(99)), None, "only stored rows");
    }

    /// A lock directory made just before a batch runs is not in it; removed within its own
    /// delay, it never reaches the disk. A new directory holding a stored file is stored.
    #[test]
    fn young_new_directory_waits_for_its_own_delay() {
        let t0 = Instant::now();
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(5))], true, None, t0);
        let t1 = t0 + DELAY - Duration::from_millis(1);
        p.changed(&[Change::Upsert(Inode(6))], true, None, t1);
        let disk = OnDisk::new([], root(4));
        let mut dir = rec(6, 0, "lock", b"");
        dir.kind = Kind::Dir;
        let snap = vec![
            (Inode(5), Some(rec(5, 0, "f", b"x"))),
            (Inode(6), Some(dir.clone())),
        ];
        let b = p.plan(snap, root(6), &disk, t0 + DELAY, false);
        assert_eq!(
            b.settled,
            vec![Inode(5)],
            "the young directory waits: {b:?}"
        );
        p.settle(&b);
        assert_eq!(p.deadline(), Some(t1 + DELAY));
        p.changed(&[Change::Delete(Inode(6))], true, None, t1);
        let b = p.plan(vec![(Inode(6), None)], root(7), &disk, t1 + DELAY, false);
        assert!(b.is_empty() && b.settled == vec![Inode(6)], "{b:?}");

        // A due file inside a young directory takes the directory with it.
        let mut p = pending();
        p.changed(&[Change::Upsert(Inode(8))], true, None, t1);
        p.changed(&[Change::Upsert(Inode(9))], true, None, t0);
        let mut d8 = rec(8, 0, "d", b"");
        d8.kind = Kind::Dir;
        let snap = vec![(Inode(8), Some(d8)), (Inode(9), Some(rec(9, 8, "f", b"x")))];
        let b = p.plan(snap.clone(), root(9), &disk, t0 + DELAY, false);
        assert_eq!(b.upserts.len(), 2, "{b:?}");
        let b = p.plan(snap, root(9), &disk, t0 + DELAY, true);
        assert_eq!(b.upserts.len(), 2, "a flush stores everything");
    }
}
