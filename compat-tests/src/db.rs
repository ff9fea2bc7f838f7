//! `config.db` seen from outside the daemon: the rows of the `tree` table, the schema, the
//! integrity check, and the tree those rows describe (paths rebuilt from parent links, as the C
//! loader does, placeholders for forward references included).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// C's `DT_DIR` and `DT_REG`.
pub const DT_DIR: i64 = 4;
pub const DT_REG: i64 = 8;

/// The schema C writes (`database.c:60-69`), as `sqlite_master.sql` shows it.
pub const C_SCHEMA: &str = "CREATE TABLE tree (  inode INTEGER PRIMARY KEY NOT NULL,  parent \
    INTEGER NOT NULL CHECK(typeof(parent)=='integer'),  version INTEGER NOT NULL \
    CHECK(typeof(version)=='integer'),  writer INTEGER NOT NULL CHECK(typeof(writer)=='integer'),  \
    mtime INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),  type INTEGER NOT NULL \
    CHECK(typeof(type)=='integer'),  name TEXT NOT NULL,  data BLOB)";

/// One row of the `tree` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub inode: i64,
    pub parent: i64,
    pub version: i64,
    pub writer: i64,
    pub mtime: i64,
    pub kind: i64,
    pub name: String,
    /// `None` for SQL NULL, which C writes for empty files and fresh directories.
    pub data: Option<Vec<u8>>,
}

/// Open read-only: reading never checkpoints or removes the WAL, so the files stay as the
/// daemon (or a crash) left them.
pub fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

