//! Drives `Memdb` and the reference model with the same steps and compares everything that can
//! be observed after each one.

use lwcfs_memdb::locks::LOCK_TIMEOUT;
use lwcfs_memdb::{
    Applied, Change, Ctx, Inode, Kind, LoadError, Memdb, Mtime, NodeId, Op, RootRecord, TreePath,
};

use super::reference::{
    comps, LoadOutcome, MChange, MCtx, MOp, Model, Outcome, Quirks, BLOCK_SIZE, MAX_BLOCKS,
    MAX_INODES,
};

/// One step of a generated run. A path `@<n>` names the n-th existing entry (modulo their
/// number, in path order; the root when there is none), `@f<n>` and `@d<n>` the n-th file or
/// directory, and `@d<n>/<name>` a name inside it, so that generated operations hit existing
/// entries often.
#[derive(Clone, Debug)]
pub enum Step {
    /// Apply an operation; `advance` moves this node's clock first.
    Op {
        op: MOp,
        writer: u32,
        mtime: u32,
        advance: u32,
    },
    /// Ask whether the lock at `path` has expired (an unlock request).
    LockExpired { path: String, advance: u32 },
    /// Restart: `records()` then `Memdb::load`.
    Reload { advance: u32 },
}

pub fn to_op(op: &MOp) -> Op {
    let p = |s: &str| TreePath::parse(s);
    match op {
        MOp::Create(s) => Op::Create { path: p(s) },
        MOp::Write {
            path,
            offset,
            data,
            truncate,
        } => Op::Write {
            path: p(path),
            offset: *offset,
            data: data.clone(),
            truncate: *truncate,
        },
        MOp::Mkdir(s) => Op::Mkdir { path: p(s) },
        MOp::Delete(s) => Op::Delete { path: p(s) },
        MOp::Rename(f, t) => Op::Rename {
            from: p(f),
            to: p(t),
        },
        MOp::Mtime(s, m) => Op::Mtime {
            path: p(s),
            mtime: Mtime(*m),
        },
    }
}

fn outcome_of(r: &Result<Applied, lwcfs_memdb::Error>) -> Outcome {
    match r {
        Ok(a) => Outcome::Ok {
            inode: a.inode.0,
            parent: a.parent.0,
            changes: a
                .changes
                .iter()
                .map(|c| match c {
                    Change::Upsert(i) => MChange::Upsert(i.0),
                    Change::Delete(i) => MChange::Delete(i.0),
                })
                .collect(),
        },
        Err(e) => Outcome::Err(e.errno()),
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($fmt:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            return Err(format!("{}: got {:?}, want {:?}", format!($($fmt)+), got, want));
        }
    }};
}

pub struct Harness {
    pub db: Memdb,
    pub model: Model,
    pub now: u32,
    /// The operations and restarts so far, for the replay check.
    history: Vec<Replay>,
}

/// What the replay check repeats. Restarts are part of it: the guest list is node-local state
/// that a restart rebuilds from the tree, and later answers depend on it (as in C).
enum Replay {
    Op(Op, Ctx),
    Reload(u32),
}

impl Harness {
    pub fn new(quirks: Quirks) -> Harness {
        Harness {
            db: Memdb::new(),
            model: Model::new(quirks),
            now: 1_000_000,
            history: Vec::new(),
        }
    }

