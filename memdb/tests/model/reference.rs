//! A deliberately simple reference model of memdb, written from the C sources of pmxcfs
//! (`memdb.c`, `status.c`, `cfs-utils.c`) and local.md, not from memdb's code.
//!
//! The tree is a `BTreeMap` from a normalised path (`"a/b"`, the root is `""` and not stored)
//! to an entry. Every operation is a straight transcription of the C function, in C's check
//! order, with the C bugs of local.md Appendix A #1 (truncate of an empty file) and #2 (rename
//! of a non-empty directory over an empty one) fixed the way memdb's comments say: the empty
//! file is zero-filled, and the source's emptiness is checked before anything about the target.
//! Appendix A #9 (start version below the stored inodes) is fixed in `reload`.
//!
//! Two places where C has no defined answer (use after free, or an error flag that stops the
//! daemon) follow memdb's documented choice: a rename onto itself is a successful no-op that
//! does not bump the version, and moving a directory into itself is `EINVAL`.
//!
//! [`Quirks`] lists the places where memdb answers differently from C today. Each one is a bug
//! report (see `c_semantics.rs`); `Quirks::MEMDB_TODAY` makes the model reproduce today's answer so the
//! property test keeps checking everything else.

use std::collections::BTreeMap;

use lwcfs_memdb::{Kind, VmType};

pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
pub const LOCK_TIMEOUT: u32 = 120;
pub const BLOCK_SIZE: u64 = 4096;
pub const MAX_BLOCKS: u64 = 32768;
pub const MAX_INODES: u64 = 262_144;

/// Where memdb departs from C today. `false` everywhere is C (with the fixes named above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quirks {
    /// Was a memdb bug (fixed; kept so the model can show it): after `Op::Mtime`, C sets the root's (and the `__version__` row's) mtime to
    /// the new mtime (`memdb.c` `memdb_mtime`: `memdb->root->mtime = mtime`); memdb stores
    /// `Ctx::mtime` there.
    pub root_mtime_from_ctx: bool,
    /// Was a memdb bug (fixed; kept so the model can show it): C's `path_is_lockdir` (rename refusal, unlock requests) is true for any path
    /// strictly below `priv/lock/`; memdb only treats exactly `priv/lock/<name>` as a lock in
    /// `rename` and `lock_expired`.
    pub lockdir_exact_depth: bool,
    /// Was a memdb bug (fixed; kept so the model can show it): memdb answers `EINVAL` for every rename whose target lies below its source;
    /// C (and POSIX) answer `ENOTDIR` for a file source and `ENOENT` when the target's parent
    /// does not exist. Only an empty directory moved directly into itself has no C answer.
    pub rename_below_self_einval: bool,
    /// Was a memdb bug (fixed; kept so the model can show it): C stamps each guest with its own counter of registrations
    /// (`status.c` `vminfo_version_counter`), shown as `"version"` per guest in `.vmlist`;
    /// memdb stamps it with the list version, which also counts removals.
    pub vm_version_is_list_version: bool,
}

