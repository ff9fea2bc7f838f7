//! What reaches `config.db`, and when: the Proxmox update pattern, commit counting through
//! `lwcfs stats --json`, fsync and flush, the hold bound, clean shutdown, restart, `kill -9`
//! at random points, startup files, and a database written by C. Needs root and /dev/fuse:
//! feature `fuse`.
#![cfg(feature = "fuse")]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lwcfs_compat_tests::db::{self, Row, C_SCHEMA, DT_DIR, DT_REG};
use lwcfs_compat_tests::history::History;
use lwcfs_compat_tests::rng::Rng;
use lwcfs_compat_tests::sandbox::{
    wait_until, www_data_gid, Daemon, Opts, Sandbox, HOSTNAME, VIRTUAL_NAMES,
};
use lwcfs_compat_tests::walk::{walk, Node};

const WAIT: Duration = Duration::from_secs(10);

fn rows_named<'a>(rows: &'a [Row], name: &str) -> Vec<&'a Row> {
    rows.iter().filter(|r| r.name == name).collect()
}

fn version_row(rows: &[Row]) -> &Row {
    rows.iter().find(|r| r.inode == 0).expect("__version__ row")
}

/// `PVE::Tools::file_set_contents`: the whole content in one write to `name.tmp.<pid>`, then a
/// rename over `name`.
fn set_contents(d: &Daemon, rel: &str, data: &[u8]) {
    let tmp = format!("{rel}.tmp.{}", std::process::id());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(d.p(&tmp))
        .unwrap();
    assert_eq!(f.write(data).unwrap(), data.len(), "one write");
    drop(f);
    fs::rename(d.p(&tmp), d.p(rel)).unwrap();
}

fn tree_of(d: &Daemon) -> BTreeMap<String, Node> {
    walk(&d.mnt(), &VIRTUAL_NAMES).expect("walk the mount")
}

/// The pattern test: tmp file + rename leaves exactly one row for the name (and no tmp
/// row), reaching disk in one transaction; five updates inside one window are one transaction.
#[test]
fn update_pattern_is_one_row_and_one_transaction() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("1s"),
        ..Opts::default()
    });
    for dir in ["nodes", "nodes/node1", "nodes/node1/qemu-server"] {
        fs::create_dir(d.p(dir)).unwrap();
    }
    fs::write(d.p("storage.cfg"), b"old\n").unwrap();
    fs::write(d.p("nodes/node1/qemu-server/100.conf"), b"memory: 512\n").unwrap();
    d.flush();
    let old = db::read_rows(&sb.db_path());
    let old_inode = rows_named(&old, "storage.cfg")[0].inode;

    let t0 = d.stat("transactions");
    set_contents(&d, "storage.cfg", b"dir: local\n\tpath /var/lib/vz\n");
    d.wait_idle(WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.stat("transactions") - t0,
        1,
        "tmp + write + rename: one transaction"
    );
    let rows = db::read_rows(&sb.db_path());
    let named = rows_named(&rows, "storage.cfg");
    assert_eq!(named.len(), 1, "exactly one row for the name: {named:?}");
    assert_eq!(named[0].parent, 0);
    assert_eq!(
        named[0].data.as_deref(),
        Some(&b"dir: local\n\tpath /var/lib/vz\n"[..])
    );
    assert!(
        rows.iter().all(|r| !r.name.contains(".tmp.")),
        "no tmp row: {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.inode != old_inode),
        "the replaced inode is deleted"
    );

    let t0 = d.stat("transactions");
    for i in 0..5 {
        set_contents(
            &d,
            "nodes/node1/qemu-server/100.conf",
            format!("memory: {i}\n").as_bytes(),
        );
    }
    d.wait_idle(WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.stat("transactions") - t0,
        1,
        "five updates in one window: one transaction"
    );
    let rows = db::read_rows(&sb.db_path());
    let named = rows_named(&rows, "100.conf");
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].data.as_deref(), Some(&b"memory: 4\n"[..]));
    assert!(rows.iter().all(|r| !r.name.contains(".tmp.")));
    assert_eq!(
        fs::read(d.p("qemu-server/100.conf")).unwrap(),
        b"memory: 4\n"
    );
}

/// The second counting test: a lock directory made and removed within the delay never
/// reaches the disk (C: two commits).
#[test]
fn lock_made_and_removed_within_the_delay_commits_nothing() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("1s"),
        ..Opts::default()
    });
    fs::create_dir(d.p("priv")).unwrap();
    fs::create_dir(d.p("priv/lock")).unwrap();
    d.flush();
    let before = db::read_rows(&sb.db_path());
    let t0 = d.stat("transactions");
    fs::create_dir(d.p("priv/lock/file-storage_cfg")).unwrap();
    fs::remove_dir(d.p("priv/lock/file-storage_cfg")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    d.wait_idle(WAIT);
    assert_eq!(d.stat("transactions"), t0, "no transaction");
    assert_eq!(db::read_rows(&sb.db_path()), before, "no row changed");
}

