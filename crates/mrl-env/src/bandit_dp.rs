//! The Bayes-optimal policy for Bernoulli bandits of a known horizon: the exact dynamic
//! programme over posterior states, the ceiling every meta-learner of RL²'s bandit benchmark
//! is measured against.
//!
//! # The programme
//!
//! Each arm has a uniform Beta(1, 1) prior on its success probability, the prior the tasks are
//! drawn from (`p_i ~ U(0, 1)`). After `s` successes and `f` failures the arm pays 1 with
//! posterior probability `p(s, f) = (s + 1)/(s + f + 2)`. With `r` pulls left, the expected
//! total reward of optimal play from the arms' counts `x = ((s_1, f_1), …, (s_k, f_k))` is
//!
//! ```text
//! V(x, 0) = 0
//! V(x, r) = max_a  p(s_a, f_a)·(1 + V(x + success_a, r − 1)) + (1 − p(s_a, f_a))·V(x + failure_a, r − 1)
//! ```
//!
//! (Bellman 1956; Gittins, Glazebrook & Weber 2011, ch. 1). `r = n − Σ(s_a + f_a)` is implied
//! by the counts, and `V` is symmetric in the arms, so the table is keyed by the *sorted*
//! multiset of arm counts: every permutation of the arms shares one entry. The last pull
//! needs no entry (it is greedy), so the table holds the canonical states with at least one
//! pull left, built level by level from the last pull back to the first.
//!
//! The start value `V(0, n)` is the best expected total reward any policy can reach on
//! average over the task distribution: 6.659988 for k = 5, n = 10 and 6.713951 for k = 10,
//! n = 10 (and for any k ≥ 10 at n = 10: more arms than pulls change nothing). The RL² paper's
//! Table 1 figures for n = 10 (6.6–6.7, Gittins and RL² alike) are at this ceiling.
//!
//! # Size and time
//!
//! An arm state `(s, f)` is one of `n(n+1)/2` types and at most `min(k, n − 1)` arms are off
//! their prior before the last pull. The canonical states number 1951 for k = 5, n = 10, 2296
//! for k = 10, n = 10, 237 995 for k = 5, n = 20 and 2.2 million for k = 2, n = 100. They are
//! counted before anything is allocated, and [`BayesOptimalPolicy::new`] refuses more than
//! [`BayesOptimalPolicy::MAX_STATES`] with [`Error::StateSpaceTooLarge`] (k = 5, n = 100 has
//! more than 10¹¹; the refusal takes microseconds). The table is a hash map of 32-byte
//! slots, 40 to 80 bytes a state.
//!
//! Build times measured in release (on a shared machine, best of several runs): k = 5, n = 10
//! in 0.26 ms and k = 10, n = 10 in 0.34 ms; k = 5, n = 20 in 0.1 s; k = 10, n = 20 and
//! k = 20, n = 20 (0.8 million states) in 0.6 s; k = 2, n = 100 in 0.9 s.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;

use crate::bandit::invalid;
use crate::{BanditPolicy, Error, Result};

/// Two actions whose values differ by less than this are tied; ties go to the lowest arm.
const TIE_EPS: f64 = 1e-12;

/// The Bayes-optimal finite-horizon policy for Bernoulli bandits with Beta(1, 1) priors.
///
/// Built once for `k` arms and `n` pulls (the value table is shared by clones); every
/// [`BanditPolicy::select`] then looks up the value of each arm's two successors and pulls the
/// best arm, the lowest index among arms within 1e-12 of the best. On a task of another shape
/// than the table's, or past the `n`-th pull, it pulls the arm of best posterior mean (the
/// last pull of the programme), so it never panics.
///
/// ```
/// use mrl_env::BayesOptimalPolicy;
///
/// let policy = BayesOptimalPolicy::new(5, 10)?;
/// assert!((policy.value() - 6.659987874779542).abs() < 1e-9);
/// assert!(BayesOptimalPolicy::new(5, 100).is_err());
/// # Ok::<(), mrl_env::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BayesOptimalPolicy {
    table: Arc<ValueTable>,
    /// `(successes, failures)` of every arm of the current task.
    counts: Vec<(u32, u32)>,
    /// Pulls so far on the current task.
    pulls: usize,
    /// Whether the current task has the table's `k` and `n`.
    in_table: bool,
    /// Scratch: the canonical state of `counts`.
    state: Vec<u32>,
    /// Scratch: a successor state.
    child: Vec<u32>,
}

