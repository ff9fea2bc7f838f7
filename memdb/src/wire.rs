//! The DCDB payloads, byte for byte as C `dcdb.c` lays them out (cluster.md §4.2, §4.6).
//!
//! Two layers:
//! - [`DcdbMsg`] and [`UpdateEntry`] are the bytes exactly: decoding then encoding gives back
//!   the input, whatever a sender put in the fields. Decoding makes C's receiver checks, so a
//!   payload C would call malformed is an error here too.
//! - [`Request`] (an [`Op`] or an unlock) and [`Update`] (a stored row) are what the
//!   payloads mean to memdb; [`DcdbMsg::from_op`] builds the bytes C's FUSE layer would send.
//!
//! These are the payloads behind the DFSM header (the `lwcfs-cpg` crate's `msg` module):
//! NORMAL messages carry a [`DcdbMsg`] with the subtype in the header, UPDATE messages carry an
//! [`UpdateEntry`], STATE messages carry a [`crate::index::MemdbIndex`].

use crate::apply::Op;
use crate::load::RootRecord;
use crate::path::TreePath;
use crate::tree::{Body, Data, Memdb, NodeRecord};
use crate::types::{Inode, Kind, Mtime, NodeId};

/// Length of the fixed part of a fuse payload: `size, offset, pathlen, tolen, flags`.
pub const FUSE_HEADER_LEN: usize = 20;
/// Length of the checksum in an unlock payload.
pub const CSUM_LEN: usize = 32;
/// Length of the fixed part of an UPDATE payload, up to and including the type byte.
pub const UPDATE_HEADER_LEN: usize = 41;

/// The DCDB message subtypes (`dcdb_message_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DcdbType {
    Write,
    Mkdir,
    Delete,
    Rename,
    Create,
    Mtime,
    UnlockRequest,
    Unlock,
}

impl DcdbType {
    pub const ALL: [DcdbType; 8] = [
        DcdbType::Write,
        DcdbType::Mkdir,
        DcdbType::Delete,
        DcdbType::Rename,
        DcdbType::Create,
        DcdbType::Mtime,
        DcdbType::UnlockRequest,
        DcdbType::Unlock,
    ];

    pub fn to_wire(self) -> u16 {
        match self {
            DcdbType::Write => 1,
            DcdbType::Mkdir => 2,
            DcdbType::Delete => 3,
            DcdbType::Rename => 4,
            DcdbType::Create => 5,
            DcdbType::Mtime => 6,
            DcdbType::UnlockRequest => 7,
            DcdbType::Unlock => 8,
        }
    }

    pub fn from_wire(v: u16) -> Option<DcdbType> {
        let i = usize::from(v).checked_sub(1)?;
        DcdbType::ALL.get(i).copied()
    }
}

/// Why a payload is refused. Decoding errors are the cases C calls malformed (the receiver
/// leaves the group); the others arise when turning bytes into memdb terms or back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unknown dcdb message type {0}")]
    UnknownType(u16),
    #[error("short message ({len} < {need} bytes)")]
    Short { need: usize, len: usize },
    #[error("malformed message: {len} bytes after the fixed part, {expected} announced")]
    LengthMismatch { expected: u64, len: usize },
    #[error("malformed message - '{0}' not terminated")]
    NotTerminated(&'static str),
    #[error("malformed message (unknown inode type {0})")]
    BadType(u8),
    #[error("message carries no path")]
    NoPath,
    #[error("rename carries no target")]
    NoTarget,
    #[error("path is not UTF-8: {0:?}")]
    NotUtf8(Vec<u8>),
    #[error("directory entry {0:?} carries {1} bytes of data")]
    DirWithData(Inode, usize),
    #[error("offset {0} does not fit the 32-bit wire field")]
    OffsetTooLarge(u64),
    #[error("{0} bytes of data do not fit the 32-bit wire field")]
    DataTooLarge(usize),
}

/// The fuse payload of WRITE, MKDIR, DELETE, RENAME, CREATE and MTIME
/// (`dcdb_send_fuse_message`).
///
/// `path` and `to` hold the bytes before the terminating NUL (`None` when the length field is
/// 0). C reads them as C strings, so only the bytes before a first NUL count; see
/// [`c_str`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FusePayload {
    /// WRITE: the write offset, or the new length with `flags` 1 (truncate).
    /// MTIME: the new mtime. 0 otherwise.
    pub offset: u32,
    /// WRITE: 1 = truncate. 0 otherwise.
    pub flags: u32,
    pub path: Option<Vec<u8>>,
    /// RENAME: the target.
    pub to: Option<Vec<u8>>,
    /// WRITE: the bytes to write (the wire's `size` is their length).
    pub data: Vec<u8>,
}

/// The payload of UNLOCK_REQUEST and UNLOCK (`dcdb_send_unlock`): the lock directory's entry
/// checksum, then its NUL-terminated path. No fuse sub-header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockPayload {
    pub csum: [u8; 32],
    /// The bytes before the terminating NUL.
    pub path: Vec<u8>,
}