/// `nodes/<n>/lrm_status` as pve-ha-lrm writes it, with the keys in an order that varies with
/// `ts` (Perl's hash order does).
fn lrm_status(ts: u64, mode: &str) -> String {
    let mut fields = [
        format!("\"mode\":\"{mode}\""),
        "\"results\":{}".to_owned(),
        "\"state\":\"wait_for_agent_lock\"".to_owned(),
        format!("\"timestamp\":{ts}"),
    ];
    fields.rotate_left((ts % 4) as usize);
    format!("{{{}}}", fields.join(","))
}

fn stored(sb: &Sandbox, name: &str) -> Vec<u8> {
    let rows = db::read_rows(&sb.db_path());
    let named = rows_named(&rows, name);
    assert_eq!(named.len(), 1, "one stored row for {name}: {named:?}");
    named[0].data.clone().unwrap_or_default()
}

/// SEMANTICS.md §1.10: rewrites of `nodes/<n>/lrm_status` that change only its timestamp stay
/// in RAM (reads see them); a real change is committed within the delay, with the newest
/// content; `lwcfs flush` and a clean stop store the newest too.
#[test]
fn lrm_status_timestamp_only_rewrites_stay_in_ram() {
    let sb = Sandbox::new();
    let mut d = sb.start(&Opts {
        commit_delay: Some("100ms"),
        defer_bound: Some("60s"),
        ..Opts::default()
    });
    fs::create_dir_all(d.p("nodes/node1")).unwrap();
    set_contents(
        &d,
        "nodes/node1/lrm_status",
        lrm_status(1, "active").as_bytes(),
    );
    d.flush();
    let t0 = d.stat("transactions");
    for ts in 2..8 {
        set_contents(
            &d,
            "nodes/node1/lrm_status",
            lrm_status(ts, "active").as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(d.stat("transactions"), t0, "timestamp-only: no transaction");
    assert!(d.stat("deferred_rewrites") >= 1);
    assert_eq!(
        fs::read(d.p("nodes/node1/lrm_status")).unwrap(),
        lrm_status(7, "active").as_bytes(),
        "reads see the newest"
    );
    assert_eq!(
        stored(&sb, "lrm_status"),
        lrm_status(1, "active").as_bytes()
    );

    set_contents(
        &d,
        "nodes/node1/lrm_status",
        lrm_status(8, "maintenance").as_bytes(),
    );
    assert!(
        wait_until(WAIT, || d.stat("transactions") > t0),
        "a real change is committed"
    );
    assert_eq!(
        stored(&sb, "lrm_status"),
        lrm_status(8, "maintenance").as_bytes()
    );
    assert_eq!(d.stat("transactions"), t0 + 1);

    set_contents(
        &d,
        "nodes/node1/lrm_status",
        lrm_status(9, "maintenance").as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(d.stat("transactions"), t0 + 1);
    d.flush();
    assert_eq!(d.stat("transactions"), t0 + 2);
    assert_eq!(
        stored(&sb, "lrm_status"),
        lrm_status(9, "maintenance").as_bytes()
    );

    set_contents(
        &d,
        "nodes/node1/lrm_status",
        lrm_status(10, "maintenance").as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        stored(&sb, "lrm_status"),
        lrm_status(9, "maintenance").as_bytes()
    );
    d.sigterm();
    assert!(d.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert_eq!(
        stored(&sb, "lrm_status"),
        lrm_status(10, "maintenance").as_bytes(),
        "a clean stop stores the newest"
    );
}

/// SEMANTICS.md §1.10: the bound. With `--defer-bound 1s`, a timestamp-only rewrite reaches
/// the disk about a second after the first rewrite it replaced was held back.
#[test]
fn lrm_status_deferral_is_bounded() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("100ms"),
        defer_bound: Some("1s"),
        ..Opts::default()
    });
    fs::create_dir_all(d.p("nodes/node1")).unwrap();
    set_contents(
        &d,
        "nodes/node1/lrm_status",
        lrm_status(1, "active").as_bytes(),
    );
    d.flush();
    let t0 = d.stat("transactions");
    set_contents(
        &d,
        "nodes/node1/lrm_status",
        lrm_status(2, "active").as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stored(&sb, "lrm_status"),
        lrm_status(1, "active").as_bytes()
    );
    assert!(
        wait_until(WAIT, || stored(&sb, "lrm_status")
            == lrm_status(2, "active").as_bytes()),
        "stored once the bound has passed"
    );
    assert_eq!(d.stat("transactions"), t0 + 1);
    d.wait_idle(WAIT);
}

/// local.md §3.16: failed operations, reads, chmod and chown write nothing.
#[test]
fn failed_and_read_only_operations_commit_nothing() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("100ms"),
        ..Opts::default()
    });
    for dir in ["priv", "priv/lock", "priv/lock/held", "full"] {
        fs::create_dir(d.p(dir)).unwrap();
    }
    fs::write(d.p("full/f.cfg"), b"content").unwrap();
    d.flush();
    let before = db::read_rows(&sb.db_path());
    let t0 = d.stat("transactions");
    let f = d.p("full/f.cfg");
    assert!(fs::create_dir(d.p("priv/lock/held")).is_err(), "EEXIST");
    assert!(
        lwcfs_compat_tests::ops::utime(&d.p("priv/lock/held"), 0, 0).is_err(),
        "EACCES"
    );
    assert!(
        lwcfs_compat_tests::ops::pwrite(&f, b"x", 1 << 20).is_err(),
        "EFBIG"
    );
    assert!(fs::remove_dir(d.p("full")).is_err(), "ENOTEMPTY");
    assert!(fs::rename(d.p("full"), d.p("moved")).is_err(), "ENOTEMPTY");
    assert!(fs::write(d.p(".version"), b"x").is_err(), "EIO");
    assert!(fs::remove_file(d.p("missing")).is_err(), "ENOENT");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(0), Some(www_data_gid())).unwrap();
    fs::read(&f).unwrap();
    fs::read_dir(d.mnt()).unwrap().for_each(drop);
    fs::read(d.p(".version")).unwrap();
    lwcfs_compat_tests::ops::statvfs(&d.mnt()).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    d.wait_idle(WAIT);
    assert_eq!(d.stat("transactions"), t0, "{}", d.stats());
    assert_eq!(db::read_rows(&sb.db_path()), before);
}

