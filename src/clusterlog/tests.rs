//! The ring, filter, merge and JSON rules of status.md §4, and golden tests against the STATE
//! and LOG messages C multicast in a real cluster (`cpg/tests/vectors/kvstore.jsonl`).

use super::entry::{digest_of_str, MAX_ENTRY};
use super::ring::{merge, sort_c, Ring, DEFAULT_SIZE};
use super::*;

const KVSTORE: &str = include_str!("../../cpg/tests/vectors/kvstore.jsonl");

fn new_entry<'a>(node: &'a str, time: u32, msg: &'a str) -> NewEntry<'a> {
    NewEntry {
        node: node.as_bytes(),
        ident: b"root@pam",
        tag: b"test",
        pid: 4242,
        time,
        priority: 6,
        msg: msg.as_bytes(),
    }
}

fn entry(node: &str, time: u32, uid: u32, msg: &str) -> Entry {
    Entry::pack(new_entry(node, time, msg), uid).unwrap()
}

fn msgs(ring: &Ring) -> Vec<String> {
    ring.walk()
        .map(|(_, e)| String::from_utf8_lossy(jsontext::c_str(&e.msg)).into_owned())
        .collect()
}

#[test]
fn start_entry_json_is_cs_text() {
    let log = ClusterLog::new();
    log.log(NewEntry {
        node: b"vm",
        ident: b"root",
        tag: b"cluster",
        pid: 12861,
        time: 1795583845,
        priority: 6,
        msg: b"starting cluster log",
    });
    assert_eq!(
        log.dump_json(b"", DEFAULT_MAX),
        "{\n\"data\": [\n{\"uid\": 1, \"time\": 1795583845, \"pri\": 6, \"tag\": \"cluster\", \
         \"pid\": 12861, \"node\": \"vm\", \"user\": \"root\", \"msg\": \"starting cluster log\"}\
         \n]\n}\n"
    );
    assert_eq!(
        dump_json(&Ring::new(), b"", 50),
        "{\n\"data\": [\n]\n}\n",
        "no entries"
    );
}

#[test]
fn json_is_newest_first_filtered_and_capped() {
    let log = ClusterLog::new();
    for (i, ident) in ["root@pam", "alice@pve", "root@pam"].iter().enumerate() {
        log.log(NewEntry {
            ident: ident.as_bytes(),
            ..new_entry("n1", 100 + i as u32, &format!("m{i}"))
        });
    }
    let all: serde_json::Value = serde_json::from_str(&log.dump_json(b"", 50)).unwrap();
    let uids: Vec<u64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uid"].as_u64().unwrap())
        .collect();
    assert_eq!(uids, [3, 2, 1]);
    let root: serde_json::Value = serde_json::from_str(&log.dump_json(b"root@pam", 50)).unwrap();
    assert_eq!(root["data"].as_array().unwrap().len(), 2);
    let one: serde_json::Value = serde_json::from_str(&log.dump_json(b"root@pam", 1)).unwrap();
    assert_eq!(one["data"][0]["msg"], "m2");
    let none: serde_json::Value = serde_json::from_str(&log.dump_json(b"root", 50)).unwrap();
    assert_eq!(
        none["data"].as_array().unwrap().len(),
        0,
        "exact ident match only"
    );
}

/// SEMANTICS.md: an ident with `"`, a tag with a newline, a message with a stray backslash
/// still give valid JSON; `\"` and `\uXXXX` in messages decode as C meant them.
#[test]
fn json_stays_valid_whatever_the_strings() {
    let log = ClusterLog::new();
    log.log(NewEntry {
        node: b"n1",
        ident: b"ro\"ot",
        tag: b"t\nag",
        pid: 1,
        time: 5,
        priority: 3,
        msg: "C:\\x \"q\" ä".as_bytes(),
    });
    let text = log.dump_json(b"", 50);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(v["data"][0]["user"], "ro\"ot");
    assert_eq!(v["data"][0]["tag"], "t\nag");
    assert_eq!(v["data"][0]["msg"], "C:\\x \"q\" ä");
    let filtered: serde_json::Value = serde_json::from_str(&log.dump_json(b"ro\"ot", 50)).unwrap();
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
}

#[test]
fn priority_8_logs_nothing_and_uses_no_uid() {
    let log = ClusterLog::new();
    assert!(log
        .log(NewEntry {
            priority: 8,
            ..new_entry("n", 1, "x")
        })
        .is_none());
    let e = log.log(new_entry("n", 1, "y")).unwrap();
    assert_eq!(e.uid, 1);
    assert_eq!(log.entries().len(), 1);
}

