//! The committed synthetic fixtures (`fixtures/synthetic/*.csv`) are exactly what the
//! generator produces for their recorded settings, rounded for size.
//!
//! Regenerate after a deliberate generator change with
//! `MRL_UPDATE_FIXTURES=1 cargo test -p mrl-data --test it fixtures`.

use std::path::{Path, PathBuf};

use mrl_data::{
    Ar1Params, Bar, BarSeries, BarStyle, GbmParams, Interval, MarketProcess, ProcessKind,
    SyntheticConfig, read_csv, write_csv,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/synthetic");
const N_BARS: usize = 100;

/// `x` rounded to `decimals` places (monotone, so OHLC order survives).
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Prices to 4 decimals, volume to 2: about 60 bytes a row.
fn rounded(series: &BarSeries) -> BarSeries {
    let bars: Vec<Bar> = series
        .iter()
        .map(|b| Bar {
            timestamp: b.timestamp,
            open: round(b.open, 4),
            high: round(b.high, 4),
            low: round(b.low, 4),
            close: round(b.close, 4),
            volume: round(b.volume, 2),
        })
        .collect();
    BarSeries::new(&bars).unwrap()
}

fn generated(process: MarketProcess, bars: BarStyle, seed: u64) -> BarSeries {
    let config = SyntheticConfig { process, bars };
    rounded(&config.generate(N_BARS, seed).unwrap().series)
}

/// Every fixture: file name and the series it must hold.
fn fixtures() -> Vec<(&'static str, BarSeries)> {
    let hourly = BarStyle::default();
    let daily = BarStyle {
        interval: Interval::DAY,
        ..BarStyle::default()
    };
    let gbm = ProcessKind::Gbm.default_process();
    let with_gaps = {
        let s = generated(gbm.clone(), hourly.clone(), 6);
        let keep: Vec<Bar> = (0..N_BARS)
            .filter(|i| !(20..23).contains(i) && *i != 60)
            .map(|i| s.bar(i))
            .collect();
        BarSeries::new(&keep).unwrap()
    };
    vec![
        ("gbm_1h.csv", generated(gbm, hourly.clone(), 1)),
        (
            "ar1_1h.csv",
            generated(
                MarketProcess::Ar1(Ar1Params {
                    phi: 0.5,
                    ..Ar1Params::default()
                }),
                hourly.clone(),
                2,
            ),
        ),
        (
            "regime_1h.csv",
            generated(ProcessKind::Regime.default_process(), hourly.clone(), 3),
        ),
        (
            "jump_1h.csv",
            generated(ProcessKind::Jump.default_process(), hourly, 4),
        ),
        (
            "gbm_1d.csv",
            generated(
                MarketProcess::Gbm(GbmParams {
                    drift: 3e-4,
                    volatility: 0.02,
                }),
                daily,
                5,
            ),
        ),
        ("gaps_1h.csv", with_gaps),
    ]
}

#[test]
fn synthetic_fixtures_match_the_generator() {
    let update = std::env::var_os("MRL_UPDATE_FIXTURES").is_some();
    for (name, expected) in fixtures() {
        let path: PathBuf = Path::new(DIR).join(name);
        if update {
            write_csv(&expected, &path).unwrap();
        }
        let actual =
            read_csv(&path).unwrap_or_else(|e| panic!("{e} (regenerate: see module docs)"));
        let symbol = name.split('_').next().unwrap();
        assert_eq!(
            actual,
            expected.with_symbol(symbol),
            "{name} differs from the generator"
        );
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(bytes < 8 * 1024, "{name} is {bytes} bytes");
    }
}
