//! SQLite persistence of lwcfs: the C pmxcfs `config.db`, kept by one coalescing writer.
//!
//! Invariants:
//! - Only this crate opens SQLite, and while the daemon runs there is exactly one read-write
//!   connection: the writer thread's. Loading uses a read-only connection first, so a database
//!   that fails to load is never written.
//! - The file is C's: the same `tree` table (same statement text), the same `__version__` row,
//!   WAL, `synchronous=NORMAL`, a 10 s busy timeout. C pmxcfs can open what lwcfs wrote and the
//!   other way round.
//! - The writer stores states the tree really had, read under one lock of the tree; every
//!   structural change up to that state is in the same transaction, so the stored tree always
//!   loads. Only the content of files held open for writing may lag (at most `hold_bound`).
//! - The `__version__` row is written in every transaction, as C does; a batch with nothing to
//!   write is no transaction at all (at shutdown, neither is one that would move only the
//!   version).
//! - A change may carry a [`Defer`] rule (the daemon's): its content may then stay in RAM, the
//!   stored row unchanged, for at most the rule's bound ([`coalesce`]).
//!
//! Modules:
//! - [`schema`]: the DDL, the pragmas, creating a fresh database as C does.
//! - [`load`]: opening a database and loading it into a `Memdb`, with C's row checks.
//! - [`coalesce`]: pure: pending inodes, holders, when a batch is due, what it writes.
//! - `store` (private): the write connection, one IMMEDIATE transaction per batch, the sync.
//! - [`writer`]: the thread, its handle (`changed`, `hold`, `release`, `flush`, `shutdown`) and
//!   the [`Snapshot`] trait the daemon implements.
//! - [`error`]: the one error enum.
#![forbid(unsafe_code)]

pub mod coalesce;
pub mod error;
pub mod load;
pub mod schema;
mod store;
pub mod writer;

pub use coalesce::Defer;
pub use error::Error;
pub use load::{open, Opened, Stored};
pub use store::LARGE_BATCH_BYTES;
pub use writer::{root_record, spawn, Rows, Snapshot, Stats, WriterConfig, WriterHandle};
