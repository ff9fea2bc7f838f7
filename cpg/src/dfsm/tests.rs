//! Single-node DFSM behaviour, C rule by C rule (cluster.md §2.4, §3, §5).

use super::*;
use crate::msg::Rejected;

const T: u32 = 1_000;
const A: MemberId = MemberId {
    nodeid: NodeId(1),
    pid: 11,
};
const B: MemberId = MemberId {
    nodeid: NodeId(2),
    pid: 22,
};
const C: MemberId = MemberId {
    nodeid: NodeId(3),
    pid: 33,
};
const CFG: Config = Config {
    protocol_version: 1,
    verify_interval: Some(60),
    c_reorder_window: false,
};

/// A scripted application that records its callbacks.
struct Probe {
    state: Vec<u8>,
    /// Who process_state_update marks synced (`None`: everyone).
    synced: Option<Vec<MemberId>>,
    /// Send UPDATE + UPDATE_COMPLETE when this node is first in the table.
    lead: bool,
    deliver: Result<i32, Failure>,
    state_update: Result<(), Failure>,
    checksum: Option<[u8; 32]>,
    delivered: Vec<(MemberId, u64)>,
    calls: Vec<&'static str>,
}

impl Default for Probe {
    fn default() -> Probe {
        Probe {
            state: b"S".to_vec(),
            synced: None,
            lead: false,
            deliver: Ok(0),
            state_update: Ok(()),
            checksum: None,
            delivered: Vec::new(),
            calls: Vec::new(),
        }
    }
}

impl App for Probe {
    fn deliver(&mut self, _ctx: &mut Ctx<'_>, m: Normal<'_>) -> Result<i32, Failure> {
        self.delivered.push((m.from, m.count));
        self.deliver
    }
    fn get_state(&mut self, _ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Failure> {
        self.calls.push("get_state");
        Ok(self.state.clone())
    }
    fn process_state_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &mut SyncRound,
    ) -> Result<(), Failure> {
        self.calls.push("process_state_update");
        for i in 0..round.members().len() {
            let id = round.members()[i].id;
            if self.synced.as_ref().is_none_or(|s| s.contains(&id)) {
                round.set_synced(i, true);
            }
        }
        if self.lead && round.local() == Some(0) {
            ctx.send_update(b"u");
            ctx.send_update_complete();
        }
        self.state_update
    }
    fn process_update(
        &mut self,
        _: &mut Ctx<'_>,
        _: &SyncRound,
        _: MemberId,
        _: &[u8],
    ) -> Result<(), Failure> {
        self.calls.push("process_update");
        Ok(())
    }
    fn commit(&mut self, _ctx: &mut Ctx<'_>, _round: &SyncRound) -> Result<(), Failure> {
        self.calls.push("commit");
        Ok(())
    }
    fn cleanup(&mut self, _round: &SyncRound) {
        self.calls.push("cleanup");
    }
    fn has_checksum(&self) -> bool {
        self.checksum.is_some()
    }
    fn checksum(&mut self) -> Result<[u8; 32], Failure> {
        self.checksum.ok_or(Failure::Leave)
    }
    fn synced(&mut self, _ctx: &mut Ctx<'_>) {
        self.calls.push("synced");
    }
    fn confchg(&mut self, _ctx: &mut Ctx<'_>, _members: &[MemberId]) {
        self.calls.push("confchg");
    }
}

fn node(local: MemberId, app: Probe) -> Dfsm<Probe> {
    Dfsm::new(CFG, local, app, T)
}

fn sends(fx: &mut Effects) -> Vec<Outgoing> {
    let out = fx.iter().filter_map(|e| match e {
        Effect::Send(o) => Some(o.clone()),
        _ => None,
    });
    out.collect()
}

fn changes(fx: &Effects) -> Vec<(Mode, Cause)> {
    let out = fx.iter().filter_map(|e| match e {
        Effect::ModeChanged { to, cause, .. } => Some((*to, *cause)),
        _ => None,
    });
    out.collect()
}

