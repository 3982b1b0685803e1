//! VecTrials: lockstep trials, validity masks, determinism by seed, resume.

use std::sync::Arc;

use mrl_env::{
    Env, Error, FixedMarket, Result, Split, Step, TaskDistribution, TradingConfig, TrialConfig,
    VecTrials, VecTrialsState,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{market, random_walk};

/// Episodes of a random length in `1..=max_len`; obs = [task, step]; reward = task + action;
/// an episode terminates when it ends on action 1, else truncates.
struct Countdown {
    task: f32,
    max_len: usize,
    len: usize,
    step: usize,
    obs: [f32; 2],
}

impl Env for Countdown {
    fn obs_dim(&self) -> usize {
        2
    }
    fn n_actions(&self) -> usize {
        2
    }
    fn max_episode_steps(&self) -> usize {
        self.max_len
    }
    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Result<&[f32]> {
        self.len = rng.random_range(1..=self.max_len);
        self.step = 0;
        self.obs = [self.task, 0.0];
        Ok(&self.obs)
    }
    fn step(&mut self, action: usize) -> Result<Step<'_>> {
        if action >= 2 {
            return Err(Error::InvalidAction {
                action,
                n_actions: 2,
            });
        }
        self.step += 1;
        self.obs = [self.task, self.step as f32];
        let end = self.step == self.len;
        Ok(Step {
            obs: &self.obs,
            reward: f64::from(self.task) + action as f64,
            terminated: end && action == 1,
            truncated: end && action == 0,
        })
    }
}

struct Countdowns {
    max_len: usize,
    claimed_obs_dim: usize,
}

impl TaskDistribution for Countdowns {
    type Env = Countdown;
    fn name(&self) -> &str {
        "countdowns"
    }
    fn obs_dim(&self) -> usize {
        self.claimed_obs_dim
    }
    fn n_actions(&self) -> usize {
        2
    }
    fn max_episode_steps(&self) -> usize {
        self.max_len
    }
    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> Result<Countdown> {
        let offset = if split == Split::Test { 1000.0 } else { 0.0 };
        Ok(Countdown {
            task: offset + rng.random_range(0..100) as f32,
            max_len: self.max_len,
            len: 0,
            step: 0,
            obs: [0.0; 2],
        })
    }
}

fn countdowns(n_envs: usize, seed: u64) -> VecTrials<Countdowns> {
    let dist = Arc::new(Countdowns {
        max_len: 5,
        claimed_obs_dim: 2,
    });
    VecTrials::new(dist, n_envs, TrialConfig::default(), Split::Train, seed).unwrap()
}

/// Runs one round with actions from a seeded rng and records every buffer.
fn record<D: TaskDistribution>(trials: &mut VecTrials<D>, action_seed: u64) -> Vec<f64> {
    let n_actions = trials.layout().n_actions;
    let mut rng = ChaCha8Rng::seed_from_u64(action_seed);
    let mut trace: Vec<f64> = trials
        .reset_trials()
        .unwrap()
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    for _ in 0..trials.max_trial_len() {
        let actions: Vec<usize> = (0..trials.n_envs())
            .map(|_| rng.random_range(0..n_actions))
            .collect();
        let batch = trials.step(&actions).unwrap();
        trace.extend(batch.inputs.iter().map(|&x| f64::from(x)));
        trace.extend(batch.rewards.iter().map(|&x| f64::from(x)));
        for flags in [
            batch.episode_done,
            batch.terminated,
            batch.truncated,
            batch.trial_done,
            batch.valid,
        ] {
            trace.extend(flags.iter().map(|&f| f64::from(u8::from(f))));
        }
        trace.extend(batch.episode.iter().map(|&e| e as f64));
    }
    trace
}

#[test]
fn same_seed_gives_identical_buffers() {
    let dist = Arc::new(
        FixedMarket::new(
            market(&random_walk(600, 1)),
            TradingConfig {
                max_steps: 30,
                ..TradingConfig::default()
            },
            0.2,
        )
        .unwrap(),
    );
    let make =
        |seed| VecTrials::new(dist.clone(), 8, TrialConfig::default(), Split::Train, seed).unwrap();
    let (mut a, mut b, mut c) = (make(42), make(42), make(43));
    assert_eq!(a.max_trial_len(), 90);
    assert_eq!(a.input_dim(), 19);
    assert_eq!(record(&mut a, 1), record(&mut b, 1));
    assert_eq!(record(&mut a, 2), record(&mut b, 2));
    let starts = |v: &VecTrials<FixedMarket>| -> Vec<usize> {
        v.trials().iter().map(|t| t.env().state().start).collect()
    };
    record(&mut c, 2);
    assert_ne!(starts(&a), starts(&c));
}

#[test]
fn a_slot_does_not_depend_on_the_batch_size() {
    let (mut small, mut large) = (countdowns(3, 9), countdowns(7, 9));
    let first_small = small.reset_trials().unwrap().to_vec();
    let first_large = large.reset_trials().unwrap().to_vec();
    let dim = small.input_dim();
    assert_eq!(first_small, first_large[..3 * dim]);
    for _ in 0..small.max_trial_len() {
        let a = small.step(&[1, 0, 1]).unwrap().inputs.to_vec();
        let b = large.step(&[1, 0, 1, 0, 0, 0, 0]).unwrap().inputs.to_vec();
        assert_eq!(a, b[..3 * dim]);
    }
}

