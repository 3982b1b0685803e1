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
    // The command runs on a worker of the rayon pool (as many threads as before:
    // RAYON_NUM_THREADS or one per CPU), so the kernels' many short parallel regions fork
    // in place instead of each being handed over from the main thread
    // (`mrl_agent::in_worker_pool`).
    let result = mrl::agent::in_worker_pool(|| cli::run(args))
        .map_err(|err| anyhow::anyhow!("could not start the thread pool: {err}"))
        .and_then(|r| r);
    match result {
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
