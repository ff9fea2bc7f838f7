//! Local status: the content of the virtual files in local mode (local.md §8), the per-path
//! change counters of `.version`, the debug flag, the key/value status and the cluster log
//! (with its start entry).
//!
//! The formatting functions are pure and unit-tested; the byte layout follows C's output.
//!
//! - [`kvstore`]: the messages of the status group `pve_kvstore_v1` (UPDATE, LOG); the state
//!   is the cluster-log ring ([`crate::clusterlog`]).

pub mod kvstore;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lwcfs_memdb::{TreePath, VmList};

use crate::clusterlog::{self, ClusterLog, NewEntry};
use crate::kvstatus::KvStatus;

/// The paths whose change counters `.version` reports, in C's order (`status.c`).
pub const OBSERVED_PATHS: [&str; 43] = [
    "corosync.conf",
    "corosync.conf.new",
    "storage.cfg",
    "user.cfg",
    "domains.cfg",
    "notifications.cfg",
    "priv/notifications.cfg",
    "priv/shadow.cfg",
    "priv/acme/plugins.cfg",
    "priv/tfa.cfg",
    "priv/token.cfg",
    "priv/wg-keys.cfg",
    "datacenter.cfg",
    "vzdump.cron",
    "vzdump.conf",
    "jobs.cfg",
    "ha/crm_commands",
    "ha/manager_status",
    "ha/resources.cfg",
    "ha/rules.cfg",
    "ha/groups.cfg",
    "ha/fence.cfg",
    "status.cfg",
    "replication.cfg",
    "ceph.conf",
    "sdn/vnets.cfg",
    "sdn/zones.cfg",
    "sdn/controllers.cfg",
    "sdn/subnets.cfg",
    "sdn/ipams.cfg",
    "sdn/mac-cache.json",
    "sdn/pve-ipam-state.json",
    "sdn/dns.cfg",
    "sdn/fabrics.cfg",
    "sdn/route-maps.cfg",
    "sdn/prefix-lists.cfg",
    "sdn/.running-config",
    "virtual-guest/cpu-models.conf",
    "virtual-guest/profiles.cfg",
    "firewall/cluster.fw",
    "mapping/directory.cfg",
    "mapping/pci.cfg",
    "mapping/usb.cfg",
];

pub struct Status {
    pub nodename: String,
    pub start_time: u32,
    pub pid: u32,
    debug: AtomicBool,
    /// Counter per observed path; all start at 1 (C bumps every counter at load).
    counters: Mutex<[u32; OBSERVED_PATHS.len()]>,
    kv: KvStatus,
    clog: ClusterLog,
}

impl Status {
    /// The cluster log starts with C's one entry of its own (status.md §4.7).
    pub fn new(nodename: String, start_time: u32, pid: u32, debug: bool) -> Status {
        let clog = ClusterLog::new();
        clog.log(NewEntry {
            node: nodename.as_bytes(),
            ident: b"root",
            tag: b"cluster",
            pid,
            time: start_time,
            priority: 6,
            msg: b"starting cluster log",
        });
        Status {
            kv: KvStatus::new(&nodename),
            nodename,
            start_time,
            pid,
            debug: AtomicBool::new(debug),
            counters: Mutex::new([1; OBSERVED_PATHS.len()]),
            clog,
        }
    }

    /// Key/value status (IPC SET_STATUS/GET_STATUS, `nodeip`, RRD).
    pub fn kv(&self) -> &KvStatus {
        &self.kv
    }

    /// The cluster log (IPC LOG_CLUSTER_MSG/GET_CLUSTER_LOG, `.clusterlog`).
    pub fn clusterlog(&self) -> &ClusterLog {
        &self.clog
    }

    /// A successful change of `path` (create, write, truncate, utimens, delete, either side of
    /// a rename).
    pub fn record_change(&self, path: &TreePath) {
        let p = path.to_string();
        if let Some(i) = OBSERVED_PATHS.iter().position(|o| *o == p) {
            self.counters.lock().unwrap_or_else(|e| e.into_inner())[i] += 1;
        }
    }

    /// The tree was replaced by a sync: every observed path may have changed (C
    /// `record_memdb_reload`).
    pub fn record_reload(&self) {
        for c in self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            *c += 1;
        }
    }

    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    pub fn set_debug(&self, on: bool) {
        self.debug.store(on, Ordering::Relaxed);
    }

    /// `.version` (IPC op 1).
    pub fn version_json(&self, vmlist_version: u64) -> String {
        let counters = *self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = String::with_capacity(2048);
        s.push_str("{\n");
        let _ = writeln!(s, "\"starttime\": {},", self.start_time);
        let _ = writeln!(s, "\"clinfo\": {},", self.kv.clinfo_version());
        let _ = writeln!(s, "\"vmlist\": {vmlist_version},");
        for (p, n) in OBSERVED_PATHS.iter().zip(counters) {
            s.push('"');
            s.push_str(p);
            let _ = writeln!(s, "\": {n},");
        }
        s.push_str("\"kvstore\": {\n");
        self.kv.write_versions(&mut s);
        s.push_str("}\n}\n");
        s
    }

    /// `.members` (IPC op 2) without cluster information.
    pub fn members_json(&self) -> String {
        format!(
            "{{\n\"nodename\": \"{}\",\n\"version\": {}\n}}\n",
            self.nodename,
            self.kv.clinfo_version()
        )
    }

    /// `.clusterlog`: the 50 newest entries (IPC op 8 with its defaults).
    pub fn clusterlog_json(&self) -> String {
        self.clog.dump_json(b"", clusterlog::DEFAULT_MAX)
    }
}