fn normal(count: u64, payload: &[u8]) -> Vec<u8> {
    Message::normal(1, 1, T, count, payload).encode()
}

fn state_msg(t: MsgType, epoch: Epoch, payload: &[u8]) -> Vec<u8> {
    Message::state(t, 1, T, epoch, payload).encode()
}

/// A node in START_SYNC with members `members` (its own SYNC_START not yet seen).
fn syncing(local: MemberId, members: &[MemberId], app: Probe) -> (Dfsm<Probe>, Effects) {
    let mut d = node(local, app);
    let mut fx = Effects::new();
    d.on_confchg(members, &[], members, T, &mut fx);
    assert_eq!(d.mode(), Mode::StartSync);
    (d, fx)
}

/// Run a whole round on node `local`: SYNC_START from the lowest, then every member's STATE.
fn round(d: &mut Dfsm<Probe>, members: &[MemberId], fx: &mut Effects) -> Epoch {
    let epoch = Epoch {
        epoch: 7,
        time: T,
        nodeid: 1,
        pid: 11,
    };
    d.on_deliver(A, &state_msg(MsgType::SyncStart, epoch, &[]), T, fx);
    for m in members {
        d.on_deliver(*m, &state_msg(MsgType::State, epoch, b"S"), T, fx);
    }
    epoch
}

#[test]
fn mode_changes_follow_c_rules() {
    let mut d = node(A, Probe::default());
    let mut fx = Effects::new();
    d.set_mode(Mode::Leave, Cause::Protocol, T, &mut fx);
    d.set_mode(Mode::Error, Cause::Protocol, T, &mut fx);
    assert_eq!(d.mode(), Mode::Error, "LEAVE may become ERROR");
    d.set_mode(Mode::Leave, Cause::Protocol, T, &mut fx);
    d.set_mode(Mode::VersionError, Cause::Protocol, T, &mut fx);
    assert_eq!(
        d.mode(),
        Mode::Error,
        "ERROR never goes down to LEAVE or VERSION_ERROR"
    );
    d.set_mode(Mode::Start, Cause::Protocol, T, &mut fx);
    assert_eq!(d.mode(), Mode::Start, "a normal mode may always be set");
    assert_eq!(changes(&fx).len(), 3);
    assert_eq!(Mode::Leave.to_c(), 253);
    assert!(Mode::Leave.restartable() && !Mode::Error.restartable());
    assert!(!Mode::VersionError.restartable());
    assert_eq!(Mode::StartSync.log_text(), "starting data syncronisation");
}

#[test]
fn initialize_is_refused_after_error_modes() {
    let mut d = node(A, Probe::default());
    let mut fx = Effects::new();
    d.send_message(1, b"x", T, &mut fx);
    d.set_mode(Mode::Leave, Cause::Protocol, T, &mut fx);
    let mut fx = Effects::new();
    d.initialize(A, &mut fx).unwrap();
    assert_eq!(d.mode(), Mode::Start);
    assert_eq!(
        fx.pop(),
        Some(Effect::Abort { up_to: 1 }),
        "waiters are woken first"
    );
    d.set_mode(Mode::VersionError, Cause::Protocol, T, &mut fx);
    assert_eq!(
        d.initialize(A, &mut fx),
        Err(NotRestartable(Mode::VersionError))
    );
}

#[test]
fn alone_a_node_is_synced_at_once() {
    let mut d = node(A, Probe::default());
    let mut fx = Effects::new();
    d.on_confchg(&[A], &[], &[A], T, &mut fx);
    assert_eq!(d.mode(), Mode::Synced);
    assert!(d.is_member() && d.is_lowest());
    assert_eq!(d.app().calls, vec!["synced", "confchg"]);
    assert!(d.round().unwrap().members()[0].synced);
    assert!(sends(&mut fx).is_empty());
}

