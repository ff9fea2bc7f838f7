//! The `lwcfs` daemon: the only place where the adapters meet.
//!
//! - [`cli`]: the command line (C's flags plus ours, and the control commands).
//! - [`run`]: startup and shutdown in C's order.
//! - [`service`]: `Service`, the tree as the kernel sees it (`fuse::FsService`), local mode.
//! - [`status`]: the content of the virtual files and the change counters; the kvstore codec.
//! - [`rrd`]: the RRD table, its dump, and the RRD files (rrdcached, librrd).
//! - [`control`]: the control socket (`lwcfs stats`, `lwcfs flush`).
//! - [`logging`]: tracing setup, debug level switchable through `.debug`.

pub mod cli;
pub mod control;
pub mod logging;
pub mod rrd;
pub mod run;
pub mod service;
pub mod status;
