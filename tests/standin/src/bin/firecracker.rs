//! TEST STAND-IN, not Firecracker: serves Firecracker's API on a unix socket and pretends to boot.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(banger_standin::firecracker::main())
}
