//! The database service (C `dcdb.c`): what group `pve_dcdb_v1` carries, as a [`cpg::App`].
//!
//! Every node applies each NORMAL message with writer = the sender's node id and mtime = the
//! message header's time, so all nodes, lwcfs or C, reach the same tree, index and checksum.
//! The STATE of a sync round is the memdb index; the data leader sends its differing entries;
//! a follower commits them in one step at UPDATE_COMPLETE ([`Memdb::synced_with`]) and the
//! writer stores the result in one transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lwcfs_cpg::dfsm::{App, Ctx, Failure, Normal, SyncRound};
use lwcfs_cpg::MemberId;
use lwcfs_memdb::wire::{DcdbType, UnlockPayload};
use lwcfs_memdb::{
    Ctx as OpCtx, DcdbMsg, Memdb, MemdbIndex, Mtime, NodeId, Op, Request, TreePath, Update,
    UpdateEntry,
};

use crate::corosync_conf;
use crate::service::Shared;

/// The DCDB application of one node.
pub struct Dcdb {
    shared: Arc<Shared>,
    quorate: Arc<AtomicBool>,
    lock_timeout: u32,
    /// Members of the group after the last membership change (for `.members`).
    members: Arc<Mutex<Vec<MemberId>>>,
    /// This round: the index this node sent, the leader's, and the updates received.
    own_index: Option<MemdbIndex>,
    leader_index: Option<MemdbIndex>,
    updates: Vec<Update>,
}

impl Dcdb {
    pub fn new(
        shared: Arc<Shared>,
        quorate: Arc<AtomicBool>,
        lock_timeout: u32,
        members: Arc<Mutex<Vec<MemberId>>>,
    ) -> Dcdb {
        Dcdb {
            shared,
            quorate,
            lock_timeout,
            members,
            own_index: None,
            leader_index: None,
            updates: Vec::new(),
        }
    }

    /// Apply a delivered operation. `own`: this node sent it for a FUSE caller, so the kernel
    /// learns the change from that call's reply; otherwise its cache must be invalidated.
    fn op(&self, op: &Op, writer: NodeId, time: u32, now: u32, own: bool) -> i32 {
        let ctx = OpCtx {
            writer,
            mtime: Mtime(time),
            now: Mtime(now),
        };
        let mut db = self.shared.tree.lock();
        let r = match self.shared.apply(&mut db, op, ctx, true, !own) {
            Ok(_) => match op {
                Op::Write { data, .. } => data.len() as i32,
                _ => 0,
            },
            Err(e) => -e.errno(),
        };
        if r >= 0 && touches_corosync_conf(op) {
            if let Ok(data) = db.read_path(&TreePath::parse(corosync_conf::NAME)) {
                drop(db);
                corosync_conf::refresh_host(&data, own);
            }
        }
        r
    }

    /// An UNLOCK_REQUEST or UNLOCK names an existing lock directory with this checksum.
    fn lock_matches(db: &Memdb, path: &TreePath, csum: &[u8; 32]) -> bool {
        path.is_below_lock()
            && db.resolve(path).is_some_and(|i| {
                db.getattr(i)
                    .is_ok_and(|a| a.kind == lwcfs_memdb::Kind::Dir)
                    && db.entry_checksum(i).as_ref() == Some(csum)
            })
    }
}

fn touches_corosync_conf(op: &Op) -> bool {
    let is = |p: &TreePath| p.to_string() == corosync_conf::NAME;
    match op {
        Op::Write { path, .. } | Op::Create { path } => is(path),
        Op::Rename { to, .. } => is(to),
        _ => false,
    }
}

