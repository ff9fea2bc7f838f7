//! Golden vectors of the status group: every `pve_kvstore_v1` message that C pmxcfs multicast in
//! a real 3-node cluster (`cpg/tests/vectors/kvstore.jsonl`) decodes to the captured fields and
//! re-encodes to the captured bytes; decoders fed truncated or arbitrary bytes return errors,
//! never panic.

//! The entries inside LOG messages and STATE blobs are checked field by field, and the state
//! merge against C's next rounds, in `src/clusterlog/tests.rs`.

use lwcfs::clusterlog::entry::EntryError;
use lwcfs::clusterlog::{Entry, NewEntry, Ring};
use lwcfs::status::kvstore::{
    self, KvError, KvMessage, PROTOCOL_VERSION, SUBTYPE_LOG, SUBTYPE_UPDATE,
};
use lwcfs_cpg::msg::{Ext, Message, MsgType};
use serde_json::Value;

const KVSTORE: &str = include_str!("../cpg/tests/vectors/kvstore.jsonl");

struct Vector {
    seq: u64,
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

fn vectors() -> Vec<Vector> {
    let v: Vec<Vector> = KVSTORE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let json: Value = serde_json::from_str(l).unwrap();
            let mut bytes = unhex(json["hex"].as_str().unwrap());
            if let Some(full) = json.get("zero_padded_to").and_then(Value::as_u64) {
                bytes.resize(full as usize, 0);
            }
            assert_eq!(bytes.len() as u64, json["len"].as_u64().unwrap());
            Vector {
                seq: json["seq"].as_u64().unwrap(),
                bytes,
                json,
            }
        })
        .collect();
    assert_eq!(v.len(), 35, "vector file changed");
    v
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn s(v: &Value) -> &[u8] {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .as_bytes()
}

#[test]
fn every_captured_kvstore_message_round_trips() {
    let (mut updates, mut logs, mut states, mut sync_starts) = (0, 0, 0, 0);
    for v in vectors() {
        let seq = v.seq;
        let m = Message::decode(&v.bytes).unwrap();
        assert_eq!(m.base.protocol_version, PROTOCOL_VERSION, "seq {seq}");
        let fields = &v.json["fields"];
        match (m.kind(), m.ext) {
            (Some(MsgType::Normal), Ext::Count(count)) => {
                let msg = kvstore::decode(m.base.subtype, m.payload)
                    .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
                let p = &fields["payload"];
                let payload = match msg {
                    KvMessage::Update(up) => {
                        updates += 1;
                        assert_eq!(m.base.subtype, SUBTYPE_UPDATE);
                        assert_eq!(fields["op"], "UPDATE");
                        assert_eq!(up.key, s(&p["key"]), "seq {seq}");
                        assert_eq!(up.value, unhex(p["value_hex"].as_str().unwrap()));
                        assert_eq!(up.value.len() as u64, u(&p["value_len"]));
                        // C leaves garbage after the key's NUL; ours is zero, the rest equal.
                        let ours = kvstore::encode_update(up.key, up.value).unwrap();
                        assert_eq!(ours.len(), m.payload.len(), "seq {seq}");
                        assert_eq!(ours[..=up.key.len()], m.payload[..=up.key.len()]);
                        assert!(ours[up.key.len()..256].iter().all(|&b| b == 0));
                        assert_eq!(ours[256..], m.payload[256..], "seq {seq}");
                        assert_eq!(
                            p["key_field_tail_zero"].as_bool(),
                            Some(up.key_field[up.key.len()..].iter().all(|&b| b == 0))
                        );
                        up.payload_verbatim()
                    }
                    KvMessage::Log(e) => {
                        logs += 1;
                        assert_eq!(m.base.subtype, SUBTYPE_LOG);
                        assert_eq!(fields["op"], "LOG");
                        assert_eq!(e, Entry::decode(m.payload).unwrap());
                        assert_eq!(u64::from(e.uid), u(&p["uid"]), "seq {seq}");
                        assert_eq!(e.msg.len() as u64, u(&p["msg_len"]), "seq {seq}");
                        assert_eq!(m.payload.len(), e.size());
                        kvstore::encode_log(&e)
                    }
                };
                assert_eq!(payload, m.payload, "seq {seq}: payload does not re-encode");
                let whole = Message::normal(
                    m.base.subtype,
                    PROTOCOL_VERSION,
                    m.base.time,
                    count,
                    &payload,
                );
                assert_eq!(whole.encode(), v.bytes, "seq {seq}");
            }
            (Some(MsgType::SyncStart), Ext::Epoch(_)) => {
                sync_starts += 1;
                assert!(m.payload.is_empty(), "seq {seq}");
            }
            (Some(MsgType::State), Ext::Epoch(_)) => {
                states += 1;
                // The state is the sender's whole cluster-log buffer, as the ring keeps it.
                let ring =
                    Ring::from_state(m.payload).unwrap_or_else(|e| panic!("seq {seq}: {e:?}"));
                assert_eq!(u64::from(ring.cpos()), u(&fields["payload"]["cpos"]));
                assert!(ring.bytes() == m.payload, "seq {seq}");
            }
            other => panic!("seq {seq}: unexpected message {other:?}"),
        }
    }
    assert_eq!((updates, logs, states, sync_starts), (17, 1, 12, 5));
}

