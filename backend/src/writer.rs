//! The writer thread: the only owner of the read-write connection. It collects changes,
//! coalesces them by inode ([`crate::coalesce`]) and commits batches of the tree's current
//! state.
//!
//! Consistency: a batch is read from the tree under one lock of the tree, and the channel of
//! changes is drained under that same lock (inside [`Snapshot::snapshot`], through `pick`).
//! Since [`WriterHandle::changed`] is called under that lock too, the batch knows every change
//! the snapshot reflects: every structural change (create, mkdir, rename, unlink, rmdir) up to
//! the snapshot is in it, so the stored tree always loads. Held inodes may lag behind in
//! content only.
//!
//! How the daemon drives it:
//! 1. `load::open(path, now)` gives the `Memdb`; put it behind the lock the [`Snapshot`]
//!    implementation takes (`Mutex<Memdb>` implements it).
//! 2. [`spawn`] the writer on the same path.
//! 3. After every successful `Memdb::apply`, still under the tree lock:
//!    [`WriterHandle::changed`]`(&applied.changes, at_once)`, or
//!    [`WriterHandle::changed_deferrable`] for a change whose content may stay off disk under a
//!    [`Defer`] rule.
//! 4. A FUSE handle that writes a file: [`WriterHandle::hold`] once (at its first write),
//!    [`WriterHandle::release`] when it is released.
//! 5. [`WriterHandle::flush`] where an answer must wait for stable storage; never under the
//!    tree lock (the writer needs that lock to commit).
//! 6. [`WriterHandle::failed`]: answer writes with EIO, as C does once `memdb->errors` is set.
//! 7. [`WriterHandle::shutdown`] at exit, after the last change.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lwcfs_memdb::load::RootRecord;
use lwcfs_memdb::{Change, Inode, Memdb, NodeRecord};

use crate::coalesce::{Defer, OnDisk, Pending, Policy};
use crate::error::Error;
use crate::store::{Committed, Store};

/// Rows of a snapshot: each picked inode with its current row, or `None` if it no longer exists.
pub type Rows = Vec<(Inode, Option<NodeRecord>)>;

/// The in-RAM tree as the writer sees it.
pub trait Snapshot: Send + Sync + 'static {
    /// Take the tree's lock, call `pick` exactly once while holding it, and return, read under
    /// that same lock, the current row of every inode `pick` returned (`None` if the inode no
    /// longer exists) and the current `__version__` row.
    ///
    /// `pick` drains the writer's channel: it must run under the lock that
    /// [`WriterHandle::changed`] is called under, so that the inodes it returns are exactly
    /// the ones changed up to this state of the tree.
    fn snapshot(&self, pick: &mut dyn FnMut() -> Vec<Inode>) -> (Rows, RootRecord);
}

/// The `__version__` row of a tree.
pub fn root_record(db: &Memdb) -> RootRecord {
    RootRecord {
        version: db.version(),
        writer: db.root_writer(),
        mtime: db.root_mtime(),
    }
}

/// A tree behind a mutex is a snapshot source. A poisoned lock is still read: the writer keeps
/// storing what the tree holds.
impl Snapshot for Mutex<Memdb> {
    fn snapshot(&self, pick: &mut dyn FnMut() -> Vec<Inode>) -> (Rows, RootRecord) {
        let db = self.lock().unwrap_or_else(PoisonError::into_inner);
        let rows = pick().into_iter().map(|i| (i, db.record(i))).collect();
        (rows, root_record(&db))
    }
}

/// When the writer commits; see [`crate::coalesce`] for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// How long after the first pending inode became committable the batch is committed.
    pub commit_delay: Duration,
    /// How long a file held open for writing may stay pending before it is committed anyway.
    pub hold_bound: Duration,
}

