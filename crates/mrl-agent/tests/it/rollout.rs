//! The rollout workspace: fused step against the candle step, thread-count independence,
//! seeded sampling, resets, refresh after a weight change, and the MLP baseline.

use candle_core::{Device, Tensor};
use mrl_agent::{
    AgentConfig, Error, Policy, PolicyInputs, PolicyKind, RolloutOptions, RolloutWorkspace,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::golden::assert_close;

/// Random step inputs for `batch` trials (deterministic in `seed`).
struct Feed {
    obs: Vec<f32>,
    prev_actions: Vec<Option<usize>>,
    prev_rewards: Vec<f32>,
    prev_dones: Vec<bool>,
}

impl Feed {
    fn new(config: &AgentConfig, batch: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut u = || (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0;
        let obs = (0..batch * config.obs_dim).map(|_| u()).collect();
        let prev_rewards = (0..batch).map(|_| 0.01 * u()).collect();
        Self {
            obs,
            prev_actions: vec![None; batch],
            prev_rewards,
            prev_dones: vec![false; batch],
        }
    }

    fn inputs(&self) -> PolicyInputs<'_> {
        PolicyInputs {
            obs: &self.obs,
            prev_actions: &self.prev_actions,
            prev_rewards: &self.prev_rewards,
            prev_dones: &self.prev_dones,
        }
    }

    /// Feeds actions back and perturbs observations, as an env would.
    fn advance(&mut self, actions: &[usize], t: usize) {
        for (i, &a) in actions.iter().enumerate() {
            self.prev_actions[i] = Some(a);
            self.prev_rewards[i] = 0.001 * (a as f32 - 1.0);
            self.prev_dones[i] = (t + i) % 5 == 4;
        }
        for (k, o) in self.obs.iter_mut().enumerate() {
            *o = (*o * 1.3 + 0.1 * (k % 7) as f32).sin();
        }
    }
}

/// Everything a run of sampled steps produced, steps concatenated.
struct Trace {
    actions: Vec<usize>,
    log_probs: Vec<f32>,
    values: Vec<f32>,
    logits: Vec<f32>,
    /// Hidden states after the last step.
    hidden: Vec<f32>,
}

/// Runs `steps` sampled steps.
fn run(
    ws: &mut RolloutWorkspace,
    config: &AgentConfig,
    batch: usize,
    steps: usize,
    seed: u64,
) -> Trace {
    let mut feed = Feed::new(config, batch, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let (mut acts, mut lps, mut vals, mut logits) = (vec![], vec![], vec![], vec![]);
    for t in 0..steps {
        let step = ws.step(&feed.inputs(), &mut rng).unwrap();
        acts.extend_from_slice(step.actions);
        lps.extend_from_slice(step.log_probs);
        vals.extend_from_slice(step.values);
        logits.extend_from_slice(step.logits);
        let a = step.actions.to_vec();
        feed.advance(&a, t);
    }
    Trace {
        actions: acts,
        log_probs: lps,
        values: vals,
        logits,
        hidden: ws.hidden().unwrap().to_vec(),
    }
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn fused_step_equals_candle_step_over_a_trial() {
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp] {
        let config = AgentConfig {
            hidden: 128,
            kind,
            ..Default::default()
        };
        let policy = Policy::new(&config, &Device::Cpu, 11).unwrap();
        let batch = 37; // not a multiple of any tile or SIMD width
        let mut fused = RolloutWorkspace::new(&policy, batch).unwrap();
        let mut candle = RolloutWorkspace::new_candle(&policy, batch).unwrap();
        assert!(fused.is_fused() && !candle.is_fused());
        let f = run(&mut fused, &config, batch, 30, 5);
        let c = run(&mut candle, &config, batch, 30, 5);
        let (fa, fl, fv, fg, fh) = (f.actions, f.log_probs, f.values, f.logits, f.hidden);
        let (ca, cl, cv, cg, ch) = (c.actions, c.log_probs, c.values, c.logits, c.hidden);
        // Both paths see the same inputs as long as they sample the same actions; tiny
        // logit differences could flip a draw only at a probability boundary.
        assert_eq!(fa, ca, "{kind:?}: sampled actions");
        assert_close("logits", &fg, &to_f64(&cg), 1e-4, 1e-5);
        assert_close("values", &fv, &to_f64(&cv), 1e-4, 1e-5);
        assert_close("log_probs", &fl, &to_f64(&cl), 1e-4, 1e-5);
        assert_close("hidden", &fh, &to_f64(&ch), 1e-4, 1e-5);
        assert_eq!(
            fh.len(),
            if kind == PolicyKind::Rl2 {
                batch * 128
            } else {
                0
            }
        );
    }
}

#[test]
fn results_do_not_depend_on_threads_or_tiles() {
    let config = AgentConfig {
        hidden: 64,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 2).unwrap();
    let batch = 300;
    let reference = {
        let opts = RolloutOptions {
            threads: 1,
            tile_rows: 300,
            ..Default::default()
        };
        let mut ws = RolloutWorkspace::with_options(&policy, batch, &opts).unwrap();
        run(&mut ws, &config, batch, 8, 9)
    };
    for (threads, tile_rows) in [(2, 128), (3, 7), (4, 64)] {
        let opts = RolloutOptions {
            threads,
            tile_rows,
            min_rows_per_thread: 16,
        };
        let mut ws = RolloutWorkspace::with_options(&policy, batch, &opts).unwrap();
        assert_eq!(ws.threads(), threads);
        let got = run(&mut ws, &config, batch, 8, 9);
        assert_eq!(
            got.actions, reference.actions,
            "actions with {threads} threads"
        );
        assert_close("hidden", &got.hidden, &to_f64(&reference.hidden), 0.0, 1e-6);
    }
}

#[test]
fn same_seed_same_actions_and_greedy_draws_nothing() {
    let config = AgentConfig {
        hidden: 16,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 4).unwrap();
    let mut a = RolloutWorkspace::new(&policy, 8).unwrap();
    let mut b = RolloutWorkspace::new(&policy, 8).unwrap();
    assert_eq!(
        run(&mut a, &config, 8, 5, 3).actions,
        run(&mut b, &config, 8, 5, 3).actions
    );
    let feed = Feed::new(&config, 8, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let before = rng.clone();
    a.reset_all().unwrap();
    let step = a.step_greedy(&feed.inputs()).unwrap();
    for i in 0..8 {
        let l = &step.logits[i * 3..i * 3 + 3];
        assert!(l.iter().all(|&v| v <= l[step.actions[i]]));
        let p: f32 = step.probs[i * 3..i * 3 + 3].iter().sum();
        assert!((p - 1.0).abs() < 1e-5);
    }
    assert_eq!(rng.next_u64(), before.clone().next_u64());
}

#[test]
fn reset_zeroes_one_trial_only() {
    let config = AgentConfig {
        hidden: 8,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 4).unwrap();
    for mut ws in [
        RolloutWorkspace::new(&policy, 3).unwrap(),
        RolloutWorkspace::new_candle(&policy, 3).unwrap(),
    ] {
        let feed = Feed::new(&config, 3, 1);
        ws.step_greedy(&feed.inputs()).unwrap();
        let before = ws.hidden().unwrap().to_vec();
        ws.reset(1).unwrap();
        let after = ws.hidden().unwrap().to_vec();
        assert_eq!(&after[..8], &before[..8]);
        assert!(after[8..16].iter().all(|&v| v == 0.0));
        assert_eq!(&after[16..], &before[16..]);
        assert!(matches!(
            ws.reset(3),
            Err(Error::TrialOutOfRange {
                trial: 3,
                batch_size: 3
            })
        ));
        ws.reset_all().unwrap();
        assert!(ws.hidden().unwrap().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn refresh_picks_up_new_weights() {
    let config = AgentConfig {
        hidden: 8,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 4).unwrap();
    let mut ws = RolloutWorkspace::new(&policy, 2).unwrap();
    let feed = Feed::new(&config, 2, 1);
    let before = ws.step_greedy(&feed.inputs()).unwrap().values.to_vec();
    // shift the value head bias by 1
    let (_, bias) = policy
        .parameters()
        .into_iter()
        .find(|(n, _)| *n == "value_head.bias")
        .unwrap();
    bias.set(&(bias.as_tensor() + 1.0).unwrap()).unwrap();
    ws.reset_all().unwrap();
    let stale = ws.step_greedy(&feed.inputs()).unwrap().values.to_vec();
    assert_eq!(stale, before, "the snapshot is only refreshed on request");
    ws.refresh(&policy).unwrap();
    ws.reset_all().unwrap();
    let fresh = ws.step_greedy(&feed.inputs()).unwrap().values.to_vec();
    for (f, b) in fresh.iter().zip(&before) {
        assert!((f - b - 1.0).abs() < 1e-5);
    }
    let other = Policy::new(
        &AgentConfig {
            hidden: 9,
            ..Default::default()
        },
        &Device::Cpu,
        0,
    )
    .unwrap();
    assert!(matches!(
        ws.refresh(&other),
        Err(Error::InvalidConfig {
            field: "policy",
            ..
        })
    ));
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let config = AgentConfig {
        hidden: 8,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 4).unwrap();
    let mut ws = RolloutWorkspace::new(&policy, 2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut feed = Feed::new(&config, 2, 1);
    feed.prev_actions[1] = Some(3);
    assert!(matches!(
        ws.step(&feed.inputs(), &mut rng),
        Err(Error::ActionOutOfRange { trial: 1, .. })
    ));
    let feed = Feed::new(&config, 3, 1);
    assert!(matches!(
        ws.step(&feed.inputs(), &mut rng),
        Err(Error::LengthMismatch { .. })
    ));
    let mut feed = Feed::new(&config, 2, 1);
    feed.obs[0] = f32::NAN;
    assert!(matches!(
        ws.step(&feed.inputs(), &mut rng),
        Err(Error::NonFiniteLogits { trial: 0, .. })
    ));
    assert!(RolloutWorkspace::new(&policy, 0).is_err());
    assert!(ws.set_hidden(&[0.0; 3]).is_err());
}

#[test]
fn sequence_unroll_equals_rollout_steps() {
    // The PPO entry point (autograd unroll over (B, T)) sees the same numbers as the rollout.
    let config = AgentConfig {
        hidden: 24,
        ..Default::default()
    };
    let policy = Policy::new(&config, &Device::Cpu, 8).unwrap();
    let (batch, seq_len) = (4, 9);
    let mut ws = RolloutWorkspace::new(&policy, batch).unwrap();
    let mut feed = Feed::new(&config, batch, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let w = config.input_dim();
    let mut x = vec![0.0f32; batch * seq_len * w];
    let (mut values, mut logits) = (
        vec![0.0f32; batch * seq_len],
        vec![0.0f32; batch * seq_len * 3],
    );
    let layout = mrl_agent::InputLayout::new(&config);
    for t in 0..seq_len {
        let mut rows = vec![0.0f32; batch * w];
        layout.write_rows(&feed.inputs(), &mut rows).unwrap();
        let step = ws.step(&feed.inputs(), &mut rng).unwrap();
        for b in 0..batch {
            let r = b * seq_len + t;
            x[r * w..(r + 1) * w].copy_from_slice(&rows[b * w..(b + 1) * w]);
            values[r] = step.values[b];
            logits[r * 3..r * 3 + 3].copy_from_slice(&step.logits[b * 3..b * 3 + 3]);
        }
        let a = step.actions.to_vec();
        feed.advance(&a, t);
    }
    let x = Tensor::from_vec(x, (batch, seq_len, w), &Device::Cpu).unwrap();
    let out = policy.forward_seq(&x, None).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close("values", &values, &to_f64(&flat(&out.values)), 1e-4, 1e-5);
    assert_close("logits", &logits, &to_f64(&flat(&out.logits)), 1e-4, 1e-5);
    assert_close(
        "h_n",
        ws.hidden().unwrap(),
        &to_f64(&flat(&out.h_n.unwrap())),
        1e-4,
        1e-5,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any small network and batch, log-probs are log(probs[action]), probabilities sum
    /// to 1, and the fused step agrees with the candle step.
    #[test]
    fn fused_matches_candle_for_any_size(hidden in 1usize..40, batch in 1usize..20, seed in 0u64..1000, mlp: bool) {
        let kind = if mlp { PolicyKind::Mlp } else { PolicyKind::Rl2 };
        let config = AgentConfig { hidden, kind, obs_dim: 5, n_actions: 4, ..Default::default() };
        let policy = Policy::new(&config, &Device::Cpu, seed).unwrap();
        let mut fused = RolloutWorkspace::new(&policy, batch).unwrap();
        let mut candle = RolloutWorkspace::new_candle(&policy, batch).unwrap();
        let feed = Feed::new(&config, batch, seed);
        let f = fused.step_greedy(&feed.inputs()).unwrap();
        let (fl, fp, fa, flp) = (f.logits.to_vec(), f.probs.to_vec(), f.actions.to_vec(), f.log_probs.to_vec());
        let c = candle.step_greedy(&feed.inputs()).unwrap();
        assert_close("logits", &fl, &to_f64(c.logits), 1e-4, 1e-5);
        for i in 0..batch {
            let p = &fp[i * 4..i * 4 + 4];
            prop_assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            prop_assert!((flp[i] - p[fa[i]].ln()).abs() < 1e-4);
        }
    }
}
