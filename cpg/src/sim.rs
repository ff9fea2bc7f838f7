//! An in-process CPG: a total-order bus that drives many DFSM nodes in one process, without
//! corosync (feature `sim`).
//!
//! The bus is the "corosync" side. It keeps, per node, whether the process is up and joined to
//! the group, and which network component (partition) it is in. A multicast is appended at once
//! to the inbox of every member of the sender's component, the sender included (loopback); a
//! membership change appends a confchg to the inbox of every member whose view changed. Since
//! all appends happen in one global order, every node sees the messages and confchgs of its
//! view in the same order, as CPG's virtual synchrony promises. Nodes then consume their
//! inboxes at different paces: [`Sim::step`] picks the next node at random from a seed, so
//! each seed is one reproducible interleaving.
//!
//! Each node runs through a [`Driver`], the same glue the corosync adapter uses, so the
//! leave-then-rejoin cycle of C's service loop is exercised too.

pub mod toy;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::dfsm::{App, Config, Dfsm, Effect, Effects, Mode};
use crate::member::MemberId;
use crate::transport::{CpgEvent, Driver, Finished, Next, Transport};
use crate::waiters::Outcome;

/// The bus state of one node.
#[derive(Clone, Debug)]
struct Port {
    id: MemberId,
    up: bool,
    joined: bool,
    component: u32,
    inbox: VecDeque<CpgEvent>,
}

/// The "corosync" side: membership, components, inboxes.
#[derive(Debug, Default)]
struct Bus {
    ports: Vec<Port>,
}

/// Why the bus refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The node's process is down.
    Down,
    /// The handle is not joined to the group (CPG answers an error to `mcast` then).
    NotJoined,
    /// Already joined.
    AlreadyJoined,
}

impl Bus {
    fn in_group(&self, i: usize) -> bool {
        self.ports[i].up && self.ports[i].joined
    }

    /// The members of component `c`, sorted by slot.
    fn view(&self, c: u32) -> Vec<usize> {
        (0..self.ports.len())
            .filter(|&i| self.in_group(i) && self.ports[i].component == c)
            .collect()
    }

    fn ids(&self, slots: &[usize]) -> Vec<MemberId> {
        slots.iter().map(|&i| self.ports[i].id).collect()
    }

    /// Tell every node whose view changed: `before[i]` is node i's view before the change.
    fn announce(&mut self, before: &BTreeMap<usize, Vec<usize>>) {
        let after = self.views();
        let slots: BTreeSet<usize> = before.keys().chain(after.keys()).copied().collect();
        for i in slots {
            let old = before.get(&i).cloned().unwrap_or_default();
            if !self.ports[i].up {
                continue;
            }
            let ev = match after.get(&i) {
                Some(new) if *new == old => continue,
                Some(new) => CpgEvent::Confchg {
                    members: self.ids(new),
                    left: self.ids(&minus(&old, new)),
                    joined: self.ids(&minus(new, &old)),
                },
                // It left: CPG tells it the others' view, with itself as the one who left.
                None => CpgEvent::Confchg {
                    members: self.ids(&self.view(self.ports[i].component)),
                    left: vec![self.ports[i].id],
                    joined: vec![],
                },
            };
            self.ports[i].inbox.push_back(ev);
        }
    }

    fn views(&self) -> BTreeMap<usize, Vec<usize>> {
        (0..self.ports.len())
            .filter(|&i| self.in_group(i))
            .map(|i| (i, self.view(self.ports[i].component)))
            .collect()
    }

    fn join(&mut self, i: usize) -> Result<(), BusError> {
        if !self.ports[i].up {
            return Err(BusError::Down);
        }
        if self.ports[i].joined {
            return Err(BusError::AlreadyJoined);
        }
        let before = self.views();
        self.ports[i].joined = true;
        self.announce(&before);
        Ok(())
    }

    fn leave(&mut self, i: usize) -> Result<(), BusError> {
        if !self.in_group(i) {
            return Err(BusError::NotJoined);
        }
        let before = self.views();
        self.ports[i].joined = false;
        self.announce(&before);
        Ok(())
    }

    fn mcast(&mut self, i: usize, bytes: &[u8]) -> Result<(), BusError> {
        if !self.ports[i].up {
            return Err(BusError::Down);
        }
        if !self.ports[i].joined {
            return Err(BusError::NotJoined);
        }
        let from = self.ports[i].id;
        let bytes = bytes.to_vec();
        for j in self.view(self.ports[i].component) {
            let msg = bytes.clone();
            self.ports[j]
                .inbox
                .push_back(CpgEvent::Deliver { from, msg });
        }
        Ok(())
    }
}

fn minus(a: &[usize], b: &[usize]) -> Vec<usize> {
    a.iter().filter(|x| !b.contains(x)).copied().collect()
}

/// One node's handle on the bus, the [`Transport`] its driver uses.
struct BusPort<'a> {
    bus: &'a mut Bus,
    slot: usize,
}

