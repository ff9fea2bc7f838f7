//! The scenarios of C's `check_memdb.c` (local.md §11), except indextest1 (the index digest,
//! tested with the index code). The fixture is C's: a fresh database, which has the
//! `__version__` row at version 1 and nothing else, so statfs counts one inode (the root).
//! C's close/reopen is `records()` then `Memdb::load`.

#[path = "support/ops.rs"]
mod ops;

use libc::{EEXIST, ENOENT, ENOTEMPTY};
use lwcfs_memdb::Memdb;
use ops::*;

fn setup() -> Memdb {
    let db = fresh();
    assert_eq!(used_inodes(&db), 1, "only the root");
    assert_eq!(db.version(), 1);
    db
}

/// `test_dirtest1` (`check_memdb.c:108-124`).
#[test]
fn dirtest1() {
    let mut db = setup();
    let (dn, sdn) = ("/dir1", "/dir1/sdir1");

    assert_eq!(mkdir(&mut db, sdn).map(drop), Err(ENOENT));
    assert_eq!(delete(&mut db, dn).map(drop), Err(ENOENT));

    assert!(mkdir(&mut db, dn).is_ok());
    assert_eq!(mkdir(&mut db, dn).map(drop), Err(EEXIST));
    assert!(mkdir(&mut db, sdn).is_ok());
    assert_eq!(mkdir(&mut db, sdn).map(drop), Err(EEXIST));
    assert_eq!(delete(&mut db, dn).map(drop), Err(ENOTEMPTY));
    assert!(delete(&mut db, sdn).is_ok());
    assert!(delete(&mut db, dn).is_ok());

    // Four successes on top of the fresh version 1; the two directories got inodes 2 and 3.
    assert_eq!(db.version(), 5);
    assert_eq!(used_inodes(&db), 1);
}

/// `test_filetest1` (`check_memdb.c:126-173`).
#[test]
fn filetest1() {
    let mut db = setup();
    let (dn, fn_) = ("/dir1", "/dir1/f1");
    let buf = [0u8; 1024];

    assert_eq!(read(&db, fn_), Err(ENOENT));
    assert!(mkdir(&mut db, dn).is_ok());
    assert_eq!(read(&db, fn_), Err(ENOENT));
    assert_eq!(write(&mut db, fn_, 0, &buf).map(drop), Err(ENOENT));
    assert!(create(&mut db, fn_).is_ok());
    assert!(write(&mut db, fn_, 0, &buf).is_ok());
    assert_eq!(read(&db, fn_), Ok(buf.to_vec()));

    assert!(write_trunc(&mut db, fn_, 0, b"0123456789").is_ok());
    assert_eq!(read(&db, fn_).map(|d| d.len()), Ok(10));

    assert!(write(&mut db, fn_, 3, b"X").is_ok());
    assert!(write(&mut db, fn_, 6, b"X").is_ok());
    assert_eq!(read(&db, fn_), Ok(b"012X45X789".to_vec()));

    assert!(delete(&mut db, fn_).is_ok());
    assert_eq!(delete(&mut db, fn_).map(drop), Err(ENOENT));
    assert!(delete(&mut db, dn).is_ok());
    assert_eq!(used_inodes(&db), 1);
}

/// `test_loaddb1` (`check_memdb.c:180-212`): files renamed into a directory created after
/// them, so children have smaller inodes than their parent; the loader must still attach them.
#[test]
fn loaddb1() {
    let mut db = setup();
    assert!(mkdir(&mut db, "dir1").is_ok());
    assert!(create(&mut db, "dir1/file1").is_ok());
    assert!(create(&mut db, "dir1/file2").is_ok());
    assert!(mkdir(&mut db, "dir2").is_ok());
    assert!(rename(&mut db, "dir1/file1", "dir2/file1").is_ok());
    assert!(rename(&mut db, "dir1/file2", "dir2/file2").is_ok());
    assert_eq!(create(&mut db, "dir2/file1").map(drop), Err(EEXIST));
    assert_eq!(create(&mut db, "dir2/file2").map(drop), Err(EEXIST));

    // The situation the test is about: rows in inode order list the children first.
    let dir2 = inode_of(&db, "dir2");
    assert_eq!(
        (
            inode_of(&db, "dir2/file1"),
            inode_of(&db, "dir2/file2"),
            dir2
        ),
        (3, 4, 5)
    );
    let first = db.records().into_iter().position(|r| r.inode.0 == dir2);
    assert_eq!(first, Some(3), "dir2 is the last of the four rows");

    let mut db = reopen(&db);
    assert_eq!(create(&mut db, "dir2/file1").map(drop), Err(EEXIST));
    assert_eq!(create(&mut db, "dir2/file2").map(drop), Err(EEXIST));
    assert_eq!(inode_of(&db, "dir2/file1"), 3);
    assert_eq!(db.version(), 7);
}

/// `test_loaddb2` (`check_memdb.c:214-248`): an empty directory moved into a newer one, then
/// files moved into it.
#[test]
fn loaddb2() {
    let mut db = setup();
    assert!(mkdir(&mut db, "dir1").is_ok());
    assert!(mkdir(&mut db, "dir1/sd1").is_ok());
    assert!(create(&mut db, "dir1/file1").is_ok());
    assert!(create(&mut db, "dir1/file2").is_ok());
    assert!(mkdir(&mut db, "dir2").is_ok());
    assert!(rename(&mut db, "dir1/sd1", "dir2/sd1").is_ok());
    assert!(rename(&mut db, "dir1/file1", "dir2/sd1/file1").is_ok());
    assert!(rename(&mut db, "dir1/file2", "dir2/sd1/file2").is_ok());
    assert!(create(&mut db, "dir2/file3").is_ok());
    assert_eq!(mkdir(&mut db, "dir2/sd1").map(drop), Err(EEXIST));
    assert!(inode_of(&db, "dir2/sd1") < inode_of(&db, "dir2"));

    let mut db = reopen(&db);
    assert_eq!(mkdir(&mut db, "dir2/sd1").map(drop), Err(EEXIST));
    assert_eq!(read(&db, "dir2/sd1/file1"), Ok(Vec::new()));
    assert_eq!(read(&db, "dir2/sd1/file2"), Ok(Vec::new()));
    assert_eq!(read(&db, "dir2/file3"), Ok(Vec::new()));
    assert_eq!(used_inodes(&db), 7);
}
