//! The DFSM of C pmxcfs (`dfsm.c`) as a sans-IO state machine (cluster.md §3).
//!
//! A [`Dfsm`] runs one CPG group for one application ([`App`], the callbacks of `dfsm.h`).
//! The adapter feeds it what corosync delivers, in delivery order:
//! [`Dfsm::on_confchg`], [`Dfsm::on_deliver`], and [`Dfsm::on_timer`] for the verify timer,
//! always with the current time (`now`, seconds since the epoch truncated to 32 bits, as C's
//! `time(NULL)`). Every input appends [`Effect`]s to an [`Effects`] queue, which the adapter
//! executes in order: multicast bytes, wake local senders waiting for their own message, note
//! mode changes (a mode ≥ 128 means: leave the CPG group).
//!
//! Own multicasts are processed when CPG delivers them back (loopback), like everyone else's:
//! the SYNC_START sender sends its STATE when its own SYNC_START arrives, the verify requester
//! answers its own request, and a local sender's result comes from applying its own message.
//!
//! The protocol, briefly: after a membership change with more than one member, the member with
//! the lowest node id sends SYNC_START; everyone answers with its application STATE; once all
//! states are in, the application picks the data leader and marks the members whose data is
//! already identical as synced. Those go to SYNCED; the others wait in UPDATE mode for the
//! leader's UPDATEs and its UPDATE_COMPLETE. NORMAL messages are applied only in SYNCED mode;
//! before that they are queued, sorted by their per-sender count.

mod app;
mod effect;
mod queue;

pub use app::{App, Ctx, Failure, NodeInfo, Normal, SyncRound};
pub use effect::{
    Anomaly, Callback, Cause, Config, Effect, Effects, Mode, Outgoing, SendKind, VerifyOutcome,
};

use crate::member::{self, MemberId, NodeId};
use crate::msg::{self, Epoch, Message, MsgType, Receiver, Verdict};
use app::Core;
use queue::{Pending, Queued};

/// `initialize` refused: the mode is ERROR or VERSION_ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cluster connection stopped for good ({0:?})")]
pub struct NotRestartable(pub Mode);

/// One DFSM instance: one CPG group, one application.
#[derive(Debug)]
pub struct Dfsm<A> {
    app: A,
    core: Core,
    /// `None` until the first confchg.
    round: Option<SyncRound>,
    pending: Pending,
    sync_queue: Vec<Queued>,
    csum: [u8; 32],
    csum_epoch: Epoch,
    csum_id: u64,
    csum_counter: u64,
    last_timer: u32,
}

impl<A: App> Dfsm<A> {
    /// A DFSM in START mode. `local` is this process as corosync names it (`cpg_local_get`
    /// and the process id); `now` starts the verify timer.
    pub fn new(cfg: Config, local: MemberId, app: A, now: u32) -> Dfsm<A> {
        Dfsm {
            app,
            core: Core {
                cfg,
                local,
                mode: Mode::Start,
                we_are_member: false,
                lowest_nodeid: None,
                local_epoch_counter: 0,
                sync_epoch: Epoch::default(),
                msgcount: 0,
            },
            round: None,
            pending: Pending::default(),
            sync_queue: Vec::new(),
            csum: [0; 32],
            csum_epoch: Epoch::default(),
            csum_id: 0,
            csum_counter: 0,
            last_timer: now,
        }
    }

    pub fn app(&self) -> &A {
        &self.app
    }

    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    pub fn mode(&self) -> Mode {
        self.core.mode
    }

    pub fn local(&self) -> MemberId {
        self.core.local
    }

    pub fn config(&self) -> Config {
        self.core.cfg
    }

    /// The last membership change listed this node.
    pub fn is_member(&self) -> bool {
        self.core.we_are_member
    }

    pub fn lowest_nodeid(&self) -> Option<NodeId> {
        self.core.lowest_nodeid
    }

    /// This node has the lowest node id of the membership.
    pub fn is_lowest(&self) -> bool {
        self.core.lowest_nodeid == Some(self.core.local.nodeid)
    }

