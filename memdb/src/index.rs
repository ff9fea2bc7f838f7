//! The memdb index and the tree checksums, laid out as C lays them out (cluster.md §4.4, §5.1,
//! §6.2).
//!
//! - [`MemdbIndex`] (`memdb_index_t`, C `memdb_encode_index`) is the dcdb STATE payload: a
//!   32-byte header `{u64 version, u64 last_inode, u32 writer, u32 mtime, u32 size,
//!   u32 bytes}` and one 40-byte `{u64 inode, SHA-256}` per entry, in inode order, the root
//!   (inode 0) included. The digest covers `version‖writer‖mtime‖size‖type‖parent‖name‖data`,
//!   not the inode.
//! - [`Memdb::compute_checksum`] (C `memdb_compute_checksum`) is one SHA-256 over every entry
//!   in inode order, this time with the inode first: what VERIFY compares.
//! - [`Memdb::entry_checksum`] (C `memdb_tree_entry_csum`) is the same over a single entry:
//!   the lock checksum of UNLOCK_REQUEST and UNLOCK.
//!
//! Integers are little-endian; names are hashed without their NUL; file content only for
//! non-empty files. The sync decisions that only need indexes (the data leader, the entries
//! it must send) are here too, as C's dcdb makes them.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::locks::entry_csum;
use crate::tree::{Body, Entry, Memdb};
use crate::types::{Inode, Kind, Mtime, NodeId};

/// Length of the index header.
pub const INDEX_HEADER_LEN: usize = 32;
/// Length of one index entry.
pub const INDEX_ENTRY_LEN: usize = 40;

/// One entry of an index: an inode and the digest of its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub inode: Inode,
    pub digest: [u8; 32],
}

/// A memdb index (`memdb_index_t`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemdbIndex {
    /// The global version (the root's).
    pub version: u64,
    /// The largest inode present.
    pub last_inode: u64,
    /// Writer and mtime of the last change (the root's).
    pub writer: NodeId,
    pub mtime: Mtime,
    /// In ascending inode order.
    pub entries: Vec<IndexEntry>,
}

/// Why a received index is refused (the sync round then fails and the receiver leaves).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("received short memdb index ({0} bytes)")]
    Short(usize),
    #[error("received malformed memdb index ({len} bytes, header says {bytes})")]
    BytesMismatch { bytes: u32, len: usize },
    /// C does not check this; it would read past the buffer.
    #[error("memdb index of {len} bytes cannot hold {size} entries")]
    SizeMismatch { size: u32, len: usize },
}

