//! The byte layout of cluster-log entries (`clog_entry_t`, status.md §1.5) and of the whole
//! cluster-log buffer that members exchange as their sync state (§1.6, §4.2).
//!
//! Pure: no clock, no I/O, no ring logic. The cluster-log ring (dedup, merge, JSON) builds on
//! [`ClogEntry`], [`decode_state`] and [`encode_state`]; the kvstore codec uses [`ClogEntry`]
//! for LOG messages.
//!
//! An entry is a 44-byte fixed part, the four NUL-terminated strings (node, ident, tag, msg)
//! and 4 unused bytes: C's `sizeof(clog_entry_t)` is 48 although its strings start at 44, and
//! every length C computes counts 48 ([`ENTRY_HEADER_LEN`]). All integers little-endian.

use std::cmp::Ordering;
use std::collections::HashSet;

/// What C counts for the fixed part of an entry (`sizeof(clog_entry_t)`).
pub const ENTRY_HEADER_LEN: usize = 48;
/// Where the strings start (`offsetof(clog_entry_t, data)`).
pub const STRINGS_OFFSET: usize = 44;
/// The largest entry C stores in a buffer (`CLOG_MAX_ENTRY_SIZE`).
pub const MAX_ENTRY_SIZE: usize = 4096;
/// The size of the buffer C sends as its state and merges into (`CLOG_DEFAULT_SIZE`).
pub const DEFAULT_BUFFER_SIZE: u32 = 8192 * 16;
/// The buffer header: `size` u32, `cpos` u32; the first entry sits right after it.
pub const BUFFER_HEADER_LEN: u32 = 8;

/// FNV-1a 64 as `logger.c` computes it (over a string *including* its NUL).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The digest C stores for a node name or ident: FNV-1a 64 over the string and its NUL.
pub fn digest_of(s: &[u8]) -> u64 {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s);
    v.push(0);
    fnv1a64(&v)
}

/// One cluster-log entry, every field as it is on the wire.
///
/// The strings are kept without their terminating NUL (the encoder adds it back); they are raw
/// bytes because C never checks them for UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClogEntry {
    /// Offset of the next-older entry inside a buffer; 0 in a LOG message.
    pub prev: u32,
    /// Own offset + aligned size inside a buffer; 0 in a LOG message.
    pub next: u32,
    /// Per-process counter of the daemon that created the entry.
    pub uid: u32,
    pub time: u32,
    /// FNV-1a 64 of `node` with its NUL.
    pub node_digest: u64,
    /// FNV-1a 64 of `ident` with its NUL.
    pub ident_digest: u64,
    pub pid: u32,
    pub priority: u8,
    pub node: Vec<u8>,
    pub ident: Vec<u8>,
    pub tag: Vec<u8>,
    /// The message, already escaped by its creator.
    pub msg: Vec<u8>,
    /// The 4 bytes after the strings: no data (uninitialised in C), carried so that a received
    /// entry is passed on byte for byte. Zero in entries made here.
    pub slack: [u8; 4],
}

/// Why bytes are not a cluster-log entry, or not a cluster-log buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClogError {
    #[error("short log message ({len} < 48)")]
    Short { len: usize },
    #[error("log message with wrong size ({len} != {expected})")]
    WrongSize { len: usize, expected: usize },
    #[error("unterminated string in log message")]
    Unterminated,
    #[error("empty string in log message")]
    EmptyString,
    #[error("string too long for its u8 length field")]
    StringTooLong,
    #[error("log state with wrong size ({len} bytes, size field {size})")]
    StateSize { len: usize, size: u32 },
    #[error("log state entry at offset {offset} lies outside the buffer")]
    StateOffset { offset: u32 },
    #[error("log state entry at offset {offset}: {inner}")]
    StateEntry { offset: u32, inner: EntryError },
    #[error("log state links loop back to offset {offset}")]
    StateLoop { offset: u32 },
}

/// [`ClogError`] without the state variants, for nesting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("truncated entry")]
    Truncated,
    #[error("unterminated string")]
    Unterminated,
    #[error("empty string")]
    EmptyString,
}