/// A DCDB NORMAL message payload, by subtype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DcdbMsg {
    Write(FusePayload),
    Mkdir(FusePayload),
    Delete(FusePayload),
    Rename(FusePayload),
    Create(FusePayload),
    Mtime(FusePayload),
    UnlockRequest(UnlockPayload),
    Unlock(UnlockPayload),
}

/// What a DCDB message asks of memdb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A tree change. The writer is the sender's node id and the mtime the DFSM header's time
    /// (except for `Op::Mtime`, whose mtime travels in the payload).
    Op(Op),
    /// Ask the lowest-nodeid member to remove an expired lock directory.
    UnlockRequest { path: TreePath, csum: [u8; 32] },
    /// Remove the lock directory if its checksum still matches.
    Unlock { path: TreePath, csum: [u8; 32] },
}

/// The bytes before the first NUL: what C sees of a string field.
pub fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

fn path_of(b: &[u8]) -> Result<TreePath, WireError> {
    let s = c_str(b);
    std::str::from_utf8(s)
        .map(TreePath::parse)
        .map_err(|_| WireError::NotUtf8(s.to_vec()))
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A NUL-terminated field of `len` bytes (0 = absent): strip the NUL, or refuse.
fn terminated(field: &[u8], what: &'static str) -> Result<Option<Vec<u8>>, WireError> {
    match field.split_last() {
        None => Ok(None),
        Some((0, s)) => Ok(Some(s.to_vec())),
        Some(_) => Err(WireError::NotTerminated(what)),
    }
}

fn wire_len(s: &Option<Vec<u8>>) -> u32 {
    s.as_ref().map_or(0, |s| s.len() as u32 + 1)
}

impl FusePayload {
    /// `dcdb_parse_fuse_message`: at least 20 bytes, then exactly `size + pathlen + tolen`
    /// more, each present string NUL-terminated.
    pub fn decode(b: &[u8]) -> Result<FusePayload, WireError> {
        if b.len() < FUSE_HEADER_LEN {
            return Err(WireError::Short {
                need: FUSE_HEADER_LEN,
                len: b.len(),
            });
        }
        let size = u64::from(le32(b, 0));
        let offset = le32(b, 4);
        let pathlen = u64::from(le32(b, 8));
        let tolen = u64::from(le32(b, 12));
        let flags = le32(b, 16);
        let rest = &b[FUSE_HEADER_LEN..];
        let expected = size + pathlen + tolen;
        if rest.len() as u64 != expected {
            return Err(WireError::LengthMismatch {
                expected,
                len: rest.len(),
            });
        }
        let (path, rest) = rest.split_at(pathlen as usize);
        let (to, data) = rest.split_at(tolen as usize);
        Ok(FusePayload {
            offset,
            flags,
            path: terminated(path, "path")?,
            to: terminated(to, "to")?,
            data: data.to_vec(),
        })
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&wire_len(&self.path).to_le_bytes());
        out.extend_from_slice(&wire_len(&self.to).to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        for s in [&self.path, &self.to].into_iter().flatten() {
            out.extend_from_slice(s);
            out.push(0);
        }
        out.extend_from_slice(&self.data);
    }

    fn with_path(path: &TreePath) -> FusePayload {
        FusePayload {
            path: Some(path.to_string().into_bytes()),
            ..FusePayload::default()
        }
    }

    fn path(&self) -> Result<TreePath, WireError> {
        path_of(self.path.as_deref().ok_or(WireError::NoPath)?)
    }
}

impl UnlockPayload {
    pub fn new(path: &TreePath, csum: [u8; 32]) -> UnlockPayload {
        UnlockPayload {
            csum,
            path: path.to_string().into_bytes(),
        }
    }

    /// `dcdb_parse_unlock_request`: at least 33 bytes, the last one NUL.
    pub fn decode(b: &[u8]) -> Result<UnlockPayload, WireError> {
        if b.len() < CSUM_LEN + 1 {
            return Err(WireError::Short {
                need: CSUM_LEN + 1,
                len: b.len(),
            });
        }
        let (csum, path) = b.split_at(CSUM_LEN);
        let path = terminated(path, "path")?.expect("at least one byte");
        Ok(UnlockPayload {
            csum: csum.try_into().expect("32 bytes"),
            path,
        })
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.csum);
        out.extend_from_slice(&self.path);
        out.push(0);
    }
}

impl DcdbMsg {
    pub fn kind(&self) -> DcdbType {
        match self {
            DcdbMsg::Write(_) => DcdbType::Write,
            DcdbMsg::Mkdir(_) => DcdbType::Mkdir,
            DcdbMsg::Delete(_) => DcdbType::Delete,
            DcdbMsg::Rename(_) => DcdbType::Rename,
            DcdbMsg::Create(_) => DcdbType::Create,
            DcdbMsg::Mtime(_) => DcdbType::Mtime,
            DcdbMsg::UnlockRequest(_) => DcdbType::UnlockRequest,
            DcdbMsg::Unlock(_) => DcdbType::Unlock,
        }
    }

