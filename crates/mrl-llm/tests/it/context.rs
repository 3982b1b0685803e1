//! The context builder: contents, news timing and no look-ahead.

use mrl_data::{Bar, BarSeries, HOUR_MS};
use mrl_llm::{ContextBuilder, ContextConfig, Error, NewsItem, read_news, roles};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn series(n: usize, seed: u64) -> BarSeries {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut close = 100.0;
    let bars: Vec<Bar> = (0..n)
        .map(|i| {
            let u: f64 = rng.random();
            let open = close;
            close *= 1.0 + (u - 0.5) * 0.02;
            Bar {
                timestamp: 1_700_000_000_000 + i as i64 * HOUR_MS,
                open,
                high: open.max(close) * 1.001,
                low: open.min(close) * 0.999,
                close,
                volume: 1.0,
            }
        })
        .collect();
    BarSeries::new(&bars).unwrap().with_symbol("TESTUSDT")
}

fn news_at(ts: i64, text: &str) -> NewsItem {
    NewsItem {
        timestamp: ts,
        headline: text.into(),
    }
}

#[test]
fn the_context_holds_the_recent_past() {
    let s = series(120, 1);
    let builder = ContextBuilder::new(&s, Vec::new(), ContextConfig::default()).unwrap();
    assert_eq!(builder.first_bar(), 26);
    let c = builder.context_at(80).unwrap();
    assert_eq!(c.bar, 80);
    assert_eq!(c.decision_time, s.timestamps()[80] + HOUR_MS);
    assert_eq!(c.close, s.closes()[80]);
    assert_eq!(c.recent_returns_pct.len(), 10);
    let last = (s.closes()[80] / s.closes()[79] - 1.0) * 100.0;
    assert!((c.recent_returns_pct[9] - last).abs() < 1e-12);
    let ret_1 = c.features[0];
    assert!(
        (ret_1 * 100.0 - last).abs() < 1e-9,
        "ret_1 is the last return"
    );
    assert_eq!(c.regime.bars, 51);
    let text = c.to_prompt();
    assert!(text.contains("TESTUSDT") && text.contains("rsi=") && text.contains("vol_ratio="));
    let messages = roles::actor_messages(&c);
    assert_eq!(messages.len(), 2);
    assert!(messages[1].content.contains(&text));
    for bad in [0, 25, 120] {
        assert!(matches!(
            builder.context_at(bad),
            Err(Error::BadDecisionBar { .. })
        ));
    }
}

#[test]
fn perturbing_the_future_changes_nothing() {
    let s = series(200, 2);
    let t = 120;
    let decision = s.timestamps()[t] + HOUR_MS;
    let news = vec![
        news_at(decision - HOUR_MS / 2, "during the bar"),
        news_at(decision - 1, "just before the close"),
        news_at(decision, "at the close: too late"),
        news_at(decision + HOUR_MS, "next bar"),
    ];
    let base = ContextBuilder::new(&s, news.clone(), ContextConfig::default())
        .unwrap()
        .context_at(t)
        .unwrap();
    let headlines: Vec<&str> = base.news.iter().map(|n| n.headline.as_str()).collect();
    assert_eq!(headlines, ["during the bar", "just before the close"]);

    // Every bar after t moved wildly, and different future news.
    let mut bars: Vec<Bar> = s.iter().collect();
    for bar in &mut bars[t + 1..] {
        bar.open *= 3.0;
        bar.high *= 3.5;
        bar.low *= 0.5;
        bar.close *= 2.0;
        bar.volume += 1e6;
    }
    let future = BarSeries::new(&bars).unwrap().with_symbol("TESTUSDT");
    let mut other_news = news[..2].to_vec();
    other_news.push(news_at(decision, "a crash"));
    other_news.push(news_at(decision + 5, "a rally"));
    let perturbed = ContextBuilder::new(&future, other_news, ContextConfig::default())
        .unwrap()
        .context_at(t)
        .unwrap();
    assert_eq!(base, perturbed);
    assert_eq!(base.to_prompt(), perturbed.to_prompt());
    // The past does matter.
    let mut past = bars.clone();
    past[t].close *= 1.01;
    past[t].high = past[t].high.max(past[t].close);
    let changed = ContextBuilder::new(
        &BarSeries::new(&past).unwrap(),
        Vec::new(),
        ContextConfig::default(),
    )
    .unwrap()
    .context_at(t)
    .unwrap();
    assert_ne!(changed.features, base.features);
}

#[test]
fn news_files_are_read_in_time_order_and_bad_lines_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("news.jsonl");
    std::fs::write(
        &path,
        "{\"timestamp\": 20, \"headline\": \"second\"}\n\n{\"timestamp\": 10, \"headline\": \"first\"}\n",
    )
    .unwrap();
    let items = read_news(&path).unwrap();
    assert_eq!(items, vec![news_at(10, "first"), news_at(20, "second")]);
    std::fs::write(
        &path,
        "{\"timestamp\": 1, \"headline\": \"ok\"}\n{\"headline\": \"no time\"}\n",
    )
    .unwrap();
    match read_news(&path) {
        Err(Error::BadNews {
            line: 2, reason, ..
        }) => assert!(reason.contains("timestamp"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
