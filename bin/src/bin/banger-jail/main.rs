//! banger-jail (being built).
fn main() -> std::process::ExitCode {
    eprintln!("banger-jail: not built yet");
    std::process::ExitCode::from(1)
}