pub fn rows(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare(
        "SELECT inode, parent, version, writer, mtime, type, name, data FROM tree ORDER BY inode",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Row {
            inode: r.get(0)?,
            parent: r.get(1)?,
            version: r.get(2)?,
            writer: r.get(3)?,
            mtime: r.get(4)?,
            kind: r.get(5)?,
            name: r.get(6)?,
            data: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// `PRAGMA integrity_check` as one string ("ok" when sound).
pub fn integrity(conn: &Connection) -> rusqlite::Result<String> {
    let mut st = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(lines.join("\n"))
}

/// The `sql` of every schema object, sorted.
pub fn schema(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st =
        conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY sql")?;
    let v = st.query_map([], |r| r.get(0))?.collect();
    v
}

pub fn journal_mode(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
}

/// Rows of the database at `path`, panicking with the path in the message.
pub fn read_rows(path: &Path) -> Vec<Row> {
    let conn = open_ro(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    rows(&conn).unwrap_or_else(|e| panic!("read rows of {}: {e}", path.display()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    File,
    Dir,
}

/// An entry of the tree the rows describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbEntry {
    pub inode: i64,
    pub version: i64,
    pub writer: i64,
    pub mtime: i64,
    pub kind: DbKind,
    /// File content (NULL read as empty); empty for directories.
    pub data: Vec<u8>,
}

/// The tree of `rows` by slash-separated path (no leading slash), validated as the C loader
/// validates (`database.c:307-470`): a `__version__` row at inode 0, known types, parents that
/// exist and are directories, no duplicate names in a directory, no cycles.
pub fn tree(rows: &[Row]) -> Result<BTreeMap<String, DbEntry>, String> {
    let mut by_inode: HashMap<i64, &Row> = HashMap::new();
    let mut version_row = false;
    for r in rows {
        if r.inode == 0 {
            if r.name != "__version__" {
                return Err(format!("inode 0 is named {:?}, not __version__", r.name));
            }
            version_row = true;
            continue;
        }
        if r.name.is_empty() {
            return Err(format!("inode {} has no name", r.inode));
        }
        if r.kind != DT_DIR && r.kind != DT_REG {
            return Err(format!("inode {} has type {}", r.inode, r.kind));
        }
        if r.kind == DT_DIR && r.data.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(format!("directory inode {} has data", r.inode));
        }
        if by_inode.insert(r.inode, r).is_some() {
            return Err(format!("inode {} twice", r.inode));
        }
    }
    if !version_row {
        return Err("no __version__ row".into());
    }
    let mut out = BTreeMap::new();
    for r in by_inode.values() {
        let mut comps = vec![r.name.as_str()];
        let mut p = r.parent;
        while p != 0 {
            let Some(parent) = by_inode.get(&p) else {
                return Err(format!("inode {}: missing directory inode {p}", r.inode));
            };
            if parent.kind != DT_DIR {
                return Err(format!("inode {}: parent {p} is not a directory", r.inode));
            }
            comps.push(parent.name.as_str());
            if comps.len() > by_inode.len() {
                return Err(format!("inode {}: parent links form a cycle", r.inode));
            }
            p = parent.parent;
        }
        comps.reverse();
        let path = comps.join("/");
        let e = DbEntry {
            inode: r.inode,
            version: r.version,
            writer: r.writer,
            mtime: r.mtime,
            kind: if r.kind == DT_DIR {
                DbKind::Dir
            } else {
                DbKind::File
            },
            data: r.data.clone().unwrap_or_default(),
        };
        if let Some(old) = out.insert(path.clone(), e) {
            return Err(format!(
                "{path} twice (inodes {} and {})",
                old.inode, r.inode
            ));
        }
    }
    Ok(out)
}

/// The files (not directories) under `prefix/` with their content.
pub fn files_under(tree: &BTreeMap<String, DbEntry>, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let pre = format!("{prefix}/");
    tree.iter()
        .filter(|(p, e)| p.starts_with(&pre) && e.kind == DbKind::File)
        .map(|(p, e)| (p.clone(), e.data.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(inode: i64, parent: i64, kind: i64, name: &str, data: Option<&[u8]>) -> Row {
        Row {
            inode,
            parent,
            version: inode,
            writer: 0,
            mtime: 1000 + inode,
            kind,
            name: name.into(),
            data: data.map(<[u8]>::to_vec),
        }
    }

    fn version() -> Row {
        row(0, 0, DT_REG, "__version__", None)
    }

    #[test]
    fn forward_parent_references_resolve() {
        // As after C's rename of files into a later-created directory (check_memdb loaddb1).
        let rows = vec![
            version(),
            row(3, 9, DT_REG, "a.cfg", Some(b"x")),
            row(4, 9, DT_REG, "empty", None),
            row(9, 0, DT_DIR, "dir2", Some(b"")),
        ];
        let t = tree(&rows).unwrap();
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            ["dir2", "dir2/a.cfg", "dir2/empty"]
        );
        assert_eq!(t["dir2/a.cfg"].data, b"x");
        assert_eq!(t["dir2/empty"].data, b"");
        assert_eq!(t["dir2"].kind, DbKind::Dir);
        assert_eq!(files_under(&t, "dir2").len(), 2);
        assert!(files_under(&t, "dir").is_empty());
    }

    #[test]
    fn bad_trees_are_refused_with_the_inode() {
        let missing = vec![version(), row(3, 7, DT_REG, "f", None)];
        assert!(tree(&missing)
            .unwrap_err()
            .contains("missing directory inode 7"));
        let no_version = vec![row(3, 0, DT_REG, "f", None)];
        assert!(tree(&no_version).is_err());
        let dup = vec![
            version(),
            row(3, 0, DT_REG, "f", None),
            row(4, 0, DT_REG, "f", None),
        ];
        assert!(tree(&dup).unwrap_err().contains("f twice"));
        let file_parent = vec![
            version(),
            row(3, 0, DT_REG, "f", None),
            row(4, 3, DT_REG, "g", None),
        ];
        assert!(tree(&file_parent).unwrap_err().contains("not a directory"));
        let cycle = vec![
            version(),
            row(3, 4, DT_DIR, "a", None),
            row(4, 3, DT_DIR, "b", None),
        ];
        assert!(tree(&cycle).unwrap_err().contains("cycle"));
        let dir_data = vec![version(), row(3, 0, DT_DIR, "d", Some(b"zz"))];
        assert!(tree(&dir_data).unwrap_err().contains("has data"));
    }

    #[test]
    fn reads_a_database_in_the_c_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!("PRAGMA journal_mode=WAL; {C_SCHEMA};"))
            .unwrap();
        conn.execute(
            "INSERT INTO tree VALUES (0,0,5,0,1234,8,'__version__',NULL), \
             (2,0,2,0,1234,4,'nodes',NULL), (5,2,5,0,1234,8,'x.cfg',X'6869')",
            [],
        )
        .unwrap();
        let ro = open_ro(&path).unwrap();
        assert_eq!(integrity(&ro).unwrap(), "ok");
        assert_eq!(schema(&ro).unwrap(), [C_SCHEMA]);
        assert_eq!(journal_mode(&ro).unwrap(), "wal");
        let rows = read_rows(&path);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(tree(&rows).unwrap()["nodes/x.cfg"].data, b"hi");
    }
}
