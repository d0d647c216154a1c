//! Finding a live Firecracker again (see find_pid in DESIGN.md). Being built.