/// The per-entry digest of an index (cluster.md §4.4).
#[allow(clippy::too_many_arguments)]
pub(crate) fn entry_digest(
    version: u64,
    writer: u32,
    mtime: u32,
    size: u32,
    kind: Kind,
    parent: u64,
    name: &[u8],
    data: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(version.to_le_bytes());
    h.update(writer.to_le_bytes());
    h.update(mtime.to_le_bytes());
    h.update(size.to_le_bytes());
    h.update([kind.dt()]);
    h.update(parent.to_le_bytes());
    h.update(name);
    if kind == Kind::File && size > 0 {
        h.update(data);
    }
    h.finalize().into()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl MemdbIndex {
    /// The `bytes` field: the encoded length.
    pub fn byte_len(&self) -> usize {
        INDEX_HEADER_LEN + INDEX_ENTRY_LEN * self.entries.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.last_inode.to_le_bytes());
        out.extend_from_slice(&self.writer.0.to_le_bytes());
        out.extend_from_slice(&self.mtime.0.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.byte_len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.inode.0.to_le_bytes());
            out.extend_from_slice(&e.digest);
        }
        out
    }

    /// Decode a STATE payload: at least the header, exactly `bytes` long (C's checks), and
    /// room for exactly `size` entries (C assumes it).
    pub fn decode(b: &[u8]) -> Result<MemdbIndex, IndexError> {
        if b.len() < INDEX_HEADER_LEN {
            return Err(IndexError::Short(b.len()));
        }
        let size = le32(b, 24);
        let bytes = le32(b, 28);
        if b.len() as u64 != u64::from(bytes) {
            return Err(IndexError::BytesMismatch {
                bytes,
                len: b.len(),
            });
        }
        let body = &b[INDEX_HEADER_LEN..];
        if body.len() % INDEX_ENTRY_LEN != 0
            || (body.len() / INDEX_ENTRY_LEN) as u64 != u64::from(size)
        {
            return Err(IndexError::SizeMismatch { size, len: b.len() });
        }
        let entries = body
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(|c| IndexEntry {
                inode: Inode(le64(c, 0)),
                digest: c[8..].try_into().expect("32 bytes"),
            })
            .collect();
        Ok(MemdbIndex {
            version: le64(b, 0),
            last_inode: le64(b, 8),
            writer: NodeId(le32(b, 16)),
            mtime: Mtime(le32(b, 20)),
            entries,
        })
    }

    /// C `dcdb_select_leader`: walking the members in their table order (sorted by
    /// (nodeid, pid)), a member replaces the leader if its version is higher, or equal with a
    /// later mtime. Ties keep the earlier member. `None` for no members.
    pub fn select_leader(indexes: &[MemdbIndex]) -> Option<usize> {
        let mut leader: Option<usize> = None;
        for (i, idx) in indexes.iter().enumerate() {
            leader = match leader {
                None => Some(i),
                Some(l) => {
                    let cur = &indexes[l];
                    let newer = idx.version > cur.version
                        || (idx.version == cur.version && idx.mtime > cur.mtime);
                    Some(if newer { i } else { l })
                }
            };
        }
        leader
    }

    /// The leader's entries that `member` does not have byte for byte (C's merge walk in
    /// `dcdb_create_and_send_updates`; an entry the member lacks counts as different).
    pub fn differing(&self, member: &MemdbIndex) -> Vec<Inode> {
        let mut out = Vec::new();
        let mut j = 0;
        for e in &self.entries {
            while j < member.entries.len() && member.entries[j].inode < e.inode {
                j += 1;
            }
            if member.entries.get(j) != Some(e) {
                out.push(e.inode);
            }
        }
        out
    }

    /// The inodes the leader sends: the union over every member of [`Self::differing`].
    pub fn updates_for(leader: &MemdbIndex, members: &[MemdbIndex]) -> BTreeSet<Inode> {
        members.iter().flat_map(|m| leader.differing(m)).collect()
    }
}

impl Memdb {
    fn sorted_inodes(&self) -> Vec<Inode> {
        let mut inodes: Vec<Inode> = self.entries.keys().copied().collect();
        inodes.sort_unstable();
        inodes
    }

    /// The root's fields are the global version, writer and mtime.
    fn hashed_fields(&self, inode: Inode, e: &Entry) -> (u64, NodeId, Mtime) {
        if inode == Inode::ROOT {
            (self.version, self.root_writer, self.root_mtime)
        } else {
            (e.version, e.writer, e.mtime)
        }
    }

    /// C `memdb_encode_index`: the dcdb STATE this node sends.
    pub fn encode_index(&self) -> MemdbIndex {
        let inodes = self.sorted_inodes();
        let entries = inodes
            .iter()
            .map(|&inode| {
                let e = &self.entries[&inode];
                let (version, writer, mtime) = self.hashed_fields(inode, e);
                let data: &[u8] = match &e.body {
                    Body::File(d) => d,
                    Body::Dir(_) => &[],
                };
                let digest = entry_digest(
                    version,
                    writer.0,
                    mtime.0,
                    e.size() as u32,
                    e.kind(),
                    e.parent.0,
                    e.name.as_bytes(),
                    data,
                );
                IndexEntry { inode, digest }
            })
            .collect();
        MemdbIndex {
            version: self.version,
            last_inode: inodes.last().map_or(0, |i| i.0),
            writer: self.root_writer,
            mtime: self.root_mtime,
            entries,
        }
    }

    /// C `memdb_compute_checksum`: the VERIFY checksum of the whole tree.
    pub fn compute_checksum(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for inode in self.sorted_inodes() {
            let e = &self.entries[&inode];
            let (version, writer, mtime) = self.hashed_fields(inode, e);
            h.update(inode.0.to_le_bytes());
            h.update(version.to_le_bytes());
            h.update(writer.0.to_le_bytes());
            h.update(mtime.0.to_le_bytes());
            h.update((e.size() as u32).to_le_bytes());
            h.update([e.kind().dt()]);
            h.update(e.parent.0.to_le_bytes());
            h.update(e.name.as_bytes());
            if let Body::File(d) = &e.body {
                h.update(d.as_slice());
            }
        }
        h.finalize().into()
    }

