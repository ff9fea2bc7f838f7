//! Every FUSE operation through a real mount of the real daemon, as root, against C pmxcfs's
//! behaviour (`local.md` §3, §5, §6, §8 and Appendix B). Needs root and /dev/fuse: feature
//! `fuse`, run by `compat-tests/run-all.sh`.
#![cfg(feature = "fuse")]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libc::{
    EACCES, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ENOENT, ENOSYS, ENOTDIR, ENOTEMPTY, EOPNOTSUPP,
    EPERM,
};
use lwcfs_compat_tests::ops::{self, errno};
use lwcfs_compat_tests::sandbox::{
    wait_until, www_data_gid, Daemon, Opts, Sandbox, HOSTNAME, VIRTUAL_NAMES,
};

const MIB: usize = 1 << 20;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[track_caller]
fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

#[track_caller]
fn assert_recent(t: i64, what: &str) {
    let n = now();
    assert!(
        (n - 5..=n + 1).contains(&t),
        "{what}: time {t} is not now ({n})"
    );
}

#[track_caller]
fn write(d: &Daemon, rel: &str, data: &[u8]) {
    fs::write(d.p(rel), data).unwrap_or_else(|e| panic!("write {rel}: {e}"));
}

#[track_caller]
fn read(d: &Daemon, rel: &str) -> Vec<u8> {
    fs::read(d.p(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

#[track_caller]
fn mkdirs(d: &Daemon, rels: &[&str]) {
    for r in rels {
        fs::create_dir(d.p(r)).unwrap_or_else(|e| panic!("mkdir {r}: {e}"));
    }
}

fn names(d: &Daemon, rel: &str) -> BTreeSet<String> {
    ops::readdir_raw(&d.p(rel))
        .unwrap_or_else(|e| panic!("readdir {rel}: {e}"))
        .into_iter()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn start(sb: &Sandbox) -> Daemon<'_> {
    sb.start(&Opts::default())
}

/// §3.3/§3.4: a fresh database shows only `.`, `..` and the virtual entries; the root is a
/// 0755 directory of root:www-data with nlink 2 and time 0.
#[test]
fn fresh_mount_root_lists_exactly_the_virtual_entries() {
    let sb = Sandbox::new();
    let d = start(&sb);
    let mut want = set(&[".", ".."]);
    want.extend(VIRTUAL_NAMES.iter().map(|s| s.to_string()));
    assert_eq!(names(&d, ""), want);
    let raw = ops::readdir_raw(&d.mnt()).unwrap();
    assert_eq!(raw.len(), want.len(), "no name twice: {raw:?}");
    assert_eq!(&raw[..2], [".", ".."], "C lists . and .. first");
    let m = meta(&d.mnt());
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert_eq!(
        (m.uid(), m.gid(), m.nlink(), m.mtime()),
        (0, www_data_gid(), 2, 0)
    );
}

/// §3.3 and §5: modes by kind and privacy (0755/0640/0700/0600, OpenVZ scripts 0740), owner
/// root, group www-data, nlink, st_blocks in 4 KiB units, atime = mtime = ctime.
#[test]
fn getattr_reports_c_modes_owner_sizes_and_times() {
    let sb = Sandbox::new();
    let d = start(&sb);
    mkdirs(
        &d,
        &[
            "ha",
            "priv",
            "priv/lock",
            "privx",
            "nodes",
            "nodes/node1",
            "nodes/node1/priv",
            "nodes/node1/qemu-server",
            "nodes/node1/openvz",
        ],
    );
    write(&d, "storage.cfg", b"dir: local\n\n");
    write(&d, "big.cfg", &[b'x'; 5000]);
    write(&d, "empty.cfg", b"");
    for f in [
        "priv/authkey.key",
        "nodes/node1/priv/x",
        "privx/f",
        "vps.mount",
        "101.start",
        "x.mount",
        "priv/vps.mount",
        "nodes/node1/openvz/102.premount",
        "nodes/node1/qemu-server/100.conf",
    ] {
        write(&d, f, b"data\n");
    }
    let gid = www_data_gid();
    let expect: [(&str, bool, u32); 19] = [
        ("ha", true, 0o755),
        ("priv", true, 0o700),
        ("priv/lock", true, 0o700),
        ("privx", true, 0o755),
        ("nodes", true, 0o755),
        ("nodes/node1", true, 0o755),
        ("nodes/node1/priv", true, 0o700),
        ("nodes/node1/qemu-server", true, 0o755),
        ("storage.cfg", false, 0o640),
        ("big.cfg", false, 0o640),
        ("empty.cfg", false, 0o640),
        ("priv/authkey.key", false, 0o600),
        ("nodes/node1/priv/x", false, 0o600),
        ("privx/f", false, 0o640),
        ("vps.mount", false, 0o740),
        ("101.start", false, 0o740),
        ("x.mount", false, 0o640),
        ("priv/vps.mount", false, 0o700),
        ("nodes/node1/openvz/102.premount", false, 0o740),
    ];
    for (rel, dir, perm) in expect {
        let m = meta(&d.p(rel));
        assert_eq!(m.is_dir(), dir, "{rel}: kind");
        assert_eq!(m.is_file(), !dir, "{rel}: kind");
        assert_eq!(m.mode() & 0o7777, perm, "{rel}: mode {:o}", m.mode());
        assert_eq!((m.uid(), m.gid()), (0, gid), "{rel}: owner");
        assert_eq!(m.nlink(), if dir { 2 } else { 1 }, "{rel}: nlink");
        assert_eq!(
            (m.atime(), m.ctime()),
            (m.mtime(), m.mtime()),
            "{rel}: times"
        );
        assert_recent(m.mtime(), rel);
        if dir {
            assert_eq!(m.size(), 0, "{rel}: directory size");
        }
    }
    for (rel, size, blocks) in [
        ("storage.cfg", 12, 1),
        ("big.cfg", 5000, 2),
        ("empty.cfg", 0, 0),
    ] {
        let m = meta(&d.p(rel));
        assert_eq!(
            (m.size(), m.blocks()),
            (size, blocks),
            "{rel}: size and 4 KiB blocks"
        );
    }
}

/// Missing names: ENOENT for stat, open and below a missing directory; ENOTDIR below a file.
#[test]
fn lookup_of_missing_names_is_enoent() {
    let sb = Sandbox::new();
    let d = start(&sb);
    write(&d, "file.cfg", b"x");
    assert_eq!(errno(fs::symlink_metadata(d.p("nope"))), ENOENT);
    assert_eq!(errno(fs::symlink_metadata(d.p("nodir/x"))), ENOENT);
    assert_eq!(errno(File::open(d.p("nope"))), ENOENT);
    assert_eq!(errno(fs::read_dir(d.p("nodir"))), ENOENT);
    assert_eq!(errno(fs::symlink_metadata(d.p("file.cfg/x"))), ENOTDIR);
    assert_eq!(errno(fs::symlink_metadata(d.p(".version/x"))), ENOTDIR);
}

/// §3.4: every child exactly once (a directory larger than one readdir buffer), `.` and `..`
/// included, and `..` leads to the parent.
#[test]
fn readdir_lists_every_child_once() {
    let sb = Sandbox::new();
    let d = start(&sb);
    mkdirs(&d, &["many", "many/sub"]);
    let mut want = set(&[".", "..", "sub"]);
    for i in 0..300 {
        let n = format!("file-with-a-longish-name-{i:03}.cfg");
        write(&d, &format!("many/{n}"), n.as_bytes());
        want.insert(n);
    }
    let raw = ops::readdir_raw(&d.p("many")).unwrap();
    assert_eq!(raw.len(), want.len(), "no duplicates, nothing missing");
    assert_eq!(raw.into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(names(&d, "many/sub"), set(&[".", ".."]));
    assert_eq!(meta(&d.p("many/sub/..")).ino(), meta(&d.p("many")).ino());
    assert_eq!(meta(&d.p("many/..")).ino(), meta(&d.mnt()).ino());
    let mut root = set(&[".", "..", "many"]);
    root.extend(VIRTUAL_NAMES.iter().map(|s| s.to_string()));
    assert_eq!(names(&d, ""), root);
}

/// §3.5–§3.7 and check_memdb's filetest1: create, write, read back, writes at offsets, gaps
/// zero-filled, reads past the end, O_APPEND, O_EXCL, create errors.
#[test]
fn create_write_read_and_offsets() {
    let sb = Sandbox::new();
    let d = start(&sb);
    let f = d.p("test.cfg");
    let mut h = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&f)
        .unwrap();
    let m = meta(&f);
    assert!(m.is_file());
    assert_eq!(
        (m.size(), m.mode() & 0o7777),
        (0, 0o640),
        "create ignores the mode, as C"
    );
    let kib: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    h.write_all(&kib).unwrap();
    drop(h);
    assert_eq!(read(&d, "test.cfg"), kib);

    write(&d, "test.cfg", b"0123456789");
    assert_eq!(ops::pwrite(&f, b"X", 3).unwrap(), 1);
    assert_eq!(ops::pwrite(&f, b"X", 6).unwrap(), 1);
    assert_eq!(read(&d, "test.cfg"), b"012X45X789");
    assert_eq!(meta(&f).size(), 10);

    assert_eq!(ops::pwrite(&f, b"end", 20).unwrap(), 3);
    assert_eq!(read(&d, "test.cfg"), b"012X45X789\0\0\0\0\0\0\0\0\0\0end");
    assert_eq!(ops::pread(&f, 23, 10).unwrap(), b"", "read at the end");
    assert_eq!(ops::pread(&f, 1000, 10).unwrap(), b"", "read past the end");
    assert_eq!(ops::pread(&f, 2, 3).unwrap(), b"2X4");
    assert_eq!(ops::read_from(&f, 20).unwrap(), b"end");

    assert_eq!(ops::append(&f, b"+app").unwrap(), 4);
    assert!(read(&d, "test.cfg").ends_with(b"end+app"));

    assert_eq!(
        errno(OpenOptions::new().write(true).create_new(true).open(&f)),
        EEXIST
    );
    mkdirs(&d, &["dir"]);
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(d.p("dir"))
        ),
        EEXIST
    );
    assert_eq!(errno(fs::write(d.p("nodir/x"), b"x")), ENOENT);
    assert_eq!(errno(fs::write(d.p("test.cfg/x"), b"x")), ENOTDIR);
    assert_eq!(errno(fs::read(d.p("dir"))), EISDIR);

    // An existing file opened without O_CREAT keeps its bytes until written.
    let mut h = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    let mut s = String::new();
    h.read_to_string(&mut s).unwrap();
    assert!(s.starts_with("012X45X789"));
}

/// §3.7, §4 and Appendix B: 1 MiB is the limit (EFBIG past it, checked before writing, old
/// content kept); exactly 1 MiB is allowed. SEMANTICS.md §2: the kernel's page cache splits a
/// write(2) that starts inside a page it has not cached at that page's end, so a write crossing
/// the limit from such a page writes the part below the limit and returns that count (a short
/// write, as POSIX specifies for a file size limit); nothing is ever stored past 1 MiB.
#[test]
fn efbig_past_one_mib_keeps_old_content() {
    let sb = Sandbox::new();
    let d = start(&sb);
    let f = d.p("f.cfg");
    write(&d, "f.cfg", b"old content\n");
    assert_eq!(errno(ops::pwrite(&f, b"x", MIB as u64)), EFBIG);
    assert_eq!(errno(ops::truncate(&f, MIB as u64 + 1)), EFBIG);
    assert_eq!(
        read(&d, "f.cfg"),
        b"old content\n",
        "a refused write changes nothing"
    );
    assert_eq!(meta(&f).size(), 12);
    let edge = d.p("edge.cfg");
    write(&d, "edge.cfg", b"");
    match ops::pwrite(&edge, b"xy", MIB as u64 - 1) {
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(EFBIG));
            assert_eq!(meta(&edge).size(), 0, "refused: nothing written");
        }
        Ok(n) => {
            assert_eq!(n, 1, "only the byte below the limit");
            let got = read(&d, "edge.cfg");
            assert_eq!(got.len(), MIB);
            assert_eq!(got[MIB - 1], b'x');
        }
    }

    let full: Vec<u8> = (0..MIB).map(|i| (i * 7 % 256) as u8).collect();
    write(&d, "full.cfg", &full);
    assert_eq!(read(&d, "full.cfg"), full, "exactly 1 MiB is allowed");
    assert_eq!(errno(ops::append(&d.p("full.cfg"), b"!")), EFBIG);

    write(&d, "near.cfg", &full[..MIB - 10]);
    match ops::append(&d.p("near.cfg"), &[b'a'; 20]) {
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(EFBIG));
            assert_eq!(
                read(&d, "near.cfg"),
                &full[..MIB - 10],
                "nothing of the 20 bytes written"
            );
        }
        Ok(n) => {
            assert_eq!(n, 10, "the 10 bytes below the limit");
            let got = read(&d, "near.cfg");
            assert_eq!(&got[..MIB - 10], &full[..MIB - 10]);
            assert_eq!(&got[MIB - 10..], &[b'a'; 10]);
        }
    }

    ops::truncate(&d.p("near.cfg"), MIB as u64).unwrap();
    assert_eq!(
        meta(&d.p("near.cfg")).size(),
        MIB as u64,
        "truncate to exactly 1 MiB"
    );

    // One write(2) of 1 MiB + 1: the kernel may split it; whatever was accepted is a prefix,
    // and the file never exceeds the limit.
    let over = vec![b'z'; MIB + 1];
    let mut h = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(d.p("over.cfg"))
        .unwrap();
    match h.write(&over) {
        Ok(n) => {
            assert!(n <= MIB, "accepted {n} bytes past the limit");
            assert_eq!(read(&d, "over.cfg"), &over[..n]);
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(EFBIG)),
    }
    drop(h);
    assert!(meta(&d.p("over.cfg")).size() <= MIB as u64);
}