/// Several writers at once (the daemon serves FUSE from several threads): each file ends in
/// its last written state, through the mount and on disk.
#[test]
fn concurrent_writers_end_in_their_last_state() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("20ms"),
        ..Opts::default()
    });
    fs::create_dir(d.p("par")).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let mnt = d.mnt();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let rel = format!("par/t{t}.cfg");
                    let tmp = mnt.join(format!("{rel}.tmp.{t}"));
                    let data = format!("thread {t} update {i}\n").repeat(1 + i % 40);
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&tmp)
                        .unwrap();
                    f.write_all(data.as_bytes()).unwrap();
                    drop(f);
                    fs::rename(&tmp, mnt.join(&rel)).unwrap();
                    let back = fs::read(mnt.join(&rel)).unwrap();
                    assert!(back.starts_with(format!("thread {t} update ").as_bytes()));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    d.flush();
    let tree = db::tree(&db::read_rows(&sb.db_path())).unwrap();
    let files = db::files_under(&tree, "par");
    assert_eq!(files.len(), 4, "no tmp file left: {:?}", files.keys());
    for t in 0..4 {
        let want = "thread {t} update 149\n"
            .replace("{t}", &t.to_string())
            .repeat(1 + 149 % 40);
        assert_eq!(
            files[&format!("par/t{t}.cfg")],
            want.as_bytes(),
            "t{t} on disk"
        );
        assert_eq!(
            fs::read(d.p(&format!("par/t{t}.cfg"))).unwrap(),
            want.as_bytes()
        );
    }
}

/// fsync and fsyncdir return only once the commit is on disk: the rows are there at once,
/// although the commit delay (1 s) has not passed, and the sync counter moved.
#[test]
fn fsync_returns_after_the_commit() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("1s"),
        ..Opts::default()
    });
    let (t0, s0) = (d.stat("transactions"), d.stat("syncs"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(d.p("fsynced.cfg"))
        .unwrap();
    f.write_all(b"durable\n").unwrap();
    f.sync_all().unwrap();
    let rows = db::read_rows(&sb.db_path());
    let named = rows_named(&rows, "fsynced.cfg");
    assert_eq!(named.len(), 1, "on disk when fsync returns: {rows:?}");
    assert_eq!(named[0].data.as_deref(), Some(&b"durable\n"[..]));
    assert!(d.stat("transactions") > t0);
    assert!(d.stat("syncs") > s0, "the WAL was synced: {}", d.stats());
    drop(f);

    let s1 = d.stat("syncs");
    fs::rename(d.p("fsynced.cfg"), d.p("moved.cfg")).unwrap();
    File::open(d.mnt()).unwrap().sync_all().unwrap();
    let rows = db::read_rows(&sb.db_path());
    assert!(
        rows_named(&rows, "fsynced.cfg").is_empty(),
        "fsyncdir committed the rename"
    );
    assert_eq!(rows_named(&rows, "moved.cfg").len(), 1);
    assert!(d.stat("syncs") > s1);
}

/// `lwcfs flush` commits everything at once and returns when it is on disk.
#[test]
fn flush_command_commits_now() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("1s"),
        ..Opts::default()
    });
    fs::create_dir(d.p("ha")).unwrap();
    fs::write(d.p("ha/resources.cfg"), b"vm: 100\n").unwrap();
    d.flush();
    let rows = db::read_rows(&sb.db_path());
    assert_eq!(
        rows_named(&rows, "resources.cfg")[0].data.as_deref(),
        Some(&b"vm: 100\n"[..])
    );
    assert_eq!(rows_named(&rows, "ha")[0].kind, DT_DIR);
    assert_eq!(d.stat("pending"), 0);
}

