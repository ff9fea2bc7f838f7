//! `Service`: the tree as the kernel sees it.
//!
//! Reads go straight to the in-RAM tree, in every mode. Mutations build an `Op`. In local mode
//! (C's `-l`, or no `corosync.conf`) it is applied at once with writer 0 and the local clock,
//! under the tree lock, and the changed inodes go to the coalescing writer while the lock is
//! still held, so the writer sees changes in apply order. In cluster mode the `Op` is sent to
//! the group ([`Cluster::submit`]) and the caller waits until its own message has been applied
//! here, by the delivery thread, through the same [`Shared::apply`].
//!
//! The kernel caches names, attributes and pages of tree entries for [`TREE_TTL_MS`]; a change
//! the kernel did not make itself (another node's, a sync, an unlock) goes through
//! [`KernelCache`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lwcfs_backend::{Snapshot, WriterHandle};
use lwcfs_fuse::attr::{self, DEBUG_PERM, FUNC_PERM, ROOT_PERM};
use lwcfs_fuse::{FsResult, FsService, KIno, NodeAttr, NodeKind, NodeRef, SetAttr, StatFs};
use lwcfs_memdb::tree::Data;
use lwcfs_memdb::{
    Applied, Change, Ctx, Error, Inode, Kind, Memdb, Mtime, NodeId, NodeRecord, Op, RootRecord,
    Synced, TreePath,
};

use crate::cluster::Cluster;
use crate::kcache::KernelCache;
use crate::status::{vmlist_json, Status};

/// The shared in-RAM tree. The writer thread snapshots it at commit time.
pub struct Tree {
    db: Mutex<Memdb>,
}

impl Tree {
    pub fn new(db: Memdb) -> Arc<Tree> {
        Arc::new(Tree { db: Mutex::new(db) })
    }

    pub fn lock(&self) -> MutexGuard<'_, Memdb> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Snapshot for Tree {
    fn snapshot(
        &self,
        pick: &mut dyn FnMut() -> Vec<Inode>,
    ) -> (Vec<(Inode, Option<NodeRecord>)>, RootRecord) {
        self.db.snapshot(pick)
    }
}

/// The entries at the root that are not in the tree (C's "plugins").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Virtual {
    /// A symlink into `nodes/<this node>`, with the suffix after the node name.
    Link(&'static str, &'static str),
    Func(&'static str),
}

const VIRTUALS: [Virtual; 10] = [
    Virtual::Link("local", ""),
    Virtual::Link("qemu-server", "/qemu-server"),
    Virtual::Link("openvz", "/openvz"),
    Virtual::Link("lxc", "/lxc"),
    Virtual::Func(".version"),
    Virtual::Func(".members"),
    Virtual::Func(".vmlist"),
    Virtual::Func(".rrd"),
    Virtual::Func(".clusterlog"),
    Virtual::Func(".debug"),
];

impl Virtual {
    fn name(self) -> &'static str {
        match self {
            Virtual::Link(n, _) | Virtual::Func(n) => n,
        }
    }
}

fn virtual_by_name(name: &str) -> Option<u32> {
    VIRTUALS
        .iter()
        .position(|v| v.name() == name)
        .map(|i| i as u32)
}

/// A file unlinked or replaced by a rename while a handle had it open: what it was then.
#[derive(Clone)]
struct Orphan {
    data: Data,
    attr: NodeAttr,
}

enum Handle {
    /// `orphan`: the file as it was when it was unlinked or replaced by a rename while this
    /// handle was open; reads (and the kernel's getattr before a read) through the handle keep
    /// seeing it (POSIX).
    File {
        inode: Inode,
        wrote: bool,
        orphan: Option<Orphan>,
    },
    /// A function file: its text, generated at open.
    Func { content: Vec<u8> },
}

/// How long the kernel may keep a tree entry's name and attributes without asking again (C:
/// 1 s, libfuse 2's default, and no page cache at all). The kernel is told of every change it did
/// not make itself ([`KernelCache`]), so this only bounds how long a missed invalidation could
/// last; it is long enough that a reader of a stable tree asks the daemon for nothing but
/// open and release.
pub const TREE_TTL_MS: u32 = 60_000;

