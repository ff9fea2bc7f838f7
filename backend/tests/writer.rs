//! The writer against a real SQLite file: what reaches the disk, in how many transactions, and
//! when. A model test drives random operations through a `Memdb` and the writer and checks
//! that the reloaded database is the in-RAM tree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lwcfs_backend::writer::root_record;
use lwcfs_backend::{load, spawn, Defer, Stats, WriterConfig, WriterHandle};
use lwcfs_memdb::{Applied, Ctx, Inode, Kind, Memdb, Mtime, NodeId, Op, TreePath};
use rusqlite::Connection;

const NOW: Mtime = Mtime(1_800_000_000);

fn cfg(delay_ms: u64, bound_ms: u64) -> WriterConfig {
    WriterConfig {
        commit_delay: Duration::from_millis(delay_ms),
        hold_bound: Duration::from_millis(bound_ms),
    }
}

/// Which operations the daemon marks `at_once` (every one but a plain write).
fn at_once(op: &Op) -> bool {
    !matches!(op, Op::Write { .. })
}

fn p(s: &str) -> TreePath {
    TreePath::parse(s)
}

/// A tree, its database and its writer, as the daemon wires them.
struct Fs {
    _dir: tempfile::TempDir,
    path: PathBuf,
    tree: Arc<Mutex<Memdb>>,
    writer: Option<WriterHandle>,
}

impl Fs {
    fn new(cfg: WriterConfig) -> Fs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        Fs::open_at(dir, path, cfg)
    }

    fn open_at(dir: tempfile::TempDir, path: PathBuf, cfg: WriterConfig) -> Fs {
        let memdb = load::open(&path, NOW).unwrap().memdb;
        let tree = Arc::new(Mutex::new(memdb));
        let writer = spawn(&path, tree.clone(), cfg).unwrap();
        Fs {
            _dir: dir,
            path,
            tree,
            writer: Some(writer),
        }
    }

    fn w(&self) -> &WriterHandle {
        self.writer.as_ref().unwrap()
    }

    /// Apply and report under the tree lock, as the daemon does.
    fn apply(&self, op: Op) -> Result<Applied, lwcfs_memdb::Error> {
        self.apply_with(op, false)
    }

    /// With `lazy`, report without `at_once` whatever the operation.
    fn apply_with(&self, op: Op, lazy: bool) -> Result<Applied, lwcfs_memdb::Error> {
        let mut db = self.tree.lock().unwrap();
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: NOW,
            now: NOW,
        };
        let applied = db.apply(&op, ctx)?;
        self.w().changed(&applied.changes, at_once(&op) && !lazy);
        Ok(applied)
    }

    fn ok(&self, op: Op) -> Inode {
        self.apply(op).unwrap().inode
    }

    fn create(&self, path: &str) -> Inode {
        self.ok(Op::Create { path: p(path) })
    }

    fn write(&self, path: &str, data: &[u8]) -> Inode {
        self.ok(Op::Write {
            path: p(path),
            offset: 0,
            data: data.to_vec(),
            truncate: true,
        })
    }

    /// `file_set_contents` of `data` onto `path`, the rename reported with `rule`.
    fn set_contents_deferrable(&self, path: &str, data: &[u8], rule: Defer) {
        let tmp = format!("{path}.tmp.1");
        let ino = self.create(&tmp);
        self.w().hold(ino);
        self.write(&tmp, data);
        self.w().release(ino);
        let mut db = self.tree.lock().unwrap();
        let op = Op::Rename {
            from: p(&tmp),
            to: p(path),
        };
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: NOW,
            now: NOW,
        };
        let applied = db.apply(&op, ctx).unwrap();
        self.w().changed_deferrable(&applied.changes, true, rule);
    }

    fn stats(&self) -> Stats {
        self.w().stats()
    }

    /// The stored tree, loaded as at startup.
    fn disk(&self) -> Memdb {
        disk_tree(&self.path)
    }

    fn disk_file(&self, path: &str) -> Option<Vec<u8>> {
        self.disk().read_path(&p(path)).ok().map(|d| d.to_vec())
    }

    fn shutdown(&mut self) {
        self.writer.take().unwrap().shutdown().unwrap();
    }
}

