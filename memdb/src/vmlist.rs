//! The guest list: which node owns which VMID, derived from the paths
//! `nodes/<node>/{qemu-server,lxc,openvz}/<vmid>.conf` (C `memdb.c` and `status.c`).

use std::collections::BTreeMap;

use crate::path::TreePath;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmType {
    Qemu,
    Lxc,
    Openvz,
}

impl VmType {
    pub fn as_str(self) -> &'static str {
        match self {
            VmType::Qemu => "qemu",
            VmType::Lxc => "lxc",
            VmType::Openvz => "openvz",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmEntry {
    pub node: String,
    pub kind: VmType,
    /// The registration counter at this guest's last registration.
    pub version: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmList {
    pub(crate) vms: BTreeMap<u32, VmEntry>,
    /// Bumped on every registration, removal and rebuild.
    pub(crate) version: u64,
    /// Counts registrations only; each guest carries the value of its last one (C
    /// `vminfo_version_counter`).
    pub(crate) counter: u64,
}

impl VmList {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &VmEntry)> {
        self.vms.iter().map(|(k, v)| (*k, v))
    }

    pub fn get(&self, vmid: u32) -> Option<&VmEntry> {
        self.vms.get(&vmid)
    }

    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    /// C `vmlist_different_vm_exists`: the VMID is registered on another node or as another type.
    pub(crate) fn conflicts(&self, g: &GuestPath) -> bool {
        self.vms
            .get(&g.vmid)
            .is_some_and(|e| e.kind != g.kind || e.node != g.node)
    }

    pub(crate) fn register(&mut self, g: &GuestPath) {
        self.version += 1;
        self.insert(g);
    }

    /// Add a guest without bumping the list version (a rebuild bumps it once).
    pub(crate) fn insert(&mut self, g: &GuestPath) {
        self.counter += 1;
        let entry = VmEntry {
            node: g.node.clone(),
            kind: g.kind,
            version: self.counter,
        };
        self.vms.insert(g.vmid, entry);
    }

    pub(crate) fn remove(&mut self, vmid: u32) {
        self.version += 1;
        self.vms.remove(&vmid);
    }
}

/// A path that names a guest config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GuestPath {
    pub node: String,
    pub kind: VmType,
    pub vmid: u32,
}

impl GuestPath {
    pub fn parse(path: &TreePath) -> Option<GuestPath> {
        let [nodes, node, dir, file] = path.components() else {
            return None;
        };
        if nodes != "nodes" || !valid_nodename(node) {
            return None;
        }
        let kind = match dir.as_str() {
            "qemu-server" => VmType::Qemu,
            "lxc" => VmType::Lxc,
            "openvz" => VmType::Openvz,
            _ => return None,
        };
        Some(GuestPath {
            node: node.clone(),
            kind,
            vmid: vmid_of_name(file)?,
        })
    }
}

/// `<vmid>.conf` with a VMID that starts with 1-9 and fits in 32 bits.
pub(crate) fn vmid_of_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".conf")?;
    if !digits.starts_with(|c: char| ('1'..='9').contains(&c))
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse::<u32>().ok()
}

/// LDH rule: letters and digits, `-` allowed but not first or last.
pub(crate) fn valid_nodename(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.iter()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphanumeric() || (*c == b'-' && i != 0 && i != b.len() - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths() {
        let g = GuestPath::parse(&TreePath::parse("nodes/n1/qemu-server/100.conf")).unwrap();
        assert_eq!((g.node.as_str(), g.kind, g.vmid), ("n1", VmType::Qemu, 100));
        assert!(GuestPath::parse(&TreePath::parse("nodes/n1/lxc/4294967295.conf")).is_some());
        assert!(GuestPath::parse(&TreePath::parse("nodes/n1/lxc/4294967296.conf")).is_none());
        assert!(GuestPath::parse(&TreePath::parse("nodes/n1/lxc/0100.conf")).is_none());
        assert!(GuestPath::parse(&TreePath::parse("nodes/n1/lxc/100.conf.tmp")).is_none());
        assert!(GuestPath::parse(&TreePath::parse("nodes/-n1/lxc/100.conf")).is_none());
        assert!(GuestPath::parse(&TreePath::parse("nodes/n1/x/lxc/100.conf")).is_none());
        assert!(GuestPath::parse(&TreePath::parse("nodes/n-1/openvz/99.conf")).is_some());
    }
}
