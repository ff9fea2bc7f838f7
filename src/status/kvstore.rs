//! The application messages of the status group `pve_kvstore_v1` (DFSM protocol 0), byte for
//! byte as C pmxcfs sends them (status.md §1.3–1.6).
//!
//! Pure. The DFSM header (24 bytes for NORMAL, 32 for state messages) is `lwcfs_cpg::msg`'s
//! business; this module sees what the DFSM hands an application: a NORMAL message's subtype
//! and payload, and the payload of a STATE message.
//!
//! - UPDATE (subtype 1): a 256-byte NUL-terminated key field, then the value bytes verbatim
//!   (n = 0 deletes a generic key).
//! - LOG (subtype 3): exactly one cluster-log entry ([`Entry`], 48 + strings).
//! - subtype 2 (UPDATE_COMPLETE) is defined by C but never sent; C logs it as unknown.
//! - The sync state is the whole cluster-log buffer: [`crate::clusterlog::Ring`]'s bytes.

use crate::clusterlog::entry::EntryError;
use crate::clusterlog::Entry;

/// Every header of the group carries protocol version 0 (a higher one puts C nodes into
/// VERSION_ERROR for good).
pub const PROTOCOL_VERSION: u32 = 0;
/// `KVSTORE_MESSAGE_UPDATE`.
pub const SUBTYPE_UPDATE: u16 = 1;
/// `KVSTORE_MESSAGE_UPDATE_COMPLETE`: never sent.
pub const SUBTYPE_UPDATE_COMPLETE: u16 = 2;
/// `KVSTORE_MESSAGE_LOG`.
pub const SUBTYPE_LOG: u16 = 3;
/// The key field of an UPDATE.
pub const KEY_FIELD_LEN: usize = 256;
/// The longest key that fits the field with its NUL.
pub const MAX_KEY_LEN: usize = KEY_FIELD_LEN - 1;
/// The largest value a sender accepts (`CFS_MAX_STATUS_SIZE`; SET_STATUS fails with EFBIG
/// above it). Receivers do not check it.
pub const MAX_VALUE_LEN: usize = 32768;

/// A decoded application message of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvMessage<'a> {
    Update(Update<'a>),
    Log(Entry),
}

/// An UPDATE, borrowing from the received payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    /// The key: the bytes before the first NUL of the key field (`rrd/…`, `nodeip`, or a
    /// generic key such as `tasklist` or `kv/…`). C never checks them for UTF-8.
    pub key: &'a [u8],
    /// The value as sent (normally with the writer's trailing NUL); empty means delete.
    pub value: &'a [u8],
    /// The 256-byte key field as received. C does not clear the bytes after the key's NUL, so
    /// they are garbage; kept only to re-encode a received message exactly.
    pub key_field: &'a [u8],
}

impl<'a> Update<'a> {
    /// The key as text, if it is UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.key).ok()
    }

    /// The payload exactly as received, key-field garbage included.
    pub fn payload_verbatim(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEY_FIELD_LEN + self.value.len());
        out.extend_from_slice(self.key_field);
        out.extend_from_slice(self.value);
        out
    }
}

/// Why a payload is not a kvstore message, or cannot be made into one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("received short kvstore message ({len} < 256)")]
    ShortUpdate { len: usize },
    #[error("cant parse update message: key not NUL-terminated")]
    UnterminatedKey,
    #[error("{0}")]
    Log(#[from] EntryError),
    /// C logs "received unknown message type" and ignores the message (the group is not left).
    #[error("received unknown message type {0}")]
    UnknownSubtype(u16),
    #[error("key of {len} bytes does not fit the 256-byte key field")]
    KeyTooLong { len: usize },
    #[error("key contains a NUL byte")]
    KeyHasNul,
}

/// Decode the payload of a NORMAL message of the group, checked as C's receiver checks it
/// (`status.c` `kvstore_parse_update_message`, `kvstore_parse_log_message`).
pub fn decode(subtype: u16, payload: &[u8]) -> Result<KvMessage<'_>, KvError> {
    match subtype {
        SUBTYPE_UPDATE => decode_update(payload).map(KvMessage::Update),
        SUBTYPE_LOG => Ok(KvMessage::Log(Entry::decode(payload)?)),
        other => Err(KvError::UnknownSubtype(other)),
    }
}

