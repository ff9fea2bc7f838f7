//! The in-RAM tree of lwcfs: the C pmxcfs data model, pure.
//!
//! Invariant: nothing in this crate does I/O, reads a clock or starts a thread. Time and the
//! writer's node id come in through [`Ctx`]; lock expiry takes `now` as an argument.
//!
//! - [`types`]: identities (`Inode`, `NodeId`, `Mtime`), `Kind` and the C limits.
//! - [`path`]: `TreePath`, parsed once.
//! - [`tree`]: the `Memdb` arena and its read-only queries.
//! - [`apply`]: `Op`, `Ctx`, and `Memdb::apply`, the only mutating entry point.
//! - [`load`]: rebuilding a `Memdb` from stored rows, with C's validation.
//! - [`locks`]: the `priv/lock/*` expiry table and the entry digest C uses for it.
//! - [`vmlist`]: the guest list derived from `nodes/<n>/{qemu-server,lxc,openvz}/<id>.conf`.
//! - [`wire`]: the DCDB message payloads in C's byte layout (`Op` to bytes and back, unlock,
//!   UPDATE entries).
//! - [`index`]: the memdb index (the dcdb STATE), the VERIFY checksum and the lock checksum,
//!   as C computes them; the data-leader and update-set decisions of a sync round.
//! - [`sync`]: a follower's commit of the data leader's updates (delete, replace, index check).
//! - [`error`]: one error enum with `errno()`.
#![forbid(unsafe_code)]

pub mod apply;
pub mod error;
pub mod index;
pub mod load;
pub mod locks;
pub mod path;
pub mod sync;
pub mod tree;
pub mod types;
pub mod vmlist;
pub mod wire;

pub use apply::{Applied, Change, Ctx, Op};
pub use error::{Error, LoadError};
pub use index::{IndexEntry, MemdbIndex};
pub use load::RootRecord;
pub use path::TreePath;
pub use sync::{SyncError, Synced};
pub use tree::{Attr, DirEntry, Memdb, NodeRecord, StatFs};
pub use types::{Inode, Kind, Mtime, NodeId};
pub use vmlist::{VmEntry, VmList, VmType};
pub use wire::{DcdbMsg, Request, Update, UpdateEntry, WireError};
