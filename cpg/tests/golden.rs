//! Golden vectors: every DFSM message that C pmxcfs multicast in a real 3-node cluster
//! (`tests/vectors/*.jsonl`, see `tests/vectors/README.md`) decodes to the captured fields,
//! passes the receive-side checks of a member of that round, and re-encodes to the same bytes.

use lwcfs_cpg::msg::{
    check, decode_verify, decode_verify_request, encode_verify, encode_verify_request, Epoch, Ext,
    Message, MsgType, Receiver, Rejected, BASE_HEADER_LEN,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const DCDB: &str = include_str!("vectors/dcdb.jsonl");
const KVSTORE: &str = include_str!("vectors/kvstore.jsonl");

struct Vector {
    seq: u64,
    group: String,
    bytes: Vec<u8>,
    json: Value,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors(text: &str) -> Vec<Vector> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let json: Value = serde_json::from_str(l).unwrap();
            let mut bytes = unhex(json["hex"].as_str().unwrap());
            if let Some(full) = json.get("zero_padded_to").and_then(Value::as_u64) {
                bytes.resize(full as usize, 0);
                let sha: [u8; 32] = Sha256::digest(&bytes).into();
                assert_eq!(
                    sha.to_vec(),
                    unhex(json["sha256"].as_str().unwrap()),
                    "padding"
                );
            }
            assert_eq!(bytes.len() as u64, json["len"].as_u64().unwrap());
            Vector {
                seq: json["seq"].as_u64().unwrap(),
                group: json["group"].as_str().unwrap().to_owned(),
                bytes,
                json,
            }
        })
        .collect()
}