#[test]
fn the_lowest_member_sends_sync_start_with_a_new_epoch() {
    let (d, mut fx) = syncing(A, &[B, A], Probe::default());
    let out = sends(&mut fx);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, SendKind::SyncStart);
    let m = Message::decode(&out[0].bytes).unwrap();
    assert_eq!(
        m.epoch(),
        Some(Epoch {
            epoch: 1,
            time: T,
            nodeid: 1,
            pid: 11
        })
    );
    assert_eq!(d.epoch(), m.epoch().unwrap());
    assert_eq!(
        d.round().unwrap().members()[0].id,
        A,
        "table sorted by (nodeid, pid)"
    );

    let (d, mut fx) = syncing(B, &[B, A], Probe::default());
    assert!(
        sends(&mut fx).is_empty(),
        "only the lowest node id sends SYNC_START"
    );
    assert_eq!(
        d.epoch().nodeid,
        2,
        "its own epoch until a SYNC_START arrives"
    );
}

#[test]
fn state_is_sent_on_sync_start_with_its_epoch() {
    let (mut d, _) = syncing(B, &[A, B], Probe::default());
    let theirs = Epoch {
        epoch: 9,
        time: 5,
        nodeid: 1,
        pid: 11,
    };
    let mut fx = Effects::new();
    d.on_deliver(A, &state_msg(MsgType::SyncStart, theirs, &[]), T, &mut fx);
    let out = sends(&mut fx);
    assert_eq!(out.len(), 1);
    let m = Message::decode(&out[0].bytes).unwrap();
    assert_eq!(
        (m.kind(), m.epoch(), m.payload),
        (Some(MsgType::State), Some(theirs), &b"S"[..])
    );
    assert_eq!(d.epoch(), theirs);
    // A SYNC_START from a member that is not the lowest is processed all the same.
    let other = Epoch { epoch: 3, ..theirs };
    d.on_deliver(B, &state_msg(MsgType::SyncStart, other, &[]), T, &mut fx);
    assert_eq!(d.epoch(), other);
    assert_eq!(d.mode(), Mode::StartSync);
}

#[test]
fn an_empty_state_makes_the_node_leave() {
    let app = Probe {
        state: vec![],
        ..Probe::default()
    };
    let (mut d, _) = syncing(A, &[A, B], app);
    let mut fx = Effects::new();
    round(&mut d, &[], &mut fx);
    assert_eq!(
        changes(&fx),
        vec![(Mode::Leave, Cause::App(Callback::GetState))]
    );
}

#[test]
fn states_complete_the_round() {
    // Everyone identical: SYNCED, round data released (cleanup once).
    let (mut d, _) = syncing(B, &[A, B], Probe::default());
    let mut fx = Effects::new();
    round(&mut d, &[A, B], &mut fx);
    assert_eq!(d.mode(), Mode::Synced);
    assert_eq!(
        d.app().calls,
        vec![
            "confchg",
            "get_state",
            "process_state_update",
            "synced",
            "cleanup"
        ]
    );
    assert!(d
        .round()
        .unwrap()
        .members()
        .iter()
        .all(|n| n.state.is_none()));

    // Not synced: UPDATE, then UPDATE and UPDATE_COMPLETE from the leader.
    let app = Probe {
        synced: Some(vec![A]),
        ..Probe::default()
    };
    let (mut d, _) = syncing(B, &[A, B], app);
    let mut fx = Effects::new();
    let epoch = round(&mut d, &[B, A], &mut fx);
    assert_eq!(d.mode(), Mode::Update);
    d.on_deliver(A, &state_msg(MsgType::Update, epoch, b"u"), T, &mut fx);
    d.on_deliver(
        A,
        &state_msg(MsgType::UpdateComplete, epoch, &[]),
        T,
        &mut fx,
    );
    assert_eq!(d.mode(), Mode::Synced);
    assert!(d.round().unwrap().members().iter().all(|n| n.synced));
    assert!(d
        .app()
        .calls
        .ends_with(&["process_update", "commit", "synced", "cleanup"]));
}