/// Writes through an open handle stay in RAM until the handle is closed, or until the hold
/// bound (2 s here) has passed; then they are committed even though the file is still open.
#[test]
fn open_file_is_committed_at_close_or_after_the_hold_bound() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("100ms"),
        hold_bound: Some("2s"),
        ..Opts::default()
    });
    fs::write(d.p("held.cfg"), b"old").unwrap();
    d.flush();
    let mut f = OpenOptions::new()
        .write(true)
        .open(d.p("held.cfg"))
        .unwrap();
    f.write_all(b"part1 ").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let early = content(&db::read_rows(&sb.db_path()), "held.cfg");
    assert_eq!(
        early.as_deref(),
        Some(&b"old"[..]),
        "nothing of an open file's writes yet"
    );
    f.write_all(b"part2").unwrap();
    let committed = wait_until(Duration::from_secs(6), || {
        content(&db::read_rows(&sb.db_path()), "held.cfg").as_deref() == Some(b"part1 part2")
    });
    assert!(
        committed,
        "still open past the hold bound: committed anyway"
    );
    drop(f);

    let mut g = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(d.p("closed.cfg"))
        .unwrap();
    g.write_all(b"done").unwrap();
    drop(g);
    let committed = wait_until(Duration::from_secs(3), || {
        content(&db::read_rows(&sb.db_path()), "closed.cfg").as_deref() == Some(b"done")
    });
    assert!(committed, "closed: committed within the delay");
}

/// The content of the row named `name` (NULL as empty), if there is one.
fn content(rows: &[Row], name: &str) -> Option<Vec<u8>> {
    rows_named(rows, name)
        .first()
        .map(|r| r.data.clone().unwrap_or_default())
}

/// SIGTERM commits everything, removes the pid file, leaves C's restart flag (0440,
/// root:www-data), and exits 0.
#[test]
fn sigterm_commits_everything_and_exits_cleanly() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts {
        commit_delay: Some("1s"),
        ..Opts::default()
    });
    fs::write(d.p("last.cfg"), b"written just before stop\n").unwrap();
    fs::create_dir(d.p("lastdir")).unwrap();
    let status = d.stop();
    assert!(status.success(), "exit status {status}");
    let rows = db::read_rows(&sb.db_path());
    assert_eq!(
        rows_named(&rows, "last.cfg")[0].data.as_deref(),
        Some(&b"written just before stop\n"[..])
    );
    assert_eq!(rows_named(&rows, "lastdir").len(), 1);
    assert!(
        !sb.run_dir().join("pve-cluster.pid").exists(),
        "pid file removed"
    );
    let flag =
        fs::metadata(sb.run_dir().join("pve-cluster/cfs-restart-flag")).expect("restart flag");
    assert_eq!(
        (flag.mode() & 0o7777, flag.uid(), flag.gid()),
        (0o440, 0, www_data_gid())
    );
}

/// C's startup (local.md §2.1, §2.8, §9): a fresh database in C's schema with its version row,
/// mode 0600; the lock file; /run/pve-cluster 0750 root:www-data; the pid file; the restart flag
/// that a stop leaves is removed by the next start.
#[test]
fn startup_files_match_c() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    let pid = fs::read_to_string(sb.run_dir().join("pve-cluster.pid")).unwrap();
    assert_eq!(pid, format!("{}\n", d.pid()));
    let m = fs::metadata(sb.run_dir().join("pve-cluster.pid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o644);
    let m = fs::metadata(sb.run_dir().join("pve-cluster")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o750, 0, www_data_gid())
    );
    let m = fs::metadata(sb.db_path()).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "config.db");
    let m = fs::metadata(sb.path().join("db/.pmxcfs.lockfile")).expect("C's lock file");
    assert_eq!(m.mode() & 0o7777, 0o600);

    let conn = db::open_ro(&sb.db_path()).unwrap();
    assert_eq!(
        db::schema(&conn).unwrap(),
        [C_SCHEMA],
        "C's schema, byte for byte"
    );
    assert_eq!(db::journal_mode(&conn).unwrap(), "wal");
    assert_eq!(db::integrity(&conn).unwrap(), "ok");
    let rows = db::rows(&conn).unwrap();
    assert_eq!(
        rows.len(),
        1,
        "a fresh database holds only the version row: {rows:?}"
    );
    let v = &rows[0];
    assert_eq!(
        (
            v.inode,
            v.parent,
            v.writer,
            v.kind,
            v.name.as_str(),
            &v.data
        ),
        (0, 0, 0, DT_REG, "__version__", &None)
    );
    assert!(v.version >= 1);
    drop(conn);
    assert!(d.stop().success());
    let flag = sb.run_dir().join("pve-cluster/cfs-restart-flag");
    assert!(flag.exists(), "a stop leaves the restart flag");
    let d = sb.start(&Opts::default());
    assert!(!flag.exists(), "the next start removes it");
    assert!(d.stop().success());
}