    /// The current sync epoch.
    pub fn epoch(&self) -> Epoch {
        self.core.sync_epoch
    }

    /// The count of the last NORMAL message this node sent.
    pub fn msgcount(&self) -> u64 {
        self.core.msgcount
    }

    /// The current membership table.
    pub fn round(&self) -> Option<&SyncRound> {
        self.round.as_ref()
    }

    /// Queued NORMAL messages: (pending, sync queue).
    pub fn queued(&self) -> (usize, usize) {
        (self.pending.len(), self.sync_queue.len())
    }

    /// C `dfsm_initialize` before (re-)joining: drop queued messages, finish every local
    /// waiter, mode START. `local` may change if the corosync connection was re-created.
    pub fn initialize(&mut self, local: MemberId, fx: &mut Effects) -> Result<(), NotRestartable> {
        if !self.core.mode.restartable() {
            return Err(NotRestartable(self.core.mode));
        }
        self.pending.clear();
        fx.push(Effect::Abort {
            up_to: self.core.msgcount,
        });
        self.core.we_are_member = false;
        self.core.local = local;
        self.set_mode(Mode::Start, Cause::Initialize, 0, fx);
        Ok(())
    }

    /// C `dfsm_finalize`: the connection is closed; finish every local waiter.
    pub fn finalize(&mut self, fx: &mut Effects) {
        fx.push(Effect::Abort {
            up_to: self.core.msgcount,
        });
        self.core.we_are_member = false;
    }

    /// Stop for good (C `dfsm_set_errormode`).
    pub fn set_error_mode(&mut self, fx: &mut Effects) {
        self.set_mode(Mode::Error, Cause::App(Callback::Deliver), 0, fx);
    }

    /// Multicast a NORMAL message for the application (C `dfsm_send_message_sync`); returns
    /// its count. A local sender that waits registers under this count before the effects are
    /// executed and is woken by [`Effect::Result`] or [`Effect::Abort`].
    pub fn send_message(
        &mut self,
        subtype: u16,
        payload: &[u8],
        now: u32,
        fx: &mut Effects,
    ) -> u64 {
        self.core
            .send_normal(fx, SendKind::Normal, subtype, payload, now)
    }

    /// The adapter could not multicast `kind`. The protocol messages of a sync or verify round
    /// make the node leave; a failed UPDATE is tolerated (C logs it), a failed verify request
    /// only delays the next one. A failed NORMAL message concerns only its local sender.
    pub fn on_send_failed(&mut self, kind: SendKind, now: u32, fx: &mut Effects) {
        match kind {
            SendKind::Resend
            | SendKind::SyncStart
            | SendKind::State
            | SendKind::UpdateComplete
            | SendKind::Verify => self.leave(Cause::SendFailed(kind), now, fx),
            SendKind::Normal | SendKind::Update | SendKind::VerifyRequest => {}
        }
    }

    /// The verify timer: call it often (e.g. every second); every `verify_interval` seconds it
    /// makes a verify request (C's service timer).
    pub fn on_timer(&mut self, now: u32, fx: &mut Effects) {
        let Some(period) = self.core.cfg.verify_interval else {
            return;
        };
        if now.wrapping_sub(self.last_timer) >= period {
            self.last_timer = now;
            self.request_verify(now, fx);
        }
    }

    /// C `dfsm_verify_request`: only the lowest-nodeid member, only in SYNCED mode, and only
    /// when its previous request has come back.
    pub fn request_verify(&mut self, now: u32, fx: &mut Effects) {
        if !self.is_lowest() || self.core.mode != Mode::Synced {
            return;
        }
        if self.csum_counter != self.csum_id {
            return; // "delay verify request"
        }
        self.csum_counter += 1;
        let p = msg::encode_verify_request(self.csum_counter);
        self.core
            .send_state(fx, SendKind::VerifyRequest, MsgType::VerifyRequest, &p, now);
    }

    fn ctx<'a>(core: &'a mut Core, fx: &'a mut Effects, now: u32) -> Ctx<'a> {
        Ctx { core, fx, now }
    }

