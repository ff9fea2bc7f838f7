//! Bugs found by the reference model: each test asserts the CORRECT (C) behaviour and fails
//! today. Not committed; see the report. When a bug is fixed, move its test to
//! `regression.rs` and clear the matching flag in `Quirks::MEMDB_TODAY`.
#![allow(dead_code)]

#[path = "model/harness.rs"]
mod harness;
#[path = "support/ops.rs"]
mod ops;
#[path = "model/reference.rs"]
mod reference;

use libc::{EACCES, ENOENT, ENOTDIR};
use lwcfs_memdb::locks::LOCK_TIMEOUT;
use lwcfs_memdb::{Inode, Memdb, Mtime, NodeId};
use ops::*;

// Regression (found by the reference model, fixed): `Op::Mtime` stamps the root (the `__version__` row, the index header and the
// root's index digest) with `Ctx::mtime`; C's `memdb_mtime` sets `memdb->root->mtime` to the
// NEW mtime (`memdb.c`, `memdb_mtime`: `memdb->root->mtime = mtime;`, called from dcdb.c as
// `memdb_mtime(memdb, path, nodeid, offset)`). Culprit: `apply.rs` `set_mtime` →
// `self.bump(ctx)`.
#[test]
fn regression_mtime_stamps_root_with_the_new_mtime() {
    let mut db = Memdb::new();
    mkdir(&mut db, "a").expect("mkdir");
    set_mtime(&mut db, "a", 5, by(2, 1_700_000_000)).expect("utimens");
    assert_eq!(db.getattr(Inode(1)).map(|a| a.mtime), Ok(Mtime(5)));
    assert_eq!(db.root_writer(), NodeId(2));
    assert_eq!(db.root_mtime(), Mtime(5), "the __version__ row's mtime");
    assert_eq!(db.getattr(Inode::ROOT).map(|a| a.mtime), Ok(Mtime(5)));
    assert_eq!(
        db.encode_index().mtime,
        Mtime(5),
        "the index header C nodes compare"
    );
}

// Regression (found by the reference model, fixed): C refuses to rename any directory strictly below `priv/lock/`
// (`path_is_lockdir`: prefix `priv/lock/` plus at least one character); memdb only refuses
// exactly `priv/lock/<name>`. Culprit: `apply.rs` `rename`: `from.is_lock_dir()`.
#[test]
fn regression_rename_of_dir_below_lock_is_refused() {
    let mut db = Memdb::new();
    for d in ["priv", "priv/lock", "priv/lock/l", "priv/lock/l/sub"] {
        mkdir(&mut db, d).expect("mkdir");
    }
    assert_eq!(
        rename(&mut db, "priv/lock/l/sub", "x").map(drop),
        Err(EACCES)
    );
    assert_eq!(db.version(), 4);
}

// Regression (found by the reference model, fixed): C's unlock request (`cfs_plug_memdb_utimens`, dcdb's UNLOCK_REQUEST) runs
// `memdb_lock_expired` for every directory with `path_is_lockdir`; memdb's `lock_expired`
// answers false for anything but exactly `priv/lock/<name>`, so such a directory never expires.
// Culprit: `apply.rs` `lock_expired`: `path.is_lock_dir()`.
#[test]
fn regression_unlock_request_below_lock_dir_expires() {
    let mut db = Memdb::new();
    for d in ["priv", "priv/lock", "priv/lock/l", "priv/lock/l/sub"] {
        mkdir(&mut db, d).expect("mkdir");
    }
    let sub = p("priv/lock/l/sub");
    assert!(
        !db.lock_expired(&sub, Mtime(10_000), LOCK_TIMEOUT),
        "first seen"
    );
    assert!(db.lock_expired(&sub, Mtime(10_001 + LOCK_TIMEOUT), LOCK_TIMEOUT));
}

// Regression (found by the reference model, fixed): a rename whose target lies below its source answers EINVAL; C (and POSIX) answer
// ENOTDIR when the source is a file (its "child" has a file as parent) and ENOENT when the
// target's parent does not exist. Only an empty directory moved directly into itself has no C
// answer (C uses the freed entry) and EINVAL fits there. Culprit: `apply.rs` `rename`:
// `if to.starts_with(from) { return Err(Error::Invalid) }`.
#[test]
fn regression_rename_below_itself_errno() {
    let mut db = Memdb::new();
    create(&mut db, "f").expect("create");
    mkdir(&mut db, "d").expect("mkdir");
    assert_eq!(rename(&mut db, "f", "f/x").map(drop), Err(ENOTDIR));
    assert_eq!(rename(&mut db, "f", "f/x/y").map(drop), Err(ENOENT));
    assert_eq!(rename(&mut db, "d", "d/x/y").map(drop), Err(ENOENT));
}

// Regression (found by the reference model, fixed): C stamps each guest in the list with `++vminfo_version_counter`, a counter of
// registrations only (`status.c` `vmlist_hash_insert_vm`), shown as the per-guest "version"
// of `.vmlist`; memdb uses the list version, which removals bump too. Culprit: `vmlist.rs`
// `VmList::register` (`let version = self.version;`) and `load.rs` `rebuild_vmlist`.
#[test]
fn regression_guest_version_counts_registrations() {
    let mut db = Memdb::new();
    for d in ["nodes", "nodes/n1", "nodes/n1/qemu-server"] {
        mkdir(&mut db, d).expect("mkdir");
    }
    create(&mut db, "nodes/n1/qemu-server/100.conf").expect("create");
    delete(&mut db, "nodes/n1/qemu-server/100.conf").expect("unlink");
    create(&mut db, "nodes/n1/qemu-server/101.conf").expect("create");
    assert_eq!(
        db.vmlist().version(),
        3,
        "the list version counts all three changes"
    );
    assert_eq!(
        db.vmlist().get(101).map(|v| v.version),
        Some(2),
        "second registration"
    );
}

mod c_model {
    use super::harness::{run, Step};
    use super::reference::{MOp, Quirks};
    use proptest::prelude::*;

    fn step() -> impl Strategy<Value = Step> {
        let path = prop::sample::select(vec![
            "a",
            "a/b",
            "a/b/c",
            "f",
            "priv",
            "priv/lock",
            "priv/lock/l",
            "priv/lock/l/s",
            "nodes",
            "nodes/n1",
            "nodes/n1/qemu-server",
            "nodes/n1/qemu-server/100.conf",
            "nodes/n1/qemu-server/101.conf",
        ])
        .prop_map(String::from);
        let op = prop_oneof![
            path.clone().prop_map(MOp::Mkdir),
            path.clone().prop_map(MOp::Create),
            path.clone().prop_map(MOp::Delete),
            (path.clone(), path.clone()).prop_map(|(f, t)| MOp::Rename(f, t)),
            (path.clone(), 0u32..3).prop_map(|(p, m)| MOp::Mtime(p, m)),
        ];
        prop_oneof![
            4 => (op, 0u32..2, 0u32..3).prop_map(|(op, writer, mtime)| Step::Op {
                op,
                writer,
                mtime,
                advance: 0
            }),
            1 => (path, prop::sample::select(vec![0u32, 121]))
                .prop_map(|(path, advance)| Step::LockExpired { path, advance }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// memdb against the model with every `Quirks` flag off, i.e. C semantics.
        #[test]
        fn memdb_matches_c_semantics(steps in prop::collection::vec(step(), 0..40)) {
            if let Err(e) = run(Quirks::C, &steps) {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}