/// Issue #2: a corrupt database or a bad row is refused with a clear message naming the
/// problem (the inode for a bad row), the daemon does not start, and the file is not modified.
#[test]
fn bad_databases_are_refused_and_left_untouched() {
    let garbage = Sandbox::new();
    fs::write(garbage.db_path(), vec![0x42u8; 8192]).unwrap();
    let err = garbage
        .try_start(&Opts::default())
        .err()
        .expect("a garbage file is refused");
    assert!(
        err.contains("corrupt") && err.contains("config.db"),
        "{err}"
    );
    assert_eq!(fs::read(garbage.db_path()).unwrap(), vec![0x42u8; 8192]);

    let orphan = Sandbox::new();
    handmade_db(
        &orphan,
        "(0,0,9,0,1,8,'__version__',NULL), (7,5,7,0,1,8,'orphan.cfg',X'41')",
    );
    let before = fs::read(orphan.db_path()).unwrap();
    let err = orphan
        .try_start(&Opts::default())
        .err()
        .expect("an orphan row is refused");
    assert!(
        err.contains("missing directory inode") && err.contains('7'),
        "names the inode: {err}"
    );
    assert_eq!(
        fs::read(orphan.db_path()).unwrap(),
        before,
        "the file is not modified"
    );
}

/// A database in C's schema with the given rows (SQL tuples).
fn handmade_db(sb: &Sandbox, rows: &str) {
    let conn = rusqlite::Connection::open(sb.db_path()).unwrap();
    conn.execute_batch(&format!("PRAGMA journal_mode=WAL; {C_SCHEMA};"))
        .unwrap();
    conn.execute(&format!("INSERT INTO tree VALUES {rows}"), [])
        .unwrap();
}

/// local.md §1.5: duplicate VMIDs across nodes in the database make C refuse to start.
#[test]
fn duplicate_vmids_in_the_database_are_refused() {
    let sb = Sandbox::new();
    handmade_db(
        &sb,
        "(0,0,20,0,1,8,'__version__',NULL), (2,0,2,0,1,4,'nodes',NULL), \
         (3,2,3,0,1,4,'node1',NULL), (4,2,4,0,1,4,'node2',NULL), \
         (5,3,5,0,1,4,'qemu-server',NULL), (6,4,6,0,1,4,'qemu-server',NULL), \
         (7,5,7,0,1,8,'100.conf',X'41'), (8,6,8,0,1,8,'100.conf',X'42')",
    );
    let before = fs::read(sb.db_path()).unwrap();
    let err = sb
        .try_start(&Opts::default())
        .err()
        .expect("duplicate VMID refused");
    assert!(err.contains("100"), "names the guest: {err}");
    assert_eq!(fs::read(sb.db_path()).unwrap(), before);
}

/// Appendix A #9 (C hazard): a `__version__` row lower than an existing inode must not make new
/// entries reuse (and overwrite) that inode.
#[test]
fn regression_low_version_row_never_reuses_inodes() {
    let sb = Sandbox::new();
    handmade_db(
        &sb,
        "(0,0,3,0,1,8,'__version__',NULL), (9,0,9,0,1,8,'high.cfg',X'41')",
    );
    let d = sb.start(&Opts::default());
    for name in ["a", "b", "c", "d", "e", "f", "g"] {
        fs::write(d.p(name), name).unwrap();
    }
    assert_eq!(fs::read(d.p("high.cfg")).unwrap(), b"A");
    assert!(d.stop().success());
    let rows = db::read_rows(&sb.db_path());
    let tree = db::tree(&rows).expect("valid tree");
    assert_eq!(tree["high.cfg"].data, b"A", "row 9 intact");
    assert_eq!(tree["high.cfg"].inode, 9);
    for name in ["a", "b", "c", "d", "e", "f", "g"] {
        assert!(
            tree[name].inode > 9,
            "{name} got inode {}",
            tree[name].inode
        );
        assert_eq!(tree[name].data, name.as_bytes());
    }
    assert!(version_row(&rows).version >= rows.iter().map(|r| r.inode).max().unwrap());
}