/// Entries below `priv/lock/` are not cached: the lock protocol must always see the daemon's
/// state, and an unlock request removes a lock directory while the kernel believes it asked for
/// an mtime change (the invalidation that follows is asynchronous, see [`KernelCache`]).
const LOCK_TTL_MS: u32 = 0;

pub struct ServiceConfig {
    pub nodename: String,
    /// Seconds after which an unchanged lock may be removed by an unlock request.
    pub lock_timeout: u32,
    /// The gid of www-data: the group of every node.
    pub gid: u32,
}

/// What the FUSE side and the cluster's delivery side share: the tree, the writer, the change
/// counters, and the open handles (whose content outlives an unlink or a rename-over).
pub struct Shared {
    pub tree: Arc<Tree>,
    pub writer: Arc<WriterHandle>,
    pub status: Arc<Status>,
    pub kcache: Arc<KernelCache>,
    /// How long a timestamp-only rewrite of `nodes/*/lrm_status` may stay off disk (zero:
    /// never); see [`crate::defer`].
    defer_bound: Duration,
    handles: Mutex<HashMap<u64, Handle>>,
}

impl Shared {
    pub fn new(
        tree: Arc<Tree>,
        writer: Arc<WriterHandle>,
        status: Arc<Status>,
        kcache: Arc<KernelCache>,
        defer_bound: Duration,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            tree,
            writer,
            status,
            kcache,
            defer_bound,
            handles: Mutex::new(HashMap::new()),
        })
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply an operation under the held tree lock and queue its changes for the writer.
    /// `at_once`: the entries are committable now (not waiting for a handle to close).
    /// `notify_kernel`: the kernel did not make this change itself (another node's, an unlock),
    /// so what it cached must be invalidated.
    pub fn apply(
        &self,
        db: &mut Memdb,
        op: &Op,
        ctx: Ctx,
        at_once: bool,
        notify_kernel: bool,
    ) -> Result<Applied, Error> {
        let victim = match op {
            Op::Delete { path } | Op::Rename { to: path, .. } => db.resolve(path),
            _ => None,
        };
        let victim_state = victim.filter(|v| self.is_open(*v)).and_then(|v| {
            Some(Orphan {
                data: db.read(v).ok()?,
                attr: mem_attr(db, v, true).ok()?,
            })
        });
        let applied = db.apply(op, ctx)?;
        match crate::defer::rule_for(op, self.defer_bound) {
            Some(rule) => self
                .writer
                .changed_deferrable(&applied.changes, at_once, rule),
            None => self.writer.changed(&applied.changes, at_once),
        }
        if notify_kernel {
            self.kcache.applied(db, op, &applied);
        }
        if let (Some(v), Some(state)) = (victim, victim_state) {
            if applied.changes.contains(&Change::Delete(v)) {
                self.orphan(v, state);
            }
        }
        match op {
            Op::Rename { from, to } => {
                self.status.record_change(from);
                self.status.record_change(to);
            }
            Op::Mkdir { .. } => {}
            Op::Create { path }
            | Op::Write { path, .. }
            | Op::Delete { path }
            | Op::Mtime { path, .. } => self.status.record_change(path),
        }
        Ok(applied)
    }

    /// Swap in the tree a sync produced and queue its changes (C: commit, reload, and bump
    /// every client-visible version).
    pub fn replace(&self, db: &mut Memdb, synced: Synced) {
        for c in &synced.changes {
            if let Change::Delete(i) = c {
                if self.is_open(*i) {
                    let state = db.read(*i).ok().zip(mem_attr(db, *i, true).ok());
                    if let Some((data, attr)) = state {
                        self.orphan(*i, Orphan { data, attr });
                    }
                }
            }
        }
        self.kcache.replaced(db, &synced.db);
        *db = synced.db;
        self.writer.changed(&synced.changes, true);
        self.status.record_reload();
    }

    fn is_open(&self, inode: Inode) -> bool {
        self.handles()
            .values()
            .any(|h| matches!(h, Handle::File { inode: i, .. } if *i == inode))
    }

    fn orphan(&self, inode: Inode, state: Orphan) {
        for h in self.handles().values_mut() {
            if let Handle::File {
                inode: i, orphan, ..
            } = h
            {
                if *i == inode {
                    *orphan = Some(state.clone());
                }
            }
        }
    }
}

