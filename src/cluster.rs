//! Cluster mode: the service loop around the database DFSM, quorum and cmap (C `loop.c`,
//! `dfsm.c`'s service functions, `quorum.c`, `confdb.c`).
//!
//! One thread runs the loop: it (re)connects to corosync (at most every 5 s, as C), polls the
//! CPG and quorum descriptors, hands every callback to the DFSM in delivery order, and ticks
//! the verify timer. FUSE threads call [`Cluster::submit`]: it multicasts under the loop's lock
//! (so counts leave in order) and then waits, without any lock, until the loop has applied
//! that very message here; the result is what memdb decided, on every node alike.
//!
//! Lock order: a group (its DFSM) before the tree. A FUSE thread never holds the tree's lock
//! while it submits.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lwcfs_cpg::corosync::{self, CpgConn, QuorumConn};
use lwcfs_cpg::dfsm::{Effects, VerifyOutcome};
use lwcfs_cpg::transport::{Finished, Next};
use lwcfs_cpg::{App, CpgEvent, Dfsm, Driver, Effect, MemberId, Outcome, Transport, DCDB, KVSTORE};
use lwcfs_fuse::FsResult;
use lwcfs_memdb::wire::{DcdbType, UnlockPayload};
use lwcfs_memdb::{DcdbMsg, Op, TreePath};

use crate::clusterlog::Entry;
use crate::dcdb::Dcdb;
use crate::kvgroup::{update_payload, KvGroup};
use crate::service::Shared;
use crate::status::{kvstore, Broadcast, Status};

/// C retries a service's initialization at most every 5 s.
const RESTART_INTERVAL: Duration = Duration::from_secs(5);

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

pub struct ClusterOptions {
    pub lock_timeout: u32,
    /// Seconds between verify requests (C: 3600).
    pub verify_interval: u32,
}

/// One CPG group's service state (C: one DFSM service of the loop).
struct Group<A> {
    spec: lwcfs_cpg::Group,
    dfsm: Dfsm<A>,
    driver: Driver,
    conn: Option<CpgConn>,
    /// The group must be (re)joined: at start, after a leave, after corosync went away.
    need_start: bool,
    /// ERROR or VERSION_ERROR: never re-join until the daemon restarts.
    stopped: bool,
    last_start: Option<Instant>,
}

impl<A: App> Group<A> {
    fn new(spec: lwcfs_cpg::Group, cfg: lwcfs_cpg::Config, app: A) -> Group<A> {
        Group {
            spec,
            dfsm: Dfsm::new(cfg, MemberId::new(0, std::process::id()), app, unix_now()),
            driver: Driver::new(),
            conn: None,
            need_start: true,
            stopped: false,
            last_start: None,
        }
    }

    /// The joined connection, if any.
    fn joined(&mut self) -> Option<&mut CpgConn> {
        if self.need_start {
            return None;
        }
        self.conn.as_mut()
    }

    /// The descriptor to poll: after a leave, C takes it out of the poll set until the restart.
    fn fd(&self) -> Option<i32> {
        if self.need_start {
            return None;
        }
        self.conn.as_ref().and_then(|c| c.fd().ok())
    }

