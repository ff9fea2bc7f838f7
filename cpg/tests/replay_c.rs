//! The DFSM replayed against a real C node: node 1 of the captured 3-node cluster
//! (`tests/vectors/dcdb.jsonl`, group `pve_dcdb_v1`).
//!
//! Node 1's deliveries are fed to our DFSM in node 1's delivery order, with the membership
//! changes of the scenario; node 1's own sends (writes, the verify request) are made where the
//! C node made them. Our DFSM must then multicast exactly the messages C node 1 multicast, in
//! the same order: SYNC_START at each membership change, STATE on its own SYNC_START, the
//! UPDATEs and UPDATE_COMPLETE when it is the data leader, VERIFY on its own request, and the
//! application's UNLOCK from inside the delivery of an UNLOCK_REQUEST. Bytes are compared
//! exactly, except the base header's send time of messages sent in reaction to a delivery
//! (C reads its clock there; we pass the delivery's time).
//!
//! The application is scripted (this crate knows nothing of memdb): its STATEs, UPDATE
//! payloads and checksum are node 1's captured ones; the leader rule and the synced set are
//! computed from the STATEs as dcdb computes them.

use std::collections::{BTreeMap, VecDeque};

use lwcfs_cpg::dfsm::{Effect, Outgoing, SendKind};
use lwcfs_cpg::msg::{Message, MsgType};
use lwcfs_cpg::{App, Config, Ctx, Dfsm, Effects, Failure, MemberId, Mode, Normal, SyncRound};
use serde_json::Value;

const DCDB: &str = include_str!("vectors/dcdb.jsonl");

struct Line {
    seq: u64,
    step: String,
    from: MemberId,
    to: Vec<u32>,
    bytes: Vec<u8>,
}

impl Line {
    fn msg(&self) -> Message<'_> {
        Message::decode(&self.bytes).unwrap()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn lines() -> Vec<Line> {
    DCDB.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let n = |k: &str| v[k].as_u64().unwrap();
            Line {
                seq: n("seq"),
                step: v["step"].as_str().unwrap().to_owned(),
                from: MemberId::new(n("from_nodeid") as u32, n("from_pid") as u32),
                to: v["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
                bytes: unhex(v["hex"].as_str().unwrap()),
            }
        })
        .collect()
}

/// dcdb's view of a STATE: the index header's version and mtime, and its entries.
fn index(state: &[u8]) -> (u64, u32, Vec<[u8; 40]>) {
    let version = u64::from_le_bytes(state[0..8].try_into().unwrap());
    let mtime = u32::from_le_bytes(state[20..24].try_into().unwrap());
    let entries = state[32..]
        .chunks_exact(40)
        .map(|c| c.try_into().unwrap())
        .collect();
    (version, mtime, entries)
}

fn inode(e: &[u8; 40]) -> u64 {
    u64::from_le_bytes(e[..8].try_into().unwrap())
}

#[derive(Default)]
struct Scripted {
    /// Node 1's STATE payloads, in order.
    states: VecDeque<Vec<u8>>,
    /// Node 1's UPDATE payloads by inode.
    updates: BTreeMap<u64, Vec<u8>>,
    checksum: [u8; 32],
    /// Whether the lock of the next UNLOCK_REQUEST has expired (node 1's lock table).
    expire: bool,
    delivered: Vec<(MemberId, u16, u64)>,
    received_updates: usize,
    commits: usize,
}

impl App for Scripted {
    fn deliver(&mut self, ctx: &mut Ctx<'_>, m: Normal<'_>) -> Result<i32, Failure> {
        self.delivered.push((m.from, m.subtype, m.count));
        if m.subtype == 7 && ctx.is_lowest() && std::mem::take(&mut self.expire) {
            ctx.send_message(8, m.payload);
        }
        Ok(0)
    }

