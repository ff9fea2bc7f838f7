//! One cluster-log entry (`clog_entry_t`, status.md §1.5) and how C makes one (§4.1).
//!
//! Byte layout, little-endian: `prev` u32 @0, `next` u32 @4, `uid` u32 @8, `time` u32 @12,
//! `node_digest` u64 @16, `ident_digest` u64 @24, `pid` u32 @32, `priority` u8 @36, `node_len`,
//! `ident_len`, `tag_len` u8 @37..40, `msg_len` u32 @40, then the four NUL-terminated strings
//! from @44, then 4 slack bytes: an entry is 48 + the four lengths bytes long.

use std::fmt;

/// `sizeof(clog_entry_t)`: the fixed part every length computation in C counts.
pub const HEADER: usize = 48;
/// Where the strings start.
pub const DATA: usize = 44;
/// `CLOG_MAX_ENTRY_SIZE`.
pub const MAX_ENTRY: usize = 4096;

/// FNV-1a, 64 bit, as C's `fnv_64a_buf`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The digest C compares a user filter with: the string and its NUL.
pub fn digest_of_str(s: &[u8]) -> u64 {
    let mut v = s.to_vec();
    v.push(0);
    fnv1a64(&v)
}

/// Why bytes are not an entry (C's receive checks, `status.c:1565-1609`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    Short(usize),
    WrongSize { len: usize, want: usize },
    Unterminated(&'static str),
}

impl std::error::Error for EntryError {}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Short(n) => write!(f, "log entry of {n} bytes is shorter than 48"),
            EntryError::WrongSize { len, want } => {
                write!(f, "log entry of {len} bytes, its lengths say {want}")
            }
            EntryError::Unterminated(s) => write!(f, "log entry {s} is not NUL-terminated"),
        }
    }
}

/// A cluster-log entry. The strings keep their declared lengths, NUL included, exactly as they
/// travel (an entry from a peer is kept verbatim: digests, uid, time and pid of its originator).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    pub time: u32,
    pub node_digest: u64,
    pub ident_digest: u64,
    pub pid: u32,
    pub priority: u8,
    /// `node_len` bytes, the last one NUL.
    pub node: Vec<u8>,
    pub ident: Vec<u8>,
    pub tag: Vec<u8>,
    /// `msg_len` bytes, the last one NUL (an entry built here always ends in its NUL).
    pub msg: Vec<u8>,
    /// The 4 bytes after the strings: no data, carried over from peers as received.
    pub slack: [u8; 4],
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(crate::jsontext::c_str(b)).into_owned();
        f.debug_struct("Entry")
            .field("uid", &self.uid)
            .field("time", &self.time)
            .field("node_digest", &format_args!("{:016x}", self.node_digest))
            .field("pid", &self.pid)
            .field("priority", &self.priority)
            .field("node", &s(&self.node))
            .field("ident", &s(&self.ident))
            .field("tag", &s(&self.tag))
            .field("msg", &s(&self.msg))
            .finish()
    }
}

/// What a new local entry is made of (C `clog_pack`'s arguments). Strings are C strings: their
/// bytes up to the first NUL.
#[derive(Clone, Copy, Debug)]
pub struct NewEntry<'a> {
    pub node: &'a [u8],
    pub ident: &'a [u8],
    pub tag: &'a [u8],
    pub pid: u32,
    pub time: u32,
    pub priority: u8,
    pub msg: &'a [u8],
}

/// A string field as `clog_pack` stores it: at most 254 bytes and a NUL; the digest is taken
/// over the same number of bytes of the *original* string (so for 255 bytes or more it covers
/// 255 bytes of text, no NUL, as in C).
fn field(s: &[u8]) -> (Vec<u8>, u64) {
    let s = crate::jsontext::c_str(s);
    let len = (s.len() + 1).min(255);
    let mut stored = s[..len - 1].to_vec();
    stored.push(0);
    let digest = if s.len() >= len {
        fnv1a64(&s[..len])
    } else {
        fnv1a64(&stored)
    };
    (stored, digest)
}

impl Entry {
    /// C `clog_pack`: `None` for a priority of 8 or more (nothing is logged). `uid` is the
    /// caller's next counter value. The message is escaped (§4.1) into what room the 4096-byte
    /// entry leaves, and always ends in its NUL inside `msg_len` (C can cut the NUL off,
    /// status.md §7.3 #4).
    pub fn pack(n: NewEntry<'_>, uid: u32) -> Option<Entry> {
        if n.priority >= 8 {
            return None;
        }
        let (node, node_digest) = field(n.node);
        let (ident, ident_digest) = field(n.ident);
        let (tag, _) = field(n.tag);
        let strings = node.len() + ident.len() + tag.len();
        // C's buffer for the message (`utf8_to_ascii`'s bufsize) and the room that keeps the
        // whole entry, NUL included, within 4096 bytes.
        let bufsize = MAX_ENTRY - DATA - strings;
        let room = MAX_ENTRY - HEADER - strings - 1;
        let mut msg = escape_message(crate::jsontext::c_str(n.msg), bufsize, room);
        msg.push(0);
        Some(Entry {
            uid,
            time: n.time,
            node_digest,
            ident_digest,
            pid: n.pid,
            priority: n.priority,
            node,
            ident,
            tag,
            msg,
            slack: [0; 4],
        })
    }