/// §3.8 and Appendix A #1/B: truncate cuts and zero-fills (also an empty file, which crashes
/// C), O_TRUNC truncates (also with O_RDONLY) and stamps the mtime even on an empty file.
#[test]
fn truncate_cuts_zero_fills_and_stamps() {
    let sb = Sandbox::new();
    let d = start(&sb);
    let f = d.p("t.cfg");
    write(&d, "t.cfg", b"0123456789");
    ops::truncate(&f, 4).unwrap();
    assert_eq!(read(&d, "t.cfg"), b"0123");
    ops::truncate(&f, 8).unwrap();
    assert_eq!(read(&d, "t.cfg"), b"0123\0\0\0\0");

    write(&d, "empty.cfg", b"");
    ops::truncate(&d.p("empty.cfg"), 100).unwrap();
    assert_eq!(
        read(&d, "empty.cfg"),
        vec![0u8; 100],
        "regression: C crashes here"
    );

    let h = OpenOptions::new().write(true).open(&f).unwrap();
    h.set_len(2).unwrap();
    drop(h);
    assert_eq!(read(&d, "t.cfg"), b"01", "ftruncate");

    write(&d, "t.cfg", b"0123456789");
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f)
            .unwrap(),
    );
    assert_eq!(read(&d, "t.cfg"), b"");
    write(&d, "t.cfg", b"0123456789");
    drop(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_TRUNC)
            .open(&f)
            .unwrap(),
    );
    assert_eq!(read(&d, "t.cfg"), b"", "O_RDONLY|O_TRUNC truncates");

    write(&d, "empty2.cfg", b"");
    ops::utime(&d.p("empty2.cfg"), 1000, 1000).unwrap();
    assert_eq!(meta(&d.p("empty2.cfg")).mtime(), 1000);
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(d.p("empty2.cfg"))
            .unwrap(),
    );
    assert_recent(meta(&d.p("empty2.cfg")).mtime(), "O_TRUNC on an empty file");
    assert!(fs::metadata(d.mnt()).is_ok(), "the daemon is alive");
}

