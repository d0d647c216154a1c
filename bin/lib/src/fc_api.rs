//! The Firecracker API client over its Unix socket. Being built.
