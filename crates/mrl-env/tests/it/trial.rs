//! RL² trials: the policy input layout across steps and episode boundaries.

use mrl_env::{
    Env, Error, InputLayout, TargetAction, TradingConfig, TradingEnv, TradingObs, Trial,
    TrialConfig,
};
use mrl_features::WARMUP;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{market, random_walk};

const MAX_STEPS: usize = 4;

fn env() -> TradingEnv {
    let cfg = TradingConfig {
        max_steps: MAX_STEPS,
        ..TradingConfig::default()
    };
    TradingEnv::new(market(&random_walk(200, 4)), cfg).unwrap()
}

fn trial(config: TrialConfig) -> Trial<TradingEnv> {
    Trial::new(env(), config, ChaCha8Rng::seed_from_u64(5)).unwrap()
}

#[test]
fn input_carries_the_previous_action_reward_and_done() {
    let mut trial = trial(TrialConfig::default());
    let layout = trial.layout();
    assert_eq!(layout, InputLayout::new(14, 3));
    assert_eq!(trial.max_len(), 3 * MAX_STEPS);

    let first = trial.reset().unwrap().to_vec();
    assert_eq!(first.len(), 19);
    assert_eq!(&first[layout.obs()], trial.env().obs());
    assert!(first[TradingObs::DIM..].iter().all(|&x| x == 0.0));

    let mut returns = [0.0; 3];
    let actions = [0, 2, 1, 1, 0, 2, 2, 0, 1, 2, 0, 1];
    for (t, &action) in actions.iter().enumerate() {
        let episode = t / MAX_STEPS;
        assert_eq!(trial.episode(), episode);
        let step = trial.step(action).unwrap();
        let input = step.input.to_vec();
        let final_input = step.final_input.map(<[f32]>::to_vec);
        let (reward, done, trial_done) = (step.reward, step.episode_done(), step.trial_done);
        returns[episode] += reward;
        assert_eq!(step.episode, episode);
        assert_eq!(done, (t + 1) % MAX_STEPS == 0);
        assert_eq!(trial_done, t + 1 == actions.len());

        let mut one_hot = [0.0; 3];
        one_hot[action] = 1.0;
        assert_eq!(&input[layout.prev_action()], &one_hot);
        assert_eq!(input[layout.prev_reward()], reward as f32);
        assert_eq!(input[layout.prev_done()], if done { 1.0 } else { 0.0 });
        assert_eq!(&input[layout.obs()], trial.env().obs());
        if done && !trial_done {
            // The next episode's first observation: flat, no P&L, nothing elapsed.
            assert_eq!(input[TradingObs::ELAPSED], 0.0);
            assert_eq!(input[TradingObs::PNL], 0.0);
            let final_input = final_input.unwrap();
            assert_eq!(final_input[TradingObs::ELAPSED], 1.0);
            assert_eq!(&final_input[TradingObs::DIM..], &input[TradingObs::DIM..]);
        } else if trial_done {
            assert_eq!(final_input.unwrap(), input);
        } else {
            assert!(final_input.is_none());
        }
    }
    assert!(trial.is_done());
    assert_eq!(trial.episode_returns(), &returns);
    assert!(matches!(trial.step(0), Err(Error::EpisodeNotRunning)));

    // A new trial starts from a zero previous block again.
    let again = trial.reset().unwrap();
    assert!(again[TradingObs::DIM..].iter().all(|&x| x == 0.0));
    assert_eq!(trial.episode_returns(), &[0.0; 3]);
}

#[test]
fn feedback_scale_changes_the_input_only() {
    let config = TrialConfig {
        reward_feedback_scale: 10.0,
        ..TrialConfig::default()
    };
    let (mut plain, mut scaled) = (trial(TrialConfig::default()), trial(config));
    plain.reset().unwrap();
    scaled.reset().unwrap();
    let layout = plain.layout();
    for _ in 0..3 {
        let a = plain.step(TargetAction::Buy.index()).unwrap();
        let (reward, fed) = (a.reward, a.input[layout.prev_reward()]);
        let b = scaled.step(TargetAction::Buy.index()).unwrap();
        assert_eq!(b.reward, reward);
        assert!((b.input[layout.prev_reward()] - 10.0 * fed).abs() < 1e-6);
    }
}

#[test]
fn scheduled_starts_run_episodes_in_time_order() {
    // Walk-forward: two adaptation windows, then the evaluation window.
    let mut trial = trial(TrialConfig::default());
    let starts = [WARMUP + 10, WARMUP + 14, WARMUP + 18];
    trial.env_mut().schedule_starts(&starts).unwrap();
    trial.reset().unwrap();
    let mut seen = vec![trial.env().state().start];
    loop {
        let step = trial.step(TargetAction::Hold.index()).unwrap();
        let (episode_done, trial_done) = (step.episode_done(), step.trial_done);
        if trial_done {
            break;
        }
        if episode_done {
            seen.push(trial.env().state().start);
        }
    }
    assert_eq!(seen, starts);
}

#[test]
fn trials_are_reproducible_and_work_on_boxed_envs() {
    let run = |seed: u64| {
        let env: Box<dyn Env> = Box::new(env());
        let mut trial =
            Trial::new(env, TrialConfig::default(), ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let mut inputs = trial.reset().unwrap().to_vec();
        while !trial.is_done() {
            inputs.extend_from_slice(trial.step(1).unwrap().input);
        }
        inputs
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    assert_eq!(run(1).len(), (1 + 3 * MAX_STEPS) * 19);
}

#[test]
fn zero_episodes_is_an_error() {
    let config = TrialConfig {
        episodes_per_trial: 0,
        ..TrialConfig::default()
    };
    assert!(matches!(
        Trial::new(env(), config, ChaCha8Rng::seed_from_u64(0)),
        Err(Error::InvalidConfig {
            field: "episodes_per_trial",
            ..
        })
    ));
}

#[test]
fn an_invalid_action_is_an_error_and_leaves_the_trial_running() {
    let mut trial = trial(TrialConfig::default());
    let first = trial.reset().unwrap().to_vec();
    assert!(matches!(
        trial.step(3),
        Err(Error::InvalidAction {
            action: 3,
            n_actions: 3
        })
    ));
    assert_eq!(trial.input(), first);
    assert!(!trial.is_done());
    assert!(trial.step(TargetAction::Hold.index()).is_ok());
}
