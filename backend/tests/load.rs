//! Schema, fresh databases and loading: against the golden file written by C pmxcfs, and
//! against databases with one bad row each. Every failed load must leave the file as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lwcfs_backend::load::{self, Stored};
use lwcfs_backend::{schema, Error};
use lwcfs_memdb::{Inode, Kind, LoadError, Memdb, Mtime, NodeId};
use rusqlite::Connection;

const NOW: Mtime = Mtime(1_800_000_000);

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat-tests/fixtures")
}

/// The golden database, copied (with its -wal and -shm) into a fresh temp dir.
fn golden_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = vectors().join(format!("config-c.db{suffix}"));
        if from.exists() {
            let to = dir.path().join(format!("config.db{suffix}"));
            std::fs::copy(&from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let db = dir.path().join("config.db");
    (dir, db)
}

fn golden_json() -> serde_json::Value {
    let text = std::fs::read_to_string(vectors().join("config-c.tree.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stored_sql(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    schema::stored_tree_sql(&conn)
        .unwrap()
        .expect("table tree exists")
}

#[test]
fn created_schema_is_byte_identical_to_c() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    load::open(&db, NOW).unwrap();
    let golden = golden_json();
    let golden_sql = golden["schema"][0].as_str().unwrap();
    assert_eq!(stored_sql(&db), golden_sql);
    assert_eq!(schema::expected_tree_sql(), golden_sql);
    let (_d, c_db) = golden_copy();
    assert_eq!(stored_sql(&c_db), stored_sql(&db));
    // Nothing else in sqlite_master (C has no index, view or trigger).
    let conn = Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn fresh_database_is_created_as_c_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let opened = load::open(&db, NOW).unwrap();
    assert!(opened.created);
    assert_eq!(opened.memdb.version(), 1);
    assert!(opened.memdb.records().is_empty());
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = Connection::open(&db).unwrap();
    let row: (i64, i64, i64, i64, i64, i64, String, String) = conn
        .query_row(
            "SELECT inode, parent, version, writer, mtime, type, name, typeof(data) FROM tree",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        row,
        (
            0,
            0,
            1,
            0,
            i64::from(NOW.0),
            8,
            "__version__".into(),
            "null".into()
        )
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        page,
        golden_json()["file_pragmas"]["page_size"].as_i64().unwrap()
    );
    drop(conn);

    let again = load::open(&db, Mtime(NOW.0 + 100)).unwrap();
    assert!(!again.created);
    assert_eq!(again.memdb.version(), 1);
    assert_eq!(
        again.memdb.root_mtime(),
        NOW,
        "an existing version row is kept"
    );
}

#[test]
fn golden_c_database_loads_to_its_listed_tree() {
    let (_dir, db) = golden_copy();
    let before = std::fs::read(&db).unwrap();
    let golden = golden_json();
    let rows = golden["rows"].as_array().unwrap();

    let Stored {
        root,
        rows: stored,
        has_table,
    } = load::read(&db).unwrap();
    assert!(has_table);
    let root = root.expect("version row");
    let v = &rows[0];
    assert_eq!(v["inode"], 0);
    assert_eq!(v["name"], "__version__");
    assert_eq!(root.version, v["version"].as_u64().unwrap());
    assert_eq!(root.writer.0 as u64, v["writer"].as_u64().unwrap());
    assert_eq!(root.mtime.0 as u64, v["mtime"].as_u64().unwrap());
    assert_eq!(stored.len(), rows.len() - 1);
    for (got, want) in stored.iter().zip(&rows[1..]) {
        let ctx = format!("row {want}");
        assert_eq!(got.inode.0, want["inode"].as_u64().unwrap(), "{ctx}");
        assert_eq!(got.parent.0, want["parent"].as_u64().unwrap(), "{ctx}");
        assert_eq!(got.version, want["version"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            got.writer.0 as u64,
            want["writer"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(got.mtime.0 as u64, want["mtime"].as_u64().unwrap(), "{ctx}");
        assert_eq!(
            got.kind.dt() as u64,
            want["type"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(got.name, want["name"].as_str().unwrap(), "{ctx}");
        let data = want["data"].as_str().unwrap_or("").as_bytes();
        assert_eq!(got.data.as_slice(), data, "{ctx}");
    }
    // The quirks the file was made to show.
    let by_name = |n: &str| stored.iter().find(|r| r.name == n).unwrap();
    assert_eq!(
        by_name("renamed-dir").kind,
        Kind::Dir,
        "X'' data on a directory loads"
    );
    assert!(
        by_name("crm_commands").data.is_empty(),
        "NULL data is an empty file"
    );

    let opened = load::open(&db, NOW).unwrap();
    assert!(!opened.created);
    let m = &opened.memdb;
    assert_eq!(m.version(), root.version);
    assert_eq!((m.root_writer(), m.root_mtime()), (root.writer, root.mtime));
    assert_eq!(m.records(), stored);
    let path = |p: &str| m.resolve(&lwcfs_memdb::TreePath::parse(p));
    assert_eq!(path("nodes/node1/qemu-server/100.conf"), Some(Inode(9)));
    assert_eq!(m.vmlist().len(), 2);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "loading a good database writes nothing"
    );
}

/// A database made by lwcfs, then changed with raw SQL by `sql`, closed (WAL checkpointed).
fn db_with(sql: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    load::open(&db, NOW).unwrap();
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "INSERT INTO tree VALUES (2, 0, 2, 0, 5, 4, 'nodes', NULL);
         INSERT INTO tree VALUES (3, 2, 3, 0, 5, 8, 'file', X'6869');
         UPDATE tree SET version = 3 WHERE inode = 0;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
    conn.close().unwrap();
    (dir, db)
}

/// Bytes of the database and of its WAL, if any.
fn snapshot_files(db: &Path) -> (Vec<u8>, Option<Vec<u8>>) {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    (
        std::fs::read(db).unwrap(),
        std::fs::read(wal).ok().filter(|w| !w.is_empty()),
    )
}

/// Open must fail; the error must mention `needle`; the files must be unchanged.
fn assert_load_fails(db: &Path, needle: &str) -> Error {
    let before = snapshot_files(db);
    let err = load::open(db, NOW).expect_err("bad database loaded");
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
    assert!(err.is_corrupt(), "{err:?}");
    assert_eq!(
        snapshot_files(db),
        before,
        "a failed load changed the file ({msg})"
    );
    err
}

#[test]
fn row_with_unknown_type_is_refused() {
    let (_d, db) = db_with("INSERT INTO tree VALUES (4, 0, 4, 0, 5, 5, 'odd', NULL);");
    let err = assert_load_fails(&db, "inode 4");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::BadType(Inode(4), 5),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn row_with_empty_name_is_refused() {
    let (_d, db) = db_with("INSERT INTO tree VALUES (4, 0, 4, 0, 5, 8, '', NULL);");
    let err = assert_load_fails(&db, "inode 4");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::NoName(Inode(4)),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn row_with_null_name_is_refused() {
    // C's table forbids a NULL name; a table without the constraint must still be refused.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE tree (inode INTEGER PRIMARY KEY, parent, version, writer, mtime, type, name, data);
         INSERT INTO tree VALUES (0, 0, 7, 0, 5, 8, '__version__', NULL);
         INSERT INTO tree VALUES (7, 0, 7, 0, 5, 8, NULL, NULL);",
    )
    .unwrap();
    conn.close().unwrap();
    let err = assert_load_fails(&db, "inode 7");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::NoName(Inode(7)),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn directory_with_data_is_refused() {
    let (_d, db) = db_with("INSERT INTO tree VALUES (4, 0, 4, 0, 5, 4, 'dir', X'00');");
    let err = assert_load_fails(&db, "inode 4");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::DirWithData(Inode(4)),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn inode_zero_with_another_name_is_refused() {
    let (_d, db) = db_with("UPDATE tree SET name = 'root' WHERE inode = 0;");
    let err = assert_load_fails(&db, "inode 0");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::BadRootName(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn row_with_missing_parent_is_refused() {
    let (_d, db) = db_with("INSERT INTO tree VALUES (4, 99, 4, 0, 5, 8, 'orphan', NULL);");
    let err = assert_load_fails(&db, "parent of 4");
    let want = LoadError::MissingParent {
        child: Inode(4),
        parent: Inode(99),
    };
    assert!(
        matches!(&err, Error::Load { source, .. } if *source == want),
        "{err:?}"
    );
}

#[test]
fn duplicate_name_in_a_directory_is_refused() {
    let (_d, db) = db_with("INSERT INTO tree VALUES (4, 2, 4, 0, 5, 8, 'file', NULL);");
    let err = assert_load_fails(&db, "inode 4");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::DuplicateName { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn name_that_is_not_utf8_is_refused() {
    let (_d, db) =
        db_with("INSERT INTO tree VALUES (4, 0, 4, 0, 5, 8, CAST(X'FF61' AS TEXT), NULL);");
    let err = assert_load_fails(&db, "inode 4");
    assert!(matches!(err, Error::BadRow { inode: 4, .. }), "{err:?}");
}

#[test]
fn columns_are_masked_and_empty_blobs_accepted_as_c_does() {
    let (_d, db) = db_with(
        "INSERT INTO tree VALUES (4, 0, 4, 4294967301, 4294967302, 260, 'dir', X'');
         INSERT INTO tree VALUES (5, 4, 5, 0, 7, 8, 'empty', X'');",
    );
    let m = load::open(&db, NOW).unwrap().memdb;
    let dir = m.record(Inode(4)).unwrap();
    assert_eq!(
        (dir.writer, dir.mtime, dir.kind),
        (NodeId(5), Mtime(6), Kind::Dir)
    );
    let file = m.record(Inode(5)).unwrap();
    assert_eq!((file.kind, file.data.len()), (Kind::File, 0));
    assert_eq!(
        m.read_path(&lwcfs_memdb::TreePath::parse("nodes/file"))
            .unwrap()
            .as_slice(),
        b"hi"
    );
}

#[test]
fn file_that_is_not_sqlite_is_a_corrupt_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    std::fs::write(
        &db,
        b"this is not a database, just some text in a file; ".repeat(200),
    )
    .unwrap();
    let err = assert_load_fails(&db, "corrupt database");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn damaged_page_is_a_corrupt_database() {
    let (_d, db) = db_with(
        "WITH RECURSIVE n(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
         INSERT INTO tree SELECT i, 0, i, 0, 5, 8, 'f' || i, randomblob(100) FROM n;",
    );
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4 * 4096);
    // Page 2 onwards: b-tree pages of the table.
    for b in &mut bytes[4096..3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let err = assert_load_fails(&db, "corrupt database");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

/// A database whose last transactions are only in its WAL (no checkpoint at close).
fn db_with_wal(sql: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, db) = db_with("");
    let conn = Connection::open(&db).unwrap();
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
    conn.close().unwrap();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the WAL holds the last commit"
    );
    let _ = std::fs::remove_file(format!("{}-shm", db.display()));
    (dir, db)
}

#[test]
fn rows_only_in_the_wal_are_loaded_without_an_shm() {
    let (_d, db) = db_with_wal(
        "INSERT INTO tree VALUES (4, 0, 4, 0, 5, 8, 'walfile', X'77');
         UPDATE tree SET version = 4 WHERE inode = 0;",
    );
    let before = snapshot_files(&db);
    let m = load::open(&db, NOW).unwrap().memdb;
    assert_eq!(m.record(Inode(4)).unwrap().data.as_slice(), b"w");
    assert_eq!(m.version(), 4);
    assert_eq!(snapshot_files(&db), before, "loading does not checkpoint");
}

#[test]
fn bad_row_only_in_the_wal_leaves_db_and_wal_unchanged() {
    let (_d, db) = db_with_wal("INSERT INTO tree VALUES (4, 0, 4, 0, 5, 9, 'bad', NULL);");
    let err = assert_load_fails(&db, "inode 4");
    assert!(
        matches!(
            err,
            Error::Load {
                source: LoadError::BadType(Inode(4), 9),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_version_row_is_written_with_the_highest_version() {
    let (_d, db) = db_with("DELETE FROM tree WHERE inode = 0;");
    let m = load::open(&db, NOW).unwrap().memdb;
    assert_eq!(m.version(), 3, "max over inodes and versions, not C's 1");
    let stored = load::read(&db).unwrap();
    assert_eq!(stored.root.unwrap().version, 3);
    assert_eq!(stored.root.unwrap().mtime, NOW);
}

#[test]
fn empty_file_gets_the_table_and_version_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    std::fs::write(&db, b"").unwrap();
    let opened = load::open(&db, NOW).unwrap();
    assert!(!opened.created);
    assert_eq!(opened.memdb.version(), 1);
    assert_eq!(stored_sql(&db), schema::expected_tree_sql());
    let reread = Memdb::load(load::read(&db).unwrap().root.unwrap(), vec![], NOW).unwrap();
    assert_eq!(reread.version(), 1);
}

/// A crash in the middle of a commit made through a rollback journal (a large batch, see
/// `store.rs`) leaves a hot journal: the next open rolls it back and loads the tree as it was
/// before that transaction.
#[test]
fn hot_rollback_journal_is_rolled_back_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let before = load::open(&path, Mtime(1_800_000_000)).unwrap().memdb;
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    // A tiny cache makes SQLite write pages (and their journal) before the commit.
    conn.execute_batch("PRAGMA cache_size=1; BEGIN IMMEDIATE;")
        .unwrap();
    for i in 1..200i64 {
        conn.execute(
            "INSERT INTO tree VALUES (?1, 0, ?1, 0, 0, 8, ?2, ?3)",
            rusqlite::params![i, format!("f{i}"), vec![7u8; 4000]],
        )
        .unwrap();
    }
    // The files as a crash would leave them: copied while the transaction is open.
    let crashed = tempfile::tempdir().unwrap();
    let copy = crashed.path().join("config.db");
    std::fs::copy(&path, &copy).unwrap();
    let journal = format!("{}-journal", path.display());
    assert!(
        std::fs::metadata(&journal).unwrap().len() > 0,
        "no journal written"
    );
    std::fs::copy(&journal, format!("{}-journal", copy.display())).unwrap();
    drop(conn);
    let after = load::open(&copy, Mtime(1_800_000_000)).unwrap().memdb;
    assert_eq!(after.records(), before.records());
    assert_eq!(after.version(), before.version());
    assert!(!crashed.path().join("config.db-journal").exists());
}