#[test]
fn the_leader_sends_updates_from_process_state_update() {
    let app = Probe {
        lead: true,
        synced: Some(vec![A]),
        ..Probe::default()
    };
    let (mut d, _) = syncing(A, &[A, B], app);
    let mut fx = Effects::new();
    let epoch = round(&mut d, &[A, B], &mut fx);
    let kinds: Vec<SendKind> = sends(&mut fx).iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        vec![SendKind::State, SendKind::Update, SendKind::UpdateComplete]
    );
    let last = sends(&mut fx).pop().unwrap();
    assert_eq!(Message::decode(&last.bytes).unwrap().epoch(), Some(epoch));
    assert_eq!(d.mode(), Mode::Synced);
    // Its own UPDATE and UPDATE_COMPLETE come back and are ignored (synced already).
    let mut fx = Effects::new();
    d.on_deliver(A, &state_msg(MsgType::Update, epoch, b"u"), T, &mut fx);
    d.on_deliver(
        A,
        &state_msg(MsgType::UpdateComplete, epoch, &[]),
        T,
        &mut fx,
    );
    assert_eq!(d.mode(), Mode::Synced);
    assert!(changes(&fx).is_empty());
}

#[test]
fn protocol_anomalies_make_the_node_leave() {
    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    let epoch = round(&mut d, &[A], &mut fx);
    d.on_deliver(A, &state_msg(MsgType::State, epoch, b"S"), T, &mut fx);
    assert_eq!(
        changes(&fx).last(),
        Some(&(Mode::Leave, Cause::Anomaly(Anomaly::DuplicateState(A))))
    );

    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    let epoch = round(&mut d, &[], &mut fx);
    d.on_deliver(C, &state_msg(MsgType::State, epoch, b"S"), T, &mut fx);
    assert_eq!(
        changes(&fx),
        vec![(Mode::Leave, Cause::Anomaly(Anomaly::StateFromNonMember(C)))]
    );

    // UPDATE in START_SYNC: leave. VERIFY in START_SYNC: ignored.
    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    let epoch = round(&mut d, &[], &mut fx);
    d.on_deliver(
        B,
        &state_msg(MsgType::VerifyRequest, epoch, &[0; 8]),
        T,
        &mut fx,
    );
    assert_eq!(d.mode(), Mode::StartSync);
    d.on_deliver(B, &state_msg(MsgType::Update, epoch, b"u"), T, &mut fx);
    let want = Cause::Anomaly(Anomaly::UnexpectedStateMessage { msg_type: 3 });
    assert_eq!(changes(&fx), vec![(Mode::Leave, want)]);

    // An unknown type is ignored when SYNCED.
    let mut d = node(A, Probe::default());
    let mut fx = Effects::new();
    d.on_confchg(&[A], &[], &[A], T, &mut fx);
    let mut odd = state_msg(MsgType::State, d.epoch(), &[]);
    odd[0] = 9;
    let mut fx = Effects::new();
    d.on_deliver(A, &odd, T, &mut fx);
    assert!(changes(&fx).is_empty());

    // A state message in START mode (after a confchg without us): leave.
    let mut d = node(A, Probe::default());
    let mut fx = Effects::new();
    d.on_confchg(&[B], &[], &[B], T, &mut fx);
    assert_eq!(
        d.mode(),
        Mode::Start,
        "a confchg without us in START is ignored"
    );
    assert!(fx.is_empty());
    d.on_deliver(
        B,
        &state_msg(MsgType::SyncStart, d.epoch(), &[]),
        T,
        &mut fx,
    );
    let want = Cause::Anomaly(Anomaly::StateMessageInStart { msg_type: 1 });
    assert_eq!(changes(&fx), vec![(Mode::Leave, want)]);
}

