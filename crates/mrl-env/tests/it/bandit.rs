//! Bernoulli bandits: the env contract, split streams, the baselines, and the RL² paper's
//! figures (Duan et al. 2016, Table 1).

use mrl_env::{
    ArmPrior, BanditDistribution, BanditEnv, BanditPolicy, BanditTask, BaselineScore, Env,
    EpsilonGreedyPolicy, Error, GreedyPolicy, PAPER_TUNING_GRID, RandomPolicy, Split,
    TaskDistribution, ThompsonPolicy, Ucb1Policy, evaluate_baselines, evaluate_paper_baselines,
    evaluate_policy, sample_tasks,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn score<'a>(scores: &'a [BaselineScore], name: &str) -> &'a BaselineScore {
    scores
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no score named {name}"))
}

#[test]
fn env_contract_episode_of_n_pulls_then_truncated() {
    let task = BanditTask::new(vec![1.0, 0.0, 0.5], 3).unwrap();
    let mut env = BanditEnv::new(task, 4).unwrap();
    assert_eq!(
        (env.obs_dim(), env.n_actions(), env.max_episode_steps()),
        (0, 3, 4)
    );
    assert!(matches!(env.step(0), Err(Error::EpisodeNotRunning)));
    assert!(env.reset(&mut rng(0)).unwrap().is_empty());
    assert!(matches!(
        env.step(3),
        Err(Error::InvalidAction {
            action: 3,
            n_actions: 3
        })
    ));
    for pull in 0..4 {
        let arm = pull % 2;
        let step = env.step(arm).unwrap();
        assert!(step.obs.is_empty());
        assert_eq!(
            step.reward,
            if arm == 0 { 1.0 } else { 0.0 },
            "p = 1 always pays, p = 0 never"
        );
        assert!(!step.terminated);
        assert_eq!(step.truncated, pull == 3);
    }
    assert!(matches!(env.step(0), Err(Error::EpisodeNotRunning)));
}

#[test]
fn time_observation_is_the_share_of_pulls_made_and_leaves_outcomes_alone() {
    let task = BanditTask::new(vec![0.3, 0.6, 0.9], 21).unwrap();
    let mut plain = BanditEnv::new(task.clone(), 4).unwrap();
    let mut timed = BanditEnv::new(task, 4).unwrap().with_time_observation(true);
    assert!(timed.observes_time() && !plain.observes_time());
    assert_eq!((timed.obs_dim(), plain.obs_dim()), (1, 0));
    for _episode in 0..2 {
        plain.reset(&mut rng(0)).unwrap();
        assert_eq!(timed.reset(&mut rng(0)).unwrap(), &[0.0]);
        for pull in 1..=4 {
            let arm = pull % 3;
            let p = plain.step(arm).unwrap();
            let (reward, truncated) = (p.reward, p.truncated);
            let t = timed.step(arm).unwrap();
            assert_eq!(t.obs, &[pull as f32 / 4.0], "t/n after pull {pull}");
            assert_eq!(
                (t.reward, t.truncated),
                (reward, truncated),
                "same outcomes"
            );
        }
    }
    let dist = BanditDistribution::new(3, 7)
        .unwrap()
        .with_time_observation(true);
    assert_eq!((dist.name(), dist.obs_dim()), ("bandit-k3-n7-time", 1));
    assert!(dist.observes_time());
    let env = dist.sample(Split::Train, &mut rng(4)).unwrap();
    assert_eq!(env.obs_dim(), 1);
    let back = dist.with_time_observation(false);
    assert_eq!((back.name(), back.obs_dim()), ("bandit-k3-n7", 0));
    assert_eq!(
        back.sample_task(Split::Train, &mut rng(4)),
        *env.task(),
        "the observation does not change the tasks"
    );
}

#[test]
fn reward_frequency_matches_the_arm_probability() {
    let task = BanditTask::new(vec![0.3], 11).unwrap();
    let mut env = BanditEnv::new(task, 20_000).unwrap();
    env.reset(&mut rng(0)).unwrap();
    let total: f64 = (0..20_000).map(|_| env.step(0).unwrap().reward).sum();
    // sd of the frequency = sqrt(0.3·0.7/20000) ≈ 0.0032
    assert!(
        (total / 20_000.0 - 0.3).abs() < 0.015,
        "frequency {}",
        total / 20_000.0
    );
}