/// status.md §4.3: per node, only entries newer in (time, uid) are accepted.
#[test]
fn duplicate_filter_per_node() {
    let log = ClusterLog::new();
    assert!(log.insert(&entry("n1", 100, 5, "a")));
    assert!(
        !log.insert(&entry("n1", 100, 5, "again")),
        "same (time, uid)"
    );
    assert!(!log.insert(&entry("n1", 100, 4, "lower uid, same second")));
    assert!(!log.insert(&entry("n1", 99, 9, "older time")));
    assert!(log.insert(&entry("n1", 100, 6, "higher uid")));
    assert!(log.insert(&entry("n1", 101, 1, "newer time, uid restarted")));
    assert!(log.insert(&entry("n2", 50, 1, "other node")));
    assert_eq!(log.entries().len(), 4);
}

/// status.md §4.2: entries are appended, wrap to offset 8 when the next one would reach the
/// end, and walks stop before the zone the newest entry may have overwritten.
#[test]
fn ring_wraps_and_walks_stop_before_overwritten_space() {
    let mut ring = Ring::new();
    let big = |i: u32| {
        let mut e = entry("n1", 1000 + i, i, &"x".repeat(MAX_ENTRY));
        assert_eq!(e.aligned_size(), MAX_ENTRY, "{}", e.size());
        e.uid = i;
        e
    };
    // 31 entries of 4096 bytes fill offsets 8..126984; the 32nd wraps to 8.
    for i in 1..=31 {
        ring.push(&big(i));
    }
    assert_eq!(ring.walk().count(), 31);
    assert_eq!(ring.cpos() as usize, 8 + 30 * MAX_ENTRY);
    ring.push(&big(32));
    assert_eq!(ring.cpos(), 8);
    // The walk goes 32 (at 8) → 31 → … and stops at entry 2 (offset 4104, inside the zone
    // (8, 8 + 4096]).
    let uids: Vec<u32> = ring.walk().map(|(_, e)| e.uid).collect();
    assert_eq!(uids.len(), 30);
    assert_eq!((uids[0], uids[29]), (32, 3));
    for n in 33..=40 {
        ring.push(&big(n));
        assert_eq!(ring.walk().count(), 30, "after {n}");
    }
}

/// The JSON export includes the oldest entry when a walk ends at a wrap (C omits it,
/// status.md §7.3 #7).
#[test]
fn walk_includes_the_entry_where_the_chain_wraps() {
    let mut ring = Ring::new();
    // Small entries first, then big ones, so that a later lap ends below an old position.
    let mut uid = 0;
    let mut push = |ring: &mut Ring, len: usize| {
        uid += 1;
        ring.push(&entry("n1", 10 + uid, uid, &"y".repeat(len)));
    };
    // A first lap of small entries (168 bytes) ended by a big one (3072) that wraps to 8,
    // then a second lap of small ones that passes where the first lap's last entry was: the
    // big entry's `prev` now points into overwritten space.
    for _ in 0..762 {
        push(&mut ring, 100);
    }
    push(&mut ring, 3000);
    assert_eq!(ring.cpos(), 8);
    for _ in 0..750 {
        push(&mut ring, 100);
    }
    let walked: Vec<u32> = ring.walk().map(|(_, e)| e.uid).collect();
    let (last_off, last) = ring.walk().last().unwrap();
    assert_eq!(
        (last_off, last.uid),
        (8, 763),
        "the walk ends at the big entry"
    );
    assert_eq!(walked.len(), 751);
    let json: serde_json::Value = serde_json::from_str(&dump_json(&ring, b"", 2000)).unwrap();
    assert_eq!(json["data"].as_array().unwrap().len(), walked.len());
    // Consecutive uids newest first: nothing in the middle is lost.
    assert!(walked.windows(2).all(|w| w[0] == w[1] + 1), "{walked:?}");
}

