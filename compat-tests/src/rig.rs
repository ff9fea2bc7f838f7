//! The cluster tier's rig: the bench's (`lwcfs_bench::rig`), which owns it, built for tests.
//!
//! [`TestRig::for_tests`] builds an N-node rig around `LWCFS_BIN` (each node's database on its
//! own small ext4 image in `$TMPDIR`) and panics with a clear message when a privilege or tool
//! is missing; [`TestRig::tree_rows`] reads a stopped node's `tree` rows for comparing nodes.

pub use lwcfs_bench::rig::{Rig, FORM_TIMEOUT};

use crate::db::{self, Row};
use crate::sandbox::{check_privileges, lwcfs_bin};

/// Size of each node's database image: the cluster tests write little.
const IMAGE_MIB: u64 = 64;

pub trait TestRig {
    /// Namespaces, links, node sandboxes and configuration for `n` lwcfs nodes (nothing
    /// started yet); panics if the rig cannot be built.
    fn for_tests(n: usize) -> Rig;

    /// The `tree` rows of node `i`'s database (NULL data read as empty, as C stores empty
    /// files), for comparing nodes after a stop.
    fn tree_rows(&self, i: usize) -> Vec<Row>;
}

impl TestRig for Rig {
    fn for_tests(n: usize) -> Rig {
        check_privileges();
        let cfg = lwcfs_bench::rig::Config {
            lwcfs: lwcfs_bin(),
            sandbox: lwcfs_bench::sandbox::Config {
                scratch_parent: std::env::temp_dir(),
                image_mib: IMAGE_MIB,
            },
        };
        Rig::new(n, &cfg).unwrap_or_else(|e| panic!("cannot build the cluster rig: {e}"))
    }

    fn tree_rows(&self, i: usize) -> Vec<Row> {
        // Read from inside the node's mount namespace: SQLite would resolve `db_path`'s
        // `/proc/PID/root` link to the host's own file.
        let db = format!("{}/config.db", lwcfs_bench::sandbox::DB_DIR);
        self.sandbox(i)
            .in_mount_ns(|| db::read_rows(std::path::Path::new(&db)))
            .unwrap_or_else(|e| panic!("node {i}: {e}"))
            .into_iter()
            .map(|mut r| {
                r.data = Some(r.data.unwrap_or_default());
                r
            })
            .collect()
    }
}
