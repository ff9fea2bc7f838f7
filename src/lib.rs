//! The `lwcfs` daemon: the only place where the adapters meet.
//!
//! - [`cli`]: the command line (C's flags plus ours, and the control commands).
//! - [`run`]: startup and shutdown in C's order.
//! - [`service`]: `Service`, the tree as the kernel sees it (`fuse::FsService`), local mode.
//! - [`status`]: the content of the virtual files and the change counters.
//! - [`control`]: the control socket (`lwcfs stats`, `lwcfs flush`).
//! - [`logging`]: tracing setup, debug level switchable through `.debug`.
//! - [`clusterlog`]: the cluster log (ring buffer, duplicate filter, merge, JSON) [issue 5].
//! - [`jsontext`]: JSON string bodies from C-printed bytes [issue 5].
//! - [`kvstatus`]: key/value status, node IPs and the RRD seam [issue 5].
//! - [`ipc`]: the libqb IPC service `pve2` [issue 5].
//!
//! `unsafe` is denied everywhere but in `ipc/qb.rs`, the libqb FFI.
#![deny(unsafe_code)]

pub mod cli;
pub mod clusterlog; // issue 5 (ipc branch)
pub mod control;
pub mod ipc; // issue 5 (ipc branch)
pub mod jsontext; // issue 5 (ipc branch)
pub mod kvstatus; // issue 5 (ipc branch)
pub mod logging;
pub mod run;
pub mod service;
pub mod status;
