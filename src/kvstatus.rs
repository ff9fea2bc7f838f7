//! Key/value status (status.md §2): what IPC SET_STATUS stores and GET_STATUS reads, routed by
//! key as C's `cfs_status_set` does:
//!
//! - `rrd/<key>` → the RRD sink ([`RrdSink`]; the RRD module plugs in here, [`NoRrd`] until
//!   then);
//! - `nodeip` → the node-IP table, under the local node name; a change bumps the cluster-info
//!   version;
//! - anything else → the local kv table: an empty value deletes, a new key starts at version 0,
//!   each overwrite adds 1.
//!
//! Per-node tables of other nodes (`remote`) are filled by the status group in cluster mode
//! ([`KvStatus::set_remote`]); in local mode they stay empty. Keys and values are bytes: a key
//! is a C string of at most 255 bytes, a value is kept byte for byte.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::jsontext;

/// `CFS_MAX_STATUS_SIZE`: longer values are refused with `EFBIG`.
pub const MAX_VALUE: usize = 32 * 1024;

/// Where `rrd/…` updates go, and where GET_RRD_DUMP and `.rrd` come from.
pub trait RrdSink: Send + Sync {
    /// An update of `rrd/<key>` (`key` without the prefix, `value` as the client sent it).
    /// False if refused (IPC then answers `ENOMEM`, as C does).
    fn update(&self, key: &[u8], value: &[u8]) -> bool;
    /// The GET_RRD_DUMP payload (`<key>:<value>\n` per recent entry, then a NUL).
    fn dump(&self) -> Vec<u8>;
}

/// No RRD yet: updates are checked as C checks them (1..4095 bytes, NUL-terminated) and
/// dropped; the dump is that of an empty table, a single NUL.
pub struct NoRrd;

impl RrdSink for NoRrd {
    fn update(&self, _key: &[u8], value: &[u8]) -> bool {
        rrd_value_ok(value)
    }

    fn dump(&self) -> Vec<u8> {
        vec![0]
    }
}

/// C's acceptance of an RRD value (`rrdentry_hash_set`): 1..4095 bytes ending in NUL.
pub fn rrd_value_ok(value: &[u8]) -> bool {
    !value.is_empty() && value.len() < 4096 && value.last() == Some(&0)
}

/// Why a set failed, as IPC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Value over 32 KiB (`EFBIG`); nothing stored.
    TooBig,
    /// The table refused the value (`ENOMEM`, C's code for it): an `rrd/` or `nodeip` value
    /// that is empty, too long or not NUL-terminated.
    Refused,
}

impl SetError {
    pub fn errno(self) -> i32 {
        match self {
            SetError::TooBig => libc::EFBIG,
            SetError::Refused => libc::ENOMEM,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct KvEntry {
    data: Vec<u8>,
    version: u32,
}

/// One node's kv table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvTable {
    entries: BTreeMap<Vec<u8>, KvEntry>,
}

impl KvTable {
    /// C `kventry_hash_set`: empty deletes; overwrite bumps the version (even with the same
    /// value); a new key starts at 0.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        if value.is_empty() {
            self.entries.remove(key);
        } else if let Some(e) = self.entries.get_mut(key) {
            e.data = value.to_vec();
            e.version = e.version.wrapping_add(1);
        } else {
            self.entries.insert(
                key.to_vec(),
                KvEntry {
                    data: value.to_vec(),
                    version: 0,
                },
            );
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(|e| e.data.as_slice())
    }

    pub fn version(&self, key: &[u8]) -> Option<u32> {
        self.entries.get(key).map(|e| e.version)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every (key, value), for the status group's resend after a sync.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_slice(), e.data.as_slice()))
    }

    /// `"<node>": {` + `"key": version` lines + `}` (C `dump_kvstore_versions`; keys made
    /// valid JSON).
    fn write_versions(&self, out: &mut String, node: &[u8]) {
        jsontext::push_quoted(out, node);
        out.push_str(": {\n");
        for (i, (k, e)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
            }
            jsontext::push_quoted(out, k);
            let _ = write!(out, ": {}", e.version);
        }
        out.push_str("}\n");
    }
}

#[derive(Default)]
struct Inner {
    local: KvTable,
    /// Tables of other nodes by node name (cluster mode).
    remote: BTreeMap<Vec<u8>, KvTable>,
    /// Node name → IP text (without its NUL).
    ips: BTreeMap<Vec<u8>, Vec<u8>>,
    clinfo_version: u32,
}

