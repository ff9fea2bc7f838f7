//! lwcfs-bench: what a pmxcfs-like daemon writes to disk, per workload.
//!
//! Code map (pure modules first; only `sandbox` and `runner` need root):
//! - [`plan`]: a workload as data — steps, their times, what must succeed.
//! - [`content`]: deterministic file contents (guest configs, HA status JSON, keys).
//! - [`seed`]: the 3-node PVE tree every workload starts from.
//! - [`ha`]: the idle and armed HA minutes of `shared/spec/workload.md` §4.1/§4.2.
//! - [`workloads`]: the named catalogue and the plan of each workload.
//! - [`exec`]: runs plans against a directory (the sandbox's `/etc/pve`, or a tempdir in tests).
//! - [`diskstat`], [`procio`]: the kernel's counters (`/sys/block/*/stat`, `/proc/PID/io`).
//! - [`summary`], [`units`], [`report`]: medians, spreads, the table and the JSON.
//! - [`sandbox`]: loop-mounted ext4, namespaces, daemon lifecycle; guards that clean up.
//! - [`runner`]: one measured run, from a fresh sandbox to the synced figures.
//! - [`ipc`]: `lwcfs-bench ipc`, round trips of the `pve2` IPC service with the repository's
//!   libqb client ([`ipcc`]).
//! - [`ipcc`]: a libqb client of `pve2` (Debian's libqb), as `PVE::IPCC` calls it; the
//!   compat-tests' IPC tier uses it too.
//! - [`rig`]: a real Corosync cluster of N nodes in network namespaces, each node a sandbox
//!   with its own loop-mounted database directory (the cluster workloads and the compat-tests'
//!   cluster tier).
//! - [`cluster`]: the cluster workloads (`lwcfs-bench cluster`): catalogue and plans (pure),
//!   `cluster::run` (one measured run on a rig), `cluster::report` (summaries, tables, JSON).
//!
//! Invariant: the host's `/etc/pve`, `/var/lib/pve-cluster` and `/run` are never touched; every
//! mount is made inside a private mount namespace.

pub mod cluster;
pub mod content;
pub mod diskstat;
pub mod exec;
pub mod ha;
pub mod ipc;
pub mod ipcc;
pub mod plan;
pub mod procio;
pub mod progress;
pub mod report;
pub mod rig;
pub mod runner;
pub mod sandbox;
pub mod seed;
pub mod summary;
pub mod units;
pub mod workloads;