    fn get_state(&mut self, _ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Failure> {
        Ok(self.states.pop_front().expect("a scripted state"))
    }

    fn process_state_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &mut SyncRound,
    ) -> Result<(), Failure> {
        let states: Vec<Vec<u8>> = round
            .members()
            .iter()
            .map(|n| n.state.clone().unwrap())
            .collect();
        let mut leader = 0;
        for (i, s) in states.iter().enumerate() {
            let (v, m, _) = index(s);
            let (lv, lm, _) = index(&states[leader]);
            if v > lv || (v == lv && m > lm) {
                leader = i;
            }
        }
        for (i, s) in states.iter().enumerate() {
            if i == leader || *s == states[leader] {
                round.set_synced(i, true);
            }
        }
        if round.members()[leader].id == ctx.local() {
            let (_, _, mine) = index(&states[leader]);
            let mut send = std::collections::BTreeSet::new();
            for s in &states {
                let (_, _, theirs) = index(s);
                for e in &mine {
                    if !theirs.contains(e) {
                        send.insert(inode(e));
                    }
                }
            }
            for i in send {
                ctx.send_update(&self.updates[&i]);
            }
            ctx.send_update_complete();
        }
        Ok(())
    }

    fn process_update(
        &mut self,
        _: &mut Ctx<'_>,
        _: &SyncRound,
        _: MemberId,
        _: &[u8],
    ) -> Result<(), Failure> {
        self.received_updates += 1;
        Ok(())
    }

    fn commit(&mut self, _ctx: &mut Ctx<'_>, _round: &SyncRound) -> Result<(), Failure> {
        self.commits += 1;
        Ok(())
    }

    fn has_checksum(&self) -> bool {
        true
    }

    fn checksum(&mut self) -> Result<[u8; 32], Failure> {
        Ok(self.checksum)
    }
}

/// A membership change: members, left, joined.
type Confchg = (Vec<MemberId>, Vec<MemberId>, Vec<MemberId>);

/// What node 1 sends on its own initiative (the rest is a reaction to a delivery).
fn spontaneous(l: &Line) -> bool {
    let m = l.msg();
    matches!(m.kind(), Some(MsgType::VerifyRequest))
        || (m.kind() == Some(MsgType::Normal) && m.base.subtype != 8)
}

fn without_time(b: &[u8]) -> Vec<u8> {
    let mut b = b.to_vec();
    b[8..12].fill(0);
    b
}

