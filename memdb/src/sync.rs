//! A follower's side of a sync round: the tree the data leader's updates make of this one (C
//! `bdb_backend_commit_update`, cluster.md §4.7), decided in RAM before anything is stored.

use std::collections::{BTreeMap, HashSet};

use crate::apply::Change;
use crate::error::LoadError;
use crate::index::MemdbIndex;
use crate::load::RootRecord;
use crate::tree::{Memdb, NodeRecord};
use crate::types::{Inode, Mtime};
use crate::wire::Update;

/// Why the leader's updates could not be committed (the node then stops its cluster
/// connection, as C sets `memdb->errors`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("updated tree is invalid: {0}")]
    Load(#[from] LoadError),
    #[error("new index does not match master index")]
    IndexMismatch,
}

/// The tree after a sync, and what the backend must store to reach it.
#[derive(Debug)]
pub struct Synced {
    pub db: Memdb,
    /// Deleted entries first, then the received ones, in inode order.
    pub changes: Vec<Change>,
}

impl Memdb {
    /// Delete every entry the leader's index lacks, replace every received entry (inode 0
    /// carries the global version, writer and mtime), rebuild, and require the result's index
    /// to equal the leader's byte for byte. `now` restarts the lock timers, as C's reload does.
    /// `self` is untouched: on error nothing changed.
    pub fn synced_with(
        &self,
        leader: &MemdbIndex,
        updates: &[Update],
        now: Mtime,
    ) -> Result<Synced, SyncError> {
        let keep: HashSet<Inode> = leader.entries.iter().map(|e| e.inode).collect();
        let mut rows: BTreeMap<Inode, NodeRecord> = self
            .records()
            .into_iter()
            .filter(|r| keep.contains(&r.inode))
            .map(|r| (r.inode, r))
            .collect();
        let mut root = RootRecord {
            version: self.version,
            writer: self.root_writer,
            mtime: self.root_mtime,
        };
        let mut received = Vec::new();
        for u in updates {
            match u {
                Update::Root(r) => root = *r,
                Update::Node(n) => {
                    received.push(n.inode);
                    rows.insert(n.inode, n.clone());
                }
            }
        }
        let db = Memdb::load(root, rows.into_values().collect(), now)?;
        if db.encode_index() != *leader {
            return Err(SyncError::IndexMismatch);
        }
        let mut deleted: Vec<Inode> = self
            .entries
            .keys()
            .copied()
            .filter(|i| !keep.contains(i))
            .collect();
        deleted.sort_unstable();
        received.sort_unstable();
        received.dedup();
        let changes = deleted
            .into_iter()
            .map(Change::Delete)
            .chain(
                received
                    .into_iter()
                    .filter(|i| *i != Inode::ROOT)
                    .map(Change::Upsert),
            )
            .collect();
        Ok(Synced { db, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Ctx, Op};
    use crate::types::NodeId;
    use crate::TreePath;

    fn ctx(t: u32) -> Ctx {
        Ctx {
            writer: NodeId(1),
            mtime: Mtime(t),
            now: Mtime(t),
        }
    }

    fn apply(db: &mut Memdb, op: Op, t: u32) {
        db.apply(&op, ctx(t)).unwrap();
    }

    fn p(s: &str) -> TreePath {
        TreePath::parse(s)
    }

    /// What a leader sends for a follower: C's update set, as `Update`s.
    fn updates(leader: &Memdb, follower: &Memdb) -> Vec<Update> {
        let li = leader.encode_index();
        MemdbIndex::updates_for(&li, &[follower.encode_index()])
            .into_iter()
            .map(|i| leader.update_entry(i).unwrap().to_update().unwrap())
            .collect()
    }

    #[test]
    fn follower_reaches_the_leaders_index() {
        let mut base = Memdb::new();
        apply(&mut base, Op::Mkdir { path: p("nodes") }, 10);
        apply(&mut base, Op::Create { path: p("a") }, 10);
        let mut follower = base.clone();
        let mut leader = base;
        // The follower has an entry the leader lacks, and an older a.
        apply(
            &mut follower,
            Op::Create {
                path: p("only-here"),
            },
            11,
        );
        apply(
            &mut leader,
            Op::Write {
                path: p("a"),
                offset: 0,
                data: b"new".to_vec(),
                truncate: false,
            },
            12,
        );
        apply(
            &mut leader,
            Op::Mkdir {
                path: p("nodes/n2"),
            },
            13,
        );
        apply(
            &mut leader,
            Op::Create {
                path: p("nodes/n2/x"),
            },
            14,
        );

        let s = follower
            .synced_with(
                &leader.encode_index(),
                &updates(&leader, &follower),
                Mtime(20),
            )
            .unwrap();
        assert_eq!(s.db.encode_index(), leader.encode_index());
        assert_eq!(s.db.compute_checksum(), leader.compute_checksum());
        let gone = follower.resolve(&p("only-here")).unwrap();
        assert_eq!(s.changes[0], Change::Delete(gone));
        assert!(s
            .changes
            .contains(&Change::Upsert(leader.resolve(&p("a")).unwrap())));
        assert_eq!(&*s.db.read_path(&p("a")).unwrap(), b"new");
    }

    #[test]
    fn a_missing_update_is_refused_and_changes_nothing() {
        let mut leader = Memdb::new();
        let follower = leader.clone();
        apply(&mut leader, Op::Create { path: p("a") }, 10);
        let mut u = updates(&leader, &follower);
        u.retain(|u| matches!(u, Update::Root(_)));
        let before = follower.encode_index();
        assert!(matches!(
            follower.synced_with(&leader.encode_index(), &u, Mtime(20)),
            Err(SyncError::IndexMismatch)
        ));
        assert_eq!(follower.encode_index(), before);
    }
}