/// §3.9: unlink and rmdir, with the kernel's and C's errno.
#[test]
fn unlink_and_rmdir() {
    let sb = Sandbox::new();
    let d = start(&sb);
    mkdirs(&d, &["dir", "full", "empty"]);
    write(&d, "full/f", b"x");
    write(&d, "f.cfg", b"x");
    fs::remove_file(d.p("f.cfg")).unwrap();
    assert_eq!(errno(fs::symlink_metadata(d.p("f.cfg"))), ENOENT);
    assert_eq!(errno(fs::remove_file(d.p("f.cfg"))), ENOENT);
    assert_eq!(errno(fs::remove_file(d.p("dir"))), EISDIR);
    assert_eq!(errno(fs::remove_dir(d.p("full/f"))), ENOTDIR);
    assert_eq!(errno(fs::remove_dir(d.p("full"))), ENOTEMPTY);
    assert_eq!(errno(fs::remove_dir(d.p("missing"))), ENOENT);
    fs::remove_dir(d.p("empty")).unwrap();
    assert_eq!(errno(fs::symlink_metadata(d.p("empty"))), ENOENT);
    fs::remove_file(d.p("full/f")).unwrap();
    fs::remove_dir(d.p("full")).unwrap();
    assert_eq!(names(&d, "dir"), set(&[".", ".."]));
    // The virtual entries cannot be removed (C: EACCES for plugin names).
    assert_eq!(errno(fs::remove_file(d.p(".version"))), EACCES);
    assert_eq!(errno(fs::remove_file(d.p("local"))), EACCES);
    assert_eq!(errno(fs::remove_dir(d.p("local"))), ENOTDIR);
    assert!(meta(&d.p(".version")).is_file());
}