    /// Total length: 48 + the four string lengths.
    pub fn size(&self) -> usize {
        HEADER + self.node.len() + self.ident.len() + self.tag.len() + self.msg.len()
    }

    /// Size in a ring buffer, 8-byte aligned.
    pub fn aligned_size(&self) -> usize {
        (self.size() + 7) & !7
    }

    /// The entry's bytes with `prev` and `next` as given (0 on the wire).
    pub fn encode_with(&self, prev: u32, next: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.size());
        b.extend_from_slice(&prev.to_le_bytes());
        b.extend_from_slice(&next.to_le_bytes());
        b.extend_from_slice(&self.uid.to_le_bytes());
        b.extend_from_slice(&self.time.to_le_bytes());
        b.extend_from_slice(&self.node_digest.to_le_bytes());
        b.extend_from_slice(&self.ident_digest.to_le_bytes());
        b.extend_from_slice(&self.pid.to_le_bytes());
        b.push(self.priority);
        // Lengths fit: `pack` caps them at 255, and `decode` read them from one byte.
        b.push(self.node.len() as u8);
        b.push(self.ident.len() as u8);
        b.push(self.tag.len() as u8);
        b.extend_from_slice(&(self.msg.len() as u32).to_le_bytes());
        for s in [&self.node, &self.ident, &self.tag, &self.msg] {
            b.extend_from_slice(s);
        }
        b.extend_from_slice(&self.slack);
        b
    }

    /// The entry as a LOG message payload carries it (`prev` = `next` = 0).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(0, 0)
    }

    /// Decode an entry whose length is known exactly (a LOG payload), with C's receive checks:
    /// at least 48 bytes, exactly 48 + the four lengths, every string ending in NUL.
    pub fn decode(b: &[u8]) -> Result<Entry, EntryError> {
        let e = Self::decode_prefix(b)?;
        if e.size() != b.len() {
            return Err(EntryError::WrongSize {
                len: b.len(),
                want: e.size(),
            });
        }
        Ok(e)
    }

    /// Decode the entry at the start of `b` (which may continue with other bytes, as in a ring
    /// buffer).
    pub fn decode_prefix(b: &[u8]) -> Result<Entry, EntryError> {
        if b.len() < HEADER {
            return Err(EntryError::Short(b.len()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        let lens = [
            usize::from(b[37]),
            usize::from(b[38]),
            usize::from(b[39]),
            u32_at(40) as usize,
        ];
        let want = lens.iter().fold(HEADER, |a, l| a.saturating_add(*l));
        if b.len() < want {
            return Err(EntryError::WrongSize { len: b.len(), want });
        }
        let mut at = DATA;
        let mut take = |len: usize, what: &'static str| {
            let s = &b[at..at + len];
            at += len;
            if s.last() != Some(&0) {
                return Err(EntryError::Unterminated(what));
            }
            Ok(s.to_vec())
        };
        let node = take(lens[0], "node")?;
        let ident = take(lens[1], "ident")?;
        let tag = take(lens[2], "tag")?;
        let msg = take(lens[3], "msg")?;
        Ok(Entry {
            uid: u32_at(8),
            time: u32_at(12),
            node_digest: u64_at(16),
            ident_digest: u64_at(24),
            pid: u32_at(32),
            priority: b[36],
            node,
            ident,
            tag,
            msg,
            slack: [b[at], b[at + 1], b[at + 2], b[at + 3]],
        })
    }
}

/// C's `utf8_to_ascii(…, quotequote = TRUE)` (status.md §4.1): `"` → `\"`, control characters
/// and DEL → `#NNN`, other ASCII unchanged (backslash too), U+0080–U+FFFF → `\uXXXX`, beyond
/// that dropped; input that is not valid UTF-8 is escaped byte by byte (`#0NN`, `?`).
///
/// Output stops as C's does, once fewer than 7 bytes of `bufsize` remain, and additionally
/// before a piece that would end past `room` bytes (pieces are never split, so a cut never
/// leaves half an escape).
pub fn escape_message(msg: &[u8], bufsize: usize, room: usize) -> Vec<u8> {
    let stop = bufsize.saturating_sub(7);
    let mut out = Vec::with_capacity(msg.len().min(room));
    let push = |out: &mut Vec<u8>, piece: &[u8]| {
        if out.len() >= stop || out.len() + piece.len() > room {
            return false;
        }
        out.extend_from_slice(piece);
        true
    };
    match std::str::from_utf8(msg) {
        Ok(text) => {
            for c in text.chars() {
                let u = c as u32;
                let piece = match u {
                    34 => b"\\\"".to_vec(),
                    0..=31 | 127 => format!("#{u:03}").into_bytes(),
                    32..=126 => vec![u as u8],
                    128..=0xffff => format!("\\u{u:04x}").into_bytes(),
                    _ => {
                        // Dropped, but C still counts the step against its stop rule.
                        if out.len() >= stop {
                            break;
                        }
                        continue;
                    }
                };
                if !push(&mut out, &piece) {
                    break;
                }
            }
        }
        Err(_) => {
            for &b in msg {
                let piece = match b {
                    34 => b"\\\"".to_vec(),
                    0..=31 => format!("#0{b:02}").into_bytes(),
                    32..=126 => vec![b],
                    _ => b"?".to_vec(),
                };
                if !push(&mut out, &piece) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        String::from_utf8(escape_message(s, 4000, 4000)).unwrap()
    }

    #[test]
    fn fnv_matches_the_captured_digests() {
        // vectors/kvstore.jsonl seq 81: node "node1", ident "root@pam".
        assert_eq!(digest_of_str(b"node1"), 0xe6f5e3c220c8fefc);
        assert_eq!(digest_of_str(b"root@pam"), 0x0bf69a5dbf95bb61);
        assert_eq!(digest_of_str(b"root"), 0x4dd1e2461dbc53bf);
    }

    #[test]
    fn escaping_table_of_the_spec() {
        assert_eq!(esc(b"hello \"cluster\" log"), "hello \\\"cluster\\\" log");
        assert_eq!(esc(b"a\nb\tc\x7f"), "a#010b#009c#127");
        assert_eq!(esc("ä".as_bytes()), "\\u00e4");
        assert_eq!(esc("x😀y".as_bytes()), "xy");
        assert_eq!(esc(b"back\\slash"), "back\\slash");
        assert_eq!(esc(b"bad\xff\x01\"\x7f"), "bad?#001\\\"?");
    }

    #[test]
    fn pack_builds_cs_entry() {
        let e = Entry::pack(
            NewEntry {
                node: b"node1",
                ident: b"root@pam",
                tag: b"capture",
                pid: 3437,
                time: 1795693660,
                priority: 6,
                msg: b"hello \"cluster\" log",
            },
            2,
        )
        .unwrap();
        // The LOG payload of vectors/kvstore.jsonl seq 81 (after its 24-byte header).
        let want = "000000000000000002000000\
                    5c1c086bfcfec820c2e3f5e661bb95bf5d9af60b6d0d000006060908160000006e6f64\
                    653100726f6f744070616d00636170747572650068656c6c6f205c22636c7573746572\
                    5c22206c6f670000000000";
        let hex: String = e.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        assert!(Entry::pack(
            NewEntry {
                priority: 8,
                ..sample()
            },
            1
        )
        .is_none());
    }

    fn sample() -> NewEntry<'static> {
        NewEntry {
            node: b"n",
            ident: b"i",
            tag: b"t",
            pid: 1,
            time: 1,
            priority: 6,
            msg: b"m",
        }
    }

    #[test]
    fn long_fields_are_cut_to_254_bytes_and_the_entry_to_4096() {
        let long = vec![b'a'; 300];
        let e = Entry::pack(
            NewEntry {
                ident: &long,
                msg: &[b'"'; 5000],
                ..sample()
            },
            1,
        )
        .unwrap();
        assert_eq!(e.ident.len(), 255);
        assert_eq!(e.ident_digest, fnv1a64(&long[..255]));
        assert!(e.size() <= MAX_ENTRY, "{}", e.size());
        assert_eq!(e.msg.last(), Some(&0));
        // Never half an escape.
        assert_eq!(e.msg.len() % 2, 1);
        let d = Entry::decode(&e.encode()).unwrap();
        assert_eq!(d, e);
    }

    #[test]
    fn decode_applies_cs_checks() {
        let e = Entry::pack(sample(), 1).unwrap().encode();
        assert_eq!(Entry::decode(&e[..40]), Err(EntryError::Short(40)));
        let mut longer = e.clone();
        longer.push(0);
        assert!(matches!(
            Entry::decode(&longer),
            Err(EntryError::WrongSize { .. })
        ));
        let mut bad = e.clone();
        bad[DATA + 1] = b'x';
        assert_eq!(Entry::decode(&bad), Err(EntryError::Unterminated("node")));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Entry::decode(&b);
            let _ = Entry::decode_prefix(&b);
        }
    }
}
