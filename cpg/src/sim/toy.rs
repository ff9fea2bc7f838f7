//! A small replicated application shaped like dcdb, for driving the DFSM in tests.
//!
//! The data is a map from keys to versioned values plus a "root" (global version, writer,
//! mtime of the last change). Its STATE is an index of digests (root included, as key 0), the
//! data leader is chosen by dcdb's rule (highest version, then latest mtime, then first in
//! member order), the leader sends one UPDATE per entry some member lacks, and followers apply
//! everything at UPDATE_COMPLETE, deleting what the leader does not have, then require their
//! new index to be the leader's byte for byte.
//!
//! NORMAL messages: [`PUT`] `{u64 key, value}` bumps the version and answers it; [`DEL`]
//! `{u64 key}` answers `-ENOENT` (-2) for a missing key without a version bump, as memdb
//! fails operations deterministically.

use std::collections::BTreeMap;

use crate::dfsm::{App, Ctx, Failure, Normal, SyncRound};
use crate::member::MemberId;

pub const PUT: u16 = 1;
pub const DEL: u16 = 2;
/// The root's key in the index and in UPDATEs.
const ROOT: u64 = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    pub value: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Root {
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
}

#[derive(Clone, Debug, Default)]
struct RoundData {
    leader: Vec<u8>,
    updates: Vec<Vec<u8>>,
}

/// The toy application.
#[derive(Clone, Debug, Default)]
pub struct KvApp {
    pub root: Root,
    pub items: BTreeMap<u64, Item>,
    /// Every NORMAL message applied, in order: (sender, count, subtype).
    pub applied: Vec<(MemberId, u64, u16)>,
    /// Whether it answers verify requests.
    pub verifies: bool,
    round: Option<RoundData>,
    /// Times `synced` ran.
    pub synced_calls: usize,
    /// Updates received in the last round, and commits done.
    pub updates_received: usize,
    pub commits: usize,
}

pub fn put(key: u64, value: &[u8]) -> Vec<u8> {
    let mut p = key.to_le_bytes().to_vec();
    p.extend_from_slice(value);
    p
}

pub fn del(key: u64) -> Vec<u8> {
    key.to_le_bytes().to_vec()
}

fn fnv(parts: &[&[u8]], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An index: `{u64 version, u32 mtime, u32 writer}` then `{u64 key, u64 digest}` per entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Index {
    version: u64,
    mtime: u32,
    entries: Vec<(u64, u64)>,
}

impl Index {
    fn decode(b: &[u8]) -> Option<Index> {
        let version = le64(b, 0)?;
        let mtime = le32(b, 8)?;
        let body = b.get(16..)?;
        if body.len() % 16 != 0 {
            return None;
        }
        let entries = body
            .chunks_exact(16)
            .map(|c| (le64(c, 0).unwrap(), le64(c, 8).unwrap()));
        Some(Index {
            version,
            mtime,
            entries: entries.collect(),
        })
    }

    fn differing(&self, member: &Index) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|e| !member.entries.contains(e))
            .map(|e| e.0)
            .collect()
    }
}

impl KvApp {
    pub fn new() -> KvApp {
        KvApp {
            verifies: true,
            ..KvApp::default()
        }
    }

    fn item_digest(i: &Item) -> u64 {
        fnv(
            &[
                &i.version.to_le_bytes(),
                &i.writer.to_le_bytes(),
                &i.mtime.to_le_bytes(),
                &i.value,
            ],
            0,
        )
    }

    fn root_digest(&self) -> u64 {
        let r = self.root;
        fnv(
            &[
                &r.version.to_le_bytes(),
                &r.writer.to_le_bytes(),
                &r.mtime.to_le_bytes(),
            ],
            0,
        )
    }

    /// The STATE blob.
    pub fn index(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.root.version.to_le_bytes());
        b.extend_from_slice(&self.root.mtime.to_le_bytes());
        b.extend_from_slice(&self.root.writer.to_le_bytes());
        b.extend_from_slice(&ROOT.to_le_bytes());
        b.extend_from_slice(&self.root_digest().to_le_bytes());
        for (k, i) in &self.items {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&Self::item_digest(i).to_le_bytes());
        }
        b
    }

    /// The data, for comparing replicas: root and items.
    pub fn data(&self) -> (Root, BTreeMap<u64, Item>) {
        (self.root, self.items.clone())
    }

    /// Change a value behind the protocol's back (a diverged replica).
    pub fn corrupt(&mut self, key: u64) {
        self.items
            .entry(key)
            .or_insert(Item {
                version: 0,
                writer: 0,
                mtime: 0,
                value: vec![],
            })
            .value
            .push(0xff);
    }

    fn update_payload(&self, key: u64) -> Vec<u8> {
        let mut b = key.to_le_bytes().to_vec();
        let (version, writer, mtime, value): (u64, u32, u32, &[u8]) = if key == ROOT {
            (self.root.version, self.root.writer, self.root.mtime, &[])
        } else {
            let i = &self.items[&key];
            (i.version, i.writer, i.mtime, &i.value)
        };
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&writer.to_le_bytes());
        b.extend_from_slice(&mtime.to_le_bytes());
        b.extend_from_slice(value);
        b
    }

    fn apply_update(&mut self, b: &[u8]) -> Option<()> {
        let key = le64(b, 0)?;
        let version = le64(b, 8)?;
        let writer = le32(b, 16)?;
        let mtime = le32(b, 20)?;
        if key == ROOT {
            self.root = Root {
                version,
                writer,
                mtime,
            };
        } else {
            self.items.insert(
                key,
                Item {
                    version,
                    writer,
                    mtime,
                    value: b[24..].to_vec(),
                },
            );
        }
        Some(())
    }
}

