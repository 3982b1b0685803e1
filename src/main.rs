//! The `mrl` command-line interface: data, features, meta-training, evaluation, backtests.
//!
//! The binary owns logging (a `tracing` subscriber on stderr, `RUST_LOG` or `-v` to tune it),
//! progress bars and printing; the libraries only emit `tracing` events.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Stack of each rayon worker: the command runs on one of them (see [`main`]), so it gets
/// at least the main thread's usual 8 MiB; candle's backward walks its graph recursively.
const WORKER_STACK: usize = 16 << 20;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    // The command runs inside the rayon pool (as many threads as before: RAYON_NUM_THREADS
    // or one per CPU), on one of its workers: the kernels' many short parallel regions
    // (600 a rollout, one per step) then fork from a worker, instead of each handing its
    // work from the main thread to the pool and sleeping until it is done (measured on 2
    // cores: the RL² rollout of `configs/crypto-multi-asset.toml` at B = 32 went from
    // 600–640 k to 760–775 k env-steps/s, with byte-identical checkpoints).
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK)
        .thread_name(|i| format!("mrl-worker-{i}"))
        .build();
    let result = match pool {
        Ok(pool) => pool.install(|| cli::run(args)),
        Err(err) => Err(anyhow::anyhow!("could not start the thread pool: {err}")),
    };
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