/// §3.10 and Appendix B: mkdir errno; a directory's mtime does not move with its children.
#[test]
fn mkdir_errors_and_directory_mtime() {
    let sb = Sandbox::new();
    let d = start(&sb);
    mkdirs(&d, &["a"]);
    let m = meta(&d.p("a"));
    assert_eq!((m.mode() & 0o7777, m.nlink()), (0o755, 2));
    assert_eq!(errno(fs::create_dir(d.p("a"))), EEXIST);
    assert_eq!(errno(fs::create_dir(d.p("x/y"))), ENOENT);
    write(&d, "file", b"x");
    assert_eq!(errno(fs::create_dir(d.p("file"))), EEXIST);
    assert_eq!(errno(fs::create_dir(d.p("file/sub"))), ENOTDIR);
    assert_eq!(errno(fs::create_dir(d.p("local"))), EEXIST);
    assert_eq!(errno(fs::create_dir(d.p(".version"))), EEXIST);
    assert_eq!(errno(fs::create_dir(d.p("a/."))), EEXIST);
    assert_eq!(errno(fs::create_dir(d.p("a/.."))), EEXIST);

    ops::utime(&d.p("a"), 1000, 1000).unwrap();
    mkdirs(&d, &["a/sub"]);
    write(&d, "a/f", b"x");
    fs::remove_file(d.p("a/f")).unwrap();
    let m = meta(&d.p("a"));
    assert_eq!(
        m.mtime(),
        1000,
        "children do not touch the directory's mtime"
    );
    assert_eq!(m.nlink(), 2, "nlink is always 2");
}

/// §3.11, Appendix A #2 and B: rename keeps the inode and stamps the time, replaces an existing
/// file, refuses non-empty directories, locks and virtual names; renameat2 flags.
#[test]
fn rename_semantics() {
    let sb = Sandbox::new();
    let d = start(&sb);
    write(&d, "a.cfg", b"aaa");
    ops::utime(&d.p("a.cfg"), 1000, 1000).unwrap();
    let ino = meta(&d.p("a.cfg")).ino();
    fs::rename(d.p("a.cfg"), d.p("b.cfg")).unwrap();
    assert_eq!(errno(fs::symlink_metadata(d.p("a.cfg"))), ENOENT);
    let m = meta(&d.p("b.cfg"));
    assert_eq!(m.ino(), ino, "rename keeps the inode");
    assert_recent(m.mtime(), "rename stamps the moved entry");
    assert_eq!(read(&d, "b.cfg"), b"aaa");

    write(&d, "c.cfg", b"new content");
    let ino = meta(&d.p("c.cfg")).ino();
    fs::rename(d.p("c.cfg"), d.p("b.cfg")).unwrap();
    assert_eq!(read(&d, "b.cfg"), b"new content");
    assert_eq!(meta(&d.p("b.cfg")).ino(), ino);
    assert_eq!(names(&d, ""), {
        let mut s = set(&[".", "..", "b.cfg"]);
        s.extend(VIRTUAL_NAMES.iter().map(|s| s.to_string()));
        s
    });

    mkdirs(&d, &["e1", "e2", "full", "full/sub", "dst"]);
    fs::rename(d.p("e1"), d.p("dst/e1")).unwrap();
    assert!(meta(&d.p("dst/e1")).is_dir());
    assert_eq!(
        errno(fs::rename(d.p("full"), d.p("moved"))),
        ENOTEMPTY,
        "C quirk"
    );
    assert_eq!(errno(fs::rename(d.p("full"), d.p("e2"))), ENOTEMPTY);
    assert!(
        meta(&d.p("e2")).is_dir(),
        "regression: the target must not vanish"
    );
    assert!(meta(&d.p("full/sub")).is_dir());
    assert_eq!(errno(fs::rename(d.p("e2"), d.p("full"))), ENOTEMPTY);
    assert_eq!(errno(fs::rename(d.p("b.cfg"), d.p("e2"))), EISDIR);
    assert_eq!(errno(fs::rename(d.p("e2"), d.p("b.cfg"))), ENOTDIR);
    assert_eq!(errno(fs::rename(d.p("missing"), d.p("x"))), ENOENT);
    assert_eq!(errno(fs::rename(d.p("b.cfg"), d.p("nodir/x"))), ENOENT);

    write(&d, "n1", b"1");
    write(&d, "n2", b"2");
    assert_eq!(errno(ops::rename_noreplace(&d.p("n1"), &d.p("n2"))), EEXIST);
    assert_eq!(
        (read(&d, "n1"), read(&d, "n2")),
        (b"1".to_vec(), b"2".to_vec())
    );
    ops::rename_noreplace(&d.p("n1"), &d.p("n3")).unwrap();
    assert_eq!(read(&d, "n3"), b"1");
    assert_eq!(errno(ops::rename_exchange(&d.p("n2"), &d.p("n3"))), EINVAL);

    mkdirs(&d, &["priv", "priv/lock", "priv/lock/l"]);
    assert_eq!(
        errno(fs::rename(d.p("priv/lock/l"), d.p("priv/lock/m"))),
        EACCES
    );
    assert!(meta(&d.p("priv/lock/l")).is_dir());
    assert_eq!(errno(fs::rename(d.p("n2"), d.p(".version"))), EACCES);
    assert_eq!(errno(fs::rename(d.p("local"), d.p("x"))), EACCES);
    assert_eq!(read(&d, "n2"), b"2");
}

/// §3.12 and Appendix B: utime stores the mtime (atime reads back as it); the root, function
/// files and symlinks refuse with EACCES.
#[test]
fn utimens_sets_mtime_and_refuses_virtual_entries() {
    let sb = Sandbox::new();
    let d = start(&sb);
    write(&d, "f", b"x");
    mkdirs(&d, &["dir"]);
    ops::utime(&d.p("f"), 1000, 2000).unwrap();
    let m = meta(&d.p("f"));
    assert_eq!((m.mtime(), m.atime()), (2000, 2000));
    assert_eq!(read(&d, "f"), b"x", "utime keeps the data");
    ops::utime(&d.p("dir"), 3000, 3000).unwrap();
    assert_eq!(meta(&d.p("dir")).mtime(), 3000);
    ops::utime_now(&d.p("f")).unwrap();
    assert_recent(meta(&d.p("f")).mtime(), "touch");
    assert_eq!(errno(ops::utime(&d.mnt(), 5, 5)), EACCES);
    assert_eq!(errno(ops::utime(&d.p(".members"), 5, 5)), EACCES);
    assert_eq!(errno(ops::utime(&d.p(".debug"), 5, 5)), EACCES);
    assert_eq!(errno(ops::utime_now(&d.p(".members"))), EACCES);
    assert_eq!(errno(ops::lutime(&d.p("local"), 5)), EACCES);
    assert_eq!(errno(ops::utime(&d.p("missing"), 5, 5)), ENOENT);
}