impl BayesOptimalPolicy {
    /// The largest number of canonical states [`BayesOptimalPolicy::new`] builds (at most
    /// about 400 MB of table).
    pub const MAX_STATES: usize = 5_000_000;

    /// Solves the programme for `n_arms` arms and `n_pulls` pulls.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no arm or no pull; [`Error::StateSpaceTooLarge`] when the
    /// programme has more than [`BayesOptimalPolicy::MAX_STATES`] canonical states (counted
    /// before anything is allocated).
    pub fn new(n_arms: usize, n_pulls: usize) -> Result<Self> {
        if n_arms == 0 {
            return Err(invalid("n_arms", 0, "at least one arm is needed"));
        }
        if n_pulls == 0 {
            return Err(invalid("n_pulls", 0, "an episode needs at least one pull"));
        }
        let table = ValueTable::build(n_arms, n_pulls, Self::MAX_STATES)?;
        Ok(Self {
            table: Arc::new(table),
            counts: vec![(0, 0); n_arms],
            pulls: 0,
            in_table: true,
            state: Vec::new(),
            child: Vec::new(),
        })
    }

    /// `V(0, n)`: the expected total reward of the policy over the task distribution
    /// (`p_i ~ U(0, 1)`), the most any policy can expect.
    pub fn value(&self) -> f64 {
        self.table.start_value()
    }

    /// Arms `k` of the table.
    pub fn n_arms(&self) -> usize {
        self.table.n_arms
    }

    /// Pulls `n` of the table.
    pub fn n_pulls(&self) -> usize {
        self.table.n_pulls
    }

    /// Canonical states in the table (those with at least one pull left).
    pub fn n_states(&self) -> usize {
        self.table.values.len()
    }

    /// The arm of best posterior mean `(s + 1)/(s + f + 2)`, the lowest index on ties.
    fn greedy_arm(&self) -> usize {
        first_within_eps(self.counts.iter().map(|&(s, f)| posterior_mean(s, f)))
    }
}

impl BanditPolicy for BayesOptimalPolicy {
    fn name(&self) -> String {
        "bayes-optimal (DP)".to_owned()
    }

    fn reset(&mut self, n_arms: usize, n_pulls: usize) {
        self.counts.clear();
        self.counts.resize(n_arms, (0, 0));
        self.pulls = 0;
        self.in_table = (n_arms, n_pulls) == (self.table.n_arms, self.table.n_pulls);
    }

    fn select(&mut self, _rng: &mut ChaCha8Rng) -> usize {
        let table = &self.table;
        if !self.in_table || self.pulls >= table.n_pulls {
            return self.greedy_arm();
        }
        self.state.clear();
        self.state.extend(
            self.counts
                .iter()
                .map(|&(s, f)| arm_type(s, f))
                .filter(|&t| t != 0),
        );
        self.state.sort_unstable_by(|a, b| b.cmp(a));
        // `pulls < n ≤ u32::MAX`, checked when the table was built.
        let level = self.pulls as u32;
        // Arms with the same counts have the same action value: one look-up per arm type.
        let mut type_values: Vec<(u32, f64)> = Vec::with_capacity(self.counts.len());
        let mut arm_values = Vec::with_capacity(self.counts.len());
        for &(s, f) in &self.counts {
            let ty = arm_type(s, f);
            let value = match type_values.iter().find(|(t, _)| *t == ty) {
                Some(&(_, v)) => v,
                None => {
                    let Some(v) = table.action_value(&self.state, level, ty, &mut self.child)
                    else {
                        // Unreachable for a task of the table's shape; greedy is the safe answer.
                        return self.greedy_arm();
                    };
                    type_values.push((ty, v));
                    v
                }
            };
            arm_values.push(value);
        }
        first_within_eps(arm_values.into_iter())
    }

    fn update(&mut self, arm: usize, reward: f64) {
        if let Some((s, f)) = self.counts.get_mut(arm) {
            if reward > 0.5 {
                *s = s.saturating_add(1);
            } else {
                *f = f.saturating_add(1);
            }
            self.pulls += 1;
        }
    }
}