#[test]
fn common_random_numbers_same_task_same_outcomes_new_episode_new_outcomes() {
    let task = BanditTask::new(vec![0.5; 4], 42).unwrap();
    let run = |env: &mut BanditEnv| -> Vec<f64> {
        env.reset(&mut rng(1)).unwrap();
        (0..50).map(|t| env.step(t % 4).unwrap().reward).collect()
    };
    let mut a = BanditEnv::new(task.clone(), 50).unwrap();
    let mut b = BanditEnv::new(task, 50).unwrap();
    let first = run(&mut a);
    assert_eq!(
        first,
        run(&mut b),
        "two envs on one task see the same outcomes"
    );
    assert_ne!(
        first,
        run(&mut a),
        "the second episode of a trial sees fresh outcomes"
    );
}

#[test]
fn distribution_is_deterministic_and_splits_use_independent_streams() {
    let dist = BanditDistribution::new(5, 10).unwrap();
    assert_eq!(
        (
            dist.name(),
            dist.obs_dim(),
            dist.n_actions(),
            dist.max_episode_steps()
        ),
        ("bandit-k5-n10", 0, 5, 10)
    );
    let train: Vec<BanditTask> = (0..3)
        .map(|_| dist.sample_task(Split::Train, &mut rng(8)))
        .collect();
    assert!(
        train.windows(2).all(|w| w[0] == w[1]),
        "same seed, same task"
    );
    let test = dist.sample_task(Split::Test, &mut rng(8));
    assert_ne!(
        train[0].probs(),
        test.probs(),
        "same caller seed, different split, different task"
    );
    let env = dist.sample(Split::Train, &mut rng(8)).unwrap();
    assert_eq!(env.task(), &train[0]);
    let probs = sample_tasks(&dist, 2000, 5)
        .iter()
        .flat_map(|t| t.probs().to_vec())
        .collect::<Vec<_>>();
    let mean = probs.iter().sum::<f64>() / probs.len() as f64;
    assert!(probs.iter().all(|p| (0.0..1.0).contains(p)));
    assert!(
        (mean - 0.5).abs() < 0.02,
        "p ~ U(0,1) has mean 1/2, got {mean}"
    );
}

#[test]
fn invalid_settings_are_errors() {
    assert!(matches!(
        BanditDistribution::new(0, 10),
        Err(Error::InvalidConfig {
            field: "n_arms",
            ..
        })
    ));
    assert!(matches!(
        BanditDistribution::new(2, 0),
        Err(Error::InvalidConfig {
            field: "n_pulls",
            ..
        })
    ));
    assert!(matches!(
        BanditTask::new(vec![], 0),
        Err(Error::InvalidConfig { field: "probs", .. })
    ));
    assert!(matches!(
        BanditTask::new(vec![0.5, 1.5], 0),
        Err(Error::InvalidConfig { field: "probs", .. })
    ));
    let task = BanditTask::new(vec![0.5], 0).unwrap();
    assert!(matches!(
        BanditEnv::new(task, 0),
        Err(Error::InvalidConfig {
            field: "n_pulls",
            ..
        })
    ));
    assert!(matches!(
        EpsilonGreedyPolicy::new(1.5, ArmPrior::NONE),
        Err(Error::InvalidConfig {
            field: "epsilon",
            ..
        })
    ));
    assert!(matches!(
        Ucb1Policy::new(-1.0, ArmPrior::NONE),
        Err(Error::InvalidConfig { field: "c", .. })
    ));
    let bad_prior = ArmPrior {
        successes: f64::NAN,
        failures: 1.0,
    };
    assert!(matches!(
        GreedyPolicy::new(bad_prior),
        Err(Error::InvalidConfig {
            field: "prior.successes",
            ..
        })
    ));
    assert!(matches!(
        evaluate_baselines(5, 10, 0, 0),
        Err(Error::InvalidConfig {
            field: "n_trials",
            ..
        })
    ));
}