impl WriterConfig {
    /// 100 ms. A commit costs about 70-80 µs of SQLite work (one 2 KiB row plus the version
    /// row, `synchronous=NORMAL`, measured on this project's test machine), so the delay is not
    /// there to save CPU: it is the window in which multi-step patterns collapse. The steps of
    /// PVE's tmp-file + write + rename arrive within about a millisecond of each other; the
    /// several files and lock directories of one API call within tens of milliseconds. It is
    /// also the longest a daemon crash can lose (changes not yet committed), next to C's
    /// power-loss window of "until the next checkpoint".
    pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(100);
    /// 5 s: a file written through a handle that stays open longer is committed anyway.
    pub const DEFAULT_HOLD_BOUND: Duration = Duration::from_secs(5);
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            commit_delay: Self::DEFAULT_COMMIT_DELAY,
            hold_bound: Self::DEFAULT_HOLD_BOUND,
        }
    }
}

/// Counters of the writer since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Committed transactions.
    pub transactions: u64,
    pub rows_upserted: u64,
    pub rows_deleted: u64,
    /// File content written (the blobs of the upserted rows).
    pub blob_bytes: u64,
    /// `flush` calls served.
    pub flushes: u64,
    /// `fdatasync`s of the WAL.
    pub syncs: u64,
    /// Commits that failed and were rolled back.
    pub failed_commits: u64,
    /// Rewrites kept off disk by their [`Defer`] rule (each counted once).
    pub deferred_rewrites: u64,
    /// Transactions committed out of WAL mode, through a rollback journal: batches of at least
    /// [`crate::LARGE_BATCH_BYTES`] (a joining node's whole tree).
    pub large_batches: u64,
    /// Inodes pending after the writer's last step.
    pub pending: usize,
    pub last_error: Option<String>,
}

enum Msg {
    Changed(Vec<Change>, bool, Option<Defer>),
    Hold(Inode),
    Release(Inode),
    Flush(Sender<Result<(), Error>>),
    Shutdown,
}

struct Shared {
    stats: Mutex<Stats>,
    failed: AtomicBool,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The daemon's side of the writer. Every method but `flush` and `shutdown` returns at once.
pub struct WriterHandle {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<Result<(), Error>>>>,
    shared: Arc<Shared>,
}

/// Open the database for writing and start the writer thread. The database must exist and be
/// loadable (see [`crate::load::open`]); the set of stored inodes is read here.
pub fn spawn(
    db_path: &Path,
    source: Arc<dyn Snapshot>,
    cfg: WriterConfig,
) -> Result<WriterHandle, Error> {
    let store = Store::open(db_path)?;
    let disk = store.on_disk()?;
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        stats: Mutex::default(),
        failed: AtomicBool::new(false),
    });
    let writer = Writer {
        inbox: Inbox {
            rx,
            controls: VecDeque::new(),
            disconnected: false,
        },
        pending: Pending::new(Policy {
            commit_delay: cfg.commit_delay,
            hold_bound: cfg.hold_bound,
        }),
        source,
        store: Some(store),
        disk,
        shared: shared.clone(),
        unsynced: false,
    };
    let thread = std::thread::Builder::new()
        .name("lwcfs-writer".into())
        .spawn(move || writer.run())
        .map_err(|source| Error::Io {
            context: "starting the writer thread for",
            path: db_path.into(),
            source,
        })?;
    Ok(WriterHandle {
        tx,
        thread: Mutex::new(Some(thread)),
        shared,
    })
}

impl WriterHandle {
    fn send(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok()
    }

    /// Changes just applied to the tree. Call it while still holding the tree's lock (the one
    /// [`Snapshot::snapshot`] takes), so that the writer sees changes in apply order. With
    /// `at_once`, the inodes are committed with the next batch even if held (rename, unlink,
    /// mkdir, rmdir, create of an empty file, mtime change). Never blocks.
    pub fn changed(&self, changes: &[Change], at_once: bool) {
        self.send_changes(changes, at_once, None);
    }

    /// Like [`Self::changed`], for changes whose new content may stay off disk while `defer`
    /// accepts it against the stored content (see [`crate::coalesce`], deferrable rewrites).
    pub fn changed_deferrable(&self, changes: &[Change], at_once: bool, defer: Defer) {
        self.send_changes(changes, at_once, Some(defer));
    }

    fn send_changes(&self, changes: &[Change], at_once: bool, defer: Option<Defer>) {
        if !changes.is_empty() && !self.send(Msg::Changed(changes.to_vec(), at_once, defer)) {
            self.shared.failed.store(true, Ordering::SeqCst);
        }
    }