fn disk_tree(path: &Path) -> Memdb {
    let stored = load::read(path).unwrap();
    Memdb::load(stored.root.unwrap(), stored.rows, NOW).unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn tmp_write_rename_reaches_disk_once_under_the_final_name() {
    let fs = Fs::new(cfg(100, 5000));
    fs.create("storage.cfg");
    fs.write("storage.cfg", b"old");
    fs.w().flush().unwrap();
    let old = fs.tree.lock().unwrap().resolve(&p("storage.cfg")).unwrap();
    let base = fs.stats();

    // PVE's file_set_contents: create a temp file, write it through a handle, close, rename.
    let tmp = fs.create("storage.cfg.tmp.1234");
    fs.w().hold(tmp);
    fs.write("storage.cfg.tmp.1234", b"new content");
    fs.w().release(tmp);
    fs.ok(Op::Rename {
        from: p("storage.cfg.tmp.1234"),
        to: p("storage.cfg"),
    });

    wait_until("the commit", || fs.stats().transactions > base.transactions);
    sleep_ms(300);
    let s = fs.stats();
    assert_eq!(s.transactions - base.transactions, 1, "{s:?}");
    assert_eq!(
        s.rows_upserted - base.rows_upserted,
        1,
        "only the final row: {s:?}"
    );
    assert_eq!(
        s.rows_deleted - base.rows_deleted,
        1,
        "the replaced target: {s:?}"
    );
    assert_eq!(s.blob_bytes - base.blob_bytes, b"new content".len() as u64);
    let disk = fs.disk();
    let names: Vec<String> = disk.records().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["storage.cfg".to_string()]);
    assert_eq!(disk.resolve(&p("storage.cfg")), Some(tmp));
    assert!(disk.record(old).is_none());
    assert_eq!(fs.disk_file("storage.cfg").unwrap(), b"new content");
    assert_eq!(
        disk.version(),
        fs.tree.lock().unwrap().version(),
        "version row in the same txn"
    );
}

#[test]
fn mkdir_and_rmdir_within_the_delay_write_nothing() {
    let fs = Fs::new(cfg(100, 5000));
    fs.ok(Op::Mkdir { path: p("priv") });
    fs.ok(Op::Mkdir {
        path: p("priv/lock"),
    });
    fs.w().flush().unwrap();
    let base = fs.stats();
    let disk_version = fs.disk().version();

    fs.ok(Op::Mkdir {
        path: p("priv/lock/vm-100"),
    });
    fs.ok(Op::Delete {
        path: p("priv/lock/vm-100"),
    });
    sleep_ms(400);
    let s = fs.stats();
    assert_eq!(
        s.transactions, base.transactions,
        "not even the version row: {s:?}"
    );
    assert_eq!(s.pending, 0, "the gone inode is settled");
    assert_eq!(fs.disk().version(), disk_version);

    // A flush stores the version the tree reached (no row carries it).
    fs.w().flush().unwrap();
    assert_eq!(fs.stats().transactions, base.transactions + 1);
    assert_eq!(fs.disk().version(), fs.tree.lock().unwrap().version());
    assert_eq!(fs.stats().rows_upserted, base.rows_upserted);
}

/// A shutdown after lock directories made and removed writes nothing: only the version moved.
#[test]
fn shutdown_after_net_zero_changes_writes_no_transaction() {
    let mut fs = Fs::new(cfg(50, 5000));
    fs.ok(Op::Mkdir { path: p("priv") });
    fs.w().flush().unwrap();
    let disk_version = fs.disk().version();
    for i in 0..10 {
        let path = p(&format!("priv/l{i}"));
        fs.ok(Op::Mkdir { path: path.clone() });
        fs.ok(Op::Delete { path });
    }
    sleep_ms(200);
    let s = fs.stats();
    assert_eq!(s.transactions, 1, "only the first flush: {s:?}");
    fs.shutdown();
    assert_eq!(
        fs.disk().version(),
        disk_version,
        "the version row did not move"
    );
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
}