impl Quirks {
    /// C semantics (what `c_semantics.rs` checks memdb against).
    #[allow(dead_code)]
    pub const C: Quirks = Quirks {
        root_mtime_from_ctx: false,
        lockdir_exact_depth: false,
        rename_below_self_einval: false,
        vm_version_is_list_version: false,
    };
    /// What memdb does today.
    pub const MEMDB_TODAY: Quirks = Quirks {
        root_mtime_from_ctx: false,
        lockdir_exact_depth: false,
        rename_below_self_einval: false,
        vm_version_is_list_version: false,
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MEntry {
    pub inode: u64,
    pub version: u64,
    pub writer: u32,
    pub mtime: u32,
    pub kind: Kind,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MVm {
    pub node: String,
    pub kind: VmType,
    /// `None` where C's answer depends on hash-table order (after a reload).
    pub version: Option<u64>,
}

/// What C hashes for a lock (`memdb_tree_entry_csum`): here the fields themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockKey {
    inode: u64,
    version: u64,
    writer: u32,
    mtime: u32,
    kind: Kind,
    parent: u64,
    name: String,
    data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MOp {
    Create(String),
    Write {
        path: String,
        offset: u64,
        data: Vec<u8>,
        truncate: bool,
    },
    Mkdir(String),
    Delete(String),
    Rename(String, String),
    Mtime(String, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MCtx {
    pub writer: u32,
    pub mtime: u32,
    pub now: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MChange {
    Upsert(u64),
    Delete(u64),
}

/// The expected result of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        inode: u64,
        parent: u64,
        changes: Vec<MChange>,
    },
    Err(i32),
}

/// The expected result of loading the stored rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadOutcome {
    Ok,
    /// C refuses to start: these VMIDs are configured more than once.
    DuplicateVmids(Vec<u32>),
}

#[derive(Clone, Debug)]
pub struct Model {
    pub quirks: Quirks,
    pub entries: BTreeMap<String, MEntry>,
    pub version: u64,
    pub root_writer: u32,
    pub root_mtime: u32,
    pub vms: BTreeMap<u32, MVm>,
    pub vmlist_version: u64,
    /// C `vminfo_version_counter`.
    vm_counter: u64,
    /// path -> (ltime, state when first seen).
    locks: BTreeMap<String, (u32, LockKey)>,
}

/// Split a path the way C's lookup does: empty components are skipped, `"."` alone is the
/// root; other `.` and `..` components stay literal.
pub fn comps(path: &str) -> Vec<String> {
    if path == "." {
        return Vec::new();
    }
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn join(c: &[String]) -> String {
    c.join("/")
}

/// C `memdb_tree_entry_t` seen through a path: the root is a directory with inode 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    inode: u64,
    kind: Kind,
}

fn errno_name_ok(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == "..")
}

/// C `name_is_vm_config`.
fn vmid_of(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".conf")?;
    let first = digits.chars().next()?;
    if !('1'..='9').contains(&first) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    u32::try_from(v).ok()
}

/// C `valid_nodename` (LDH).
fn ldh(name: &str) -> bool {
    let n = name.len();
    n > 0
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphanumeric() || (c == '-' && i != 0 && i != n - 1))
}

/// C `path_contain_vm_config`.
pub fn guest_of(c: &[String]) -> Option<(String, VmType, u32)> {
    if c.len() != 4 || c[0] != "nodes" || !ldh(&c[1]) {
        return None;
    }
    let kind = match c[2].as_str() {
        "qemu-server" => VmType::Qemu,
        "lxc" => VmType::Lxc,
        "openvz" => VmType::Openvz,
        _ => return None,
    };
    Some((c[1].clone(), kind, vmid_of(&c[3])?))
}

impl Model {
    /// A fresh tree: just the root, version 0 (as `Memdb::new`).
    pub fn new(quirks: Quirks) -> Model {
        Model {
            quirks,
            entries: BTreeMap::new(),
            version: 0,
            root_writer: 0,
            root_mtime: 0,
            vms: BTreeMap::new(),
            vmlist_version: 0,
            vm_counter: 0,
            locks: BTreeMap::new(),
        }
    }

    fn find(&self, c: &[String]) -> Option<Found> {
        if c.is_empty() {
            return Some(Found {
                inode: 0,
                kind: Kind::Dir,
            });
        }
        self.entries.get(&join(c)).map(|e| Found {
            inode: e.inode,
            kind: e.kind,
        })
    }

    /// Inode of the directory a path lives in.
    pub fn parent_inode(&self, key: &str) -> u64 {
        let c = comps(key);
        self.find(&c[..c.len() - 1]).expect("parent exists").inode
    }

    /// Names and entries directly inside a directory.
    pub fn children(&self, key: &str) -> Vec<(String, &MEntry)> {
        let depth = comps(key).len();
        self.entries
            .iter()
            .filter(|(k, _)| {
                let c = comps(k);
                c.len() == depth + 1 && join(&c[..depth]) == key
            })
            .map(|(k, e)| (comps(k).pop().expect("non-root"), e))
            .collect()
    }

