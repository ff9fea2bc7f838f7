//! The status group (C `status.c`'s DFSM callbacks): group `pve_kvstore_v1`, protocol 0, as a
//! [`cpg::App`].
//!
//! It carries key/value status (`nodeip`, `rrd/…`, everything else per node) and cluster-log
//! entries between nodes. Its only synchronised state is the cluster log: every member sends
//! its whole log buffer, all merge all of them the same way, and everyone is synced at once (no
//! leader, no UPDATE phase). After each round every node multicasts its own generic kv entries
//! again, and once synced its `nodeip`. Updates are kept only from nodes in the cmap node list.

use std::sync::Arc;

use lwcfs_cpg::dfsm::{App, Ctx, Failure, Normal, SyncRound};
use lwcfs_cpg::MemberId;

use crate::status::kvstore::{self, KvError, KvMessage};
use crate::status::Status;

pub struct KvGroup {
    status: Arc<Status>,
}

impl KvGroup {
    pub fn new(status: Arc<Status>) -> KvGroup {
        KvGroup { status }
    }
}

/// An UPDATE payload as C builds it: the key cut to 255 bytes (`g_strlcpy`).
pub fn update_payload(key: &[u8], value: &[u8]) -> Vec<u8> {
    let key = crate::jsontext::c_str(key);
    let key = &key[..key.len().min(kvstore::MAX_KEY_LEN)];
    // Cannot fail: at most 255 bytes, no NUL.
    kvstore::encode_update(key, value).unwrap_or_default()
}

impl App for KvGroup {
    fn deliver(&mut self, ctx: &mut Ctx<'_>, msg: Normal<'_>) -> Result<i32, Failure> {
        // The sender applied its own change before sending it.
        if ctx.is_local(msg.from) {
            return Ok(0);
        }
        match kvstore::decode(msg.subtype, msg.payload) {
            Ok(KvMessage::Update(u)) => {
                match self.status.node_name(msg.from.nodeid.0) {
                    Some(node) => self.status.kv().set_remote(node.as_bytes(), u.key, u.value),
                    None => tracing::debug!(
                        "status update from node {} which is not in the node list",
                        msg.from.nodeid
                    ),
                }
                Ok(0)
            }
            Ok(KvMessage::Log(e)) => {
                self.status.clusterlog().insert(&e);
                Ok(0)
            }
            Err(KvError::UnknownSubtype(t)) => {
                tracing::error!("received unknown message type {t}");
                Ok(-libc::EACCES)
            }
            Err(e @ KvError::Log(_)) => {
                tracing::error!("cant parse log message: {e}");
                Ok(0)
            }
            Err(e) => {
                tracing::error!("cant parse update message: {e}");
                Ok(0)
            }
        }
    }

    fn get_state(&mut self, _ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Failure> {
        Ok(self.status.clusterlog().state())
    }

    fn process_state_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        round: &mut SyncRound,
    ) -> Result<(), Failure> {
        let n = round.members().len();
        for i in 0..n {
            round.set_synced(i, true);
        }
        let states: Vec<&[u8]> = round
            .members()
            .iter()
            .map(|m| m.state.as_deref().unwrap_or_default())
            .collect();
        let local = round.local().unwrap_or(usize::MAX);
        for (i, bad) in self.status.clusterlog().merge(&states, local) {
            tracing::error!(
                "received log with wrong size {} from {}",
                bad.len,
                round.members()[i].id
            );
        }
        // C `cfs_kvstore_sync`: every local generic entry again.
        for (key, value) in self.status.kv().local().iter() {
            ctx.send_message(kvstore::SUBTYPE_UPDATE, &update_payload(key, value));
        }
        Ok(())
    }

    fn process_update(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _round: &SyncRound,
        from: MemberId,
        _payload: &[u8],
    ) -> Result<(), Failure> {
        tracing::error!("received unexpected update message from {from}");
        Err(Failure::Leave)
    }

    fn commit(&mut self, _ctx: &mut Ctx<'_>, _round: &SyncRound) -> Result<(), Failure> {
        Ok(())
    }

    /// C `dfsm_synced`: announce this node's address (stored and multicast, as
    /// `cfs_status_set("nodeip")`).
    fn synced(&mut self, ctx: &mut Ctx<'_>) {
        let Some(mut ip) = self.status.nodeip() else {
            return;
        };
        ip.push(0);
        let _ = self.status.kv().set(b"nodeip", &ip);
        ctx.send_message(kvstore::SUBTYPE_UPDATE, &update_payload(b"nodeip", &ip));
    }

    fn confchg(&mut self, _ctx: &mut Ctx<'_>, members: &[MemberId]) {
        self.status.set_online(members.iter().map(|m| m.nodeid.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_payload_cuts_the_key_as_c() {
        let p = update_payload(&[b'k'; 300], b"v\0");
        assert_eq!(p.len(), 256 + 2);
        assert_eq!(&p[..255], &[b'k'; 255][..]);
        assert_eq!(p[255], 0);
        let p = update_payload(b"nodeip\0junk", b"1\0");
        assert_eq!(&p[..7], b"nodeip\0");
    }
}