#[test]
fn finished_slots_stay_done_and_invalid_until_the_next_round() {
    let mut trials = countdowns(16, 3);
    assert_eq!(trials.max_trial_len(), 15);
    let inputs = trials.reset_trials().unwrap();
    let dim = 2 + 2 + 2;
    for row in inputs.chunks(dim) {
        assert_eq!(&row[2..], &[0.0; 4]);
    }
    let mut valid_steps = [0usize; 16];
    let mut rewards = [0.0f64; 16];
    let mut finished = [false; 16];
    let mut all_done_at = None;
    for t in 0..trials.max_trial_len() {
        let actions: Vec<usize> = (0..16).map(|i| (i + t) % 2).collect();
        let batch = trials.step(&actions).unwrap();
        for slot in 0..16 {
            assert_eq!(batch.valid[slot], !finished[slot]);
            if finished[slot] {
                assert_eq!(batch.rewards[slot], 0.0);
                assert!(batch.trial_done[slot] && batch.episode_done[slot]);
                continue;
            }
            valid_steps[slot] += 1;
            rewards[slot] += f64::from(batch.rewards[slot]);
            let (term, trunc) = (batch.terminated[slot], batch.truncated[slot]);
            assert_eq!(batch.episode_done[slot], term || trunc);
            assert!(!(term && trunc));
            if batch.episode_done[slot] {
                assert_eq!(term, actions[slot] == 1);
            }
            finished[slot] = batch.trial_done[slot];
        }
        if batch.all_done && all_done_at.is_none() {
            all_done_at = Some(t);
        }
    }
    assert!(finished.iter().all(|&f| f));
    assert!(all_done_at.is_some());
    // Every slot ran its 3 episodes; their lengths differ between slots.
    assert_eq!(trials.completed_episodes(), &[3; 16]);
    assert!(valid_steps.iter().any(|&n| n != valid_steps[0]));
    for (row, total) in trials.episode_returns().chunks(3).zip(rewards) {
        assert!((row.iter().sum::<f64>() - total).abs() < 1e-9);
    }
    let curve = trials.mean_return_by_episode();
    for (k, mean) in curve.iter().enumerate() {
        let manual = (0..16)
            .map(|s| trials.episode_returns()[s * 3 + k])
            .sum::<f64>()
            / 16.0;
        assert!((mean - manual).abs() < 1e-9);
    }
    // A new round makes every slot valid again, with a new task.
    let before: Vec<f32> = trials.inputs().chunks(dim).map(|r| r[0]).collect();
    trials.reset_trials().unwrap();
    let after: Vec<f32> = trials.inputs().chunks(dim).map(|r| r[0]).collect();
    assert_ne!(before, after);
    let batch = trials.step(&[0; 16]).unwrap();
    assert!(batch.valid.iter().all(|&v| v));
    assert_eq!(trials.round(), 2);
}

#[test]
fn saved_state_replays_the_next_rounds() {
    let mut original = countdowns(4, 77);
    record(&mut original, 1);
    let saved = original.state();
    let json = serde_json::to_string(&saved).unwrap();
    let expected = record(&mut original, 2);

    let mut resumed = countdowns(4, 0);
    let state: VecTrialsState = serde_json::from_str(&json).unwrap();
    resumed.restore(&state).unwrap();
    assert_eq!(resumed.round(), 1);
    assert_eq!(record(&mut resumed, 2), expected);

    let mut other = countdowns(5, 0);
    assert!(matches!(
        other.restore(&saved),
        Err(Error::StateMismatch { .. })
    ));
}

#[test]
fn errors_for_bad_batches_and_mismatched_spaces() {
    let mut trials = countdowns(2, 0);
    assert!(matches!(
        trials.step(&[0, 0]),
        Err(Error::EpisodeNotRunning)
    ));
    trials.reset_trials().unwrap();
    assert!(matches!(
        trials.step(&[0]),
        Err(Error::ActionCountMismatch {
            found: 1,
            expected: 2
        })
    ));
    assert!(matches!(
        trials.step(&[0, 2]),
        Err(Error::InvalidAction { action: 2, .. })
    ));
    let liar = Arc::new(Countdowns {
        max_len: 3,
        claimed_obs_dim: 5,
    });
    let mut trials = VecTrials::new(liar, 2, TrialConfig::default(), Split::Test, 0).unwrap();
    assert!(matches!(
        trials.reset_trials(),
        Err(Error::SpaceMismatch {
            what: "obs_dim",
            expected: 5,
            found: 2
        })
    ));
    let dist = Arc::new(Countdowns {
        max_len: 3,
        claimed_obs_dim: 2,
    });
    assert!(matches!(
        VecTrials::new(dist, 0, TrialConfig::default(), Split::Train, 0),
        Err(Error::InvalidConfig {
            field: "n_envs",
            ..
        })
    ));
}
