//! The DFSM message framing, byte for byte as C `dfsm.c` lays it out (cluster.md §2).
//!
//! Every message starts with a 16-byte base header. NORMAL messages add a u64 `count`
//! (24 bytes in all); every other type adds a 16-byte [`Epoch`] (32 bytes). All integers are
//! little-endian, without padding. There is no length prefix, magic or checksum: CPG keeps the
//! message boundaries.
//!
//! [`Message::decode`] only checks the lengths; [`check`] runs the whole receive-side
//! validation of §2.4 in C's order and says what the receiver must do with a message it
//! refuses ([`Rejected::verdict`]).

use std::fmt;

/// Length of the base header `{u16 type, u16 subtype, u32 protocol_version, u32 time,
/// u32 reserved}`.
pub const BASE_HEADER_LEN: usize = 16;
/// Length of a NORMAL message's header: base + u64 count.
pub const NORMAL_HEADER_LEN: usize = 24;
/// Length of every other message's header: base + epoch.
pub const STATE_HEADER_LEN: usize = 32;
/// Payload length of VERIFY_REQUEST: the u64 checksum id.
pub const VERIFY_REQUEST_LEN: usize = 8;
/// Payload length of VERIFY: the u64 checksum id and a SHA-256.
pub const VERIFY_LEN: usize = 40;

/// The DFSM message types (`dfsm_message_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    Normal,
    SyncStart,
    State,
    Update,
    UpdateComplete,
    VerifyRequest,
    Verify,
}

impl MsgType {
    pub const ALL: [MsgType; 7] = [
        MsgType::Normal,
        MsgType::SyncStart,
        MsgType::State,
        MsgType::Update,
        MsgType::UpdateComplete,
        MsgType::VerifyRequest,
        MsgType::Verify,
    ];

    pub fn to_wire(self) -> u16 {
        match self {
            MsgType::Normal => 0,
            MsgType::SyncStart => 1,
            MsgType::State => 2,
            MsgType::Update => 3,
            MsgType::UpdateComplete => 4,
            MsgType::VerifyRequest => 5,
            MsgType::Verify => 6,
        }
    }

    /// `None` for values above 6; C rejects those only once it looks at the type by mode.
    pub fn from_wire(v: u16) -> Option<MsgType> {
        MsgType::ALL.get(usize::from(v)).copied()
    }
}

/// A sync epoch (`dfsm_sync_epoch_t`): made by a node at each confchg, replaced by the one in an
/// accepted SYNC_START. State messages of any other epoch are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Epoch {
    /// Per-process counter, bumped at every confchg.
    pub epoch: u32,
    /// The creator's clock at that confchg.
    pub time: u32,
    pub nodeid: u32,
    pub pid: u32,
}

impl Epoch {
    pub const LEN: usize = 16;

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.epoch.to_le_bytes());
        b[4..8].copy_from_slice(&self.time.to_le_bytes());
        b[8..12].copy_from_slice(&self.nodeid.to_le_bytes());
        b[12..16].copy_from_slice(&self.pid.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> Epoch {
        Epoch {
            epoch: le32(b, 0),
            time: le32(b, 4),
            nodeid: le32(b, 8),
            pid: le32(b, 12),
        }
    }
}

impl fmt::Display for Epoch {
    /// As C logs it: `nodeid/pid/EPOCH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{:08X}", self.nodeid, self.pid, self.epoch)
    }
}

/// The 16-byte base header, every field as received (the type stays raw: C accepts any value
/// here and rejects unknown ones later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BaseHeader {
    pub msg_type: u16,
    /// NORMAL: the application's message type; 0 in state messages.
    pub subtype: u16,
    pub protocol_version: u32,
    /// The sender's clock at send; NORMAL messages hand it to the application.
    pub time: u32,
    /// 0 on send, never read.
    pub reserved: u32,
}

impl BaseHeader {
    pub fn kind(&self) -> Option<MsgType> {
        MsgType::from_wire(self.msg_type)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.msg_type.to_le_bytes());
        out.extend_from_slice(&self.subtype.to_le_bytes());
        out.extend_from_slice(&self.protocol_version.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.reserved.to_le_bytes());
    }

    /// Parse the first 16 bytes; `None` if there are fewer.
    pub fn parse(b: &[u8]) -> Option<BaseHeader> {
        let b = b.get(..BASE_HEADER_LEN)?;
        Some(BaseHeader {
            msg_type: le16(b, 0),
            subtype: le16(b, 2),
            protocol_version: le32(b, 4),
            time: le32(b, 8),
            reserved: le32(b, 12),
        })
    }
}