pub struct Service {
    shared: Arc<Shared>,
    tree: Arc<Tree>,
    writer: Arc<WriterHandle>,
    status: Arc<Status>,
    /// `None` in local mode.
    cluster: Option<Arc<Cluster>>,
    cfg: ServiceConfig,
    next_fh: AtomicU64,
}

fn now() -> Mtime {
    Mtime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0),
    )
}

/// A tree entry's attributes as the kernel sees them (C's modes follow the quorum).
fn mem_attr(db: &Memdb, inode: Inode, quorate: bool) -> FsResult<NodeAttr> {
    let a = db.getattr(inode).map_err(errno)?;
    if inode == Inode::ROOT {
        return Ok(NodeAttr {
            ino: KIno::ROOT,
            kind: NodeKind::Dir,
            size: 0,
            mtime: 0,
            perm: ROOT_PERM,
            ttl_ms: TREE_TTL_MS,
        });
    }
    let path = db.path_of(inode).ok_or(libc::ENOENT)?;
    let kind = match a.kind {
        Kind::File => NodeKind::File,
        Kind::Dir => NodeKind::Dir,
    };
    let exec = path.name().is_some_and(attr::is_vz_script);
    Ok(NodeAttr {
        ino: NodeRef::Mem(inode).into(),
        kind,
        size: a.size,
        mtime: a.mtime.0,
        perm: attr::perm(kind, path.is_private(), quorate, exec),
        ttl_ms: if path.is_below_lock() {
            LOCK_TTL_MS
        } else {
            TREE_TTL_MS
        },
    })
}

fn errno(e: Error) -> i32 {
    e.errno()
}

impl Service {
    pub fn new(shared: Arc<Shared>, cluster: Option<Arc<Cluster>>, cfg: ServiceConfig) -> Service {
        Service {
            tree: shared.tree.clone(),
            writer: shared.writer.clone(),
            status: shared.status.clone(),
            shared,
            cluster,
            cfg,
            next_fh: AtomicU64::new(1),
        }
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.shared.handles()
    }

    fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        fh
    }

    /// A new file: C's create.
    fn create_new(&self, parent: KIno, name: &str) -> FsResult<(NodeAttr, u64)> {
        let mut db = self.tree.lock();
        let path = self.child_path(&db, parent, name)?;
        if let Some(c) = &self.cluster {
            drop(db);
            c.submit(&Op::Create { path: path.clone() })?;
            let db = self.tree.lock();
            let inode = db.resolve(&path).ok_or(libc::ENOENT)?;
            let attr = self.mem_attr(&db, inode)?;
            drop(db);
            let fh = self.new_fh(Handle::File {
                inode,
                wrote: false,
                orphan: None,
            });
            return Ok((attr, fh));
        }
        // The new file is held by its handle from the start: what is written through it
        // reaches the disk once the handle is closed, with the file itself.
        let applied = self.apply(&mut db, &Op::Create { path }, false)?;
        self.writer.hold(applied.inode);
        let attr = self.mem_attr(&db, applied.inode)?;
        let h = Handle::File {
            inode: applied.inode,
            wrote: true,
            orphan: None,
        };
        let fh = self.new_fh(h);
        drop(db);
        Ok((attr, fh))
    }

    /// Local mode: apply an operation under the held tree lock, writer 0, the local clock.
    fn apply(&self, db: &mut Memdb, op: &Op, at_once: bool) -> FsResult<Applied> {
        if self.writer.failed() {
            return Err(libc::EIO);
        }
        let t = now();
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: t,
            now: t,
        };
        self.shared
            .apply(db, op, ctx, at_once, false)
            .map_err(errno)
    }

    /// Whether writes are possible: always in local mode, with quorum in cluster mode.
    fn quorate(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.quorate())
    }

    /// The attributes of a removed file that a handle still has open (inode numbers are never
    /// reused, so the number names that file). Not cached by the kernel.
    fn orphan_attr(&self, inode: Inode) -> Option<NodeAttr> {
        self.handles().values().find_map(|h| match h {
            Handle::File {
                inode: i,
                orphan: Some(o),
                ..
            } if *i == inode => Some(NodeAttr {
                ttl_ms: 0,
                ..o.attr
            }),
            _ => None,
        })
    }

    /// The path of `name` in directory `parent` for a mutation, with C's routing rules for the
    /// root's virtual names (`EACCES`).
    fn child_path(&self, db: &Memdb, parent: KIno, name: &str) -> FsResult<TreePath> {
        let Some(NodeRef::Mem(p)) = parent.node() else {
            return Err(libc::EACCES);
        };
        if p == Inode::ROOT && virtual_by_name(name).is_some() {
            return Err(libc::EACCES);
        }
        let dir = db.path_of(p).ok_or(libc::ENOENT)?;
        Ok(dir.join(name))
    }

    fn mem_attr(&self, db: &Memdb, inode: Inode) -> FsResult<NodeAttr> {
        mem_attr(db, inode, self.quorate())
    }

    fn link_target(&self, v: Virtual) -> Option<String> {
        match v {
            Virtual::Link(_, suffix) => Some(format!("nodes/{}{}", self.cfg.nodename, suffix)),
            Virtual::Func(_) => None,
        }
    }

    fn func_content(&self, name: &str) -> Vec<u8> {
        let text = match name {
            ".version" => self
                .status
                .version_json(self.tree.lock().vmlist().version()),
            ".members" => self.status.members_json(),
            ".vmlist" => vmlist_json(self.tree.lock().vmlist()),
            ".clusterlog" => self.status.clusterlog_json(),
            ".debug" => if self.status.debug() { "1\n" } else { "0\n" }.to_owned(),
            ".rrd" => {
                let mut dump = self.status.kv().rrd_dump();
                if dump.last() == Some(&0) {
                    dump.pop();
                }
                return dump;
            }
            _ => String::new(),
        };
        text.into_bytes()
    }

    fn virt_attr(&self, idx: u32) -> FsResult<NodeAttr> {
        let v = *VIRTUALS.get(idx as usize).ok_or(libc::ENOENT)?;
        let ino = NodeRef::Virtual(idx).into();
        Ok(match v {
            Virtual::Link(..) => NodeAttr {
                ino,
                kind: NodeKind::Symlink,
                size: self.link_target(v).map_or(0, |t| t.len() as u64),
                mtime: 0,
                perm: attr::perm(NodeKind::Symlink, false, true, false),
                ttl_ms: TREE_TTL_MS,
            },
            Virtual::Func(name) => NodeAttr {
                ino,
                kind: NodeKind::File,
                size: self.func_content(name).len() as u64,
                mtime: 0,
                perm: if name == ".debug" {
                    DEBUG_PERM
                } else {
                    FUNC_PERM
                },
                ttl_ms: 0,
            },
        })
    }

    fn attr_of(&self, ino: KIno) -> FsResult<NodeAttr> {
        match ino.node().ok_or(libc::ENOENT)? {
            NodeRef::Mem(i) => {
                // The tree's lock is released before the handles' is taken.
                let r = self.mem_attr(&self.tree.lock(), i);
                match r {
                    Err(libc::ENOENT) => self.orphan_attr(i).ok_or(libc::ENOENT),
                    r => r,
                }
            }
            NodeRef::Virtual(v) => self.virt_attr(v),
        }
    }

    /// Truncate through a path (truncate(2), or O_TRUNC without a writing handle).
    fn truncate(&self, inode: Inode, size: u64, fh: Option<u64>) -> FsResult<()> {
        let via_handle = fh.is_some_and(|f| {
            matches!(self.handles().get(&f), Some(Handle::File { inode: i, .. }) if *i == inode)
        });
        let mut db = self.tree.lock();
        let path = db.path_of(inode).ok_or(libc::ENOENT)?;
        let op = Op::Write {
            path,
            offset: size,
            data: Vec::new(),
            truncate: true,
        };
        if let Some(c) = &self.cluster {
            drop(db);
            return c.submit(&op).map(|_| ());
        }
        if via_handle {
            // An ftruncate is part of the writes of that handle: committed at its close.
            let applied = self.apply(&mut db, &op, false);
            if applied.is_ok() {
                self.mark_written(fh.unwrap_or(0), inode);
            }
            applied.map(|_| ())
        } else {
            self.apply(&mut db, &op, true).map(|_| ())
        }
    }

    /// The first write through a handle holds the entry until the handle is released.
    /// (Local mode only: in cluster mode nothing is held, see `Cluster`.)
    fn mark_written(&self, fh: u64, inode: Inode) {
        if self.cluster.is_some() {
            return;
        }
        if let Some(Handle::File { wrote, .. }) = self.handles().get_mut(&fh) {
            if !*wrote {
                *wrote = true;
                self.writer.hold(inode);
            }
        }
    }

    fn set_mtime(&self, inode: Inode, mtime: u32) -> FsResult<()> {
        let mut db = self.tree.lock();
        if inode == Inode::ROOT {
            return Err(libc::EACCES);
        }
        let path = db.path_of(inode).ok_or(libc::ENOENT)?;
        // utime(path, 0, 0) on a lock directory is an unlock request (local.md §6).
        let unlock_request = mtime == 0
            && path.is_below_lock()
            && db.getattr(inode).is_ok_and(|a| a.kind == Kind::Dir);
        if let Some(c) = &self.cluster {
            // C: ask the lowest-nodeid member (without waiting), then the plain mtime change,
            // which a lock refuses (its mtime may not decrease): EACCES (cluster.md §6.4).
            let csum = if unlock_request {
                db.entry_checksum(inode)
            } else {
                None
            };
            drop(db);
            if let Some(csum) = csum {
                c.unlock_request(&path, csum);
            }
            let op = Op::Mtime {
                path,
                mtime: Mtime(mtime),
            };
            return c.submit(&op).map(|_| ());
        }
        if unlock_request {
            if db.lock_expired(&path, now(), self.cfg.lock_timeout) {
                let op = Op::Delete { path };
                let applied = self.apply(&mut db, &op, true)?;
                // The kernel asked for an mtime change: it does not know the directory is gone.
                self.shared.kcache.applied(&db, &op, &applied);
                return Err(libc::ENOENT);
            }
            return Err(libc::EACCES);
        }
        self.apply(
            &mut db,
            &Op::Mtime {
                path,
                mtime: Mtime(mtime),
            },
            true,
        )
        .map(|_| ())
    }
}

