//! The seam between the DFSM and a CPG implementation.
//!
//! A [`Transport`] is one joined-or-not CPG group handle: corosync's (in the daemon) or the
//! simulated bus ([`crate::sim`]). A [`Driver`] does what C's service loop does around the
//! DFSM (`service_dfsm_*`, `dfsm_initialize`, `dfsm_join`): it executes the effects in order,
//! keeps the local waiters, leaves the group after a dispatch that put the DFSM into an error
//! mode, and tells the loop when the connection must be re-initialized.
//!
//! A corosync adapter needs only: a [`Transport`] over its CPG handle; its deliver and confchg
//! callbacks turned into [`CpgEvent`]s and handed to [`Driver::dispatch`] in order;
//! [`Driver::timer`] about every second; [`Driver::start`] at initialization and again when
//! [`Next::Restart`] asks for it (C waits ≥ 5 s); [`Driver::send`] for FUSE writes, waking
//! each writer when its count comes back in a [`Finished`] list.

use std::fmt;

use crate::dfsm::{App, Dfsm, Effect, Effects, NotRestartable, SendKind};
use crate::member::MemberId;
use crate::waiters::{Outcome, Waiters};

/// One CPG group handle.
pub trait Transport {
    type Error: fmt::Debug;

    /// `cpg_join` (retrying while corosync says TRY_AGAIN).
    fn join(&mut self) -> Result<(), Self::Error>;
    /// `cpg_leave`.
    fn leave(&mut self) -> Result<(), Self::Error>;
    /// `cpg_mcast_joined(CPG_TYPE_AGREED)`; the message comes back to this member too.
    fn mcast(&mut self, msg: &[u8]) -> Result<(), Self::Error>;
}

/// One callback of `cpg_dispatch`, as the adapter hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpgEvent {
    /// The deliver callback: a message of the group, own ones included.
    Deliver { from: MemberId, msg: Vec<u8> },
    /// The confchg callback: the full member list, and who left and joined.
    Confchg {
        members: Vec<MemberId>,
        left: Vec<MemberId>,
        joined: Vec<MemberId>,
    },
}

/// What the service loop does after a dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep dispatching.
    Continue,
    /// The group is left and our own leave was seen: drop the handle from the poll set and
    /// [`Driver::start`] again later (C: ≥ 5 s after the last attempt).
    Restart,
    /// ERROR or VERSION_ERROR: never re-join until the daemon restarts.
    Stop,
}

/// Why [`Driver::start`] failed.
#[derive(Debug)]
pub enum StartError<E> {
    NotRestartable(NotRestartable),
    Join(E),
}

/// A wait that ended, with the count the sender registered under.
pub type Finished = (u64, Outcome);

/// The service-loop glue around one DFSM.
#[derive(Debug, Default)]
pub struct Driver {
    joined: bool,
    waiters: Waiters,
    /// Every effect executed, for observers (tests, logs); drained by the caller.
    observed: Vec<Effect>,
}

impl Driver {
    pub fn new() -> Driver {
        Driver::default()
    }

    /// Whether the handle is joined to the group (between a successful join and a leave).
    pub fn joined(&self) -> bool {
        self.joined
    }