    /// C `dfsm_set_mode`: any mode below 128 may be set; an error mode from a normal mode,
    /// or from an error mode only upwards (LEAVE → ERROR, never ERROR → LEAVE).
    fn set_mode(&mut self, to: Mode, cause: Cause, now: u32, fx: &mut Effects) {
        let from = self.core.mode;
        if from == to || (to.is_error() && from.is_error() && to < from) {
            return;
        }
        self.core.mode = to;
        fx.push(Effect::ModeChanged { from, to, cause });
        if to == Mode::Synced {
            self.app.synced(&mut Self::ctx(&mut self.core, fx, now));
        }
    }

    /// The "leave" path of the receive callback: mode LEAVE, round data released.
    fn leave(&mut self, cause: Cause, now: u32, fx: &mut Effects) {
        self.set_mode(Mode::Leave, cause, now, fx);
        self.release_sync_resources(None);
    }

    /// C `dfsm_release_sync_resources`: let the application drop its round data, forget the
    /// received states, and with a member list start a new table.
    fn release_sync_resources(&mut self, members: Option<&[MemberId]>) {
        if let Some(round) = &mut self.round {
            if round.app_data {
                self.app.cleanup(round);
                round.app_data = false;
            }
            for n in &mut round.nodes {
                n.state = None;
            }
        }
        if let Some(members) = members {
            self.round = Some(SyncRound::new(members, self.core.local));
        }
    }

    /// A membership change (C `dfsm_cpg_confchg_callback`). `joined` matters only for being
    /// empty or not (own queued messages are re-sent when someone joined); `left` is unused,
    /// as in C.
    pub fn on_confchg(
        &mut self,
        members: &[MemberId],
        left: &[MemberId],
        joined: &[MemberId],
        now: u32,
        fx: &mut Effects,
    ) {
        let _ = left;
        let local = self.core.local;
        self.core.we_are_member = false;
        self.core.local_epoch_counter = self.core.local_epoch_counter.wrapping_add(1);
        self.core.sync_epoch = Epoch {
            epoch: self.core.local_epoch_counter,
            time: now,
            nodeid: local.nodeid.0,
            pid: local.pid,
        };
        // Invalidate the saved checksum.
        self.csum_id = self.csum_counter;
        self.csum_epoch = Epoch::default();
        self.sync_queue.clear();

        let mode = self.core.mode;
        if mode.is_error() {
            return;
        }
        self.core.we_are_member = members.contains(&local);
        self.core.lowest_nodeid = member::lowest_nodeid(members);
        self.release_sync_resources(Some(members));

        if !self.core.we_are_member {
            if mode == Mode::Start {
                return; // "ignore leave message"
            }
            self.set_mode(Mode::Leave, Cause::NotMember, now, fx);
            return;
        }

        if members.len() > 1 {
            if !joined.is_empty() && !self.pending.is_empty() {
                // All members must see the same queue: send our own queued messages again.
                for q in self.pending.iter().filter(|q| q.from == local) {
                    fx.push(Effect::Send(Outgoing {
                        kind: SendKind::Resend,
                        bytes: q.bytes.clone(),
                    }));
                }
                self.pending.clear();
            }
            self.set_mode(Mode::StartSync, Cause::Protocol, now, fx);
            if self.is_lowest() {
                self.core
                    .send_state(fx, SendKind::SyncStart, MsgType::SyncStart, &[], now);
            }
        } else {
            self.set_mode(Mode::Synced, Cause::Protocol, now, fx);
            if let Some(round) = &mut self.round {
                if let Some(i) = round.local {
                    round.nodes[i].synced = true;
                }
            }
            if !self.deliver_queue(now, fx) {
                self.set_mode(Mode::Leave, Cause::Anomaly(Anomaly::QueueDelivery), now, fx);
                return;
            }
        }
        self.app
            .confchg(&mut Self::ctx(&mut self.core, fx, now), members);
    }