#[test]
fn ucb1_and_thompson_clearly_beat_random() {
    let scores = evaluate_baselines(5, 100, 2000, 2016).unwrap();
    let names: Vec<&str> = scores.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "random",
            "greedy",
            "epsilon-greedy(eps=0.1)",
            "ucb1(c=1)",
            "thompson"
        ]
    );
    let random = score(&scores, "random");
    assert!(
        (random.mean - 50.0).abs() < 4.0 * random.std_err,
        "random scores n/2: {random:?}"
    );
    for name in ["ucb1(c=1)", "thompson", "greedy", "epsilon-greedy(eps=0.1)"] {
        let s = score(&scores, name);
        // The margin is > 10 standard errors of the difference at these settings.
        assert!(
            s.mean > random.mean + 10.0,
            "{name} {s:?} vs random {random:?}"
        );
    }
    assert_eq!(
        scores,
        evaluate_baselines(5, 100, 2000, 2016).unwrap(),
        "same seed, same scores"
    );
}

/// Our score agrees with the paper's figure: the paper's numbers are rounded to 0.1 and are
/// means over 1000 trials, whose standard error we estimate with our own sample's spread.
fn assert_matches_paper(ours: &BaselineScore, paper: f64) {
    let paper_se = ours.std_err * (ours.n_trials as f64 / 1000.0).sqrt();
    let tol = 0.05 + 3.0 * (ours.std_err.powi(2) + paper_se.powi(2)).sqrt();
    assert!(
        (ours.mean - paper).abs() < tol,
        "{}: ours {:.3} ± {:.3}, paper {paper}, tolerance {tol:.3}",
        ours.name,
        ours.mean,
        ours.std_err
    );
}

/// RL² Table 1, k = 5: random, greedy, ε-greedy (tuned), UCB1 (tuned) and Thompson sampling at
/// n = 10 and n = 100. Greedy, ε-greedy and UCB1 use the Beta(1, 1) pseudo-counts of the
/// authors' evaluation code (see the `bandit` module docs).
#[test]
fn baselines_reproduce_the_rl2_paper_table() {
    for (n_pulls, n_trials, paper) in [
        (
            10,
            8000,
            [
                ("random", 5.0),
                ("greedy", 6.6),
                ("eps", 6.6),
                ("ucb1", 6.7),
                ("thompson", 5.7),
            ],
        ),
        (
            100,
            800,
            [
                ("random", 49.9),
                ("greedy", 74.8),
                ("eps", 75.4),
                ("ucb1", 78.0),
                ("thompson", 74.7),
            ],
        ),
    ] {
        let tasks = sample_tasks(&BanditDistribution::new(5, n_pulls).unwrap(), n_trials, 77);
        let eval =
            |mut p: Box<dyn BanditPolicy>| evaluate_policy(p.as_mut(), &tasks, n_pulls, 1).unwrap();
        let tuned = evaluate_paper_baselines(&tasks, n_pulls, 1).unwrap();
        // Each tuned score is the best of the grid on these tasks, named by its setting.
        for (score, base) in tuned.iter().zip(["greedy", "epsilon-greedy", "ucb1"]) {
            assert!(score.name.starts_with(base), "{}", score.name);
            assert!(score.name.contains("prior=beta(1,1)"), "{}", score.name);
        }
        for (name, policy) in [("epsilon-greedy", &tuned[1]), ("ucb1", &tuned[2])] {
            assert!(policy.name.ends_with(" tuned"), "{}", policy.name);
            for setting in PAPER_TUNING_GRID {
                let other: Box<dyn BanditPolicy> = if name == "ucb1" {
                    Box::new(Ucb1Policy::new(setting, ArmPrior::UNIFORM).unwrap())
                } else {
                    Box::new(EpsilonGreedyPolicy::new(setting, ArmPrior::UNIFORM).unwrap())
                };
                assert!(
                    eval(other).mean <= policy.mean,
                    "{name} at {setting} beats the best"
                );
            }
        }
        let ours = [
            eval(Box::new(RandomPolicy::new())),
            tuned[0].clone(),
            tuned[1].clone(),
            tuned[2].clone(),
            eval(Box::new(ThompsonPolicy::new())),
        ];
        for (ours, (_, paper)) in ours.iter().zip(paper) {
            assert_matches_paper(ours, paper);
        }
    }
}