    pub fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Op {
                op,
                writer,
                mtime,
                advance,
            } => {
                self.now += advance;
                let op = &self.pick(op);
                let ctx = Ctx {
                    writer: NodeId(*writer),
                    mtime: Mtime(*mtime),
                    now: Mtime(self.now),
                };
                let mctx = MCtx {
                    writer: *writer,
                    mtime: *mtime,
                    now: self.now,
                };
                self.apply(op, ctx, mctx)?;
            }
            Step::LockExpired { path, advance } => {
                self.now += advance;
                let path = &self.pick_path(path);
                let version = self.db.version();
                let got =
                    self.db
                        .lock_expired(&TreePath::parse(path), Mtime(self.now), LOCK_TIMEOUT);
                let want = self.model.lock_expired(path, self.now);
                ensure_eq!(got, want, "lock_expired({path:?}) at {}", self.now);
                ensure_eq!(
                    self.db.version(),
                    version,
                    "lock_expired changed the version"
                );
            }
            Step::Reload { advance } => {
                self.now += advance;
                if self.model.load_outcome() == LoadOutcome::Ok {
                    self.db = self.reload().map_err(|e| format!("reload: {e}"))?;
                    self.history.push(Replay::Reload(self.now));
                    self.model.reload(self.now);
                }
            }
        }
        self.check()
    }

    /// Resolve `@<n>`, `@f<n>` (files only) and `@d<n>` (directories only) paths against the
    /// current tree.
    pub fn pick_path(&self, p: &str) -> String {
        let Some(sel) = p.strip_prefix('@') else {
            return p.to_owned();
        };
        let (sel, rest) = sel.split_once('/').unwrap_or((sel, ""));
        let (kind, n) = match sel.as_bytes()[0] {
            b'f' => (Some(Kind::File), &sel[1..]),
            b'd' => (Some(Kind::Dir), &sel[1..]),
            _ => (None, sel),
        };
        let n: usize = n.parse().expect("@<number>");
        let keys: Vec<&String> = self
            .model
            .entries
            .iter()
            .filter(|(_, e)| kind.is_none_or(|k| e.kind == k))
            .map(|(k, _)| k)
            .collect();
        let base = if keys.is_empty() {
            ""
        } else {
            keys[n % keys.len()].as_str()
        };
        match (base, rest) {
            (b, "") => b.to_owned(),
            ("", r) => r.to_owned(),
            (b, r) => format!("{b}/{r}"),
        }
    }

    fn pick(&self, op: &MOp) -> MOp {
        let p = |s: &String| self.pick_path(s);
        match op {
            MOp::Create(s) => MOp::Create(p(s)),
            MOp::Write {
                path,
                offset,
                data,
                truncate,
            } => MOp::Write {
                path: p(path),
                offset: *offset,
                data: data.clone(),
                truncate: *truncate,
            },
            MOp::Mkdir(s) => MOp::Mkdir(p(s)),
            MOp::Delete(s) => MOp::Delete(p(s)),
            MOp::Rename(f, t) => MOp::Rename(p(f), p(t)),
            MOp::Mtime(s, m) => MOp::Mtime(p(s), *m),
        }
    }

    fn apply(&mut self, op: &MOp, ctx: Ctx, mctx: MCtx) -> Result<(), String> {
        let before = self.db.version();
        let memdb_op = to_op(op);
        let got = self.db.apply(&memdb_op, ctx);
        let want = self.model.apply(op, mctx);
        self.history.push(Replay::Op(memdb_op, ctx));
        ensure_eq!(outcome_of(&got), want, "{op:?}");
        match &got {
            Err(_) => ensure_eq!(self.db.version(), before, "failed {op:?} moved the version"),
            Ok(a) if a.changes.is_empty() => {
                ensure_eq!(self.db.version(), before, "no-op {op:?} moved the version")
            }
            Ok(a) => {
                ensure_eq!(
                    self.db.version(),
                    before + 1,
                    "{op:?} must bump the version once"
                );
                if matches!(op, MOp::Create(_) | MOp::Mkdir(_)) {
                    ensure_eq!(a.inode.0, self.db.version(), "new inode of {op:?}");
                }
                for c in &a.changes {
                    match c {
                        Change::Upsert(i) => {
                            let r = self
                                .db
                                .record(*i)
                                .ok_or(format!("upserted {i:?} missing"))?;
                            ensure_eq!(r.version, self.db.version(), "version of upserted {i:?}");
                        }
                        Change::Delete(i) => {
                            ensure!(self.db.getattr(*i).is_err(), "deleted {i:?} still there")
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn root_record(&self) -> RootRecord {
        RootRecord {
            version: self.db.version(),
            writer: self.db.root_writer(),
            mtime: self.db.root_mtime(),
        }
    }

    fn reload(&self) -> Result<Memdb, LoadError> {
        Memdb::load(self.root_record(), self.db.records(), Mtime(self.now))
    }

    /// Everything observable, compared with the model.
    pub fn check(&self) -> Result<(), String> {
        check_tree(&self.db, &self.model)?;
        check_vmlist_live(&self.db, &self.model)?;
        self.check_round_trip()
    }

    fn check_round_trip(&self) -> Result<(), String> {
        let loaded = self.reload();
        match (self.model.load_outcome(), loaded) {
            (LoadOutcome::Ok, Ok(db2)) => {
                ensure_eq!(db2.records(), self.db.records(), "records after load");
                ensure_eq!(db2.version(), self.db.version(), "version after load");
                ensure_eq!(
                    db2.root_writer(),
                    self.db.root_writer(),
                    "root writer after load"
                );
                ensure_eq!(
                    db2.root_mtime(),
                    self.db.root_mtime(),
                    "root mtime after load"
                );
                ensure_eq!(db2.statfs(), self.db.statfs(), "statfs after load");
                check_tree(&db2, &self.model)?;
                let derived = self.model.derived_vmlist().expect("load outcome is Ok");
                let got: Vec<_> = db2
                    .vmlist()
                    .iter()
                    .map(|(id, v)| (id, (v.node.clone(), v.kind)))
                    .collect();
                let want: Vec<_> = derived.into_iter().collect();
                ensure_eq!(got, want, "guest list rebuilt at load");
                let nodes_dir = self
                    .model
                    .entries
                    .get("nodes")
                    .is_some_and(|e| e.kind == Kind::Dir);
                ensure_eq!(
                    db2.vmlist().version(),
                    u64::from(nodes_dir),
                    "list version at load"
                );
                // Rows come back from SQLite in any order.
                let mut rows = self.db.records();
                rows.reverse();
                let db3 = Memdb::load(self.root_record(), rows, Mtime(self.now))
                    .map_err(|e| format!("load of reversed rows: {e}"))?;
                ensure_eq!(
                    db3.records(),
                    self.db.records(),
                    "records after reversed load"
                );
            }
            (LoadOutcome::DuplicateVmids(d), Err(LoadError::DuplicateVmid { vmid, .. })) => {
                ensure!(
                    d.contains(&vmid),
                    "load refused VMID {vmid}, duplicates are {d:?}"
                );
            }
            (want, got) => {
                return Err(format!(
                    "load: got {:?}, want {want:?}",
                    got.as_ref().map(|_| "Ok").map_err(|e| e.to_string())
                ))
            }
        }
        Ok(())
    }

    /// Apply every operation (and restart) again to a fresh tree: same tree, same version
    /// (determinism).
    pub fn check_replay(&self) -> Result<(), String> {
        let mut db = Memdb::new();
        for h in &self.history {
            match h {
                Replay::Op(op, ctx) => {
                    let _ = db.apply(op, *ctx);
                }
                Replay::Reload(now) => {
                    let root = RootRecord {
                        version: db.version(),
                        writer: db.root_writer(),
                        mtime: db.root_mtime(),
                    };
                    db = Memdb::load(root, db.records(), Mtime(*now))
                        .map_err(|e| format!("replayed reload: {e}"))?;
                }
            }
        }
        ensure_eq!(db.records(), self.db.records(), "replayed records");
        ensure_eq!(db.version(), self.db.version(), "replayed version");
        ensure_eq!(db.root_mtime(), self.db.root_mtime(), "replayed root mtime");
        ensure_eq!(
            db.root_writer(),
            self.db.root_writer(),
            "replayed root writer"
        );
        Ok(())
    }
}

/// Run steps on a fresh pair; the first disagreement is the error.
pub fn run(quirks: Quirks, steps: &[Step]) -> Result<(), String> {
    let mut h = Harness::new(quirks);
    h.check()?;
    for (i, s) in steps.iter().enumerate() {
        h.step(s).map_err(|e| format!("step {i} ({s:?}): {e}"))?;
    }
    h.check_replay()
}

fn name_of(key: &str) -> String {
    comps(key).pop().unwrap_or_default()
}

pub fn check_tree(db: &Memdb, m: &Model) -> Result<(), String> {
    ensure_eq!(db.version(), m.version, "version");
    ensure_eq!(db.root_writer(), NodeId(m.root_writer), "root writer");
    ensure_eq!(db.root_mtime(), Mtime(m.root_mtime), "root mtime");
    ensure_eq!(db.len(), m.entries.len() + 1, "number of entries");

    let root = db
        .getattr(Inode::ROOT)
        .map_err(|e| format!("getattr(root): {e}"))?;
    ensure_eq!(root.kind, Kind::Dir, "root kind");
    ensure_eq!(root.version, m.version, "root entry version");
    ensure_eq!(root.mtime, Mtime(m.root_mtime), "root entry mtime");
    ensure_eq!(root.writer, NodeId(m.root_writer), "root entry writer");

    // The stored rows, in inode order, field by field (no copies of the data).
    let records = db.records();
    let mut want: Vec<(&String, &super::reference::MEntry)> = m.entries.iter().collect();
    want.sort_by_key(|(_, e)| e.inode);
    ensure_eq!(records.len(), want.len(), "number of rows");
    for (r, (key, e)) in records.iter().zip(want) {
        ensure_eq!(r.inode, Inode(e.inode), "row inode of {key}");
        ensure_eq!(r.parent, Inode(m.parent_inode(key)), "row parent of {key}");
        ensure_eq!(r.version, e.version, "row version of {key}");
        ensure_eq!(r.writer, NodeId(e.writer), "row writer of {key}");
        ensure_eq!(r.mtime, Mtime(e.mtime), "row mtime of {key}");
        ensure_eq!(r.kind, e.kind, "row kind of {key}");
        ensure_eq!(r.name, name_of(key), "row name of {key}");
        ensure!(
            r.data[..] == e.data[..],
            "row data of {key}: {} vs {} bytes",
            r.data.len(),
            e.data.len()
        );
    }

    // The path view: resolve, path_of, lookup, getattr, read, readdir.
    for (key, e) in &m.entries {
        let tp = TreePath::parse(key);
        ensure_eq!(db.resolve(&tp), Some(Inode(e.inode)), "resolve({key})");
        let back = db.path_of(Inode(e.inode)).map(|p| p.to_string());
        ensure_eq!(back, Some(key.clone()), "path_of({})", e.inode);
        let parent = Inode(m.parent_inode(key));
        ensure_eq!(
            db.lookup(parent, &name_of(key)),
            Ok(Inode(e.inode)),
            "lookup({key})"
        );
        ensure_eq!(db.parent_of(Inode(e.inode)), Ok(parent), "parent_of({key})");
        let a = db
            .getattr(Inode(e.inode))
            .map_err(|err| format!("getattr({key}): {err}"))?;
        ensure_eq!(
            (a.kind, a.size, a.mtime, a.version, a.writer),
            (
                e.kind,
                e.data.len() as u64,
                Mtime(e.mtime),
                e.version,
                NodeId(e.writer)
            ),
            "getattr({key})"
        );
        match e.kind {
            Kind::File => {
                let d = db
                    .read(Inode(e.inode))
                    .map_err(|err| format!("read({key}): {err}"))?;
                ensure!(d[..] == e.data[..], "read({key})");
            }
            Kind::Dir => {
                ensure_eq!(
                    db.read(Inode(e.inode)).map(|_| ()),
                    Err(lwcfs_memdb::Error::NotFound),
                    "read(dir {key})"
                );
                check_readdir(db, m, key, Inode(e.inode))?;
            }
        }
    }
    check_readdir(db, m, "", Inode::ROOT)?;

    let st = db.statfs();
    ensure_eq!(st.bsize, BLOCK_SIZE, "f_bsize");
    ensure_eq!(st.blocks, MAX_BLOCKS, "f_blocks");
    ensure_eq!(
        st.bfree,
        MAX_BLOCKS - m.total_size().div_ceil(BLOCK_SIZE),
        "f_bfree"
    );
    ensure_eq!(st.files, MAX_INODES, "f_files");
    ensure_eq!(
        st.files - st.ffree,
        m.entries.len() as u64 + 1,
        "used inodes"
    );
    ensure_eq!(st.namemax, 256, "f_namemax");
    Ok(())
}

fn check_readdir(db: &Memdb, m: &Model, key: &str, ino: Inode) -> Result<(), String> {
    let got: Vec<(String, Inode, Kind)> = db
        .readdir(ino)
        .map_err(|e| format!("readdir({key}): {e}"))?
        .into_iter()
        .map(|d| (d.name, d.inode, d.kind))
        .collect();
    let want: Vec<(String, Inode, Kind)> = m
        .children(key)
        .into_iter()
        .map(|(n, e)| (n, Inode(e.inode), e.kind))
        .collect();
    ensure_eq!(got, want, "readdir({key:?})");
    Ok(())
}

fn check_vmlist_live(db: &Memdb, m: &Model) -> Result<(), String> {
    let vl = db.vmlist();
    ensure_eq!(vl.version(), m.vmlist_version, "guest list version");
    let got: Vec<_> = vl
        .iter()
        .map(|(id, v)| (id, v.node.clone(), v.kind))
        .collect();
    let want: Vec<_> = m
        .vms
        .iter()
        .map(|(id, v)| (*id, v.node.clone(), v.kind))
        .collect();
    ensure_eq!(got, want, "guest list");
    for (id, v) in &m.vms {
        if let Some(version) = v.version {
            ensure_eq!(
                vl.get(*id).map(|e| e.version),
                Some(version),
                "version of guest {id}"
            );
        }
    }
    Ok(())
}
