//! The DFSM's vocabulary towards its application: the callbacks of `dfsm.h` ([`App`]), what
//! a callback can see and do ([`Ctx`]), and the round's membership table ([`SyncRound`]).

use crate::member::{self, MemberId, NodeId};
use crate::msg::{Epoch, Message, MsgType};

use super::{Config, Effect, Effects, Mode, Outgoing, SendKind};

/// An application callback failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Leave the group and resync (C: callback returned < 0).
    Leave,
    /// Stop the cluster connection for good (C: `dfsm_set_errormode`, e.g. a database
    /// write failed).
    Fatal,
}

/// A NORMAL message handed to [`App::deliver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normal<'a> {
    pub from: MemberId,
    /// The application's message type.
    pub subtype: u16,
    /// The sender's clock at send (dcdb uses it as the mtime of the change, on every node).
    pub time: u32,
    /// The sender's message counter.
    pub count: u64,
    pub payload: &'a [u8],
}

/// One member of the current sync round (`dfsm_node_info_t`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: MemberId,
    /// The STATE it sent in this round.
    pub state: Option<Vec<u8>>,
    /// Its data is identical to the leader's (set by the application, or by UPDATE_COMPLETE).
    pub synced: bool,
}

/// The membership table of the current round (`dfsm_sync_info_t`), in C's order: sorted by
/// (nodeid, pid).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncRound {
    pub(super) nodes: Vec<NodeInfo>,
    pub(super) local: Option<usize>,
    /// The application holds data for this round (C: `sync_info->data`); cleanup runs then.
    pub(super) app_data: bool,
}

impl SyncRound {
    pub(super) fn new(members: &[MemberId], local: MemberId) -> SyncRound {
        let nodes: Vec<NodeInfo> = member::sorted(members)
            .into_iter()
            .map(|id| NodeInfo {
                id,
                state: None,
                synced: false,
            })
            .collect();
        let local = nodes.iter().position(|n| n.id == local);
        SyncRound {
            nodes,
            local,
            app_data: false,
        }
    }