/// `.vmlist` (IPC op 3).
pub fn vmlist_json(list: &VmList) -> String {
    let mut s = format!("{{\n\"version\": {}", list.version());
    if list.is_empty() {
        s.push_str("\n\n}\n");
        return s;
    }
    s.push_str(",\n\"ids\": {\n");
    let items: Vec<String> = list
        .iter()
        .map(|(id, e)| {
            format!(
                "\"{id}\": {{ \"node\": \"{}\", \"type\": \"{}\", \"version\": {} }}",
                e.node,
                e.kind.as_str(),
                e.version
            )
        })
        .collect();
    s.push_str(&items.join(",\n"));
    s.push_str("}\n\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwcfs_memdb::{Ctx, Memdb, Mtime, NodeId, Op};

    #[test]
    fn members_local_mode_is_cs_text() {
        let st = Status::new("vm".into(), 5, 7, false);
        assert_eq!(
            st.members_json(),
            "{\n\"nodename\": \"vm\",\n\"version\": 0\n}\n"
        );
    }

    #[test]
    fn version_json_counts_changes_and_parses() {
        let st = Status::new("vm".into(), 1795583845, 7, false);
        st.record_change(&TreePath::parse("storage.cfg"));
        st.record_change(&TreePath::parse("other.cfg"));
        let text = st.version_json(3);
        assert!(text.starts_with("{\n\"starttime\": 1795583845,\n\"clinfo\": 0,\n\"vmlist\": 3,\n"));
        assert!(text.contains("\n\"storage.cfg\": 2,\n"));
        assert!(text.contains("\n\"user.cfg\": 1,\n"));
        assert!(text.ends_with("\"kvstore\": {\n\"vm\": {\n}\n}\n}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["mapping/usb.cfg"], 1);
    }

    #[test]
    fn vmlist_empty_and_full() {
        let mut db = Memdb::new();
        assert_eq!(vmlist_json(db.vmlist()), "{\n\"version\": 0\n\n}\n");
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: Mtime(1),
            now: Mtime(1),
        };
        for p in ["nodes", "nodes/vm", "nodes/vm/qemu-server", "nodes/vm/lxc"] {
            db.apply(
                &Op::Mkdir {
                    path: TreePath::parse(p),
                },
                ctx,
            )
            .unwrap();
        }
        for p in ["nodes/vm/qemu-server/100.conf", "nodes/vm/lxc/101.conf"] {
            db.apply(
                &Op::Create {
                    path: TreePath::parse(p),
                },
                ctx,
            )
            .unwrap();
        }
        let text = vmlist_json(db.vmlist());
        assert_eq!(
            text,
            "{\n\"version\": 2,\n\"ids\": {\n\"100\": { \"node\": \"vm\", \"type\": \"qemu\", \
             \"version\": 1 },\n\"101\": { \"node\": \"vm\", \"type\": \"lxc\", \"version\": 2 \
             }}\n\n}\n"
        );
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }

    /// local.md §8: the kvstore section of `.version`, and `nodeip` moving `clinfo`.
    #[test]
    fn version_json_shows_kv_versions_and_clinfo() {
        let st = Status::new("vm".into(), 1, 7, false);
        st.kv().set(b"kv/foo", b"a\0").unwrap();
        st.kv().set(b"kv/foo", b"b\0").unwrap();
        st.kv().set(b"nodeip", b"10.0.0.1\0").unwrap();
        let text = st.version_json(0);
        assert!(text.contains("\"clinfo\": 1,\n"), "{text}");
        assert!(
            text.ends_with("\"kvstore\": {\n\"vm\": {\n\"kv/foo\": 1}\n}\n}\n"),
            "{text}"
        );
        assert_eq!(
            st.members_json(),
            "{\n\"nodename\": \"vm\",\n\"version\": 1\n}\n"
        );
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }

    #[test]
    fn clusterlog_is_json() {
        let st = Status::new("vm".into(), 10, 42, false);
        let v: serde_json::Value = serde_json::from_str(&st.clusterlog_json()).unwrap();
        assert_eq!(v["data"][0]["msg"], "starting cluster log");
        assert_eq!(v["data"][0]["pid"], 42);
    }
}
