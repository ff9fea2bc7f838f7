//! Regressions: bugs this suite found in the daemon, each fixed, each pinned here. Needs root
//! and /dev/fuse: feature `fuse`.
#![cfg(feature = "fuse")]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use lwcfs_compat_tests::db;
use lwcfs_compat_tests::ops::errno;
use lwcfs_compat_tests::sandbox::{Opts, Sandbox};

/// POSIX, and C through libfuse's hidden rename: a file unlinked while open still reads
/// through the open descriptor. lwcfs used to answer ENOENT.
#[test]
fn read_through_an_open_fd_after_unlink() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("a.cfg"), b"old a").unwrap();
    let mut a = File::open(d.p("a.cfg")).unwrap();
    fs::remove_file(d.p("a.cfg")).unwrap();
    let mut s = String::new();
    let r = a.read_to_string(&mut s);
    assert!(r.is_ok(), "read after unlink: {r:?}");
    assert_eq!(s, "old a");
}

/// With the page cache (SEMANTICS.md §5), the kernel asks for a file's attributes before it
/// reads past the size it knows: the answer for a file unlinked while open was ENOENT, so the
/// read failed. The attributes are those the file had when it was removed.
#[test]
fn fstat_and_read_through_an_open_fd_after_unlink_of_a_just_written_file() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("w.cfg"), b"written").unwrap();
    let mut w = OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.p("w.cfg"))
        .unwrap();
    w.write_all(b"W").unwrap();
    fs::remove_file(d.p("w.cfg")).unwrap();
    let m = w.metadata().expect("fstat after unlink");
    assert_eq!(m.len(), 7);
    w.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    w.read_to_string(&mut s).expect("read after unlink");
    assert_eq!(s, "Written");
}

/// The race every PVE reader can hit: `file_get_contents` opened the file, then a writer's
/// `file_set_contents` renamed its tmp file over it. C returns the old content; lwcfs used to give ENOENT.
#[test]
fn read_through_an_open_fd_after_rename_over() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("b.cfg"), b"old b").unwrap();
    let mut b = File::open(d.p("b.cfg")).unwrap();
    fs::write(d.p("b.cfg.tmp.1"), b"new b").unwrap();
    fs::rename(d.p("b.cfg.tmp.1"), d.p("b.cfg")).unwrap();
    let mut s = String::new();
    let r = b.read_to_string(&mut s);
    assert!(r.is_ok(), "read after rename over it: {r:?}");
    assert_eq!(s, "old b");
    drop(b);
    assert_eq!(fs::read(d.p("b.cfg")).unwrap(), b"new b");
}

/// Issue #2: "A FUSE write() changes RAM only. An entry becomes committable when the last
/// handle that wrote it is released." A file created with O_CREAT and written at once through
/// the create handle is committed, content included, while the handle is still open (the
/// create made the inode committable at once; the commit snapshots the written bytes).
#[test]
fn created_file_written_through_its_open_handle_stays_in_ram() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("100ms"),
        hold_bound: Some("5s"),
        ..Opts::default()
    });
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(d.p("new.cfg"))
        .unwrap();
    f.write_all(b"first half ").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let rows = db::read_rows(&sb.db_path());
    let on_disk = rows
        .iter()
        .find(|r| r.name == "new.cfg")
        .map(|r| r.data.clone());
    assert!(
        matches!(on_disk, None | Some(None)) || on_disk == Some(Some(Vec::new())),
        "half-written content of an open file on disk: {on_disk:?}"
    );
    f.write_all(b"second half").unwrap();
}

/// local.md §2.6/§9: on a clean stop C's `sqlite3_close` checkpoints and removes the WAL, so
/// `config.db` alone holds everything (what a backup copies). lwcfs leaves the last commits in
/// `config.db-wal`.
#[test]
fn clean_stop_checkpoints_and_removes_the_wal() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    fs::write(d.p("x.cfg"), b"x").unwrap();
    assert!(d.stop().success());
    let wal = sb.path().join("db/config.db-wal");
    let len = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        len,
        0,
        "{} holds {len} bytes after a clean stop",
        wal.display()
    );
}

/// Appendix B: through the kernel, C refuses a 1100-byte name with ENAMETOOLONG (the FUSE
/// limit of 1024 without FUSE_MAX_PAGES). lwcfs negotiates FUSE_MAX_PAGES, which lifts the
/// kernel's limit to 4095, and accepts such names (which C nodes then cannot look up).
#[test]
fn names_longer_than_1024_bytes_are_refused() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    assert_eq!(
        errno(fs::write(d.p(&"n".repeat(1100)), b"x")),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(fs::create_dir(d.p(&"d".repeat(1025)))),
        libc::ENAMETOOLONG
    );
}

/// local.md §9: SIGTERM ends the daemon (C unmounts lazily and exits) even when the mount is
/// busy. systemd stops pve-cluster with SIGTERM and kills it 10 s later; an admin shell whose
/// cwd is /etc/pve, or any open file there, must not keep lwcfs alive. lwcfs logs "Unmounting
/// /etc/pve" and hangs there, even after the file is closed, so the final commit never runs.
#[test]
fn sigterm_with_a_busy_mount_still_commits_and_exits() {
    let sb = Sandbox::new();
    let mut d = sb.start(&Opts {
        commit_delay: Some("1s"),
        ..Opts::default()
    });
    fs::write(d.p("pending.cfg"), b"committed at shutdown\n").unwrap();
    let busy = File::open(d.p("pending.cfg")).unwrap();
    d.sigterm();
    let status = d.wait_exit(Duration::from_secs(8));
    drop(busy);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit within 8 s with a file open: {status:?}"
    );
    let rows = db::read_rows(&sb.db_path());
    let row = rows
        .iter()
        .find(|r| r.name == "pending.cfg")
        .expect("committed at shutdown");
    assert_eq!(row.data.as_deref(), Some(&b"committed at shutdown\n"[..]));
}