/// What follows the base header: the count of a NORMAL message, or the epoch of any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ext {
    /// The sender's per-process message counter (starts at 1, never reset).
    Count(u64),
    Epoch(Epoch),
}

/// One DFSM message, borrowing its payload from the received buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub base: BaseHeader,
    pub ext: Ext,
    pub payload: &'a [u8],
}

/// Why bytes are not a DFSM message at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("short message ({len} bytes)")]
    Short { len: usize },
    #[error("short normal message ({len} bytes)")]
    ShortNormal { len: usize },
    #[error("short state message (type {msg_type}, {len} bytes)")]
    ShortState { msg_type: u16, len: usize },
}

impl<'a> Message<'a> {
    /// A NORMAL message.
    pub fn normal(
        subtype: u16,
        protocol_version: u32,
        time: u32,
        count: u64,
        payload: &'a [u8],
    ) -> Message<'a> {
        let base = BaseHeader {
            msg_type: 0,
            subtype,
            protocol_version,
            time,
            reserved: 0,
        };
        Message {
            base,
            ext: Ext::Count(count),
            payload,
        }
    }

    /// A state message (any type but NORMAL), subtype 0 as C sends it.
    pub fn state(
        msg_type: MsgType,
        protocol_version: u32,
        time: u32,
        epoch: Epoch,
        payload: &'a [u8],
    ) -> Message<'a> {
        debug_assert!(
            msg_type != MsgType::Normal,
            "NORMAL carries a count, not an epoch"
        );
        let base = BaseHeader {
            msg_type: msg_type.to_wire(),
            subtype: 0,
            protocol_version,
            time,
            reserved: 0,
        };
        Message {
            base,
            ext: Ext::Epoch(epoch),
            payload,
        }
    }

    /// Split a message into header and payload. Type 0 needs 24 bytes, anything else 32;
    /// nothing else is checked.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let base = BaseHeader::parse(bytes).ok_or(DecodeError::Short { len: bytes.len() })?;
        if base.msg_type == 0 {
            if bytes.len() < NORMAL_HEADER_LEN {
                return Err(DecodeError::ShortNormal { len: bytes.len() });
            }
            let count = le64(bytes, 16);
            Ok(Message {
                base,
                ext: Ext::Count(count),
                payload: &bytes[NORMAL_HEADER_LEN..],
            })
        } else {
            if bytes.len() < STATE_HEADER_LEN {
                return Err(DecodeError::ShortState {
                    msg_type: base.msg_type,
                    len: bytes.len(),
                });
            }
            let mut e = [0u8; 16];
            e.copy_from_slice(&bytes[16..32]);
            let epoch = Epoch::from_bytes(&e);
            Ok(Message {
                base,
                ext: Ext::Epoch(epoch),
                payload: &bytes[STATE_HEADER_LEN..],
            })
        }
    }

    pub fn kind(&self) -> Option<MsgType> {
        self.base.kind()
    }

    pub fn header_len(&self) -> usize {
        match self.ext {
            Ext::Count(_) => NORMAL_HEADER_LEN,
            Ext::Epoch(_) => STATE_HEADER_LEN,
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// The message as C sends it: header then payload, no padding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.base.write(out);
        match self.ext {
            Ext::Count(c) => out.extend_from_slice(&c.to_le_bytes()),
            Ext::Epoch(e) => out.extend_from_slice(&e.to_bytes()),
        }
        out.extend_from_slice(self.payload);
    }

    /// The count of a NORMAL message.
    pub fn count(&self) -> Option<u64> {
        match self.ext {
            Ext::Count(c) => Some(c),
            Ext::Epoch(_) => None,
        }
    }

    /// The epoch of a state message.
    pub fn epoch(&self) -> Option<Epoch> {
        match self.ext {
            Ext::Epoch(e) => Some(e),
            Ext::Count(_) => None,
        }
    }
}