    pub fn members(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// This node's position in the table (`None` if it is not a member).
    pub fn local(&self) -> Option<usize> {
        self.local
    }

    /// Mark a member as having the leader's data (or not).
    pub fn set_synced(&mut self, i: usize, synced: bool) {
        self.nodes[i].synced = synced;
    }

    pub fn position(&self, id: MemberId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub(super) fn get(&self, id: MemberId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub(super) fn all_states(&self) -> bool {
        self.nodes.iter().all(|n| n.state.is_some())
    }

    pub(super) fn mark_all_synced(&mut self) {
        for n in &mut self.nodes {
            n.synced = true;
        }
    }

    pub(super) fn local_synced(&self) -> bool {
        self.local.is_some_and(|i| self.nodes[i].synced)
    }
}

/// The callbacks of `dfsm.h`: what the replicated application does at each protocol step.
pub trait App {
    /// Apply a NORMAL message (SYNCED mode only, in the group's total order). `Ok` carries the
    /// result a local sender of this message receives; `Err` makes the node leave (the local
    /// sender then gets -1, as in C).
    fn deliver(&mut self, ctx: &mut Ctx<'_>, msg: Normal<'_>) -> Result<i32, Failure>;

    /// This node's STATE for a sync round. Empty or `Err` makes the node leave.
    fn get_state(&mut self, ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Failure>;

    /// All STATEs are in: choose the data leader and mark every member whose data is already
    /// the leader's as synced ([`SyncRound::set_synced`]). The leader sends its UPDATEs and
    /// UPDATE_COMPLETE from here ([`Ctx::send_update`]).
    fn process_state_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &mut SyncRound,
    ) -> Result<(), Failure>;

    /// An UPDATE from the leader, in UPDATE mode. Collect it; apply at [`App::commit`].
    fn process_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &SyncRound,
        from: MemberId,
        payload: &[u8],
    ) -> Result<(), Failure>;

    /// UPDATE_COMPLETE in UPDATE mode: apply the collected updates.
    fn commit(&mut self, ctx: &mut Ctx<'_>, round: &SyncRound) -> Result<(), Failure>;

    /// The round's data is released (new membership, round finished or failed): drop what
    /// [`App::process_state_update`] kept. Called only if that ran in this round.
    fn cleanup(&mut self, round: &SyncRound) {
        let _ = round;
    }

    /// Whether the application takes part in verify rounds (C: a checksum callback exists).
    fn has_checksum(&self) -> bool {
        false
    }

    /// The checksum of the local data, at the point of the VERIFY_REQUEST in the total order.
    fn checksum(&mut self) -> Result<[u8; 32], Failure> {
        Err(Failure::Leave)
    }

    /// The node reached SYNCED mode.
    fn synced(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A membership change was processed (C's optional confchg callback).
    fn confchg(&mut self, ctx: &mut Ctx<'_>, members: &[MemberId]) {
        let _ = (ctx, members);
    }
}

/// The DFSM's variables that application callbacks may read or send through.
#[derive(Clone, Debug)]
pub(super) struct Core {
    pub(super) cfg: Config,
    pub(super) local: MemberId,
    pub(super) mode: Mode,
    pub(super) we_are_member: bool,
    pub(super) lowest_nodeid: Option<NodeId>,
    pub(super) local_epoch_counter: u32,
    pub(super) sync_epoch: Epoch,
    pub(super) msgcount: u64,
}

impl Core {
    pub(super) fn send_normal(
        &mut self,
        fx: &mut Effects,
        kind: SendKind,
        subtype: u16,
        payload: &[u8],
        now: u32,
    ) -> u64 {
        self.msgcount += 1;
        let count = self.msgcount;
        let bytes =
            Message::normal(subtype, self.cfg.protocol_version, now, count, payload).encode();
        fx.push(Effect::Send(Outgoing { kind, bytes }));
        count
    }

    pub(super) fn send_state(
        &self,
        fx: &mut Effects,
        kind: SendKind,
        t: MsgType,
        payload: &[u8],
        now: u32,
    ) {
        let bytes =
            Message::state(t, self.cfg.protocol_version, now, self.sync_epoch, payload).encode();
        fx.push(Effect::Send(Outgoing { kind, bytes }));
    }
}

/// What an application callback can see and do.
pub struct Ctx<'a> {
    pub(super) core: &'a mut Core,
    pub(super) fx: &'a mut Effects,
    pub(super) now: u32,
}

impl Ctx<'_> {
    pub fn local(&self) -> MemberId {
        self.core.local
    }

    pub fn now(&self) -> u32 {
        self.now
    }

    pub fn mode(&self) -> Mode {
        self.core.mode
    }

    pub fn is_local(&self, m: MemberId) -> bool {
        m == self.core.local
    }

    /// The smallest node id of the current membership.
    pub fn lowest_nodeid(&self) -> Option<NodeId> {
        self.core.lowest_nodeid
    }

    /// This node has the lowest node id (C `dfsm_lowest_nodeid`): it answers unlock requests.
    pub fn is_lowest(&self) -> bool {
        self.core.lowest_nodeid == Some(self.core.local.nodeid)
    }

    /// Multicast a NORMAL message; returns its count. Nobody waits for its result.
    pub fn send_message(&mut self, subtype: u16, payload: &[u8]) -> u64 {
        self.core
            .send_normal(self.fx, SendKind::Normal, subtype, payload, self.now)
    }

    /// Multicast an UPDATE (the data leader, from `process_state_update`).
    pub fn send_update(&mut self, payload: &[u8]) {
        self.core.send_state(
            self.fx,
            SendKind::Update,
            MsgType::Update,
            payload,
            self.now,
        );
    }

    /// Multicast UPDATE_COMPLETE (the data leader, after its updates; also with none).
    pub fn send_update_complete(&mut self) {
        self.core.send_state(
            self.fx,
            SendKind::UpdateComplete,
            MsgType::UpdateComplete,
            &[],
            self.now,
        );
    }
}
