//! The mount as unprivileged users see it (`local.md` §5): `nobody` and a member of
//! `www-data`, each running `lwcfs-probe` inside the daemon's namespaces. Needs root and
//! /dev/fuse: feature `fuse`.
#![cfg(feature = "fuse")]

use std::fs;

use libc::{EACCES, ENOENT, EPERM};
use lwcfs_compat_tests::probe::Outcome;
use lwcfs_compat_tests::sandbox::{Daemon, Opts, Sandbox, Who, HOSTNAME};

const PROBE: &str = env!("CARGO_BIN_EXE_lwcfs-probe");

/// A small Proxmox-like tree, written as root.
fn populate(d: &Daemon) {
    for dir in [
        "priv",
        "priv/lock",
        "nodes",
        "nodes/node1",
        "nodes/node1/priv",
        "nodes/node1/qemu-server",
        "ha",
    ] {
        fs::create_dir(d.p(dir)).unwrap();
    }
    for (f, data) in [
        ("storage.cfg", &b"dir: local\n\tpath /var/lib/vz\n"[..]),
        ("priv/authkey.key", b"-----BEGIN PRIVATE KEY-----\n"),
        ("nodes/node1/priv/x.key", b"node secret\n"),
        ("nodes/node1/qemu-server/100.conf", b"memory: 512\n"),
        ("ha/resources.cfg", b"vm: 100\n"),
    ] {
        fs::write(d.p(f), data).unwrap();
    }
}

#[track_caller]
fn ok(o: Outcome) -> Vec<u8> {
    match o {
        Outcome::Ok(v) => v,
        Outcome::Err(e) => panic!("expected success, got errno {e}"),
    }
}

#[track_caller]
fn denied(o: Outcome, what: &str) {
    assert_eq!(o, Outcome::Err(EACCES), "{what}");
}

/// §5: others can traverse and list non-private directories (0755) but read no file (0640),
/// no virtual file (0440), nothing under `priv/`, and write nothing.
#[test]
fn nobody_lists_but_reads_nothing() {
    let sb = Sandbox::with_probe(PROBE);
    let d = sb.start(&Opts::default());
    populate(&d);
    let who = Who::Nobody;
    let root = String::from_utf8(ok(d.probe(who, "readdir", "", None))).unwrap();
    assert!(root.lines().any(|l| l == "storage.cfg"), "{root}");
    assert!(root.lines().any(|l| l == "priv"), "{root}");
    ok(d.probe(who, "stat", "storage.cfg", None));
    assert_eq!(
        String::from_utf8(ok(d.probe(who, "readlink", "local", None))).unwrap(),
        format!("nodes/{HOSTNAME}")
    );
    ok(d.probe(who, "readdir", "nodes/node1/qemu-server", None));
    denied(
        d.probe(who, "read", "storage.cfg", None),
        "read a 0640 file",
    );
    denied(
        d.probe(who, "read", "local/qemu-server/100.conf", None),
        "read through a symlink",
    );
    denied(d.probe(who, "read", ".version", None), "read .version");
    denied(d.probe(who, "read", ".members", None), "read .members");
    denied(d.probe(who, "readdir", "priv", None), "list priv");
    denied(
        d.probe(who, "stat", "priv/authkey.key", None),
        "stat below priv",
    );
    denied(
        d.probe(who, "read", "priv/authkey.key", None),
        "read below priv",
    );
    denied(
        d.probe(who, "readdir", "nodes/node1/priv", None),
        "list nodes/*/priv",
    );
    denied(d.probe(who, "write", "storage.cfg", Some("x")), "write");
    denied(d.probe(who, "create", "new.cfg", None), "create");
    denied(d.probe(who, "mkdir", "newdir", None), "mkdir");
    denied(d.probe(who, "unlink", "storage.cfg", None), "unlink");
    denied(d.probe(who, "mkdir", "priv/lock/x", None), "take a lock");
    assert_eq!(d.probe(who, "stat", "missing", None), Outcome::Err(ENOENT));
    assert_eq!(
        fs::read(d.p("storage.cfg")).unwrap(),
        b"dir: local\n\tpath /var/lib/vz\n"
    );
}

/// §5: members of www-data read every non-private file and the virtual files, and nothing
/// under `priv/` or `nodes/*/priv/`; they cannot write (group bits are read-only).
#[test]
fn www_data_member_reads_public_files_only() {
    let sb = Sandbox::with_probe(PROBE);
    let d = sb.start(&Opts::default());
    populate(&d);
    let who = Who::WwwDataMember;
    assert_eq!(
        ok(d.probe(who, "read", "storage.cfg", None)),
        b"dir: local\n\tpath /var/lib/vz\n"
    );
    assert_eq!(
        ok(d.probe(who, "read", "ha/resources.cfg", None)),
        b"vm: 100\n"
    );
    assert_eq!(
        ok(d.probe(who, "read", "qemu-server/100.conf", None)),
        b"memory: 512\n"
    );
    assert_eq!(
        ok(d.probe(who, "read", "local/qemu-server/100.conf", None)),
        b"memory: 512\n"
    );
    let members = ok(d.probe(who, "read", ".members", None));
    assert!(String::from_utf8(members).unwrap().contains(HOSTNAME));
    ok(d.probe(who, "read", ".version", None));
    ok(d.probe(who, "read", ".vmlist", None));
    ok(d.probe(who, "read", ".clusterlog", None));
    assert_eq!(ok(d.probe(who, "read", ".debug", None)), b"0\n");
    denied(d.probe(who, "readdir", "priv", None), "list priv");
    denied(
        d.probe(who, "read", "priv/authkey.key", None),
        "read below priv",
    );
    denied(d.probe(who, "stat", "priv/lock", None), "stat below priv");
    denied(
        d.probe(who, "readdir", "nodes/node1/priv", None),
        "list nodes/*/priv",
    );
    denied(
        d.probe(who, "read", "nodes/node1/priv/x.key", None),
        "read nodes/*/priv",
    );
    denied(
        d.probe(who, "read", "local/priv/x.key", None),
        "read local/priv",
    );
    denied(d.probe(who, "write", "storage.cfg", Some("x")), "write");
    denied(
        d.probe(who, "open-write", "storage.cfg", None),
        "open for writing",
    );
    denied(d.probe(who, "write", ".debug", Some("1\n")), "write .debug");
    denied(d.probe(who, "create", "new.cfg", None), "create");
    denied(d.probe(who, "mkdir", "priv/lock/x", None), "take a lock");
    assert_eq!(
        d.probe(who, "utime", "storage.cfg", Some("5")),
        Outcome::Err(EPERM),
        "utime"
    );
    assert_eq!(fs::read(d.p(".debug")).unwrap(), b"0\n");
    assert!(d.p("priv/lock").is_dir());
    assert_eq!(fs::read_dir(d.p("priv/lock")).unwrap().count(), 0);
}