    /// C `memdb_tree_entry_csum` of one entry: the checksum UNLOCK_REQUEST and UNLOCK carry
    /// for a lock directory. `None` if the inode does not exist.
    pub fn entry_checksum(&self, inode: Inode) -> Option<[u8; 32]> {
        self.entries.get(&inode).map(|e| entry_csum(inode, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Ctx, Op};
    use crate::load::RootRecord;
    use crate::path::TreePath;
    use crate::tree::{Data, NodeRecord};
    use crate::wire::vectors::{dcdb, u, unhex, TREE_AT_VERIFY};
    use serde_json::Value;

    fn hex(s: &str) -> Vec<u8> {
        unhex(&s.split_whitespace().collect::<String>())
    }

    fn sha256(b: &[u8]) -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    /// check_memdb.c indextest1: on a fresh database (version row 1), create `testfile0..99`
    /// and write 32 KiB of zeros into each, writer 0 and mtime 1234; the encoded index has
    /// version 201, last inode 200, 101 entries, and a fixed SHA-256.
    #[test]
    fn check_memdb_indextest1() {
        let fresh = RootRecord {
            version: 1,
            writer: NodeId(0),
            mtime: Mtime(1_700_000_000),
        };
        let mut db = Memdb::load(fresh, vec![], Mtime(1234)).unwrap();
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: Mtime(1234),
            now: Mtime(1234),
        };
        let zeros = vec![0u8; 32 * 1024];
        for i in 0..100 {
            let path = TreePath::parse(&format!("testfile{i}"));
            db.apply(&Op::Create { path: path.clone() }, ctx).unwrap();
            let w = Op::Write {
                path,
                offset: 0,
                data: zeros.clone(),
                truncate: false,
            };
            db.apply(&w, ctx).unwrap();
        }
        let idx = db.encode_index();
        assert_eq!(idx.version, 201);
        assert_eq!(idx.last_inode, 200);
        assert_eq!(idx.writer, NodeId(0));
        assert_eq!(idx.entries.len(), 101);
        let bytes = idx.encode();
        assert_eq!(bytes.len(), 101 * 40 + 32);
        assert_eq!(
            sha256(&bytes),
            "913fd95015af9d93f10dd51ba2a7bb11351bcfe040be21e95fcba834adc3ec10"
        );
        assert_eq!(MemdbIndex::decode(&bytes).unwrap(), idx);
    }

    /// cluster.md §2.7 example C (STATE payload) and §5.1 (its checksum).
    #[test]
    fn spec_example_c() {
        let root = RootRecord {
            version: 2,
            writer: NodeId(1),
            mtime: Mtime(0x6660_0000),
        };
        let a = NodeRecord {
            inode: Inode(1),
            parent: Inode(0),
            version: 2,
            writer: NodeId(1),
            mtime: Mtime(0x6660_0000),
            kind: Kind::File,
            name: "a".into(),
            data: Data::new(b"hi".to_vec()),
        };
        let db = Memdb::load(root, vec![a], Mtime(0)).unwrap();
        let want = hex("02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
                        01 00 00 00 00 00 60 66 02 00 00 00 70 00 00 00
                        00 00 00 00 00 00 00 00 08 5e 5e f0 c5 35 75 08
                        7d b6 67 21 c3 6c 8f d1 38 32 91 57 1d 0d d2 d9
                        20 6c c3 3a a5 e1 0b 12 01 00 00 00 00 00 00 00
                        1b d9 9a 8a 31 a0 83 13 8b 7b ac 31 f7 6a 9f 6a
                        ba 52 02 3f 77 01 23 76 69 89 8d f1 96 8b d6 ff");
        assert_eq!(db.encode_index().encode(), want);
        assert_eq!(
            db.compute_checksum().to_vec(),
            hex("ac0057ee6c0a67dd1c7bb7510594af8e8ebeecede53309e4f393b78a96d33b51")
        );
    }

    /// Node 1's tree right after the captured verify round.
    fn tree_at_verify() -> Memdb {
        let rows: Vec<Value> = serde_json::from_str(TREE_AT_VERIFY).unwrap();
        let mut root = None;
        let mut records = Vec::new();
        for r in &rows {
            let inode = Inode(u(&r["inode"]));
            let version = u(&r["version"]);
            let writer = NodeId(u(&r["writer"]) as u32);
            let mtime = Mtime(u(&r["mtime"]) as u32);
            if inode == Inode::ROOT {
                root = Some(RootRecord {
                    version,
                    writer,
                    mtime,
                });
                continue;
            }
            records.push(NodeRecord {
                inode,
                parent: Inode(u(&r["parent"])),
                version,
                writer,
                mtime,
                kind: Kind::from_dt(r["type"].as_i64().unwrap()).unwrap(),
                name: r["name"].as_str().unwrap().to_owned(),
                data: Data::new(unhex(r["data_hex"].as_str().unwrap())),
            });
        }
        Memdb::load(root.unwrap(), records, Mtime(0)).unwrap()
    }

    /// The captured tree reproduces node 1's last STATE (seq 62) byte for byte, the VERIFY
    /// checksum (seq 76), and the lock checksum of the unlock messages (seq 43, 82, 84).
    #[test]
    fn golden_tree_at_verify() {
        let db = tree_at_verify();
        let all = dcdb();
        let find = |seq| all.iter().find(|v| v.seq == seq).unwrap();
        assert_eq!(db.encode_index().encode(), find(62).payload());

        let verify = find(76);
        let csum = unhex(verify.fields()["csum"].as_str().unwrap());
        assert_eq!(db.compute_checksum().to_vec(), csum);
        assert_eq!(&verify.payload()[8..], csum.as_slice());

        let lock = db.resolve(&TreePath::parse("priv/lock/capture")).unwrap();
        assert_eq!(lock, Inode(19));
        for seq in [43, 82, 84] {
            let v = find(seq);
            assert_eq!(
                db.entry_checksum(lock).unwrap().as_slice(),
                &v.payload()[..32],
                "seq {seq}"
            );
        }
        assert_eq!(db.entry_checksum(Inode(999)), None);
    }

    /// Every captured STATE decodes to the captured fields and re-encodes exactly.
    #[test]
    fn golden_states_round_trip() {
        let mut n = 0;
        for v in dcdb().iter().filter(|v| v.msg_type() == 2) {
            let idx = MemdbIndex::decode(v.payload()).unwrap();
            let f = v.fields();
            assert_eq!(idx.version, u(&f["version"]));
            assert_eq!(idx.last_inode, u(&f["last_inode"]));
            assert_eq!(u64::from(idx.writer.0), u(&f["writer"]));
            assert_eq!(u64::from(idx.mtime.0), u(&f["mtime"]));
            assert_eq!(idx.entries.len() as u64, u(&f["size"]));
            assert_eq!(idx.byte_len() as u64, u(&f["bytes"]));
            let listed: Vec<(u64, Vec<u8>)> = f["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (u(&e[0]), unhex(e[1].as_str().unwrap())))
                .collect();
            let got: Vec<(u64, Vec<u8>)> = idx
                .entries
                .iter()
                .map(|e| (e.inode.0, e.digest.to_vec()))
                .collect();
            assert_eq!(got, listed);
            assert_eq!(idx.encode(), v.payload(), "seq {}", v.seq);
            n += 1;
        }
        assert_eq!(n, 12);
    }

    /// In every captured sync round, the data leader computed from the STATEs (members in
    /// (nodeid, pid) order) is the node that sent UPDATE_COMPLETE, and the UPDATEs it sent are
    /// exactly the entries some member lacked.
    #[test]
    fn golden_sync_rounds() {
        let all = dcdb();
        let mut rounds = 0;
        for start in all.iter().filter(|v| v.msg_type() == 1) {
            let epoch = start.epoch();
            let in_round = |t: u16| {
                all.iter()
                    .filter(move |v| v.msg_type() == t && v.epoch() == epoch)
            };
            let mut states: Vec<((u32, u32), MemdbIndex)> = in_round(2)
                .map(|v| (v.from, MemdbIndex::decode(v.payload()).unwrap()))
                .collect();
            states.sort_by_key(|(from, _)| *from);
            let indexes: Vec<MemdbIndex> = states.iter().map(|(_, i)| i.clone()).collect();
            let leader = MemdbIndex::select_leader(&indexes).unwrap();
            let completes: Vec<_> = in_round(4).collect();
            assert_eq!(completes.len(), 1, "round of seq {}", start.seq);
            assert_eq!(
                completes[0].from, states[leader].0,
                "round of seq {}",
                start.seq
            );
            let want = MemdbIndex::updates_for(&indexes[leader], &indexes);
            let sent: BTreeSet<Inode> = in_round(3)
                .map(|v| {
                    assert_eq!(v.from, states[leader].0);
                    Inode(crate::wire::UpdateEntry::decode(v.payload()).unwrap().inode)
                })
                .collect();
            assert_eq!(sent, want, "round of seq {}", start.seq);
            rounds += 1;
        }
        assert_eq!(rounds, 5);
    }

    #[test]
    fn leader_rule() {
        let idx = |version, mtime| MemdbIndex {
            version,
            last_inode: 0,
            writer: NodeId(0),
            mtime: Mtime(mtime),
            entries: vec![],
        };
        assert_eq!(MemdbIndex::select_leader(&[]), None);
        assert_eq!(MemdbIndex::select_leader(&[idx(1, 5)]), Some(0));
        // Higher version wins over a later mtime.
        assert_eq!(MemdbIndex::select_leader(&[idx(1, 9), idx(2, 1)]), Some(1));
        // Equal version: the later mtime.
        assert_eq!(
            MemdbIndex::select_leader(&[idx(2, 1), idx(2, 9), idx(2, 5)]),
            Some(1)
        );
        // Full tie: the first (lowest nodeid/pid).
        assert_eq!(MemdbIndex::select_leader(&[idx(3, 3), idx(3, 3)]), Some(0));
    }

    #[test]
    fn differing_entries() {
        let e = |inode, d| IndexEntry {
            inode: Inode(inode),
            digest: [d; 32],
        };
        let idx = |entries| MemdbIndex {
            version: 0,
            last_inode: 0,
            writer: NodeId(0),
            mtime: Mtime(0),
            entries,
        };
        let leader = idx(vec![e(0, 1), e(2, 2), e(5, 5), e(7, 7)]);
        // Member lacks 5 and the highest inode, has an extra 3, and a different 0.
        let member = idx(vec![e(0, 9), e(2, 2), e(3, 3)]);
        assert_eq!(
            leader.differing(&member),
            vec![Inode(0), Inode(5), Inode(7)]
        );
        assert_eq!(leader.differing(&leader), vec![]);
        let other = idx(vec![e(0, 1), e(2, 6), e(5, 5), e(7, 7)]);
        let all = MemdbIndex::updates_for(&leader, &[leader.clone(), member, other]);
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            vec![Inode(0), Inode(2), Inode(5), Inode(7)]
        );
    }

    #[test]
    fn malformed_indexes() {
        let db = tree_at_verify();
        let good = db.encode_index().encode();
        assert!(MemdbIndex::decode(&good).is_ok());
        assert_eq!(MemdbIndex::decode(&good[..31]), Err(IndexError::Short(31)));
        assert_eq!(
            MemdbIndex::decode(&good[..good.len() - 1]),
            Err(IndexError::BytesMismatch {
                bytes: good.len() as u32,
                len: good.len() - 1
            })
        );
        let mut size = good.clone();
        size[24] += 1;
        assert_eq!(
            MemdbIndex::decode(&size),
            Err(IndexError::SizeMismatch {
                size: u32::from(size[24]),
                len: good.len()
            })
        );
        for n in 0..=good.len() {
            if let Ok(i) = MemdbIndex::decode(&good[..n]) {
                assert_eq!(i.encode(), &good[..n]);
            }
        }
    }

    /// The index and the checksum move with every change and agree between two trees built
    /// by the same operations; the UPDATE of each entry carries the index digest.
    #[test]
    fn index_follows_the_tree() {
        let ctx = Ctx {
            writer: NodeId(2),
            mtime: Mtime(100),
            now: Mtime(100),
        };
        let ops = [
            Op::Mkdir {
                path: TreePath::parse("d"),
            },
            Op::Create {
                path: TreePath::parse("d/f"),
            },
            Op::Write {
                path: TreePath::parse("d/f"),
                offset: 0,
                data: b"xyz".to_vec(),
                truncate: false,
            },
        ];
        let mut a = Memdb::new();
        let mut b = Memdb::new();
        let mut seen = BTreeSet::new();
        for op in &ops {
            a.apply(op, ctx).unwrap();
            b.apply(op, ctx).unwrap();
            assert!(seen.insert(a.compute_checksum()));
            assert_eq!(a.encode_index(), b.encode_index());
            assert_eq!(a.compute_checksum(), b.compute_checksum());
        }
        let idx = a.encode_index();
        for e in &idx.entries {
            assert_eq!(a.update_entry(e.inode).unwrap().index_digest(), e.digest);
        }
        assert_eq!(a.update_entry(Inode(77)), None);
    }
}
