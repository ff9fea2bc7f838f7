//! Opening a database and loading it into a `Memdb`, with C's row checks
//! (`bdb_backend_load_index`, local.md §2.7).
//!
//! The file is read through a read-only connection first. Only a database that loaded without
//! error is then opened for writing (to add what C adds to an empty one: the table and the
//! `__version__` row). A database that fails to load is left as it was, byte for byte: a
//! read-only connection never writes the main file and never checkpoints a WAL into it. (In WAL
//! mode it may create an empty `-wal` and the `-shm` index beside it, as the sqlite3 shell
//! does; both are SQLite's own scratch files.) The one exception is a hot rollback journal
//! (`config.db-journal`), which only a crash in the middle of the writer's commit of a large
//! batch leaves (see `store.rs`): it is rolled back first, as SQLite does at any read-write
//! open (C's daemon would do the same), because a read-only connection cannot read past it.

use std::path::Path;
use std::sync::Arc;

use lwcfs_memdb::load::RootRecord;
use lwcfs_memdb::{Inode, Kind, LoadError, Memdb, Mtime, NodeId, NodeRecord};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};

use crate::error::Error;
use crate::schema;

/// Everything stored in a database, each row checked as C checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The `__version__` row, if there is one.
    pub root: Option<RootRecord>,
    /// Every other row, in inode order.
    pub rows: Vec<NodeRecord>,
    /// False for an empty file or one without a `tree` table (C creates the table then).
    pub has_table: bool,
}

/// The result of [`open`].
#[derive(Debug)]
pub struct Opened {
    pub memdb: Memdb,
    /// True if the file did not exist and was created (C then imports `corosync.conf`).
    pub created: bool,
}

/// Open the database at `path` as C's `memdb_open` does, creating it if it does not exist, and
/// load it. `now` is this node's clock: the mtime of a fresh `__version__` row and the start of
/// the lock timers.
///
/// A missing or zero `__version__` row is written after the load, as C writes it, but with the
/// loaded tree's version (the highest of the row, every inode and every entry version) instead
/// of C's 1, so that new inodes can never overwrite stored rows (Appendix A #9).
pub fn open(path: &Path, now: Mtime) -> Result<Opened, Error> {
    let created = match std::fs::symlink_metadata(path) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            schema::create(path, now)?;
            true
        }
        Err(source) => {
            return Err(Error::Io {
                context: "checking",
                path: path.into(),
                source,
            })
        }
    };
    let stored = read(path)?;
    let has_version = stored.root.is_some_and(|r| r.version != 0);
    let root = match stored.root {
        Some(r) if r.version != 0 => r,
        _ => RootRecord {
            version: 1,
            writer: NodeId(0),
            mtime: now,
        },
    };
    let memdb = Memdb::load(root, stored.rows, now).map_err(|source| Error::Load {
        path: path.into(),
        source,
    })?;
    if !stored.has_table || !has_version {
        let conn = schema::open_rw(path)?;
        let root = RootRecord {
            version: memdb.version(),
            writer: memdb.root_writer(),
            mtime: memdb.root_mtime(),
        };
        schema::write_version_row(&conn, &root)?;
        conn.close()
            .map_err(|(_, e)| Error::open(path, "closing", e))?;
    }
    Ok(Opened { memdb, created })
}

/// If a rollback journal lies beside the database, open it read-write once: SQLite rolls a hot
/// journal back on the first read (and ignores one that is not hot).
fn roll_back_hot_journal(path: &Path) -> Result<(), Error> {
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    if !Path::new(&journal).exists() {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), "rolling back the interrupted transaction of a rollback journal");
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::open(path, "opening to roll back its journal", e))?;
    conn.busy_timeout(schema::BUSY_TIMEOUT)
        .map_err(Error::sqlite("setting the busy timeout"))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| Error::open(path, "rolling back its journal", e))?;
    conn.close()
        .map_err(|(_, e)| Error::open(path, "closing", e))
}

