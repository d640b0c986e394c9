//! The `tellscan` binary: see `tellscan --help`.

fn main() -> std::process::ExitCode {
    match tellscan::cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
