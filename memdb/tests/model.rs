//! memdb against a reference model: random operation sequences over a small set of names, so
//! that collisions, renames over existing entries, lock directories under `priv/lock/` and guest
//! configs `nodes/<n>/{qemu-server,lxc}/<id>.conf` come up often.
//!
//! After every step the harness compares the result or errno, the version (one bump per
//! success, none on failure), new inode numbers, the `Applied` changes, the whole tree (paths,
//! kinds, contents, mtimes, writers, versions), readdir, statfs, the guest list, and a
//! `records()` → `Memdb::load` round trip; at the end it replays the operations on a fresh tree.

#[path = "model/harness.rs"]
mod harness;
#[path = "model/reference.rs"]
mod reference;

use harness::{run, Step};
use proptest::prelude::*;
use reference::{MOp, Quirks, MAX_FILE_SIZE};

/// Paths the operations pick from: a handful of plain names, lock paths, guest configs (valid
/// and almost valid), and names C refuses.
const PATHS: &[&str] = &[
    "a",
    "b",
    "a/b",
    "a/c",
    "b/a",
    "a/b/c",
    "priv",
    "priv/lock",
    "priv/lock/x",
    "priv/lock/y",
    "priv/lock/x/z",
    "nodes",
    "nodes/n1",
    "nodes/n-2",
    "nodes/n1/qemu-server",
    "nodes/n1/lxc",
    "nodes/n-2/qemu-server",
    "nodes/n-2/lxc",
    "nodes/n1/qemu-server/100.conf",
    "nodes/n1/qemu-server/101.conf",
    "nodes/n1/lxc/100.conf",
    "nodes/n-2/qemu-server/100.conf",
    "nodes/n-2/lxc/101.conf",
    "nodes/n1/qemu-server/0100.conf",
    "nodes/n1/qemu-server/100.conf/x",
    "",
    ".",
    "a/..",
    "a/.",
];

/// Guest configs only, for renames between nodes and types.
const GUESTS: &[&str] = &[
    "nodes/n1/openvz/100.conf",
    "nodes/n1/qemu-server/100.conf",
    "nodes/n1/qemu-server/101.conf",
    "nodes/n1/lxc/100.conf",
    "nodes/n1/lxc/101.conf",
    "nodes/n-2/qemu-server/100.conf",
    "nodes/n-2/qemu-server/101.conf",
    "nodes/n-2/lxc/101.conf",
    "a",
];

/// Directories a run may start with, in creation order.
const SKELETON: &[&str] = &[
    "priv",
    "priv/lock",
    "nodes",
    "nodes/n1",
    "nodes/n1/qemu-server",
    "nodes/n1/lxc",
    "nodes/n-2",
    "nodes/n-2/qemu-server",
    "nodes/n-2/lxc",
    "nodes/n1/openvz",
    "a",
];

/// Names made inside existing directories.
const NAMES: &[&str] = &["a", "b", "x", "100.conf", "101.conf", "lock"];

/// An existing entry (`@<n>`), file (`@f<n>`) or directory (`@d<n>`); see `Step`.
fn existing(prefix: &'static str) -> impl Strategy<Value = String> {
    any::<u8>().prop_map(move |n| format!("@{prefix}{n}"))
}

/// A path from the list, an existing entry, or a name inside an existing directory.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(PATHS).prop_map(String::from),
        2 => existing(""),
        3 => (any::<u8>(), prop::sample::select(NAMES)).prop_map(|(n, name)| format!("@d{n}/{name}")),
    ]
}

fn guest() -> impl Strategy<Value = String> {
    prop::sample::select(GUESTS).prop_map(String::from)
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..12,
        1 => prop::sample::select(vec![
            MAX_FILE_SIZE - 3,
            MAX_FILE_SIZE - 1,
            MAX_FILE_SIZE,
            MAX_FILE_SIZE + 1,
            u64::MAX,
        ]),
    ]
}

fn op() -> impl Strategy<Value = MOp> {
    let write_path = prop_oneof![3 => existing("f"), 1 => path()];
    let write = (
        write_path,
        offset(),
        prop::collection::vec(any::<u8>(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(path, offset, data, truncate)| MOp::Write {
            path,
            offset,
            data,
            truncate,
        });
    let mtime = || prop::sample::select(vec![0u32, 1, 999, 1000, 1001, 2000, u32::MAX]);
    let lock = || prop::sample::select(vec!["priv/lock/x", "priv/lock/y"]).prop_map(String::from);
    let from = prop_oneof![existing(""), existing("f"), existing("d")];
    let guest_from = prop_oneof![existing("f"), guest()];
    prop_oneof![
        4 => path().prop_map(MOp::Mkdir),
        4 => path().prop_map(MOp::Create),
        4 => write,
        3 => path().prop_map(MOp::Delete),
        4 => (from, path()).prop_map(|(f, t)| MOp::Rename(f, t)),
        3 => (guest_from, guest()).prop_map(|(f, t)| MOp::Rename(f, t)),
        2 => (path(), mtime()).prop_map(|(p, m)| MOp::Mtime(p, m)),
        1 => lock().prop_map(MOp::Mkdir),
        1 => (lock(), mtime()).prop_map(|(p, m)| MOp::Mtime(p, m)),
        1 => lock().prop_map(MOp::Delete),
    ]
}

fn advance() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0u32, 0, 1, 60, 121])
}

fn step() -> impl Strategy<Value = Step> {
    let op_step = (
        op(),
        0u32..3,
        prop::sample::select(vec![0u32, 1, 1000, 2000, u32::MAX]),
        advance(),
    )
        .prop_map(|(op, writer, mtime, advance)| Step::Op {
            op,
            writer,
            mtime,
            advance,
        });
    let lock_path = prop_oneof![
        prop::sample::select(vec![
            "priv/lock/x",
            "priv/lock/y",
            "priv/lock/x/z",
            "priv/lock"
        ])
        .prop_map(String::from),
        existing("d"),
    ];
    let lock =
        (lock_path, advance()).prop_map(|(path, advance)| Step::LockExpired { path, advance });
    prop_oneof![
        14 => op_step,
        3 => lock,
        1 => advance().prop_map(|advance| Step::Reload { advance }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let skeleton = prop_oneof![
        Just(SKELETON.to_vec()),
        prop::sample::subsequence(SKELETON, 0..=SKELETON.len()),
    ];
    let skeleton = skeleton.prop_map(|dirs| {
        dirs.into_iter()
            .map(|d| Step::Op {
                op: MOp::Mkdir(d.to_owned()),
                writer: 0,
                mtime: 1000,
                advance: 0,
            })
            .collect::<Vec<_>>()
    });
    (skeleton, prop::collection::vec(step(), 0..64)).prop_map(|(mut s, rest)| {
        s.extend(rest);
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// memdb as it is today: the model reproduces the known divergences listed in
    /// `Quirks::MEMDB_TODAY` (all fixed now; the flags stay to show each bug when set) and checks everything else.
    #[test]
    fn memdb_matches_reference_model(steps in steps()) {
        if let Err(e) = run(Quirks::MEMDB_TODAY, &steps) {
            return Err(TestCaseError::fail(e));
        }
    }
}