    fn is_empty_dir(&self, key: &str) -> bool {
        self.children(key).is_empty()
    }

    pub fn total_size(&self) -> u64 {
        self.entries.values().map(|e| e.data.len() as u64).sum()
    }

    /// C's parent checks shared by mkdir, write and mtime: parent exists (`ENOENT`), is a
    /// directory (`ENOTDIR`), the name is not `""`, `.` or `..` (`EACCES`).
    fn parent_checks(&self, c: &[String]) -> Result<(Vec<String>, String, u64), i32> {
        let (dir, name) = match c.split_last() {
            Some((name, dir)) => (dir.to_vec(), name.clone()),
            None => (Vec::new(), String::new()),
        };
        let parent = self.find(&dir).ok_or(libc::ENOENT)?;
        if parent.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        if !errno_name_ok(&name) {
            return Err(libc::EACCES);
        }
        Ok((dir, name, parent.inode))
    }

    fn bump(&mut self, ctx: MCtx) -> u64 {
        self.version += 1;
        self.root_writer = ctx.writer;
        self.root_mtime = ctx.mtime;
        self.version
    }

    fn vm_register(&mut self, node: String, kind: VmType, vmid: u32) {
        self.vmlist_version += 1;
        self.vm_counter += 1;
        let version = if self.quirks.vm_version_is_list_version {
            self.vmlist_version
        } else {
            self.vm_counter
        };
        self.vms.insert(
            vmid,
            MVm {
                node,
                kind,
                version: Some(version),
            },
        );
    }

    fn vm_delete(&mut self, vmid: u32) {
        self.vmlist_version += 1;
        self.vms.remove(&vmid);
    }

    /// C `vmlist_different_vm_exists`.
    fn vm_conflict(&self, node: &str, kind: VmType, vmid: u32) -> bool {
        self.vms
            .get(&vmid)
            .is_some_and(|v| !(v.kind == kind && v.node == node))
    }

    fn lock_key(&self, key: &str) -> LockKey {
        let e = &self.entries[key];
        LockKey {
            inode: e.inode,
            version: e.version,
            writer: e.writer,
            mtime: e.mtime,
            kind: e.kind,
            parent: self.parent_inode(key),
            name: comps(key).pop().expect("non-root"),
            data: e.data.clone(),
        }
    }

    /// The dirname is exactly `priv/lock` (C `strcmp(dirname, "priv/lock")`).
    fn in_lock_dir(c: &[String]) -> bool {
        c.len() == 3 && c[0] == "priv" && c[1] == "lock"
    }

    /// C `path_is_lockdir`: anything strictly below `priv/lock/`.
    fn is_lockdir_path(&self, c: &[String]) -> bool {
        if self.quirks.lockdir_exact_depth {
            Self::in_lock_dir(c)
        } else {
            c.len() >= 3 && c[0] == "priv" && c[1] == "lock"
        }
    }

    pub fn apply(&mut self, op: &MOp, ctx: MCtx) -> Outcome {
        let r = match op {
            MOp::Create(p) => self.pwrite(p, 0, &[], false, true, ctx),
            MOp::Write {
                path,
                offset,
                data,
                truncate,
            } => self.pwrite(path, *offset, data, *truncate, false, ctx),
            MOp::Mkdir(p) => self.mkdir(p, ctx),
            MOp::Delete(p) => self.delete(p, ctx),
            MOp::Rename(f, t) => self.rename(f, t, ctx),
            MOp::Mtime(p, m) => self.mtime(p, *m, ctx),
        };
        match r {
            Ok(o) => o,
            Err(e) => Outcome::Err(e),
        }
    }