    /// A message delivered by CPG, own ones included (C `dfsm_cpg_deliver_callback`).
    pub fn on_deliver(&mut self, from: MemberId, bytes: &[u8], now: u32, fx: &mut Effects) {
        let rx = Receiver {
            protocol_version: self.core.cfg.protocol_version,
            error_mode: self.core.mode.is_error(),
            has_membership: self.round.is_some(),
            epoch: self.core.sync_epoch,
        };
        let m = match msg::check(&rx, bytes) {
            Ok(m) => m,
            Err(r) => {
                match r.verdict() {
                    Verdict::Ignore => {}
                    Verdict::Leave => self.leave(Cause::Rejected(r), now, fx),
                    Verdict::VersionError => {
                        self.set_mode(Mode::VersionError, Cause::Rejected(r), now, fx)
                    }
                }
                return;
            }
        };
        if let Some(count) = m.count() {
            self.on_normal(from, &m, count, bytes, now, fx);
        } else {
            self.on_state_message(from, &m, now, fx);
        }
    }

    fn on_normal(
        &mut self,
        from: MemberId,
        m: &Message<'_>,
        count: u64,
        bytes: &[u8],
        now: u32,
        fx: &mut Effects,
    ) {
        let sender_unsynced = || {
            let round = self.round.as_ref();
            round.and_then(|r| r.get(from)).is_some_and(|n| !n.synced)
        };
        let hold = !self.core.cfg.c_reorder_window && sender_unsynced();
        if self.core.mode != Mode::Synced || hold {
            if !self.queue_add(from, count, bytes) {
                self.leave(Cause::Anomaly(Anomaly::QueueFromNonMember(from)), now, fx);
            }
            return;
        }
        let normal = Normal {
            from,
            subtype: m.base.subtype,
            time: m.base.time,
            count,
            payload: m.payload,
        };
        let res = self
            .app
            .deliver(&mut Self::ctx(&mut self.core, fx, now), normal);
        if from == self.core.local {
            fx.push(Effect::Result {
                count,
                result: *res.as_ref().unwrap_or(&-1),
            });
        }
        match res {
            Ok(_) => {}
            Err(Failure::Leave) => self.leave(Cause::App(Callback::Deliver), now, fx),
            Err(Failure::Fatal) => {
                self.set_mode(Mode::Error, Cause::App(Callback::Deliver), now, fx);
                self.leave(Cause::App(Callback::Deliver), now, fx);
            }
        }
    }

    /// C `dfsm_queue_add_message`: false if the sender is not in the table.
    fn queue_add(&mut self, from: MemberId, count: u64, bytes: &[u8]) -> bool {
        let Some(ni) = self.round.as_ref().and_then(|r| r.get(from)) else {
            return false;
        };
        let q = Queued {
            from,
            count,
            bytes: bytes.to_vec(),
        };
        if self.core.mode == Mode::Update && ni.synced {
            self.sync_queue.push(q);
        } else {
            self.pending.insert(q);
        }
        true
    }

    /// An application callback's failure: leave, or stop for good.
    fn fail(&mut self, f: Failure, cb: Callback, now: u32, fx: &mut Effects) {
        if f == Failure::Fatal {
            self.set_mode(Mode::Error, Cause::App(cb), now, fx);
        }
        self.leave(Cause::App(cb), now, fx);
    }