impl Transport for BusPort<'_> {
    type Error = BusError;

    fn join(&mut self) -> Result<(), BusError> {
        self.bus.join(self.slot)
    }

    fn leave(&mut self) -> Result<(), BusError> {
        self.bus.leave(self.slot)
    }

    fn mcast(&mut self, msg: &[u8]) -> Result<(), BusError> {
        self.bus.mcast(self.slot, msg)
    }
}

/// A simulated node: a DFSM, its driver, and what it observed.
pub struct Node<A> {
    pub dfsm: Dfsm<A>,
    driver: Driver,
    /// Every effect this node executed, in order.
    pub effects: Vec<Effect>,
    /// Finished waits of local senders, by count.
    pub outcomes: BTreeMap<u64, Outcome>,
    /// When the service loop re-initializes the connection (after a leave).
    restart_at: Option<u32>,
    /// The loop gave up for good (ERROR/VERSION_ERROR).
    pub stopped: bool,
}

impl<A> Node<A> {
    /// The modes this node went through, in order.
    pub fn modes(&self) -> Vec<Mode> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::ModeChanged { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }
}

/// A seeded SplitMix64 generator: small, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Many nodes, one bus, one clock.
pub struct Sim<A> {
    bus: Bus,
    nodes: Vec<Node<A>>,
    cfg: Config,
    /// The simulated clock, seconds.
    pub now: u32,
    pub rng: Rng,
    /// Seconds between a node's own leave and its re-initialization (C: the loop's start job).
    pub restart_delay: u32,
    /// [`Sim::run`] panics after this many steps (a livelock).
    pub max_steps: usize,
}

impl<A: App> Sim<A> {
    pub fn new(cfg: Config, seed: u64) -> Sim<A> {
        Sim {
            bus: Bus::default(),
            nodes: Vec::new(),
            cfg,
            now: 1_000_000,
            rng: Rng::new(seed),
            restart_delay: 1,
            max_steps: 200_000,
        }
    }

    /// Add a node (process up, not joined). Returns its slot.
    pub fn add(&mut self, id: MemberId, app: A) -> usize {
        self.add_with(id, app, self.cfg)
    }

    /// Add a node with its own configuration (e.g. another protocol version).
    pub fn add_with(&mut self, id: MemberId, app: A, cfg: Config) -> usize {
        self.bus.ports.push(Port {
            id,
            up: true,
            joined: false,
            component: 0,
            inbox: VecDeque::new(),
        });
        self.nodes.push(Node {
            dfsm: Dfsm::new(cfg, id, app, self.now),
            driver: Driver::new(),
            effects: Vec::new(),
            outcomes: BTreeMap::new(),
            restart_at: None,
            stopped: false,
        });
        self.nodes.len() - 1
    }

    pub fn node(&self, i: usize) -> &Node<A> {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node<A> {
        &mut self.nodes[i]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn app(&self, i: usize) -> &A {
        self.nodes[i].dfsm.app()
    }

    pub fn mode(&self, i: usize) -> Mode {
        self.nodes[i].dfsm.mode()
    }

    /// The node's process runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.bus.ports[i].up
    }

    /// Joined to the group at the bus level.
    pub fn in_group(&self, i: usize) -> bool {
        self.bus.in_group(i)
    }

    fn record(&mut self, i: usize, finished: Vec<Finished>) {
        let n = &mut self.nodes[i];
        n.effects.extend(n.driver.take_observed());
        n.outcomes.extend(finished);
    }

    /// Start the node's service: initialize the DFSM and join the group.
    pub fn start(&mut self, i: usize) {
        let id = self.bus.ports[i].id;
        let n = &mut self.nodes[i];
        let mut port = BusPort {
            bus: &mut self.bus,
            slot: i,
        };
        let finished = n
            .driver
            .start(&mut n.dfsm, &mut port, id, self.now)
            .expect("start");
        n.restart_at = None;
        n.stopped = false;
        self.record(i, finished);
    }

    /// The service shuts down: finish its waiters and leave the group (`cpg_leave`). It stays
    /// out until [`Sim::start`].
    pub fn shutdown(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let mut port = BusPort {
            bus: &mut self.bus,
            slot: i,
        };
        let finished = n.driver.shutdown(&mut n.dfsm, &mut port, self.now);
        n.stopped = true;
        n.restart_at = None;
        self.record(i, finished);
    }

    /// The process dies: its inbox is lost, the others see it leave.
    pub fn crash(&mut self, i: usize) {
        let before = self.bus.views();
        let p = &mut self.bus.ports[i];
        p.up = false;
        p.joined = false;
        p.inbox.clear();
        self.bus.announce(&before);
    }

    /// A crashed node comes back as a new process (new pid, fresh DFSM, the given app state)
    /// and starts its service.
    pub fn restart(&mut self, i: usize, pid: u32, app: A) {
        assert!(!self.bus.ports[i].up, "node {i} is still up");
        let id = MemberId {
            nodeid: self.bus.ports[i].id.nodeid,
            pid,
        };
        let p = &mut self.bus.ports[i];
        p.id = id;
        p.up = true;
        p.joined = false;
        let cfg = self.nodes[i].dfsm.config();
        self.nodes[i] = Node {
            dfsm: Dfsm::new(cfg, id, app, self.now),
            driver: Driver::new(),
            effects: Vec::new(),
            outcomes: BTreeMap::new(),
            restart_at: None,
            stopped: false,
        };
        self.start(i);
    }

    /// Split the network: each group becomes its own component. Nodes listed in no group stay
    /// in component 0 with whoever else is left there.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let before = self.bus.views();
        for p in &mut self.bus.ports {
            p.component = 0;
        }
        for (g, slots) in groups.iter().enumerate() {
            for &i in *slots {
                self.bus.ports[i].component = g as u32 + 1;
            }
        }
        self.bus.announce(&before);
    }