fn all() -> Vec<Vector> {
    let mut v = vectors(DCDB);
    v.extend(vectors(KVSTORE));
    assert_eq!(v.len(), 58 + 35, "vector files changed");
    v
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn epoch_of(h: &Value) -> Epoch {
    let e = &h["epoch"];
    Epoch {
        epoch: u(&e["epoch"]) as u32,
        time: u(&e["time"]) as u32,
        nodeid: u(&e["nodeid"]) as u32,
        pid: u(&e["pid"]) as u32,
    }
}

#[test]
fn every_captured_message_round_trips() {
    for v in all() {
        let m = Message::decode(&v.bytes).unwrap_or_else(|e| panic!("seq {}: {e}", v.seq));
        let h = &v.json["fields"]["header"];
        assert_eq!(u64::from(m.base.msg_type), u(&h["type"]), "seq {}", v.seq);
        assert_eq!(
            u64::from(m.base.msg_type),
            u(&v.json["type"]),
            "seq {}",
            v.seq
        );
        assert_eq!(u64::from(m.base.subtype), u(&h["subtype"]), "seq {}", v.seq);
        assert_eq!(
            u64::from(m.base.protocol_version),
            u(&h["protocol_version"])
        );
        assert_eq!(u64::from(m.base.time), u(&h["time"]), "seq {}", v.seq);
        assert_eq!(
            u64::from(m.base.reserved),
            u(&h["reserved"]),
            "seq {}",
            v.seq
        );
        match m.ext {
            Ext::Count(c) => assert_eq!(c, u(&h["count"]), "seq {}", v.seq),
            Ext::Epoch(e) => assert_eq!(e, epoch_of(h), "seq {}", v.seq),
        }
        assert_eq!(m.payload.len(), v.bytes.len() - m.header_len());
        assert_eq!(m.encode(), v.bytes, "seq {} does not re-encode", v.seq);

        // Rebuilt from the decoded fields with the constructors a sender uses.
        let rebuilt = match (m.kind().unwrap(), m.ext) {
            (MsgType::Normal, Ext::Count(c)) => Message::normal(
                m.base.subtype,
                m.base.protocol_version,
                m.base.time,
                c,
                m.payload,
            ),
            (t, Ext::Epoch(e)) => {
                assert_eq!(m.base.subtype, 0);
                Message::state(t, m.base.protocol_version, m.base.time, e, m.payload)
            }
            other => panic!("seq {}: type/header mismatch {other:?}", v.seq),
        };
        assert_eq!(rebuilt.encode(), v.bytes, "seq {}", v.seq);
    }
}

/// The protocol version is 1 in every dcdb header and 0 in every kvstore header, state
/// messages included (cluster.md §2.5).
#[test]
fn protocol_version_per_group() {
    for v in all() {
        let m = Message::decode(&v.bytes).unwrap();
        let want = match v.group.as_str() {
            "pve_dcdb_v1" => 1,
            "pve_kvstore_v1" => 0,
            g => panic!("unknown group {g}"),
        };
        assert_eq!(m.base.protocol_version, want, "seq {}", v.seq);
    }
}

/// A member of the round accepts every captured message; one of a newer protocol version
/// stops, one of an older one ignores it.
#[test]
fn receive_checks_accept_captured_messages() {
    for v in all() {
        let m = Message::decode(&v.bytes).unwrap();
        let rx = Receiver {
            protocol_version: m.base.protocol_version,
            error_mode: false,
            has_membership: true,
            epoch: m.epoch().unwrap_or_default(),
        };
        assert_eq!(check(&rx, &v.bytes), Ok(m), "seq {}", v.seq);
        let older = Receiver {
            protocol_version: rx.protocol_version + 1,
            ..rx
        };
        assert!(matches!(
            check(&older, &v.bytes),
            Err(Rejected::OlderProtocol { .. })
        ));
        if rx.protocol_version > 0 {
            let newer = Receiver {
                protocol_version: rx.protocol_version - 1,
                ..rx
            };
            assert!(matches!(
                check(&newer, &v.bytes),
                Err(Rejected::NewerProtocol { .. })
            ));
        }
        if let Some(e) = m.epoch() {
            let stale = Receiver {
                epoch: Epoch {
                    epoch: e.epoch.wrapping_add(1),
                    ..e
                },
                ..rx
            };
            let r = check(&stale, &v.bytes);
            if m.kind() == Some(MsgType::SyncStart) {
                assert_eq!(r, Ok(m), "SYNC_START is exempt from the epoch check");
            } else {
                assert!(
                    matches!(r, Err(Rejected::WrongEpoch { .. })),
                    "seq {}",
                    v.seq
                );
            }
        }
    }
}

#[test]
fn verify_payloads() {
    let mut seen = 0;
    for v in all() {
        let m = Message::decode(&v.bytes).unwrap();
        let p = &v.json["fields"]["payload"];
        match m.kind() {
            Some(MsgType::VerifyRequest) => {
                let id = decode_verify_request(m.payload).unwrap();
                assert_eq!(id, u(&p["csum_id"]));
                assert_eq!(encode_verify_request(id).as_slice(), m.payload);
                seen += 1;
            }
            Some(MsgType::Verify) => {
                let (id, csum) = decode_verify(m.payload).unwrap();
                assert_eq!(id, u(&p["csum_id"]));
                assert_eq!(csum.to_vec(), unhex(p["csum"].as_str().unwrap()));
                assert_eq!(encode_verify(id, &csum).as_slice(), m.payload);
                seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen, 2);
}

/// Every state message of a round carries the SYNC_START sender's epoch, and SYNC_START comes
/// from the lowest node id present (cluster.md §2.5, vectors README "Protocol rules").
#[test]
fn state_messages_carry_the_sync_start_epoch() {
    for text in [DCDB, KVSTORE] {
        let mut round: Option<Epoch> = None;
        for v in vectors(text) {
            let m = Message::decode(&v.bytes).unwrap();
            match (m.kind(), m.epoch()) {
                (Some(MsgType::SyncStart), Some(e)) => {
                    let sender = u(&v.json["from_nodeid"]) as u32;
                    assert_eq!(e.nodeid, sender);
                    let lowest = v.json["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(u)
                        .min()
                        .unwrap();
                    assert_eq!(u64::from(sender), lowest, "seq {}", v.seq);
                    round = Some(e);
                }
                (Some(MsgType::State | MsgType::Update | MsgType::UpdateComplete), Some(e)) => {
                    assert_eq!(Some(e), round, "seq {}", v.seq);
                }
                _ => {}
            }
        }
    }
}

/// Every prefix of every captured message: decoding never panics, and whatever decodes
/// re-encodes to exactly the prefix.
#[test]
fn truncated_captures_never_panic() {
    for v in all() {
        let end = v.bytes.len().min(600);
        for n in 0..=end {
            let b = &v.bytes[..n];
            match Message::decode(b) {
                Ok(m) => assert_eq!(m.encode(), b),
                Err(_) => assert!(n < 32, "seq {}: a {n}-byte prefix must decode", v.seq),
            }
            let rx = Receiver {
                protocol_version: 1,
                error_mode: false,
                has_membership: true,
                epoch: Epoch::default(),
            };
            let r = check(&rx, b);
            if n < BASE_HEADER_LEN {
                assert_eq!(r, Err(Rejected::Short { len: n }));
            }
        }
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes: decode and check never panic; a decoded message re-encodes to the
        /// input.
        #[test]
        fn decode_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..80),
                            proto in 0u32..3, error_mode: bool, member: bool) {
            if let Ok(m) = Message::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes.clone());
            }
            let rx = Receiver {
                protocol_version: proto,
                error_mode,
                has_membership: member,
                epoch: Epoch::default(),
            };
            if let Ok(m) = check(&rx, &bytes) {
                prop_assert!(!error_mode && member);
                prop_assert_eq!(m.base.protocol_version, proto);
                prop_assert_eq!(m.encode(), bytes);
            }
        }

        /// Any message built by the constructors decodes back to itself.
        #[test]
        fn encode_decode(t in 0usize..7, subtype: u16, proto: u32, time: u32, count: u64,
                         e: (u32, u32, u32, u32),
                         payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let epoch = Epoch { epoch: e.0, time: e.1, nodeid: e.2, pid: e.3 };
            let m = match MsgType::ALL[t] {
                MsgType::Normal => Message::normal(subtype, proto, time, count, &payload),
                k => Message::state(k, proto, time, epoch, &payload),
            };
            let bytes = m.encode();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert_eq!(Message::decode(&bytes), Ok(m));
        }
    }
}
