//! The kernel caches names, attributes and pages of tree files (SEMANTICS.md §5): a reader that
//! has a file's content in the page cache must still see every change made since. Each test
//! fills the cache first (a read through a descriptor that stays open), changes the file
//! another way, and reads again. Needs root and /dev/fuse: feature `fuse`.
#![cfg(feature = "fuse")]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use libc::ENOENT;
use lwcfs_compat_tests::ops::{self, errno};
use lwcfs_compat_tests::sandbox::{Daemon, Opts, Sandbox, HOSTNAME};

/// Open `rel` and read it whole: the pages are now cached. The descriptor stays open so the
/// kernel keeps the inode (and its pages) while the test changes the file.
#[track_caller]
fn cached_reader(d: &Daemon, rel: &str, want: &[u8]) -> File {
    let mut f = File::open(d.p(rel)).unwrap_or_else(|e| panic!("open {rel}: {e}"));
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    assert_eq!(v, want, "{rel} before the change");
    assert_eq!(pread_all(&f), want, "{rel} again, from the cache");
    let _ = fs::metadata(d.p(rel)).unwrap();
    f
}

#[track_caller]
fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Everything `f` shows from offset 0, through the same open file description.
fn pread_all(f: &File) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

/// An overwrite through another descriptor (O_TRUNC, then one write): a new open, the cached
/// reader's own descriptor and stat all show the new content at once. A partial overwrite of
/// a cached page shows the merged bytes.
#[test]
fn overwrite_through_another_fd_is_seen_by_a_cached_reader() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("f.cfg"), b"the old content, longer than the new\n").unwrap();
    let r = cached_reader(&d, "f.cfg", b"the old content, longer than the new\n");
    fs::write(d.p("f.cfg"), b"new\n").unwrap();
    assert_eq!(read(&d.p("f.cfg")), b"new\n");
    assert_eq!(
        pread_all(&r),
        b"new\n",
        "the cached reader's own descriptor"
    );
    assert_eq!(fs::metadata(d.p("f.cfg")).unwrap().len(), 4);

    ops::pwrite(&d.p("f.cfg"), b"EW", 1).unwrap();
    assert_eq!(
        pread_all(&r),
        b"nEW\n",
        "a partial overwrite of a cached page"
    );
    assert_eq!(read(&d.p("f.cfg")), b"nEW\n");
    ops::append(&d.p("f.cfg"), b"more\n").unwrap();
    assert_eq!(read(&d.p("f.cfg")), b"nEW\nmore\n");
    assert_eq!(
        fs::metadata(d.p("f.cfg")).unwrap().len(),
        9,
        "size after append"
    );
}

/// A write moves the mtime to now even though the kernel cached the old attributes.
#[test]
fn mtime_after_a_write_is_the_daemons() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("t.cfg"), b"x").unwrap();
    ops::utime(&d.p("t.cfg"), 1000, 1000).unwrap();
    let _r = cached_reader(&d, "t.cfg", b"x");
    assert_eq!(fs::metadata(d.p("t.cfg")).unwrap().mtime(), 1000);
    ops::append(&d.p("t.cfg"), b"y").unwrap();
    let m = fs::metadata(d.p("t.cfg")).unwrap();
    assert!(m.mtime() > 1000, "mtime after a write: {}", m.mtime());
    assert_eq!(m.len(), 2);
    ops::utime(&d.p("t.cfg"), 2000, 2000).unwrap();
    assert_eq!(fs::metadata(d.p("t.cfg")).unwrap().mtime(), 2000, "utimens");
}

/// `file_set_contents`: a new file renamed over the cached one. The name shows the new file;
/// the reader that had the old one open keeps reading the old one (POSIX).
#[test]
fn rename_over_a_cached_file_shows_the_new_file() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("s.cfg"), b"version 1\n").unwrap();
    let r = cached_reader(&d, "s.cfg", b"version 1\n");
    let ino = fs::metadata(d.p("s.cfg")).unwrap().ino();
    for v in 2..5 {
        let tmp = format!("s.cfg.tmp.{v}");
        let mut t = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(d.p(&tmp))
            .unwrap();
        t.write_all(format!("version {v}\n").as_bytes()).unwrap();
        drop(t);
        fs::rename(d.p(&tmp), d.p("s.cfg")).unwrap();
        assert_eq!(read(&d.p("s.cfg")), format!("version {v}\n").as_bytes());
        let _again = cached_reader(&d, "s.cfg", format!("version {v}\n").as_bytes());
    }
    assert_ne!(fs::metadata(d.p("s.cfg")).unwrap().ino(), ino);
    assert_eq!(
        pread_all(&r),
        b"version 1\n",
        "the old file through the old descriptor"
    );
}

