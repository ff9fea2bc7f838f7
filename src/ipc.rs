//! The local IPC service `pve2` that the Proxmox Perl stack (PVE::IPCC) calls: libqb IPC over
//! shared memory, 12 operations (local.md §10, Appendix C).
//!
//! - [`proto`]: the request/response byte format and C's checks per operation, pure.
//! - `ops`: the operations over the tree and the status (`Pve2`), and who may connect.
//! - `guest`: the guest config property scan of ops 11 and 13, pure.
//! - `qb`: the libqb FFI (the daemon's only `unsafe`): service, loop thread, callbacks.
//!
//! Started after the mount, stopped before the unmount, as C does; a failure to start is a
//! startup error.

mod guest;
mod ops;
pub mod proto;
#[allow(unsafe_code)]
mod qb;

use std::io;
use std::sync::Arc;

pub use ops::{authorize, Pve2};

use crate::service::Tree;
use crate::status::Status;

/// The libqb service name: clients connect to the abstract socket `@pve2`.
pub const SERVICE_NAME: &str = "pve2";

/// The running service. Dropping it stops it.
pub struct Ipc {
    server: qb::QbServer,
}

impl Ipc {
    /// Serve `pve2` on a thread of its own. `www_data` is the gid whose members connect
    /// read-only.
    ///
    /// # Errors
    /// libqb could not create or run the service (for instance another pmxcfs already serves
    /// `@pve2` in this network namespace).
    pub fn start(tree: Arc<Tree>, status: Arc<Status>, www_data: u32) -> io::Result<Ipc> {
        let handler = Arc::new(Pve2::new(tree, status, www_data));
        let server = qb::QbServer::start(SERVICE_NAME, handler, proto::MAX_REQUEST)?;
        Ok(Ipc { server })
    }

    /// Close every connection and stop serving.
    pub fn stop(self) {
        self.server.stop();
    }
}
