//! The 12 operations of `pve2` over the daemon's tree and status: decode → one call → reply.
//!
//! What each answers in local mode is C's answer without cluster (local.md §10.4). The
//! connection rule (local.md §10.3, Appendix C #1): uid 0 with primary gid 0 is read-write,
//! primary gid www-data (any uid, root too) read-only, anyone else refused.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lwcfs_memdb::TreePath;

use super::guest;
use super::proto::{self, Request};
use super::qb::{Handler, Peer};
use crate::clusterlog::NewEntry;
use crate::service::Tree;
use crate::status::{vmlist_json, Status};

/// `None`: refuse the connection; `Some(read_only)`: accept it.
pub fn authorize(uid: u32, gid: u32, www_data: u32) -> Option<bool> {
    if gid == www_data {
        Some(true)
    } else if uid == 0 && gid == 0 {
        Some(false)
    } else {
        None
    }
}

/// The `pve2` service.
pub struct Pve2 {
    tree: Arc<Tree>,
    status: Arc<Status>,
    www_data: u32,
}

impl Pve2 {
    pub fn new(tree: Arc<Tree>, status: Arc<Status>, www_data: u32) -> Pve2 {
        Pve2 {
            tree,
            status,
            www_data,
        }
    }

    /// One request (header included) from a client: the payload, or a positive errno.
    pub fn call(&self, msg: &[u8], pid: u32, read_only: bool) -> Result<Vec<u8>, i32> {
        let exists = |vmid: u32| self.tree.lock().vmlist().get(vmid).is_some();
        let req = proto::decode(msg, read_only, &exists)?;
        self.execute(req, pid)
    }

