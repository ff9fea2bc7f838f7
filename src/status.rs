//! Local status: the content of the virtual files in local mode (local.md §8), the per-path
//! change counters of `.version`, the debug flag, the key/value status and the cluster log
//! (with its start entry).
//!
//! The formatting functions are pure and unit-tested; the byte layout follows C's output.
//!
//! - [`kvstore`]: the messages of the status group `pve_kvstore_v1` (UPDATE, LOG); the state
//!   is the cluster-log ring ([`crate::clusterlog`]).

pub mod kvstore;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use lwcfs_memdb::{TreePath, VmList};

use crate::clusterlog::{self, ClusterLog, Entry, NewEntry};
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

/// Where local status changes go to reach the other nodes (the status group, in cluster mode).
pub trait Broadcast: Send + Sync {
    /// Multicast a key/value update (C `kvstore_send_update_message`).
    fn update(&self, key: &[u8], value: &[u8]);
    /// Multicast a cluster-log entry.
    fn log(&self, entry: &Entry);
}

/// What `.members` shows in cluster mode (C's `cfs_clinfo_t`): from cmap, the quorum service
/// and the status group's membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub name: String,
    /// `totem.config_version`.
    pub config_version: u64,
    /// (nodeid, name), in cmap's order.
    pub nodes: Vec<(u32, String)>,
    pub quorate: bool,
    /// Node ids in the status group.
    pub online: BTreeSet<u32>,
}

pub struct Status {
    pub nodename: String,
    pub start_time: u32,
    pub pid: u32,
    debug: AtomicBool,
    /// Counter per observed path; all start at 1 (C bumps every counter at load).
    counters: Mutex<[u32; OBSERVED_PATHS.len()]>,
    kv: KvStatus,
    clog: ClusterLog,
    /// `None` in local mode.
    cluster: Mutex<Option<ClusterView>>,
    broadcast: OnceLock<Arc<dyn Broadcast>>,
    /// The address resolved for the node name at start (C `cfs.ip`).
    local_ip: Mutex<Option<String>>,
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
            cluster: Mutex::new(None),
            broadcast: OnceLock::new(),
            local_ip: Mutex::new(None),
        }
    }

    fn view(&self) -> MutexGuard<'_, Option<ClusterView>> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cluster mode: local changes are multicast through `b` from now on.
    pub fn set_broadcast(&self, b: Arc<dyn Broadcast>) {
        let _ = self.broadcast.set(b);
    }

    /// C `cfs_status_set`: store, then multicast unless the value is too big (also when the
    /// local table refused it, as C does).
    pub fn set_status(&self, key: &[u8], value: &[u8]) -> Result<(), crate::kvstatus::SetError> {
        let r = self.kv.set(key, value);
        if r != Err(crate::kvstatus::SetError::TooBig) {
            if let Some(b) = self.broadcast.get() {
                b.update(crate::jsontext::c_str(key), value);
            }
        }
        r
    }

    /// C `cfs_cluster_log`: log here, then multicast the entry (also when the duplicate filter
    /// dropped it here).
    pub fn cluster_log(&self, new: NewEntry<'_>) {
        if let Some(e) = self.clog.log(new) {
            if let Some(b) = self.broadcast.get() {
                b.log(&e);
            }
        }
    }

    /// The address this node announces as `nodeip` (resolved from the node name at start).
    pub fn set_local_ip(&self, ip: Option<String>) {
        *self.local_ip.lock().unwrap_or_else(|e| e.into_inner()) = ip;
    }

    /// The `nodeip` value this node multicasts when its status group is synced: the stored
    /// one, else the address resolved at start (C `dfsm_synced`).
    pub fn nodeip(&self) -> Option<Vec<u8>> {
        if let Some(ip) = self.kv.ip(self.nodename.as_bytes()) {
            return Some(ip);
        }
        let ip = self
            .local_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(ip.into_bytes())
    }

    /// Cluster mode: a new configuration from cmap (C `cfs_status_set_clinfo`: keeps the
    /// online flags, bumps the cluster-info version).
    pub fn set_cluster_config(&self, name: String, config_version: u64, nodes: Vec<(u32, String)>) {
        let mut v = self.view();
        let view = v.get_or_insert_with(ClusterView::default);
        view.name = name;
        view.config_version = config_version;
        view.nodes = nodes;
        drop(v);
        self.kv.bump_clinfo();
    }

    pub fn set_quorate(&self, quorate: bool) {
        if let Some(v) = self.view().as_mut() {
            v.quorate = quorate;
        }
    }

    /// The status group's members changed (C's kvstore confchg): online flags, clinfo version.
    pub fn set_online(&self, nodeids: impl IntoIterator<Item = u32>) {
        let mut v = self.view();
        let view = v.get_or_insert_with(ClusterView::default);
        view.online = nodeids.into_iter().collect();
        drop(v);
        self.kv.bump_clinfo();
    }

    /// The name of a node of the cmap node list (C: updates from other ids are dropped).
    pub fn node_name(&self, nodeid: u32) -> Option<String> {
        let v = self.view();
        let view = v.as_ref()?;
        view.nodes
            .iter()
            .find(|(id, _)| *id == nodeid)
            .map(|(_, n)| n.clone())
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

    /// `.members` (IPC op 2; C `cfs_create_memberlist_msg`, cluster.md §7.3): without a
    /// cluster, only the node name and the cluster-info version.
    pub fn members_json(&self) -> String {
        let mut s = format!(
            "{{\n\"nodename\": \"{}\",\n\"version\": {}",
            self.nodename,
            self.kv.clinfo_version()
        );
        let body = |b: &[u8]| {
            let mut o = String::new();
            crate::jsontext::push_body(&mut o, b);
            o
        };
        let v = self.view();
        let Some(view) = v.as_ref().filter(|v| !v.nodes.is_empty()) else {
            s.push_str("\n}\n");
            return s;
        };
        let _ = write!(
            s,
            ",\n\"cluster\": {{ \"name\": \"{}\", \"version\": {}, \"nodes\": {}, \"quorate\": {} }},\n\"nodelist\": {{\n",
            body(view.name.as_bytes()),
            view.config_version as u32,
            view.nodes.len(),
            u8::from(view.quorate)
        );
        let rows: Vec<String> = view
            .nodes
            .iter()
            .map(|(id, name)| {
                let ip = self
                    .kv
                    .ip(name.as_bytes())
                    .map(|ip| format!(", \"ip\": \"{}\"", body(&ip)))
                    .unwrap_or_default();
                format!(
                    "  \"{}\": {{ \"id\": {id}, \"online\": {}{ip}}}",
                    body(name.as_bytes()),
                    u8::from(view.online.contains(id))
                )
            })
            .collect();
        s.push_str(&rows.join(",\n"));
        s.push_str("\n  }\n}\n");
        s
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
