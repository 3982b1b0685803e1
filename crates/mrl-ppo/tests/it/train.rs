//! The training loop: a smoke run, exact resume, and the non-finite guard.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mrl_agent::{PolicyKind, TransformerConfig};
use mrl_env::{BanditDistribution, BanditEnv, Env, Split, Step, TaskDistribution};
use mrl_ppo::{
    AgentSection, CHECKPOINT_DIR, Error, IterationStats, LOG_FILE, PpoConfig, TaskKind,
    TaskSection, TrainConfig, Trainer, train, train_on,
};
use rand_chacha::ChaCha8Rng;

fn small_config(iterations: u64, checkpoint_every: u64) -> TrainConfig {
    TrainConfig {
        seed: 7,
        iterations,
        n_envs: 6,
        checkpoint_every,
        agent: AgentSection {
            hidden: 8,
            ..Default::default()
        },
        ppo: PpoConfig {
            epochs: 2,
            minibatch_trials: 4,
            anneal_lr: true,
            ..Default::default()
        },
        task: TaskSection {
            kind: TaskKind::Bandits {
                arms: 3,
                pulls: 5,
                observe_time: false,
            },
            episodes_per_trial: 2,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn smoke_run_writes_log_config_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(3, 2);
    let mut seen = Vec::new();
    let summary = train(&config, dir.path(), false, |s: &IterationStats| {
        seen.push(s.clone())
    })
    .unwrap();
    assert_eq!(summary.iterations, 3);
    assert_eq!(summary.iterations_run, 3);
    // 6 trials of 2 episodes of 5 pulls per iteration.
    assert_eq!(summary.env_steps, 3 * 6 * 10);
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.return_by_episode.len(), 2);
        assert!(s.mean_trial_return >= 0.0 && s.mean_trial_return <= 10.0);
        assert!(s.entropy > 0.0 && s.entropy <= 3f64.ln() + 1e-6);
        assert!(s.grad_norm.is_finite() && s.env_steps_per_sec > 0.0);
    }
    assert!(seen[2].lr < seen[0].lr, "annealed learning rate");
    let log = String::from_utf8(read(&dir.path().join(LOG_FILE))).unwrap();
    assert_eq!(log.lines().count(), 3);
    let ckpt = dir.path().join(CHECKPOINT_DIR);
    for f in [
        "model.safetensors",
        "agent.json",
        "optimizer.safetensors",
        "state.json",
    ] {
        assert!(ckpt.join(f).exists(), "{f}");
    }
    let saved = TrainConfig::load(&dir.path().join("config.toml")).unwrap();
    assert_eq!(saved, config);
    // A fresh run into the same directory would overwrite it: refused.
    assert!(matches!(
        train(&config, dir.path(), false, |_| {}),
        Err(Error::Checkpoint { .. })
    ));
    // The bandit evaluation runs on the checkpoint beside the baselines.
    assert_eq!(mrl_ppo::bandit_setting(dir.path()).unwrap(), Some((3, 5)));
    let eval = mrl_ppo::evaluate_bandits(dir.path(), 3, 5, 20, 9).unwrap();
    // The five textbook baselines, the paper's three (greedy with the prior, tuned ε-greedy
    // and UCB1), then the Bayes-optimal policy (k = 3, n = 5 is small), its ceiling.
    assert_eq!(eval.baselines.len(), 9);
    assert!(eval.baselines[7].name.starts_with("ucb1(c="));
    assert!(eval.baselines[7].name.ends_with("tuned"));
    assert_eq!(eval.baselines[8].name, "bayes-optimal (DP)");
    assert!(eval.agent_greedy.mean >= 0.0 && eval.agent_greedy.mean <= 5.0);
    assert_eq!(
        (
            eval.agent_greedy.name.as_str(),
            eval.agent_sampled.name.as_str()
        ),
        ("rl2 (greedy)", "rl2 (sampled)")
    );
    assert!(matches!(
        mrl_ppo::evaluate_bandits(dir.path(), 4, 5, 20, 9),
        Err(Error::InvalidConfig { field: "arms", .. })
    ));
    // Resuming a finished run does nothing more.
    let again = train(&config, dir.path(), true, |_| {}).unwrap();
    assert_eq!((again.iterations, again.iterations_run), (3, 0));
}

