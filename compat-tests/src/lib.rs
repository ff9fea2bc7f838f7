//! Compatibility tests of lwcfs through a real FUSE mount of the real daemon.
//!
//! This library is the harness; the tests are in `tests/`, behind the `fuse` feature because
//! they need root, `/dev/fuse` and util-linux (`unshare`, `nsenter`, `setpriv`):
//!
//! - [`sandbox`]: one daemon per test, in its own mount, network and UTS namespaces, with `/run`,
//!   `/var/lib/pve-cluster`, `/etc/pve`, `/etc/hosts` and `/etc/corosync` taken from a per-test
//!   temporary directory; a guard that stops it on every exit path.
//! - [`rig`]: a real Corosync cluster of N nodes in network namespaces (a hub bridge, one
//!   namespace per node, Corosync and a daemon per node, each node's database on its own
//!   loop-mounted image), torn down by PID on every exit path: the bench's `lwcfs_bench::rig`,
//!   built for tests.
//! - [`db`]: reading `config.db` from outside (rows, schema, integrity) and rebuilding the tree.
//! - [`walk`]: a snapshot of a tree as the kernel shows it (kinds, modes, owners, times, bytes).
//! - [`history`]: the states each file had during a write loop, to judge what a crash left.
//! - [`ops`]: system calls std lacks (utimensat, renameat2, statvfs, mknod, ...), as io::Result.
//! - [`probe`]: the output format of the `lwcfs-probe` helper that runs one operation as an
//!   unprivileged user.
//! - [`rng`]: a small seeded generator, so a failing crash round can be replayed.
//! - [`rrdcached`]: a private rrdcached per test (feature `rrd`), stopped by pid on drop, and
//!   `rrdtool info` read as fields.
//! - [`ipcc`]: the bench's libqb client of the `pve2` IPC service (Debian's libqb), and the
//!   line format of the `lwcfs-ipcc` helper that runs it inside a daemon's namespaces.
//!
//! The pure parts have hermetic unit tests (`cargo test` without features).

pub mod db;
pub mod history;
/// The libqb client lives with the bench, which measures IPC round trips with it.
pub use lwcfs_bench::ipcc;
pub mod ops;
pub mod probe;
pub mod rig;
pub mod rng;
pub mod rrdcached;
pub mod sandbox;
pub mod walk;
