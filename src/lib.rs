//! lwcfs
