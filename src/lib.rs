//! The `lwcfs` daemon: the only place where the adapters meet.
//!
//! - [`cli`]: the command line (C's flags plus ours, and the control commands).
//! - [`run`]: startup and shutdown in C's order.
//! - [`service`]: `Service`, the tree as the kernel sees it (`fuse::FsService`), and `Shared`,
//!   the one place where operations are applied (local FUSE path and cluster delivery).
//! - [`cluster`]: cluster mode: the service loop (both CPG groups, quorum, cmap), `submit` for
//!   FUSE writers.
//! - [`dcdb`]: the database group's application (apply, state, updates, sync commit, verify).
//! - [`kvgroup`]: the status group's application (kv status, cluster log, node IPs).
//! - [`corosync_conf`]: `corosync.conf` in the tree and on the host.
//! - [`status`]: the content of the virtual files and the change counters; the kvstore codec.
//! - [`rrd`]: the RRD table, its dump, and the RRD files (rrdcached, librrd).
//! - [`defer`]: which rewrites may stay off disk for a while (`nodes/*/lrm_status`).
//! - [`kcache`]: `KernelCache`, invalidating what the kernel cached when the tree changes
//!   behind its back.
//! - [`control`]: the control socket (`lwcfs stats`, `lwcfs flush`).
//! - [`logging`]: tracing setup, debug level switchable through `.debug`.
//! - [`clusterlog`]: the cluster log (ring buffer, duplicate filter, merge, JSON).
//! - [`jsontext`]: JSON string bodies from C-printed bytes.
//! - [`kvstatus`]: key/value status, node IPs and the RRD seam.
//! - [`ipc`]: the libqb IPC service `pve2`.
//!
//! `unsafe` is denied everywhere but in `ipc/qb.rs` (libqb) and `rrd/librrd.rs` (librrd), the
//! FFI modules.
#![deny(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod clusterlog;
pub mod control;
pub mod corosync_conf;
pub mod dcdb;
pub mod defer;
pub mod ipc;
pub mod jsontext;
pub mod kcache;
pub mod kvgroup;
pub mod kvstatus;
pub mod logging;
pub mod rrd;
pub mod run;
pub mod service;
pub mod status;