/// The index of the first value within [`TIE_EPS`] of the largest, 0 for none.
fn first_within_eps(mut values: impl Iterator<Item = f64> + Clone) -> usize {
    let best = values.clone().fold(f64::NEG_INFINITY, f64::max);
    values.position(|v| v >= best - TIE_EPS).unwrap_or(0)
}

/// `(s + 1)/(s + f + 2)`: the Beta(1 + s, 1 + f) posterior mean.
fn posterior_mean(s: u32, f: u32) -> f64 {
    (f64::from(s) + 1.0) / (f64::from(s) + f64::from(f) + 2.0)
}

/// The index of arm state `(s, f)` among all arm states ordered by pulls `m = s + f`, then
/// successes: `m(m + 1)/2 + s`. The prior `(0, 0)` is 0; more pulls, a larger index.
fn arm_type(s: u32, f: u32) -> u32 {
    let m = s + f;
    m * (m + 1) / 2 + s
}

/// How a canonical state (its arm types off the prior, in decreasing order) becomes a `u128`.
#[derive(Debug, Clone, Copy)]
enum Codec {
    /// Fixed fields of `bits` bits, one per arm type (all nonzero, so the key is injective).
    Fields { bits: u32 },
    /// A leading 1, then per arm `1^s 0 1^f 0`: `1 + (n − 1) + 2·min(k, n − 1)` bits at most,
    /// shorter than fixed fields when many arms fit in few pulls.
    Unary,
}

impl Codec {
    /// The shorter codec for `k` arms and `n` pulls, `None` when neither fits in 128 bits.
    fn choose(n_arms: usize, n_pulls: usize) -> Option<Self> {
        let max_off_prior = n_arms.min(n_pulls - 1);
        // Arm types of the table's states have at most n − 1 pulls.
        let max_type = u128::from(arm_type((n_pulls - 1) as u32, 0));
        let bits = (128 - max_type.leading_zeros()).max(1);
        let fields_bits = max_off_prior as u128 * u128::from(bits);
        let unary_bits = 1 + (n_pulls - 1) as u128 + 2 * max_off_prior as u128;
        if fields_bits.min(unary_bits) > 128 {
            None
        } else if fields_bits <= unary_bits {
            Some(Self::Fields { bits })
        } else {
            Some(Self::Unary)
        }
    }

    fn key(self, state: &[u32], types: &[(u32, u32)]) -> u128 {
        match self {
            Self::Fields { bits } => state
                .iter()
                .fold(0, |key, &t| (key << bits) | u128::from(t)),
            Self::Unary => state.iter().fold(1, |key, &t| {
                let (s, f) = types[t as usize];
                let ones = |n: u32| (1u128 << n) - 1;
                (key << (s + f + 2)) | (ones(s) << (f + 2)) | (ones(f) << 1)
            }),
        }
    }
}

/// `V` of every canonical state with at least one pull left.
struct ValueTable {
    n_arms: usize,
    n_pulls: usize,
    keys: StateKeys,
    values: Values,
}

type Values = HashMap<u128, f64, BuildHasherDefault<KeyHasher>>;

/// The keys of canonical states: the codec and the arm types it reads.
#[derive(Debug)]
struct StateKeys {
    codec: Codec,
    /// `(s, f)` of every arm type with at most `n` pulls, by index.
    types: Vec<(u32, u32)>,
}

impl StateKeys {
    fn key(&self, state: &[u32]) -> u128 {
        self.codec.key(state, &self.types)
    }
}