#[test]
fn bandits_with_the_time_observation_train_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(2, 5);
    config.task.kind = TaskKind::Bandits {
        arms: 3,
        pulls: 5,
        observe_time: true,
    };
    let text = config.to_toml();
    assert!(text.contains("observe_time = true"), "{text}");
    train(&config, dir.path(), false, |_| {}).unwrap();
    let saved = TrainConfig::load(&dir.path().join("config.toml")).unwrap();
    assert_eq!(saved, config);
    // The checkpoint's input is one wider (t/n); the evaluation sees that and feeds it.
    let policy = mrl_ppo::load_policy(&dir.path().join(CHECKPOINT_DIR), &candle_core::Device::Cpu);
    assert_eq!(policy.unwrap().config().obs_dim, 1);
    let eval = mrl_ppo::evaluate_bandits(dir.path(), 3, 5, 20, 9).unwrap();
    assert!(eval.agent_greedy.mean >= 0.0 && eval.agent_greedy.mean <= 5.0);
    // Without the flag the key is left out of the file, which then reads as before.
    let plain = small_config(2, 5).to_toml();
    assert!(!plain.contains("observe_time"), "{plain}");
}

#[test]
fn mlp_baseline_trains_with_the_same_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(2, 5);
    config.agent.kind = PolicyKind::Mlp;
    let summary = train(&config, dir.path(), false, |_| {}).unwrap();
    assert_eq!(summary.iterations, 2);
}

/// A small Transformer section: width 8, one block of 2 heads, a context shorter than the
/// 10-step trials of [`small_config`] (so the sliding window is exercised).
fn small_transformer(config: &mut TrainConfig) {
    config.agent.kind = PolicyKind::Transformer;
    config.agent.transformer = TransformerConfig {
        layers: 1,
        heads: 2,
        ff_mult: 2,
        context: 6,
    };
}

#[test]
fn transformer_trains_and_its_checkpoint_reloads_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(3, 2);
    small_transformer(&mut config);
    let text = config.to_toml();
    assert!(
        text.contains("kind = \"transformer\"") && text.contains("context = 6"),
        "{text}"
    );
    let mut stats = Vec::new();
    let summary = train(&config, dir.path(), false, |s: &IterationStats| {
        stats.push(s.clone())
    })
    .unwrap();
    assert_eq!(summary.iterations, 3);
    for s in &stats {
        let losses = [s.policy_loss, s.value_loss, s.entropy, s.grad_norm];
        assert!(losses.iter().all(|v| v.is_finite()), "{s:?}");
        assert!(s.grad_norm > 0.0 && s.entropy > 0.0, "{s:?}");
    }
    let ckpt = dir.path().join(CHECKPOINT_DIR);
    let policy = mrl_ppo::load_policy(&ckpt, &candle_core::Device::Cpu).unwrap();
    assert_eq!(policy.kind(), PolicyKind::Transformer);
    assert_eq!(policy.config().transformer.context, 6);
    let eval = mrl_ppo::evaluate_bandits(dir.path(), 3, 5, 20, 9).unwrap();
    assert!(eval.agent_greedy.mean >= 0.0 && eval.agent_greedy.mean <= 5.0);
    // The rows are named by the checkpoint's kind.
    assert_eq!(eval.agent_greedy.name, "transformer (greedy)");

    // Interrupted after 2 iterations (checkpoint at 2) and resumed: the same bytes.
    let broken = tempfile::tempdir().unwrap();
    {
        let dist = Arc::new(BanditDistribution::new(3, 5).unwrap());
        let mut trainer = Trainer::new(config.clone(), dist, broken.path()).unwrap();
        for _ in 0..2 {
            trainer.step().unwrap();
        }
    }
    train(&config, broken.path(), true, |_| {}).unwrap();
    assert!(final_files(broken.path()) == final_files(dir.path()));

    // A run whose config names another kind refuses this checkpoint, naming both kinds.
    let config_path = dir.path().join("config.toml");
    let saved = TrainConfig::load(&config_path).unwrap();
    assert_eq!(saved.agent.kind, PolicyKind::Transformer);
    let mut as_rl2 = config.clone();
    as_rl2.agent.kind = PolicyKind::Rl2;
    as_rl2.iterations = 5;
    std::fs::write(&config_path, as_rl2.to_toml()).unwrap();
    match train(&as_rl2, dir.path(), true, |_| {}).err() {
        Some(Error::Agent(e @ mrl_agent::Error::WrongKind { .. })) => {
            assert!(
                e.to_string()
                    .contains("holds a transformer policy, expected rl2"),
                "{e}"
            );
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
}

#[test]
fn episode_scope_bootstraps_truncated_episodes_for_every_kind() {
    // Bandit episodes end truncated; under the episode scope each episode end inside the
    // trial is a cut bootstrapped from V of the final input with the trial's memory (the
    // GRU's hidden state, the Transformer's cache).
    for kind in [PolicyKind::Rl2, PolicyKind::Mlp, PolicyKind::Transformer] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_config(2, 5);
        if kind == PolicyKind::Transformer {
            small_transformer(&mut config);
        }
        config.agent.kind = kind;
        config.ppo.gae_scope = mrl_ppo::GaeScope::Episode;
        let mut stats = Vec::new();
        train(&config, dir.path(), false, |s: &IterationStats| {
            stats.push(s.clone())
        })
        .unwrap();
        assert!(
            stats
                .iter()
                .all(|s| s.value_loss.is_finite() && s.explained_variance.is_finite())
        );
    }
}

