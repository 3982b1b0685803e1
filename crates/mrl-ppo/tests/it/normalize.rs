//! Input and return normalisation: fitted on the training split only, stored in the
//! checkpoint, continued exactly on resume.

use std::path::Path;
use std::sync::Arc;

use mrl_data::{Bar, BarSeries};
use mrl_env::{AssetSplit, MarketTasks, TradingConfig};
use mrl_ppo::{
    AgentSection, CHECKPOINT_DIR, NormMode, NormalizeConfig, PpoConfig, TaskSection, TrainConfig,
    Trainer, load_checkpoint, load_policy, train_on,
};

const BARS: usize = 600;
const HOUR_MS: i64 = 3_600_000;
/// Bars at or after this index are the test period.
const TEST_FROM: usize = 400;

/// A seeded zig-zag random walk of hourly bars.
fn series(symbol: &str, seed: u64) -> Vec<Bar> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut close = 100.0;
    (0..BARS)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let open = close;
            close *= 1.0 + (u - 0.5) * 0.02 + if symbol == "B" { 0.0005 } else { 0.0 };
            Bar {
                timestamp: 1_700_000_000_000 + i as i64 * HOUR_MS,
                open,
                high: open.max(close) * 1.001,
                low: open.min(close) * 0.999,
                close,
                volume: 1.0,
            }
        })
        .collect()
}

fn tasks(assets: &[(String, Vec<Bar>)]) -> Arc<MarketTasks> {
    let series: Vec<BarSeries> = assets
        .iter()
        .map(|(name, bars)| BarSeries::new(bars).unwrap().with_symbol(name.clone()))
        .collect();
    let split = AssetSplit {
        held_out: vec!["C".into()],
        test_start: Some(assets[0].1[TEST_FROM].timestamp),
    };
    let trading = TradingConfig {
        max_steps: 40,
        reward_scale: 100.0,
        ..Default::default()
    };
    Arc::new(MarketTasks::multi_asset(&series, &split, trading).unwrap())
}

fn assets() -> Vec<(String, Vec<Bar>)> {
    ["A", "B", "C"]
        .iter()
        .zip(1u64..)
        .map(|(s, seed)| (s.to_string(), series(s, seed)))
        .collect()
}

