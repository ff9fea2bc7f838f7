//! The DFSM's vocabulary towards its adapter: modes, configuration, and the effects it emits.

use std::collections::VecDeque;

use crate::member::MemberId;
use crate::msg::{Message, Rejected};

/// DFSM modes (`dfsm_mode_t`). The order is C's numeric order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Initialized or joining; no membership change processed yet.
    Start,
    /// Membership changed; the state exchange runs.
    StartSync,
    /// Normal operation: NORMAL messages are applied as they arrive.
    Synced,
    /// Local data is outdated: waiting for the data leader's updates.
    Update,
    /// Leave the CPG group, then re-join later with a fresh sync.
    Leave,
    /// A newer protocol version was seen; never restarts.
    VersionError,
    /// Internal or database error; never restarts.
    Error,
}

impl Mode {
    /// C's value.
    pub fn to_c(self) -> u8 {
        match self {
            Mode::Start => 0,
            Mode::StartSync => 1,
            Mode::Synced => 2,
            Mode::Update => 3,
            Mode::Leave => 253,
            Mode::VersionError => 254,
            Mode::Error => 255,
        }
    }

    /// LEAVE, VERSION_ERROR and ERROR (C: mode ≥ 128): the adapter leaves the group.
    pub fn is_error(self) -> bool {
        self.to_c() >= 128
    }

    /// Whether the service may initialize and join again (not after ERROR/VERSION_ERROR).
    pub fn restartable(self) -> bool {
        !matches!(self, Mode::Error | Mode::VersionError)
    }

    /// The line C logs when entering the mode.
    pub fn log_text(self) -> &'static str {
        match self {
            Mode::Start => "start cluster connection",
            Mode::StartSync => "starting data syncronisation",
            Mode::Synced => "all data is up to date",
            Mode::Update => "waiting for updates from leader",
            Mode::Leave => "leaving CPG group",
            Mode::Error => "serious internal error - stop cluster connection",
            Mode::VersionError => "detected newer protocol - please update this node",
        }
    }
}

/// Fixed parameters of one DFSM instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Sent in every message; a higher one received stops this node, a lower one is ignored.
    /// 1 in `pve_dcdb_v1`, 0 in `pve_kvstore_v1`.
    pub protocol_version: u32,
    /// Seconds between verify requests ([`Dfsm::on_timer`](super::Dfsm::on_timer)); `None` for
    /// no timer (kvstore).
    /// C: 3600 for dcdb.
    pub verify_interval: Option<u32>,
    /// Reproduce C's reordering window (cluster.md §8.2 #15): in SYNCED mode, apply a NORMAL
    /// message at once even if its sender is not synced yet, while that sender's older
    /// messages still wait in the pending queue until UPDATE_COMPLETE. Replicas then apply
    /// the joiner's messages in different orders and diverge (the simulated cluster shows it;
    /// the hourly verify repairs it). `false` (the default) queues such a message too, so
    /// every member applies the joiner's messages after UPDATE_COMPLETE, in count order, as
    /// the joiner itself does. Only the order on this node changes; nothing on the wire.
    pub c_reorder_window: bool,
}

/// Why the mode changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// An ordinary step of the protocol.
    Protocol,
    /// [`Dfsm::initialize`](super::Dfsm::initialize).
    Initialize,
    /// A received message failed the checks of cluster.md §2.4.
    Rejected(Rejected),
    /// This node is no longer in the member list.
    NotMember,
    /// An application callback failed.
    App(Callback),
    /// A protocol anomaly.
    Anomaly(Anomaly),
    /// The adapter could not multicast a message the protocol depends on.
    SendFailed(SendKind),
    /// This node's checksum differs from the verify requester's.
    ChecksumMismatch { csum_id: u64 },
}

/// The application callbacks, for [`Cause::App`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    Deliver,
    GetState,
    ProcessStateUpdate,
    ProcessUpdate,
    Commit,
    Checksum,
}

/// Protocol anomalies that make C leave the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// A state message while in START mode ("internal error - unknown mode").
    StateMessageInStart { msg_type: u16 },
    /// A state message type the mode does not expect.
    UnexpectedStateMessage { msg_type: u16 },
    /// STATE from a member not in the table.
    StateFromNonMember(MemberId),
    /// A second STATE from the same member in one round.
    DuplicateState(MemberId),
    /// A NORMAL message to queue from a sender not in the table.
    QueueFromNonMember(MemberId),
    /// VERIFY_REQUEST or VERIFY with a wrong payload length.
    VerifyLength { msg_type: u16, len: usize },
    /// Queued messages could not be delivered (the mode changed under them).
    QueueDelivery,
}

/// The kinds of message this DFSM sends; what a failed multicast means depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SendKind {
    /// A NORMAL message, [`Dfsm::send_message`](super::Dfsm::send_message) or
    /// [`Ctx::send_message`](super::Ctx::send_message).
    Normal,
    /// A queued own NORMAL message sent again because members joined.
    Resend,
    SyncStart,
    State,
    Update,
    UpdateComplete,
    VerifyRequest,
    Verify,
}

/// One multicast to perform, in order, as `CPG_TYPE_AGREED`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: SendKind,
    pub bytes: Vec<u8>,
}

impl Outgoing {
    /// The count of a NORMAL message (what a local waiter registered under).
    pub fn count(&self) -> Option<u64> {
        Message::decode(&self.bytes).ok()?.count()
    }
}

/// What a verify round found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// "data verification successful".
    Ok,
    /// "wrong checksum - restarting": this node leaves and resyncs.
    Mismatch,
    /// "skip verification - no checksum saved" (a confchg came between).
    Skipped,
}

/// An output of the state machine, to be executed by the adapter in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Multicast these bytes to the group.
    Send(Outgoing),
    /// This node's own NORMAL message `count` was applied locally, with the application's
    /// `result`. Every local sender waiting for a count ≤ `count` is done; those whose own
    /// message got no result were not processed (C returns `-EBUSY` to them).
    Result { count: u64, result: i32 },
    /// Every local sender waiting for a count ≤ `up_to` is done without a result (C's
    /// `dfsm_send_sync_message_abort` at (re)initialization).
    Abort { up_to: u64 },
    /// The mode changed. At [`Mode::is_error`] modes the adapter leaves the CPG group.
    ModeChanged { from: Mode, to: Mode, cause: Cause },
    /// A verify round ended on this node.
    Verified {
        csum_id: u64,
        outcome: VerifyOutcome,
    },
}

/// The effects queue.
#[derive(Clone, Debug, Default)]
pub struct Effects {
    queue: VecDeque<Effect>,
}

impl Effects {
    pub fn new() -> Effects {
        Effects::default()
    }

    pub fn push(&mut self, e: Effect) {
        self.queue.push_back(e);
    }

    pub fn pop(&mut self) -> Option<Effect> {
        self.queue.pop_front()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = Effect> + '_ {
        self.queue.drain(..)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Effect> {
        self.queue.iter()
    }
}
