//! Criterion bench: the 11 features over 1 M bars of a seeded synthetic GBM (mrl-data's
//! generator, `ChaCha8Rng` from seed 42). Target: well under 100 ms, O(n). One thread.
//!
//! `fresh_matrix` is what a caller of `compute_features` pays, including the first touch of
//! the 88 MB output (page faults); `reused_matrix` recomputes into a cleared matrix whose
//! memory is already mapped, which isolates the arithmetic.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mrl::data::SyntheticConfig;
use mrl::features::{FeatureMatrix, FeatureStream, compute_features};

const N_BARS: usize = 1_000_000;

fn bench_features(c: &mut Criterion) {
    let market = SyntheticConfig::default()
        .generate(N_BARS, 42)
        .expect("default GBM is valid");
    let closes = market.series.closes();
    let mut group = c.benchmark_group("features/cpu/1M_bars");
    group.throughput(Throughput::Elements(N_BARS as u64));
    group.sample_size(20);
    group.bench_function("fresh_matrix", |b| {
        b.iter(|| compute_features(black_box(closes)).expect("valid closes"))
    });
    let mut matrix = FeatureMatrix::new();
    group.bench_function("reused_matrix", |b| {
        b.iter(|| {
            matrix.clear();
            FeatureStream::new()
                .extend(black_box(closes), &mut matrix)
                .expect("valid closes");
            black_box(matrix.n_bars())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_features);
criterion_main!(benches);