#[test]
fn receive_checks_come_first() {
    // Nothing before the first confchg.
    let mut d = node(A, Probe::default());
    let mut fx = Effects::new();
    d.on_deliver(B, &normal(1, b"x"), T, &mut fx);
    assert_eq!(
        changes(&fx),
        vec![(Mode::Leave, Cause::Rejected(Rejected::NoMembership))]
    );

    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    // Older protocol: ignored. Newer: version error for good.
    let mut old = normal(1, b"x");
    old[4] = 0;
    d.on_deliver(B, &old, T, &mut fx);
    assert!(fx.is_empty());
    assert_eq!(d.queued(), (0, 0));
    let mut new = normal(1, b"x");
    new[4] = 2;
    d.on_deliver(B, &new, T, &mut fx);
    assert_eq!(d.mode(), Mode::VersionError);
    // In an error mode everything is dropped, and a confchg changes nothing.
    let mut fx = Effects::new();
    d.on_deliver(B, &normal(2, b"x"), T, &mut fx);
    d.on_confchg(&[A], &[B], &[], T, &mut fx);
    assert!(fx.is_empty());
    assert_eq!(d.mode(), Mode::VersionError);

    // A state message of another epoch is dropped.
    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    let stale = Epoch {
        epoch: 99,
        ..d.epoch()
    };
    d.on_deliver(B, &state_msg(MsgType::State, stale, b"S"), T, &mut fx);
    assert!(fx.is_empty());
    assert!(d.round().unwrap().members()[1].state.is_none());
}

#[test]
fn normal_messages_wait_for_synced_in_count_order() {
    let app = Probe {
        synced: Some(vec![A]),
        ..Probe::default()
    };
    let (mut d, _) = syncing(B, &[A, B], app);
    let mut fx = Effects::new();
    for (from, count) in [(A, 5), (B, 2), (A, 3)] {
        d.on_deliver(from, &normal(count, b"x"), T, &mut fx);
    }
    assert_eq!(d.queued(), (3, 0));
    assert!(d.app().delivered.is_empty());
    let epoch = round(&mut d, &[A, B], &mut fx);
    // UPDATE mode: the synced leader's messages move to the sync queue; ours stay.
    assert_eq!(d.mode(), Mode::Update);
    assert_eq!(d.queued(), (1, 2));
    d.on_deliver(A, &normal(6, b"x"), T, &mut fx);
    d.on_deliver(B, &normal(4, b"x"), T, &mut fx);
    assert_eq!(d.queued(), (2, 3));
    d.on_deliver(
        A,
        &state_msg(MsgType::UpdateComplete, epoch, &[]),
        T,
        &mut fx,
    );
    // Sync queue first (arrival order), then the pending queue (count order).
    assert_eq!(
        d.app().delivered,
        vec![(A, 3), (A, 5), (A, 6), (B, 2), (B, 4)]
    );
    assert_eq!(d.queued(), (0, 0));
    let results: Vec<(u64, i32)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Result { count, result } => Some((*count, *result)),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        vec![(2, 0), (4, 0)],
        "own messages report their result"
    );
}

#[test]
fn a_failing_delivery_leaves_and_answers_minus_one() {
    let app = Probe {
        deliver: Err(Failure::Leave),
        ..Probe::default()
    };
    let mut d = node(A, app);
    let mut fx = Effects::new();
    d.on_confchg(&[A], &[], &[A], T, &mut fx);
    let mut fx = Effects::new();
    d.on_deliver(A, &normal(1, b"x"), T, &mut fx);
    assert_eq!(
        fx.pop(),
        Some(Effect::Result {
            count: 1,
            result: -1
        })
    );
    assert_eq!(
        changes(&fx),
        vec![(Mode::Leave, Cause::App(Callback::Deliver))]
    );

    let app = Probe {
        deliver: Err(Failure::Fatal),
        ..Probe::default()
    };
    let mut d = node(A, app);
    let mut fx = Effects::new();
    d.on_confchg(&[A], &[], &[A], T, &mut fx);
    d.on_deliver(B, &normal(1, b"x"), T, &mut fx);
    assert_eq!(d.mode(), Mode::Error);
}