    /// The DFSM header's subtype for this message.
    pub fn subtype(&self) -> u16 {
        self.kind().to_wire()
    }

    /// Decode the payload of a NORMAL message of the given subtype.
    pub fn decode(subtype: u16, payload: &[u8]) -> Result<DcdbMsg, WireError> {
        let kind = DcdbType::from_wire(subtype).ok_or(WireError::UnknownType(subtype))?;
        Ok(match kind {
            DcdbType::UnlockRequest => DcdbMsg::UnlockRequest(UnlockPayload::decode(payload)?),
            DcdbType::Unlock => DcdbMsg::Unlock(UnlockPayload::decode(payload)?),
            fuse => {
                let p = FusePayload::decode(payload)?;
                match fuse {
                    DcdbType::Write => DcdbMsg::Write(p),
                    DcdbType::Mkdir => DcdbMsg::Mkdir(p),
                    DcdbType::Delete => DcdbMsg::Delete(p),
                    DcdbType::Rename => DcdbMsg::Rename(p),
                    DcdbType::Create => DcdbMsg::Create(p),
                    _ => DcdbMsg::Mtime(p),
                }
            }
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            DcdbMsg::Write(p)
            | DcdbMsg::Mkdir(p)
            | DcdbMsg::Delete(p)
            | DcdbMsg::Rename(p)
            | DcdbMsg::Create(p)
            | DcdbMsg::Mtime(p) => p.encode_into(out),
            DcdbMsg::UnlockRequest(u) | DcdbMsg::Unlock(u) => u.encode_into(out),
        }
    }

    /// The message C's FUSE layer sends for an operation (cluster.md §4.2 field table).
    ///
    /// Fails only where the 32-bit wire fields cannot carry the operation (C would silently
    /// truncate the offset); every such write is over the 1 MiB limit, so the caller answers
    /// `EFBIG` as memdb would.
    pub fn from_op(op: &Op) -> Result<DcdbMsg, WireError> {
        Ok(match op {
            Op::Create { path } => DcdbMsg::Create(FusePayload::with_path(path)),
            Op::Mkdir { path } => DcdbMsg::Mkdir(FusePayload::with_path(path)),
            Op::Delete { path } => DcdbMsg::Delete(FusePayload::with_path(path)),
            Op::Rename { from, to } => DcdbMsg::Rename(FusePayload {
                to: Some(to.to_string().into_bytes()),
                ..FusePayload::with_path(from)
            }),
            Op::Mtime { path, mtime } => DcdbMsg::Mtime(FusePayload {
                offset: mtime.0,
                ..FusePayload::with_path(path)
            }),
            Op::Write {
                path,
                offset,
                data,
                truncate,
            } => {
                let offset =
                    u32::try_from(*offset).map_err(|_| WireError::OffsetTooLarge(*offset))?;
                if u32::try_from(data.len()).is_err() {
                    return Err(WireError::DataTooLarge(data.len()));
                }
                DcdbMsg::Write(FusePayload {
                    offset,
                    flags: u32::from(*truncate),
                    data: data.clone(),
                    ..FusePayload::with_path(path)
                })
            }
        })
    }

    /// What the message asks of memdb, as `dcdb_deliver` reads it. A path is what C sees of
    /// it (the bytes before a first NUL); a missing path (length 0) is an error, where C would
    /// hand NULL to memdb and get `EINVAL`/`ENOENT`.
    pub fn to_request(&self) -> Result<Request, WireError> {
        Ok(Request::Op(match self {
            DcdbMsg::Write(p) => Op::Write {
                path: p.path()?,
                offset: u64::from(p.offset),
                data: p.data.clone(),
                truncate: p.flags != 0,
            },
            DcdbMsg::Create(p) => Op::Create { path: p.path()? },
            DcdbMsg::Mkdir(p) => Op::Mkdir { path: p.path()? },
            DcdbMsg::Delete(p) => Op::Delete { path: p.path()? },
            DcdbMsg::Rename(p) => Op::Rename {
                from: p.path()?,
                to: path_of(p.to.as_deref().ok_or(WireError::NoTarget)?)?,
            },
            DcdbMsg::Mtime(p) => Op::Mtime {
                path: p.path()?,
                mtime: Mtime(p.offset),
            },
            DcdbMsg::UnlockRequest(u) => {
                return Ok(Request::UnlockRequest {
                    path: path_of(&u.path)?,
                    csum: u.csum,
                })
            }
            DcdbMsg::Unlock(u) => {
                return Ok(Request::Unlock {
                    path: path_of(&u.path)?,
                    csum: u.csum,
                })
            }
        }))
    }
}

/// The payload of an UPDATE message: one tree entry as the data leader sends it
/// (`dcdb_send_update_inode`).
///
/// `name` holds the bytes before the terminating NUL (the root's is empty). `data` holds the
/// `size` bytes after the name; C sends them for non-empty files only, and ignores them for a
/// directory but still keeps their count as its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateEntry {
    pub parent: u64,
    pub inode: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    /// `DT_DIR` (4) or `DT_REG` (8).
    pub kind: Kind,
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

/// What an UPDATE means to memdb: the root's global values, or one stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    Root(RootRecord),
    Node(NodeRecord),
}