impl App for Dcdb {
    fn deliver(&mut self, ctx: &mut Ctx<'_>, msg: Normal<'_>) -> Result<i32, Failure> {
        if !self.quorate.load(Ordering::SeqCst) {
            tracing::error!("received write while not quorate - trigger resync");
            return Err(Failure::Leave);
        }
        if self.shared.writer.failed() {
            tracing::error!("database write failed - stop cluster connection");
            return Err(Failure::Fatal);
        }
        let request = DcdbMsg::decode(msg.subtype, msg.payload).and_then(|m| m.to_request());
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("received bad dcdb message from {}: {e}", msg.from);
                return Err(Failure::Leave);
            }
        };
        let own = ctx.is_local(msg.from);
        let writer = NodeId(msg.from.nodeid.0);
        match request {
            Request::Op(op) => Ok(self.op(&op, writer, msg.time, ctx.now(), own)),
            Request::UnlockRequest { path, csum } => {
                let expired = {
                    let mut db = self.shared.tree.lock();
                    Self::lock_matches(&db, &path, &csum)
                        && ctx.is_lowest()
                        && db.lock_expired(&path, Mtime(ctx.now()), self.lock_timeout)
                };
                if expired {
                    tracing::info!("got lock request for expired lock {path} - sending unlock");
                    let m = DcdbMsg::Unlock(UnlockPayload::new(&path, csum));
                    ctx.send_message(DcdbType::Unlock.to_wire(), &m.encode());
                }
                Ok(0)
            }
            Request::Unlock { path, csum } => {
                let matches = Self::lock_matches(&self.shared.tree.lock(), &path, &csum);
                if matches {
                    // No FUSE call removed it, even on the node that asked: tell every kernel.
                    self.op(&Op::Delete { path }, writer, msg.time, ctx.now(), false);
                }
                Ok(0)
            }
        }
    }

    fn get_state(&mut self, _ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Failure> {
        let index = self.shared.tree.lock().encode_index();
        let bytes = index.encode();
        self.own_index = Some(index);
        Ok(bytes)
    }

    fn process_state_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &mut SyncRound,
    ) -> Result<(), Failure> {
        let mut indexes = Vec::with_capacity(round.members().len());
        for m in round.members() {
            let state = m.state.as_deref().unwrap_or_default();
            match MemdbIndex::decode(state) {
                Ok(i) => indexes.push(i),
                Err(e) => {
                    tracing::error!("sync state of {}: {e}", m.id);
                    return Err(Failure::Leave);
                }
            }
        }
        let Some(leader) = MemdbIndex::select_leader(&indexes) else {
            return Err(Failure::Leave);
        };
        let leader_id = round.members()[leader].id;
        tracing::info!("leader is {leader_id}");
        let mut synced = Vec::new();
        for (i, idx) in indexes.iter().enumerate() {
            let same = i == leader || idx.encode() == indexes[leader].encode();
            round.set_synced(i, same);
            if same {
                synced.push(round.members()[i].id.to_string());
            }
        }
        tracing::info!("synced members: {}", synced.join(", "));
        if ctx.is_local(leader_id) {
            let others: Vec<MemdbIndex> = indexes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != leader)
                .map(|(_, x)| x.clone())
                .collect();
            let set = MemdbIndex::updates_for(&indexes[leader], &others);
            tracing::info!("start sending inode updates");
            let entries: Vec<UpdateEntry> = {
                let db = self.shared.tree.lock();
                set.iter().filter_map(|i| db.update_entry(*i)).collect()
            };
            for e in &entries {
                ctx.send_update(&e.encode());
            }
            tracing::info!("sent all ({}) updates", entries.len());
            ctx.send_update_complete();
        }
        self.leader_index = Some(indexes.swap_remove(leader));
        self.updates.clear();
        Ok(())
    }

    fn process_update(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _round: &SyncRound,
        from: MemberId,
        payload: &[u8],
    ) -> Result<(), Failure> {
        match UpdateEntry::decode(payload).and_then(|e| e.to_update()) {
            Ok(u) => {
                self.updates.push(u);
                Ok(())
            }
            Err(e) => {
                tracing::error!("bad update from {from}: {e}");
                Err(Failure::Leave)
            }
        }
    }

    fn commit(&mut self, ctx: &mut Ctx<'_>, _round: &SyncRound) -> Result<(), Failure> {
        let Some(leader) = self.leader_index.take() else {
            return Err(Failure::Leave);
        };
        let updates = std::mem::take(&mut self.updates);
        tracing::info!(
            "update complete - trying to commit (got {} inode updates)",
            updates.len()
        );
        let mut db = self.shared.tree.lock();
        match db.synced_with(&leader, &updates, Mtime(ctx.now())) {
            Ok(synced) => {
                self.shared.replace(&mut db, synced);
                if let Ok(data) = db.read_path(&TreePath::parse(corosync_conf::NAME)) {
                    drop(db);
                    corosync_conf::refresh_host(&data, false);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!("{e} - internal error");
                Err(Failure::Fatal)
            }
        }
    }

    fn cleanup(&mut self, _round: &SyncRound) {
        self.own_index = None;
        self.leader_index = None;
        self.updates.clear();
    }

    fn has_checksum(&self) -> bool {
        true
    }

    fn checksum(&mut self) -> Result<[u8; 32], Failure> {
        Ok(self.shared.tree.lock().compute_checksum())
    }

    fn confchg(&mut self, _ctx: &mut Ctx<'_>, members: &[MemberId]) {
        *self.members.lock().unwrap_or_else(|e| e.into_inner()) = members.to_vec();
    }
}