/// The restart test: stop, start on the same database, the tree is identical (content,
/// modes, owners, mtimes, inode numbers), the rows are identical, a restart writes nothing, and
/// new entries never reuse an inode.
#[test]
fn restart_keeps_the_tree_and_the_rows() {
    let sb = Sandbox::new();
    let d = sb.start(&Opts::default());
    for dir in [
        "nodes",
        "nodes/node1",
        "nodes/node1/qemu-server",
        "nodes/node1/lxc",
        "nodes/node1/priv",
        "priv",
        "priv/lock",
        "priv/lock/held",
        "dir1",
        "empty-dir",
        "ha",
    ] {
        fs::create_dir(d.p(dir)).unwrap();
    }
    let mut rng = Rng::new(7);
    let big: Vec<u8> = (0..1 << 20).map(|_| rng.next_u64() as u8).collect();
    for (f, data) in [
        ("storage.cfg", &b"dir: local\n"[..]),
        ("empty.cfg", b""),
        ("big.bin", &big),
        ("nodes/node1/qemu-server/100.conf", b"memory: 512\n"),
        ("nodes/node1/lxc/101.conf", b"hostname: ct\n"),
        ("nodes/node1/priv/x.key", b"secret"),
        ("priv/token.cfg", b"root@pam!t 1234\n"),
        ("dir1/a.cfg", b"a"),
        ("dir1/b.cfg", b"b"),
        ("ha/resources.cfg", b"vm: 100\n"),
    ] {
        fs::write(d.p(f), data).unwrap();
    }
    // Children older than their parent (check_memdb loaddb1/loaddb2): the loader must resolve
    // forward references.
    fs::create_dir(d.p("dir2")).unwrap();
    fs::rename(d.p("dir1/a.cfg"), d.p("dir2/a.cfg")).unwrap();
    fs::rename(d.p("dir1/b.cfg"), d.p("dir2/b.cfg")).unwrap();
    fs::rename(d.p("empty-dir"), d.p("dir2/moved-dir")).unwrap();
    fs::write(d.p("dir2/moved-dir/inner.cfg"), b"inner").unwrap();
    lwcfs_compat_tests::ops::utime(&d.p("storage.cfg"), 1_000_000_000, 1_000_000_000).unwrap();
    lwcfs_compat_tests::ops::utime(&d.p("ha"), 1_500_000_000, 1_500_000_000).unwrap();
    set_contents(&d, "ha/resources.cfg", b"vm: 100\nvm: 101\n");

    let before = tree_of(&d);
    let vmlist: serde_json::Value =
        serde_json::from_slice(&fs::read(d.p(".vmlist")).unwrap()).unwrap();
    assert!(d.stop().success());
    let rows1 = db::read_rows(&sb.db_path());
    db::tree(&rows1).expect("a valid tree on disk");

    let d = sb.start(&Opts::default());
    let after = tree_of(&d);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (p, a) in &before {
        assert_eq!(&after[p], a, "{p} changed across the restart");
    }
    let vmlist2: serde_json::Value =
        serde_json::from_slice(&fs::read(d.p(".vmlist")).unwrap()).unwrap();
    // Per-guest versions are renumbered at load, as in C (local.md Appendix C #10).
    let guests = |v: &serde_json::Value| -> Vec<(String, serde_json::Value, serde_json::Value)> {
        let ids = v["ids"].as_object().expect("ids");
        ids.iter()
            .map(|(id, g)| (id.clone(), g["node"].clone(), g["type"].clone()))
            .collect()
    };
    assert_eq!(guests(&vmlist2), guests(&vmlist), "the same guests");
    assert!(d.p("priv/lock/held").is_dir(), "locks persist");
    assert!(d.stop().success());
    let rows2 = db::read_rows(&sb.db_path());
    assert_eq!(rows2, rows1, "a restart without changes writes nothing");

    let d = sb.start(&Opts::default());
    fs::write(d.p("after-restart.cfg"), b"new").unwrap();
    let ino = fs::metadata(d.p("after-restart.cfg")).unwrap().ino();
    let max = before.values().map(|n| n.ino).max().unwrap();
    assert!(
        ino > max,
        "new inode {ino} reuses a number (max before {max})"
    );
    assert!(d.stop().success());
    let rows3 = db::read_rows(&sb.db_path());
    let new = rows_named(&rows3, "after-restart.cfg");
    assert_eq!(new.len(), 1);
    assert!(rows1.iter().all(|r| r.inode < new[0].inode));
    assert!(version_row(&rows3).version > version_row(&rows1).version);
    let old: Vec<&Row> = rows3
        .iter()
        .filter(|r| r.inode != 0 && r.inode != new[0].inode)
        .collect();
    assert_eq!(
        old,
        rows1.iter().filter(|r| r.inode != 0).collect::<Vec<_>>()
    );
}

/// What a writer thread did to `crash/` until the daemon died under it.
struct LoopEnd {
    hist: History,
    /// An operation failed before the kill: a daemon bug, not the crash.
    early_error: Option<String>,
    ops: u64,
}

/// Write loop of one crash round: random files in `crash/` updated by tmp + rename, rewritten in
/// place, appended to, removed; some fsync'ed. Every state is recorded before the syscall that
/// makes it, and a file is marked synced only after fsync returned.
fn write_loop(
    mnt: PathBuf,
    mut rng: Rng,
    mut hist: History,
    round: u32,
    killed: Arc<AtomicBool>,
) -> LoopEnd {
    let mut n = 0u64;
    let fail = |e: std::io::Error, what: String, killed: &AtomicBool| -> Option<String> {
        (!killed.load(Ordering::SeqCst)).then(|| format!("{what}: {e}"))
    };
    loop {
        n += 1;
        let f = format!("crash/f{}.cfg", rng.range(0, 4));
        let tag = format!("r{round}n{n}:");
        let r = match rng.range(0, 10) {
            0..=3 => tmp_rename(&mnt, &f, &tag, &mut rng, &mut hist),
            4..=6 => rewrite(&mnt, &f, &tag, &mut rng, &mut hist),
            7 => {
                let len = rng.range(1, 3000) as usize;
                let chunk = rng.text(&tag, len);
                match hist.current(&f).map(<[u8]>::to_vec) {
                    Some(mut cur) => {
                        cur.extend_from_slice(&chunk);
                        hist.set(&f, Some(cur));
                        OpenOptions::new()
                            .append(true)
                            .open(mnt.join(&f))
                            .and_then(|mut h| one_write(&mut h, &chunk))
                    }
                    None => Ok(()),
                }
            }
            8 => match hist.current(&f) {
                Some(_) => {
                    hist.set(&f, None);
                    fs::remove_file(mnt.join(&f))
                }
                None => Ok(()),
            },
            _ => File::open(mnt.join("crash"))
                .and_then(|d| d.sync_all())
                .map(|()| {
                    let paths: Vec<String> = hist.paths().map(str::to_owned).collect();
                    for p in paths {
                        hist.synced(&p);
                    }
                }),
        };
        if let Err(e) = r {
            let early_error = fail(e, format!("op {n} on {f}"), &killed);
            return LoopEnd {
                hist,
                early_error,
                ops: n,
            };
        }
    }
}

