//! Rebuilding a `Memdb` from stored rows, with the checks of C's `bdb_backend_load_index` and
//! `memdb_recreate_vmlist`, plus two C does not make (parent loops, oversized files).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::LoadError;
use crate::locks::entry_csum;
use crate::tree::{root_entry, Body, Entry, Memdb, NodeRecord};
use crate::types::{Inode, Kind, Mtime, NodeId, MAX_FILE_SIZE};
use crate::vmlist::{valid_nodename, vmid_of_name, GuestPath, VmList};

/// The `__version__` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RootRecord {
    pub version: u64,
    pub writer: NodeId,
    pub mtime: Mtime,
}

impl Memdb {
    /// Build a tree from the root row and every other row (any order).
    ///
    /// The global version starts at the highest of the version row, every inode and every
    /// entry version, so new inodes can never collide with stored ones (C Appendix A #9).
    /// `now` starts the timers of the locks found under `priv/lock`.
    pub fn load(root: RootRecord, rows: Vec<NodeRecord>, now: Mtime) -> Result<Memdb, LoadError> {
        let mut db = Memdb::new();
        let mut version = root.version;
        let mut seen = HashSet::with_capacity(rows.len());
        for r in &rows {
            if r.inode == Inode::ROOT || !seen.insert(r.inode) {
                return Err(LoadError::Duplicate(r.inode));
            }
            if r.name.is_empty() {
                return Err(LoadError::NoName(r.inode));
            }
            if r.kind == Kind::File && r.data.len() as u64 > MAX_FILE_SIZE {
                return Err(LoadError::TooBig {
                    inode: r.inode,
                    size: r.data.len(),
                });
            }
            if r.kind == Kind::Dir && !r.data.is_empty() {
                return Err(LoadError::DirWithData(r.inode));
            }
            version = version.max(r.inode.0).max(r.version);
        }
        let kinds: HashMap<Inode, Kind> = rows.iter().map(|r| (r.inode, r.kind)).collect();
        let mut children: HashMap<Inode, BTreeMap<String, Inode>> = HashMap::new();
        for r in &rows {
            match kinds.get(&r.parent) {
                Some(Kind::File) => {
                    return Err(LoadError::ParentNotDir {
                        child: r.inode,
                        parent: r.parent,
                    })
                }
                None if r.parent != Inode::ROOT => {
                    return Err(LoadError::MissingParent {
                        child: r.inode,
                        parent: r.parent,
                    })
                }
                _ => {}
            }
            let dir = children.entry(r.parent).or_default();
            if dir.insert(r.name.clone(), r.inode).is_some() {
                return Err(LoadError::DuplicateName {
                    child: r.inode,
                    parent: r.parent,
                    name: r.name.clone(),
                });
            }
        }
        db.entries
            .insert(Inode::ROOT, root_entry(version, root.writer, root.mtime));
        for r in rows {
            let body = match r.kind {
                Kind::File => {
                    db.total_size += r.data.len() as u64;
                    Body::File(r.data)
                }
                Kind::Dir => Body::Dir(children.remove(&r.inode).unwrap_or_default()),
            };
            let e = Entry {
                parent: r.parent,
                version: r.version,
                writer: r.writer,
                mtime: r.mtime,
                name: r.name,
                body,
            };
            db.entries.insert(r.inode, e);
        }
        if let Some(top) = children.remove(&Inode::ROOT) {
            if let Some(Body::Dir(c)) = db.entries.get_mut(&Inode::ROOT).map(|e| &mut e.body) {
                *c = top;
            }
        }
        // Every entry must hang off the root: a parent loop would otherwise survive the load.
        let mut reached = 1usize;
        let mut stack = vec![Inode::ROOT];
        while let Some(dir) = stack.pop() {
            if let Some(c) = db.entries[&dir].children() {
                reached += c.len();
                stack.extend(c.values().filter(|i| db.entries[i].children().is_some()));
            }
        }
        if reached != db.entries.len() {
            let mut lost: Vec<Inode> = db.entries.keys().copied().collect();
            lost.sort();
            let reachable = db.reachable();
            let bad = lost
                .into_iter()
                .find(|i| !reachable.contains(i))
                .unwrap_or(Inode::ROOT);
            return Err(LoadError::Unreachable(bad));
        }
        db.version = version;
        db.root_writer = root.writer;
        db.root_mtime = root.mtime;
        db.vmlist = db.rebuild_vmlist()?;
        db.rebuild_locks(now);
        Ok(db)
    }

    fn reachable(&self) -> HashSet<Inode> {
        let mut out = HashSet::from([Inode::ROOT]);
        let mut stack = vec![Inode::ROOT];
        while let Some(dir) = stack.pop() {
            if let Some(c) = self.entries[&dir].children() {
                for i in c.values() {
                    if out.insert(*i) {
                        stack.push(*i);
                    }
                }
            }
        }
        out
    }

    /// C `memdb_recreate_vmlist`: every `nodes/<n>/{qemu-server,lxc,openvz}/<id>.conf`; a VMID
    /// found twice is an error (C refuses to start).
    fn rebuild_vmlist(&self) -> Result<VmList, LoadError> {
        let mut list = VmList {
            version: self.vmlist.version,
            ..VmList::default()
        };
        let Some(nodes) = self.resolve(&crate::TreePath::parse("nodes")) else {
            return Ok(list);
        };
        let Some(node_dirs) = self.entries[&nodes].children() else {
            return Ok(list);
        };
        list.version += 1;
        for (node, ino) in node_dirs {
            let Some(sub) = self.entries[ino]
                .children()
                .filter(|_| valid_nodename(node))
            else {
                continue;
            };
            for dir in ["qemu-server", "openvz", "lxc"] {
                let Some(files) = sub.get(dir).and_then(|d| self.entries[d].children()) else {
                    continue;
                };
                for (name, f) in files {
                    if self.entries[f].children().is_some() || vmid_of_name(name).is_none() {
                        continue;
                    }
                    let path = crate::TreePath::parse(&format!("nodes/{node}/{dir}/{name}"));
                    let g = GuestPath::parse(&path).expect("guest path by construction");
                    if list.vms.contains_key(&g.vmid) {
                        return Err(LoadError::DuplicateVmid {
                            inode: *f,
                            vmid: g.vmid,
                        });
                    }
                    list.insert(&g);
                }
            }
        }
        Ok(list)
    }

    fn rebuild_locks(&mut self, now: Mtime) {
        let Some(lockdir) = self.resolve(&crate::TreePath::parse("priv/lock")) else {
            return;
        };
        let Some(locks) = self.entries[&lockdir].children() else {
            return;
        };
        let found: Vec<(String, [u8; 32])> = locks
            .iter()
            .filter(|(_, i)| self.entries[i].children().is_some())
            .map(|(n, i)| (format!("priv/lock/{n}"), entry_csum(*i, &self.entries[i])))
            .collect();
        for (path, csum) in found {
            self.locks.reset(&path, csum, now);
        }
    }
}
