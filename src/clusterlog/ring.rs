//! The cluster-log ring buffer in C's byte layout (status.md §4.2), its duplicate filter (§4.3),
//! the deterministic merge of a sync round (§4.4) and the sorted state blob (§1.6).
//!
//! The buffer is the state blob itself: `size` u32 @0, `cpos` u32 @4 (offset of the newest
//! entry, 0 when empty), entries from offset 8, 8-byte aligned, each with `prev` (offset of the
//! next-older entry) and `next` (own offset + aligned size). Every read is bounds-checked: a
//! peer's malformed blob ends a walk, it never panics or loops.

use std::collections::{HashMap, HashSet};

use super::entry::{Entry, HEADER, MAX_ENTRY};

/// `CLOG_DEFAULT_SIZE`.
pub const DEFAULT_SIZE: usize = 131_072;
/// The header before the first entry.
const BASE: usize = 8;

/// Why a peer's state blob is not used (C: "received log with wrong size").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadState {
    pub len: usize,
    pub size_field: Option<u32>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Ring {
    buf: Vec<u8>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("size", &self.buf.len())
            .field("cpos", &self.cpos())
            .field("entries", &self.walk().map(|(_, e)| e).collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

fn rd32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

impl Ring {
    /// An empty log of the default size.
    pub fn new() -> Ring {
        let mut buf = vec![0; DEFAULT_SIZE];
        buf[..4].copy_from_slice(&(DEFAULT_SIZE as u32).to_le_bytes());
        Ring { buf }
    }

    /// A peer's state blob, accepted as C accepts it: longer than 8 bytes and its `size` field
    /// equal to its length (`status.c:1889-1895`).
    pub fn from_state(blob: &[u8]) -> Result<Ring, BadState> {
        let size_field = rd32(blob, 0);
        if blob.len() <= BASE || size_field.map(|s| s as usize) != Some(blob.len()) {
            return Err(BadState {
                len: blob.len(),
                size_field,
            });
        }
        Ok(Ring { buf: blob.to_vec() })
    }

    /// The buffer as it would be sent (unsorted; see [`Ring::sorted`]).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn cpos(&self) -> u32 {
        rd32(&self.buf, 4).unwrap_or(0)
    }

    fn set_u32(&mut self, o: usize, v: u32) {
        self.buf[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// C `clog_alloc_entry` + `clog_copy`: append after the newest entry, or wrap to offset 8
    /// when `newpos + aligned >= size`. Older entries that are overwritten are not unlinked;
    /// walks stop before them.
    pub fn push(&mut self, e: &Entry) {
        let size = self.buf.len();
        let real = e.aligned_size();
        if e.size() <= HEADER || e.size() > MAX_ENTRY || BASE + real >= size {
            return;
        }
        let cpos = self.cpos() as usize;
        let mut newpos = if cpos == 0 {
            BASE
        } else {
            rd32(&self.buf, cpos + 4).map_or(BASE, |n| n as usize)
        };
        if newpos < BASE || newpos + real >= size {
            newpos = BASE;
        }
        let bytes = e.encode_with(cpos as u32, (newpos + real) as u32);
        self.buf[newpos..newpos + bytes.len()].copy_from_slice(&bytes);
        self.set_u32(4, newpos as u32);
    }

    /// Entries newest first, as C walks them (`clog_dump`, `clog_sort`): from `cpos` along
    /// `prev`, while the offset is not in `(cpos, cpos + 4096]` (the zone the newest entry may
    /// have overwritten), ending after an entry whose `prev` wraps into overwritten space.
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            ring: self,
            pos: self.cpos(),
            left: self.buf.len() / HEADER + 1,
        }
    }

    /// The entry at `pos` if it lies inside the buffer and decodes.
    fn entry_at(&self, pos: u32) -> Option<(Entry, u32, u32)> {
        let p = pos as usize;
        let prev = rd32(&self.buf, p)?;
        let next = rd32(&self.buf, p + 4)?;
        let e = Entry::decode_prefix(self.buf.get(p..)?).ok()?;
        Some((e, prev, next))
    }

    /// C `clog_sort`: the same entries in ascending (time, node digest, uid) order, contiguous
    /// from offset 8, in a fresh buffer of the same size. This is the state blob a node sends.
    pub fn sorted(&self) -> Ring {
        if self.cpos() == 0 {
            return self.clone();
        }
        // On equal keys C's tree keeps the value inserted last, i.e. the older entry.
        let mut entries: Vec<Entry> = self.walk().map(|(_, e)| e).collect();
        entries.reverse();
        sort_c(&mut entries);
        entries.dedup_by(|later, earlier| key(later) == key(earlier));
        let mut out = Ring::new_sized(self.buf.len());
        for e in &entries {
            out.push(e);
        }
        out
    }

    fn new_sized(size: usize) -> Ring {
        let mut buf = vec![0; size];
        buf[..4].copy_from_slice(&(size as u32).to_le_bytes());
        Ring { buf }
    }
}

pub struct Walk<'a> {
    ring: &'a Ring,
    pos: u32,
    /// A bound on the steps, so that a malformed blob whose links form a loop ends.
    left: usize,
}

impl Iterator for Walk<'_> {
    type Item = (u32, Entry);

    fn next(&mut self) -> Option<(u32, Entry)> {
        let head = u64::from(self.ring.cpos());
        let pos = self.pos;
        let p = u64::from(pos);
        if pos == 0 || self.left == 0 || !(p <= head || p > head + MAX_ENTRY as u64) {
            return None;
        }
        self.left -= 1;
        let Some((e, prev, _)) = self.ring.entry_at(pos) else {
            self.pos = 0;
            return None;
        };
        // "wrap-around has to land after initial position"
        self.pos = if pos < prev && u64::from(prev) <= head {
            0
        } else {
            prev
        };
        Some((pos, e))
    }
}