/// truncate(2) through the path, shorter then longer (zero-filled), and ftruncate through
/// another descriptor.
#[test]
fn truncate_of_a_cached_file_is_seen() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("t.cfg"), b"0123456789").unwrap();
    let r = cached_reader(&d, "t.cfg", b"0123456789");
    ops::truncate(&d.p("t.cfg"), 4).unwrap();
    assert_eq!(read(&d.p("t.cfg")), b"0123");
    assert_eq!(pread_all(&r), b"0123");
    ops::truncate(&d.p("t.cfg"), 6).unwrap();
    assert_eq!(read(&d.p("t.cfg")), b"0123\0\0");
    let w = OpenOptions::new().write(true).open(d.p("t.cfg")).unwrap();
    w.set_len(1).unwrap();
    drop(w);
    assert_eq!(pread_all(&r), b"0");
    assert_eq!(fs::metadata(d.p("t.cfg")).unwrap().len(), 1);
}

/// A cached file unlinked and created again under the same name reads as the new file.
#[test]
fn unlink_and_recreate_of_a_cached_file() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::create_dir(d.p("dir")).unwrap();
    fs::write(d.p("dir/u.cfg"), b"first life\n").unwrap();
    let r = cached_reader(&d, "dir/u.cfg", b"first life\n");
    fs::remove_file(d.p("dir/u.cfg")).unwrap();
    assert_eq!(errno(fs::metadata(d.p("dir/u.cfg"))), ENOENT);
    fs::write(d.p("dir/u.cfg"), b"second\n").unwrap();
    assert_eq!(read(&d.p("dir/u.cfg")), b"second\n");
    assert_eq!(fs::metadata(d.p("dir/u.cfg")).unwrap().len(), 7);
    assert_eq!(
        pread_all(&r),
        b"first life\n",
        "the unlinked file, still open"
    );
    // The same for a directory: removed and made again, its new children are seen.
    fs::remove_file(d.p("dir/u.cfg")).unwrap();
    fs::remove_dir(d.p("dir")).unwrap();
    fs::create_dir(d.p("dir")).unwrap();
    fs::write(d.p("dir/v.cfg"), b"v").unwrap();
    assert_eq!(read(&d.p("dir/v.cfg")), b"v");
    assert_eq!(errno(fs::metadata(d.p("dir/u.cfg"))), ENOENT);
}

/// An unlock request on an expired lock removes the directory while the kernel asked for an
/// mtime change: the name is gone for the very next lookup, and the lock can be taken again
/// at once (lock entries are never cached).
#[test]
fn lock_removed_by_an_unlock_request_is_gone_at_once() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        lock_timeout: Some(1),
        ..Opts::default()
    });
    fs::create_dir_all(d.p("priv/lock")).unwrap();
    let l = d.p("priv/lock/file-x");
    fs::create_dir(&l).unwrap();
    assert!(fs::metadata(&l).unwrap().is_dir());
    // Whole seconds: unchanged for 3 s is surely more than the 1 s timeout.
    std::thread::sleep(Duration::from_secs(3));
    assert!(fs::metadata(&l).unwrap().is_dir());
    assert_eq!(errno(ops::utime(&l, 0, 0)), ENOENT, "expired: removed");
    assert_eq!(errno(fs::metadata(&l)), ENOENT);
    fs::create_dir(&l).expect("the lock can be taken again at once");
    assert!(fs::metadata(&l).unwrap().is_dir());
}

/// Virtual files are generated at open and never cached: `.vmlist` shows a new guest at once,
/// and its size follows.
#[test]
fn virtual_files_are_never_cached() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    let before = read(&d.p(".vmlist"));
    let size = fs::metadata(d.p(".vmlist")).unwrap().len();
    assert_eq!(size, before.len() as u64);
    fs::create_dir_all(d.p(&format!("nodes/{HOSTNAME}/qemu-server"))).unwrap();
    fs::write(d.p(&format!("nodes/{HOSTNAME}/qemu-server/100.conf")), b"x").unwrap();
    let after = read(&d.p(".vmlist"));
    assert_ne!(after, before);
    assert!(String::from_utf8_lossy(&after).contains("\"100\""));
    assert_eq!(
        fs::metadata(d.p(".vmlist")).unwrap().len(),
        after.len() as u64
    );
}
