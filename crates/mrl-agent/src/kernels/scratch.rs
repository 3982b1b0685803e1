//! A small pool of large `f32` buffers reused across the fused sequence ops' calls.
//!
//! The training ops ([`super::gru_seq`], [`super::net_seq`]) work in buffers of tens of MB
//! at `B·T = 19 200` rows. Allocations that large come straight from the OS (glibc and
//! mimalloc alike), so each call paid a page fault and a page clear per 4 KiB on first
//! touch: ≈20 % of a PPO gradient step under `perf`. Buffers come back here when an op's
//! saved state is dropped (with the autograd graph) or when its backward is done, and are
//! handed out again **with their old contents**: every user overwrites all of a buffer
//! before reading it (a buffer that must start at zero is not taken from here).

use std::sync::Mutex;

/// The free buffers.
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// Most buffers kept (a forward and a backward of the whole network hold about ten).
const MAX_BUFFERS: usize = 16;

/// A buffer of `len` floats with unspecified contents (stale values of an earlier call, or
/// zeros): the smallest free buffer that holds `len`, else a new one.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let reused = POOL.lock().ok().and_then(|mut pool| {
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(pool.swap_remove(best))
    });
    match reused {
        Some(mut v) => {
            // Within capacity: no reallocation; only a tail beyond the old length is written.
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Returns a buffer; when more than [`MAX_BUFFERS`] are free, the smallest is dropped.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        pool.push(v);
        if pool.len() > MAX_BUFFERS
            && let Some((i, _)) = pool.iter().enumerate().min_by_key(|(_, v)| v.capacity())
        {
            pool.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_the_asked_length_and_come_back() {
        let a = take(1000);
        assert_eq!(a.len(), 1000);
        let ptr = a.as_ptr();
        give(a);
        // The pool is shared with other tests running in parallel, so a different buffer
        // may come back; the length is what is promised.
        let b = take(10);
        assert_eq!(b.len(), 10);
        let c = take(5000);
        assert_eq!(c.len(), 5000);
        assert!(c.capacity() >= 5000);
        let _ = ptr;
        give(b);
        give(c);
    }

    #[test]
    fn the_pool_stays_bounded() {
        for n in 1..=3 * MAX_BUFFERS {
            give(vec![0.0; n]);
        }
        assert!(POOL.lock().unwrap().len() <= MAX_BUFFERS);
    }
}