/// Read every row of the database at `path` through a read-only connection, checking each row
/// as C does. Structural checks (parents, names, loops) are `Memdb::load`'s.
pub fn read(path: &Path) -> Result<Stored, Error> {
    roll_back_hot_journal(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::open(path, "opening read-only", e))?;
    conn.busy_timeout(schema::BUSY_TIMEOUT)
        .map_err(Error::sqlite("setting the busy timeout"))?;
    let sql = schema::stored_tree_sql(&conn).map_err(|e| Error::open(path, "reading schema", e))?;
    let Some(sql) = sql else {
        return Ok(Stored {
            root: None,
            rows: Vec::new(),
            has_table: false,
        });
    };
    if sql != schema::expected_tree_sql() {
        tracing::warn!(path = %path.display(), %sql, "table tree differs from the C schema");
    }
    let mut stmt = conn
        .prepare(schema::SELECT_ALL)
        .map_err(|e| Error::open(path, "reading tree", e))?;
    let mut rows = stmt
        .query([])
        .map_err(|e| Error::open(path, "reading tree", e))?;
    let mut out = Stored {
        root: None,
        rows: Vec::new(),
        has_table: true,
    };
    while let Some(row) = rows
        .next()
        .map_err(|e| Error::open(path, "reading tree", e))?
    {
        match check_row(path, row)? {
            Checked::Root(r) => out.root = Some(r),
            Checked::Node(n) => out.rows.push(n),
        }
    }
    Ok(out)
}

enum Checked {
    Root(RootRecord),
    Node(NodeRecord),
}

/// One row, with C's checks in C's order: name, masks, type and data, then inode 0's name.
fn check_row(path: &Path, row: &Row<'_>) -> Result<Checked, Error> {
    let bad = |inode: u64, what: String| Error::BadRow {
        path: path.into(),
        inode,
        what,
    };
    let load = |source: LoadError| Error::Load {
        path: path.into(),
        source,
    };
    let column = |i: usize| {
        row.get_ref(i)
            .map_err(|e| Error::open(path, "reading tree", e))
    };
    let inode = match column(0)? {
        ValueRef::Integer(i) => i as u64,
        v => {
            return Err(bad(
                0,
                format!("inode column is {:?}, not an integer", v.data_type()),
            ))
        }
    };
    let int = |i: usize, name: &str| -> Result<i64, Error> {
        match column(i)? {
            ValueRef::Integer(v) => Ok(v),
            v => Err(bad(
                inode,
                format!("column {name} is {:?}, not an integer", v.data_type()),
            )),
        }
    };
    let name = match column(6)? {
        ValueRef::Text(b) | ValueRef::Blob(b) if !b.is_empty() => b,
        ValueRef::Integer(_) | ValueRef::Real(_) => {
            return Err(bad(inode, "name is a number, not text".into()))
        }
        _ => return Err(load(LoadError::NoName(Inode(inode)))),
    };
    let name = String::from_utf8(name.to_vec()).map_err(|_| {
        bad(
            inode,
            format!("name {:?} is not UTF-8", String::from_utf8_lossy(name)),
        )
    })?;
    let parent = int(1, "parent")? as u64;
    let version = int(2, "version")? as u64;
    let writer = NodeId((int(3, "writer")? & 0xffff_ffff) as u32);
    let mtime = Mtime((int(4, "mtime")? & 0xffff_ffff) as u32);
    let dt = int(5, "type")? & 0xff;
    let data: &[u8] = match column(7)? {
        ValueRef::Null => &[],
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        v => {
            return Err(bad(
                inode,
                format!("data is {:?}, not a blob", v.data_type()),
            ))
        }
    };
    let kind = Kind::from_dt(dt).ok_or(load(LoadError::BadType(Inode(inode), dt)))?;
    if kind == Kind::Dir && !data.is_empty() {
        return Err(load(LoadError::DirWithData(Inode(inode))));
    }
    if inode == 0 {
        if name != schema::VERSION_NAME {
            return Err(load(LoadError::BadRootName(name)));
        }
        return Ok(Checked::Root(RootRecord {
            version,
            writer,
            mtime,
        }));
    }
    Ok(Checked::Node(NodeRecord {
        inode: Inode(inode),
        parent: Inode(parent),
        version,
        writer,
        mtime,
        kind,
        name,
        data: Arc::new(data.to_vec()),
    }))
}
