//! banger-image (being built).
fn main() -> std::process::ExitCode {
    eprintln!("banger-image: not built yet");
    std::process::ExitCode::from(1)
}
