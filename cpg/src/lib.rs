//! Cluster ordering and state sync: the DFSM of C pmxcfs (`dfsm.c`), without I/O.
//!
//! Invariant: nothing here talks to corosync, reads a clock or starts a thread. Messages,
//! membership changes and the time come in as arguments; what must be sent or reported goes
//! out as [`dfsm::Effect`]s, which an adapter executes through a [`transport::Transport`].
//! The crate knows nothing of the application: it is generic over [`dfsm::App`], and payloads
//! are opaque bytes (dcdb's are in `lwcfs-memdb`'s `wire` and `index` modules).
//!
//! - [`msg`]: the DFSM header codec and the receive-side validation, C-compatible.
//! - [`member`]: node and member ids, C's member order.
//! - [`dfsm`]: the state machine: modes, queues, sync rounds, verify.
//! - [`waiters`]: local senders waiting for their own message's result.
//! - [`transport`]: the seam to corosync CPG, and the service-loop glue (`Driver`).
//! - [`corosync`]: the only module that calls Corosync (CPG, quorum, cmap).
//! - [`sim`] (feature `sim`): an in-process total-order bus for multi-node tests.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod corosync;
pub mod dfsm;
pub mod member;
pub mod msg;
pub mod transport;
pub mod waiters;

#[cfg(any(test, feature = "sim"))]
#[doc(hidden)]
pub mod sim;

pub use dfsm::{App, Config, Ctx, Dfsm, Effect, Effects, Failure, Mode, Normal, SyncRound};
pub use member::{MemberId, NodeId};
pub use transport::{CpgEvent, Driver, Next, Transport};
pub use waiters::{Outcome, Waiters};

/// The database group: `pve_dcdb_v1`, protocol 1, verify every hour.
pub const DCDB: Group = Group {
    name: "pve_dcdb_v1",
    protocol_version: 1,
    verify_interval: Some(3600),
};
/// The status group: `pve_kvstore_v1`, protocol 0, no verify.
pub const KVSTORE: Group = Group {
    name: "pve_kvstore_v1",
    protocol_version: 0,
    verify_interval: None,
};

/// A CPG group pmxcfs joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// The name without its NUL.
    pub name: &'static str,
    pub protocol_version: u32,
    pub verify_interval: Option<u32>,
}

impl Group {
    /// The bytes of `cpg_name`: C counts the trailing NUL in the length (12 and 15 bytes).
    pub fn cpg_name(&self) -> Vec<u8> {
        let mut b = self.name.as_bytes().to_vec();
        b.push(0);
        b
    }

    pub fn config(&self) -> Config {
        Config {
            protocol_version: self.protocol_version,
            verify_interval: self.verify_interval,
            c_reorder_window: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_count_the_nul() {
        assert_eq!(DCDB.cpg_name(), b"pve_dcdb_v1\0");
        assert_eq!(DCDB.cpg_name().len(), 12);
        assert_eq!(KVSTORE.cpg_name().len(), 15);
        assert_eq!(DCDB.config().protocol_version, 1);
        assert_eq!(
            KVSTORE.config(),
            Config {
                protocol_version: 0,
                verify_interval: None,
                c_reorder_window: false,
            }
        );
    }
}