/// §3.14: statfs reports C's numbers: 4096-byte blocks, 128 MiB, 256 Ki inodes, the sum of
/// sizes rounded once, one inode per entry plus the root, names up to 256.
#[test]
fn statfs_reports_c_numbers() {
    let sb = Sandbox::new();
    let d = start(&sb);
    let [bsize, frsize, blocks, bfree, bavail, files, ffree, namemax] =
        ops::statvfs(&d.mnt()).unwrap();
    assert_eq!(
        (bsize, frsize, blocks, files, namemax),
        (4096, 4096, 32768, 262144, 256)
    );
    assert_eq!(
        (bfree, bavail, ffree),
        (32768, 32768, 262143),
        "empty tree: only the root"
    );
    mkdirs(&d, &["d"]);
    write(&d, "d/a", b"1");
    write(&d, "d/b", b"2");
    write(&d, "c", b"3");
    write(&d, "big", &[0u8; 5000]);
    let s = ops::statvfs(&d.p("d")).unwrap();
    assert_eq!(
        (s[3], s[4]),
        (32766, 32766),
        "5003 bytes = 2 blocks, rounded once"
    );
    assert_eq!(s[6], 262144 - 6, "root + 1 directory + 4 files");
}

/// §8: `local`, `qemu-server`, `openvz` and `lxc` are symlinks into `nodes/<this node>`
/// (mode 0755, size = target length, time 0), followed by the kernel.
#[test]
fn symlinks_point_into_this_node() {
    let sb = Sandbox::new();
    let d = start(&sb);
    for (name, suffix) in [
        ("local", ""),
        ("qemu-server", "/qemu-server"),
        ("openvz", "/openvz"),
        ("lxc", "/lxc"),
    ] {
        let target = format!("nodes/{HOSTNAME}{suffix}");
        assert_eq!(
            fs::read_link(d.p(name)).unwrap(),
            Path::new(&target),
            "{name}"
        );
        let m = meta(&d.p(name));
        assert!(m.file_type().is_symlink(), "{name}");
        assert_eq!(m.mode() & 0o7777, 0o755, "{name}");
        assert_eq!(
            (m.size(), m.mtime(), m.uid(), m.gid()),
            (target.len() as u64, 0, 0, www_data_gid())
        );
    }
    assert_eq!(
        errno(fs::symlink_metadata(d.p("local/x"))),
        ENOENT,
        "dangling until created"
    );
    mkdirs(
        &d,
        &[
            "nodes",
            "nodes/node1",
            "nodes/node1/qemu-server",
            "nodes/node1/lxc",
        ],
    );
    write(&d, "qemu-server/100.conf", b"memory: 512\n");
    assert_eq!(
        read(&d, "nodes/node1/qemu-server/100.conf"),
        b"memory: 512\n"
    );
    assert_eq!(read(&d, "local/qemu-server/100.conf"), b"memory: 512\n");
    assert_eq!(names(&d, "local"), set(&[".", "..", "qemu-server", "lxc"]));
    write(&d, "plain", b"x");
    assert_eq!(errno(fs::read_link(d.p("plain"))), EINVAL);
    assert_eq!(errno(fs::read_link(d.p(".version"))), EINVAL);
}

/// §3.13 and Appendix A #17: chmod succeeds only with 0640 (0600 on private paths), for
/// directories too; chown only to root/www-data or "unchanged"; nothing changes.
#[test]
fn chmod_and_chown_matrix() {
    let sb = Sandbox::new();
    let d = start(&sb);
    mkdirs(&d, &["dir", "priv", "priv/pdir"]);
    write(&d, "f", b"x");
    write(&d, "priv/pf", b"x");
    let chmod =
        |rel: &str, mode: u32| fs::set_permissions(d.p(rel), fs::Permissions::from_mode(mode));
    for (rel, mode, ok) in [
        ("f", 0o640, true),
        ("f", 0o600, false),
        ("f", 0o644, false),
        ("f", 0o755, false),
        ("f", 0o000, false),
        ("dir", 0o640, true),
        ("dir", 0o755, false),
        ("dir", 0o700, false),
        ("priv/pf", 0o600, true),
        ("priv/pf", 0o640, false),
        ("priv/pdir", 0o600, true),
        ("priv/pdir", 0o700, false),
        ("priv", 0o600, true),
    ] {
        let r = chmod(rel, mode);
        if ok {
            r.unwrap_or_else(|e| panic!("chmod {mode:o} {rel}: {e}"));
        } else {
            assert_eq!(errno(r), EPERM, "chmod {mode:o} {rel}");
        }
    }
    let perm = |rel: &str| meta(&d.p(rel)).mode() & 0o7777;
    assert_eq!(
        (perm("f"), perm("dir"), perm("priv/pf"), perm("priv/pdir")),
        (0o640, 0o755, 0o600, 0o700)
    );

    let www = www_data_gid();
    for (uid, gid, ok) in [
        (Some(0), Some(www), true),
        (None, None, true),
        (Some(0), None, true),
        (None, Some(www), true),
        (Some(1), None, false),
        (None, Some(0), false),
        (Some(65534), Some(www), false),
    ] {
        let r = std::os::unix::fs::chown(d.p("f"), uid, gid);
        if ok {
            r.unwrap_or_else(|e| panic!("chown {uid:?}:{gid:?}: {e}"));
        } else {
            assert_eq!(errno(r), EPERM, "chown {uid:?}:{gid:?}");
        }
    }
    let m = meta(&d.p("f"));
    assert_eq!((m.uid(), m.gid()), (0, www));
}