    /// C `memdb_pwrite`.
    fn pwrite(
        &mut self,
        path: &str,
        offset: u64,
        data: &[u8],
        truncate: bool,
        create: bool,
        ctx: MCtx,
    ) -> Result<Outcome, i32> {
        let newsize = offset as u128 + data.len() as u128;
        if newsize > MAX_FILE_SIZE as u128 {
            return Err(libc::EFBIG);
        }
        let newsize = newsize as usize;
        let offset = offset as usize;
        let c = comps(path);
        let (_, _, parent) = self.parent_checks(&c)?;
        let guest = guest_of(&c);
        if let Some((node, kind, vmid)) = &guest {
            if self.vm_conflict(node, *kind, *vmid) {
                return Err(libc::EEXIST);
            }
        }
        let key = join(&c);
        let inode = match self.entries.get(&key).map(|e| (e.kind, e.inode)) {
            Some((kind, inode)) => {
                if kind != Kind::File {
                    return Err(libc::ENOTDIR);
                }
                if create {
                    return Err(libc::EEXIST);
                }
                self.bump(ctx);
                inode
            }
            None => {
                if !create {
                    return Err(libc::ENOENT);
                }
                let inode = self.bump(ctx);
                let e = MEntry {
                    inode,
                    version: 0,
                    writer: 0,
                    mtime: 0,
                    kind: Kind::File,
                    data: Vec::new(),
                };
                self.entries.insert(key.clone(), e);
                inode
            }
        };
        let version = self.version;
        let e = self.entries.get_mut(&key).expect("just found or made");
        e.version = version;
        e.writer = ctx.writer;
        e.mtime = ctx.mtime;
        let old = std::mem::take(&mut e.data);
        let mut new;
        if !old.is_empty() {
            if newsize > old.len() {
                new = old.clone();
                new.resize(newsize, 0);
            } else {
                let size = if truncate { newsize } else { old.len() };
                new = old[..size].to_vec();
            }
        } else {
            // C leaves the data NULL when nothing is written (Appendix A #1): zero-fill.
            new = vec![0; newsize];
        }
        new[offset..offset + data.len()].copy_from_slice(data);
        e.data = new;
        if let Some((node, kind, vmid)) = guest {
            self.vm_register(node, kind, vmid);
        }
        Ok(Outcome::Ok {
            inode,
            parent,
            changes: vec![MChange::Upsert(inode)],
        })
    }

    /// C `memdb_mkdir`.
    fn mkdir(&mut self, path: &str, ctx: MCtx) -> Result<Outcome, i32> {
        let c = comps(path);
        let (_, _, parent) = self.parent_checks(&c)?;
        let key = join(&c);
        if self.entries.contains_key(&key) {
            return Err(libc::EEXIST);
        }
        let inode = self.bump(ctx);
        let e = MEntry {
            inode,
            version: inode,
            writer: ctx.writer,
            mtime: ctx.mtime,
            kind: Kind::Dir,
            data: Vec::new(),
        };
        self.entries.insert(key.clone(), e);
        if Self::in_lock_dir(&c) {
            let lk = self.lock_key(&key);
            self.locks.insert(key, (ctx.now, lk));
        }
        Ok(Outcome::Ok {
            inode,
            parent,
            changes: vec![MChange::Upsert(inode)],
        })
    }

    /// C `memdb_delete`.
    fn delete(&mut self, path: &str, ctx: MCtx) -> Result<Outcome, i32> {
        let c = comps(path);
        let found = self.find(&c).ok_or(libc::ENOENT)?;
        if c.is_empty() {
            return Err(libc::EACCES);
        }
        let key = join(&c);
        if found.kind == Kind::Dir {
            if !self.is_empty_dir(&key) {
                return Err(libc::ENOTEMPTY);
            }
            self.locks.remove(&key);
        }
        let parent = self.parent_inode(&key);
        self.entries.remove(&key);
        self.bump(ctx);
        if let Some((_, _, vmid)) = guest_of(&c) {
            self.vm_delete(vmid);
        }
        Ok(Outcome::Ok {
            inode: found.inode,
            parent,
            changes: vec![MChange::Delete(found.inode)],
        })
    }