/// What the duplicate filter and the merge consider the same entry.
fn key(e: &Entry) -> (u32, u64, u32) {
    (e.time, e.node_digest, e.uid)
}

/// C's order of entries (`clog_entry_sort_fn`): time, then node digest, then uid. C compares
/// the digests by their difference truncated to a 32-bit int, which is not a total order when
/// three or more nodes log in the same second; lwcfs orders each second's digests along the
/// 32-bit circle starting after its widest gap, which is C's order whenever C's comparison is
/// consistent for the digests present (always for one or two nodes per second).
pub fn sort_c(entries: &mut [Entry]) {
    entries.sort_by_key(|e| e.time);
    let mut start = 0;
    while start < entries.len() {
        let t = entries[start].time;
        let end = start + entries[start..].iter().take_while(|e| e.time == t).count();
        let group = &mut entries[start..end];
        let pivot = circle_pivot(group.iter().map(|e| e.node_digest as u32));
        group.sort_by(|a, b| {
            let ka = (a.node_digest as u32).wrapping_sub(pivot);
            let kb = (b.node_digest as u32).wrapping_sub(pivot);
            ka.cmp(&kb)
                .then(a.node_digest.cmp(&b.node_digest))
                .then(a.uid.cmp(&b.uid))
        });
        start = end;
    }
}

/// The first value after the widest gap between consecutive values on the 2^32 circle.
fn circle_pivot(values: impl Iterator<Item = u32>) -> u32 {
    let mut v: Vec<u32> = values.collect();
    v.sort_unstable();
    v.dedup();
    let Some(&first) = v.first() else { return 0 };
    let mut best = (
        u64::from(first) + (1 << 32) - u64::from(v[v.len() - 1]),
        first,
    );
    for w in v.windows(2) {
        let gap = u64::from(w[1] - w[0]);
        if gap > best.0 {
            best = (gap, w[1]);
        }
    }
    best.1
}

/// The per-node high-water mark of accepted entries (`dedup_lookup`, status.md §4.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dedup {
    newest: HashMap<u64, (u32, u32)>,
}

impl Dedup {
    /// Accept (and record) an entry newer in (time, uid) than every entry accepted before
    /// from its node; refuse anything else as a duplicate.
    pub fn accept(&mut self, e: &Entry) -> bool {
        match self.newest.get_mut(&e.node_digest) {
            None => {
                self.newest.insert(e.node_digest, (e.time, e.uid));
                true
            }
            Some(rec) if (e.time, e.uid) > *rec => {
                *rec = (e.time, e.uid);
                true
            }
            Some(_) => false,
        }
    }
}

/// C `clusterlog_merge`: the logs of a sync round (in member order; `None` for a member whose
/// state was refused) merged into one fresh buffer of the default size, with its new duplicate
/// filter. Entries are taken newest first across all logs (ties: the lowest slot; time 0 never),
/// each distinct (time, node digest, uid) once, until about 127 KB (`131072 - 8 - 4096`) are
/// taken; they are stored in [`sort_c`] order.
pub fn merge(logs: &[Option<&Ring>]) -> (Ring, Dedup) {
    let mut cursors: Vec<u32> = logs.iter().map(|l| l.map_or(0, Ring::cpos)).collect();
    let mut steps: usize = logs
        .iter()
        .map(|l| l.map_or(0, |r| r.buf.len() / HEADER + 1))
        .sum();
    let limit = (DEFAULT_SIZE - BASE - MAX_ENTRY) as u64;
    let mut seen = HashSet::new();
    let mut picked = Vec::new();
    let mut dedup = Dedup::default();
    let mut total: u64 = 0;
    while steps > 0 {
        steps -= 1;
        let mut best: Option<(usize, Entry, u32, u32)> = None;
        for (i, log) in logs.iter().enumerate() {
            let Some(log) = log else { continue };
            if cursors[i] == 0 {
                continue;
            }
            let Some((e, prev, next)) = log.entry_at(cursors[i]) else {
                cursors[i] = 0;
                continue;
            };
            if e.time > best.as_ref().map_or(0, |b| b.1.time) {
                best = Some((i, e, prev, next));
            }
        }
        let Some((i, e, prev, next)) = best else {
            break;
        };
        let pos = cursors[i];
        if seen.insert(key(&e)) {
            dedup.accept(&e);
            total += u64::from(next.wrapping_sub(pos));
            picked.push(e);
            if total >= limit {
                break;
            }
        }
        let head = logs[i].map_or(0, |l| u64::from(l.cpos()));
        cursors[i] = if prev == 0 || (pos < prev && u64::from(prev) <= head) {
            0
        } else if u64::from(prev) <= head || u64::from(prev) > head + MAX_ENTRY as u64 {
            prev
        } else {
            0
        };
    }
    sort_c(&mut picked);
    let mut out = Ring::new();
    for e in &picked {
        out.push(e);
    }
    (out, dedup)
}

/// The duplicate filter rebuilt from what a log holds (as after a merge).
pub fn dedup_of(ring: &Ring) -> Dedup {
    let mut d = Dedup::default();
    for (_, e) in ring.walk() {
        d.accept(&e);
    }
    d
}