#[test]
fn sort_is_time_then_digest_then_uid() {
    let mut v = vec![
        entry("n2", 5, 2, "c"),
        entry("n1", 5, 9, "b"),
        entry("n1", 5, 1, "a"),
        entry("n1", 4, 7, "first"),
    ];
    sort_c(&mut v);
    let order: Vec<(u32, u32)> = v.iter().map(|e| (e.time, e.uid)).collect();
    // C: digest(n1) vs digest(n2) compared by their difference truncated to int.
    let d1 = digest_of_str(b"n1");
    let d2 = digest_of_str(b"n2");
    let n1_first = (d1.wrapping_sub(d2) as u32 as i32) < 0;
    if n1_first {
        assert_eq!(order, [(4, 7), (5, 1), (5, 9), (5, 2)]);
    } else {
        assert_eq!(order, [(4, 7), (5, 2), (5, 1), (5, 9)]);
    }
}

#[test]
fn merge_takes_the_newest_union_without_duplicates() {
    let mut a = Ring::new();
    let mut b = Ring::new();
    for (t, uid) in [(10, 1), (12, 2), (14, 3)] {
        a.push(&entry("n1", t, uid, "a"));
    }
    // An entry with time 0 is never picked: it ends b's cursor.
    b.push(&entry("n2", 0, 2, "time zero, never picked"));
    b.push(&entry("n2", 11, 1, "b"));
    b.push(&entry("n1", 12, 2, "a")); // seen by both
    let (m, mut dedup) = merge(&[Some(&a), Some(&b)]);
    let times: Vec<u32> = m.walk().map(|(_, e)| e.time).collect();
    assert_eq!(times, [14, 12, 11, 10]);
    assert!(!dedup.accept(&entry("n1", 14, 3, "dup")));
    assert!(dedup.accept(&entry("n2", 11, 2, "next")));
    let (m2, _) = merge(&[Some(&b), None, Some(&a)]);
    assert_eq!(m2, m, "order of members does not change the result here");
}

#[test]
fn merge_keeps_about_127_kb() {
    let mut a = Ring::new();
    let mut b = Ring::new();
    for i in 0..200u32 {
        let r = if i % 2 == 0 { &mut a } else { &mut b };
        r.push(&entry(
            if i % 2 == 0 { "n1" } else { "n2" },
            1000 + i,
            i,
            &"z".repeat(900),
        ));
    }
    let (m, _) = merge(&[Some(&a), Some(&b)]);
    let kept: Vec<u32> = m.walk().map(|(_, e)| e.time).collect();
    let bytes: usize = m.walk().map(|(_, e)| e.aligned_size()).sum();
    assert!(bytes >= DEFAULT_SIZE - 8 - MAX_ENTRY, "{bytes}");
    assert!(bytes < DEFAULT_SIZE - 8, "{bytes}");
    assert_eq!(kept[0], 1199, "the newest are kept");
    assert!(kept.windows(2).all(|w| w[0] == w[1] + 1));
}

proptest::proptest! {
    #[test]
    fn malformed_states_never_panic(
        mut blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 9..2048),
        cpos in 0u32..2048,
    ) {
        let len = blob.len() as u32;
        blob[..4].copy_from_slice(&len.to_le_bytes());
        blob[4..8].copy_from_slice(&cpos.to_le_bytes());
        let ring = Ring::from_state(&blob).unwrap();
        let _ = ring.walk().count();
        let _ = ring.sorted();
        let _ = dump_json(&ring, b"", 1000);
        let local = Ring::new();
        let _ = merge(&[Some(&local), Some(&ring), Some(&ring)]);
    }
}

// ---- golden: the C daemon's own STATE and LOG messages ----