impl FsService for Service {
    fn lookup(&self, parent: KIno, name: &str) -> FsResult<NodeAttr> {
        let Some(NodeRef::Mem(p)) = parent.node() else {
            return Err(libc::ENOTDIR);
        };
        if p == Inode::ROOT {
            if let Some(v) = virtual_by_name(name) {
                return self.virt_attr(v);
            }
        }
        let db = self.tree.lock();
        let inode = db.lookup(p, name).map_err(errno)?;
        self.mem_attr(&db, inode)
    }

    fn getattr(&self, ino: KIno) -> FsResult<NodeAttr> {
        self.attr_of(ino)
    }

    fn readdir(&self, ino: KIno) -> FsResult<Vec<(String, KIno, NodeKind)>> {
        let Some(NodeRef::Mem(dir)) = ino.node() else {
            return Err(libc::ENOTDIR);
        };
        let mut out = Vec::new();
        if dir == Inode::ROOT {
            for (i, v) in VIRTUALS.iter().enumerate() {
                let kind = if matches!(v, Virtual::Link(..)) {
                    NodeKind::Symlink
                } else {
                    NodeKind::File
                };
                out.push((v.name().to_owned(), NodeRef::Virtual(i as u32).into(), kind));
            }
        }
        let db = self.tree.lock();
        for e in db.readdir(dir).map_err(errno)? {
            if dir == Inode::ROOT && virtual_by_name(&e.name).is_some() {
                continue; // shadowed by the virtual entry, as in C
            }
            let kind = if e.kind == Kind::Dir {
                NodeKind::Dir
            } else {
                NodeKind::File
            };
            out.push((e.name, NodeRef::Mem(e.inode).into(), kind));
        }
        Ok(out)
    }