/// A rule for the tests: contents equal but for their last byte (a stand-in for a timestamp).
fn same_but_last(stored: &[u8], current: &[u8]) -> bool {
    stored.len() == current.len()
        && !stored.is_empty()
        && stored[..stored.len() - 1] == current[..current.len() - 1]
}

fn rule(bound_ms: u64) -> Defer {
    Defer {
        bound: Duration::from_millis(bound_ms),
        same: same_but_last,
    }
}

/// Deferrable rewrites on a real database: the stored content is read back once, rewrites the
/// rule accepts stay in RAM until the bound, a flush stores the newest, a real change is stored
/// at once.
#[test]
fn deferred_rewrites_stay_off_disk_until_bound_flush_or_change() {
    let fs = Fs::new(cfg(20, 5000));
    fs.create("lrm_status");
    fs.write("lrm_status", b"idle 0");
    fs.w().flush().unwrap();
    let base = fs.stats();

    for t in 1..6 {
        fs.set_contents_deferrable("lrm_status", format!("idle {t}").as_bytes(), rule(60_000));
        sleep_ms(60);
    }
    let s = fs.stats();
    assert_eq!(s.transactions, base.transactions, "{s:?}");
    // Each rewrite is deferred once, unless the next one replaced it before a batch ran.
    assert!((1..=5).contains(&s.deferred_rewrites), "{s:?}");
    assert_eq!(fs.disk_file("lrm_status").unwrap(), b"idle 0");
    assert_eq!(
        fs.disk().records().len(),
        1,
        "one file at the place on disk"
    );
    assert_eq!(
        fs.tree
            .lock()
            .unwrap()
            .read_path(&p("lrm_status"))
            .unwrap()
            .as_slice(),
        b"idle 5"
    );

    fs.w().flush().unwrap();
    assert_eq!(fs.stats().transactions, base.transactions + 1);
    assert_eq!(fs.disk_file("lrm_status").unwrap(), b"idle 5");

    // Stored with its rule: compared from memory now. A real change goes at once.
    fs.set_contents_deferrable("lrm_status", b"idle 6", rule(60_000));
    sleep_ms(80);
    assert_eq!(fs.stats().transactions, base.transactions + 1);
    fs.set_contents_deferrable("lrm_status", b"busy 7", rule(60_000));
    // The commit is visible in the database a moment before the writer counts it.
    wait_until("the real change", || {
        fs.disk_file("lrm_status").as_deref() == Some(b"busy 7")
            && fs.stats().transactions == base.transactions + 2
    });

    // The bound: a rewrite deferred over the stored row is stored once the bound has passed,
    // counted from the first deferral even though more rewrites follow.
    fs.set_contents_deferrable("lrm_status", b"busy 8", rule(300));
    sleep_ms(150);
    fs.set_contents_deferrable("lrm_status", b"busy 9", rule(300));
    assert_eq!(fs.disk_file("lrm_status").unwrap(), b"busy 7");
    wait_until("the bound", || {
        fs.disk_file("lrm_status").as_deref() == Some(b"busy 9")
            && fs.stats().transactions >= base.transactions + 3
    });
    assert_eq!(fs.stats().transactions, base.transactions + 3);
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
}

#[test]
fn shutdown_stores_deferred_rewrites() {
    let mut fs = Fs::new(cfg(20, 5000));
    fs.create("lrm_status");
    fs.write("lrm_status", b"idle 0");
    fs.w().flush().unwrap();
    fs.set_contents_deferrable("lrm_status", b"idle 1", rule(60_000));
    sleep_ms(80);
    assert_eq!(fs.disk_file("lrm_status").unwrap(), b"idle 0");
    fs.shutdown();
    assert_eq!(fs.disk_file("lrm_status").unwrap(), b"idle 1");
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
}