    /// C's start job: connect if needed, initialize and join, at most every 5 s.
    fn start_job(&mut self) -> Vec<Finished> {
        if !self.need_start || self.stopped {
            return Vec::new();
        }
        if self
            .last_start
            .is_some_and(|t| t.elapsed() < RESTART_INTERVAL)
        {
            return Vec::new();
        }
        self.last_start = Some(Instant::now());
        if self.conn.is_none() {
            match CpgConn::connect(&self.spec) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    tracing::debug!("{}: cpg_initialize failed: {e}", self.spec.name);
                    return Vec::new();
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Vec::new();
        };
        let local = match conn.local() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{}: cpg_local_get failed: {e}", self.spec.name);
                self.conn = None;
                return Vec::new();
            }
        };
        match self.driver.start(&mut self.dfsm, conn, local, unix_now()) {
            Ok(finished) => {
                self.need_start = false;
                tracing::info!("joined {} as {local}", self.spec.name);
                finished
            }
            Err(lwcfs_cpg::transport::StartError::NotRestartable(e)) => {
                tracing::error!("{}: {e}", self.spec.name);
                self.stopped = true;
                Vec::new()
            }
            Err(lwcfs_cpg::transport::StartError::Join(e)) => {
                tracing::error!("{}: cpg_join failed: {e}", self.spec.name);
                self.conn = None;
                Vec::new()
            }
        }
    }

    /// Dispatch what corosync has for this group. Returns the finished waits and whether a
    /// membership change was seen.
    fn dispatch(&mut self) -> (Vec<Finished>, bool) {
        let mut done = Vec::new();
        let Some(conn) = self.conn.as_mut() else {
            return (done, false);
        };
        let events = match conn.dispatch() {
            Ok(ev) => ev,
            Err(e) => {
                // Corosync went away: drop the handle, release every waiter (EBUSY), and
                // start over once it is back.
                tracing::error!("{}: cpg_dispatch failed: {e}", self.spec.name);
                return (self.lost(), true);
            }
        };
        let confchg = events.iter().any(|e| matches!(e, CpgEvent::Confchg { .. }));
        for ev in &events {
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            let (finished, next) = self.driver.dispatch(&mut self.dfsm, conn, ev, unix_now());
            done.extend(finished);
            self.log_effects();
            match next {
                Next::Continue => {}
                Next::Restart => {
                    self.need_start = true;
                    self.last_start = Some(Instant::now());
                }
                Next::Stop => {
                    self.need_start = true;
                    self.stopped = true;
                }
            }
        }
        (done, confchg)
    }

    /// The connection is gone: re-initialize the DFSM (finishing every waiter) and wait for
    /// the start job.
    fn lost(&mut self) -> Vec<Finished> {
        self.conn = None;
        self.need_start = true;
        let mut fx = Effects::new();
        let local = self.dfsm.local();
        if self.dfsm.initialize(local, &mut fx).is_err() {
            self.stopped = true;
        }
        self.driver
            .execute(&mut self.dfsm, &mut NoConn, &mut fx, unix_now())
    }

    fn timer(&mut self) -> Vec<Finished> {
        let now = unix_now();
        match self.joined() {
            Some(_) => {
                let conn = self.conn.as_mut().expect("joined");
                self.driver.timer(&mut self.dfsm, conn, now)
            }
            None => Vec::new(),
        }
    }

    /// Multicast a NORMAL message nobody waits for (C `dfsm_send_message`).
    fn send_nowait(&mut self, subtype: u16, payload: &[u8]) -> Vec<Finished> {
        if self.need_start {
            return Vec::new();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Vec::new();
        };
        let now = unix_now();
        let mut fx = Effects::new();
        self.dfsm.send_message(subtype, payload, now, &mut fx);
        self.driver.execute(&mut self.dfsm, conn, &mut fx, now)
    }

    fn shutdown(&mut self) -> Vec<Finished> {
        let now = unix_now();
        let f = match self.conn.as_mut() {
            Some(conn) => self.driver.shutdown(&mut self.dfsm, conn, now),
            None => self.driver.shutdown(&mut self.dfsm, &mut NoConn, now),
        };
        self.conn = None;
        f
    }

    fn log_effects(&mut self) {
        let name = self.spec.name;
        for e in self.driver.take_observed() {
            match e {
                Effect::ModeChanged { to, cause, .. } => {
                    tracing::info!("{name}: {} ({cause:?})", to.log_text());
                }
                Effect::Verified { csum_id, outcome } => match outcome {
                    VerifyOutcome::Ok => {
                        tracing::info!("{name}: data verification successful ({csum_id})")
                    }
                    VerifyOutcome::Mismatch => {
                        tracing::error!("{name}: wrong checksum ({csum_id}) - restarting")
                    }
                    VerifyOutcome::Skipped => {
                        tracing::info!("{name}: skip verification - no checksum saved")
                    }
                },
                _ => {}
            }
        }
    }
}