    fn readlink(&self, ino: KIno) -> FsResult<Vec<u8>> {
        match ino.node() {
            Some(NodeRef::Virtual(v)) => VIRTUALS
                .get(v as usize)
                .and_then(|v| self.link_target(*v))
                .map(String::into_bytes)
                .ok_or(libc::EINVAL),
            _ => Err(libc::EINVAL),
        }
    }

    fn open(&self, ino: KIno, _flags: i32) -> FsResult<u64> {
        match ino.node().ok_or(libc::ENOENT)? {
            NodeRef::Mem(inode) => {
                self.tree.lock().getattr(inode).map_err(errno)?;
                Ok(self.new_fh(Handle::File {
                    inode,
                    wrote: false,
                    orphan: None,
                }))
            }
            NodeRef::Virtual(v) => match VIRTUALS.get(v as usize) {
                Some(Virtual::Func(name)) => Ok(self.new_fh(Handle::Func {
                    content: self.func_content(name),
                })),
                _ => Err(libc::EACCES),
            },
        }
    }

    fn read(&self, ino: KIno, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let slice = |d: &[u8]| {
            let start = (offset as usize).min(d.len());
            let end = start.saturating_add(size as usize).min(d.len());
            d[start..end].to_vec()
        };
        match self.handles().get(&fh) {
            Some(Handle::Func { content }) => return Ok(slice(content)),
            Some(Handle::File {
                orphan: Some(o), ..
            }) => return Ok(slice(&o.data)),
            _ => {}
        }
        let Some(NodeRef::Mem(inode)) = ino.node() else {
            return Err(libc::EBADF);
        };
        let data = self.tree.lock().read(inode).map_err(errno)?;
        Ok(slice(&data))
    }

    fn write(&self, ino: KIno, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        match ino.node().ok_or(libc::ENOENT)? {
            NodeRef::Virtual(v) => {
                if VIRTUALS.get(v as usize) != Some(&Virtual::Func(".debug")) || offset != 0 {
                    return Err(libc::EIO);
                }
                match data.get(..2) {
                    Some(b"0\n") => self.status.set_debug(false),
                    Some(b"1\n") => self.status.set_debug(true),
                    _ => return Err(libc::EIO),
                }
                crate::logging::set_debug(self.status.debug());
                Ok(2)
            }
            NodeRef::Mem(inode) => {
                let mut db = self.tree.lock();
                let path = db.path_of(inode).ok_or(libc::ENOENT)?;
                let op = Op::Write {
                    path,
                    offset,
                    data: data.to_vec(),
                    truncate: false,
                };
                if let Some(c) = &self.cluster {
                    drop(db);
                    return c.submit(&op).map(|n| n as u32);
                }
                self.mark_written(fh, inode);
                self.apply(&mut db, &op, false)?;
                Ok(data.len() as u32)
            }
        }
    }

    fn release(&self, _ino: KIno, fh: u64) {
        if let Some(Handle::File {
            inode, wrote: true, ..
        }) = self.handles().remove(&fh)
        {
            self.writer.release(inode);
        }
    }

    fn fsync(&self, _ino: KIno) -> FsResult<()> {
        self.writer.flush().map_err(|e| {
            tracing::error!("fsync: commit failed: {e}");
            libc::EIO
        })
    }