/// The daemon's key/value status.
pub struct KvStatus {
    nodename: Vec<u8>,
    inner: Mutex<Inner>,
    rrd: OnceLock<Arc<dyn RrdSink>>,
}

impl KvStatus {
    pub fn new(nodename: &str) -> KvStatus {
        KvStatus {
            nodename: nodename.as_bytes().to_vec(),
            inner: Mutex::new(Inner::default()),
            rrd: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plug in the RRD module (once, at startup). Until then [`NoRrd`] answers.
    pub fn set_rrd(&self, sink: Arc<dyn RrdSink>) -> bool {
        self.rrd.set(sink).is_ok()
    }

    fn rrd(&self) -> &dyn RrdSink {
        match self.rrd.get() {
            Some(s) => s.as_ref(),
            None => &NoRrd,
        }
    }

    /// C `cfs_status_set` for the local node. `key` is a C string (bytes before any NUL).
    ///
    /// In cluster mode the caller multicasts (key, value) afterwards whatever the result, as
    /// C does.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), SetError> {
        if value.len() > MAX_VALUE {
            return Err(SetError::TooBig);
        }
        let key = jsontext::c_str(key);
        if let Some(rrd_key) = key.strip_prefix(b"rrd/") {
            // Outside the status lock: RRD file I/O must not block every other status read
            // (C holds its mutex here, status.md §7.3 #10).
            return if self.rrd().update(rrd_key, value) {
                Ok(())
            } else {
                Err(SetError::Refused)
            };
        }
        let mut g = self.lock();
        if key == b"nodeip" {
            let node = self.nodename.clone();
            if set_ip(&mut g, &node, value) {
                Ok(())
            } else {
                Err(SetError::Refused)
            }
        } else {
            g.local.set(key, value);
            Ok(())
        }
    }

    /// An update received from another node (cluster mode; C `cfs_kvstore_node_set` after the
    /// nodelist check): stored under that node's name.
    pub fn set_remote(&self, node: &[u8], key: &[u8], value: &[u8]) {
        let key = jsontext::c_str(key);
        if let Some(rrd_key) = key.strip_prefix(b"rrd/") {
            self.rrd().update(rrd_key, value);
            return;
        }
        let mut g = self.lock();
        if key == b"nodeip" {
            set_ip(&mut g, node, value);
        } else {
            g.remote.entry(node.to_vec()).or_default().set(key, value);
        }
    }

    /// C `cfs_create_status_msg`: the local table for an empty node name or our own, else
    /// that node's table; the stored bytes exactly.
    pub fn get(&self, node: &[u8], key: &[u8]) -> Option<Vec<u8>> {
        let node = jsontext::c_str(node);
        let key = jsontext::c_str(key);
        let g = self.lock();
        let table = if node.is_empty() || node == self.nodename.as_slice() {
            Some(&g.local)
        } else {
            g.remote.get(node)
        };
        table.and_then(|t| t.get(key)).map(<[u8]>::to_vec)
    }

    /// The local table (the status group re-sends it after every sync round).
    pub fn local(&self) -> KvTable {
        self.lock().local.clone()
    }

    /// The cluster-info version (`clinfo` in `.version`, `version` in `.members`).
    pub fn clinfo_version(&self) -> u32 {
        self.lock().clinfo_version
    }

    /// Bump the cluster-info version (cmap reads, membership changes; IP changes bump it here).
    pub fn bump_clinfo(&self) {
        let mut g = self.lock();
        g.clinfo_version = g.clinfo_version.wrapping_add(1);
    }

    /// The IP known for a node, if any.
    pub fn ip(&self, node: &[u8]) -> Option<Vec<u8>> {
        self.lock().ips.get(node).cloned()
    }

    /// The body of `.version`'s `"kvstore"` object: the local node first (always, even with no
    /// keys), then every node with received kv data.
    pub fn write_versions(&self, out: &mut String) {
        let g = self.lock();
        g.local.write_versions(out, &self.nodename);
        for (node, t) in &g.remote {
            out.push_str(",\n");
            t.write_versions(out, node);
        }
    }

    /// The GET_RRD_DUMP payload.
    pub fn rrd_dump(&self) -> Vec<u8> {
        self.rrd().dump()
    }
}

/// C `nodeip_hash_set`: 1..255 bytes ending in NUL; a different IP (as a C string) bumps the
/// cluster-info version.
fn set_ip(g: &mut Inner, node: &[u8], value: &[u8]) -> bool {
    if value.is_empty() || value.len() >= 256 || value.last() != Some(&0) {
        return false;
    }
    let ip = jsontext::c_str(value);
    if g.ips.get(node).map(Vec::as_slice) != Some(ip) {
        g.clinfo_version = g.clinfo_version.wrapping_add(1);
        g.ips.insert(node.to_vec(), ip.to_vec());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_versions_start_at_0_and_empty_deletes() {
        let kv = KvStatus::new("vm");
        kv.set(b"kv/foo", b"a\0").unwrap();
        assert_eq!(kv.local().version(b"kv/foo"), Some(0));
        kv.set(b"kv/foo", b"a\0").unwrap();
        kv.set(b"kv/foo", b"b\0").unwrap();
        assert_eq!(kv.local().version(b"kv/foo"), Some(2));
        assert_eq!(kv.get(b"", b"kv/foo").unwrap(), b"b\0");
        assert_eq!(kv.get(b"vm", b"kv/foo").unwrap(), b"b\0");
        assert_eq!(kv.get(b"other", b"kv/foo"), None);
        kv.set(b"kv/foo", b"").unwrap();
        assert_eq!(kv.get(b"", b"kv/foo"), None);
        kv.set(b"kv/absent", b"").unwrap();
        kv.set(b"", b"empty key\0").unwrap();
        assert_eq!(kv.get(b"", b"").unwrap(), b"empty key\0");
    }

    #[test]
    fn values_are_byte_exact_and_limited_to_32k() {
        let kv = KvStatus::new("vm");
        kv.set(b"k", b"a\0b").unwrap();
        assert_eq!(kv.get(b"", b"k").unwrap(), b"a\0b");
        kv.set(b"k", &[7; MAX_VALUE]).unwrap();
        assert_eq!(kv.set(b"k", &[8; MAX_VALUE + 1]), Err(SetError::TooBig));
        assert_eq!(kv.get(b"", b"k").unwrap(), vec![7; MAX_VALUE]);
    }

    #[test]
    fn nodeip_goes_to_the_ip_table_and_bumps_clinfo() {
        let kv = KvStatus::new("vm");
        kv.set(b"nodeip", b"10.0.0.1\0").unwrap();
        assert_eq!(kv.clinfo_version(), 1);
        kv.set(b"nodeip", b"10.0.0.1\0").unwrap();
        assert_eq!(kv.clinfo_version(), 1, "unchanged IP");
        assert_eq!(kv.set(b"nodeip", b""), Err(SetError::Refused));
        assert_eq!(kv.set(b"nodeip", b"10.0.0.2"), Err(SetError::Refused));
        assert_eq!(kv.set(b"nodeip", &[b'1'; 256]), Err(SetError::Refused));
        let mut v = vec![b'1'; 254];
        v.push(0);
        kv.set(b"nodeip", &v).unwrap();
        assert_eq!(kv.clinfo_version(), 2);
        assert_eq!(kv.get(b"", b"nodeip"), None, "never readable as kv");
        assert_eq!(kv.ip(b"vm").unwrap(), vec![b'1'; 254]);
    }

    #[test]
    fn rrd_keys_go_to_the_sink() {
        let kv = KvStatus::new("vm");
        kv.set(b"rrd/pve2-node/vm", b"1:2\0").unwrap();
        assert_eq!(kv.set(b"rrd/x", b"no nul"), Err(SetError::Refused));
        assert_eq!(kv.set(b"rrd/x", b""), Err(SetError::Refused));
        assert_eq!(kv.set(b"rrd/x", &[0; 4096]), Err(SetError::Refused));
        assert_eq!(kv.get(b"", b"rrd/pve2-node/vm"), None);
        assert_eq!(kv.rrd_dump(), b"\0");
    }

    #[test]
    fn versions_json_local_first_then_remote() {
        let kv = KvStatus::new("vm");
        let mut s = String::new();
        kv.write_versions(&mut s);
        assert_eq!(s, "\"vm\": {\n}\n");
        kv.set(b"kv/foo", b"x\0").unwrap();
        kv.set(b"kv/foo", b"y\0").unwrap();
        kv.set(b"tasklist", b"[]\0").unwrap();
        kv.set_remote(b"pve2", b"kv/\"q\"", b"z\0");
        let mut s = String::new();
        kv.write_versions(&mut s);
        assert_eq!(
            s,
            "\"vm\": {\n\"kv/foo\": 1,\n\"tasklist\": 0}\n,\n\"pve2\": {\n\"kv/\\\"q\\\"\": 0}\n"
        );
        assert_eq!(kv.get(b"pve2", b"kv/\"q\"").unwrap(), b"z\0");
    }
}