#[test]
fn node1_sends_what_the_c_node_sent() {
    let all = lines();
    let me = MemberId::new(1, 1116);
    let n2 = MemberId::new(2, 1186);
    let n3 = MemberId::new(3, 1292);
    let n3b = MemberId::new(3, 3055);

    let mut app = Scripted::default();
    for l in all.iter().filter(|l| l.from == me) {
        let m = l.msg();
        match m.kind() {
            Some(MsgType::State) => app.states.push_back(m.payload.to_vec()),
            Some(MsgType::Update) => {
                let ino = u64::from_le_bytes(m.payload[8..16].try_into().unwrap());
                app.updates.insert(ino, m.payload.to_vec());
            }
            Some(MsgType::Verify) => app.checksum = m.payload[8..40].try_into().unwrap(),
            _ => {}
        }
    }

    let cfg = Config {
        protocol_version: 1,
        verify_interval: Some(3600),
        c_reorder_window: false,
    };
    let start = all[0].msg().base.time - 10;
    let mut dfsm = Dfsm::new(cfg, me, app, start);
    let mut fx = Effects::new();
    dfsm.initialize(me, &mut fx).unwrap();
    dfsm.on_confchg(&[me], &[], &[me], start, &mut fx);
    assert_eq!(dfsm.mode(), Mode::Synced);

    // The membership changes of the scenario, before the first message of their step; the
    // epoch's time is the one the SYNC_START carried.
    let confchgs: BTreeMap<&str, Confchg> = [
        ("join-node2", (vec![me, n2], vec![], vec![n2])),
        ("join-node3", (vec![me, n2, n3], vec![], vec![n3])),
        ("stop-node3", (vec![me, n2], vec![n3], vec![])),
        ("restart-node3", (vec![me, n2, n3b], vec![], vec![n3b])),
    ]
    .into_iter()
    .collect();

    let mut sent: VecDeque<Outgoing> = VecDeque::new();
    let mut results = Vec::new();
    let mut collect = |fx: &mut Effects, sent: &mut VecDeque<Outgoing>| {
        for e in fx.drain() {
            match e {
                Effect::Send(o) => sent.push_back(o),
                Effect::Result { count, result } => results.push((count, result)),
                _ => {}
            }
        }
    };
    collect(&mut fx, &mut sent);
    let mut presend: usize = 0; // lines already sent ahead (a run of spontaneous sends)
    let mut step = String::new();
    let mut compared = 0;

    for (k, l) in all.iter().enumerate() {
        if !l.to.contains(&1) {
            continue; // after node 1 stopped
        }
        if l.step != step {
            step = l.step.clone();
            if let Some((members, left, joined)) = confchgs.get(step.as_str()) {
                let epoch = l
                    .msg()
                    .epoch()
                    .expect("a step with a confchg starts with SYNC_START");
                dfsm.on_confchg(members, left, joined, epoch.time, &mut fx);
                collect(&mut fx, &mut sent);
            }
        }
        let m = l.msg();
        if l.from == me {
            if spontaneous(l) && presend <= k {
                // Node 1's sender threads do not wait between these.
                let mut j = k;
                while j < all.len() && all[j].from == me && spontaneous(&all[j]) {
                    let mj = all[j].msg();
                    if mj.kind() == Some(MsgType::VerifyRequest) {
                        dfsm.request_verify(mj.base.time, &mut fx);
                    } else {
                        dfsm.send_message(mj.base.subtype, mj.payload, mj.base.time, &mut fx);
                    }
                    collect(&mut fx, &mut sent);
                    j += 1;
                }
                presend = j;
            }
            let out = sent
                .pop_front()
                .unwrap_or_else(|| panic!("seq {}: node 1 sent nothing", l.seq));
            if spontaneous(l) {
                assert_eq!(out.bytes, l.bytes, "seq {}", l.seq);
            } else {
                assert_eq!(
                    without_time(&out.bytes),
                    without_time(&l.bytes),
                    "seq {}",
                    l.seq
                );
            }
            let kind = match m.kind().unwrap() {
                MsgType::Normal => SendKind::Normal,
                MsgType::SyncStart => SendKind::SyncStart,
                MsgType::State => SendKind::State,
                MsgType::Update => SendKind::Update,
                MsgType::UpdateComplete => SendKind::UpdateComplete,
                MsgType::VerifyRequest => SendKind::VerifyRequest,
                MsgType::Verify => SendKind::Verify,
            };
            assert_eq!(out.kind, kind, "seq {}", l.seq);
            compared += 1;
        }
        if l.seq == 82 {
            dfsm.app_mut().expire = true; // 125 s after the mkdir: node 1 finds it expired
        }
        dfsm.on_deliver(l.from, &l.bytes, m.base.time, &mut fx);
        collect(&mut fx, &mut sent);
        assert!(!dfsm.mode().is_error(), "seq {}: {:?}", l.seq, dfsm.mode());
    }
    assert!(sent.is_empty(), "node 1 sent more than C: {sent:?}");
    assert_eq!(compared, all.iter().filter(|l| l.from == me).count());
    assert_eq!(dfsm.mode(), Mode::Synced);

    let app = dfsm.app();
    // Node 1 waited for node 2's data when node 2 joined (seq 6, 7) and for node 3's when
    // node 3 joined (seq 22, 23); it was the leader afterwards.
    assert_eq!(app.received_updates, 4);
    assert_eq!(app.commits, 2);
    // Every NORMAL message node 1 received was applied once, in delivery order.
    let normals: Vec<(MemberId, u16, u64)> = all
        .iter()
        .filter(|l| l.to.contains(&1) && l.msg().kind() == Some(MsgType::Normal))
        .map(|l| (l.from, l.msg().base.subtype, l.msg().count().unwrap()))
        .collect();
    assert_eq!(app.delivered, normals);
    // And node 1's own senders got their results, each once, in count order.
    let own: Vec<u64> = normals.iter().filter(|n| n.0 == me).map(|n| n.2).collect();
    assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), own);
}