    fn execute(&self, req: Request<'_>, pid: u32) -> Result<Vec<u8>, i32> {
        let text = |s: String| Ok(s.into_bytes());
        match req {
            Request::FsVersion => {
                let vmlist = self.tree.lock().vmlist().version();
                text(self.status.version_json(vmlist))
            }
            Request::ClusterInfo => text(self.status.members_json()),
            Request::GuestList => text(vmlist_json(self.tree.lock().vmlist())),
            // In cluster mode (key, value) is multicast too, whatever the local result, as C
            // does (status.md §2.1 step 3).
            Request::SetStatus { key, value } => self
                .status
                .set_status(key, value)
                .map(|()| Vec::new())
                .map_err(|e| e.errno()),
            Request::GetStatus { key, node } => self.status.kv().get(node, key).ok_or(libc::ENOENT),
            Request::GetConfig { path } => {
                // Names are UTF-8 in the tree, so any other path names nothing.
                let path = std::str::from_utf8(path).map_err(|_| libc::ENOENT)?;
                let data = self
                    .tree
                    .lock()
                    .read_path(&TreePath::parse(path))
                    .map_err(|_| libc::ENOENT)?;
                Ok(data.to_vec())
            }
            Request::LogClusterMsg {
                priority,
                ident,
                tag,
                msg,
            } => {
                // In cluster mode the entry is multicast as a LOG message too, also when the
                // local duplicate filter dropped it (status.md §4.8).
                self.status.cluster_log(NewEntry {
                    node: self.status.nodename.as_bytes(),
                    ident,
                    tag,
                    pid,
                    time: unix_now(),
                    priority,
                    msg,
                });
                Ok(Vec::new())
            }
            Request::GetClusterLog { max, user } => {
                text(self.status.clusterlog().dump_json(user, max))
            }
            Request::RrdDump => Ok(self.status.kv().rrd_dump()),
            Request::GuestProperties { vmid, props } => {
                guest::properties_json(&self.tree.lock(), vmid, &props).map(String::into_bytes)
            }
            Request::VerifyToken { token } => {
                let tokens = self
                    .tree
                    .lock()
                    .read_path(&TreePath::parse("priv/token.cfg"))
                    .map_err(|_| libc::ENOENT)?;
                if tokens.split(|&b| b == b'\n').any(|line| line == token) {
                    Ok(Vec::new())
                } else {
                    Err(libc::ENOENT)
                }
            }
        }
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Handler for Pve2 {
    fn accept(&self, peer: &Peer) -> bool {
        match authorize(peer.uid, peer.gid, self.www_data) {
            Some(ro) => {
                tracing::debug!(
                    "authenticated connection {}/{} (pid {}, {})",
                    peer.uid,
                    peer.gid,
                    peer.pid,
                    if ro { "read-only" } else { "read-write" }
                );
                true
            }
            None => {
                tracing::error!("connection from bad user {}! - rejected", peer.uid);
                false
            }
        }
    }

    fn process(&self, peer: &Peer, request: &[u8]) -> ([u8; 24], Vec<u8>) {
        let id = proto::request_id(request);
        let read_only = authorize(peer.uid, peer.gid, self.www_data) != Some(false);
        match self.call(request, peer.pid, read_only) {
            Ok(payload) => (proto::response_header(id, 0, payload.len()), payload),
            Err(e) => (proto::response_header(id, -e, 0), Vec::new()),
        }
    }

    fn refuse(&self, header: &[u8; 16]) -> ([u8; 24], Vec<u8>) {
        let id = proto::request_id(header);
        (proto::response_header(id, -libc::EINVAL, 0), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::proto::{op, request};
    use lwcfs_memdb::{Ctx, Memdb, Mtime, NodeId, Op};

    #[test]
    fn who_may_connect() {
        assert_eq!(authorize(0, 0, 33), Some(false));
        assert_eq!(authorize(33, 33, 33), Some(true));
        assert_eq!(
            authorize(0, 33, 33),
            Some(true),
            "root with gid www-data is read-only"
        );
        assert_eq!(authorize(65534, 33, 33), Some(true));
        assert_eq!(
            authorize(0, 100, 33),
            None,
            "root with another primary group"
        );
        assert_eq!(authorize(65534, 65534, 33), None);
        assert_eq!(authorize(1000, 0, 33), None);
    }

    fn service() -> Pve2 {
        let mut db = Memdb::new();
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: Mtime(1),
            now: Mtime(1),
        };
        for d in ["nodes", "nodes/vm", "nodes/vm/qemu-server", "priv"] {
            db.apply(
                &Op::Mkdir {
                    path: TreePath::parse(d),
                },
                ctx,
            )
            .unwrap();
        }
        for (p, data) in [
            ("nodes/vm/qemu-server/100.conf", &b"lock: backup\n"[..]),
            ("priv/token.cfg", b"root@pam!a 1234\nroot@pam!b 5678"),
            ("empty.cfg", b""),
        ] {
            let path = TreePath::parse(p);
            db.apply(&Op::Create { path: path.clone() }, ctx).unwrap();
            db.apply(
                &Op::Write {
                    path,
                    offset: 0,
                    data: data.to_vec(),
                    truncate: false,
                },
                ctx,
            )
            .unwrap();
        }
        let status = Arc::new(Status::new("vm".into(), 1000, 1, false));
        Pve2::new(Tree::new(db), status, 33)
    }

    #[test]
    fn read_ops_over_the_tree() {
        let s = service();
        let call = |id, p: &[u8]| s.call(&request(id, p), 7, true);
        assert_eq!(
            call(op::GET_CONFIG, b"nodes/vm/qemu-server/100.conf\0").unwrap(),
            b"lock: backup\n"
        );
        assert_eq!(call(op::GET_CONFIG, b"empty.cfg\0").unwrap(), b"");
        for missing in [
            &b"nodes\0"[..],
            b"/\0",
            b".\0",
            b"nodes/./vm\0",
            b".version\0",
            b"\xff\0",
        ] {
            assert_eq!(
                call(op::GET_CONFIG, missing),
                Err(libc::ENOENT),
                "{missing:?}"
            );
        }
        assert_eq!(
            call(op::GET_CONFIG, b"//nodes//vm/qemu-server/100.conf/\0").unwrap(),
            b"lock: backup\n"
        );
        assert_eq!(call(op::VERIFY_TOKEN, b"root@pam!b 5678\0"), Ok(vec![]));
        assert_eq!(call(op::VERIFY_TOKEN, b"root@pam!a 1234\0"), Ok(vec![]));
        assert_eq!(
            call(op::VERIFY_TOKEN, b"root@pam!a 123\0"),
            Err(libc::ENOENT)
        );
        let list: serde_json::Value =
            serde_json::from_slice(&call(op::GET_GUEST_LIST, b"").unwrap()).unwrap();
        assert_eq!(list["ids"]["100"]["type"], "qemu");
        let mut p = 100u32.to_le_bytes().to_vec();
        p.extend_from_slice(b"lock\0");
        assert_eq!(
            call(op::GET_GUEST_CONFIG_PROPERTY, &p).unwrap(),
            b"{\n\"100\":{\"lock\": \"backup\"}\n}\n"
        );
        assert_eq!(call(op::GET_RRD_DUMP, b"").unwrap(), b"\0");
    }

    #[test]
    fn status_and_log_round_trip() {
        let s = service();
        let mut set = vec![0u8; 256];
        set[..6].copy_from_slice(b"kv/foo");
        set.extend_from_slice(b"bar\0");
        assert_eq!(s.call(&request(op::SET_STATUS, &set), 7, false), Ok(vec![]));
        let mut get = vec![0u8; 512];
        get[..6].copy_from_slice(b"kv/foo");
        assert_eq!(
            s.call(&request(op::GET_STATUS, &get), 7, true).unwrap(),
            b"bar\0"
        );
        let log = [&[5u8, 5, 4][..], b"user\0tag\0hello\0"].concat();
        assert_eq!(
            s.call(&request(op::LOG_CLUSTER_MSG, &log), 4242, false),
            Ok(vec![])
        );
        let mut get_log = vec![0u8; 16];
        get_log.extend_from_slice(b"user\0");
        let text = s
            .call(&request(op::GET_CLUSTER_LOG, &get_log), 1, true)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["data"][0]["pid"], 4242);
        assert_eq!(v["data"][0]["pri"], 5);
        assert_eq!(v["data"][0]["node"], "vm");
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn responses_carry_the_request_id_and_negative_errno() {
        let s = service();
        let peer = Peer {
            uid: 33,
            gid: 33,
            pid: 1,
        };
        let (h, p) = s.process(&peer, &request(op::GET_CONFIG, b"priv/token.cfg\0"));
        assert_eq!(h, proto::response_header(op::GET_CONFIG, -libc::EPERM, 0));
        assert!(p.is_empty());
        let (h, p) = s.process(&peer, &request(op::GET_CLUSTER_INFO, b""));
        assert_eq!(h, proto::response_header(op::GET_CLUSTER_INFO, 0, p.len()));
        assert_eq!(p, b"{\n\"nodename\": \"vm\",\n\"version\": 0\n}\n");
        let (h, _) = s.process(&peer, &request(77, b""));
        assert_eq!(&h[16..20], &(-libc::ECHRNG).to_le_bytes());
    }
}