/// Every prefix of every captured payload: an error or a message, never a panic; the only
/// prefix of an UPDATE that decodes to a different message is one cut inside its value.
#[test]
fn truncated_payloads_are_errors() {
    for v in vectors() {
        let m = Message::decode(&v.bytes).unwrap();
        let end = m.payload.len().min(2048);
        for n in 0..end {
            let p = &m.payload[..n];
            match m.kind() {
                Some(MsgType::Normal) => match kvstore::decode(m.base.subtype, p) {
                    Ok(KvMessage::Update(up)) => {
                        assert!(n >= 256);
                        assert_eq!(up.value, &m.payload[256..n]);
                    }
                    Ok(KvMessage::Log(_)) => panic!("seq {}: a {n}-byte LOG decoded", v.seq),
                    Err(KvError::ShortUpdate { len }) => assert!(len < 256),
                    Err(KvError::Log(_)) => assert_eq!(m.base.subtype, SUBTYPE_LOG),
                    Err(e) => panic!("seq {}: {e}", v.seq),
                },
                Some(MsgType::State) => assert!(Ring::from_state(p).is_err()),
                _ => {}
            }
        }
    }
}

/// The captured LOG with each of its length fields and string terminators broken.
#[test]
fn corrupted_log_is_refused() {
    let v = vectors().into_iter().find(|v| v.seq == 81).unwrap();
    let payload = Message::decode(&v.bytes).unwrap().payload.to_vec();
    for at in [37, 38, 39, 40] {
        let mut p = payload.clone();
        p[at] = p[at].wrapping_add(1);
        assert!(
            matches!(
                kvstore::decode(SUBTYPE_LOG, &p),
                Err(KvError::Log(EntryError::WrongSize { .. }))
            ),
            "length byte {at}"
        );
    }
    // The NUL ending the node name, then the one ending the message.
    for at in [44 + 5, payload.len() - 5] {
        let mut p = payload.clone();
        assert_eq!(p[at], 0);
        p[at] = b'x';
        assert!(matches!(
            kvstore::decode(SUBTYPE_LOG, &p),
            Err(KvError::Log(EntryError::Unterminated(_)))
        ));
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary payloads under any subtype: never a panic; whatever decodes re-encodes
        /// to the same bytes.
        #[test]
        fn decode_arbitrary(subtype in 0u16..5,
                            bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            match kvstore::decode(subtype, &bytes) {
                Ok(KvMessage::Update(up)) => prop_assert_eq!(up.payload_verbatim(), bytes),
                Ok(KvMessage::Log(e)) => prop_assert_eq!(kvstore::encode_log(&e), bytes),
                Err(_) => {}
            }
        }

        /// A LOG-shaped payload with arbitrary header bytes and lengths: never a panic.
        #[test]
        fn decode_log_like(head in proptest::collection::vec(any::<u8>(), 48..49),
                           tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut p = head;
            p.extend_from_slice(&tail);
            if let Ok(KvMessage::Log(e)) = kvstore::decode(SUBTYPE_LOG, &p) {
                prop_assert_eq!(e.size(), p.len());
            }
        }

        /// Entries made here survive a LOG round trip.
        #[test]
        fn entries_round_trip(uid: u32, time: u32, pid: u32, pri in 0u8..8,
                              node in "[a-z0-9-]{1,30}", ident in "[a-z@]{1,20}",
                              tag in "[a-z]{1,20}", msg in "[ -~]{0,300}") {
            let e = Entry::pack(NewEntry { node: node.as_bytes(), ident: ident.as_bytes(),
                                           tag: tag.as_bytes(), pid, time, priority: pri,
                                           msg: msg.as_bytes() }, uid).unwrap();
            let p = kvstore::encode_log(&e);
            prop_assert_eq!(kvstore::decode(SUBTYPE_LOG, &p), Ok(KvMessage::Log(e.clone())));
        }
    }
}
