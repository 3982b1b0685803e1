//! The `mrl` command-line interface: data, features, meta-training, evaluation, backtests.
//!
//! The binary owns logging (a `tracing` subscriber on stderr, `RUST_LOG` or `-v` to tune it),
//! progress bars and printing; the libraries only emit `tracing` events.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {}", cli::error_chain(&err));
            }
            ExitCode::FAILURE
        }
    }
}
