//! TEST STAND-IN, not Firecracker's jailer: builds the jail and execs the exec file like the real
//! jailer.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(banger_standin::jailer::main())
}
