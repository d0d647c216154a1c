//! banger-net (being built).
fn main() -> std::process::ExitCode {
    eprintln!("banger-net: not built yet");
    std::process::ExitCode::from(1)
}