    /// Join every component into one.
    pub fn heal(&mut self) {
        let before = self.bus.views();
        for p in &mut self.bus.ports {
            p.component = 0;
        }
        self.bus.announce(&before);
    }

    /// A local sender on node `i` multicasts a NORMAL message and waits for its result (see
    /// [`Node::outcomes`]). Returns the count.
    pub fn send(&mut self, i: usize, subtype: u16, payload: &[u8]) -> u64 {
        let n = &mut self.nodes[i];
        let mut port = BusPort {
            bus: &mut self.bus,
            slot: i,
        };
        let (count, finished) = n
            .driver
            .send(&mut n.dfsm, &mut port, subtype, payload, self.now);
        self.record(i, finished);
        count
    }

    /// Fire node `i`'s verify timer now, whatever the interval.
    pub fn request_verify(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let mut fx = Effects::new();
        n.dfsm.request_verify(self.now, &mut fx);
        let mut port = BusPort {
            bus: &mut self.bus,
            slot: i,
        };
        let finished = n.driver.execute(&mut n.dfsm, &mut port, &mut fx, self.now);
        self.record(i, finished);
    }

    /// Advance the clock, running every node's timer.
    pub fn advance(&mut self, secs: u32) {
        self.now = self.now.wrapping_add(secs);
        for i in 0..self.nodes.len() {
            if !self.bus.ports[i].up {
                continue;
            }
            let n = &mut self.nodes[i];
            let mut port = BusPort {
                bus: &mut self.bus,
                slot: i,
            };
            let finished = n.driver.timer(&mut n.dfsm, &mut port, self.now);
            self.record(i, finished);
        }
    }

    /// Nodes with input waiting.
    fn busy(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.bus.ports[i].up && !self.bus.ports[i].inbox.is_empty())
            .collect()
    }

    /// Deliver one event to one node chosen by the seed. False if no node has input.
    pub fn step(&mut self) -> bool {
        let busy = self.busy();
        if busy.is_empty() {
            return false;
        }
        let i = busy[self.rng.below(busy.len())];
        let ev = self.bus.ports[i].inbox.pop_front().expect("busy");
        let now = self.now;
        let n = &mut self.nodes[i];
        let mut port = BusPort {
            bus: &mut self.bus,
            slot: i,
        };
        let (finished, next) = n.driver.dispatch(&mut n.dfsm, &mut port, &ev, now);
        match next {
            Next::Continue => {}
            Next::Restart if !n.stopped => {
                n.restart_at = Some(now.wrapping_add(self.restart_delay))
            }
            Next::Restart => {}
            Next::Stop => n.stopped = true,
        }
        self.record(i, finished);
        true
    }

    /// Run until no node has input and no restart is due; restarts advance the clock.
    pub fn run(&mut self) {
        let mut steps = 0;
        loop {
            while self.step() {
                steps += 1;
                assert!(
                    steps < self.max_steps,
                    "no quiescence after {steps} steps:\n{self:?}"
                );
            }
            let due = self.nodes.iter().filter_map(|n| n.restart_at).min();
            let Some(at) = due else { break };
            if at > self.now {
                self.advance(at - self.now);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].restart_at.is_some_and(|t| t <= self.now) {
                    self.start(i);
                }
            }
        }
    }
}

impl<A: App> fmt::Debug for Sim<A> {
    /// One line per node: id, bus state, mode, queue lengths, inbox length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sim at {}:", self.now)?;
        for (i, n) in self.nodes.iter().enumerate() {
            let p = &self.bus.ports[i];
            writeln!(
                f,
                "  [{i}] {} up={} joined={} comp={} mode={:?} queued={:?} inbox={} waiting={}",
                p.id,
                p.up,
                p.joined,
                p.component,
                n.dfsm.mode(),
                n.dfsm.queued(),
                p.inbox.len(),
                n.driver.waiters().len(),
            )?;
        }
        Ok(())
    }
}