    /// C `memdb_rename`, source emptiness checked first (Appendix A #2).
    fn rename(&mut self, from: &str, to: &str, ctx: MCtx) -> Result<Outcome, i32> {
        let fc = comps(from);
        let tc = comps(to);
        let src = self.find(&fc).ok_or(libc::ENOENT)?;
        if fc.is_empty() {
            return Err(libc::EACCES);
        }
        let from_guest = guest_of(&fc);
        let to_guest = if src.kind == Kind::File {
            guest_of(&tc)
        } else {
            None
        };
        if let Some((node, kind, vmid)) = &to_guest {
            // C: `if (!(from_node && vmid == from_vmid))`: a guest may move under its own VMID.
            let same_vm = from_guest.as_ref().is_some_and(|f| f.2 == *vmid);
            if self.vm_conflict(node, *kind, *vmid) && !same_vm {
                return Err(libc::EEXIST);
            }
        }
        if src.kind == Kind::Dir && self.is_lockdir_path(&fc) {
            return Err(libc::EACCES);
        }
        let from_key = join(&fc);
        let to_key = join(&tc);
        if from_key == to_key {
            // memdb's choice where C would corrupt itself; the kernel never sends it.
            let parent = self.parent_inode(&from_key);
            return Ok(Outcome::Ok {
                inode: src.inode,
                parent,
                changes: vec![],
            });
        }
        if src.kind == Kind::Dir && !self.is_empty_dir(&from_key) {
            return Err(libc::ENOTEMPTY);
        }
        let below_self = tc.len() > fc.len() && tc[..fc.len()] == fc[..];
        if self.quirks.rename_below_self_einval && below_self {
            return Err(libc::EINVAL);
        }
        let target = self.find(&tc);
        let new_parent = match target {
            Some(_) if tc.is_empty() => return Err(libc::EACCES),
            Some(t) => {
                if t.kind == Kind::Dir && !self.is_empty_dir(&to_key) {
                    return Err(libc::ENOTEMPTY);
                }
                self.parent_inode(&to_key)
            }
            None => {
                let (dir, name) = tc.split_last().map(|(n, d)| (d, n)).expect("non-root");
                let p = self.find(dir).ok_or(libc::ENOENT)?;
                if p.kind != Kind::Dir {
                    return Err(libc::ENOTDIR);
                }
                if p.inode == src.inode {
                    // Into itself: C uses the freed source; memdb says EINVAL, as the kernel.
                    return Err(libc::EINVAL);
                }
                if !errno_name_ok(name) {
                    return Err(libc::EACCES);
                }
                p.inode
            }
        };
        let version = self.bump(ctx);
        let mut changes = Vec::new();
        if let Some(t) = target {
            self.entries.remove(&to_key);
            changes.push(MChange::Delete(t.inode));
        }
        let mut e = self.entries.remove(&from_key).expect("source exists");
        e.version = version;
        e.writer = ctx.writer;
        e.mtime = ctx.mtime;
        self.entries.insert(to_key, e);
        if src.kind == Kind::File {
            if let Some((_, _, vmid)) = from_guest {
                self.vm_delete(vmid);
            }
            if let Some((node, kind, vmid)) = to_guest {
                self.vm_register(node, kind, vmid);
            }
        }
        changes.push(MChange::Upsert(src.inode));
        Ok(Outcome::Ok {
            inode: src.inode,
            parent: new_parent,
            changes,
        })
    }

