//! lwcfs-backend
