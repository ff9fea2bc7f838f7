//! lwcfs-cpg