/// The 43 paths whose change counters `.version` lists, in C's order (local.md §8).
const OBSERVED: [&str; 43] = [
    "corosync.conf",
    "corosync.conf.new",
    "storage.cfg",
    "user.cfg",
    "domains.cfg",
    "notifications.cfg",
    "priv/notifications.cfg",
    "priv/shadow.cfg",
    "priv/acme/plugins.cfg",
    "priv/tfa.cfg",
    "priv/token.cfg",
    "priv/wg-keys.cfg",
    "datacenter.cfg",
    "vzdump.cron",
    "vzdump.conf",
    "jobs.cfg",
    "ha/crm_commands",
    "ha/manager_status",
    "ha/resources.cfg",
    "ha/rules.cfg",
    "ha/groups.cfg",
    "ha/fence.cfg",
    "status.cfg",
    "replication.cfg",
    "ceph.conf",
    "sdn/vnets.cfg",
    "sdn/zones.cfg",
    "sdn/controllers.cfg",
    "sdn/subnets.cfg",
    "sdn/ipams.cfg",
    "sdn/mac-cache.json",
    "sdn/pve-ipam-state.json",
    "sdn/dns.cfg",
    "sdn/fabrics.cfg",
    "sdn/route-maps.cfg",
    "sdn/prefix-lists.cfg",
    "sdn/.running-config",
    "virtual-guest/cpu-models.conf",
    "virtual-guest/profiles.cfg",
    "firewall/cluster.fw",
    "mapping/directory.cfg",
    "mapping/pci.cfg",
    "mapping/usb.cfg",
];

fn json(d: &Daemon, rel: &str) -> serde_json::Value {
    let text = read(d, rel);
    serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "{rel} is not JSON ({e}): {}",
            String::from_utf8_lossy(&text)
        )
    })
}

