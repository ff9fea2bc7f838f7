//! Named regression tests: each pins one behaviour of C pmxcfs (local.md §3–§6, Appendix A and
//! B) that the reference model also covers, or that the model cannot reach (loads of rows memdb
//! never writes itself).

#[path = "support/ops.rs"]
mod ops;

use libc::{EACCES, EEXIST, EFBIG, EINVAL, ENOENT, ENOTDIR, ENOTEMPTY};
use lwcfs_memdb::locks::LOCK_TIMEOUT;
use lwcfs_memdb::{
    Change, Inode, Kind, LoadError, Memdb, Mtime, NodeId, NodeRecord, RootRecord, VmType,
};
use ops::*;
use std::sync::Arc;

const MIB: u64 = 1024 * 1024;

fn tree(dirs: &[&str], files: &[&str]) -> Memdb {
    let mut db = Memdb::new();
    for d in dirs {
        mkdir(&mut db, d).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    for f in files {
        create(&mut db, f).unwrap_or_else(|e| panic!("create {f}: {e}"));
    }
    db
}

fn guest_tree() -> Memdb {
    tree(
        &[
            "nodes",
            "nodes/n1",
            "nodes/n1/qemu-server",
            "nodes/n1/lxc",
            "nodes/n2",
            "nodes/n2/qemu-server",
        ],
        &[],
    )
}

fn vm(db: &Memdb, vmid: u32) -> Option<(String, VmType)> {
    db.vmlist().get(vmid).map(|v| (v.node.clone(), v.kind))
}

fn row(inode: u64, parent: u64, kind: Kind, name: &str, data: &[u8]) -> NodeRecord {
    NodeRecord {
        inode: Inode(inode),
        parent: Inode(parent),
        version: inode,
        writer: NodeId(0),
        mtime: Mtime(CTIME),
        kind,
        name: name.to_owned(),
        data: Arc::new(data.to_vec()),
    }
}

fn load(version: u64, rows: Vec<NodeRecord>) -> Result<Memdb, LoadError> {
    Memdb::load(
        RootRecord {
            version,
            writer: NodeId(0),
            mtime: Mtime(CTIME),
        },
        rows,
        Mtime(CTIME),
    )
}

/// Appendix A #1: C leaves the data NULL with size N and crashes on the next read; the file
/// must read back as N zero bytes.
#[test]
fn regression_truncate_empty_file_zero_fills() {
    let mut db = tree(&[], &["f"]);
    assert!(truncate(&mut db, "f", 5).is_ok());
    assert_eq!(read(&db, "f"), Ok(vec![0; 5]));
    let db = reopen(&db);
    assert_eq!(
        read(&db, "f"),
        Ok(vec![0; 5]),
        "and the stored row holds the zeros"
    );
}

/// The same C branch without truncate: a zero-length write past the end of an empty file.
#[test]
fn regression_empty_write_past_end_of_empty_file_zero_fills() {
    let mut db = tree(&[], &["f"]);
    assert!(write(&mut db, "f", 3, &[]).is_ok());
    assert_eq!(read(&db, "f"), Ok(vec![0; 3]));
    assert!(
        write(&mut db, "f", 1, &[]).is_ok(),
        "a write inside the file changes nothing"
    );
    assert_eq!(read(&db, "f"), Ok(vec![0; 3]));
}

/// §3.7: without truncate a write never shrinks, with it the size is exactly offset + count.
#[test]
fn regression_write_grows_and_truncate_cuts() {
    let mut db = tree(&[], &["f"]);
    assert!(write(&mut db, "f", 2, b"ab").is_ok());
    assert_eq!(read(&db, "f"), Ok(b"\0\0ab".to_vec()));
    assert!(write(&mut db, "f", 0, b"x").is_ok());
    assert_eq!(read(&db, "f"), Ok(b"x\0ab".to_vec()));
    assert!(write_trunc(&mut db, "f", 1, b"y").is_ok());
    assert_eq!(read(&db, "f"), Ok(b"xy".to_vec()));
    assert!(truncate(&mut db, "f", 4).is_ok());
    assert_eq!(read(&db, "f"), Ok(b"xy\0\0".to_vec()));
    assert!(truncate(&mut db, "f", 0).is_ok());
    assert_eq!(read(&db, "f"), Ok(Vec::new()));
}

/// Appendix A #2: C unlinks the empty target, then fails on the non-empty source, and the
/// target is gone from memory. The target must survive and nothing must change.
#[test]
fn regression_rename_nonempty_dir_over_empty_dir_keeps_target() {
    let mut db = tree(&["src", "src/child", "dst"], &[]);
    let version = db.version();
    let records = db.records();
    assert_eq!(rename(&mut db, "src", "dst").map(drop), Err(ENOTEMPTY));
    assert_eq!(db.version(), version);
    assert_eq!(db.records(), records);
    assert!(db.resolve(&p("dst")).is_some());
}

/// memdb checks the source's emptiness before anything about the target (its fix of
/// Appendix A #2), so a non-empty directory is refused even towards a missing parent.
#[test]
fn regression_rename_nonempty_dir_checks_source_first() {
    let mut db = tree(&["src", "src/child"], &[]);
    assert_eq!(
        rename(&mut db, "src", "missing/x").map(drop),
        Err(ENOTEMPTY)
    );
}

/// Appendix A #9: a `__version__` row below the stored inodes must not make new inodes
/// collide with stored ones: the start version is the maximum over the rows.
#[test]
fn regression_load_start_version_covers_rows() {
    let rows = vec![
        row(5, 0, Kind::Dir, "d", b""),
        row(9, 5, Kind::File, "f", b"x"),
    ];
    let mut db = load(2, rows.clone()).expect("loads");
    assert_eq!(db.version(), 9);
    let a = mkdir(&mut db, "e").expect("mkdir");
    assert_eq!(a.inode, Inode(10));
    assert_eq!(read(&db, "d/f"), Ok(b"x".to_vec()), "the old row is intact");

    // An entry version above every inode counts too.
    let mut high = rows;
    high[0].version = 20;
    assert_eq!(load(2, high).expect("loads").version(), 20);
}

/// §3.7 and §4: `EFBIG` exactly when offset + count passes 1 MiB, checked before anything
/// else (even a missing parent).
#[test]
fn regression_efbig_exactly_past_one_mib() {
    let mut db = tree(&[], &["f"]);
    assert_eq!(write(&mut db, "f", MIB, b"x").map(drop), Err(EFBIG));
    assert_eq!(write(&mut db, "f", MIB - 1, b"xy").map(drop), Err(EFBIG));
    assert_eq!(truncate(&mut db, "f", MIB + 1).map(drop), Err(EFBIG));
    assert_eq!(
        write(&mut db, "f", u64::MAX, b"x").map(drop),
        Err(EFBIG),
        "no overflow"
    );
    assert_eq!(write(&mut db, "missing/f", MIB, b"x").map(drop), Err(EFBIG));
    assert_eq!(write(&mut db, "g", MIB + 1, &[]).map(drop), Err(EFBIG));
    assert_eq!(db.version(), 1, "no failure moved the version");

    assert!(write(&mut db, "f", MIB - 1, b"x").is_ok());
    assert_eq!(
        db.getattr(Inode(inode_of(&db, "f"))).map(|a| a.size),
        Ok(MIB)
    );
    assert!(truncate(&mut db, "f", MIB).is_ok());
    assert_eq!(
        write(&mut db, "f", MIB, &[]).map(drop),
        Ok(()),
        "a zero-byte write at the end"
    );
}

/// §3.5: create of an existing directory is `ENOTDIR` (C tests the type before `create`).
#[test]
fn regression_create_over_directory_is_enotdir() {
    let mut db = tree(&["d"], &["f"]);
    assert_eq!(create(&mut db, "d").map(drop), Err(ENOTDIR));
    assert_eq!(create(&mut db, "f").map(drop), Err(EEXIST));
    assert_eq!(write(&mut db, "d", 0, b"x").map(drop), Err(ENOTDIR));
    assert_eq!(create(&mut db, "f/x").map(drop), Err(ENOTDIR));
    assert_eq!(create(&mut db, "f/x/y").map(drop), Err(ENOENT));
    assert_eq!(mkdir(&mut db, "f/x").map(drop), Err(ENOTDIR));
}

/// §3.5, §3.10: the names `""`, `.` and `..` are refused with `EACCES`, also as rename targets.
#[test]
fn regression_dot_names_are_refused() {
    let mut db = tree(&["a"], &["f"]);
    for path in ["", "/", ".", "a/.", "a/.."] {
        assert_eq!(
            mkdir(&mut db, path).map(drop),
            Err(EACCES),
            "mkdir {path:?}"
        );
        assert_eq!(
            create(&mut db, path).map(drop),
            Err(EACCES),
            "create {path:?}"
        );
    }
    assert_eq!(rename(&mut db, "f", "a/..").map(drop), Err(EACCES));
    assert_eq!(rename(&mut db, "f", "a/.").map(drop), Err(EACCES));
    assert_eq!(
        delete(&mut db, "a/..").map(drop),
        Err(ENOENT),
        "looked up literally"
    );
}

/// §3.9, §3.11: the root can be neither removed, renamed, replaced nor touched.
#[test]
fn regression_root_is_protected() {
    let mut db = tree(&["a"], &[]);
    assert_eq!(delete(&mut db, "").map(drop), Err(EACCES));
    assert_eq!(delete(&mut db, "/").map(drop), Err(EACCES));
    assert_eq!(rename(&mut db, "", "b").map(drop), Err(EACCES));
    assert_eq!(rename(&mut db, "a", "/").map(drop), Err(EACCES));
    assert_eq!(set_mtime(&mut db, "", 5, at(CTIME)).map(drop), Err(EACCES));
    assert_eq!(db.version(), 1);
}

/// §3.11 step 4: rename over an existing file replaces it in one step: the target's inode is
/// deleted, the source keeps its inode and takes the new version, writer and mtime.
#[test]
fn regression_rename_over_file_replaces_it() {
    let mut db = tree(&["d"], &["a", "d/b"]);
    write(&mut db, "a", 0, b"new").expect("write");
    let (a, b) = (Inode(inode_of(&db, "a")), Inode(inode_of(&db, "d/b")));
    let applied = rename(&mut db, "a", "d/b").expect("rename");
    assert_eq!(applied.changes, vec![Change::Delete(b), Change::Upsert(a)]);
    assert_eq!(
        (applied.inode, applied.parent),
        (a, Inode(inode_of(&db, "d")))
    );
    assert_eq!(db.version(), 5);
    let attr = db.getattr(a).expect("moved");
    assert_eq!((attr.version, attr.mtime), (5, Mtime(CTIME)));
    assert_eq!(read(&db, "d/b"), Ok(b"new".to_vec()));
    assert!(db.getattr(b).is_err());
    assert_eq!(read(&db, "a"), Err(ENOENT));
}

/// As C, rename does not compare the types: a file may replace an empty directory (the
/// kernel refuses this before memdb sees it).
#[test]
fn regression_rename_file_over_empty_dir() {
    let mut db = tree(&["d"], &["f"]);
    assert!(rename(&mut db, "f", "d").is_ok());
    assert_eq!(
        db.getattr(Inode(inode_of(&db, "d"))).map(|a| a.kind),
        Ok(Kind::File)
    );
}

/// memdb's documented choice where C corrupts itself: a rename onto itself succeeds and
/// changes nothing, not even the version (the kernel never sends it).
#[test]
fn regression_rename_onto_itself_is_a_noop() {
    let mut db = tree(&["d"], &["d/f"]);
    let applied = rename(&mut db, "d/f", "d/f").expect("no-op");
    assert!(applied.changes.is_empty());
    assert_eq!(db.version(), 2);
}

/// An empty directory moved directly into itself: C would use the freed source; `EINVAL` as
/// the kernel answers.
#[test]
fn regression_rename_dir_into_itself_is_einval() {
    let mut db = tree(&["d"], &[]);
    assert_eq!(rename(&mut db, "d", "d/x").map(drop), Err(EINVAL));
    assert_eq!(db.version(), 1);
}

/// §6: a lock can be refreshed only forward in time and only by its writer; `utime(0, 0)` on a
/// lock that has not expired falls through to an mtime of 0, which is refused.
#[test]
fn regression_lock_refresh_rules() {
    let mut db = tree(&["priv", "priv/lock"], &[]);
    run(
        &mut db,
        lwcfs_memdb::Op::Mkdir {
            path: p("priv/lock/l"),
        },
        by(1, 100),
    )
    .expect("lock");
    assert_eq!(
        set_mtime(&mut db, "priv/lock/l", 99, by(1, 200)).map(drop),
        Err(EACCES)
    );
    assert_eq!(
        set_mtime(&mut db, "priv/lock/l", 150, by(2, 200)).map(drop),
        Err(EACCES)
    );
    assert_eq!(
        set_mtime(&mut db, "priv/lock/l", 0, by(1, 200)).map(drop),
        Err(EACCES)
    );
    assert_eq!(db.version(), 3, "refusals write nothing");
    assert!(
        set_mtime(&mut db, "priv/lock/l", 100, by(1, 200)).is_ok(),
        "same mtime is fine"
    );
    assert!(set_mtime(&mut db, "priv/lock/l", 150, by(1, 200)).is_ok());
    // Outside priv/lock any mtime goes, from anyone.
    mkdir(&mut db, "priv/other").expect("mkdir");
    assert!(set_mtime(&mut db, "priv/other", 0, by(2, 200)).is_ok());
}

/// §6: a lock expires once this node has seen the same state for more than 120 s; a refresh
/// restarts the timer, a delete forgets it.
#[test]
fn regression_lock_expiry_timer() {
    let t = 10_000;
    let l = p("priv/lock/l");
    let mut db = tree(&["priv", "priv/lock"], &[]);
    run(&mut db, lwcfs_memdb::Op::Mkdir { path: l.clone() }, at(t)).expect("lock");
    assert!(!db.lock_expired(&l, Mtime(t + LOCK_TIMEOUT), LOCK_TIMEOUT));
    assert!(db.lock_expired(&l, Mtime(t + LOCK_TIMEOUT + 1), LOCK_TIMEOUT));

    set_mtime(&mut db, "priv/lock/l", t + 200, at(t + 200)).expect("refresh");
    assert!(!db.lock_expired(&l, Mtime(t + 200 + LOCK_TIMEOUT), LOCK_TIMEOUT));
    assert!(db.lock_expired(&l, Mtime(t + 201 + LOCK_TIMEOUT), LOCK_TIMEOUT));

    delete(&mut db, "priv/lock/l").expect("unlock");
    let t2 = t + 1000;
    run(&mut db, lwcfs_memdb::Op::Mkdir { path: l.clone() }, at(t2)).expect("relock");
    assert!(
        !db.lock_expired(&l, Mtime(t2 + 1), LOCK_TIMEOUT),
        "a new lock, a new timer"
    );

    // Not locks: the lock directory itself, files, missing paths.
    create(&mut db, "priv/lock/file").expect("create");
    let never = Mtime(t2 + 10 * LOCK_TIMEOUT);
    for path in ["priv/lock", "priv/lock/file", "priv/lock/missing"] {
        assert!(!db.lock_expired(&p(path), Mtime(t2), LOCK_TIMEOUT));
        assert!(!db.lock_expired(&p(path), never, LOCK_TIMEOUT), "{path}");
    }
}

/// §6 and Appendix A #3: after a load the lock timers start again at the load time.
#[test]
fn regression_load_restarts_lock_timers() {
    let l = p("priv/lock/l");
    let mut db = tree(&["priv", "priv/lock"], &[]);
    run(&mut db, lwcfs_memdb::Op::Mkdir { path: l.clone() }, at(100)).expect("lock");
    let root = RootRecord {
        version: db.version(),
        writer: db.root_writer(),
        mtime: db.root_mtime(),
    };
    let mut db = Memdb::load(root, db.records(), Mtime(10_000)).expect("load");
    assert!(!db.lock_expired(&l, Mtime(10_000 + LOCK_TIMEOUT), LOCK_TIMEOUT));
    assert!(db.lock_expired(&l, Mtime(10_001 + LOCK_TIMEOUT), LOCK_TIMEOUT));
}

/// §6: locks cannot be renamed away; files in `priv/lock` and the lock directory can.
#[test]
fn regression_lock_dir_cannot_be_renamed() {
    let mut db = tree(&["priv", "priv/lock", "priv/lock/l"], &["priv/lock/f"]);
    assert_eq!(rename(&mut db, "priv/lock/l", "x").map(drop), Err(EACCES));
    assert_eq!(
        rename(&mut db, "priv/lock/l", "priv/lock/l2").map(drop),
        Err(EACCES)
    );
    assert!(rename(&mut db, "priv/lock/f", "f").is_ok());
    delete(&mut db, "priv/lock/l").expect("unlock");
    assert!(rename(&mut db, "priv/lock", "lock2").is_ok());
}

/// §1.5: create and write of a guest config fail with `EEXIST` when another node or type owns
/// the VMID, before the file's existence is looked at.
#[test]
fn regression_guest_conflict_checked_before_existence() {
    let mut db = guest_tree();
    create(&mut db, "nodes/n1/qemu-server/100.conf").expect("create");
    assert_eq!(vm(&db, 100), Some(("n1".into(), VmType::Qemu)));
    for path in ["nodes/n2/qemu-server/100.conf", "nodes/n1/lxc/100.conf"] {
        assert_eq!(
            create(&mut db, path).map(drop),
            Err(EEXIST),
            "create {path}"
        );
        assert_eq!(
            write(&mut db, path, 0, b"x").map(drop),
            Err(EEXIST),
            "write {path}"
        );
    }
    // The owner itself may write; a mkdir is not checked.
    assert!(write(&mut db, "nodes/n1/qemu-server/100.conf", 0, b"x").is_ok());
    assert!(mkdir(&mut db, "nodes/n2/qemu-server/100.conf").is_ok());
}

/// §1.5: moving a guest config to another node (same VMID) is allowed and moves the
/// registration; moving onto a VMID another guest owns is refused.
#[test]
fn regression_guest_rename_between_nodes() {
    let mut db = guest_tree();
    create(&mut db, "nodes/n1/qemu-server/100.conf").expect("create");
    create(&mut db, "nodes/n1/qemu-server/101.conf").expect("create");
    assert!(rename(
        &mut db,
        "nodes/n1/qemu-server/100.conf",
        "nodes/n2/qemu-server/100.conf"
    )
    .is_ok());
    assert_eq!(vm(&db, 100), Some(("n2".into(), VmType::Qemu)));
    // 100 now belongs to n2: its old place on n1 is taken for any other VMID.
    assert_eq!(
        rename(
            &mut db,
            "nodes/n1/qemu-server/101.conf",
            "nodes/n1/qemu-server/100.conf"
        )
        .map(drop),
        Err(EEXIST)
    );
    assert!(rename(
        &mut db,
        "nodes/n1/qemu-server/101.conf",
        "nodes/n1/lxc/101.conf"
    )
    .is_ok());
    assert_eq!(vm(&db, 101), Some(("n1".into(), VmType::Lxc)));
    assert!(rename(&mut db, "nodes/n1/lxc/101.conf", "backup.conf").is_ok());
    assert_eq!(vm(&db, 101), None);
    assert_eq!(db.vmlist().len(), 1);
}

/// Appendix B: what counts as a guest config.
#[test]
fn regression_guest_names() {
    let mut db = guest_tree();
    mkdir(&mut db, "nodes/-n").expect("mkdir");
    mkdir(&mut db, "nodes/-n/qemu-server").expect("mkdir");
    for f in [
        "nodes/n1/qemu-server/0100.conf",
        "nodes/n1/qemu-server/4294967296.conf",
        "nodes/n1/qemu-server/100.conf.tmp",
        "nodes/n1/qemu-server/10a.conf",
        "nodes/-n/qemu-server/100.conf",
    ] {
        create(&mut db, f).expect("create");
    }
    assert!(db.vmlist().is_empty());
    create(&mut db, "nodes/n1/qemu-server/4294967295.conf").expect("create");
    assert_eq!(vm(&db, u32::MAX), Some(("n1".into(), VmType::Qemu)));
}

/// As C (`memdb_delete` calls `vmlist_delete_vm` for any entry at a guest config path):
/// deleting a directory named like a guest config drops the VMID, even when another node owns
/// it. NOTE: this lets a second node register the same VMID, and the next start refuses the
/// tree, in C as in memdb (see the report: a C quirk memdb keeps).
#[test]
fn regression_delete_at_guest_path_drops_vmid() {
    let mut db = guest_tree();
    create(&mut db, "nodes/n1/qemu-server/100.conf").expect("create");
    mkdir(&mut db, "nodes/n2/qemu-server/100.conf").expect("mkdir");
    let version = db.vmlist().version();
    delete(&mut db, "nodes/n2/qemu-server/100.conf").expect("rmdir");
    assert_eq!(vm(&db, 100), None);
    assert_eq!(db.vmlist().version(), version + 1);

    create(&mut db, "nodes/n2/qemu-server/100.conf").expect("no owner left to conflict with");
    assert_eq!(vm(&db, 100), Some(("n2".into(), VmType::Qemu)));
    let root = RootRecord {
        version: db.version(),
        writer: db.root_writer(),
        mtime: db.root_mtime(),
    };
    let reloaded = Memdb::load(root, db.records(), Mtime(CTIME));
    assert!(matches!(
        reloaded,
        Err(LoadError::DuplicateVmid { vmid: 100, .. })
    ));
}

/// §1.5: a VMID configured twice makes C refuse to start.
#[test]
fn regression_load_refuses_duplicate_vmid() {
    let rows = vec![
        row(2, 0, Kind::Dir, "nodes", b""),
        row(3, 2, Kind::Dir, "n1", b""),
        row(4, 3, Kind::Dir, "qemu-server", b""),
        row(5, 2, Kind::Dir, "n2", b""),
        row(6, 5, Kind::Dir, "lxc", b""),
        row(7, 4, Kind::File, "100.conf", b""),
        row(8, 6, Kind::File, "100.conf", b""),
    ];
    assert!(matches!(
        load(8, rows.clone()),
        Err(LoadError::DuplicateVmid { vmid: 100, .. })
    ));
    let db = load(8, rows[..6].to_vec()).expect("one owner loads");
    assert_eq!(vm(&db, 100), Some(("n1".into(), VmType::Qemu)));
    assert_eq!(db.vmlist().version(), 1);
}

/// §2.7: the checks C's loader makes, each naming the row at fault, plus memdb's own (parent
/// loops, oversized files).
#[test]
fn regression_load_rejects_bad_rows() {
    let d = |i, parent, name| row(i, parent, Kind::Dir, name, b"");
    let f = |i, parent, name| row(i, parent, Kind::File, name, b"x");
    let cases: Vec<(Vec<NodeRecord>, LoadError)> = vec![
        (
            vec![f(2, 9, "a")],
            LoadError::MissingParent {
                child: Inode(2),
                parent: Inode(9),
            },
        ),
        (
            vec![f(2, 0, "a"), f(3, 2, "b")],
            LoadError::ParentNotDir {
                child: Inode(3),
                parent: Inode(2),
            },
        ),
        (
            vec![f(2, 0, "a"), f(3, 0, "a")],
            LoadError::DuplicateName {
                child: Inode(3),
                parent: Inode(0),
                name: "a".into(),
            },
        ),
        (
            vec![f(2, 0, "a"), f(2, 0, "b")],
            LoadError::Duplicate(Inode(2)),
        ),
        (vec![f(0, 0, "a")], LoadError::Duplicate(Inode(0))),
        (vec![f(2, 0, "")], LoadError::NoName(Inode(2))),
        (
            vec![row(2, 0, Kind::Dir, "d", b"x")],
            LoadError::DirWithData(Inode(2)),
        ),
        (
            vec![d(2, 3, "a"), d(3, 2, "b")],
            LoadError::Unreachable(Inode(2)),
        ),
        (
            vec![row(2, 0, Kind::File, "big", &vec![0; MIB as usize + 1])],
            LoadError::TooBig {
                inode: Inode(2),
                size: MIB as usize + 1,
            },
        ),
    ];
    for (rows, want) in cases {
        assert_eq!(load(10, rows.clone()).map(|_| ()), Err(want), "{rows:?}");
    }
    // Rows in any order, children before parents included.
    let db = load(4, vec![f(4, 3, "f"), d(3, 2, "b"), d(2, 0, "a")]).expect("loads");
    assert_eq!(read(&db, "a/b/f"), Ok(b"x".to_vec()));
}

/// §3.14: statfs counts the root and rounds the summed sizes up once.
#[test]
fn regression_statfs_counts() {
    let mut db = Memdb::new();
    let st = db.statfs();
    assert_eq!(
        (st.bsize, st.blocks, st.bfree, st.files, st.ffree, st.namemax),
        (4096, 32768, 32768, 262144, 262143, 256)
    );
    mkdir(&mut db, "d").expect("mkdir");
    create(&mut db, "d/a").expect("create");
    create(&mut db, "d/b").expect("create");
    write(&mut db, "d/a", 0, b"x").expect("write");
    write(&mut db, "d/b", 0, b"y").expect("write");
    let st = db.statfs();
    assert_eq!(
        (st.bfree, st.ffree),
        (32767, 262140),
        "two bytes are one block"
    );
    write(&mut db, "d/a", 4094, b"z").expect("write");
    assert_eq!(db.statfs().bfree, 32767, "4096 bytes");
    write(&mut db, "d/a", 4095, b"zz").expect("write");
    assert_eq!(db.statfs().bfree, 32766, "4098 bytes");
    delete(&mut db, "d/a").expect("unlink");
    assert_eq!((db.statfs().bfree, db.statfs().ffree), (32767, 262141));
}

/// §1.2 and Appendix B: every success stamps the touched entry and the root with the new
/// version and the writer; a directory does not change when children come and go.
#[test]
fn regression_stamps_touched_entry_only() {
    let mut db = Memdb::new();
    run(&mut db, lwcfs_memdb::Op::Mkdir { path: p("d") }, by(3, 100)).expect("mkdir");
    let d = Inode(inode_of(&db, "d"));
    run(
        &mut db,
        lwcfs_memdb::Op::Create { path: p("d/f") },
        by(4, 200),
    )
    .expect("create");
    let f = Inode(inode_of(&db, "d/f"));
    assert_eq!(f, Inode(2));
    let dir = db.getattr(d).expect("dir");
    assert_eq!(
        (dir.version, dir.writer, dir.mtime),
        (1, NodeId(3), Mtime(100))
    );
    let file = db.getattr(f).expect("file");
    assert_eq!(
        (file.version, file.writer, file.mtime),
        (2, NodeId(4), Mtime(200))
    );
    assert_eq!((db.root_writer(), db.root_mtime()), (NodeId(4), Mtime(200)));

    run(
        &mut db,
        lwcfs_memdb::Op::Delete { path: p("d/f") },
        by(5, 300),
    )
    .expect("unlink");
    assert_eq!(db.getattr(d).map(|a| a.mtime), Ok(Mtime(100)));
    assert_eq!(
        (db.version(), db.root_writer(), db.root_mtime()),
        (3, NodeId(5), Mtime(300))
    );
}

/// §3.4: readdir lists the children in name order (memdb's deterministic choice).
#[test]
fn regression_readdir_in_name_order() {
    let db = tree(&["d", "d/b"], &["d/c", "d/a", "d/B"]);
    let names: Vec<String> = db
        .readdir(Inode(inode_of(&db, "d")))
        .expect("dir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["B", "a", "b", "c"]);
}