#[test]
fn own_queued_messages_are_resent_when_members_join() {
    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    let mine = d.send_message(1, b"mine", T, &mut fx);
    let mine_bytes = sends(&mut fx)[0].bytes.clone();
    d.on_deliver(A, &mine_bytes, T, &mut fx);
    d.on_deliver(B, &normal(1, b"theirs"), T, &mut fx);
    assert_eq!(d.queued(), (2, 0));
    // A member leaves: nothing is resent, the queue stays.
    let mut fx = Effects::new();
    d.on_confchg(&[A, B], &[C], &[], T, &mut fx);
    assert_eq!(sends(&mut fx).len(), 1, "only SYNC_START");
    assert_eq!(d.queued(), (2, 0));
    // A member joins: our own message again, byte for byte; the queue is emptied.
    let mut fx = Effects::new();
    d.on_confchg(&[A, B, C], &[], &[C], T, &mut fx);
    let out = sends(&mut fx);
    assert_eq!(
        out[0],
        Outgoing {
            kind: SendKind::Resend,
            bytes: mine_bytes
        }
    );
    assert_eq!(out[1].kind, SendKind::SyncStart);
    assert_eq!(out.len(), 2);
    assert_eq!(d.queued(), (0, 0));
    assert_eq!(mine, 1);
}

#[test]
fn queued_messages_of_departed_members_are_dropped() {
    let (mut d, _) = syncing(A, &[A, B, C], Probe::default());
    let mut fx = Effects::new();
    d.on_deliver(C, &normal(1, b"c"), T, &mut fx);
    d.on_deliver(B, &normal(2, b"b"), T, &mut fx);
    d.on_confchg(&[A, B], &[C], &[], T, &mut fx);
    round(&mut d, &[A, B], &mut fx);
    assert_eq!(d.app().delivered, vec![(B, 2)]);
    assert_eq!(d.queued(), (0, 0));
    // And a message from a non-member while syncing makes the node leave.
    let mut fx = Effects::new();
    d.on_confchg(&[A, B], &[], &[], T, &mut fx);
    d.on_deliver(C, &normal(3, b"c"), T, &mut fx);
    let want = Cause::Anomaly(Anomaly::QueueFromNonMember(C));
    assert_eq!(changes(&fx).last(), Some(&(Mode::Leave, want)));
}

/// cluster.md §8.2 #15, and our default: a not-yet-synced sender's message waits for
/// UPDATE_COMPLETE even on a member that is SYNCED.
#[test]
fn unsynced_senders_wait_unless_c_reorder_window() {
    for (quirk, applied_early) in [(false, false), (true, true)] {
        let app = Probe {
            synced: Some(vec![A]),
            ..Probe::default()
        };
        let mut d = Dfsm::new(
            Config {
                c_reorder_window: quirk,
                ..CFG
            },
            A,
            app,
            T,
        );
        let mut fx = Effects::new();
        d.on_confchg(&[A, B], &[], &[B], T, &mut fx);
        let epoch = round(&mut d, &[A, B], &mut fx);
        assert_eq!(d.mode(), Mode::Synced);
        d.on_deliver(B, &normal(9, b"x"), T, &mut fx);
        assert_eq!(
            !d.app().delivered.is_empty(),
            applied_early,
            "quirk {quirk}"
        );
        d.on_deliver(
            B,
            &state_msg(MsgType::UpdateComplete, epoch, &[]),
            T,
            &mut fx,
        );
        assert_eq!(d.app().delivered, vec![(B, 9)]);
    }
}

fn synced_alone(app: Probe) -> Dfsm<Probe> {
    let mut d = node(A, app);
    let mut fx = Effects::new();
    d.on_confchg(&[A], &[], &[A], T, &mut fx);
    d
}