    fn create(&self, parent: KIno, name: &str, flags: i32) -> FsResult<(NodeAttr, u64)> {
        match self.create_new(parent, name) {
            // Another writer (another node, or another process here) created it after the
            // kernel's lookup: without O_EXCL, open(O_CREAT) opens the file that exists.
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => {
                // Not there after all (memdb refused a guest id already in use): EEXIST stands.
                let attr = self.lookup(parent, name).map_err(|_| libc::EEXIST)?;
                if attr.kind != NodeKind::File {
                    return Err(libc::EISDIR);
                }
                let Some(NodeRef::Mem(inode)) = attr.ino.node() else {
                    return Err(libc::EACCES);
                };
                if flags & libc::O_TRUNC != 0 {
                    self.truncate(inode, 0, None)?;
                }
                let fh = self.open(attr.ino, flags)?;
                Ok((self.attr_of(attr.ino)?, fh))
            }
            r => r,
        }
    }

    fn mkdir(&self, parent: KIno, name: &str) -> FsResult<NodeAttr> {
        let mut db = self.tree.lock();
        let path = self.child_path(&db, parent, name)?;
        if let Some(c) = &self.cluster {
            drop(db);
            c.submit(&Op::Mkdir { path: path.clone() })?;
            let db = self.tree.lock();
            let inode = db.resolve(&path).ok_or(libc::ENOENT)?;
            return self.mem_attr(&db, inode);
        }
        let applied = self.apply(&mut db, &Op::Mkdir { path }, true)?;
        self.mem_attr(&db, applied.inode)
    }

    fn unlink(&self, parent: KIno, name: &str) -> FsResult<()> {
        let mut db = self.tree.lock();
        let path = self.child_path(&db, parent, name)?;
        if let Some(c) = &self.cluster {
            drop(db);
            return c.submit(&Op::Delete { path }).map(|_| ());
        }
        self.apply(&mut db, &Op::Delete { path }, true).map(|_| ())
    }

    fn rmdir(&self, parent: KIno, name: &str) -> FsResult<()> {
        self.unlink(parent, name)
    }

    fn rename(
        &self,
        parent: KIno,
        name: &str,
        newparent: KIno,
        newname: &str,
        noreplace: bool,
    ) -> FsResult<()> {
        let mut db = self.tree.lock();
        let from = self.child_path(&db, parent, name)?;
        let to = self.child_path(&db, newparent, newname)?;
        if noreplace && db.resolve(&to).is_some() {
            return Err(libc::EEXIST);
        }
        if let Some(c) = &self.cluster {
            drop(db);
            return c.submit(&Op::Rename { from, to }).map(|_| ());
        }
        self.apply(&mut db, &Op::Rename { from, to }, true)
            .map(|_| ())
    }

    fn setattr(&self, ino: KIno, set: SetAttr) -> FsResult<NodeAttr> {
        let node = ino.node().ok_or(libc::ENOENT)?;
        let private = match node {
            NodeRef::Mem(i) => self
                .tree
                .lock()
                .path_of(i)
                .ok_or(libc::ENOENT)?
                .is_private(),
            NodeRef::Virtual(_) => false,
        };
        if let Some(mode) = set.mode {
            if !attr::chmod_allowed(mode, private) {
                return Err(libc::EPERM);
            }
        }
        if (set.uid.is_some() || set.gid.is_some())
            && !attr::chown_allowed(set.uid, set.gid, self.cfg.gid)
        {
            return Err(libc::EPERM);
        }
        match node {
            NodeRef::Virtual(v) => {
                let is_debug = VIRTUALS.get(v as usize) == Some(&Virtual::Func(".debug"));
                if set.size.is_some() && !is_debug {
                    return Err(libc::EIO);
                }
                if set.mtime.is_some() {
                    return Err(libc::EACCES);
                }
            }
            NodeRef::Mem(inode) => {
                if let Some(size) = set.size {
                    self.truncate(inode, size, set.fh)?;
                }
                if let Some(mtime) = set.mtime {
                    self.set_mtime(inode, mtime)?;
                }
            }
        }
        self.attr_of(ino)
    }

    fn statfs(&self) -> StatFs {
        let s = self.tree.lock().statfs();
        StatFs {
            blocks: s.blocks,
            bfree: s.bfree,
            files: s.files,
            ffree: s.ffree,
            bsize: s.bsize as u32,
            namemax: s.namemax as u32,
        }
    }
}