/// One `write(2)`, all of it (a short write would leave a state that was never recorded).
fn one_write(f: &mut File, data: &[u8]) -> std::io::Result<()> {
    let n = f.write(data)?;
    if n != data.len() {
        return Err(std::io::Error::other(format!(
            "short write {n} of {}",
            data.len()
        )));
    }
    Ok(())
}

/// Write `content` in chunks of at most 8 KiB (one FUSE request each), recording each prefix.
fn write_chunks(
    f: &mut File,
    rel: &str,
    content: &[u8],
    rng: &mut Rng,
    hist: &mut History,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < content.len() {
        let len = (rng.range(1, 8193) as usize).min(content.len() - done);
        hist.set(rel, Some(content[..done + len].to_vec()));
        let n = f.write(&content[done..done + len])?;
        if n != len {
            return Err(std::io::Error::other(format!("short write {n} of {len}")));
        }
        done += len;
    }
    Ok(())
}

fn tmp_rename(
    mnt: &Path,
    f: &str,
    tag: &str,
    rng: &mut Rng,
    hist: &mut History,
) -> std::io::Result<()> {
    let tmp = format!("{f}.tmp.{}", tag.trim_end_matches(':'));
    let len = rng.range(0, 24_000) as usize;
    let content = rng.text(tag, len);
    hist.set(&tmp, Some(Vec::new()));
    let mut h = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mnt.join(&tmp))?;
    write_chunks(&mut h, &tmp, &content, rng, hist)?;
    if rng.chance(1, 4) {
        h.sync_all()?;
        hist.synced(&tmp);
    }
    drop(h);
    hist.set(f, Some(content));
    hist.set(&tmp, None);
    fs::rename(mnt.join(&tmp), mnt.join(f))?;
    if rng.chance(1, 4) {
        File::open(mnt.join(f))?.sync_all()?;
        hist.synced(f);
    }
    Ok(())
}

fn rewrite(
    mnt: &Path,
    f: &str,
    tag: &str,
    rng: &mut Rng,
    hist: &mut History,
) -> std::io::Result<()> {
    let len = rng.range(0, 24_000) as usize;
    let content = rng.text(tag, len);
    hist.set(f, Some(Vec::new()));
    let mut h = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(mnt.join(f))?;
    write_chunks(&mut h, f, &content, rng, hist)?;
    if rng.chance(1, 3) {
        h.sync_all()?;
        hist.synced(f);
    }
    Ok(())
}

/// The files below `crash/` as the database holds them, after checking the database opens,
/// passes `PRAGMA integrity_check` and describes a valid tree.
fn crash_files_on_disk(sb: &Sandbox, ctx: &str) -> BTreeMap<String, Vec<u8>> {
    let conn =
        db::open_ro(&sb.db_path()).unwrap_or_else(|e| panic!("{ctx}: database does not open: {e}"));
    assert_eq!(
        db::integrity(&conn).unwrap(),
        "ok",
        "{ctx}: integrity_check"
    );
    let rows = db::rows(&conn).unwrap_or_else(|e| panic!("{ctx}: rows: {e}"));
    let tree = db::tree(&rows).unwrap_or_else(|e| panic!("{ctx}: invalid tree on disk: {e}"));
    db::files_under(&tree, "crash")
}

