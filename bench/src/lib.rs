//! lwcfs-bench