fn config(inputs: NormMode, returns: bool, iterations: u64) -> TrainConfig {
    TrainConfig {
        seed: 3,
        iterations,
        n_envs: 4,
        checkpoint_every: 2,
        agent: AgentSection {
            hidden: 8,
            ..Default::default()
        },
        ppo: PpoConfig {
            epochs: 1,
            minibatch_trials: 2,
            ..Default::default()
        },
        task: TaskSection {
            episodes_per_trial: 2,
            ..Default::default()
        },
        normalize: NormalizeConfig {
            inputs,
            returns,
            warmup_rounds: 1,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn checkpoint_bytes(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ckpt = dir.join(CHECKPOINT_DIR);
    let read = |name: &str| std::fs::read(ckpt.join(name)).unwrap();
    (
        read("model.safetensors"),
        read("agent.json"),
        read("state.json"),
    )
}

fn train_dir(config: &TrainConfig, assets: &[(String, Vec<Bar>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    train_on(config, tasks(assets), dir.path(), false, |_| {}).unwrap();
    dir
}

#[test]
fn statistics_are_stored_in_the_checkpoint_and_reach_the_policy() {
    let dir = train_dir(&config(NormMode::Running, true, 2), &assets());
    let loaded =
        load_checkpoint(&dir.path().join(CHECKPOINT_DIR), &candle_core::Device::Cpu).unwrap();
    let norm = loaded
        .policy
        .config()
        .input_norm
        .clone()
        .expect("statistics in the sidecar");
    assert_eq!(norm.obs_mean.len(), 14);
    // The elapsed-time column spans [0, 1): its std is near 1/√12, far from the identity.
    let elapsed_std = norm.obs_std[13];
    assert!((0.2..0.4).contains(&elapsed_std), "{elapsed_std}");
    // ret_1 of a ±1 % walk has a std near 0.006.
    assert!(norm.obs_std[0] < 0.02, "{}", norm.obs_std[0]);
    let state = loaded.state.norm.expect("accumulators in state.json");
    assert!(state.ret.count() > 1.0);
    // The plain policy loader reads the same statistics.
    let policy = load_policy(&dir.path().join(CHECKPOINT_DIR), &candle_core::Device::Cpu).unwrap();
    assert_eq!(policy.config().input_norm.as_ref(), Some(&norm));
}

#[test]
fn test_bars_and_held_out_assets_never_reach_the_checkpoint() {
    for mode in [NormMode::Fixed, NormMode::Running] {
        let config = config(mode, true, 2);
        let clean = assets();
        let want = checkpoint_bytes(train_dir(&config, &clean).path());

        // Perturb every test-period bar of the training assets and the whole held-out asset.
        let mut perturbed = clean.clone();
        for (name, bars) in &mut perturbed {
            let from = if name == "C" { 0 } else { TEST_FROM };
            for bar in &mut bars[from..] {
                for p in [&mut bar.open, &mut bar.high, &mut bar.low, &mut bar.close] {
                    *p *= 3.0;
                }
            }
        }
        let got = checkpoint_bytes(train_dir(&config, &perturbed).path());
        assert!(got == want, "{mode:?}: a test bar changed the checkpoint");

        // The control: a training bar does change it (so the comparison can fail).
        let mut touched = clean.clone();
        for bar in &mut touched[0].1[100..110] {
            for p in [&mut bar.open, &mut bar.high, &mut bar.low, &mut bar.close] {
                *p *= 1.5;
            }
        }
        let other = checkpoint_bytes(train_dir(&config, &touched).path());
        assert!(
            other.1 != want.1,
            "{mode:?}: statistics ignore the training bars"
        );
    }
}

#[test]
fn fixed_statistics_stay_frozen_and_running_ones_move() {
    let fixed = train_dir(&config(NormMode::Fixed, false, 1), &assets());
    let fixed_later = train_dir(&config(NormMode::Fixed, false, 3), &assets());
    let norm = |dir: &tempfile::TempDir| {
        load_policy(&dir.path().join(CHECKPOINT_DIR), &candle_core::Device::Cpu)
            .unwrap()
            .config()
            .input_norm
            .clone()
            .unwrap()
    };
    assert_eq!(norm(&fixed), norm(&fixed_later));
    let running = train_dir(&config(NormMode::Running, false, 1), &assets());
    let running_later = train_dir(&config(NormMode::Running, false, 3), &assets());
    assert_ne!(norm(&running), norm(&running_later));
    assert!(norm(&running_later).count > norm(&running).count);
}

#[test]
fn resume_continues_the_statistics_exactly() {
    let config = config(NormMode::Running, true, 4);
    let straight = train_dir(&config, &assets());
    let want = checkpoint_bytes(straight.path());

    let broken = tempfile::tempdir().unwrap();
    {
        let mut trainer = Trainer::new(config.clone(), tasks(&assets()), broken.path()).unwrap();
        for _ in 0..3 {
            trainer.step().unwrap();
        }
    }
    train_on(&config, tasks(&assets()), broken.path(), true, |_| {}).unwrap();
    let got = checkpoint_bytes(broken.path());
    assert!(got.0 == want.0, "weights differ after resume");
    assert!(got.1 == want.1, "input statistics differ after resume");
    assert!(
        got.2 == want.2,
        "accumulators or counters differ after resume"
    );
}

#[test]
fn the_section_is_optional_validated_and_left_out_when_off() {
    let off = TrainConfig::default();
    assert!(!off.to_toml().contains("[normalize]"));
    let on = config(NormMode::Fixed, false, 1);
    let text = on.to_toml();
    assert!(text.contains("[normalize]"), "{text}");
    assert_eq!(
        TrainConfig::from_toml_str(&text, Path::new("x.toml")).unwrap(),
        on
    );
    let bad = "[normalize]\ninputs = \"running\"\nclip = 0.0\n";
    let err = TrainConfig::from_toml_str(bad, Path::new("bad.toml")).unwrap_err();
    assert!(err.to_string().contains("normalize.clip"), "{err}");
    let unknown = "[normalize]\ninputs = \"sometimes\"\n";
    assert!(TrainConfig::from_toml_str(unknown, Path::new("bad.toml")).is_err());
}