    /// C `memdb_mtime`.
    fn mtime(&mut self, path: &str, mtime: u32, ctx: MCtx) -> Result<Outcome, i32> {
        let c = comps(path);
        let (_, _, parent) = self.parent_checks(&c)?;
        let key = join(&c);
        let e = self.entries.get(&key).ok_or(libc::ENOENT)?;
        let is_lock = Self::in_lock_dir(&c) && e.kind == Kind::Dir;
        if is_lock && (mtime < e.mtime || e.writer != ctx.writer) {
            return Err(libc::EACCES);
        }
        let inode = e.inode;
        let version = self.bump(ctx);
        if !self.quirks.root_mtime_from_ctx {
            self.root_mtime = mtime;
        }
        let e = self.entries.get_mut(&key).expect("exists");
        e.version = version;
        e.writer = ctx.writer;
        e.mtime = mtime;
        if is_lock {
            let lk = self.lock_key(&key);
            self.locks.insert(key, (ctx.now, lk));
        }
        Ok(Outcome::Ok {
            inode,
            parent,
            changes: vec![MChange::Upsert(inode)],
        })
    }

    /// C `memdb_lock_expired` as the unlock request reaches it: only for a directory at a lock
    /// path (`path_is_lockdir`).
    pub fn lock_expired(&mut self, path: &str, now: u32) -> bool {
        let c = comps(path);
        if !self.is_lockdir_path(&c) {
            return false;
        }
        let key = join(&c);
        match self.entries.get(&key) {
            Some(e) if e.kind == Kind::Dir => {}
            _ => return false,
        }
        let lk = self.lock_key(&key);
        match self.locks.get_mut(&key) {
            Some(li) if li.1 != lk => {
                *li = (now, lk);
                false
            }
            Some(li) => now > li.0 && now - li.0 > LOCK_TIMEOUT,
            None => {
                self.locks.insert(key, (now, lk));
                false
            }
        }
    }

    /// The guest list `memdb_recreate_vmlist` derives from the tree.
    pub fn derived_vmlist(&self) -> Result<BTreeMap<u32, (String, VmType)>, Vec<u32>> {
        let mut out = BTreeMap::new();
        let mut dups = Vec::new();
        for (key, e) in &self.entries {
            let c = comps(key);
            if e.kind != Kind::File {
                continue;
            }
            // The parents are directories by construction of the tree.
            if let Some((node, kind, vmid)) = guest_of(&c) {
                if out.insert(vmid, (node, kind)).is_some() {
                    dups.push(vmid);
                }
            }
        }
        if dups.is_empty() {
            Ok(out)
        } else {
            dups.sort();
            dups.dedup();
            Err(dups)
        }
    }

    pub fn load_outcome(&self) -> LoadOutcome {
        match self.derived_vmlist() {
            Ok(_) => LoadOutcome::Ok,
            Err(d) => LoadOutcome::DuplicateVmids(d),
        }
    }

    /// A daemon restart (`memdb_open`): the guest list is rebuilt from the tree, the lock timers
    /// start at `now`. The caller checks `load_outcome` first.
    pub fn reload(&mut self, now: u32) {
        let derived = self.derived_vmlist().expect("no duplicate VMIDs");
        let nodes_is_dir = self
            .entries
            .get("nodes")
            .is_some_and(|e| e.kind == Kind::Dir);
        self.vmlist_version = u64::from(nodes_is_dir);
        self.vm_counter = derived.len() as u64;
        self.vms = derived
            .into_iter()
            .map(|(vmid, (node, kind))| {
                // C numbers the guests in hash-table order: unknown. memdb gives them all the
                // list version.
                let version = self
                    .quirks
                    .vm_version_is_list_version
                    .then_some(self.vmlist_version);
                (
                    vmid,
                    MVm {
                        node,
                        kind,
                        version,
                    },
                )
            })
            .collect();
        self.locks.clear();
        let lock_dirs: Vec<String> = self
            .children("priv/lock")
            .into_iter()
            .filter(|(_, e)| e.kind == Kind::Dir)
            .map(|(n, _)| format!("priv/lock/{n}"))
            .collect();
        if self
            .entries
            .get("priv/lock")
            .is_some_and(|e| e.kind == Kind::Dir)
        {
            for k in lock_dirs {
                let lk = self.lock_key(&k);
                self.locks.insert(k, (now, lk));
            }
        }
    }
}
