//! The write connection: one IMMEDIATE transaction per batch, and the sync for `flush`.

use std::fs::File;
use std::path::{Path, PathBuf};

use lwcfs_memdb::load::RootRecord;
use lwcfs_memdb::{Inode, Mtime, NodeId};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, TransactionBehavior};

use crate::coalesce::{Batch, OnDisk};
use crate::error::Error;
use crate::schema;

/// A batch with at least this much file content is committed through a rollback journal
/// instead of the WAL ([`Store::commit`]). 4 MiB is SQLite's automatic checkpoint size (1000
/// pages of 4 KiB): a WAL commit this big is checkpointed, the WAL synced first, right after
/// it, so its pages reach the disk twice.
pub const LARGE_BATCH_BYTES: u64 = 4 << 20;

/// How a batch was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Committed {
    /// In the WAL, as every batch normally is.
    Wal,
    /// A large batch, through a rollback journal: written once, to the main file.
    Direct,
}

/// The only read-write connection of a running daemon.
pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
    wal: PathBuf,
    dir_synced: bool,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, Error> {
        let conn = schema::open_rw(path)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Store {
            conn,
            path: path.into(),
            wal: wal.into(),
            dir_synced: false,
        })
    }

    /// Where every stored inode is, and the stored `__version__` row.
    pub fn on_disk(&self) -> Result<OnDisk, Error> {
        let ctx = "reading the stored inodes";
        let mut stmt = self
            .conn
            .prepare("SELECT inode, parent, version, writer, mtime, name FROM tree")
            .map_err(Error::sqlite(ctx))?;
        let mut rows = stmt.query([]).map_err(Error::sqlite(ctx))?;
        let mut places = Vec::new();
        let mut root = RootRecord::default();
        while let Some(r) = rows.next().map_err(Error::sqlite(ctx))? {
            let int = |i| r.get::<_, i64>(i).map_err(Error::sqlite(ctx));
            let inode = int(0)? as u64;
            if inode == 0 {
                root = RootRecord {
                    version: int(2)? as u64,
                    writer: NodeId((int(3)? & 0xffff_ffff) as u32),
                    mtime: Mtime((int(4)? & 0xffff_ffff) as u32),
                };
                continue;
            }
            let name = match r.get_ref(5).map_err(Error::sqlite(ctx))? {
                ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            };
            places.push((Inode(inode), Inode(int(1)? as u64), name));
        }
        Ok(OnDisk::new(places, root))
    }

    /// The stored content of `inode` (`None` if there is no such row; NULL reads as empty).
    pub fn data(&mut self, inode: Inode) -> Result<Option<Vec<u8>>, Error> {
        let ctx = "reading a stored row";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM tree WHERE inode = ?1")
            .map_err(Error::sqlite(ctx))?;
        let mut rows = stmt.query([inode.0 as i64]).map_err(Error::sqlite(ctx))?;
        let Some(r) = rows.next().map_err(Error::sqlite(ctx))? else {
            return Ok(None);
        };
        Ok(Some(match r.get_ref(0).map_err(Error::sqlite(ctx))? {
            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
            _ => Vec::new(),
        }))
    }

    /// Store one batch in one `BEGIN IMMEDIATE` transaction: DELETEs, REPLACEs (C's column
    /// order; empty data as NULL), then the `__version__` row. Any error rolls it back.
    ///
    /// A batch of [`LARGE_BATCH_BYTES`] or more (the whole tree a joining node receives) is
    /// committed with the database out of WAL mode for that one transaction: in a WAL every
    /// page is written twice (to the WAL, then by the checkpoint to the main file), while a
    /// rollback journal holds only the old content of pages that existed before, so rows
    /// appended to the file are written once. The transaction is as atomic (a crash leaves a
    /// hot journal, rolled back at the next open) and durable (`synchronous=EXTRA`: journal,
    /// file and the directory after the journal's removal are synced); afterwards the
    /// database is back in WAL mode, as C's daemon expects it. If another connection has the
    /// database open, the mode cannot change and the batch goes through the WAL.
    pub fn commit(&mut self, batch: &Batch) -> Result<Committed, Error> {
        if batch.blob_bytes() >= LARGE_BATCH_BYTES {
            if let Some(r) = self.commit_direct(batch) {
                return r.map(|()| Committed::Direct);
            }
        }
        self.commit_tx(batch).map(|()| Committed::Wal)
    }

    /// [`Store::commit`] out of WAL mode; `None` if the database could not leave it.
    fn commit_direct(&mut self, batch: &Batch) -> Option<Result<(), Error>> {
        // Another connection would make SQLite wait for it: do not.
        let _ = self.conn.busy_timeout(std::time::Duration::ZERO);
        let left = self
            .conn
            .query_row("PRAGMA journal_mode=DELETE;", [], |r| r.get::<_, String>(0))
            .is_ok_and(|m| m.eq_ignore_ascii_case("delete"));
        if !left {
            let _ = self.conn.busy_timeout(schema::BUSY_TIMEOUT);
            tracing::debug!("database busy: a large batch goes through the WAL");
            return None;
        }
        let r = self
            .conn
            .execute_batch("PRAGMA synchronous=EXTRA;")
            .map_err(Error::sqlite("setting synchronous=EXTRA"))
            .and_then(|()| self.commit_tx(batch));
        // Back to C's settings whatever happened; the database is consistent either way, and
        // the next open sets them too.
        if let Err(e) = schema::configure(&self.conn) {
            tracing::warn!(error = %e, "returning to WAL mode after a large batch failed");
        }
        Some(r)
    }

    fn commit_tx(&mut self, batch: &Batch) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::sqlite("BEGIN IMMEDIATE"))?;
        {
            let mut delete = tx
                .prepare_cached(schema::DELETE)
                .map_err(Error::sqlite("DELETE"))?;
            for inode in &batch.deletes {
                delete
                    .execute([inode.0 as i64])
                    .map_err(Error::sqlite("DELETE"))?;
            }
            let mut replace = tx
                .prepare_cached(schema::REPLACE)
                .map_err(Error::sqlite("REPLACE"))?;
            for r in &batch.upserts {
                let data = (!r.data.is_empty()).then_some(r.data.as_slice());
                replace
                    .execute(params![
                        r.inode.0 as i64,
                        r.parent.0 as i64,
                        r.version as i64,
                        i64::from(r.writer.0),
                        i64::from(r.mtime.0),
                        i64::from(r.kind.dt()),
                        r.name,
                        data
                    ])
                    .map_err(Error::sqlite("REPLACE"))?;
            }
        }
        schema::write_version_row(&tx, &batch.root)?;
        tx.commit().map_err(Error::sqlite("COMMIT"))
    }

    /// Make every committed transaction durable: `fdatasync` of the `-wal` file.
    ///
    /// With `synchronous=NORMAL` a commit only writes the WAL; SQLite syncs it at checkpoints.
    /// One `fdatasync` of the WAL covers every commit since the last one, including commits
    /// made before this call that had nothing left to commit, which switching one commit to
    /// `synchronous=FULL` would not. Both cost the same: `synchronous=FULL` in WAL mode is also
    /// one `fdatasync` of the WAL per commit (strace), and on the test machine's disk both
    /// measured 0.3-0.5 ms per flushed commit against 70-80 µs for a `NORMAL` commit. The
    /// directory is synced once, for the WAL's own entry (SQLite does it too when it creates
    /// the WAL; this does not rely on that).
    pub fn sync(&mut self) -> Result<(), Error> {
        let io = |context, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                context,
                path,
                source,
            }
        };
        match File::open(&self.wal) {
            Ok(f) => f.sync_data().map_err(io("fdatasync", &self.wal))?,
            // No WAL: everything is in the main file, which checkpoints sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("opening", &self.wal)(e)),
        }
        if !self.dir_synced {
            let dir = match self.path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync", &dir))?;
            self.dir_synced = true;
        }
        Ok(())
    }

    /// Checkpoint and close, as C's `sqlite3_close` does: the last connection to close
    /// checkpoints the WAL into the main file (synced) and removes the WAL.
    pub fn close(self) -> Result<(), Error> {
        let r: rusqlite::Result<(i64, i64, i64)> =
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE);", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                });
        match r {
            Ok((0, _, _)) => {}
            Ok(busy) => tracing::warn!(?busy, "checkpoint at close was blocked by a reader"),
            Err(e) => tracing::warn!(error = %e, "checkpoint at close failed"),
        }
        self.conn.close().map_err(|(_, e)| Error::Sqlite {
            context: "closing",
            source: e,
        })
    }
}