/// The crash test: `kill -9` at a random point of a write loop, many rounds. Each time
/// the database opens and passes the integrity check, every fsync'ed file is there and whole,
/// no file is torn, and the restarted daemon serves exactly what the database holds.
/// `LWCFS_CRASH_SEED` replays a run, `LWCFS_CRASH_ROUNDS` changes the number of rounds (20).
#[test]
fn kill9_at_random_points_loses_nothing_synced_and_tears_nothing() {
    let (mut rng, seed) = Rng::from_env_or_clock("LWCFS_CRASH_SEED");
    let rounds: u32 = std::env::var("LWCFS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("crash test: LWCFS_CRASH_SEED={seed}, {rounds} rounds");
    let sb = Sandbox::new();
    {
        let d = sb.start(&Opts::default());
        fs::create_dir(d.p("crash")).unwrap();
        assert!(d.stop().success());
    }
    let mut on_disk = BTreeMap::new();
    let mut total_ops = 0;
    for round in 0..rounds {
        let ctx = format!("seed {seed}, round {round}");
        let delay = ["20ms", "100ms", "250ms"][rng.range(0, 3) as usize];
        let mut d = sb.start(&Opts {
            commit_delay: Some(delay),
            ..Opts::default()
        });
        let mut served = BTreeMap::new();
        for e in fs::read_dir(d.p("crash")).unwrap() {
            let e = e.unwrap();
            let name = format!("crash/{}", e.file_name().to_string_lossy());
            served.insert(name, fs::read(e.path()).unwrap());
        }
        assert_eq!(
            served, on_disk,
            "{ctx}: the restarted daemon serves what the database holds"
        );

        let killed = Arc::new(AtomicBool::new(false));
        let (mnt, k, hist) = (d.mnt(), killed.clone(), History::new(&on_disk));
        let loop_rng = Rng::new(rng.next_u64());
        let writer = std::thread::spawn(move || write_loop(mnt, loop_rng, hist, round, k));
        std::thread::sleep(Duration::from_millis(rng.range(30, 400)));
        assert!(d.is_running(), "{ctx}: the daemon died by itself");
        killed.store(true, Ordering::SeqCst);
        d.kill9();
        let end = writer.join().expect("write loop panicked");
        if let Some(e) = end.early_error {
            panic!("{ctx}: an operation failed before the kill: {e}");
        }
        total_ops += end.ops;
        on_disk = crash_files_on_disk(&sb, &ctx);
        if let Err(e) = end.hist.check(&on_disk) {
            panic!("{ctx}: after {} operations:\n{e}", end.ops);
        }
    }
    eprintln!("crash test: {total_ops} operations in {rounds} rounds");
    let d = sb.start(&Opts::default());
    assert!(d.stop().success());
    crash_files_on_disk(&sb, "after a clean stop");
}

/// A database written by C pmxcfs 9.1.6 (fixtures/config-c.db, with its rows in
/// config-c.tree.json) is served as it is, and stays readable by C: the schema is untouched,
/// the old rows are unchanged, new inodes continue after C's version.
#[test]
fn c_database_is_served_and_stays_c_compatible() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let golden: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures.join("config-c.tree.json")).unwrap()).unwrap();
    let golden_rows: Vec<Row> = golden["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Row {
            inode: r["inode"].as_i64().unwrap(),
            parent: r["parent"].as_i64().unwrap(),
            version: r["version"].as_i64().unwrap(),
            writer: r["writer"].as_i64().unwrap(),
            mtime: r["mtime"].as_i64().unwrap(),
            kind: r["type"].as_i64().unwrap(),
            name: r["name"].as_str().unwrap().to_owned(),
            data: r["data"].as_str().map(|s| s.as_bytes().to_vec()),
        })
        .collect();
    let sb = Sandbox::new();
    fs::copy(fixtures.join("config-c.db"), sb.db_path()).unwrap();
    fs::set_permissions(sb.db_path(), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        db::read_rows(&sb.db_path()),
        golden_rows,
        "the fixture matches its listing"
    );

    let d = sb.start(&Opts::default());
    let tree = db::tree(&golden_rows).unwrap();
    let served = tree_of(&d);
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        tree.keys().collect::<Vec<_>>()
    );
    for (p, e) in &tree {
        let n = &served[p];
        assert_eq!(n.mtime, e.mtime, "{p}: mtime");
        let private = p == "priv" || p.starts_with("priv/") || p.contains("/priv");
        let perm = match (e.kind, private) {
            (db::DbKind::Dir, false) => 0o755,
            (db::DbKind::Dir, true) => 0o700,
            (db::DbKind::File, false) => 0o640,
            (db::DbKind::File, true) => 0o600,
        };
        assert_eq!(n.perm, perm, "{p}: mode");
        if e.kind == db::DbKind::File {
            assert_eq!(n.content.as_deref(), Some(&e.data[..]), "{p}: content");
        }
    }
    let vmlist: serde_json::Value =
        serde_json::from_slice(&fs::read(d.p(".vmlist")).unwrap()).unwrap();
    assert_eq!(vmlist["ids"]["100"]["type"], "qemu");
    assert_eq!(vmlist["ids"]["200"]["type"], "lxc");
    assert_eq!(vmlist["ids"]["200"]["node"], HOSTNAME);
    assert_eq!(
        fs::read(d.p("local/qemu-server/100.conf")).unwrap(),
        tree["nodes/node1/qemu-server/100.conf"].data
    );

    fs::write(d.p("new.cfg"), b"written by lwcfs\n").unwrap();
    assert!(d.stop().success());
    let conn = db::open_ro(&sb.db_path()).unwrap();
    assert_eq!(db::schema(&conn).unwrap(), [C_SCHEMA]);
    assert_eq!(db::journal_mode(&conn).unwrap(), "wal");
    let rows = db::rows(&conn).unwrap();
    let c_version = version_row(&golden_rows).version;
    let new = rows_named(&rows, "new.cfg");
    assert_eq!(new.len(), 1);
    assert!(
        new[0].inode > c_version,
        "inode {} after C's version {c_version}",
        new[0].inode
    );
    assert_eq!(new[0].version, version_row(&rows).version);
    let old: Vec<&Row> = rows
        .iter()
        .filter(|r| r.inode != 0 && r.name != "new.cfg")
        .collect();
    assert_eq!(
        old,
        golden_rows
            .iter()
            .filter(|r| r.inode != 0)
            .collect::<Vec<_>>(),
        "C's rows untouched"
    );
}