/// An UPDATE payload: at least 256 bytes, a NUL within the first 256.
pub fn decode_update(payload: &[u8]) -> Result<Update<'_>, KvError> {
    if payload.len() < KEY_FIELD_LEN {
        return Err(KvError::ShortUpdate { len: payload.len() });
    }
    let (key_field, value) = payload.split_at(KEY_FIELD_LEN);
    let nul = key_field
        .iter()
        .position(|&b| b == 0)
        .ok_or(KvError::UnterminatedKey)?;
    Ok(Update {
        key: &key_field[..nul],
        value,
        key_field,
    })
}

/// An UPDATE payload as C's `kvstore_send_update_message` builds it, except that the key
/// field is zero after the key (C sends stack garbage there). The key must be at most 255
/// bytes without NUL; the value is not limited here (see [`MAX_VALUE_LEN`]).
pub fn encode_update(key: &[u8], value: &[u8]) -> Result<Vec<u8>, KvError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KvError::KeyTooLong { len: key.len() });
    }
    if key.contains(&0) {
        return Err(KvError::KeyHasNul);
    }
    let mut out = vec![0u8; KEY_FIELD_LEN];
    out[..key.len()].copy_from_slice(key);
    out.extend_from_slice(value);
    Ok(out)
}

/// A LOG payload: the entry's bytes, 48 + its strings. C sends entries with `prev` and `next`
/// 0 (`clog_pack`); receivers ignore both.
pub fn encode_log(entry: &Entry) -> Vec<u8> {
    entry.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_layout() {
        let p = encode_update(b"kv/x", b"v\0").unwrap();
        assert_eq!(p.len(), 258);
        assert_eq!(&p[..5], b"kv/x\0");
        assert!(p[5..256].iter().all(|&b| b == 0));
        let u = decode_update(&p).unwrap();
        assert_eq!(
            (u.key, u.value, u.key_str()),
            (&b"kv/x"[..], &b"v\0"[..], Some("kv/x"))
        );
        assert_eq!(u.payload_verbatim(), p);
        // Delete: no value bytes.
        let d = encode_update(b"kv/x", b"").unwrap();
        assert_eq!(d.len(), 256);
        assert!(decode_update(&d).unwrap().value.is_empty());
    }

    #[test]
    fn update_limits() {
        let k = [b'k'; 255];
        let p = encode_update(&k, b"").unwrap();
        assert_eq!(decode_update(&p).unwrap().key.len(), 255);
        assert_eq!(
            encode_update(&[b'k'; 256], b""),
            Err(KvError::KeyTooLong { len: 256 })
        );
        assert_eq!(encode_update(b"a\0b", b""), Err(KvError::KeyHasNul));
        assert_eq!(
            decode_update(&[0u8; 255]),
            Err(KvError::ShortUpdate { len: 255 })
        );
        assert_eq!(decode_update(&[b'x'; 300]), Err(KvError::UnterminatedKey));
        assert_eq!(decode(2, &p), Err(KvError::UnknownSubtype(2)));
        assert_eq!(decode(0, &p), Err(KvError::UnknownSubtype(0)));
    }

    #[test]
    fn log_payload() {
        let e = Entry::pack(
            crate::clusterlog::NewEntry {
                node: b"node1",
                ident: b"root@pam",
                tag: b"t",
                pid: 99,
                time: 10,
                priority: 6,
                msg: b"m",
            },
            2,
        )
        .unwrap();
        let p = encode_log(&e);
        assert_eq!(p.len(), 48 + 6 + 9 + 2 + 2);
        assert_eq!(decode(SUBTYPE_LOG, &p), Ok(KvMessage::Log(e)));
        assert!(matches!(
            decode(SUBTYPE_LOG, &p[..p.len() - 4]),
            Err(KvError::Log(EntryError::WrongSize { .. }))
        ));
    }
}