#[test]
fn many_files_changed_in_one_window_are_one_transaction() {
    let fs = Fs::new(cfg(200, 5000));
    fs.ok(Op::Mkdir { path: p("nodes") });
    for i in 0..50 {
        fs.create(&format!("nodes/f{i}"));
        fs.write(&format!("nodes/f{i}"), format!("content {i}").as_bytes());
    }
    wait_until("the commit", || fs.stats().transactions > 0);
    sleep_ms(400);
    let s = fs.stats();
    assert_eq!(s.transactions, 1, "{s:?}");
    assert_eq!(s.rows_upserted, 51, "{s:?}");
    let disk = fs.disk();
    assert_eq!(disk.records(), fs.tree.lock().unwrap().records());
}

#[test]
fn held_file_waits_for_release() {
    let fs = Fs::new(cfg(20, 5000));
    let ino = fs.create("lrm_status");
    fs.write("lrm_status", b"v1");
    wait_until("the first commit", || {
        fs.disk_file("lrm_status").as_deref() == Some(b"v1")
    });

    fs.w().hold(ino);
    fs.write("lrm_status", b"v2 partial");
    fs.write("lrm_status", b"v2 complete");
    sleep_ms(150);
    assert_eq!(
        fs.disk_file("lrm_status").unwrap(),
        b"v1",
        "held: not committed"
    );
    assert_eq!(fs.stats().pending, 1);

    fs.w().release(ino);
    wait_until("the commit after release", || {
        fs.disk_file("lrm_status").as_deref() == Some(b"v2 complete")
    });
    assert_eq!(fs.stats().pending, 0);
}

#[test]
fn held_file_is_committed_after_the_hold_bound() {
    let fs = Fs::new(cfg(20, 300));
    let ino = fs.create("log");
    wait_until("the create", || fs.disk_file("log").is_some());
    let start = Instant::now();
    fs.w().hold(ino);
    fs.write("log", b"still open");
    sleep_ms(100);
    assert_eq!(fs.disk_file("log").unwrap(), b"", "inside the bound");
    wait_until("the bound", || {
        fs.disk_file("log").as_deref() == Some(b"still open")
    });
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    // Still held: the next write waits again.
    fs.write("log", b"still open, more");
    sleep_ms(100);
    assert_eq!(fs.disk_file("log").unwrap(), b"still open");
}

#[test]
fn held_file_is_committed_at_once_on_rename() {
    let fs = Fs::new(cfg(20, 5000));
    let ino = fs.create("a");
    fs.w().hold(ino);
    fs.write("a", b"data");
    fs.ok(Op::Rename {
        from: p("a"),
        to: p("b"),
    });
    wait_until("the rename", || {
        fs.disk_file("b").as_deref() == Some(b"data")
    });
    assert!(fs.disk_file("a").is_none());
}

#[test]
fn held_new_file_waits_for_its_release_its_directory_does_not() {
    // A file created and held by the handle that writes it is a leaf: its directory reaches
    // the disk at once, the file only when the handle is released (a state the tree had).
    let fs = Fs::new(cfg(20, 5000));
    fs.ok(Op::Mkdir { path: p("d") });
    let f = {
        let mut db = fs.tree.lock().unwrap();
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: NOW,
            now: NOW,
        };
        let a = db.apply(&Op::Create { path: p("d/f") }, ctx).unwrap();
        fs.w().changed(&a.changes, false);
        fs.w().hold(a.inode);
        a.inode
    };
    wait_until("the commit", || fs.stats().transactions > 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let disk = fs.disk();
    assert!(disk.resolve(&p("d")).is_some(), "the directory is stored");
    assert!(
        disk.record(f).is_none(),
        "the held new file is not stored yet"
    );
    fs.w().release(f);
    wait_until("the file's commit", || fs.disk().record(f).is_some());
}