    fn on_state_message(&mut self, from: MemberId, m: &Message<'_>, now: u32, fx: &mut Effects) {
        let epoch = m.epoch().expect("state messages carry an epoch");
        let t = m.base.msg_type;
        let kind = m.kind();
        match self.core.mode {
            Mode::Synced => match kind {
                Some(MsgType::UpdateComplete) => {
                    if let Some(r) = &mut self.round {
                        r.mark_all_synced();
                    }
                    if !self.deliver_queue(now, fx) {
                        self.leave(Cause::Anomaly(Anomaly::QueueDelivery), now, fx);
                    }
                }
                Some(MsgType::VerifyRequest) => self.on_verify_request(from, m, epoch, now, fx),
                Some(MsgType::Verify) => self.on_verify(m, epoch, now, fx),
                // Already have the data, or are the leader: ignore.
                _ => {}
            },
            Mode::StartSync => match kind {
                Some(MsgType::SyncStart) => self.on_sync_start(epoch, now, fx),
                Some(MsgType::State) => self.on_state(from, m.payload, now, fx),
                _ => self.unexpected(t, now, fx),
            },
            Mode::Update => match kind {
                Some(MsgType::Update) => {
                    let round = self.round.as_ref().expect("membership known");
                    let mut ctx = Self::ctx(&mut self.core, fx, now);
                    if let Err(f) = self.app.process_update(&mut ctx, round, from, m.payload) {
                        self.fail(f, Callback::ProcessUpdate, now, fx);
                    }
                }
                Some(MsgType::UpdateComplete) => self.on_update_complete(now, fx),
                _ => self.unexpected(t, now, fx),
            },
            Mode::Start => self.leave(
                Cause::Anomaly(Anomaly::StateMessageInStart { msg_type: t }),
                now,
                fx,
            ),
            Mode::Leave | Mode::VersionError | Mode::Error => {
                unreachable!("error modes are refused by msg::check")
            }
        }
    }

    /// The end of C's receive callback for START_SYNC and UPDATE: verify messages are ignored
    /// while not synced, anything else makes the node leave.
    fn unexpected(&mut self, msg_type: u16, now: u32, fx: &mut Effects) {
        let verify = [MsgType::VerifyRequest.to_wire(), MsgType::Verify.to_wire()];
        if !verify.contains(&msg_type) {
            self.leave(
                Cause::Anomaly(Anomaly::UnexpectedStateMessage { msg_type }),
                now,
                fx,
            );
        }
    }

    /// SYNC_START in START_SYNC: adopt its epoch and answer with our STATE. (C logs a SYNC_START
    /// from a member other than the lowest node id, and processes it all the same.)
    fn on_sync_start(&mut self, epoch: Epoch, now: u32, fx: &mut Effects) {
        self.core.sync_epoch = epoch;
        self.release_sync_resources(None);
        let state = self.app.get_state(&mut Self::ctx(&mut self.core, fx, now));
        match state {
            Ok(s) if !s.is_empty() => {
                self.core
                    .send_state(fx, SendKind::State, MsgType::State, &s, now);
            }
            Ok(_) | Err(Failure::Leave) => self.leave(Cause::App(Callback::GetState), now, fx),
            Err(Failure::Fatal) => self.fail(Failure::Fatal, Callback::GetState, now, fx),
        }
    }

    /// STATE in START_SYNC: collect; with all states in, let the application decide.
    fn on_state(&mut self, from: MemberId, payload: &[u8], now: u32, fx: &mut Effects) {
        let round = self.round.as_mut().expect("membership known");
        let Some(i) = round.position(from) else {
            return self.leave(Cause::Anomaly(Anomaly::StateFromNonMember(from)), now, fx);
        };
        if round.nodes[i].state.is_some() {
            return self.leave(Cause::Anomaly(Anomaly::DuplicateState(from)), now, fx);
        }
        round.nodes[i].state = Some(payload.to_vec());
        if !round.all_states() {
            return;
        }
        round.app_data = true;
        let mut ctx = Self::ctx(&mut self.core, fx, now);
        if let Err(f) = self.app.process_state_update(&mut ctx, round) {
            return self.fail(f, Callback::ProcessStateUpdate, now, fx);
        }
        if round.local_synced() {
            self.set_mode(Mode::Synced, Cause::Protocol, now, fx);
            self.release_sync_resources(None);
        } else {
            self.set_mode(Mode::Update, Cause::Protocol, now, fx);
        }
        if !self.deliver_queue(now, fx) {
            self.leave(Cause::Anomaly(Anomaly::QueueDelivery), now, fx);
        }
    }

