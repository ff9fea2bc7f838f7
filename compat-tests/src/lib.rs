//! lwcfs-compat-tests