#[test]
fn flush_commits_held_files_and_syncs() {
    let fs = Fs::new(cfg(10_000, 60_000));
    let ino = fs.create("f");
    fs.w().flush().unwrap();
    let s = fs.stats();
    assert_eq!((s.transactions, s.flushes, s.syncs), (1, 1, 1), "{s:?}");
    fs.w().hold(ino);
    fs.write("f", b"durable");
    fs.w().flush().unwrap();
    assert_eq!(fs.disk_file("f").unwrap(), b"durable", "held, but flushed");
    let s = fs.stats();
    assert_eq!((s.transactions, s.flushes, s.syncs), (2, 2, 2), "{s:?}");
    // Nothing new: no transaction and no sync.
    fs.w().flush().unwrap();
    let s = fs.stats();
    assert_eq!((s.transactions, s.flushes, s.syncs), (2, 3, 2), "{s:?}");
}

#[test]
fn shutdown_commits_everything_and_removes_the_wal() {
    let mut fs = Fs::new(cfg(10_000, 60_000));
    fs.ok(Op::Mkdir { path: p("nodes") });
    let ino = fs.create("nodes/held");
    fs.w().hold(ino);
    fs.write("nodes/held", b"held data");
    fs.create("nodes/plain");
    let want = fs.tree.lock().unwrap().clone();
    fs.shutdown();
    let wal = PathBuf::from(format!("{}-wal", fs.path.display()));
    assert!(!wal.exists(), "the close checkpointed and removed the WAL");
    let disk = fs.disk();
    assert_eq!(disk.records(), want.records());
    assert_eq!(disk.version(), want.version());
}

/// Files of 256 KiB holding `seed`, enough of them for a large batch.
fn large_batch(fs: &Fs, seed: u8) {
    fs.ok(Op::Mkdir { path: p("big") });
    let n = lwcfs_backend::LARGE_BATCH_BYTES / (256 << 10) + 2;
    for i in 0..n {
        let path = format!("big/f{i}");
        fs.create(&path);
        fs.write(&path, &vec![seed.wrapping_add(i as u8); 256 << 10]);
    }
}

fn journal_mode(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap()
}

fn file_len(path: &Path, suffix: &str) -> Option<u64> {
    std::fs::metadata(format!("{}{suffix}", path.display()))
        .ok()
        .map(|m| m.len())
}

/// The whole tree a joining node receives is one batch: written once, to the main file, and the
/// database is in WAL mode again afterwards.
#[test]
fn large_batch_is_committed_through_a_rollback_journal_and_wal_mode_returns() {
    let mut fs = Fs::new(cfg(50, 5000));
    large_batch(&fs, 1);
    fs.w().flush().unwrap();
    let s = fs.stats();
    assert_eq!((s.transactions, s.large_batches), (1, 1), "{s:?}");
    assert!(s.blob_bytes >= lwcfs_backend::LARGE_BATCH_BYTES, "{s:?}");
    // The batch never went through the WAL, and no journal is left.
    assert!(file_len(&fs.path, "-wal").unwrap_or(0) < 64 << 10);
    assert_eq!(file_len(&fs.path, "-journal"), None);
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
    // Small batches go through the WAL again.
    fs.write("big/f0", b"small");
    fs.w().flush().unwrap();
    let s = fs.stats();
    assert_eq!((s.transactions, s.large_batches), (2, 1), "{s:?}");
    assert!(file_len(&fs.path, "-wal").unwrap_or(0) > 0);
    fs.shutdown();
    assert_eq!(journal_mode(&fs.path), "wal");
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
}

/// SQLite cannot leave WAL mode while another connection has the database open: the batch then
/// goes through the WAL, at once (no waiting for the other connection).
#[test]
fn large_batch_goes_through_the_wal_while_another_connection_is_open() {
    let mut fs = Fs::new(cfg(50, 5000));
    let other = Connection::open(&fs.path).unwrap();
    let _: i64 = other
        .query_row("SELECT count(*) FROM tree", [], |r| r.get(0))
        .unwrap();
    large_batch(&fs, 2);
    fs.w().flush().unwrap();
    let s = fs.stats();
    assert_eq!((s.transactions, s.large_batches), (1, 0), "{s:?}");
    drop(other);
    fs.shutdown();
    assert_eq!(journal_mode(&fs.path), "wal");
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
}