impl ClogEntry {
    /// A new entry as C's `clog_pack` lays it out (no escaping, no truncation: the caller
    /// passes strings that fit). The digests are computed from `node` and `ident`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        uid: u32,
        time: u32,
        pid: u32,
        priority: u8,
        node: &[u8],
        ident: &[u8],
        tag: &[u8],
        msg: &[u8],
    ) -> ClogEntry {
        ClogEntry {
            prev: 0,
            next: 0,
            uid,
            time,
            node_digest: digest_of(node),
            ident_digest: digest_of(ident),
            pid,
            priority,
            node: node.to_vec(),
            ident: ident.to_vec(),
            tag: tag.to_vec(),
            msg: msg.to_vec(),
            slack: [0; 4],
        }
    }

    /// Length on the wire: 48 + the four string lengths (NULs counted).
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_LEN + self.node.len() + self.ident.len() + self.tag.len() + self.msg.len() + 4
    }

    /// The room the entry takes in a buffer: its length rounded up to 8.
    pub fn aligned_len(&self) -> usize {
        (self.encoded_len() + 7) & !7
    }

    /// The entry's bytes. Errors if node, ident or tag is over 254 bytes (their length fields
    /// are one byte) or the message over `u32::MAX`.
    pub fn encode(&self) -> Result<Vec<u8>, ClogError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ClogError> {
        let len8 = |s: &[u8]| u8::try_from(s.len() + 1).map_err(|_| ClogError::StringTooLong);
        let (node_len, ident_len, tag_len) =
            (len8(&self.node)?, len8(&self.ident)?, len8(&self.tag)?);
        let msg_len = u32::try_from(self.msg.len() + 1).map_err(|_| ClogError::StringTooLong)?;
        out.extend_from_slice(&self.prev.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.node_digest.to_le_bytes());
        out.extend_from_slice(&self.ident_digest.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&[self.priority, node_len, ident_len, tag_len]);
        out.extend_from_slice(&msg_len.to_le_bytes());
        for s in [&self.node, &self.ident, &self.tag, &self.msg] {
            out.extend_from_slice(s);
            out.push(0);
        }
        out.extend_from_slice(&self.slack);
        Ok(())
    }

    /// One entry that is exactly `bytes` long, checked as C's receiver checks a LOG message
    /// (`status.c` `kvstore_parse_log_message`): length ≥ 48, length = 48 + the four string
    /// lengths, each string's last byte NUL. Empty strings are refused too (C reads the byte
    /// before the string then; no C node sends them).
    pub fn decode(bytes: &[u8]) -> Result<ClogEntry, ClogError> {
        if bytes.len() < ENTRY_HEADER_LEN {
            return Err(ClogError::Short { len: bytes.len() });
        }
        let expected = declared_len(bytes);
        if bytes.len() != expected {
            return Err(ClogError::WrongSize {
                len: bytes.len(),
                expected,
            });
        }
        parse(bytes).map_err(|e| match e {
            EntryError::Truncated => ClogError::WrongSize {
                len: bytes.len(),
                expected,
            },
            EntryError::Unterminated => ClogError::Unterminated,
            EntryError::EmptyString => ClogError::EmptyString,
        })
    }

    /// C's sort order of entries (`clog_entry_sort_fn`): time, then node digest, then uid,
    /// each as C's `int` difference. The digest difference is truncated to 32 bits, so this
    /// is not a total order on 64-bit digests, and two entries whose digests differ only above
    /// bit 31 compare equal (their uids are not looked at). It is what every C node uses,
    /// which is what keeps the sorted buffers byte-identical across nodes.
    pub fn c_cmp(&self, other: &ClogEntry) -> Ordering {
        if self.time != other.time {
            return (self.time.wrapping_sub(other.time) as i32).cmp(&0);
        }
        if self.node_digest != other.node_digest {
            return (self.node_digest.wrapping_sub(other.node_digest) as u32 as i32).cmp(&0);
        }
        (self.uid.wrapping_sub(other.uid) as i32).cmp(&0)
    }
}

/// The length the fixed part declares: 48 + the four string lengths.
fn declared_len(b: &[u8]) -> usize {
    ENTRY_HEADER_LEN
        + usize::from(b[37])
        + usize::from(b[38])
        + usize::from(b[39])
        + le32(b, 40) as usize
}