impl UpdateEntry {
    /// `dcdb_parse_update_inode`: the 41-byte fixed part, a known type, then exactly
    /// `namelen + size` bytes with the name NUL-terminated. (C checks for 40 bytes but reads
    /// 41, and reads before the buffer for `namelen` 0; both are refused here.)
    pub fn decode(b: &[u8]) -> Result<UpdateEntry, WireError> {
        if b.len() < UPDATE_HEADER_LEN {
            return Err(WireError::Short {
                need: UPDATE_HEADER_LEN,
                len: b.len(),
            });
        }
        let size = u64::from(le32(b, 32));
        let namelen = u64::from(le32(b, 36));
        let kind = match b[40] {
            Kind::DT_DIR => Kind::Dir,
            Kind::DT_REG => Kind::File,
            t => return Err(WireError::BadType(t)),
        };
        let rest = &b[UPDATE_HEADER_LEN..];
        let expected = size + namelen;
        if rest.len() as u64 != expected {
            return Err(WireError::LengthMismatch {
                expected,
                len: rest.len(),
            });
        }
        let (name, data) = rest.split_at(namelen as usize);
        let name = terminated(name, "name")?.ok_or(WireError::NotTerminated("name"))?;
        Ok(UpdateEntry {
            parent: le64(b, 0),
            inode: le64(b, 8),
            version: le64(b, 16),
            writer: le32(b, 24),
            mtime: le32(b, 28),
            kind,
            name,
            data: data.to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(UPDATE_HEADER_LEN + self.name.len() + 1 + self.data.len());
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.parent.to_le_bytes());
        out.extend_from_slice(&self.inode.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.writer.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.name.len() as u32 + 1).to_le_bytes());
        out.push(self.kind.dt());
        out.extend_from_slice(&self.name);
        out.push(0);
        out.extend_from_slice(&self.data);
    }

    /// The entry's digest in a memdb index (cluster.md §4.4): what the leader's STATE lists
    /// for this inode.
    pub fn index_digest(&self) -> [u8; 32] {
        crate::index::entry_digest(
            self.version,
            self.writer,
            self.mtime,
            self.data.len() as u32,
            self.kind,
            self.parent,
            c_str(&self.name),
            &self.data,
        )
    }

    /// The root entry as the leader sends it: the global version, writer and mtime; name "",
    /// a directory under itself.
    pub fn root(r: RootRecord) -> UpdateEntry {
        UpdateEntry {
            parent: 0,
            inode: 0,
            version: r.version,
            writer: r.writer.0,
            mtime: r.mtime.0,
            kind: Kind::Dir,
            name: Vec::new(),
            data: Vec::new(),
        }
    }

