//! banger-snap (being built).
fn main() -> std::process::ExitCode {
    eprintln!("banger-snap: not built yet");
    std::process::ExitCode::from(1)
}
