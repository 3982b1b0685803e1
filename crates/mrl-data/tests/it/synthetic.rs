//! Synthetic markets: determinism, statistics against the true parameters, bar validity,
//! the oracle, and parameter errors.

use mrl_data::{
    Ar1Params, BarStyle, DomainRandomization, Error, GbmParams, HOUR_MS, Interval, JumpParams,
    MarketProcess, ProcessKind, RegimeLabel, RegimeParams, RegimeState, SYNTHETIC_EPOCH_MS,
    SyntheticConfig, SyntheticSeries,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn generate(process: MarketProcess, n: usize, seed: u64) -> SyntheticSeries {
    SyntheticConfig::new(process).generate(n, seed).unwrap()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn std(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

fn lag1_autocorrelation(x: &[f64]) -> f64 {
    let m = mean(x);
    let num: f64 = x.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum();
    let den: f64 = x.iter().map(|v| (v - m).powi(2)).sum();
    num / den
}

/// Log returns recomputed from the bars.
fn bar_log_returns(s: &SyntheticSeries) -> Vec<f64> {
    s.series
        .opens()
        .iter()
        .zip(s.series.closes())
        .map(|(o, c)| (c / o).ln())
        .collect()
}

fn all_default_processes() -> Vec<MarketProcess> {
    ProcessKind::ALL
        .iter()
        .map(|k| k.default_process())
        .collect()
}

#[test]
fn same_seed_same_bars_different_seed_different_bars() {
    for process in all_default_processes() {
        let a = generate(process.clone(), 300, 42);
        let b = generate(process.clone(), 300, 42);
        assert_eq!(a, b, "{process:?}");
        let bits = |s: &SyntheticSeries| -> Vec<u64> {
            s.series.closes().iter().map(|c| c.to_bits()).collect()
        };
        assert_eq!(bits(&a), bits(&b));
        let c = generate(process.clone(), 300, 43);
        assert_ne!(a.series.closes(), c.series.closes(), "{process:?}");
    }
    let dr = DomainRandomization::default();
    assert_eq!(dr.generate(200, 5).unwrap(), dr.generate(200, 5).unwrap());
    assert_ne!(
        dr.generate(200, 5).unwrap().series,
        dr.generate(200, 6).unwrap().series
    );
}

#[test]
fn wick_and_volume_settings_do_not_change_the_close_path() {
    let mut config = SyntheticConfig::new(ProcessKind::Jump.default_process());
    let a = config.generate(500, 9).unwrap();
    config.bars.wick = 3.0;
    config.bars.volume = 7.0;
    let b = config.generate(500, 9).unwrap();
    assert_eq!(a.series.closes(), b.series.closes());
    assert_ne!(a.series.highs(), b.series.highs());
}

#[test]
fn every_bar_is_well_formed() {
    let style = BarStyle {
        start_price: 250.0,
        start_time: 1_000 * HOUR_MS,
        interval: Interval::FOUR_HOURS,
        ..BarStyle::default()
    };
    let dr = DomainRandomization::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut processes = all_default_processes();
    processes.extend((0..20).map(|_| dr.sample_process(&mut rng).unwrap()));
    for process in processes {
        let config = SyntheticConfig {
            process,
            bars: style.clone(),
        };
        let s = config.generate(400, 11).unwrap();
        let series = &s.series;
        assert_eq!(series.len(), 400);
        assert_eq!(series.opens()[0], 250.0);
        assert_eq!(series.start(), 1_000 * HOUR_MS);
        assert_eq!(series.interval(), Some(Interval::FOUR_HOURS));
        assert!(series.gaps().is_empty());
        for t in 1..series.len() {
            assert_eq!(series.opens()[t], series.closes()[t - 1]);
        }
        for (t, bar) in series.iter().enumerate() {
            assert!(bar.high >= bar.open.max(bar.close) && bar.low <= bar.open.min(bar.close));
            assert!(bar.volume > 0.0);
            assert_eq!(bar.close, bar.open * s.log_returns[t].exp());
        }
        assert_eq!(s.log_returns.len(), 400);
    }
}

#[test]
fn default_bar_style_is_hourly_from_2020() {
    let s = generate(ProcessKind::Gbm.default_process(), 3, 0);
    assert_eq!(
        s.series.timestamps(),
        &[
            SYNTHETIC_EPOCH_MS,
            SYNTHETIC_EPOCH_MS + HOUR_MS,
            SYNTHETIC_EPOCH_MS + 2 * HOUR_MS
        ]
    );
    assert_eq!(s.series.opens()[0], 100.0);
}

const N: usize = 40_000;

#[test]
fn gbm_statistics_match_parameters() {
    let p = GbmParams {
        drift: 1e-3,
        volatility: 0.01,
    };
    let s = generate(MarketProcess::Gbm(p), N, 1);
    let r = bar_log_returns(&s);
    let se = p.volatility / (N as f64).sqrt();
    assert!(
        (mean(&r) - (p.drift - 0.5e-4)).abs() < 4.0 * se,
        "mean {}",
        mean(&r)
    );
    assert!(
        (std(&r) / p.volatility - 1.0).abs() < 0.03,
        "std {}",
        std(&r)
    );
    assert!(lag1_autocorrelation(&r).abs() < 0.03);
    // E[gross return] = e^μ.
    let gross: Vec<f64> = r.iter().map(|x| x.exp()).collect();
    assert!((mean(&gross) - p.drift.exp()).abs() < 4.0 * se);
}

#[test]
fn ar1_autocorrelation_matches_phi() {
    for phi in [-0.4, 0.0, 0.3, 0.7] {
        let p = Ar1Params {
            drift: 2e-4,
            phi,
            volatility: 0.005,
        };
        let s = generate(MarketProcess::Ar1(p), N, 2);
        let r = bar_log_returns(&s);
        let rho = lag1_autocorrelation(&r);
        assert!((rho - phi).abs() < 0.03, "phi {phi}: sample {rho}");
        let stationary_sd = p.volatility / (1.0f64 - phi * phi).sqrt();
        assert!(
            (std(&r) / stationary_sd - 1.0).abs() < 0.05,
            "phi {phi}: std {}",
            std(&r)
        );
        let se = stationary_sd / (N as f64).sqrt() * ((1.0 + phi) / (1.0 - phi)).sqrt();
        assert!(
            (mean(&r) - p.drift).abs() < 4.0 * se,
            "phi {phi}: mean {}",
            mean(&r)
        );
    }
}

#[test]
fn ar1_oracle_predicts_the_next_return() {
    let p = Ar1Params {
        drift: 0.0,
        phi: 0.5,
        volatility: 0.01,
    };
    let s = generate(MarketProcess::Ar1(p), N, 4);
    // Regress r_{t+1} on the oracle: slope ≈ 1, residuals ≈ the innovations (sd σ).
    let pred: Vec<f64> = (0..N - 1).map(|t| s.expected_log_return(t)).collect();
    let next = &s.log_returns[1..];
    let (mp, mn) = (mean(&pred), mean(next));
    let cov: f64 = pred
        .iter()
        .zip(next)
        .map(|(a, b)| (a - mp) * (b - mn))
        .sum();
    let var: f64 = pred.iter().map(|a| (a - mp).powi(2)).sum();
    assert!((cov / var - 1.0).abs() < 0.05, "slope {}", cov / var);
    let resid: Vec<f64> = pred.iter().zip(next).map(|(a, b)| b - a).collect();
    assert!((std(&resid) / p.volatility - 1.0).abs() < 0.03);
    // The trading oracle has the sign of the expected log return plus σ²/2.
    let t = 10;
    let expected = (s.expected_log_return(t) + 0.5 * 1e-4).exp() - 1.0;
    assert!((s.expected_return(t) - expected).abs() < 1e-15);
}

#[test]
fn jump_statistics_match_parameters() {
    let p = JumpParams {
        drift: 0.0,
        volatility: 0.004,
        jump_rate: 0.05,
        jump_mean: -0.02,
        jump_std: 0.03,
    };
    let s = generate(MarketProcess::Jump(p), N, 5);
    let r = bar_log_returns(&s);
    let variance = p.volatility.powi(2) + p.jump_rate * (p.jump_std.powi(2) + p.jump_mean.powi(2));
    assert!(
        (std(&r) / variance.sqrt() - 1.0).abs() < 0.06,
        "std {}",
        std(&r)
    );
    let se = (variance / N as f64).sqrt();
    assert!(
        (mean(&r) - s.expected_log_return(0)).abs() < 4.0 * se,
        "mean {}",
        mean(&r)
    );
    // Jumps fatten the tails: far more 5σ moves than a Gaussian with the same variance.
    let big = r.iter().filter(|x| x.abs() > 5.0 * p.volatility).count();
    assert!(big > N / 100, "{big} large moves");
    // Compensated drift: E[gross] = e^μ = 1.
    let gross: Vec<f64> = r.iter().map(|x| x.exp()).collect();
    assert!((mean(&gross) - 1.0).abs() < 4.0 * se);
    assert_eq!(s.expected_return(17), 0.0);
}

#[test]
fn regime_path_matches_the_chain() {
    let p = RegimeParams::default();
    let s = generate(MarketProcess::Regime(p.clone()), N, 6);
    let regimes = s.regimes.as_ref().unwrap();
    assert_eq!(regimes.len(), N);
    // Stationary law of "stay 1 − 1/d, then switch uniformly" is proportional to d.
    let durations = [200.0, 150.0, 50.0, 200.0];
    let total: f64 = durations.iter().sum();
    for (k, d) in durations.iter().enumerate() {
        let share = regimes.iter().filter(|&&x| x == k).count() as f64 / N as f64;
        assert!((share - d / total).abs() < 0.08, "state {k}: share {share}");
    }
    // Mean sojourn ≈ d.
    let switches = regimes.windows(2).filter(|w| w[0] != w[1]).count();
    let mean_sojourn = N as f64 / (switches + 1) as f64;
    assert!((120.0..200.0).contains(&mean_sojourn), "{mean_sojourn}");
    // Within each state the realised volatility is the state's.
    let r = bar_log_returns(&s);
    for (k, state) in p.states.iter().enumerate() {
        let rk: Vec<f64> = r
            .iter()
            .zip(regimes)
            .filter(|(_, s)| **s == k)
            .map(|(x, _)| *x)
            .collect();
        assert!(
            (std(&rk) / state.volatility - 1.0).abs() < 0.06,
            "{:?}",
            state.label
        );
    }
    // Oracle: in bull the next-bar expected return is positive, in bear negative.
    let bull = regimes.iter().position(|&x| x == 0).unwrap();
    let bear = regimes.iter().position(|&x| x == 1).unwrap();
    assert!(s.expected_return(bull) > 0.0 && s.expected_return(bear) < 0.0);
    assert!(s.expected_log_return(bull) > 0.0 && s.expected_log_return(bear) < 0.0);
    assert!(
        generate(ProcessKind::Gbm.default_process(), 10, 0)
            .regimes
            .is_none()
    );
}

#[test]
fn domain_randomization_draws_within_ranges() {
    let dr = DomainRandomization::default();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let within = |x: f64, (lo, hi): (f64, f64)| lo <= x && x <= hi;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let process = dr.sample_process(&mut rng).unwrap();
        seen.insert(process.kind());
        match process {
            MarketProcess::Gbm(p) => {
                assert!(within(p.drift, dr.drift) && within(p.volatility, dr.volatility));
            }
            MarketProcess::Ar1(p) => {
                assert!(within(p.phi, dr.autocorrelation) && within(p.volatility, dr.volatility));
            }
            MarketProcess::Jump(p) => {
                assert!(within(p.jump_rate, dr.jump_rate));
                assert!(within(p.jump_mean, dr.jump_mean) && within(p.jump_std, dr.jump_std));
            }
            MarketProcess::Regime(p) => {
                let labels: Vec<RegimeLabel> = p.states.iter().map(|s| s.label).collect();
                assert_eq!(
                    labels,
                    [
                        RegimeLabel::Bull,
                        RegimeLabel::Bear,
                        RegimeLabel::HighVolatility,
                        RegimeLabel::Sideways
                    ]
                );
                assert!(p.states[0].drift >= 0.0 && p.states[1].drift <= 0.0);
                assert_eq!(p.states[3].drift, 0.0);
                for (k, row) in p.transition.iter().enumerate() {
                    assert!(within(1.0 / (1.0 - row[k]), (19.999, 500.001)));
                }
            }
        }
    }
    assert_eq!(seen.len(), 4);

    let only_ar1 = DomainRandomization {
        kinds: vec![ProcessKind::Ar1],
        autocorrelation: (0.5, 0.5),
        ..DomainRandomization::default()
    };
    let s = only_ar1.generate(100, 1).unwrap();
    assert!(matches!(
        s.params,
        MarketProcess::Ar1(Ar1Params { phi: 0.5, .. })
    ));
}

#[test]
fn process_json_is_tagged_by_kind() {
    for process in all_default_processes() {
        let json = serde_json::to_string(&process).unwrap();
        assert!(
            json.starts_with(&format!("{{\"kind\":\"{}\"", process.kind())),
            "{json}"
        );
        let back: MarketProcess = serde_json::from_str(&json).unwrap();
        assert_eq!(back, process);
    }
    let config: SyntheticConfig =
        serde_json::from_str(r#"{"process":{"kind":"gbm","drift":0.0,"volatility":0.01}}"#)
            .unwrap();
    assert_eq!(config.bars, BarStyle::default());
    let dr: DomainRandomization = serde_json::from_str(r#"{"kinds":["jump"]}"#).unwrap();
    assert_eq!(dr.kinds, vec![ProcessKind::Jump]);
    assert_eq!(dr.drift, DomainRandomization::default().drift);
}

#[test]
fn process_kind_parses_names() {
    for kind in ProcessKind::ALL {
        assert_eq!(kind.to_string().parse::<ProcessKind>().unwrap(), kind);
    }
    assert_eq!("GBM".parse::<ProcessKind>().unwrap(), ProcessKind::Gbm);
    let err = "garch".parse::<ProcessKind>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid kind = garch: expected one of gbm, ar1, regime, jump"
    );
}

fn invalid_name(result: Result<SyntheticSeries, Error>) -> &'static str {
    match result {
        Err(Error::InvalidParameter { name, .. }) => name,
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn invalid_parameters_are_named() {
    let check =
        |process: MarketProcess| invalid_name(SyntheticConfig::new(process).generate(10, 0));
    let gbm = GbmParams::default();
    assert_eq!(
        check(MarketProcess::Gbm(GbmParams {
            volatility: -0.1,
            ..gbm
        })),
        "volatility"
    );
    assert_eq!(
        check(MarketProcess::Gbm(GbmParams {
            volatility: f64::NAN,
            ..gbm
        })),
        "volatility"
    );
    assert_eq!(
        check(MarketProcess::Gbm(GbmParams {
            drift: f64::INFINITY,
            ..gbm
        })),
        "drift"
    );
    let ar1 = Ar1Params::default();
    assert_eq!(
        check(MarketProcess::Ar1(Ar1Params { phi: 1.0, ..ar1 })),
        "phi"
    );
    assert_eq!(
        check(MarketProcess::Ar1(Ar1Params { phi: -1.5, ..ar1 })),
        "phi"
    );
    let jump = JumpParams::default();
    assert_eq!(
        check(MarketProcess::Jump(JumpParams {
            jump_rate: -0.1,
            ..jump
        })),
        "jump_rate"
    );
    assert_eq!(
        check(MarketProcess::Jump(JumpParams {
            jump_std: -1.0,
            ..jump
        })),
        "jump_std"
    );
    assert_eq!(
        check(MarketProcess::Jump(JumpParams {
            jump_mean: f64::NAN,
            ..jump
        })),
        "jump_mean"
    );

    let regime = RegimeParams::default();
    let mut bad = regime.clone();
    bad.transition[0][0] = 1.2;
    bad.transition[0][1] = -0.2;
    assert_eq!(check(MarketProcess::Regime(bad)), "transition probability");
    let mut bad = regime.clone();
    bad.transition[2][2] = 0.5;
    assert_eq!(check(MarketProcess::Regime(bad)), "transition row sum");
    let mut bad = regime.clone();
    bad.transition.pop();
    assert_eq!(check(MarketProcess::Regime(bad)), "transition");
    let mut bad = regime.clone();
    bad.states[1].volatility = -1.0;
    assert_eq!(check(MarketProcess::Regime(bad)), "volatility");
    let empty = RegimeParams {
        states: vec![],
        transition: vec![],
    };
    assert_eq!(check(MarketProcess::Regime(empty)), "states");
    let state = RegimeState {
        label: RegimeLabel::Sideways,
        drift: 0.0,
        volatility: 0.01,
    };
    assert!(matches!(
        RegimeParams::with_mean_durations(vec![state], &[0.5]),
        Err(Error::InvalidParameter {
            name: "mean_duration",
            ..
        })
    ));
    assert!(matches!(
        RegimeParams::with_mean_durations(vec![state], &[5.0, 5.0]),
        Err(Error::InvalidParameter {
            name: "mean_durations",
            ..
        })
    ));

    let config = SyntheticConfig::default();
    assert_eq!(invalid_name(config.generate(0, 0)), "n_bars");
    for (style, name) in [
        (
            BarStyle {
                start_price: 0.0,
                ..BarStyle::default()
            },
            "start_price",
        ),
        (
            BarStyle {
                wick: -1.0,
                ..BarStyle::default()
            },
            "wick",
        ),
        (
            BarStyle {
                volume: f64::NAN,
                ..BarStyle::default()
            },
            "volume",
        ),
        (
            BarStyle {
                start_time: i64::MAX - 10,
                ..BarStyle::default()
            },
            "n_bars",
        ),
    ] {
        let config = SyntheticConfig {
            bars: style,
            ..SyntheticConfig::default()
        };
        assert_eq!(invalid_name(config.generate(10, 0)), name);
    }

    let dr = DomainRandomization::default();
    for (bad, name) in [
        (
            DomainRandomization {
                kinds: vec![],
                ..dr.clone()
            },
            "kinds",
        ),
        (
            DomainRandomization {
                drift: (0.1, -0.1),
                ..dr.clone()
            },
            "drift",
        ),
        (
            DomainRandomization {
                volatility: (-0.1, 0.1),
                ..dr.clone()
            },
            "volatility",
        ),
        (
            DomainRandomization {
                autocorrelation: (-0.5, 1.0),
                ..dr.clone()
            },
            "autocorrelation",
        ),
        (
            DomainRandomization {
                jump_rate: (-1.0, 0.0),
                ..dr.clone()
            },
            "jump_rate",
        ),
        (
            DomainRandomization {
                jump_std: (f64::NAN, 0.1),
                ..dr.clone()
            },
            "jump_std",
        ),
        (
            DomainRandomization {
                regime_duration: (0.5, 10.0),
                ..dr.clone()
            },
            "regime_duration",
        ),
    ] {
        assert_eq!(invalid_name(bad.generate(10, 0)), name);
    }
}

#[test]
fn explosive_parameters_fail_cleanly() {
    // exp overflows to infinity: a validation error naming the row, not a panic.
    let p = GbmParams {
        drift: 400.0,
        volatility: 0.0,
    };
    let err = SyntheticConfig::new(MarketProcess::Gbm(p))
        .generate(10, 0)
        .unwrap_err();
    assert!(
        matches!(err, Error::NonPositivePrice { row: 2, .. }),
        "{err}"
    );
}