    /// UPDATE_COMPLETE in UPDATE mode: commit, everyone is synced, deliver what waited.
    fn on_update_complete(&mut self, now: u32, fx: &mut Effects) {
        let round = self.round.as_mut().expect("membership known");
        let mut ctx = Self::ctx(&mut self.core, fx, now);
        if let Err(f) = self.app.commit(&mut ctx, round) {
            return self.fail(f, Callback::Commit, now, fx);
        }
        round.mark_all_synced();
        self.set_mode(Mode::Synced, Cause::Protocol, now, fx);
        if !self.deliver_sync_queue(now, fx) || !self.deliver_queue(now, fx) {
            return self.leave(Cause::Anomaly(Anomaly::QueueDelivery), now, fx);
        }
        self.release_sync_resources(None);
    }

    fn on_verify_request(
        &mut self,
        from: MemberId,
        m: &Message<'_>,
        epoch: Epoch,
        now: u32,
        fx: &mut Effects,
    ) {
        let Some(csum_id) = msg::decode_verify_request(m.payload) else {
            let a = Anomaly::VerifyLength {
                msg_type: m.base.msg_type,
                len: m.payload.len(),
            };
            return self.leave(Cause::Anomaly(a), now, fx);
        };
        if !self.app.has_checksum() {
            return;
        }
        match self.app.checksum() {
            Ok(csum) => self.csum = csum,
            Err(f) => return self.fail(f, Callback::Checksum, now, fx),
        }
        self.csum_epoch = epoch;
        self.csum_id = csum_id;
        if from == self.core.local {
            let p = msg::encode_verify(self.csum_id, &self.csum);
            self.core
                .send_state(fx, SendKind::Verify, MsgType::Verify, &p, now);
        }
    }

    fn on_verify(&mut self, m: &Message<'_>, epoch: Epoch, now: u32, fx: &mut Effects) {
        if !self.app.has_checksum() {
            return;
        }
        let Some((csum_id, csum)) = msg::decode_verify(m.payload) else {
            let a = Anomaly::VerifyLength {
                msg_type: m.base.msg_type,
                len: m.payload.len(),
            };
            return self.leave(Cause::Anomaly(a), now, fx);
        };
        let outcome = if self.csum_id == csum_id && self.csum_epoch == epoch {
            if csum == self.csum {
                VerifyOutcome::Ok
            } else {
                VerifyOutcome::Mismatch
            }
        } else {
            VerifyOutcome::Skipped
        };
        fx.push(Effect::Verified { csum_id, outcome });
        if outcome == VerifyOutcome::Mismatch {
            self.leave(Cause::ChecksumMismatch { csum_id }, now, fx);
        }
    }

    /// C `dfsm_deliver_queue`: drop messages of members that left; in SYNCED mode feed the
    /// messages of synced members through the receive path; in UPDATE mode move them to the
    /// sync queue. False if the mode is neither (the caller leaves).
    fn deliver_queue(&mut self, now: u32, fx: &mut Effects) -> bool {
        let mut i = 0;
        while let Some(q) = self.pending.get(i) {
            let synced = match self.round.as_ref().and_then(|r| r.get(q.from)) {
                None => {
                    self.pending.remove(i); // "remove message from non-member"
                    continue;
                }
                Some(ni) => ni.synced,
            };
            match self.core.mode {
                Mode::Synced if synced => {
                    let q = self.pending.remove(i);
                    self.on_deliver(q.from, &q.bytes, now, fx);
                }
                Mode::Update if synced => {
                    let q = self.pending.remove(i);
                    self.sync_queue.push(q);
                }
                Mode::Synced | Mode::Update => i += 1,
                _ => return false,
            }
        }
        true
    }

    /// C `dfsm_deliver_sync_queue`: in arrival order, through the receive path, while SYNCED.
    fn deliver_sync_queue(&mut self, now: u32, fx: &mut Effects) -> bool {
        let mut ok = true;
        for q in std::mem::take(&mut self.sync_queue) {
            if ok && self.core.mode == Mode::Synced {
                self.on_deliver(q.from, &q.bytes, now, fx);
            } else {
                ok = false;
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests;