/// §8: the function files in local mode, byte for byte where C's text is known; modes, sizes,
/// time 0; writes refused with EIO except `.debug`.
#[test]
fn virtual_files_have_local_mode_content() {
    let sb = Sandbox::new();
    let t0 = now();
    let d = start(&sb);
    let t1 = now();
    let www = www_data_gid();
    for name in &VIRTUAL_NAMES[4..] {
        let m = meta(&d.p(name));
        assert!(m.is_file(), "{name}");
        let perm = if *name == ".debug" { 0o640 } else { 0o440 };
        assert_eq!(m.mode() & 0o7777, perm, "{name}");
        assert_eq!(
            (m.uid(), m.gid(), m.mtime(), m.nlink()),
            (0, www, 0, 1),
            "{name}"
        );
        assert_eq!(
            m.size(),
            read(&d, name).len() as u64,
            "{name}: size is the text's length"
        );
    }

    assert_eq!(
        String::from_utf8(read(&d, ".members")).unwrap(),
        format!("{{\n\"nodename\": \"{HOSTNAME}\",\n\"version\": 0\n}}\n")
    );
    assert_eq!(read(&d, ".vmlist"), b"{\n\"version\": 0\n\n}\n");
    assert_eq!(read(&d, ".rrd"), b"", "no RRD data in local mode");
    assert_eq!(read(&d, ".debug"), b"0\n");

    let text = String::from_utf8(read(&d, ".version")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "{");
    let starttime: i64 = lines[1]
        .strip_prefix("\"starttime\": ")
        .and_then(|s| s.strip_suffix(','))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("starttime line {:?}", lines[1]));
    assert!(
        (t0 - 1..=t1 + 1).contains(&starttime),
        "starttime {starttime} not in {t0}..{t1}"
    );
    assert_eq!(lines[2..4], ["\"clinfo\": 0,", "\"vmlist\": 0,"]);
    for (i, p) in OBSERVED.iter().enumerate() {
        assert_eq!(lines[4 + i], format!("\"{p}\": 1,"), "counter line {i}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).expect(".version is JSON");
    assert_eq!(v["kvstore"][HOSTNAME], serde_json::json!({}));
    assert_eq!(v.as_object().unwrap().len(), 3 + OBSERVED.len() + 1);

    let log = String::from_utf8(read(&d, ".clusterlog")).unwrap();
    assert!(
        log.starts_with("{\n\"data\": [\n{\"uid\": 1, \"time\": "),
        "{log:?}"
    );
    assert!(log.ends_with("}\n]\n}\n"), "{log:?}");
    let v: serde_json::Value = serde_json::from_str(&log).expect(".clusterlog is JSON");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "only the start entry: {log}");
    let e = &data[0];
    assert_eq!(
        (&e["uid"], &e["pri"], &e["tag"], &e["node"], &e["user"], &e["msg"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(6),
            &serde_json::json!("cluster"),
            &serde_json::json!(HOSTNAME),
            &serde_json::json!("root"),
            &serde_json::json!("starting cluster log")
        )
    );
    assert_eq!(e["pid"], serde_json::json!(d.pid()), "the daemon's own pid");
    assert!((e["time"].as_i64().unwrap() - starttime).abs() <= 1);

    for name in [".version", ".members", ".vmlist", ".rrd", ".clusterlog"] {
        assert_eq!(errno(fs::write(d.p(name), b"x\n")), EIO, "echo x > {name}");
        assert_eq!(
            errno(ops::pwrite(&d.p(name), b"x\n", 0)),
            EIO,
            "write to {name}"
        );
        assert_eq!(errno(ops::truncate(&d.p(name), 0)), EIO, "truncate {name}");
    }

    let mut h = OpenOptions::new().write(true).open(d.p(".debug")).unwrap();
    assert_eq!(h.write(b"1\n").unwrap(), 2);
    drop(h);
    assert_eq!(read(&d, ".debug"), b"1\n");
    let mut h = OpenOptions::new().write(true).open(d.p(".debug")).unwrap();
    assert_eq!(
        h.write(b"0\nmore").unwrap(),
        2,
        "a longer buffer is a short write"
    );
    drop(h);
    assert_eq!(read(&d, ".debug"), b"0\n");
    assert_eq!(errno(ops::pwrite(&d.p(".debug"), b"x\n", 0)), EIO);
    assert_eq!(
        errno(ops::pwrite(&d.p(".debug"), b"1", 0)),
        EIO,
        "shorter than 2 bytes"
    );
    assert_eq!(
        errno(ops::pwrite(&d.p(".debug"), b"1\n", 1)),
        EIO,
        "offset must be 0"
    );
    ops::truncate(&d.p(".debug"), 0).unwrap();
    fs::write(d.p(".debug"), b"1\n").unwrap();
    assert_eq!(read(&d, ".debug"), b"1\n");
}

fn counter(d: &Daemon, path: &str) -> u64 {
    json(d, ".version")[path]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter for {path}"))
}

/// §8 and §1.5: `.version` counters move on every change of their path (and only theirs);
/// `.vmlist` follows guest configs; a VMID owned by another guest is refused with EEXIST.
#[test]
fn version_counters_and_vmlist_follow_changes() {
    let sb = Sandbox::new();
    let d = start(&sb);
    let mut last = counter(&d, "storage.cfg");
    let user = counter(&d, "user.cfg");
    let mut bumped = |what: &str, f: &dyn Fn()| {
        f();
        let c = counter(&d, "storage.cfg");
        assert!(
            c > last,
            "{what}: storage.cfg counter {c} did not move from {last}"
        );
        last = c;
    };
    bumped("create+write", &|| write(&d, "storage.cfg", b"a"));
    bumped("write", &|| {
        ops::pwrite(&d.p("storage.cfg"), b"b", 1).unwrap();
    });
    bumped("utime", &|| ops::utime(&d.p("storage.cfg"), 7, 7).unwrap());
    bumped("rename onto", &|| {
        write(&d, "storage.cfg.tmp.1", b"new");
        fs::rename(d.p("storage.cfg.tmp.1"), d.p("storage.cfg")).unwrap();
    });
    bumped("rename from", &|| {
        fs::rename(d.p("storage.cfg"), d.p("other.cfg")).unwrap()
    });
    bumped("create again", &|| write(&d, "storage.cfg", b"x"));
    bumped("unlink", &|| fs::remove_file(d.p("storage.cfg")).unwrap());
    assert_eq!(counter(&d, "user.cfg"), user, "other paths do not move");

    mkdirs(&d, &["priv"]);
    let tok = counter(&d, "priv/token.cfg");
    write(&d, "priv/token.cfg", b"root@pam!t secret\n");
    assert!(counter(&d, "priv/token.cfg") > tok);

    let v0 = json(&d, ".vmlist")["version"].as_u64().unwrap();
    mkdirs(
        &d,
        &[
            "nodes",
            "nodes/node1",
            "nodes/node1/qemu-server",
            "nodes/node1/lxc",
            "nodes/node2",
            "nodes/node2/qemu-server",
        ],
    );
    write(&d, "nodes/node1/qemu-server/100.conf", b"memory: 512\n");
    write(&d, "nodes/node1/lxc/101.conf", b"hostname: ct\n");
    let vl = json(&d, ".vmlist");
    assert!(vl["version"].as_u64().unwrap() > v0);
    assert_eq!(vl["ids"]["100"]["node"], HOSTNAME);
    assert_eq!(vl["ids"]["100"]["type"], "qemu");
    assert_eq!(vl["ids"]["101"]["type"], "lxc");
    assert_eq!(
        json(&d, ".version")["vmlist"],
        vl["version"],
        ".version follows .vmlist"
    );

    assert_eq!(
        errno(fs::write(d.p("nodes/node1/lxc/100.conf"), b"x")),
        EEXIST
    );
    assert_eq!(
        errno(fs::write(d.p("nodes/node2/qemu-server/100.conf"), b"x")),
        EEXIST
    );
    assert_eq!(
        errno(fs::rename(
            d.p("nodes/node1/lxc/101.conf"),
            d.p("nodes/node1/lxc/100.conf")
        )),
        EEXIST
    );
    fs::rename(
        d.p("nodes/node1/qemu-server/100.conf"),
        d.p("nodes/node1/lxc/100.conf"),
    )
    .unwrap();
    assert_eq!(
        json(&d, ".vmlist")["ids"]["100"]["type"],
        "lxc",
        "same VMID may move"
    );
    fs::remove_file(d.p("nodes/node1/lxc/100.conf")).unwrap();
    let vl = json(&d, ".vmlist");
    assert!(
        vl["ids"].get("100").is_none(),
        "deleted guest leaves the list: {vl}"
    );
    assert_eq!(vl["ids"]["101"]["node"], HOSTNAME);
}

/// §6 and Appendix B: the lock protocol under `priv/lock` (daemon started with a 3 s timeout
/// instead of 120 s): mkdir, EEXIST, refresh, older mtime → EACCES, unlock request before
/// expiry → EACCES, after expiry → removed (ENOENT), a refresh restarts the timer, no rename,
/// no refresh below a future mtime. Times are whole seconds: a lock of age `e` is surely not
/// expired while `e <= 3` and surely expired once `e >= 4`.
#[test]
fn locks_follow_the_c_protocol() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        lock_timeout: Some(3),
        ..Opts::default()
    });
    mkdirs(&d, &["priv", "priv/lock"]);
    assert_eq!(errno(fs::create_dir(d.p("priv/lock"))), EEXIST);
    let l1 = d.p("priv/lock/file-storage_cfg");
    fs::create_dir(&l1).unwrap();
    assert_eq!(errno(fs::create_dir(&l1)), EEXIST, "held");
    let m0 = meta(&l1).mtime();
    assert_recent(m0, "lock mtime");
    ops::utime(&l1, m0 + 1, m0 + 1).unwrap();
    assert_eq!(meta(&l1).mtime(), m0 + 1, "refresh");
    assert_eq!(
        errno(ops::utime(&l1, m0 - 10, m0 - 10)),
        EACCES,
        "older mtime"
    );
    assert_eq!(meta(&l1).mtime(), m0 + 1);
    assert_eq!(
        errno(ops::utime(&l1, 0, 0)),
        EACCES,
        "unlock request before expiry"
    );
    assert!(meta(&l1).is_dir());
    assert_eq!(errno(fs::rename(&l1, d.p("priv/lock/other"))), EACCES);

    // A refresh restarts the timer: l3 is 4 s old at the check, refreshed 2 s before it.
    let l3 = d.p("priv/lock/l3");
    fs::create_dir(&l3).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    ops::utime_now(&l3).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(errno(ops::utime(&l3, 0, 0)), EACCES, "refreshed 2 s ago");

    assert_eq!(
        errno(ops::utime(&l1, 0, 0)),
        ENOENT,
        "unchanged for 4 s: expired, removed"
    );
    assert!(!names(&d, "priv/lock").contains("file-storage_cfg"));
    assert!(
        wait_until(Duration::from_secs(3), || fs::create_dir(&l1).is_ok()),
        "the lock can be taken again"
    );
    fs::remove_dir(&l1).unwrap();

    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        errno(ops::utime(&l3, 0, 0)),
        ENOENT,
        "4.5 s after its refresh"
    );

    // A lock whose mtime is in the future cannot be refreshed to now.
    let l4 = d.p("priv/lock/l4");
    fs::create_dir(&l4).unwrap();
    ops::utime(&l4, now() + 100, now() + 100).unwrap();
    assert_eq!(errno(ops::utime_now(&l4)), EACCES);
    fs::remove_dir(&l4).unwrap();
    assert_eq!(errno(fs::symlink_metadata(&l4)), ENOENT, "released");
}

