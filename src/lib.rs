//! The `lwcfs` daemon: the only place where the adapters meet.
//!
//! - [`cli`]: the command line (C's flags plus ours, and the control commands).
//! - [`run`]: startup and shutdown in C's order.
//! - [`service`]: `Service`, the tree as the kernel sees it (`fuse::FsService`), local mode.
//! - [`status`]: the content of the virtual files and the change counters.
//! - [`defer`]: which rewrites may stay off disk for a while (`nodes/*/lrm_status`).
//! - [`kcache`]: `KernelCache`, invalidating what the kernel cached when the tree changes
//!   behind its back.
//! - [`control`]: the control socket (`lwcfs stats`, `lwcfs flush`).
//! - [`logging`]: tracing setup, debug level switchable through `.debug`.

pub mod cli;
pub mod control;
pub mod defer;
pub mod kcache;
pub mod logging;
pub mod run;
pub mod service;
pub mod status;
