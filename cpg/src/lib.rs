//! Cluster ordering and state sync: the DFSM of C pmxcfs (`dfsm.c`), without I/O.
//!
//! Invariant: nothing here talks to corosync, reads a clock or starts a thread. Messages,
//! membership changes and the time come in as arguments; what must be sent or reported goes
//! out as [`dfsm::Effect`]s. The corosync adapter (and [`sim`] in tests) executes them.
//!
//! - [`msg`]: the DFSM header codec and the receive-side validation, C-compatible.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod msg;