/// Appendix B / §4: names longer than statfs's 256 are accepted (C enforces no limit of its
/// own); `.` and `..` are the kernel's.
#[test]
fn names_and_limits() {
    let sb = Sandbox::new();
    let d = start(&sb);
    for len in [255, 256, 300] {
        let n = "n".repeat(len);
        write(&d, &n, n.as_bytes());
        assert_eq!(read(&d, &n), n.as_bytes());
        assert!(names(&d, "").contains(&n));
    }
    mkdirs(&d, &["d"]);
    assert_eq!(errno(fs::remove_dir(d.p("d/."))), EINVAL);
    assert_eq!(errno(fs::create_dir(d.p("nope/."))), ENOENT);
    write(&d, "with space and ünïcödé.cfg", b"u");
    assert_eq!(read(&d, "with space and ünïcödé.cfg"), b"u");
}

fn dd(args: &[String]) {
    let out = Command::new("dd")
        .args(args)
        .arg("status=none")
        .output()
        .expect("run dd");
    assert!(
        out.status.success(),
        "dd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The data test: random bytes written with `dd bs=512 count=2048` and `bs=1M
/// count=1` read back identical, through the mount and from the database.
#[test]
fn dd_random_data_reads_back_identical() {
    let sb = Sandbox::new();
    let d = start(&sb);
    for (name, bs, count) in [("rand512", "512", "2048"), ("rand1m", "1M", "1")] {
        let reference = sb.path().join(format!("{name}.ref"));
        let back = sb.path().join(format!("{name}.back"));
        let s = |p: &Path| p.display().to_string();
        dd(&[
            "if=/dev/urandom".into(),
            format!("of={}", s(&reference)),
            format!("bs={bs}"),
            format!("count={count}"),
            "iflag=fullblock".into(),
        ]);
        let want = fs::read(&reference).unwrap();
        assert_eq!(want.len(), MIB);
        dd(&[
            format!("if={}", s(&reference)),
            format!("of={}", s(&d.p(name))),
            format!("bs={bs}"),
            format!("count={count}"),
        ]);
        assert_eq!(read(&d, name), want, "{name}: read back");
        dd(&[
            format!("if={}", s(&d.p(name))),
            format!("of={}", s(&back)),
            "bs=4096".into(),
        ]);
        assert_eq!(
            fs::read(&back).unwrap(),
            want,
            "{name}: read back in 4 KiB reads"
        );
        assert_eq!(meta(&d.p(name)).size(), MIB as u64);
    }
    d.flush();
    let rows = lwcfs_compat_tests::db::read_rows(&sb.db_path());
    for name in ["rand512", "rand1m"] {
        let row = rows.iter().find(|r| r.name == name).expect("row");
        let reference = fs::read(sb.path().join(format!("{name}.ref"))).unwrap();
        assert_eq!(
            row.data.as_deref(),
            Some(&reference[..]),
            "{name}: database blob"
        );
    }
}

/// Appendix B: the other system calls a Proxmox client could notice.
#[test]
fn other_syscalls_match_appendix_b() {
    let sb = Sandbox::new();
    let d = start(&sb);
    write(&d, "f", b"hello world");
    assert_eq!(errno(fs::hard_link(d.p("f"), d.p("g"))), EPERM, "link");
    assert_eq!(
        errno(std::os::unix::fs::symlink("f", d.p("s"))),
        ENOSYS,
        "symlink"
    );
    assert_eq!(errno(ops::mkfifo(&d.p("fifo"))), ENOSYS, "mkfifo");
    ops::mknod_regular(&d.p("node")).unwrap();
    let m = meta(&d.p("node"));
    assert!(m.is_file());
    assert_eq!((m.size(), m.mode() & 0o7777), (0, 0o640));
    assert_eq!(
        errno(ops::fallocate(&d.p("f"), 100)),
        EOPNOTSUPP,
        "fallocate"
    );
    assert_eq!(errno(ops::getxattr(&d.p("f"))), EOPNOTSUPP, "xattrs");
    // SEMANTICS.md §2: files are cached, so a shared mapping works (C, with direct I/O: ENODEV).
    ops::mmap_shared(&d.p("f")).expect("shared mmap");
    assert_eq!(
        ops::mmap_private_read(&d.p("f")).unwrap(),
        b"hello world",
        "private mmap"
    );
    ops::flock_cycle(&d.p("f")).unwrap();
    File::open(d.p("f")).unwrap().sync_all().unwrap();
    File::open(d.mnt()).unwrap().sync_all().unwrap();
    assert_eq!(ops::copy_file_range(&d.p("f"), &d.p("copy")).unwrap(), 11);
    assert_eq!(read(&d, "copy"), b"hello world");
}