    /// A file handle has written `inode`: its content changes wait for [`Self::release`] (at
    /// most `hold_bound`). Holds are counted; call it once per handle, before or right after
    /// that handle's first write.
    pub fn hold(&self, inode: Inode) {
        self.send(Msg::Hold(inode));
    }

    /// The handle that held `inode` was closed.
    pub fn release(&self, inode: Inode) {
        self.send(Msg::Release(inode));
    }

    /// Commit everything pending now, held inodes too, and return once it is on stable storage
    /// (`fdatasync` of the WAL). Must not be called while holding the tree's lock.
    pub fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        if !self.send(Msg::Flush(tx)) {
            return Err(Error::WriterGone);
        }
        rx.recv().unwrap_or(Err(Error::WriterGone))
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats().clone()
    }

    /// True once a commit has failed (or the thread died). Like C's `memdb->errors`, it stays
    /// set: the daemon answers writes with EIO until it is restarted.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Commit everything (held inodes too), checkpoint, close the database (which removes the
    /// WAL, as C's close does) and join the thread. Must not be called while holding the tree's
    /// lock.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.stop()
    }

    /// Ask the thread to finish and wait for it; a second call (or a call after the thread
    /// ended) returns at once. Changes sent afterwards are dropped.
    fn stop(&self) -> Result<(), Error> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(thread) = thread else { return Ok(()) };
        let _ = self.tx.send(Msg::Shutdown);
        match thread.join() {
            Ok(r) => r,
            Err(_) => Err(Error::WriterGone),
        }
    }
}

impl Drop for WriterHandle {
    /// Dropping the handle shuts the writer down too (errors are logged).
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "database writer shutdown failed");
        }
    }
}

/// What a batch commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sweep {
    /// What is due now.
    Due,
    /// Everything pending, held and deferred rows too, and the `__version__` row even if no
    /// other row changes.
    Flush,
    /// Everything pending, held and deferred rows too; a version-only batch is not written.
    Shutdown,
}

enum Control {
    Flush(Sender<Result<(), Error>>),
    Shutdown,
}

/// The receiving end; flush and shutdown requests are queued until the step in progress is
/// done.
struct Inbox {
    rx: Receiver<Msg>,
    controls: VecDeque<Control>,
    disconnected: bool,
}

impl Inbox {
    fn accept(&mut self, msg: Msg, pending: &mut Pending) {
        match msg {
            Msg::Changed(changes, at_once, defer) => {
                pending.changed(&changes, at_once, defer, Instant::now());
            }
            Msg::Hold(i) => pending.hold(i),
            Msg::Release(i) => pending.release(i, Instant::now()),
            Msg::Flush(reply) => self.controls.push_back(Control::Flush(reply)),
            Msg::Shutdown => self.controls.push_back(Control::Shutdown),
        }
    }

    /// Take every message already sent.
    fn drain(&mut self, pending: &mut Pending) {
        loop {
            match self.rx.try_recv() {
                Ok(m) => self.accept(m, pending),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    return;
                }
            }
        }
    }
}

struct Writer {
    inbox: Inbox,
    pending: Pending,
    source: Arc<dyn Snapshot>,
    /// `None` only once closed.
    store: Option<Store>,
    disk: OnDisk,
    shared: Arc<Shared>,
    /// A transaction was committed since the last sync.
    unsynced: bool,
}

/// Marks the writer failed if its thread unwinds.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
        }
    }
}

impl Writer {
    fn run(mut self) -> Result<(), Error> {
        let _guard = PanicGuard(self.shared.clone());
        loop {
            if self.inbox.controls.is_empty() && !self.inbox.disconnected {
                self.wait();
            }
            while let Some(c) = self.inbox.controls.pop_front() {
                match c {
                    Control::Flush(reply) => {
                        let r = self.flush();
                        let _ = reply.send(r);
                    }
                    Control::Shutdown => return self.finish(),
                }
            }
            if self.inbox.disconnected {
                return self.finish();
            }
            let due = self.pending.deadline().is_some_and(|d| d <= Instant::now());
            if due && !self.shared.failed.load(Ordering::SeqCst) {
                // A failure is recorded in the stats and the failed flag; the pending inodes
                // stay pending for the next flush or the shutdown.
                let _ = self.batch(Sweep::Due);
            }
            self.shared.stats().pending = self.pending.len();
        }
    }