    pub fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// The effects executed since the last call.
    pub fn take_observed(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.observed)
    }

    /// C `service_dfsm_initialize`: refuse after ERROR/VERSION_ERROR, re-initialize the DFSM
    /// (finishing every waiter), join the group.
    pub fn start<A: App, T: Transport>(
        &mut self,
        dfsm: &mut Dfsm<A>,
        t: &mut T,
        local: MemberId,
        now: u32,
    ) -> Result<Vec<Finished>, StartError<T::Error>> {
        let mut fx = Effects::new();
        dfsm.initialize(local, &mut fx)
            .map_err(StartError::NotRestartable)?;
        let finished = self.execute(dfsm, t, &mut fx, now);
        t.join().map_err(StartError::Join)?;
        self.joined = true;
        Ok(finished)
    }

    /// One dispatched event: feed it to the DFSM, execute the effects, then C's
    /// post-dispatch step ([`Driver::after_dispatch`]).
    pub fn dispatch<A: App, T: Transport>(
        &mut self,
        dfsm: &mut Dfsm<A>,
        t: &mut T,
        ev: &CpgEvent,
        now: u32,
    ) -> (Vec<Finished>, Next) {
        let mut fx = Effects::new();
        match ev {
            CpgEvent::Deliver { from, msg } => dfsm.on_deliver(*from, msg, now, &mut fx),
            CpgEvent::Confchg {
                members,
                left,
                joined,
            } => dfsm.on_confchg(members, left, joined, now, &mut fx),
        }
        let finished = self.execute(dfsm, t, &mut fx, now);
        (finished, self.after_dispatch(dfsm, t))
    }

    /// The service timer (call it every second or so): verify requests.
    pub fn timer<A: App, T: Transport>(
        &mut self,
        dfsm: &mut Dfsm<A>,
        t: &mut T,
        now: u32,
    ) -> Vec<Finished> {
        let mut fx = Effects::new();
        dfsm.on_timer(now, &mut fx);
        self.execute(dfsm, t, &mut fx, now)
    }

    /// Send a NORMAL message for a local sender that waits for its result (C
    /// `dfsm_send_message_sync`). Returns the count to wait for; a failed multicast finishes
    /// the wait at once (in the returned list).
    pub fn send<A: App, T: Transport>(
        &mut self,
        dfsm: &mut Dfsm<A>,
        t: &mut T,
        subtype: u16,
        payload: &[u8],
        now: u32,
    ) -> (u64, Vec<Finished>) {
        let mut fx = Effects::new();
        let count = dfsm.send_message(subtype, payload, now, &mut fx);
        self.waiters.register(count);
        let finished = self.execute(dfsm, t, &mut fx, now);
        (count, finished)
    }

    /// Execute effects in order: multicast, settle waiters, record. A failed multicast is
    /// reported back to the DFSM, whose new effects run too.
    pub fn execute<A: App, T: Transport>(
        &mut self,
        dfsm: &mut Dfsm<A>,
        t: &mut T,
        fx: &mut Effects,
        now: u32,
    ) -> Vec<Finished> {
        let mut finished = Vec::new();
        while let Some(e) = fx.pop() {
            match &e {
                Effect::Send(o) => {
                    if t.mcast(&o.bytes).is_err() {
                        if o.kind == SendKind::Normal {
                            if let Some(out) = o.count().and_then(|c| self.waiters.send_failed(c)) {
                                finished.push((o.count().unwrap_or(0), out));
                            }
                        }
                        dfsm.on_send_failed(o.kind, now, fx);
                    }
                }
                Effect::Result { .. } | Effect::Abort { .. } => {
                    finished.extend(self.waiters.on_effect(&e));
                }
                Effect::ModeChanged { .. } | Effect::Verified { .. } => {}
            }
            self.observed.push(e);
        }
        finished
    }

    /// Leave the group on purpose (C `dfsm_finalize` at shutdown): finish every waiter and
    /// `cpg_leave`.
    pub fn shutdown<A: App, T: Transport>(
        &mut self,
        dfsm: &mut Dfsm<A>,
        t: &mut T,
        now: u32,
    ) -> Vec<Finished> {
        let mut fx = Effects::new();
        dfsm.finalize(&mut fx);
        let finished = self.execute(dfsm, t, &mut fx, now);
        if self.joined {
            self.joined = false;
            let _ = t.leave();
        }
        finished
    }

    /// C `service_dfsm_dispatch` after one dispatch: in an error mode, leave the group if
    /// still joined; once our own leave was seen, ask for a restart (or stop for good).
    pub fn after_dispatch<A: App, T: Transport>(&mut self, dfsm: &Dfsm<A>, t: &mut T) -> Next {
        if !dfsm.mode().is_error() {
            return Next::Continue;
        }
        if self.joined {
            self.joined = false;
            if t.leave().is_err() {
                return self.restart_or_stop(dfsm);
            }
            return Next::Continue;
        }
        if dfsm.is_member() {
            Next::Continue
        } else {
            self.restart_or_stop(dfsm)
        }
    }

    fn restart_or_stop<A: App>(&self, dfsm: &Dfsm<A>) -> Next {
        if dfsm.mode().restartable() {
            Next::Restart
        } else {
            Next::Stop
        }
    }
}