#[test]
fn dropping_the_handle_commits_too() {
    let mut fs = Fs::new(cfg(10_000, 60_000));
    fs.create("x");
    drop(fs.writer.take());
    assert!(fs.disk_file("x").is_some());
}

#[test]
fn failed_commit_marks_failed_keeps_pending_and_flush_retries() {
    let fs = Fs::new(cfg(20, 5000));
    fs.create("before");
    wait_until("the first commit", || fs.disk_file("before").is_some());

    // A real SQLite failure on the real file: a trigger refuses one row.
    let conn = Connection::open(&fs.path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON tree WHEN NEW.name = 'poison'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    fs.create("good");
    fs.create("poison");
    wait_until("the failure", || fs.w().failed());
    let s = fs.stats();
    assert_eq!(s.failed_commits, 1, "{s:?}");
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("injected failure"),
        "{s:?}"
    );
    assert!(
        fs.disk_file("good").is_none(),
        "the whole batch was rolled back"
    );
    assert!(fs.disk_file("before").is_some(), "nothing stored is lost");

    // No timer commits after a failure; the pending set is kept.
    fs.create("later");
    sleep_ms(100);
    assert!(fs.disk_file("later").is_none());
    assert!(fs.w().flush().is_err(), "the cause is still there");

    conn.execute_batch("DROP TRIGGER poison;").unwrap();
    fs.w().flush().unwrap();
    for f in ["good", "poison", "later"] {
        assert!(fs.disk_file(f).is_some(), "{f} stored by the flush");
    }
    assert!(fs.w().failed(), "failed stays set, as C's errors flag");
    assert_eq!(fs.disk().records(), fs.tree.lock().unwrap().records());
}

#[test]
fn writer_on_the_c_database_keeps_it_loadable_by_c_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat-tests/fixtures");
    std::fs::copy(vectors.join("config-c.db"), &path).unwrap();
    let mut fs = Fs::open_at(dir, path, cfg(20, 5000));
    fs.write("nodes/node1/qemu-server/100.conf", b"cores: 4\n");
    fs.ok(Op::Rename {
        from: p("nodes/node1/renamed-dir"),
        to: p("nodes/node1/renamed-again"),
    });
    fs.ok(Op::Delete {
        path: p("ha/crm_commands"),
    });
    let want = fs.tree.lock().unwrap().clone();
    fs.shutdown();
    let disk = fs.disk();
    assert_eq!(disk.records(), want.records());
    assert_eq!(disk.version(), want.version());
    let conn = Connection::open(&fs.path).unwrap();
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'tree'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sql, lwcfs_backend::schema::expected_tree_sql());
    let dir_data: Option<Vec<u8>> = conn
        .query_row(
            "SELECT data FROM tree WHERE name = 'renamed-again'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dir_data, None, "lwcfs stores directories with NULL data");
}