    /// Wait for messages until the next batch is due. After a failed commit only flush and
    /// shutdown commit again, so there is no deadline to wait for.
    fn wait(&mut self) {
        let deadline = match self.shared.failed.load(Ordering::SeqCst) {
            true => None,
            false => self.pending.deadline(),
        };
        let msg = match deadline {
            None => self
                .inbox
                .rx
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => self
                .inbox
                .rx
                .recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match msg {
            Ok(m) => {
                self.inbox.accept(m, &mut self.pending);
                self.inbox.drain(&mut self.pending);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.inbox.disconnected = true,
        }
    }

    /// Snapshot the pending inodes and commit what `sweep` asks for.
    fn batch(&mut self, sweep: Sweep) -> Result<(), Error> {
        let Writer {
            inbox,
            pending,
            source,
            ..
        } = self;
        let mut picked = None;
        let (snapshot, root) = source.snapshot(&mut || {
            inbox.drain(pending);
            let inodes = pending.inodes();
            picked = Some(inodes.clone());
            inodes
        });
        if picked.is_none() {
            tracing::error!("Snapshot::snapshot did not call pick; nothing committed");
            return Ok(());
        }
        for inode in self.pending.stored_to_compare(&snapshot, &self.disk) {
            let store = self.store.as_mut().expect("store open until finish");
            match store.data(inode) {
                Ok(Some(data)) => self.disk.keep(inode, Arc::new(data)),
                Ok(None) => {}
                // Unknown stored content: the rewrite is stored normally.
                Err(e) => tracing::warn!(error = %e, %inode, "reading a stored row back"),
            }
        }
        let now = Instant::now();
        let all = sweep != Sweep::Due;
        let mut batch = self.pending.plan(snapshot, root, &self.disk, now, all);
        if sweep == Sweep::Shutdown {
            // Nothing but the version number moved (lock directories made and removed): the
            // stored tree already has the content the tree has; see SEMANTICS.md §1.7.
            batch.version_only = false;
        }
        if !batch.is_empty() {
            let store = self.store.as_mut().expect("store open until finish");
            let committed = match store.commit(&batch) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "commit failed; the tree is no longer stored");
                    self.shared.failed.store(true, Ordering::SeqCst);
                    let mut s = self.shared.stats();
                    s.failed_commits += 1;
                    s.last_error = Some(e.to_string());
                    return Err(e);
                }
            };
            self.disk.apply(&batch);
            let mut s = self.shared.stats();
            match committed {
                Committed::Wal => self.unsynced = true,
                // Synced by the commit itself, with everything the WAL held before it.
                Committed::Direct => {
                    self.unsynced = false;
                    s.large_batches += 1;
                }
            }
            s.transactions += 1;
            s.rows_upserted += batch.upserts.len() as u64;
            s.rows_deleted += batch.deletes.len() as u64;
            s.blob_bytes += batch.blob_bytes();
        }
        // Nothing can have changed since the snapshot without still being in the channel.
        let deferred = self.pending.settle(&batch);
        if deferred > 0 {
            self.shared.stats().deferred_rewrites += deferred as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.shared.stats().flushes += 1;
        self.batch(Sweep::Flush)?;
        if self.unsynced {
            let store = self.store.as_mut().expect("store open until finish");
            if let Err(e) = store.sync() {
                self.shared.stats().last_error = Some(e.to_string());
                return Err(e);
            }
            self.unsynced = false;
            self.shared.stats().syncs += 1;
        }
        Ok(())
    }

    /// Commit everything, then checkpoint and close. The first error is returned.
    fn finish(&mut self) -> Result<(), Error> {
        let committed = self.batch(Sweep::Shutdown);
        self.shared.stats().pending = self.pending.len();
        let closed = self.store.take().map_or(Ok(()), Store::close);
        committed.and(closed)
    }
}