impl App for KvApp {
    fn deliver(&mut self, _ctx: &mut Ctx<'_>, m: Normal<'_>) -> Result<i32, Failure> {
        let key = le64(m.payload, 0).ok_or(Failure::Leave)?;
        self.applied.push((m.from, m.count, m.subtype));
        let bump = |root: &mut Root| {
            root.version += 1;
            root.writer = m.from.nodeid.0;
            root.mtime = m.time;
            root.version
        };
        match m.subtype {
            PUT if key != ROOT => {
                let version = bump(&mut self.root);
                let item = Item {
                    version,
                    writer: m.from.nodeid.0,
                    mtime: m.time,
                    value: m.payload[8..].to_vec(),
                };
                self.items.insert(key, item);
                Ok(version as i32)
            }
            DEL if self.items.contains_key(&key) => {
                bump(&mut self.root);
                self.items.remove(&key);
                Ok(0)
            }
            DEL => Ok(-2),
            _ => Err(Failure::Leave),
        }
    }

    fn get_state(&mut self, _ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Failure> {
        Ok(self.index())
    }

    fn process_state_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &mut SyncRound,
    ) -> Result<(), Failure> {
        let mut indexes = Vec::new();
        for n in round.members() {
            indexes
                .push(Index::decode(n.state.as_deref().unwrap_or_default()).ok_or(Failure::Leave)?);
        }
        let mut leader = 0;
        for (i, idx) in indexes.iter().enumerate() {
            let l = &indexes[leader];
            if idx.version > l.version || (idx.version == l.version && idx.mtime > l.mtime) {
                leader = i;
            }
        }
        let leader_state = round.members()[leader].state.clone().unwrap_or_default();
        for i in 0..round.members().len() {
            let same = round.members()[i].state.as_deref() == Some(leader_state.as_slice());
            if i == leader || same {
                round.set_synced(i, true);
            }
        }
        self.round = Some(RoundData {
            leader: leader_state,
            updates: Vec::new(),
        });
        if round.members()[leader].id == ctx.local() {
            let mut keys: Vec<u64> = indexes
                .iter()
                .flat_map(|m| indexes[leader].differing(m))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                ctx.send_update(&self.update_payload(k));
            }
            ctx.send_update_complete();
        }
        Ok(())
    }

    fn process_update(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _round: &SyncRound,
        _from: MemberId,
        payload: &[u8],
    ) -> Result<(), Failure> {
        self.updates_received += 1;
        let r = self.round.as_mut().ok_or(Failure::Leave)?;
        r.updates.push(payload.to_vec());
        Ok(())
    }

    fn commit(&mut self, _ctx: &mut Ctx<'_>, _round: &SyncRound) -> Result<(), Failure> {
        let r = self.round.take().ok_or(Failure::Leave)?;
        let leader = Index::decode(&r.leader).ok_or(Failure::Leave)?;
        let mut next = self.clone();
        next.items
            .retain(|k, _| leader.entries.iter().any(|e| e.0 == *k));
        for u in &r.updates {
            next.apply_update(u).ok_or(Failure::Leave)?;
        }
        if next.index() != r.leader {
            return Err(Failure::Leave); // "new index does not match master index"
        }
        self.root = next.root;
        self.items = next.items;
        self.commits += 1;
        Ok(())
    }

    fn cleanup(&mut self, _round: &SyncRound) {
        self.round = None;
    }

    fn has_checksum(&self) -> bool {
        self.verifies
    }

    fn checksum(&mut self) -> Result<[u8; 32], Failure> {
        let data = self.index();
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&fnv(&[&data], i as u64).to_le_bytes());
        }
        Ok(out)
    }

    fn synced(&mut self, _ctx: &mut Ctx<'_>) {
        self.synced_calls += 1;
    }
}