/// Parse an entry from the start of `b` (which may go on past it).
fn parse(b: &[u8]) -> Result<ClogEntry, EntryError> {
    if b.len() < ENTRY_HEADER_LEN || b.len() < declared_len(b) {
        return Err(EntryError::Truncated);
    }
    let lens = [
        usize::from(b[37]),
        usize::from(b[38]),
        usize::from(b[39]),
        le32(b, 40) as usize,
    ];
    let mut at = STRINGS_OFFSET;
    let mut strings: [Vec<u8>; 4] = Default::default();
    for (s, len) in strings.iter_mut().zip(lens) {
        if len == 0 {
            return Err(EntryError::EmptyString);
        }
        let field = &b[at..at + len];
        if field[len - 1] != 0 {
            return Err(EntryError::Unterminated);
        }
        *s = field[..len - 1].to_vec();
        at += len;
    }
    let mut slack = [0u8; 4];
    slack.copy_from_slice(&b[at..at + 4]);
    let [node, ident, tag, msg] = strings;
    Ok(ClogEntry {
        prev: le32(b, 0),
        next: le32(b, 4),
        uid: le32(b, 8),
        time: le32(b, 12),
        node_digest: le64(b, 16),
        ident_digest: le64(b, 24),
        pid: le32(b, 32),
        priority: b[36],
        node,
        ident,
        tag,
        msg,
        slack,
    })
}

/// A cluster-log buffer as a member sends it for sync (the STATE payload of `pve_kvstore_v1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClogState {
    /// The `size` field, equal to the blob's length.
    pub size: u32,
    /// Offset of the newest entry; 0 if the log is empty.
    pub cpos: u32,
    /// The entries reachable from `cpos`, newest first, each with its offset, in the order
    /// C's walk visits them (`clog_sort`, `clusterlog_merge`).
    pub entries: Vec<(u32, ClogEntry)>,
}

/// Decode a state blob. C accepts a peer's blob when it is longer than 8 bytes and its `size`
/// field equals its length (`status.c`, "received log with wrong size"), then walks it
/// without checks; here every entry is bounds-checked, validated like a LOG message and the
/// walk refuses links that loop, so a malformed blob is an error, never a crash or a hang.
///
/// The walk is C's: from `cpos`, follow `prev` while the offset is non-zero and outside
/// `(cpos, cpos + 4096]` (the room the newest entry may have overwritten), and stop after an
/// entry whose `prev` points forward but not past `cpos` (a wrap into overwritten space).
pub fn decode_state(blob: &[u8]) -> Result<ClogState, ClogError> {
    if blob.len() <= BUFFER_HEADER_LEN as usize {
        return Err(ClogError::StateSize {
            len: blob.len(),
            size: if blob.len() >= 4 { le32(blob, 0) } else { 0 },
        });
    }
    let size = le32(blob, 0);
    if size as usize != blob.len() {
        return Err(ClogError::StateSize {
            len: blob.len(),
            size,
        });
    }
    let cpos = le32(blob, 4);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    let mut pos = cpos;
    let max = u64::from(cpos) + MAX_ENTRY_SIZE as u64;
    while pos != 0 && (pos <= cpos || u64::from(pos) > max) {
        if pos < BUFFER_HEADER_LEN || pos as usize >= blob.len() {
            return Err(ClogError::StateOffset { offset: pos });
        }
        if !seen.insert(pos) {
            return Err(ClogError::StateLoop { offset: pos });
        }
        let e = parse(&blob[pos as usize..])
            .map_err(|inner| ClogError::StateEntry { offset: pos, inner })?;
        let prev = e.prev;
        entries.push((pos, e));
        if pos < prev && prev <= cpos {
            break;
        }
        pos = prev;
    }
    Ok(ClogState {
        size,
        cpos,
        entries,
    })
}