    pub fn from_record(r: &NodeRecord) -> UpdateEntry {
        UpdateEntry {
            parent: r.parent.0,
            inode: r.inode.0,
            version: r.version,
            writer: r.writer.0,
            mtime: r.mtime.0,
            kind: r.kind,
            name: r.name.clone().into_bytes(),
            data: if r.kind == Kind::File {
                r.data.to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// What the entry means to memdb. The name is what C sees of it (up to a first NUL).
    pub fn to_update(&self) -> Result<Update, WireError> {
        if self.inode == 0 {
            return Ok(Update::Root(RootRecord {
                version: self.version,
                writer: NodeId(self.writer),
                mtime: Mtime(self.mtime),
            }));
        }
        let inode = Inode(self.inode);
        if self.kind == Kind::Dir && !self.data.is_empty() {
            return Err(WireError::DirWithData(inode, self.data.len()));
        }
        let name = c_str(&self.name);
        let name = std::str::from_utf8(name).map_err(|_| WireError::NotUtf8(name.to_vec()))?;
        Ok(Update::Node(NodeRecord {
            inode,
            parent: Inode(self.parent),
            version: self.version,
            writer: NodeId(self.writer),
            mtime: Mtime(self.mtime),
            kind: self.kind,
            name: name.to_owned(),
            data: Data::new(self.data.clone()),
        }))
    }
}

impl Memdb {
    /// The UPDATE payload the data leader sends for one of its entries (`None` if the inode
    /// does not exist).
    pub fn update_entry(&self, inode: Inode) -> Option<UpdateEntry> {
        if inode == Inode::ROOT {
            return Some(UpdateEntry::root(RootRecord {
                version: self.version,
                writer: self.root_writer,
                mtime: self.root_mtime,
            }));
        }
        let e = self.entries.get(&inode)?;
        Some(UpdateEntry {
            parent: e.parent.0,
            inode: inode.0,
            version: e.version,
            writer: e.writer.0,
            mtime: e.mtime.0,
            kind: e.kind(),
            name: e.name.clone().into_bytes(),
            data: match &e.body {
                Body::File(d) => d.to_vec(),
                Body::Dir(_) => Vec::new(),
            },
        })
    }
}

/// Helpers for tests in this crate that read the captured vectors.
#[cfg(test)]
pub(crate) mod vectors {
    use serde_json::Value;

    pub const DCDB: &str = include_str!("../../cpg/tests/vectors/dcdb.jsonl");
    pub const TREE_AT_VERIFY: &str =
        include_str!("../../cpg/tests/vectors/dcdb-tree-at-verify.json");

    pub struct Vector {
        pub seq: u64,
        pub from: (u32, u32),
        pub bytes: Vec<u8>,
        pub json: Value,
    }

    impl Vector {
        pub fn msg_type(&self) -> u16 {
            u16::from_le_bytes([self.bytes[0], self.bytes[1]])
        }
        pub fn subtype(&self) -> u16 {
            u16::from_le_bytes([self.bytes[2], self.bytes[3]])
        }
        /// The DFSM payload: after 24 header bytes for NORMAL, 32 otherwise.
        pub fn payload(&self) -> &[u8] {
            &self.bytes[if self.msg_type() == 0 { 24 } else { 32 }..]
        }
        /// The sync epoch counter and creator of a state message.
        pub fn epoch(&self) -> [u8; 16] {
            self.bytes[16..32].try_into().unwrap()
        }
        pub fn fields(&self) -> &Value {
            &self.json["fields"]["payload"]
        }
    }

    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub fn u(v: &Value) -> u64 {
        v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
    }

    pub fn dcdb() -> Vec<Vector> {
        let v: Vec<Vector> = DCDB
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let json: Value = serde_json::from_str(l).unwrap();
                Vector {
                    seq: u(&json["seq"]),
                    from: (u(&json["from_nodeid"]) as u32, u(&json["from_pid"]) as u32),
                    bytes: unhex(json["hex"].as_str().unwrap()),
                    json,
                }
            })
            .collect();
        assert_eq!(v.len(), 58, "vector file changed");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::vectors::{dcdb, u, unhex};
    use super::*;
    use serde_json::Value;

    fn hex(s: &str) -> Vec<u8> {
        unhex(&s.split_whitespace().collect::<String>())
    }

    fn opt_str(v: &Value) -> Option<Vec<u8>> {
        v.as_str().map(|s| s.as_bytes().to_vec())
    }

    /// Every captured NORMAL payload decodes to the captured fields and re-encodes to the
    /// captured bytes.
    #[test]
    fn golden_normal_payloads_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for v in dcdb().iter().filter(|v| v.msg_type() == 0) {
            let m = DcdbMsg::decode(v.subtype(), v.payload())
                .unwrap_or_else(|e| panic!("seq {}: {e}", v.seq));
            assert_eq!(m.subtype(), v.subtype());
            let f = v.fields();
            match &m {
                DcdbMsg::UnlockRequest(p) | DcdbMsg::Unlock(p) => {
                    assert_eq!(p.csum.to_vec(), unhex(f["csum"].as_str().unwrap()));
                    assert_eq!(Some(p.path.clone()), opt_str(&f["path"]));
                }
                DcdbMsg::Write(p)
                | DcdbMsg::Mkdir(p)
                | DcdbMsg::Delete(p)
                | DcdbMsg::Rename(p)
                | DcdbMsg::Create(p)
                | DcdbMsg::Mtime(p) => {
                    assert_eq!(p.data.len() as u64, u(&f["size"]), "seq {}", v.seq);
                    assert_eq!(u64::from(p.offset), u(&f["offset"]));
                    assert_eq!(u64::from(wire_len(&p.path)), u(&f["pathlen"]));
                    assert_eq!(u64::from(wire_len(&p.to)), u(&f["tolen"]));
                    assert_eq!(u64::from(p.flags), u(&f["flags"]));
                    assert_eq!(p.path, opt_str(&f["path"]));
                    assert_eq!(p.to, opt_str(&f["to"]));
                    assert_eq!(p.data, unhex(f["data_hex"].as_str().unwrap()));
                }
            }
            assert_eq!(m.encode(), v.payload(), "seq {} does not re-encode", v.seq);
            // And through memdb terms: the bytes C's FUSE layer would send for that request.
            match m.to_request().unwrap() {
                Request::Op(op) => {
                    assert_eq!(
                        DcdbMsg::from_op(&op).unwrap().encode(),
                        v.payload(),
                        "seq {}",
                        v.seq
                    )
                }
                Request::UnlockRequest { path, csum } => {
                    assert_eq!(DcdbMsg::UnlockRequest(UnlockPayload::new(&path, csum)), m)
                }
                Request::Unlock { path, csum } => {
                    assert_eq!(DcdbMsg::Unlock(UnlockPayload::new(&path, csum)), m)
                }
            }
            seen.insert(v.subtype());
        }
        assert_eq!(seen.len(), 8, "all eight subtypes are captured");
    }

    /// The field values C's FUSE layer uses per operation (cluster.md §4.2), seen in the
    /// captures: truncate is WRITE with flags 1 and the length in `offset`; utimens is MTIME
    /// with the mtime in `offset`.
    #[test]
    fn golden_requests() {
        let all = dcdb();
        let req = |seq: u64| {
            let v = all.iter().find(|v| v.seq == seq).unwrap();
            DcdbMsg::decode(v.subtype(), v.payload())
                .unwrap()
                .to_request()
                .unwrap()
        };
        let p = |s: &str| TreePath::parse(s);
        let conf = "nodes/node1/qemu-server/100.conf";
        assert_eq!(req(27), Request::Op(Op::Mkdir { path: p("nodes") }));
        assert_eq!(req(31), Request::Op(Op::Create { path: p(conf) }));
        assert_eq!(
            req(32),
            Request::Op(Op::Write {
                path: p(conf),
                offset: 0,
                data: b"hello".to_vec(),
                truncate: false
            })
        );
        assert_eq!(
            req(33),
            Request::Op(Op::Write {
                path: p(conf),
                offset: 2,
                data: b"LL".to_vec(),
                truncate: false
            })
        );
        assert_eq!(
            req(34),
            Request::Op(Op::Write {
                path: p(conf),
                offset: 3,
                data: vec![],
                truncate: true
            })
        );
        assert_eq!(
            req(35),
            Request::Op(Op::Mtime {
                path: p(conf),
                mtime: Mtime(1_700_000_000)
            })
        );
        assert_eq!(
            req(37),
            Request::Op(Op::Delete {
                path: p("nodes/node1/testdir")
            })
        );
        assert_eq!(
            req(38),
            Request::Op(Op::Rename {
                from: p(conf),
                to: p("nodes/node1/qemu-server/101.conf")
            })
        );
        let csum: [u8; 32] =
            unhex("f5b5e610bda2614f135040b410899f2cdff92dad357d63dd694e4bc944ab4c25")
                .try_into()
                .unwrap();
        assert_eq!(
            req(43),
            Request::UnlockRequest {
                path: p("priv/lock/capture"),
                csum
            }
        );
        assert_eq!(
            req(84),
            Request::Unlock {
                path: p("priv/lock/capture"),
                csum
            }
        );
    }

    /// cluster.md §2.7 examples A (WRITE), F (UNLOCK_REQUEST) and G (RENAME), payload part.
    #[test]
    fn spec_examples() {
        let a = hex("05 00 00 00 00 00 00 00 1e 00 00 00 00 00 00 00 00 00 00 00
                     6e 6f 64 65 73 2f 6e 31 2f 71 65 6d 75 2d 73 65 72 76 65 72
                     2f 31 30 30 2e 63 6f 6e 66 00 68 65 6c 6c 6f");
        let op = Op::Write {
            path: TreePath::parse("nodes/n1/qemu-server/100.conf"),
            offset: 0,
            data: b"hello".to_vec(),
            truncate: false,
        };
        assert_eq!(DcdbMsg::from_op(&op).unwrap().encode(), a);
        assert_eq!(
            DcdbMsg::decode(1, &a).unwrap().to_request().unwrap(),
            Request::Op(op)
        );

        let f = hex(
            "7c 23 55 c1 83 cf 37 95 84 da 9f e2 4a 34 27 f4 10 55 7d 82 1f e3 36 1e
                     f5 82 73 44 9e 09 28 3c 70 72 69 76 2f 6c 6f 63 6b 2f 66 6f 6f 00",
        );
        let m = DcdbMsg::decode(7, &f).unwrap();
        assert_eq!(m.encode(), f);
        let DcdbMsg::UnlockRequest(u) = &m else {
            panic!("{m:?}")
        };
        assert_eq!(u.path, b"priv/lock/foo");

        let g = hex("00 00 00 00 00 00 00 00 1e 00 00 00 1e 00 00 00 00 00 00 00
                     6e 6f 64 65 73 2f 6e 31 2f 71 65 6d 75 2d 73 65 72 76 65 72
                     2f 31 30 30 2e 63 6f 6e 66 00 6e 6f 64 65 73 2f
                     6e 32 2f 71 65 6d 75 2d 73 65 72 76 65 72 2f 31
                     30 30 2e 63 6f 6e 66 00");
        let op = Op::Rename {
            from: TreePath::parse("nodes/n1/qemu-server/100.conf"),
            to: TreePath::parse("nodes/n2/qemu-server/100.conf"),
        };
        assert_eq!(DcdbMsg::from_op(&op).unwrap().encode(), g);
    }

    /// cluster.md §2.7 example D: the UPDATE of file `a`.
    #[test]
    fn spec_example_d() {
        let d = hex("00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
                     02 00 00 00 00 00 00 00 01 00 00 00 00 00 60 66
                     02 00 00 00 02 00 00 00 08 61 00 68 69");
        let e = UpdateEntry::decode(&d).unwrap();
        assert_eq!(e.encode(), d);
        let want = NodeRecord {
            inode: Inode(1),
            parent: Inode(0),
            version: 2,
            writer: NodeId(1),
            mtime: Mtime(0x6660_0000),
            kind: Kind::File,
            name: "a".into(),
            data: Data::new(b"hi".to_vec()),
        };
        assert_eq!(e.to_update().unwrap(), Update::Node(want.clone()));
        assert_eq!(UpdateEntry::from_record(&want), e);
        assert_eq!(
            e.index_digest().to_vec(),
            hex("1b d9 9a 8a 31 a0 83 13 8b 7b ac 31 f7 6a 9f 6a
                 ba 52 02 3f 77 01 23 76 69 89 8d f1 96 8b d6 ff")
        );
    }

    /// Every captured UPDATE decodes to the captured fields and re-encodes exactly; its digest
    /// is the one the leader's STATE of the same round lists for that inode.
    #[test]
    fn golden_updates() {
        let all = dcdb();
        let mut n = 0;
        for v in all.iter().filter(|v| v.msg_type() == 3) {
            let e =
                UpdateEntry::decode(v.payload()).unwrap_or_else(|e| panic!("seq {}: {e}", v.seq));
            let f = v.fields();
            assert_eq!(e.parent, u(&f["parent"]));
            assert_eq!(e.inode, u(&f["inode"]));
            assert_eq!(e.version, u(&f["version"]));
            assert_eq!(u64::from(e.writer), u(&f["writer"]));
            assert_eq!(u64::from(e.mtime), u(&f["mtime"]));
            assert_eq!(e.data.len() as u64, u(&f["size"]));
            assert_eq!(e.name.len() as u64 + 1, u(&f["namelen"]));
            assert_eq!(u64::from(e.kind.dt()), u(&f["type"]));
            assert_eq!(e.name, f["name"].as_str().unwrap().as_bytes());
            assert_eq!(e.data, unhex(f["data_hex"].as_str().unwrap()));
            assert_eq!(e.encode(), v.payload(), "seq {}", v.seq);
            match e.to_update().unwrap() {
                Update::Root(r) => assert_eq!(UpdateEntry::root(r), e),
                Update::Node(r) => assert_eq!(UpdateEntry::from_record(&r), e),
            }
            // The leader's STATE of this round, i.e. the same epoch, from the same sender.
            let state = all
                .iter()
                .find(|s| s.msg_type() == 2 && s.epoch() == v.epoch() && s.from == v.from)
                .expect("leader state");
            let idx = crate::index::MemdbIndex::decode(state.payload()).unwrap();
            let listed = idx.entries.iter().find(|x| x.inode.0 == e.inode).unwrap();
            assert_eq!(listed.digest, e.index_digest(), "seq {}", v.seq);
            n += 1;
        }
        assert_eq!(n, 6);
    }

    #[test]
    fn malformed_payloads_are_refused_as_c_does() {
        let ok = DcdbMsg::from_op(&Op::Rename {
            from: TreePath::parse("a"),
            to: TreePath::parse("b"),
        })
        .unwrap()
        .encode();
        assert!(DcdbMsg::decode(4, &ok).is_ok());
        assert_eq!(DcdbMsg::decode(0, &ok), Err(WireError::UnknownType(0)));
        assert_eq!(DcdbMsg::decode(9, &ok), Err(WireError::UnknownType(9)));
        assert_eq!(
            DcdbMsg::decode(4, &ok[..19]),
            Err(WireError::Short { need: 20, len: 19 })
        );
        let mut long = ok.clone();
        long.push(0);
        assert_eq!(
            DcdbMsg::decode(4, &long),
            Err(WireError::LengthMismatch {
                expected: 4,
                len: 5
            })
        );
        let mut bad_path = ok.clone();
        bad_path[21] = b'x';
        assert_eq!(
            DcdbMsg::decode(4, &bad_path),
            Err(WireError::NotTerminated("path"))
        );
        let mut bad_to = ok.clone();
        bad_to[23] = b'x';
        assert_eq!(
            DcdbMsg::decode(4, &bad_to),
            Err(WireError::NotTerminated("to"))
        );
        // A rename without target, a write without path: the bytes are fine, the request not.
        let no_to = DcdbMsg::Rename(FusePayload {
            path: Some(b"a".to_vec()),
            ..Default::default()
        });
        assert_eq!(
            DcdbMsg::decode(4, &no_to.encode()).unwrap().to_request(),
            Err(WireError::NoTarget)
        );
        let no_path = DcdbMsg::Write(FusePayload::default());
        assert_eq!(
            DcdbMsg::decode(1, &no_path.encode()).unwrap().to_request(),
            Err(WireError::NoPath)
        );
        // Unlock: 33 bytes minimum, last byte NUL.
        assert_eq!(
            DcdbMsg::decode(8, &[0; 32]),
            Err(WireError::Short { need: 33, len: 32 })
        );
        assert_eq!(
            DcdbMsg::decode(8, &[1; 33]),
            Err(WireError::NotTerminated("path"))
        );
        assert!(DcdbMsg::decode(8, &[0; 33]).is_ok());
        // Update: known type, exact length, terminated name.
        let e = UpdateEntry::root(RootRecord::default()).encode();
        assert!(UpdateEntry::decode(&e).is_ok());
        let mut t = e.clone();
        t[40] = 0;
        assert_eq!(UpdateEntry::decode(&t), Err(WireError::BadType(0)));
        assert_eq!(
            UpdateEntry::decode(&e[..41]),
            Err(WireError::LengthMismatch {
                expected: 1,
                len: 0
            })
        );
        let mut zero_namelen = e[..41].to_vec();
        zero_namelen[36] = 0;
        assert_eq!(
            UpdateEntry::decode(&zero_namelen),
            Err(WireError::NotTerminated("name"))
        );
    }

    /// C reads string fields up to their first NUL; the bytes after it survive a round trip
    /// but do not count.
    #[test]
    fn interior_nul_is_what_c_sees() {
        let m = DcdbMsg::Mkdir(FusePayload {
            path: Some(b"a\0junk".to_vec()),
            ..Default::default()
        });
        let bytes = m.encode();
        let d = DcdbMsg::decode(2, &bytes).unwrap();
        assert_eq!(d.encode(), bytes);
        assert_eq!(
            d.to_request().unwrap(),
            Request::Op(Op::Mkdir {
                path: TreePath::parse("a")
            })
        );
    }

    #[test]
    fn offsets_beyond_32_bits_are_refused() {
        let op = Op::Write {
            path: TreePath::parse("f"),
            offset: 1 << 32,
            data: vec![],
            truncate: true,
        };
        assert_eq!(
            DcdbMsg::from_op(&op),
            Err(WireError::OffsetTooLarge(1 << 32))
        );
    }

    /// Every prefix of every captured payload, decoded under every subtype and as an UPDATE:
    /// no panic, and whatever decodes re-encodes to exactly its input.
    #[test]
    fn truncated_captures_never_panic() {
        for v in dcdb() {
            let p = v.payload();
            for n in 0..=p.len() {
                for st in 0..=9 {
                    if let Ok(m) = DcdbMsg::decode(st, &p[..n]) {
                        assert_eq!(m.encode(), &p[..n]);
                        let _ = m.to_request();
                    }
                }
                if let Ok(e) = UpdateEntry::decode(&p[..n]) {
                    assert_eq!(e.encode(), &p[..n]);
                    let _ = e.to_update();
                }
            }
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(st in 0u16..10,
                                           b in proptest::collection::vec(any::<u8>(), 0..96)) {
                if let Ok(m) = DcdbMsg::decode(st, &b) {
                    prop_assert_eq!(m.encode(), b.clone());
                    let _ = m.to_request();
                }
                if let Ok(e) = UpdateEntry::decode(&b) {
                    prop_assert_eq!(e.encode(), b);
                    let _ = e.to_update();
                }
            }

            /// A fuse header announcing lengths that fit: the strings and data come back.
            #[test]
            fn fuse_payload_round_trips(offset: u32, flags: u32,
                                        path in proptest::option::of("[a-z/]{0,12}"),
                                        to in proptest::option::of("[a-z/]{0,12}"),
                                        data in proptest::collection::vec(any::<u8>(), 0..32)) {
                let p = FusePayload {
                    offset,
                    flags,
                    path: path.map(String::into_bytes),
                    to: to.map(String::into_bytes),
                    data,
                };
                for t in [DcdbType::Write, DcdbType::Rename, DcdbType::Mtime] {
                    let m = DcdbMsg::decode(t.to_wire(), &{
                        let mut b = Vec::new();
                        p.encode_into(&mut b);
                        b
                    }).unwrap();
                    prop_assert_eq!(m.kind(), t);
                    match m {
                        DcdbMsg::Write(q) | DcdbMsg::Rename(q) | DcdbMsg::Mtime(q) => {
                            prop_assert_eq!(&q, &p)
                        }
                        other => prop_assert!(false, "{other:?}"),
                    }
                }
            }
        }
    }
}
