//! Running the CPU kernels from inside a rayon pool.
//!
//! The fused kernels split their work with `rayon::join` and parallel iterators: the
//! rollout step once per step (600 times a trial), the PPO update a few dozen times a
//! gradient step. Called from a thread outside the pool (a program's main thread), each
//! such region is handed to the pool while the caller sleeps until it is done; called from
//! one of the pool's workers, the caller takes part and the region forks in place, as
//! PyTorch's OpenMP master thread is one of its team. [`in_worker_pool`] runs a closure
//! that way. The results are the same bits either way: the kernels split their work by
//! thread count, not by which thread calls them.

use rayon::{ThreadPool, ThreadPoolBuildError, ThreadPoolBuilder};

/// Stack of each worker: a closure run by [`in_worker_pool`] gets at least a main thread's
/// usual 8 MiB (candle's backward walks its graph recursively).
pub const WORKER_STACK_BYTES: usize = 16 << 20;

/// A rayon pool of `RAYON_NUM_THREADS` threads, or one per CPU (sized like rayon's global
/// pool, but a pool of its own; named `mrl-worker-N`, [`WORKER_STACK_BYTES`] stacks).
///
/// # Errors
/// When the operating system refuses the threads.
pub fn worker_pool() -> Result<ThreadPool, ThreadPoolBuildError> {
    ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK_BYTES)
        .thread_name(|i| format!("mrl-worker-{i}"))
        .build()
}

/// Runs `f` on a worker of a new [`worker_pool`], so that the kernels' parallel regions
/// inside it fork from that worker (see the module docs). On 2 cores this made the RL²
/// rollout of `mrl train` at B = 32 go from 600–640 k to 757–797 k env-steps/s.
///
/// # Errors
/// When the pool cannot be built.
pub fn in_worker_pool<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, ThreadPoolBuildError> {
    Ok(worker_pool()?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_worker_of_a_pool_with_the_configured_threads() {
        let (inside, threads) =
            in_worker_pool(|| (rayon::current_thread_index(), rayon::current_num_threads()))
                .unwrap();
        assert!(inside.is_some(), "not on a pool worker");
        assert_eq!(
            threads,
            rayon::ThreadPoolBuilder::new()
                .build()
                .unwrap()
                .current_num_threads()
        );
    }
}