/// A buffer of `size` bytes holding `entries` (oldest first) laid out as C's `clog_copy` lays
/// them out into a fresh buffer: the first at offset 8, each next one where the previous one's
/// aligned end is, wrapping to 8 when it would not fit; `prev`/`next` recomputed; the bytes of
/// each entry after `next` copied (slack included); everything else zero. With entries sorted
/// by [`ClogEntry::c_cmp`] this is the state blob C sends (`clusterlog_get_state`).
///
/// Entries larger than [`MAX_ENTRY_SIZE`] (or without room for their fixed part) are skipped,
/// as C's allocator refuses them. `size` must be at least 40960 (C's minimum).
pub fn encode_state<'a>(entries: impl IntoIterator<Item = &'a ClogEntry>, size: u32) -> Vec<u8> {
    let mut buf = vec![0u8; size as usize];
    let mut cpos: u32 = 0;
    let mut cur_next: u32 = 0;
    for e in entries {
        let len = e.encoded_len();
        if len <= ENTRY_HEADER_LEN || len > MAX_ENTRY_SIZE {
            continue;
        }
        let Ok(bytes) = e.encode() else { continue };
        let real = ((len + 7) & !7) as u32;
        let mut newpos = if cpos == 0 {
            BUFFER_HEADER_LEN
        } else {
            cur_next
        };
        if u64::from(newpos) + u64::from(real) >= u64::from(size) {
            newpos = BUFFER_HEADER_LEN;
        }
        let at = newpos as usize;
        buf[at..at + 4].copy_from_slice(&cpos.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&(newpos + real).to_le_bytes());
        buf[at + 8..at + len].copy_from_slice(&bytes[8..]);
        cpos = newpos;
        cur_next = newpos + real;
    }
    buf[0..4].copy_from_slice(&size.to_le_bytes());
    buf[4..8].copy_from_slice(&cpos.to_le_bytes());
    buf
}