/// A tree whose snapshot first runs a hook, outside the tree lock: an operation that lands
/// between the writer's decision to commit and its taking of the lock.
struct Racing {
    tree: Arc<Mutex<Memdb>>,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl lwcfs_backend::Snapshot for Racing {
    fn snapshot(
        &self,
        pick: &mut dyn FnMut() -> Vec<Inode>,
    ) -> (lwcfs_backend::Rows, lwcfs_memdb::load::RootRecord) {
        let hook = self.hook.lock().unwrap().take();
        if let Some(h) = hook {
            h();
        }
        self.tree.snapshot(pick)
    }
}

#[test]
fn operation_landing_just_before_the_snapshot_is_in_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let tree = Arc::new(Mutex::new(load::open(&path, NOW).unwrap().memdb));
    let racing = Arc::new(Racing {
        tree: tree.clone(),
        hook: Mutex::new(None),
    });
    let w = Arc::new(spawn(&path, racing.clone(), cfg(200, 5000)).unwrap());
    let ctx = Ctx {
        writer: NodeId(0),
        mtime: NOW,
        now: NOW,
    };
    let apply = |w: &WriterHandle, op: Op| {
        let mut db = tree.lock().unwrap();
        let a = db.apply(&op, ctx).unwrap();
        w.changed(&a.changes, at_once(&op));
    };
    apply(&w, Op::Create { path: p("x") });
    w.flush().unwrap();
    apply(
        &w,
        Op::Write {
            path: p("x"),
            offset: 0,
            data: b"1".to_vec(),
            truncate: true,
        },
    );
    // Between the writer's wake-up and its snapshot: a new directory, and x moved into it.
    let (w2, tree2) = (w.clone(), tree.clone());
    *racing.hook.lock().unwrap() = Some(Box::new(move || {
        let mut db = tree2.lock().unwrap();
        for op in [
            Op::Mkdir { path: p("d") },
            Op::Rename {
                from: p("x"),
                to: p("d/x"),
            },
        ] {
            let a = db.apply(&op, ctx).unwrap();
            w2.changed(&a.changes, true);
        }
    }));
    wait_until("the batch", || w.stats().transactions == 2);
    let disk = disk_tree(&path);
    assert!(
        disk.resolve(&p("d/x")).is_some(),
        "the directory is in the same batch"
    );
    assert_eq!(disk.records(), tree.lock().unwrap().records());
    sleep_ms(300);
    assert_eq!(
        w.stats().transactions,
        2,
        "nothing was left for a later batch"
    );
    drop(racing);
    Arc::try_unwrap(w)
        .ok()
        .expect("one handle left")
        .shutdown()
        .unwrap();
}

mod model {
    //! Random operations, holds, flushes and pauses against a `Memdb` and the writer; after
    //! every flush the database is the tree, and at any moment it loads.

    use proptest::prelude::*;

    use super::*;

    /// A path: a fixed one, or the n-th existing entry (mod their number) at run time, so
    /// that operations often hit what exists.
    #[derive(Clone, Debug)]
    enum At {
        Fixed(TreePath),
        Existing(usize),
    }

    impl At {
        fn resolve(&self, db: &Memdb) -> TreePath {
            match self {
                At::Fixed(p) => p.clone(),
                At::Existing(n) => {
                    let recs = db.records();
                    match recs.get(n % recs.len().max(1)) {
                        Some(r) => db.path_of(r.inode).unwrap(),
                        None => TreePath::parse("a"),
                    }
                }
            }
        }
    }

    #[derive(Clone, Debug)]
    enum OpAt {
        Create(At),
        Write(At, u64, Vec<u8>, bool),
        Mkdir(At),
        Delete(At),
        Rename(At, At),
        Mtime(At, u32),
    }

    impl OpAt {
        fn resolve(&self, db: &Memdb) -> Op {
            match self {
                OpAt::Create(a) => Op::Create {
                    path: a.resolve(db),
                },
                OpAt::Write(a, offset, data, truncate) => Op::Write {
                    path: a.resolve(db),
                    offset: *offset,
                    data: data.clone(),
                    truncate: *truncate,
                },
                OpAt::Mkdir(a) => Op::Mkdir {
                    path: a.resolve(db),
                },
                OpAt::Delete(a) => Op::Delete {
                    path: a.resolve(db),
                },
                OpAt::Rename(a, b) => Op::Rename {
                    from: a.resolve(db),
                    to: b.resolve(db),
                },
                OpAt::Mtime(a, m) => Op::Mtime {
                    path: a.resolve(db),
                    mtime: Mtime(*m),
                },
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// With `lazy`, the daemon forgot `at_once`: structure must still reach the disk.
        Op(OpAt, bool),
        /// Hold the n-th existing file (mod the number of files).
        Hold(usize),
        /// Release the n-th held inode.
        Release(usize),
        Flush,
        /// Load the database now (the writer may be mid-batch).
        Check,
        PauseMs(u64),
    }

    fn fixed() -> impl Strategy<Value = At> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=3)
            .prop_map(|c| At::Fixed(TreePath::parse(&c.join("/"))))
    }