#[test]
fn verify_rounds() {
    let mut d = synced_alone(Probe {
        checksum: Some([7; 32]),
        ..Probe::default()
    });
    let mut fx = Effects::new();
    d.request_verify(T, &mut fx);
    let req = sends(&mut fx).remove(0);
    assert_eq!(req.kind, SendKind::VerifyRequest);
    let mut fx2 = Effects::new();
    d.request_verify(T, &mut fx2);
    assert!(fx2.is_empty(), "delayed while the last request is out");
    let mut fx = Effects::new();
    d.on_deliver(A, &req.bytes, T, &mut fx);
    let ver = sends(&mut fx).remove(0);
    assert_eq!(ver.kind, SendKind::Verify);
    assert_eq!(
        msg::decode_verify(Message::decode(&ver.bytes).unwrap().payload),
        Some((1, [7; 32]))
    );
    d.on_deliver(A, &ver.bytes, T, &mut fx);
    assert!(fx.iter().any(|e| *e
        == Effect::Verified {
            csum_id: 1,
            outcome: VerifyOutcome::Ok
        }));

    // Another checksum from the requester: this node leaves.
    let mut fx = Effects::new();
    let bad = state_msg(MsgType::Verify, d.epoch(), &msg::encode_verify(1, &[8; 32]));
    d.on_deliver(B, &bad, T, &mut fx);
    assert_eq!(
        changes(&fx),
        vec![(Mode::Leave, Cause::ChecksumMismatch { csum_id: 1 })]
    );

    // A confchg in between invalidates the saved checksum.
    let mut d = synced_alone(Probe {
        checksum: Some([7; 32]),
        ..Probe::default()
    });
    let mut fx = Effects::new();
    d.request_verify(T, &mut fx);
    let req = sends(&mut fx).remove(0);
    d.on_deliver(A, &req.bytes, T, &mut fx);
    let ver = sends(&mut fx).pop().unwrap();
    d.on_confchg(&[A], &[], &[], T, &mut fx);
    let mut fx = Effects::new();
    let ver = Message::decode(&ver.bytes).unwrap();
    d.on_deliver(
        A,
        &state_msg(MsgType::Verify, d.epoch(), ver.payload),
        T,
        &mut fx,
    );
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Verified {
            outcome: VerifyOutcome::Skipped,
            ..
        }
    )));
    // ... and lets the next request go out.
    d.request_verify(T, &mut fx);
    assert_eq!(sends(&mut fx).last().unwrap().kind, SendKind::VerifyRequest);
}

#[test]
fn verify_payload_lengths() {
    // A bad VERIFY_REQUEST length makes even an application without checksum leave.
    let mut d = synced_alone(Probe::default());
    let mut fx = Effects::new();
    d.on_deliver(
        A,
        &state_msg(MsgType::VerifyRequest, d.epoch(), &[0; 7]),
        T,
        &mut fx,
    );
    assert_eq!(d.mode(), Mode::Leave);
    // A bad VERIFY is ignored without checksum, and makes a verifying node leave.
    let mut d = synced_alone(Probe::default());
    let mut fx = Effects::new();
    d.on_deliver(
        A,
        &state_msg(MsgType::Verify, d.epoch(), &[0; 39]),
        T,
        &mut fx,
    );
    assert!(fx.is_empty());
    let mut d = synced_alone(Probe {
        checksum: Some([0; 32]),
        ..Probe::default()
    });
    d.on_deliver(
        A,
        &state_msg(MsgType::Verify, d.epoch(), &[0; 39]),
        T,
        &mut fx,
    );
    assert_eq!(d.mode(), Mode::Leave);
}

#[test]
fn only_the_lowest_synced_member_requests_verify_by_timer() {
    let mut d = synced_alone(Probe {
        checksum: Some([0; 32]),
        ..Probe::default()
    });
    let mut fx = Effects::new();
    d.on_timer(T + 59, &mut fx);
    assert!(fx.is_empty());
    d.on_timer(T + 60, &mut fx);
    assert_eq!(sends(&mut fx).len(), 1);

    let (mut d, _) = syncing(B, &[A, B], Probe::default());
    let mut fx = Effects::new();
    d.on_timer(T + 60, &mut fx);
    d.request_verify(T + 60, &mut fx);
    assert!(fx.is_empty(), "not the lowest node id, and not synced");
}