impl fmt::Debug for ValueTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueTable")
            .field("n_arms", &self.n_arms)
            .field("n_pulls", &self.n_pulls)
            .field("codec", &self.keys.codec)
            .field("states", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl ValueTable {
    /// Counts the canonical states, then fills `V` level by level from the last pull back.
    fn build(n_arms: usize, n_pulls: usize, max_states: usize) -> Result<Self> {
        let too_large = |states: u128| Error::StateSpaceTooLarge {
            n_arms,
            n_pulls,
            states,
            limit: max_states,
        };
        let states = count_states(n_arms, n_pulls, max_states).map_err(too_large)?;
        let n = u32::try_from(n_pulls).map_err(|_| too_large(u128::MAX))?;
        let codec = Codec::choose(n_arms, n_pulls).ok_or_else(|| {
            invalid(
                "n_pulls",
                n_pulls,
                "the bandit's canonical states do not fit a 128-bit key",
            )
        })?;
        let types = (0..=n)
            .flat_map(|m| (0..=m).map(move |s| (s, m - s)))
            .collect();
        let keys = StateKeys { codec, types };
        let mut values = Values::with_capacity_and_hasher(states, BuildHasherDefault::default());
        let mut prefix = Vec::with_capacity(n_arms.min(n_pulls));
        let mut child = Vec::with_capacity(n_arms.min(n_pulls) + 1);
        for level in (0..n).rev() {
            let mut visit = |state: &[u32]| {
                let value = state_value(&keys, &values, n_arms, n_pulls, state, level, &mut child);
                values.insert(keys.key(state), value);
            };
            enumerate(
                &keys.types,
                level,
                arm_type(level, 0),
                n_arms,
                &mut prefix,
                &mut visit,
            );
        }
        debug_assert_eq!(values.len(), states);
        tracing::debug!(
            n_arms,
            n_pulls,
            states = values.len(),
            "bayes-optimal bandit table built"
        );
        Ok(Self {
            n_arms,
            n_pulls,
            keys,
            values,
        })
    }

    fn start_value(&self) -> f64 {
        lookup(&self.keys, &self.values, self.n_pulls, &[], 0).unwrap_or(0.0)
    }

    /// See [`action_value`].
    fn action_value(
        &self,
        state: &[u32],
        level: u32,
        ty: u32,
        child: &mut Vec<u32>,
    ) -> Option<f64> {
        action_value(
            &self.keys,
            &self.values,
            self.n_pulls,
            state,
            level,
            ty,
            child,
        )
    }
}

/// `V(state, n − level)` from `values`; 0 at `level = n`, `None` for a state outside the table.
fn lookup(
    keys: &StateKeys,
    values: &Values,
    n_pulls: usize,
    state: &[u32],
    level: u32,
) -> Option<f64> {
    if level as usize >= n_pulls {
        return Some(0.0);
    }
    values.get(&keys.key(state)).copied()
}

/// `V(state, n − level)`: the best action value over the arm types present in `state` and the
/// prior when an arm is still on it. All successors lie one level down, already in `values`.
fn state_value(
    keys: &StateKeys,
    values: &Values,
    n_arms: usize,
    n_pulls: usize,
    state: &[u32],
    level: u32,
    child: &mut Vec<u32>,
) -> f64 {
    let on_prior = (state.len() < n_arms).then_some(0);
    let mut best = f64::NEG_INFINITY;
    let mut previous = None;
    for ty in state.iter().copied().chain(on_prior) {
        // `state` is sorted: equal types are adjacent and share one action value.
        if previous == Some(ty) {
            continue;
        }
        previous = Some(ty);
        if let Some(v) = action_value(keys, values, n_pulls, state, level, ty, child) {
            best = best.max(v);
        }
    }
    best
}

/// `p·(1 + V(success)) + (1 − p)·V(failure)` for pulling an arm of type `ty` in `state`
/// (decreasing arm types off the prior) at `level` pulls; `None` when a successor is missing.
fn action_value(
    keys: &StateKeys,
    values: &Values,
    n_pulls: usize,
    state: &[u32],
    level: u32,
    ty: u32,
    child: &mut Vec<u32>,
) -> Option<f64> {
    let (s, f) = keys.types[ty as usize];
    let p = posterior_mean(s, f);
    successor(state, ty, arm_type(s + 1, f), child);
    let success = lookup(keys, values, n_pulls, child, level + 1)?;
    successor(state, ty, arm_type(s, f + 1), child);
    let failure = lookup(keys, values, n_pulls, child, level + 1)?;
    Some(p * (1.0 + success) + (1.0 - p) * failure)
}

/// `state` with one arm of type `from` (0: one on the prior) moved to type `to > from`, kept in
/// decreasing order, into `child`.
fn successor(state: &[u32], from: u32, to: u32, child: &mut Vec<u32>) {
    child.clear();
    child.extend_from_slice(state);
    let mut i = match child.iter().position(|&t| t == from) {
        Some(i) if from != 0 => {
            child[i] = to;
            i
        }
        _ => {
            child.push(to);
            child.len() - 1
        }
    };
    while i > 0 && child[i - 1] < child[i] {
        child.swap(i - 1, i);
        i -= 1;
    }
}

/// Visits every canonical state with `pulls` pulls in all: decreasing nonzero arm types, at
/// most `arms_left` of them, each at most `max_type`, after the types already in `prefix`.
fn enumerate(
    types: &[(u32, u32)],
    pulls: u32,
    max_type: u32,
    arms_left: usize,
    prefix: &mut Vec<u32>,
    visit: &mut dyn FnMut(&[u32]),
) {
    if pulls == 0 {
        visit(prefix);
        return;
    }
    let mut ty = max_type.min(arm_type(pulls, 0));
    while ty > 0 {
        let (s, f) = types[ty as usize];
        let m = s + f;
        // Types only get smaller from here: the arms left cannot hold the pulls left.
        if (m as usize).saturating_mul(arms_left) < pulls as usize {
            break;
        }
        prefix.push(ty);
        enumerate(types, pulls - m, ty, arms_left - 1, prefix, visit);
        prefix.pop();
        ty -= 1;
    }
}

/// Canonical states with at least one of `n_pulls` pulls left for `n_arms` arms (multisets of
/// `k` arm states with fewer than `n` pulls in all), exactly; `Err` with a lower bound once it
/// passes `limit`.
///
/// The count runs over horizons `w = 1, 2, 4, …` so that a hopeless case stops early: pulls
/// `m ≥ 1` come in `m + 1` arm types, and `c` arms of `m` pulls are a multiset of `c` of them,
/// `C(m + c, c)` ways.
fn count_states(n_arms: usize, n_pulls: usize, limit: usize) -> std::result::Result<usize, u128> {
    let mut horizon = 1usize;
    loop {
        let horizon_now = horizon.min(n_pulls);
        let count = count_below(n_arms, horizon_now);
        if count > limit as u128 {
            return Err(count);
        }
        if horizon_now == n_pulls {
            return usize::try_from(count).map_err(|_| count);
        }
        horizon = horizon.saturating_mul(2);
    }
}

/// Multisets of `n_arms` arm states with fewer than `n_pulls` pulls in all (saturating).
fn count_below(n_arms: usize, n_pulls: usize) -> u128 {
    let max_pulls = n_pulls - 1;
    let max_off_prior = n_arms.min(max_pulls);
    // counts[j][w]: multisets of j arms off the prior with w pulls in all.
    let mut counts = vec![vec![0u128; max_pulls + 1]; max_off_prior + 1];
    counts[0][0] = 1;
    for m in 1..=max_pulls {
        let mut next = counts.clone();
        for j in 0..=max_off_prior {
            for w in 0..=max_pulls {
                let ways = counts[j][w];
                if ways == 0 {
                    continue;
                }
                let mut multisets = 1u128;
                let mut c = 1;
                while j + c <= max_off_prior && w + c * m <= max_pulls {
                    // C(m + c, c) from C(m + c − 1, c − 1).
                    multisets = multisets.saturating_mul((m + c) as u128) / c as u128;
                    let add = ways.saturating_mul(multisets);
                    next[j + c][w + c * m] = next[j + c][w + c * m].saturating_add(add);
                    c += 1;
                }
            }
        }
        counts = next;
    }
    counts
        .iter()
        .flatten()
        .fold(0u128, |sum, &c| sum.saturating_add(c))
}

/// A multiplicative hasher for the `u128` state keys (SipHash would dominate the build).
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // The murmur3 finaliser: every key bit reaches the low (bucket) and high (tag) bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u128(&mut self, key: u128) {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        self.0 = (self.0 ^ lo).wrapping_add(hi.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;

    use super::*;
    use crate::{BanditDistribution, default_baselines, evaluate_policy, sample_tasks};

    /// `V` by the plain recursion over the actual arms: no symmetry, no table.
    fn brute_value(counts: &mut [(u32, u32)], left: u32) -> f64 {
        if left == 0 {
            return 0.0;
        }
        (0..counts.len())
            .map(|a| brute_action_value(counts, left, a))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    fn brute_action_value(counts: &mut [(u32, u32)], left: u32, arm: usize) -> f64 {
        let (s, f) = counts[arm];
        let p = posterior_mean(s, f);
        counts[arm] = (s + 1, f);
        let success = brute_value(counts, left - 1);
        counts[arm] = (s, f + 1);
        let failure = brute_value(counts, left - 1);
        counts[arm] = (s, f);
        p * (1.0 + success) + (1.0 - p) * failure
    }

    /// `∫ p^s (1 − p)^f dp = s! f! / (s + f + 1)!`.
    fn beta_integral(s: u32, f: u32) -> f64 {
        let fact = |n: u32| (1..=n).map(f64::from).product::<f64>();
        fact(s) * fact(f) / fact(s + f + 1)
    }

    /// The expected total reward of `policy` actually played, over `p_i ~ U(0, 1)`: every
    /// outcome path, weighted by its probability integrated over the arms' priors.
    fn exact_play_value(policy: &BayesOptimalPolicy, counts: &mut [(u32, u32)], left: u32) -> f64 {
        if left == 0 {
            let weight: f64 = counts.iter().map(|&(s, f)| beta_integral(s, f)).product();
            let reward: u32 = counts.iter().map(|&(s, _)| s).sum();
            return weight * f64::from(reward);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let arm = policy.clone().select(&mut rng);
        let mut total = 0.0;
        for reward in [1.0, 0.0] {
            let mut next = policy.clone();
            next.update(arm, reward);
            let (s, f) = counts[arm];
            counts[arm] = if reward > 0.5 { (s + 1, f) } else { (s, f + 1) };
            total += exact_play_value(&next, counts, left - 1);
            counts[arm] = (s, f);
        }
        total
    }

    #[test]
    fn start_values_match_the_reference() {
        // Computed independently in Python (memoised recursion over sorted arm states).
        for (k, n, reference, states) in [
            (5, 10, 6.659987874779542, 1951),
            (10, 10, 6.713951191394768, 2296),
        ] {
            let policy = BayesOptimalPolicy::new(k, n).unwrap();
            assert!(
                (policy.value() - reference).abs() < 1e-9,
                "k={k} n={n}: {}",
                policy.value()
            );
            assert_eq!(policy.n_states(), states, "k={k} n={n}");
        }
    }

    #[test]
    fn tiny_cases_match_brute_force_and_exact_play() {
        for (k, n) in [
            (1, 1),
            (1, 4),
            (2, 1),
            (2, 2),
            (2, 3),
            (2, 4),
            (3, 3),
            (3, 5),
        ] {
            let policy = BayesOptimalPolicy::new(k, n).unwrap();
            let brute = brute_value(&mut vec![(0, 0); k], n as u32);
            assert!(
                (policy.value() - brute).abs() < 1e-12,
                "k={k} n={n}: {} vs {brute}",
                policy.value()
            );
            // The policy's own choices reach the value it reports.
            let played = exact_play_value(&policy, &mut vec![(0, 0); k], n as u32);
            assert!(
                (played - brute).abs() < 1e-12,
                "k={k} n={n}: {played} vs {brute}"
            );
        }
        // One arm: n/2 whatever happens.
        assert!((BayesOptimalPolicy::new(1, 7).unwrap().value() - 3.5).abs() < 1e-12);
    }

    #[test]
    fn every_choice_is_the_lowest_best_arm() {
        // Arbitrary histories on k = 3, n = 7: the chosen arm has the best action value of the
        // plain recursion, and no lower arm ties with it.
        let (k, n) = (3, 7u32);
        let mut policy = BayesOptimalPolicy::new(k, n as usize).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut history_rng = ChaCha8Rng::seed_from_u64(6);
        for _ in 0..40 {
            policy.reset(k, n as usize);
            let mut counts = vec![(0u32, 0u32); k];
            for left in (1..=n).rev() {
                let values: Vec<f64> = (0..k)
                    .map(|a| brute_action_value(&mut counts, left, a))
                    .collect();
                let best = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let arm = policy.select(&mut rng);
                assert!(values[arm] >= best - 1e-9, "{counts:?}: {values:?}, {arm}");
                assert!(
                    values[..arm].iter().all(|&v| v < best - 1e-9),
                    "{counts:?}: {values:?}, {arm}"
                );
                // Play on with a random arm and outcome, to reach uneven histories.
                let played = rand::RngExt::random_range(&mut history_rng, 0..k);
                let reward = if rand::RngExt::random::<bool>(&mut history_rng) {
                    1.0
                } else {
                    0.0
                };
                policy.update(played, reward);
                let (s, f) = counts[played];
                counts[played] = if reward > 0.5 { (s + 1, f) } else { (s, f + 1) };
            }
        }
    }

    #[test]
    fn the_arm_is_mapped_back_from_the_canonical_state() {
        let mut policy = BayesOptimalPolicy::new(4, 10).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        policy.reset(4, 10);
        // All arms on the prior: the lowest.
        assert_eq!(policy.select(&mut rng), 0);
        // Arms 0 and 1 failed, arm 3 succeeded twice: arm 3, although it sorts first.
        for (arm, reward) in [(0, 0.0), (1, 0.0), (3, 1.0), (3, 1.0)] {
            policy.update(arm, reward);
        }
        assert_eq!(policy.select(&mut rng), 3);
        // A task of another shape, or pulls past n: the best posterior mean, no panic.
        policy.reset(2, 3);
        policy.update(1, 1.0);
        assert_eq!(policy.select(&mut rng), 1);
        policy.reset(4, 10);
        for _ in 0..12 {
            let arm = policy.select(&mut rng);
            policy.update(arm, 0.0);
        }
    }

    #[test]
    fn both_codecs_give_distinct_keys() {
        for (k, n) in [(1, 9), (2, 9), (4, 9), (9, 9)] {
            let types: Vec<(u32, u32)> = (0..=n)
                .flat_map(|m| (0..=m).map(move |s| (s, m - s)))
                .collect();
            let bits = 32 - arm_type(n - 1, 0).leading_zeros();
            for codec in [Codec::Fields { bits }, Codec::Unary] {
                let mut keys = HashSet::new();
                let mut states = 0usize;
                let mut prefix = Vec::new();
                for level in 0..n {
                    enumerate(
                        &types,
                        level,
                        arm_type(level, 0),
                        k,
                        &mut prefix,
                        &mut |s| {
                            states += 1;
                            keys.insert(codec.key(s, &types));
                        },
                    );
                }
                assert_eq!(keys.len(), states, "k={k} n={n} {codec:?}");
                assert_eq!(states as u128, count_below(k, n as usize), "k={k} n={n}");
            }
        }
    }

    #[test]
    fn monte_carlo_agrees_and_beats_the_baselines() {
        let (k, n, n_trials, seed) = (5, 10, 20_000, 11);
        let dist = BanditDistribution::new(k, n).unwrap();
        let tasks = sample_tasks(&dist, n_trials, seed);
        let mut policy = BayesOptimalPolicy::new(k, n).unwrap();
        let score = evaluate_policy(&mut policy, &tasks, n, seed).unwrap();
        assert_eq!(score.name, "bayes-optimal (DP)");
        assert!(
            (score.mean - policy.value()).abs() < 3.0 * score.std_err,
            "{score:?} vs {}",
            policy.value()
        );
        for mut baseline in default_baselines() {
            let other = evaluate_policy(baseline.as_mut(), &tasks, n, seed).unwrap();
            let noise = 3.0 * other.std_err.hypot(score.std_err);
            assert!(other.mean <= score.mean + noise, "{other:?} vs {score:?}");
        }
    }

    #[test]
    fn a_too_large_programme_is_refused_before_it_is_built() {
        let err = BayesOptimalPolicy::new(5, 100).unwrap_err();
        match &err {
            Error::StateSpaceTooLarge {
                n_arms: 5,
                n_pulls: 100,
                states,
                limit,
            } => assert!(*states > *limit as u128 && *limit == BayesOptimalPolicy::MAX_STATES),
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("k = 5") && message.contains("n = 100"),
            "{message}"
        );
        assert!(BayesOptimalPolicy::new(2, 100_000).is_err());
        assert!(matches!(
            BayesOptimalPolicy::new(0, 10),
            Err(Error::InvalidConfig {
                field: "n_arms",
                ..
            })
        ));
        assert!(matches!(
            BayesOptimalPolicy::new(3, 0),
            Err(Error::InvalidConfig {
                field: "n_pulls",
                ..
            })
        ));
    }

    #[test]
    fn state_counts_match_the_closed_forms() {
        // One arm: (s, f) with s + f < n, n(n + 1)/2 of them.
        assert_eq!(count_below(1, 10), 55);
        // k = 5, n = 100 is hopeless and stops after a few doublings.
        assert!(count_states(5, 100, BayesOptimalPolicy::MAX_STATES).is_err());
        assert_eq!(count_states(10, 10, 10_000), Ok(2296));
    }
}