    fn at() -> impl Strategy<Value = At> {
        prop_oneof![fixed(), any::<usize>().prop_map(At::Existing)]
    }

    fn op() -> impl Strategy<Value = OpAt> {
        prop_oneof![
            3 => fixed().prop_map(OpAt::Create),
            4 => (at(), 0u64..6, prop::collection::vec(any::<u8>(), 0..8), any::<bool>())
                .prop_map(|(a, offset, data, truncate)| OpAt::Write(a, offset, data, truncate)),
            3 => fixed().prop_map(OpAt::Mkdir),
            3 => at().prop_map(OpAt::Delete),
            3 => (at(), at()).prop_map(|(a, b)| OpAt::Rename(a, b)),
            1 => (at(), any::<u32>()).prop_map(|(a, m)| OpAt::Mtime(a, m)),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            12 => (op(), prop::bool::weighted(0.25)).prop_map(|(o, lazy)| Step::Op(o, lazy)),
            3 => any::<usize>().prop_map(Step::Hold),
            2 => any::<usize>().prop_map(Step::Release),
            1 => Just(Step::Flush),
            3 => Just(Step::Check),
            2 => (0u64..3).prop_map(Step::PauseMs),
        ]
    }

    fn assert_disk_is_tree(fs: &Fs) {
        let stored = load::read(&fs.path).unwrap();
        let db = fs.tree.lock().unwrap();
        assert_eq!(stored.rows, db.records());
        assert_eq!(stored.root, Some(root_record(&db)));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
            ..ProptestConfig::default()
        })]

        #[test]
        fn reloaded_database_equals_the_tree(steps in prop::collection::vec(step(), 1..80)) {
            let mut fs = Fs::new(cfg(1, 60));
            let mut held: Vec<Inode> = Vec::new();
            for s in steps {
                match s {
                    Step::Op(op, lazy) => {
                        let op = op.resolve(&fs.tree.lock().unwrap());
                        let _ = fs.apply_with(op, lazy);
                    }
                    Step::Hold(n) => {
                        let files: Vec<Inode> = fs.tree.lock().unwrap().records().into_iter()
                            .filter(|r| r.kind == Kind::File).map(|r| r.inode).collect();
                        if !files.is_empty() {
                            let i = files[n % files.len()];
                            fs.w().hold(i);
                            held.push(i);
                        }
                    }
                    Step::Release(n) => {
                        if !held.is_empty() {
                            let i = held.remove(n % held.len());
                            fs.w().release(i);
                        }
                    }
                    Step::Flush => {
                        fs.w().flush().unwrap();
                        assert_disk_is_tree(&fs);
                    }
                    Step::Check => {
                        let stored = load::read(&fs.path).unwrap();
                        Memdb::load(stored.root.unwrap(), stored.rows, NOW)
                            .expect("the stored tree loads at any moment");
                    }
                    Step::PauseMs(ms) => sleep_ms(ms),
                }
            }
            for i in held.drain(..) {
                fs.w().release(i);
            }
            prop_assert!(!fs.w().failed());
            let want = fs.tree.lock().unwrap().clone();
            fs.shutdown();
            let reopened = load::open(&fs.path, NOW).unwrap().memdb;
            prop_assert_eq!(reopened.records(), want.records());
            // A shutdown writes no batch that would move only the version (lock directories
            // made and removed): the stored version may lag, never the content.
            prop_assert!(reopened.version() <= want.version());
            let conn = Connection::open(&fs.path).unwrap();
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(ok, "ok");
        }
    }
}