/// `state.entries` back into a buffer at their recorded offsets, with their recorded links:
/// the exact inverse of [`decode_state`] for a buffer whose other bytes are zero.
pub fn encode_state_verbatim(state: &ClogState) -> Result<Vec<u8>, ClogError> {
    let mut buf = vec![0u8; state.size as usize];
    if buf.len() < BUFFER_HEADER_LEN as usize {
        return Err(ClogError::StateSize {
            len: buf.len(),
            size: state.size,
        });
    }
    buf[0..4].copy_from_slice(&state.size.to_le_bytes());
    buf[4..8].copy_from_slice(&state.cpos.to_le_bytes());
    for (off, e) in &state.entries {
        let bytes = e.encode()?;
        let at = *off as usize;
        let dst = buf
            .get_mut(at..at + bytes.len())
            .ok_or(ClogError::StateOffset { offset: *off })?;
        dst.copy_from_slice(&bytes);
    }
    Ok(buf)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_entry(node: &str, time: u32, pid: u32) -> ClogEntry {
        ClogEntry::new(
            1,
            time,
            pid,
            6,
            node.as_bytes(),
            b"root",
            b"cluster",
            b"starting cluster log",
        )
    }

    #[test]
    fn fnv_matches_captured_digests() {
        // vectors/kvstore.jsonl seq 8 and 81.
        assert_eq!(digest_of(b"node1"), 0xe6f5e3c220c8fefc);
        assert_eq!(digest_of(b"root"), 0x4dd1e2461dbc53bf);
        assert_eq!(digest_of(b"root@pam"), 0x0bf69a5dbf95bb61);
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
    }

    #[test]
    fn entry_is_48_plus_strings_with_strings_at_44() {
        let e = start_entry("node1", 1795693601, 1116);
        let b = e.encode().unwrap();
        assert_eq!(b.len(), 48 + 6 + 5 + 8 + 21);
        assert_eq!(e.aligned_len(), 88);
        assert_eq!(&b[44..50], b"node1\0");
        assert_eq!(&b[b.len() - 4..], &[0, 0, 0, 0]);
        assert_eq!(ClogEntry::decode(&b).unwrap(), e);
    }

    #[test]
    fn decode_refuses_what_c_refuses() {
        let b = start_entry("n", 5, 7).encode().unwrap();
        assert_eq!(
            ClogEntry::decode(&b[..47]),
            Err(ClogError::Short { len: 47 })
        );
        // 44 + strings (the "packed" size some rewrites send).
        assert!(matches!(
            ClogEntry::decode(&b[..b.len() - 4]),
            Err(ClogError::WrongSize { .. })
        ));
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            ClogEntry::decode(&longer),
            Err(ClogError::WrongSize { .. })
        ));
        let mut unterminated = b.clone();
        unterminated[44 + 1] = b'x'; // node "n\0" -> "nx"
        assert_eq!(
            ClogEntry::decode(&unterminated),
            Err(ClogError::Unterminated)
        );
        let mut empty = vec![0u8; 48];
        empty[37] = 0;
        assert_eq!(ClogEntry::decode(&empty), Err(ClogError::EmptyString));
    }

    #[test]
    fn c_order_truncates_the_digest_difference() {
        let mut a = start_entry("a", 10, 1);
        let mut b = a.clone();
        // Digests that differ only above bit 31: C's int difference is 0 and it returns it,
        // so the two entries compare equal whatever their uids (C's sorted tree keeps one).
        a.node_digest = 0x1_0000_0000;
        b.node_digest = 0x2_0000_0000;
        a.uid = 2;
        b.uid = 1;
        assert_eq!(a.c_cmp(&b), Ordering::Equal);
        // 0x1_0000_0001 - 0x2_0000_0000 truncates to 1: greater, although the digest is less.
        a.node_digest = 0x1_0000_0001;
        assert_eq!(a.c_cmp(&b), Ordering::Greater);
        b.time = 11;
        assert_eq!(a.c_cmp(&b), Ordering::Less);
    }

    #[test]
    fn state_round_trip_and_walk() {
        let es = [
            start_entry("node1", 100, 1),
            start_entry("node2", 101, 2),
            start_entry("node3", 102, 3),
        ];
        let blob = encode_state(&es, DEFAULT_BUFFER_SIZE);
        let st = decode_state(&blob).unwrap();
        assert_eq!(st.size, DEFAULT_BUFFER_SIZE);
        assert_eq!(st.cpos, 8 + 88 + 88);
        let offs: Vec<u32> = st.entries.iter().map(|(o, _)| *o).collect();
        assert_eq!(offs, [184, 96, 8]);
        assert_eq!(st.entries[2].1.prev, 0);
        assert_eq!(st.entries[2].1.next, 96);
        assert_eq!(encode_state_verbatim(&st).unwrap(), blob);
        // An empty log: cpos 0, no entries.
        let empty = encode_state(std::iter::empty(), DEFAULT_BUFFER_SIZE);
        let st = decode_state(&empty).unwrap();
        assert_eq!((st.cpos, st.entries.len()), (0, 0));
    }

    #[test]
    fn state_wraps_like_c() {
        // A small buffer: 40960 bytes hold 465 entries of 88 bytes; the 466th wraps to 8.
        let es: Vec<ClogEntry> = (0..470).map(|i| start_entry("node1", i, 1)).collect();
        let blob = encode_state(&es, 40960);
        let st = decode_state(&blob).unwrap();
        // Newest is #469 at 8 + 4*88; the walk goes back to the wrap point.
        assert_eq!(st.cpos, 8 + 4 * 88);
        assert_eq!(st.entries[0].1.time, 469);
        assert!(st.entries.len() < 470);
        let times: Vec<u32> = st.entries.iter().map(|(_, e)| e.time).collect();
        assert!(times.windows(2).all(|w| w[0] == w[1] + 1));
    }

    #[test]
    fn malformed_states_are_errors() {
        assert!(decode_state(&[]).is_err());
        assert!(decode_state(&[8, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let mut blob = encode_state(&[start_entry("a", 1, 1)], 40960);
        blob[0] = 1; // size field != length
        assert!(matches!(
            decode_state(&blob),
            Err(ClogError::StateSize { .. })
        ));
        // cpos pointing past the end.
        let mut blob = encode_state(&[start_entry("a", 1, 1)], 40960);
        blob[4..8].copy_from_slice(&40959u32.to_le_bytes());
        assert!(decode_state(&blob).is_err());
        // Two entries linking to each other in a way C's walk would follow forever.
        let e = start_entry("a", 1, 1);
        let mut blob = vec![0u8; 40960];
        blob[0..4].copy_from_slice(&40960u32.to_le_bytes());
        blob[4..8].copy_from_slice(&20000u32.to_le_bytes());
        let mut put = |at: usize, prev: u32| {
            let mut b = e.encode().unwrap();
            b[0..4].copy_from_slice(&prev.to_le_bytes());
            blob[at..at + b.len()].copy_from_slice(&b);
        };
        put(20000, 8);
        put(8, 30000);
        put(30000, 20000);
        assert_eq!(
            decode_state(&blob),
            Err(ClogError::StateLoop { offset: 20000 })
        );
    }
}