fn final_files(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ckpt = dir.join(CHECKPOINT_DIR);
    (
        read(&ckpt.join("model.safetensors")),
        read(&ckpt.join("optimizer.safetensors")),
        read(&ckpt.join("state.json")),
    )
}

#[test]
fn interrupted_and_resumed_run_is_bit_identical() {
    let config = small_config(5, 2);
    let straight = tempfile::tempdir().unwrap();
    train(&config, straight.path(), false, |_| {}).unwrap();
    let want = final_files(straight.path());

    // Interrupted after 3 iterations: the last checkpoint is at 2, iteration 3 is redone.
    let broken = tempfile::tempdir().unwrap();
    let dist = Arc::new(BanditDistribution::new(3, 5).unwrap());
    {
        let mut trainer = Trainer::new(config.clone(), dist, broken.path()).unwrap();
        for _ in 0..3 {
            trainer.step().unwrap();
        }
    }
    let resumed = train(&config, broken.path(), true, |_| {}).unwrap();
    assert_eq!((resumed.iterations, resumed.iterations_run), (5, 3));
    let got = final_files(broken.path());
    assert!(got.0 == want.0, "weights differ after resume");
    assert!(got.1 == want.1, "Adam moments differ after resume");
    assert!(
        got.2 == want.2,
        "counters or RNG states differ after resume"
    );
    let log = String::from_utf8(read(&broken.path().join(LOG_FILE))).unwrap();
    let iterations: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<IterationStats>(l).unwrap().iteration)
        .collect();
    assert_eq!(iterations, vec![0, 1, 2, 3, 4]);

    // Resuming with another config is refused.
    let other = TrainConfig { seed: 8, ..config };
    assert!(matches!(
        train(&other, broken.path(), true, |_| {}),
        Err(Error::Checkpoint { .. })
    ));
}

/// Bandits whose trials, from the `poison_after`-th sampled task on, pay a NaN reward at
/// their last pull (after the policy's last step, so only the loss can see it).
struct PoisonedBandits {
    inner: BanditDistribution,
    sampled: AtomicUsize,
    poison_after: usize,
}

struct PoisonedEnv {
    env: BanditEnv,
    poisoned: bool,
    pulls: usize,
}