pub struct Cluster {
    dcdb: Mutex<Group<Dcdb>>,
    /// The status group `pve_kvstore_v1`.
    kv: Mutex<Group<KvGroup>>,
    status: Arc<Status>,
    /// Senders waiting for their own message, by count.
    waiting: Mutex<HashMap<u64, SyncSender<Outcome>>>,
    quorate: Arc<AtomicBool>,
    /// Members of the database group (for `lwcfs stats`).
    members: Arc<Mutex<Vec<MemberId>>>,
    /// Messages this node sent and saw applied, for `lwcfs stats`.
    sent: AtomicU64,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Does nothing: the DFSM's effects while no corosync connection exists are never sends.
struct NoConn;

impl Transport for NoConn {
    type Error = ();
    fn join(&mut self) -> Result<(), ()> {
        Err(())
    }
    fn leave(&mut self) -> Result<(), ()> {
        Err(())
    }
    fn mcast(&mut self, _msg: &[u8]) -> Result<(), ()> {
        Err(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// Start the loop thread. Writes wait for quorum and for the first sync. From now on the
    /// status's local changes are multicast in the status group.
    pub fn start(shared: Arc<Shared>, opts: ClusterOptions, nodename: &str) -> Arc<Cluster> {
        let quorate = Arc::new(AtomicBool::new(false));
        let members = Arc::new(Mutex::new(Vec::new()));
        let status = shared.status.clone();
        let app = Dcdb::new(shared, quorate.clone(), opts.lock_timeout, members.clone());
        let mut cfg = DCDB.config();
        cfg.verify_interval = Some(opts.verify_interval);
        let local_ip = (nodename, 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(|a| !a.ip().is_loopback()))
            .map(|a| a.ip().to_string());
        status.set_local_ip(local_ip);
        let c = Arc::new(Cluster {
            dcdb: Mutex::new(Group::new(DCDB, cfg, app)),
            kv: Mutex::new(Group::new(
                KVSTORE,
                KVSTORE.config(),
                KvGroup::new(status.clone()),
            )),
            status: status.clone(),
            waiting: Mutex::new(HashMap::new()),
            quorate,
            members,
            sent: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        status.set_broadcast(c.clone());
        let me = c.clone();
        let t = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || me.run())
            .expect("spawn the cluster thread");
        *lock(&c.thread) = Some(t);
        c
    }

    pub fn quorate(&self) -> bool {
        self.quorate.load(Ordering::SeqCst)
    }

    /// C `dcdb_send_fuse_message` + `dfsm_send_message_sync`: `EACCES` without quorum, `EBUSY`
    /// if the message could not be sent or was never applied here; otherwise memdb's result
    /// (bytes written for a write).
    pub fn submit(&self, op: &Op) -> FsResult<i32> {
        if !self.quorate() {
            return Err(libc::EACCES);
        }
        // Only a write over the 1 MiB limit cannot be carried: memdb's answer.
        let msg = DcdbMsg::from_op(op).map_err(|_| libc::EFBIG)?;
        let payload = msg.encode();
        let rx = {
            let mut g = lock(&self.dcdb);
            let g = &mut *g;
            if g.need_start {
                return Err(libc::EBUSY);
            }
            let Some(conn) = g.conn.as_mut() else {
                return Err(libc::EBUSY);
            };
            let (tx, rx) = sync_channel(1);
            let (count, finished) =
                g.driver
                    .send(&mut g.dfsm, conn, msg.subtype(), &payload, unix_now());
            lock(&self.waiting).insert(count, tx);
            self.finish(finished);
            rx
        };
        match rx.recv() {
            Ok(Outcome::Applied(r)) if r >= 0 => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                Ok(r)
            }
            Ok(Outcome::Applied(r)) => Err(-r),
            Ok(Outcome::NotProcessed) | Err(_) => Err(libc::EBUSY),
        }
    }

    /// C `dcdb_send_unlock(request)`: ask the lowest-nodeid member to remove an expired lock;
    /// nobody waits. Not sent without quorum.
    pub fn unlock_request(&self, path: &TreePath, csum: [u8; 32]) {
        if !self.quorate() {
            return;
        }
        let msg = DcdbMsg::UnlockRequest(UnlockPayload::new(path, csum));
        let f = lock(&self.dcdb).send_nowait(DcdbType::UnlockRequest.to_wire(), &msg.encode());
        self.finish(f);
    }

    fn finish(&self, finished: Vec<Finished>) {
        if finished.is_empty() {
            return;
        }
        let mut w = lock(&self.waiting);
        for (count, outcome) in finished {
            if let Some(tx) = w.remove(&count) {
                let _ = tx.send(outcome);
            }
        }
    }

    /// Stop the loop, leave the group, release every waiter (`EBUSY`).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        let f = lock(&self.dcdb).shutdown();
        self.finish(f);
        lock(&self.kv).shutdown();
        // Whoever still waits gets EBUSY.
        lock(&self.waiting).clear();
    }

    /// The service loop.
    fn run(self: Arc<Self>) {
        let mut quorum: Option<QuorumConn> = None;
        let mut quorum_tried: Option<Instant> = None;
        let mut last_tick = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if quorum.is_none() && quorum_tried.is_none_or(|t| t.elapsed() >= RESTART_INTERVAL) {
                quorum_tried = Some(Instant::now());
                match QuorumConn::connect() {
                    Ok((q, quorate)) => {
                        tracing::info!("quorum service connected (quorate: {quorate})");
                        self.set_quorate(quorate);
                        self.read_cmap();
                        quorum = Some(q);
                    }
                    Err(e) => tracing::debug!("quorum_initialize failed: {e}"),
                }
            }
            let f = lock(&self.dcdb).start_job();
            self.finish(f);
            lock(&self.kv).start_job();

            let dcdb_fd = lock(&self.dcdb).fd();
            let kv_fd = lock(&self.kv).fd();
            let q_fd = quorum.as_ref().and_then(|q| q.fd().ok());
            let fds: Vec<i32> = dcdb_fd.into_iter().chain(kv_fd).chain(q_fd).collect();
            let ready = if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
                Vec::new()
            } else {
                corosync::wait_readable(&fds, 200)
            };
            let mut at = 0;
            let mut ready_next = |present: bool| {
                let r = present && ready.get(at).copied().unwrap_or(false);
                at += usize::from(present);
                r
            };
            if ready_next(dcdb_fd.is_some()) {
                let (f, _) = lock(&self.dcdb).dispatch();
                self.finish(f);
                if lock(&self.dcdb).conn.is_none() {
                    self.set_quorate(false);
                }
            }
            if ready_next(kv_fd.is_some()) {
                lock(&self.kv).dispatch();
            }
            if ready_next(q_fd.is_some()) {
                match quorum.as_mut().map(|q| q.dispatch()) {
                    Some(Ok(Some(quorate))) => {
                        self.set_quorate(quorate);
                        self.read_cmap();
                    }
                    Some(Ok(None)) | None => {}
                    Some(Err(e)) => {
                        tracing::error!("quorum_dispatch failed: {e}");
                        self.set_quorate(false);
                        quorum = None;
                    }
                }
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                let f = lock(&self.dcdb).timer();
                self.finish(f);
            }
        }
        drop(quorum);
    }