/// The payload of VERIFY_REQUEST: the id of the checksum round.
pub fn encode_verify_request(csum_id: u64) -> [u8; VERIFY_REQUEST_LEN] {
    csum_id.to_le_bytes()
}

/// `None` unless the payload is exactly 8 bytes (C leaves the group then).
pub fn decode_verify_request(payload: &[u8]) -> Option<u64> {
    (payload.len() == VERIFY_REQUEST_LEN).then(|| le64(payload, 0))
}

/// The payload of VERIFY: the round's id and the requester's checksum.
pub fn encode_verify(csum_id: u64, csum: &[u8; 32]) -> [u8; VERIFY_LEN] {
    let mut b = [0u8; VERIFY_LEN];
    b[..8].copy_from_slice(&csum_id.to_le_bytes());
    b[8..].copy_from_slice(csum);
    b
}

/// `None` unless the payload is exactly 40 bytes (C leaves the group then).
pub fn decode_verify(payload: &[u8]) -> Option<(u64, [u8; 32])> {
    if payload.len() != VERIFY_LEN {
        return None;
    }
    let mut csum = [0u8; 32];
    csum.copy_from_slice(&payload[8..]);
    Some((le64(payload, 0), csum))
}

/// What the receiver knows when a message arrives: the inputs of the checks of §2.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receiver {
    /// Its own protocol version (1 in `pve_dcdb_v1`, 0 in `pve_kvstore_v1`).
    pub protocol_version: u32,
    /// Its mode is LEAVE, VERSION_ERROR or ERROR.
    pub error_mode: bool,
    /// It has processed a confchg (C: `sync_info` exists).
    pub has_membership: bool,
    /// Its current sync epoch.
    pub epoch: Epoch,
}

/// A message the receiver refuses, by the step of §2.4 that refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("error mode - ignoring message")]
    ErrorMode,
    #[error("no dfsm_sync_info - internal error")]
    NoMembership,
    #[error("received short message ({len} bytes)")]
    Short { len: usize },
    #[error("received message with protocol version {version}")]
    NewerProtocol { version: u32 },
    #[error("ignore message with wrong protocol version {version}")]
    OlderProtocol { version: u32 },
    #[error("received short message (type = 0, subtype = {subtype}, {len} bytes)")]
    ShortNormal { subtype: u16, len: usize },
    #[error("received short state message (type = {msg_type}, {len} bytes)")]
    ShortState { msg_type: u16, len: usize },
    #[error("ignore message (msg_type == {msg_type}) with wrong epoch ({epoch})")]
    WrongEpoch { msg_type: u16, epoch: Epoch },
}

/// What the receiver does with a rejected message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Drop it silently.
    Ignore,
    /// Mode LEAVE: leave the CPG group and re-join later with a fresh sync.
    Leave,
    /// Mode VERSION_ERROR: stop for good (a newer protocol is in the group).
    VersionError,
}

impl Rejected {
    pub fn verdict(&self) -> Verdict {
        match self {
            // C jumps to its leave path here, which cannot lower an error mode.
            Rejected::ErrorMode => Verdict::Leave,
            Rejected::NoMembership => Verdict::Leave,
            Rejected::Short { .. } => Verdict::Leave,
            Rejected::NewerProtocol { .. } => Verdict::VersionError,
            Rejected::OlderProtocol { .. } => Verdict::Ignore,
            Rejected::ShortNormal { .. } => Verdict::Leave,
            Rejected::ShortState { .. } => Verdict::Leave,
            Rejected::WrongEpoch { .. } => Verdict::Ignore,
        }
    }
}

