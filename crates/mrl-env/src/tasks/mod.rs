//! Task distributions over markets: assets, regimes, timeframes, synthetic processes.
//!
//! Every distribution gives disjoint train and test sets ([`Split`]); how each one keeps them
//! apart is documented on the type.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Split;

/// ChaCha stream id of the tasks of `split`: train and test draw from different streams.
fn split_stream(split: Split) -> u64 {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

/// A task RNG for `split`: one `u64` drawn from the caller's `rng`, expanded on the
/// split's own ChaCha stream, so train and test task sequences are independent even when the
/// caller's seeds coincide.
pub(crate) fn split_rng(split: Split, rng: &mut ChaCha8Rng) -> ChaCha8Rng {
    let mut task_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
    task_rng.set_stream(split_stream(split));
    task_rng
}
