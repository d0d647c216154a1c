//! TEST STAND-IN, not Firecracker.
//!
//! Fake `firecracker` and `jailer` binaries for banger's test suite, for machines where the real
//! ones are absent. They imitate Firecracker v1.16's API (paths, state machine, status codes,
//! `fault_message` wording) and the jailer's documented contract (chroot layout, device nodes,
//! pidfile, privilege drop, exec argv). They run no virtual machine: "booting" prints one line on
//! the serial output. Every request the API server answers is recorded as a JSON line so tests
//! can check what banger sent.

pub mod args;
pub mod firecracker;
pub mod http;
pub mod jailer;

/// Said by every `--help` and version line of the stand-ins.
pub const NOTICE: &str = "TEST STAND-IN, not Firecracker";
