//! The thin FUSE adapter of lwcfs.
//!
//! Boundary: only this crate names `fuser` types. The daemon implements [`FsService`]; the
//! [`adapter`] turns each kernel request into one service call and one reply.
//!
//! - [`service`]: the `FsService` trait, the kernel contract in plain types.
//! - [`adapter`]: `impl fuser::Filesystem` over any `FsService`.
//! - [`inodes`]: kernel inode numbers ⇄ memdb inodes and virtual entries.
//! - [`attr`]: the presentation policy (modes, owner, blocks), pure.
//! - [`mount`]: mounting, the session thread and unmounting.
//! - [`notify`]: cache invalidations sent to the kernel.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod adapter;
pub mod attr;
pub mod inodes;
pub mod mount;
pub mod notify;
pub mod service;

pub use inodes::{KIno, NodeRef};
pub use mount::{mount, Mounted};
pub use notify::KernelNotifier;
pub use service::{FsResult, FsService, NodeAttr, NodeKind, SetAttr, StatFs};