/// The receive-side validation of `dfsm_cpg_deliver_callback`, in C's order:
/// error mode, membership, length ≥ 16, protocol version (higher: version error, lower:
/// ignore), then the header length by type (24 for NORMAL, 32 otherwise), then, for state
/// messages other than SYNC_START, the epoch. Unknown types pass: the mode decides about them.
pub fn check<'a>(rx: &Receiver, bytes: &'a [u8]) -> Result<Message<'a>, Rejected> {
    if rx.error_mode {
        return Err(Rejected::ErrorMode);
    }
    if !rx.has_membership {
        return Err(Rejected::NoMembership);
    }
    let base = BaseHeader::parse(bytes).ok_or(Rejected::Short { len: bytes.len() })?;
    if base.protocol_version > rx.protocol_version {
        return Err(Rejected::NewerProtocol {
            version: base.protocol_version,
        });
    }
    if base.protocol_version < rx.protocol_version {
        return Err(Rejected::OlderProtocol {
            version: base.protocol_version,
        });
    }
    let msg = Message::decode(bytes).map_err(|e| match e {
        DecodeError::Short { len } => Rejected::Short { len },
        DecodeError::ShortNormal { len } => Rejected::ShortNormal {
            subtype: base.subtype,
            len,
        },
        DecodeError::ShortState { msg_type, len } => Rejected::ShortState { msg_type, len },
    })?;
    if let Ext::Epoch(epoch) = msg.ext {
        if base.msg_type != MsgType::SyncStart.to_wire() && epoch != rx.epoch {
            return Err(Rejected::WrongEpoch {
                msg_type: base.msg_type,
                epoch,
            });
        }
    }
    Ok(msg)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const EPOCH: Epoch = Epoch {
        epoch: 3,
        time: 0x665f_fffb,
        nodeid: 1,
        pid: 1234,
    };

    fn rx() -> Receiver {
        Receiver {
            protocol_version: 1,
            error_mode: false,
            has_membership: true,
            epoch: EPOCH,
        }
    }

    /// cluster.md §2.7 example B.
    #[test]
    fn sync_start_example_b() {
        let bytes = hex("01 00 00 00 01 00 00 00 00 00 60 66 00 00 00 00
                         03 00 00 00 fb ff 5f 66 01 00 00 00 d2 04 00 00");
        let m = Message::state(MsgType::SyncStart, 1, 0x6660_0000, EPOCH, &[]);
        assert_eq!(m.encode(), bytes);
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    /// cluster.md §2.7 example E: VERIFY_REQUEST and VERIFY.
    #[test]
    fn verify_example_e() {
        let req = hex("05 00 00 00 01 00 00 00 02 00 60 66 00 00 00 00
                       03 00 00 00 fb ff 5f 66 01 00 00 00 d2 04 00 00
                       01 00 00 00 00 00 00 00");
        let p = encode_verify_request(1);
        assert_eq!(
            Message::state(MsgType::VerifyRequest, 1, 0x6660_0002, EPOCH, &p).encode(),
            req
        );
        let m = Message::decode(&req).unwrap();
        assert_eq!(decode_verify_request(m.payload), Some(1));

        let csum: [u8; 32] =
            hex("ac0057ee6c0a67dd1c7bb7510594af8e8ebeecede53309e4f393b78a96d33b51")
                .try_into()
                .unwrap();
        let ver = hex("06 00 00 00 01 00 00 00 02 00 60 66 00 00 00 00
                       03 00 00 00 fb ff 5f 66 01 00 00 00 d2 04 00 00
                       01 00 00 00 00 00 00 00 ac 00 57 ee 6c 0a 67 dd
                       1c 7b b7 51 05 94 af 8e 8e be ec ed e5 33 09 e4
                       f3 93 b7 8a 96 d3 3b 51");
        let p = encode_verify(1, &csum);
        assert_eq!(
            Message::state(MsgType::Verify, 1, 0x6660_0002, EPOCH, &p).encode(),
            ver
        );
        assert_eq!(
            decode_verify(Message::decode(&ver).unwrap().payload),
            Some((1, csum))
        );
        assert_eq!(decode_verify(&p[..39]), None);
        assert_eq!(decode_verify_request(&p[..9]), None);
    }

    /// cluster.md §2.7 example A: the header part of a NORMAL message.
    #[test]
    fn normal_header_example_a() {
        let bytes = hex("00 00 01 00 01 00 00 00 00 00 60 66 00 00 00 00
                         07 00 00 00 00 00 00 00 aa");
        let m = Message::normal(1, 1, 0x6660_0000, 7, &[0xaa]);
        assert_eq!(m.encode(), bytes);
        let d = Message::decode(&bytes).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.count(), Some(7));
        assert_eq!(d.epoch(), None);
        assert_eq!(d.kind(), Some(MsgType::Normal));
    }

    #[test]
    fn type_values_are_c_values() {
        for (i, t) in MsgType::ALL.iter().enumerate() {
            assert_eq!(usize::from(t.to_wire()), i);
            assert_eq!(MsgType::from_wire(i as u16), Some(*t));
        }
        assert_eq!(MsgType::from_wire(7), None);
        assert_eq!(MsgType::from_wire(u16::MAX), None);
    }

    #[test]
    fn check_follows_c_order() {
        let sync = Message::state(MsgType::SyncStart, 1, 5, EPOCH, &[]).encode();
        // 1. error mode comes before everything, even garbage.
        let r = Receiver {
            error_mode: true,
            has_membership: false,
            ..rx()
        };
        assert_eq!(check(&r, &[]), Err(Rejected::ErrorMode));
        // 2. no membership before length.
        let r = Receiver {
            has_membership: false,
            ..rx()
        };
        assert_eq!(check(&r, &[]), Err(Rejected::NoMembership));
        // 3. length < 16.
        assert_eq!(check(&rx(), &sync[..15]), Err(Rejected::Short { len: 15 }));
        // 4. protocol version before the type's header length.
        let mut newer = sync[..16].to_vec();
        newer[4] = 2;
        assert_eq!(
            check(&rx(), &newer),
            Err(Rejected::NewerProtocol { version: 2 })
        );
        assert_eq!(
            Rejected::NewerProtocol { version: 2 }.verdict(),
            Verdict::VersionError
        );
        let mut older = sync[..16].to_vec();
        older[4] = 0;
        assert_eq!(
            check(&rx(), &older),
            Err(Rejected::OlderProtocol { version: 0 })
        );
        assert_eq!(
            Rejected::OlderProtocol { version: 0 }.verdict(),
            Verdict::Ignore
        );
        // 5./6. header length by type.
        let normal = Message::normal(3, 1, 5, 9, b"xy").encode();
        assert_eq!(
            check(&rx(), &normal[..23]),
            Err(Rejected::ShortNormal {
                subtype: 3,
                len: 23
            })
        );
        assert_eq!(
            check(&rx(), &sync[..31]),
            Err(Rejected::ShortState {
                msg_type: 1,
                len: 31
            })
        );
        // SYNC_START is exempt from the epoch check; other state messages are not.
        let other = Epoch { epoch: 9, ..EPOCH };
        let foreign_sync = Message::state(MsgType::SyncStart, 1, 5, other, &[]).encode();
        assert!(check(&rx(), &foreign_sync).is_ok());
        let foreign_state = Message::state(MsgType::State, 1, 5, other, b"s").encode();
        assert_eq!(
            check(&rx(), &foreign_state),
            Err(Rejected::WrongEpoch {
                msg_type: 2,
                epoch: other
            })
        );
        assert_eq!(
            Rejected::WrongEpoch {
                msg_type: 2,
                epoch: other
            }
            .verdict(),
            Verdict::Ignore
        );
        // Unknown types pass when the epoch matches; type 7 needs the state header.
        let mut unknown = Message::state(MsgType::State, 1, 5, EPOCH, &[]).encode();
        unknown[0] = 7;
        let m = check(&rx(), &unknown).unwrap();
        assert_eq!(m.kind(), None);
        assert_eq!(m.base.msg_type, 7);
        assert_eq!(check(&rx(), &normal).unwrap().payload, b"xy");
    }

    /// Every prefix of every kind of message decodes or fails cleanly, and a successful decode
    /// re-encodes to the same bytes.
    #[test]
    fn truncation_never_panics() {
        let msgs = [
            Message::normal(1, 1, 5, 9, b"payload").encode(),
            Message::state(MsgType::Verify, 1, 5, EPOCH, &encode_verify(3, &[7; 32])).encode(),
            Message::state(MsgType::UpdateComplete, 0, 5, EPOCH, &[]).encode(),
        ];
        for m in &msgs {
            for n in 0..=m.len() {
                let b = &m[..n];
                if let Ok(d) = Message::decode(b) {
                    assert_eq!(d.encode(), b);
                }
                let _ = check(&rx(), b);
                let _ = decode_verify(b);
                let _ = decode_verify_request(b);
            }
        }
    }
}