impl Env for PoisonedEnv {
    fn obs_dim(&self) -> usize {
        self.env.obs_dim()
    }
    fn n_actions(&self) -> usize {
        self.env.n_actions()
    }
    fn max_episode_steps(&self) -> usize {
        self.env.max_episode_steps()
    }
    fn reset(&mut self, rng: &mut ChaCha8Rng) -> mrl_env::Result<&[f32]> {
        self.pulls = 0;
        self.env.reset(rng)
    }
    fn step(&mut self, action: usize) -> mrl_env::Result<Step<'_>> {
        self.pulls += 1;
        let last = self.pulls == self.env.n_pulls();
        let poisoned = self.poisoned;
        let mut step = self.env.step(action)?;
        if poisoned && last {
            step.reward = f64::NAN;
        }
        Ok(step)
    }
}

impl TaskDistribution for PoisonedBandits {
    type Env = PoisonedEnv;
    fn name(&self) -> &str {
        "poisoned-bandits"
    }
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }
    fn n_actions(&self) -> usize {
        self.inner.n_actions()
    }
    fn max_episode_steps(&self) -> usize {
        self.inner.max_episode_steps()
    }
    fn sample(&self, split: Split, rng: &mut ChaCha8Rng) -> mrl_env::Result<PoisonedEnv> {
        let n = self.sampled.fetch_add(1, Ordering::SeqCst);
        Ok(PoisonedEnv {
            env: self.inner.sample(split, rng)?,
            poisoned: n >= self.poison_after,
            pulls: 0,
        })
    }
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let mut config = small_config(6, 2);
    config.task.episodes_per_trial = 1;
    let dir = tempfile::tempdir().unwrap();
    // Six slots per iteration: iterations 0..=2 are clean, iteration 3 is poisoned.
    let dist = Arc::new(PoisonedBandits {
        inner: BanditDistribution::new(3, 5).unwrap(),
        sampled: AtomicUsize::new(0),
        poison_after: 3 * 6,
    });
    let err = train_on(&config, dist, dir.path(), false, |_| {}).unwrap_err();
    match err {
        Error::NonFinite {
            iteration,
            epoch,
            minibatch,
            ..
        } => {
            assert_eq!((iteration, epoch, minibatch), (3, 0, 0));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let state: serde_json::Value =
        serde_json::from_slice(&read(&dir.path().join(CHECKPOINT_DIR).join("state.json"))).unwrap();
    assert_eq!(state["iteration"], 2);
    let policy =
        mrl_ppo::load_policy(&dir.path().join(CHECKPOINT_DIR), &candle_core::Device::Cpu).unwrap();
    for (name, var) in policy.parameters() {
        let v = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}");
    }
}