#[test]
fn failed_sends() {
    let (mut d, _) = syncing(A, &[A, B], Probe::default());
    let mut fx = Effects::new();
    d.on_send_failed(SendKind::Update, T, &mut fx);
    d.on_send_failed(SendKind::Normal, T, &mut fx);
    assert!(fx.is_empty(), "tolerated");
    d.on_send_failed(SendKind::State, T, &mut fx);
    assert_eq!(
        changes(&fx),
        vec![(Mode::Leave, Cause::SendFailed(SendKind::State))]
    );
}

#[test]
fn leaving_the_group_is_noticed() {
    let mut d = synced_alone(Probe::default());
    let mut fx = Effects::new();
    d.on_confchg(&[B], &[A], &[], T, &mut fx);
    assert_eq!(changes(&fx), vec![(Mode::Leave, Cause::NotMember)]);
    assert!(!d.is_member());
    assert_eq!(d.lowest_nodeid(), Some(NodeId(2)));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// One input from the network.
    #[derive(Clone, Debug)]
    enum Input {
        Confchg(Vec<u8>, bool),
        /// sender, type, epoch choice, count, payload length, truncate to
        Deliver(u8, u16, u8, u64, usize, Option<usize>),
        Send,
        Timer(u32),
        Init,
    }

    fn member(i: u8) -> MemberId {
        [A, B, C][usize::from(i % 3)]
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (proptest::collection::vec(0u8..3, 0..4), any::<bool>())
                .prop_map(|(m, j)| Input::Confchg(m, j)),
            (
                0u8..3,
                0u16..9,
                0u8..3,
                0u64..6,
                0usize..48,
                proptest::option::of(0usize..40)
            )
                .prop_map(|(f, t, e, c, l, cut)| Input::Deliver(f, t, e, c, l, cut)),
            Just(Input::Send),
            (0u32..200).prop_map(Input::Timer),
            Just(Input::Init),
        ]
    }

    proptest! {
        /// Whatever the network delivers, in whatever order, the state machine never panics,
        /// and an error mode other than LEAVE is never left.
        #[test]
        fn arbitrary_inputs_never_panic(
            inputs in proptest::collection::vec(input(), 0..40),
            lead: bool,
            half_synced: bool,
            checksum: bool,
        ) {
            let app = Probe {
                lead,
                synced: half_synced.then(|| vec![A]),
                checksum: checksum.then_some([1; 32]),
                ..Probe::default()
            };
            let mut d = node(A, app);
            let mut fx = Effects::new();
            let mut now = T;
            for i in inputs {
                let before = d.mode();
                match i {
                    Input::Confchg(ms, joined) => {
                        let members: Vec<MemberId> = ms.iter().map(|&m| member(m)).collect();
                        let j = if joined { members.clone() } else { vec![] };
                        d.on_confchg(&members, &[], &j, now, &mut fx);
                    }
                    Input::Deliver(f, t, e, count, len, cut) => {
                        let epoch = match e {
                            0 => d.epoch(),
                            1 => Epoch { epoch: 1, time: T, nodeid: 1, pid: 11 },
                            _ => Epoch::default(),
                        };
                        let payload = vec![0x5a; len];
                        let mut bytes = if t == 0 {
                            Message::normal(1, 1, now, count, &payload).encode()
                        } else {
                            let mut b = Message::state(MsgType::State, 1, now, epoch, &payload)
                                .encode();
                            b[0..2].copy_from_slice(&t.to_le_bytes());
                            b
                        };
                        if let Some(n) = cut {
                            bytes.truncate(n);
                        }
                        d.on_deliver(member(f), &bytes, now, &mut fx);
                    }
                    Input::Send => {
                        d.send_message(1, b"x", now, &mut fx);
                    }
                    Input::Timer(s) => {
                        now += s;
                        d.on_timer(now, &mut fx);
                    }
                    Input::Init => {
                        let _ = d.initialize(A, &mut fx);
                    }
                }
                if matches!(before, Mode::Error | Mode::VersionError) {
                    prop_assert_eq!(d.mode(), before);
                }
                fx = Effects::new();
            }
        }
    }
}