    fn set_quorate(&self, q: bool) {
        self.status.set_quorate(q);
        if self.quorate.swap(q, Ordering::SeqCst) != q {
            tracing::info!("node has {} quorum", if q { "" } else { "lost" });
        }
    }

    fn read_cmap(&self) {
        match corosync::read_cluster() {
            Ok(cfg) => self.status.set_cluster_config(
                cfg.name,
                cfg.config_version,
                cfg.nodes.into_iter().map(|n| (n.nodeid, n.name)).collect(),
            ),
            Err(e) => tracing::warn!("cmap read failed: {e}"),
        }
    }

    /// For `lwcfs stats`: quorum, the DFSM's mode, the group's members.
    pub fn status_json(&self) -> serde_json::Value {
        let (mode, joined) = {
            let g = lock(&self.dcdb);
            (format!("{:?}", g.dfsm.mode()), !g.need_start)
        };
        let members: Vec<String> = lock(&self.members).iter().map(|m| m.to_string()).collect();
        serde_json::json!({
            "quorate": self.quorate(),
            "joined": joined,
            "mode": mode,
            "members": members,
            "applied_own": self.sent.load(Ordering::Relaxed),
        })
    }
}

/// The status's local changes reach the other nodes through the status group.
impl Broadcast for Cluster {
    fn update(&self, key: &[u8], value: &[u8]) {
        let payload = update_payload(key, value);
        lock(&self.kv).send_nowait(kvstore::SUBTYPE_UPDATE, &payload);
    }

    fn log(&self, entry: &Entry) {
        lock(&self.kv).send_nowait(kvstore::SUBTYPE_LOG, &kvstore::encode_log(entry));
    }
}