#[test]
fn shipped_configs_parse_and_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The LLM trader's configs (`llm-*.toml`) are not training configs: mrl-llm parses
        // them, and the root crate's configs test loads them there.
        .filter(|n| n.ends_with(".toml") && !n.starts_with("llm-"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let path = Path::new(dir).join(&name);
        // Meta-training and few-shot benchmark configs (mrl-fewshot) are a train config plus
        // `[meta]`, `[transfer]` and `[classes]` tables, which mrl-fewshot parses; the train
        // part must load here.
        let mut table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        table.remove("meta");
        table.remove("transfer");
        table.remove("classes");
        let config = TrainConfig::from_toml_str(&toml::to_string(&table).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        config.validate().unwrap();
    }
}

#[test]
fn synthetic_ar1_task_trains() {
    let dir = tempfile::tempdir().unwrap();
    let text = "iterations = 1\nn_envs = 2\n[agent]\nhidden = 8\n[ppo]\nepochs = 1\nminibatch_trials = 2\n\
        [task]\nkind = \"synthetic-ar1\"\nbars = 400\nepisodes_per_trial = 2\n\
        trading = { max_steps = 20 }\n";
    let config = TrainConfig::from_toml_str(text, Path::new("ar1.toml")).unwrap();
    let summary = train(&config, dir.path(), false, |_| {}).unwrap();
    assert_eq!(summary.env_steps, 2 * 2 * 20);
}

/// Writes two hourly GBM assets of 1500 bars as `<dir>/AAA_1h.csv` and `<dir>/BBB_1h.csv`;
/// returns the timestamp of bar 1000, the test start.
fn write_assets(dir: &Path) -> i64 {
    let process = mrl_data::ProcessKind::Gbm.default_process();
    let mut test_start = 0;
    for (seed, asset) in [(1, "AAA"), (2, "BBB")] {
        let generated = mrl_data::SyntheticConfig::new(process.clone())
            .generate(1500, seed)
            .unwrap();
        mrl_data::write_bars(&generated.series, &dir.join(format!("{asset}_1h.csv"))).unwrap();
        test_start = generated.series.timestamps()[1000];
    }
    test_start
}

/// A one-iteration config of two trials of two 20-step episodes on `task` (the `[task]`
/// section's distribution keys), trading with `trading`, then `tables` (sub-tables).
fn trading_run(task: &str, trading: &str, tables: &str) -> TrainConfig {
    let text = format!(
        "iterations = 1\nn_envs = 2\n[agent]\nhidden = 8\n[ppo]\nepochs = 1\nminibatch_trials = 2\n\
         [task]\n{task}\nepisodes_per_trial = 2\ntrading = {trading}\n{tables}"
    );
    TrainConfig::from_toml_str(&text, Path::new("run.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_trading_kind_trains_from_a_config_in_either_action_space() {
    let data = tempfile::tempdir().unwrap();
    let test_start = write_assets(data.path());
    // A TOML literal string: no escapes, whatever the path holds.
    let data_dir = format!("'{}'", data.path().display());
    let regime_windows = format!(
        "kind = \"regime-windows\"\ndata_dir = {data_dir}\nassets = [\"AAA\", \"BBB\"]\n\
         test_start = {test_start}\nregime = {{ window = 60 }}"
    );
    let timeframes = format!(
        "kind = \"timeframes\"\ndata_dir = {data_dir}\nasset = \"BBB\"\n\
         intervals = [\"1h\", \"4h\"]\ntest_start = {test_start}"
    );
    let multi_asset = format!(
        "kind = \"multi-asset\"\ndata_dir = {data_dir}\nassets = [\"AAA\", \"BBB\"]\n\
         split = {{ held_out = [\"BBB\"] }}"
    );
    let mixture = "kind = \"mixture\"".to_owned();
    let components = format!(
        "[[task.components]]\nweight = 1.0\nkind = \"synthetic-ar1\"\nbars = 200\n\
         [[task.components]]\nweight = 1\n{regime_windows}\n\
         [[task.components]]\nweight = 2.0\n{timeframes}\n"
    );
    let cases = [
        (
            "synthetic-ar1",
            "kind = \"synthetic-ar1\"\nbars = 200".to_owned(),
            String::new(),
        ),
        (
            "synthetic",
            "kind = \"synthetic\"\nbars = 200".to_owned(),
            String::new(),
        ),
        ("multi-asset", multi_asset, String::new()),
        ("regime-windows", regime_windows, String::new()),
        ("timeframes", timeframes, String::new()),
        ("mixture", mixture, components),
    ];
    for (actions, n_actions) in [
        ("", 3),
        (", actions = { kind = \"sizing\", position_step = 0.25 }", 4),
    ] {
        let trading = format!("{{ max_steps = 20{actions} }}");
        for (name, task, tables) in &cases {
            let config = trading_run(task, &trading, tables);
            assert_eq!(config.task.kind.name(), *name);
            let dist = mrl_ppo::trading_tasks(&config.task.kind, &config.task.trading).unwrap();
            assert_eq!(
                (dist.obs_dim(), dist.n_actions()),
                (14, n_actions),
                "{name}"
            );
            let out = tempfile::tempdir().unwrap();
            let summary = train(&config, out.path(), false, |_| {})
                .unwrap_or_else(|e| panic!("{name}{actions}: {e}"));
            // Two trials of two episodes of 20 steps.
            assert_eq!(summary.env_steps, 2 * 2 * 20, "{name}{actions}");
            let saved = TrainConfig::load(&out.path().join("config.toml")).unwrap();
            assert_eq!(
                saved, config,
                "{name}: the saved config reads back the same"
            );
            let policy =
                mrl_ppo::load_policy(&out.path().join(CHECKPOINT_DIR), &candle_core::Device::Cpu);
            assert_eq!(policy.unwrap().config().n_actions, n_actions, "{name}");
        }
    }
}

#[test]
fn bad_task_configs_name_the_field_and_the_component() {
    let err = |task: &str, trading: &str, tables: &str| {
        let text = format!("[task]\n{task}\ntrading = {trading}\n{tables}");
        match TrainConfig::from_toml_str(&text, Path::new("bad.toml")) {
            Err(Error::InvalidConfig { field, value, .. }) => (field, value),
            other => panic!("{other:?}\n{text}"),
        }
    };
    let ar1 = "[[task.components]]\nweight = 1.0\nkind = \"synthetic-ar1\"\n";
    let sized = "[[task.components]]\nweight = 1.0\nkind = \"synthetic-ar1\"\n\
                 trading = { actions = { kind = \"sizing\", position_step = 0.5 } }\n";
    let mixture = "kind = \"mixture\"";
    assert_eq!(
        err(mixture, "{}", &format!("{ar1}{sized}")),
        (
            "task.components.trading.actions",
            "[1] Sizing { position_step: 0.5 }".to_owned()
        )
    );
    let bandit = "[[task.components]]\nweight = 1.0\nkind = \"bandits\"\narms = 2\npulls = 3\n";
    assert_eq!(
        err(mixture, "{}", &format!("{ar1}{bandit}")),
        ("task.components.kind", "[1] bandits".to_owned())
    );
    let light = "[[task.components]]\nweight = 0.0\nkind = \"synthetic\"\n";
    assert_eq!(
        err(mixture, "{}", &format!("{ar1}{light}")),
        ("task.components.weight", "[1] 0".to_owned())
    );
    assert_eq!(
        err("kind = \"mixture\"\ncomponents = []", "{}", "").0,
        "task.components"
    );
    let timeframes = "kind = \"timeframes\"\nasset = \"BTCUSDT\"\ntest_start = 0\n";
    assert_eq!(
        err(
            &format!("{timeframes}intervals = [\"1h\", \"4x\"]"),
            "{}",
            ""
        ),
        ("task.intervals", "4x".to_owned())
    );
    let windows = "kind = \"regime-windows\"\nassets = [\"BTCUSDT\"]\ntest_start = 0\n";
    assert_eq!(
        err(
            &format!("{windows}regime = {{ window = 100 }}"),
            "{ max_steps = 200 }",
            ""
        ),
        ("task.regime.window", "100".to_owned())
    );
    // Built without validation, the mixture itself refuses components that disagree.
    let config = TrainConfig {
        task: TaskSection {
            kind: TaskKind::Mixture {
                components: vec![
                    mrl_ppo::MixtureComponent {
                        weight: 1.0,
                        kind: TaskKind::SyntheticAr1 {
                            bars: 300,
                            family: Default::default(),
                        },
                        trading: None,
                    },
                    mrl_ppo::MixtureComponent {
                        weight: 1.0,
                        kind: TaskKind::Synthetic {
                            bars: 300,
                            randomization: Default::default(),
                        },
                        trading: Some(mrl_env::TradingConfig {
                            actions: mrl_env::ActionSpace::SIZING,
                            ..Default::default()
                        }),
                    },
                ],
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let built = mrl_ppo::trading_tasks(&config.task.kind, &config.task.trading);
    assert!(matches!(
        built,
        Err(Error::Env(mrl_env::Error::MixtureMismatch {
            index: 1,
            what: "n_actions",
            expected: 3,
            found: 4,
            ..
        }))
    ));
    assert!(matches!(
        mrl_ppo::trading_tasks(&TaskKind::default(), &Default::default()),
        Err(Error::InvalidConfig {
            field: "task.kind",
            ..
        })
    ));
    for (text, ms) in [
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("4h", 14_400_000),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
    ] {
        assert_eq!(mrl_ppo::parse_interval(text).unwrap().millis(), ms);
    }
    for text in ["", "h", "0h", "1.5h", "1H", "-1h", "1hh"] {
        assert!(mrl_ppo::parse_interval(text).is_err(), "{text}");
    }
}
