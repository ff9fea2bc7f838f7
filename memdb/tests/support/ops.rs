//! Small helpers for the named tests: one function per operation, answering the errno on
//! failure as C does.
#![allow(dead_code)]

use lwcfs_memdb::{Applied, Ctx, Memdb, Mtime, NodeId, Op, RootRecord, TreePath};

/// The time check_memdb.c uses for every operation.
pub const CTIME: u32 = 1234;

pub fn p(s: &str) -> TreePath {
    TreePath::parse(s)
}

/// Local mode: writer 0, the operation's mtime and the node's clock both `t`.
pub fn at(t: u32) -> Ctx {
    Ctx {
        writer: NodeId(0),
        mtime: Mtime(t),
        now: Mtime(t),
    }
}

pub fn by(writer: u32, t: u32) -> Ctx {
    Ctx {
        writer: NodeId(writer),
        mtime: Mtime(t),
        now: Mtime(t),
    }
}

pub fn run(db: &mut Memdb, op: Op, ctx: Ctx) -> Result<Applied, i32> {
    db.apply(&op, ctx).map_err(|e| e.errno())
}

pub fn mkdir(db: &mut Memdb, path: &str) -> Result<Applied, i32> {
    run(db, Op::Mkdir { path: p(path) }, at(CTIME))
}

pub fn create(db: &mut Memdb, path: &str) -> Result<Applied, i32> {
    run(db, Op::Create { path: p(path) }, at(CTIME))
}

pub fn write(db: &mut Memdb, path: &str, offset: u64, data: &[u8]) -> Result<Applied, i32> {
    let op = Op::Write {
        path: p(path),
        offset,
        data: data.to_vec(),
        truncate: false,
    };
    run(db, op, at(CTIME))
}

/// `memdb_write(..., truncate = 1)`: the size becomes exactly `offset + data.len()`.
pub fn write_trunc(db: &mut Memdb, path: &str, offset: u64, data: &[u8]) -> Result<Applied, i32> {
    let op = Op::Write {
        path: p(path),
        offset,
        data: data.to_vec(),
        truncate: true,
    };
    run(db, op, at(CTIME))
}

/// truncate(2): `memdb_write(path, NULL, 0, size, truncate = 1)`.
pub fn truncate(db: &mut Memdb, path: &str, size: u64) -> Result<Applied, i32> {
    write_trunc(db, path, size, &[])
}

pub fn delete(db: &mut Memdb, path: &str) -> Result<Applied, i32> {
    run(db, Op::Delete { path: p(path) }, at(CTIME))
}

pub fn rename(db: &mut Memdb, from: &str, to: &str) -> Result<Applied, i32> {
    run(
        db,
        Op::Rename {
            from: p(from),
            to: p(to),
        },
        at(CTIME),
    )
}

pub fn set_mtime(db: &mut Memdb, path: &str, mtime: u32, ctx: Ctx) -> Result<Applied, i32> {
    run(
        db,
        Op::Mtime {
            path: p(path),
            mtime: Mtime(mtime),
        },
        ctx,
    )
}

/// `memdb_read`: the whole content, or the errno.
pub fn read(db: &Memdb, path: &str) -> Result<Vec<u8>, i32> {
    db.read_path(&p(path))
        .map(|d| d.to_vec())
        .map_err(|e| e.errno())
}

/// A fresh database as C creates it: no rows and the `__version__` row at version 1
/// (`database.c:723-731`).
pub fn fresh() -> Memdb {
    let root = RootRecord {
        version: 1,
        writer: NodeId(0),
        mtime: Mtime(CTIME),
    };
    Memdb::load(root, Vec::new(), Mtime(CTIME)).expect("empty tree loads")
}

/// `memdb_close` then `memdb_open`: every stored row, then a load.
pub fn reopen(db: &Memdb) -> Memdb {
    let root = RootRecord {
        version: db.version(),
        writer: db.root_writer(),
        mtime: db.root_mtime(),
    };
    Memdb::load(root, db.records(), Mtime(CTIME)).expect("stored rows load")
}

pub fn used_inodes(db: &Memdb) -> u64 {
    let st = db.statfs();
    st.files - st.ffree
}

pub fn inode_of(db: &Memdb, path: &str) -> u64 {
    db.resolve(&p(path))
        .unwrap_or_else(|| panic!("{path} exists"))
        .0
}
