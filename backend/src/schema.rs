//! The C schema and connection settings (`database.c`), byte for byte.
//!
//! The `tree` table is created with C's statement text, so `sqlite_master.sql` of a database
//! made here equals that of one made by C pmxcfs, and either daemon can open the other's file.
//! There is no migration: the schema is frozen by mixed clusters and by downgrades.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use lwcfs_memdb::load::RootRecord;
use lwcfs_memdb::{Mtime, NodeId};
use rusqlite::{params, Connection, OpenFlags};

use crate::error::Error;

/// C's `sql_create_db`, as executed.
pub const CREATE_TREE: &str = concat!(
    "CREATE TABLE IF NOT EXISTS tree (",
    "  inode INTEGER PRIMARY KEY NOT NULL,",
    "  parent INTEGER NOT NULL CHECK(typeof(parent)=='integer'),",
    "  version INTEGER NOT NULL CHECK(typeof(version)=='integer'),",
    "  writer INTEGER NOT NULL CHECK(typeof(writer)=='integer'),",
    "  mtime INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),",
    "  type INTEGER NOT NULL CHECK(typeof(type)=='integer'),",
    "  name TEXT NOT NULL,",
    "  data BLOB);"
);

/// What SQLite keeps of [`CREATE_TREE`] in `sqlite_master.sql`: the statement without
/// `IF NOT EXISTS` and the final `;`.
pub fn expected_tree_sql() -> String {
    CREATE_TREE
        .replacen(" IF NOT EXISTS", "", 1)
        .trim_end_matches(';')
        .to_owned()
}

/// The name of the row with inode 0 that holds the global version.
pub const VERSION_NAME: &str = "__version__";

/// `DT_REG`, the type C stores in the `__version__` row.
pub const VERSION_ROW_TYPE: i64 = 8;

pub(crate) const SELECT_ALL: &str =
    "SELECT inode, parent, version, writer, mtime, type, name, data FROM tree;";
pub(crate) const REPLACE: &str = "REPLACE INTO tree (inode, parent, version, writer, mtime, type, \
                                  name, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8);";
pub(crate) const DELETE: &str = "DELETE FROM tree WHERE inode = ?1;";

/// C's `sqlite3_busy_timeout(db, 10000)`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of C's `bdb_create`: WAL (persistent in the file), `synchronous=NORMAL` and the
/// busy timeout.
pub(crate) fn configure(conn: &Connection) -> Result<(), Error> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL;", [], |r| r.get(0))
        .map_err(Error::sqlite("setting journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NoWal { mode });
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL;")
        .map_err(Error::sqlite("setting synchronous=NORMAL"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(Error::sqlite("setting the busy timeout"))?;
    Ok(())
}

/// Open an existing database for writing, as C's `bdb_create` does: read-write, `chmod 0600`,
/// the pragmas, and `CREATE TABLE IF NOT EXISTS`.
pub fn open_rw(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::open(path, "opening for writing", e))?;
    std::fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(|source| Error::Io {
        context: "chmod 0600",
        path: path.into(),
        source,
    })?;
    configure(&conn).map_err(|e| match e {
        Error::Sqlite { context, source } => Error::open(path, context, source),
        e => e,
    })?;
    conn.execute_batch(CREATE_TREE)
        .map_err(|e| Error::open(path, "creating table tree", e))?;
    Ok(conn)
}

/// Create a fresh database as C does when `config.db` is missing: the file (mode 0600 from the
/// start, where C creates it and then chmods it), the table, and then the `__version__` row
/// with version 1, writer 0 and mtime `now`, outside a transaction.
///
/// Fails if the file exists.
pub fn create(path: &Path, now: Mtime) -> Result<(), Error> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io {
            context: "creating",
            path: path.into(),
            source,
        })?;
    let conn = open_rw(path)?;
    let root = RootRecord {
        version: 1,
        writer: NodeId(0),
        mtime: now,
    };
    write_version_row(&conn, &root)?;
    conn.close()
        .map_err(|(_, e)| Error::open(path, "closing", e))
}

/// REPLACE the `__version__` row (C's binding: type 8, data NULL).
pub(crate) fn write_version_row(conn: &Connection, root: &RootRecord) -> Result<(), Error> {
    let mut stmt = conn
        .prepare_cached(REPLACE)
        .map_err(Error::sqlite("preparing REPLACE"))?;
    stmt.execute(params![
        0i64,
        0i64,
        root.version as i64,
        i64::from(root.writer.0),
        i64::from(root.mtime.0),
        VERSION_ROW_TYPE,
        VERSION_NAME,
        Option::<&[u8]>::None
    ])
    .map_err(Error::sqlite("writing the __version__ row"))?;
    Ok(())
}

/// The `sql` of the `tree` table in `sqlite_master`, if the table exists.
pub fn stored_tree_sql(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt =
        conn.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tree'")?;
    let mut rows = stmt.query([])?;
    match rows.next()? {
        Some(r) => r.get(0),
        None => Ok(None),
    }
}
