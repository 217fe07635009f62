//! The `reproq` binary: everything happens in [`reproq::cli::run`].

fn main() -> std::process::ExitCode {
    reproq::cli::run(std::env::args_os().collect())
}