struct State {
    seq: u64,
    blob: Vec<u8>,
    fields: serde_json::Value,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Vec<serde_json::Value> {
    KVSTORE
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn states() -> Vec<State> {
    vectors()
        .into_iter()
        .filter(|v| v["name"] == "STATE")
        .map(|v| {
            let mut msg = unhex(v["hex"].as_str().unwrap());
            msg.resize(v["zero_padded_to"].as_u64().unwrap() as usize, 0);
            State {
                seq: v["seq"].as_u64().unwrap(),
                blob: msg[32..].to_vec(),
                fields: v["fields"]["payload"].clone(),
            }
        })
        .collect()
}

fn state(seq: u64) -> Vec<u8> {
    states().into_iter().find(|s| s.seq == seq).unwrap().blob
}

fn check_fields(e: &Entry, f: &serde_json::Value) {
    let s = |b: &[u8]| String::from_utf8(jsontext::c_str(b).to_vec()).unwrap();
    assert_eq!(u64::from(e.uid), f["uid"].as_u64().unwrap());
    assert_eq!(u64::from(e.time), f["time"].as_u64().unwrap());
    assert_eq!(format!("{:016x}", e.node_digest), f["node_digest"]);
    assert_eq!(format!("{:016x}", e.ident_digest), f["ident_digest"]);
    assert_eq!(u64::from(e.pid), f["pid"].as_u64().unwrap());
    assert_eq!(u64::from(e.priority), f["priority"].as_u64().unwrap());
    assert_eq!(s(&e.node), f["node"]);
    assert_eq!(s(&e.ident), f["ident"]);
    assert_eq!(s(&e.tag), f["tag"]);
    assert_eq!(s(&e.msg), f["msg"]);
    assert_eq!(e.msg.len() as u64, f["msg_len"].as_u64().unwrap());
    assert_eq!(e.node_digest, digest_of_str(jsontext::c_str(&e.node)));
}

/// Every captured STATE blob decodes to its fields, is already in C's sorted form, and is
/// rebuilt byte for byte from its entries.
#[test]
fn golden_state_blobs_decode_and_rebuild() {
    let all = states();
    assert_eq!(all.len(), 12);
    for st in all {
        let ring = Ring::from_state(&st.blob).unwrap();
        assert_eq!(ring.bytes().len(), DEFAULT_SIZE);
        assert_eq!(u64::from(ring.cpos()), st.fields["cpos"].as_u64().unwrap());
        let mut walked: Vec<(u32, Entry)> = ring.walk().collect();
        walked.reverse();
        let want = st.fields["entries"].as_array().unwrap();
        assert_eq!(walked.len(), want.len(), "seq {}", st.seq);
        for ((off, e), f) in walked.iter().zip(want) {
            assert_eq!(u64::from(*off), f["offset"].as_u64().unwrap());
            check_fields(e, f);
        }
        assert!(ring.sorted() == ring, "seq {}: C sent it sorted", st.seq);
        let mut rebuilt = Ring::new();
        for (_, e) in &walked {
            rebuilt.push(e);
        }
        assert!(rebuilt.bytes() == &st.blob[..], "seq {}", st.seq);
    }
}

/// The captured LOG message's entry (seq 81) decodes and re-encodes identically.
#[test]
fn golden_log_entry_round_trips() {
    let v = vectors().into_iter().find(|v| v["seq"] == 81).unwrap();
    let msg = unhex(v["hex"].as_str().unwrap());
    let e = Entry::decode(&msg[24..]).unwrap();
    check_fields(&e, &v["fields"]["payload"]);
    assert_eq!(e.encode(), &msg[24..]);
}

/// Members that took part in a sync round send byte-identical STATE blobs afterwards: the
/// merge of one round's states is the next round's state (vectors/README.md).
#[test]
fn golden_merge_reproduces_cs_next_round() {
    let merged = |seqs: &[u64]| {
        let blobs: Vec<Vec<u8>> = seqs.iter().map(|s| state(*s)).collect();
        let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let log = ClusterLog::new();
        // Node 1 is the local member: its live log holds what it sent.
        for (_, e) in Ring::from_state(refs[0]).unwrap().walk() {
            log.insert(&e);
        }
        assert!(log.merge(&refs, 0).is_empty());
        log
    };
    // Round join-node2 (8, 10) → round join-node3 (17 from node 1, 19 from node 2).
    let log = merged(&[8, 10]);
    assert!(log.state() == state(17));
    assert!(state(17) == state(19));
    // Round join-node3 (17, 19, 20) → round stop-node3 (55, 56).
    assert!(merged(&[17, 19, 20]).state() == state(55));
    assert!(state(55) == state(56));
    // Round restart-node3 (67, 70, 71), then node 1's LOG (seq 81) → round stop-node1.
    let log = merged(&[67, 70, 71]);
    let v = vectors().into_iter().find(|v| v["seq"] == 81).unwrap();
    let e = Entry::decode(&unhex(v["hex"].as_str().unwrap())[24..]).unwrap();
    assert!(log.insert(&e));
    assert!(log.state() == state(90));
    assert!(state(90) == state(91));
}

#[test]
fn refused_states_are_reported_and_skipped() {
    let log = ClusterLog::new();
    log.log(new_entry("n1", 5, "mine"));
    let mut short = state(17);
    short.truncate(1000);
    let bad = log.merge(&[&[], &short, b"12345678"], 0);
    assert_eq!(bad.len(), 2);
    assert_eq!(msgs(&Ring::from_state(&log.state()).unwrap()), ["mine"]);
}
