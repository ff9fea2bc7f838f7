//! lwcfs-fuse
