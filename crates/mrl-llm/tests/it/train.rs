//! The self-improvement loop on the tiny random model: one round end to end, determinism by
//! seed, resume equal to an uninterrupted run, the candidates' log and the filter of pairs
//! to differing positions, the realised return kept out of the actor's
//! prompt, and the run directory's guards.

use std::path::{Path, PathBuf};

use mrl_data::{Bar, BarSeries};
use mrl_llm::{
    ACTOR_ADAPTERS, BASE_VALIDATION_JSON, CANDIDATES_JSONL, CandidateLog, EmbeddedBackend, Error,
    EvalRow, JUDGE_ADAPTERS, MarketConfig, PairFilter, PositionCounts, RoundLog, TrainConfig,
    TrainingData, Weights, actor_decisions, actor_row, constrained_actor, outcome_score,
    position_sign, roles, round_dir, train, validation_bars, write_tiny_model,
};

fn tiny() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_model(&path, 5).unwrap();
    (dir, path)
}

/// Hot sampling: the tiny random model is so peaked that at the shipped temperature its
/// candidates coincide and no pair forms.
fn config(rounds: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        seed,
        rounds,
        contexts: 2,
        candidates: 2,
        judgments: 2,
        rationale_tokens: 3,
        sampling: mrl_llm::Sampling::TopP {
            temperature: 4.0,
            top_p: 1.0,
        },
        market: MarketConfig {
            n_markets: 1,
            n_bars: 60,
            ..MarketConfig::default()
        },
        context: mrl_llm::ContextConfig {
            returns_window: 3,
            regime_window: 10,
            max_news: 0,
        },
        dpo: mrl_llm::DpoConfig {
            epochs: 1,
            ..mrl_llm::DpoConfig::default()
        },
        eval: mrl_llm::EvalConfig {
            validation_decisions: 2,
            ..mrl_llm::EvalConfig::default()
        },
        ..TrainConfig::default()
    }
}

fn run(model: &Path, config: &TrainConfig, out: &Path, resume: bool) -> Vec<RoundLog> {
    let series = config.market.generate(config.market.seed).unwrap();
    train(model, &series, config, out, resume, &mut |_| {}).unwrap()
}

fn without_time(mut logs: Vec<RoundLog>) -> Vec<RoundLog> {
    for log in &mut logs {
        log.seconds = 0.0;
        log.phase_seconds = mrl_llm::PhaseSeconds::default();
    }
    logs
}

fn adapters(out: &Path, round: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = round_dir(out, round);
    (
        std::fs::read(dir.join(ACTOR_ADAPTERS)).unwrap(),
        std::fs::read(dir.join(JUDGE_ADAPTERS)).unwrap(),
    )
}

#[test]
fn one_round_runs_end_to_end_with_finite_losses_and_is_deterministic() {
    let (_dir, model) = tiny();
    let out = tempfile::tempdir().unwrap();
    let logs = run(&model, &config(1, 3), out.path(), false);
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert_eq!(log.round, 1);
    assert_eq!(log.contexts, 2);
    let phases = log.phase_seconds;
    // The two roles' DPO run side by side: the longer of the two counts.
    let phase_sum =
        phases.actor + phases.judge + phases.dpo_actor.max(phases.dpo_judge) + phases.validation;
    assert!(phases.actor > 0.0 && phases.dpo_actor > 0.0 && phases.validation > 0.0);
    assert!(
        phase_sum <= log.seconds,
        "{phases:?} within {} s",
        log.seconds
    );
    // Constrained decoding: every reply of every role parses, even from random weights.
    assert_eq!(log.actor_replies.total(), 4);
    assert_eq!(log.actor_replies.failed, 0);
    assert_eq!(log.judge_replies.total(), 8);
    assert_eq!(log.judge_replies.failed, 0);
    assert_eq!(log.meta_judge_replies.failed, 0);
    assert!(log.actor_pairs >= 1, "{log:?}");
    assert!(log.judge_pairs >= 1, "{log:?}");
    for (dpo, pairs) in [
        (log.actor_dpo.unwrap(), log.actor_pairs),
        (log.judge_dpo.unwrap(), log.judge_pairs),
    ] {
        assert_eq!(dpo.steps, pairs, "one epoch, one step per pair");
        assert!(dpo.loss_first_epoch.is_finite() && dpo.loss_last_epoch.is_finite());
        // The first step is at the reference (loss ln 2); a pair's loss stays near it.
        assert!((0.3..1.1).contains(&dpo.loss_first_epoch), "{dpo:?}");
        assert!(dpo.margin_last_epoch.is_finite());
    }
    // The log files and the round directory.
    let rounds: Vec<RoundLog> =
        serde_json::from_slice(&std::fs::read(out.path().join("rounds.json")).unwrap()).unwrap();
    assert_eq!(rounds, logs);
    let csv = std::fs::read_to_string(out.path().join("rounds.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2);
    assert!(csv.starts_with("round,contexts,"));
    let pairs = std::fs::read_to_string(round_dir(out.path(), 1).join("pairs.jsonl")).unwrap();
    assert_eq!(pairs.lines().count(), log.actor_pairs + log.judge_pairs);
    // The validation after the round: bars 42 and 43, right after the training period
    // (the first 42 of 60 bars), booked like mrl llm eval.
    let series = config(1, 3).market.generate(1).unwrap();
    assert_eq!(validation_bars(&series[0], &config(1, 3)).unwrap(), 42..44);
    let validation = log.validation.as_ref().unwrap();
    assert_eq!(validation.name, "round 1");
    assert_eq!(
        (validation.decisions, validation.parse_failures),
        (2, Some(0))
    );
    assert!(validation.mae_pct.unwrap().is_finite());
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains(",val_sharpe,val_return,val_mae_pct,val_unparsed_share,")
    );
    let unparsed_share = csv.lines().nth(1).unwrap().split(',').nth(29).unwrap();
    assert_eq!(unparsed_share, "0.000000");
    // Before round 1: the plain model, the same row as mrl llm eval's for the base model.
    let base: EvalRow =
        serde_json::from_slice(&std::fs::read(out.path().join(BASE_VALIDATION_JSON)).unwrap())
            .unwrap();
    let mut plain = EmbeddedBackend::load(&model, Weights::DequantizedF32).unwrap();
    let decisions = actor_decisions(
        &series[0],
        config(1, 3).context,
        42..44,
        &mut constrained_actor(&mut plain, 3),
    )
    .unwrap();
    assert_eq!(base, actor_row("round 0", &series[0], &decisions, 0.001));
    // Trained adapters differ from the zero-initialised B matrices of round 0.
    let (actor, judge) = adapters(out.path(), 1);
    assert_ne!(actor, judge);

    // Same seed, same adapters and logs; another seed, other adapters.
    let again = tempfile::tempdir().unwrap();
    let logs_again = run(&model, &config(1, 3), again.path(), false);
    assert_eq!(without_time(logs_again), without_time(logs.clone()));
    assert_eq!(adapters(again.path(), 1), adapters(out.path(), 1));
    let other = tempfile::tempdir().unwrap();
    run(&model, &config(1, 4), other.path(), false);
    assert_ne!(adapters(other.path(), 1).0, adapters(out.path(), 1).0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The candidates of a run's round `round`.
fn candidates(out: &Path, round: usize) -> Vec<CandidateLog> {
    std::fs::read_to_string(round_dir(out, round).join(CANDIDATES_JSONL))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The (chosen, rejected) candidates of every trained actor pair.
fn trained_pairs(logged: &[CandidateLog]) -> Vec<(&CandidateLog, &CandidateLog)> {
    let pick = |context: usize, chosen: bool| {
        logged
            .iter()
            .find(|c| c.context == context && c.in_pair == Some(chosen))
    };
    let contexts = logged.iter().map(|c| c.context).max().map_or(0, |m| m + 1);
    (0..contexts)
        .filter_map(|k| Some((pick(k, true)?, pick(k, false)?)))
        .collect()
}

#[test]
fn pairs_of_differing_positions_keep_only_opposite_sides() {
    let (_dir, model) = tiny();
    let config = |actor_pairs| TrainConfig {
        contexts: 3,
        candidates: 3,
        judgments: 1,
        actor_pairs,
        eval: mrl_llm::EvalConfig {
            validation_decisions: 0,
            ..mrl_llm::EvalConfig::default()
        },
        ..config(1, 5)
    };
    let (any, differing) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let any_log = run(&model, &config(PairFilter::Any), any.path(), false).remove(0);
    let log = run(
        &model,
        &config(PairFilter::DifferingPositions),
        differing.path(),
        false,
    )
    .remove(0);
    // Every candidate is logged with its context, bar, realised return and score; the
    // filter changes which pairs train, not what was sampled or judged.
    let logged = candidates(differing.path(), 1);
    assert_eq!(logged.len(), 9);
    let strip = |c: &[CandidateLog]| -> Vec<CandidateLog> {
        c.iter()
            .map(|c| CandidateLog {
                in_pair: None,
                ..c.clone()
            })
            .collect()
    };
    assert_eq!(strip(&logged), strip(&candidates(any.path(), 1)));
    let mut counts = PositionCounts::default();
    for c in &logged {
        assert_eq!(c.judge_scores.len(), usize::from(c.prediction.is_some()));
        if let Some(p) = &c.prediction {
            counts.record(p.position);
        }
    }
    assert_eq!(counts, log.candidate_positions);
    let sides = [counts.long, counts.short, counts.flat];
    assert!(sides.iter().filter(|&&k| k > 0).count() >= 2, "{counts:?}");
    // The pairs: one per differing context, chosen and rejected on opposite sides.
    assert_eq!(log.differing_pairs, any_log.differing_pairs);
    assert!(any_log.actor_pairs >= log.actor_pairs);
    assert_eq!(log.actor_pairs, log.differing_pairs);
    assert!(log.actor_pairs >= 1, "{log:?}");
    for (w, l) in trained_pairs(&logged) {
        let side = |c: &CandidateLog| position_sign(c.prediction.as_ref().unwrap().position);
        assert_ne!(side(w), side(l), "{w:?} vs {l:?}");
    }
    let trained = logged.iter().filter(|c| c.in_pair == Some(true)).count();
    assert_eq!(trained, log.actor_pairs);
}

#[test]
fn an_outcome_weight_of_one_scores_candidates_by_what_their_position_made() {
    let (_dir, model) = tiny();
    let config = TrainConfig {
        contexts: 3,
        candidates: 3,
        judgments: 1,
        actor_pairs: PairFilter::DifferingPositions,
        outcome_weight: 1.0,
        eval: mrl_llm::EvalConfig {
            validation_decisions: 0,
            ..mrl_llm::EvalConfig::default()
        },
        ..config(1, 5)
    };
    let out = tempfile::tempdir().unwrap();
    let log = run(&model, &config, out.path(), false).remove(0);
    let logged = candidates(out.path(), 1);
    for c in &logged {
        let p = c.prediction.as_ref().unwrap();
        let expected = outcome_score(p.position, c.realised_return_pct);
        assert_eq!(c.score, Some(expected), "{c:?}");
    }
    // Every trained pair prefers the side that did better over the next bar.
    assert!(log.actor_pairs >= 1, "{log:?}");
    for (w, l) in trained_pairs(&logged) {
        assert!(w.score > l.score, "{w:?} vs {l:?}");
    }
}

#[test]
fn resume_equals_an_uninterrupted_run() {
    let (_dir, model) = tiny();
    let whole = tempfile::tempdir().unwrap();
    let logs = run(&model, &config(2, 9), whole.path(), false);
    assert_eq!(logs.len(), 2);
    assert_ne!(adapters(whole.path(), 1), adapters(whole.path(), 2));
    // A run stopped after round 1 of 2 (its round 2 never finished).
    let stopped = tempfile::tempdir().unwrap();
    copy_dir(whole.path(), stopped.path());
    std::fs::remove_dir_all(round_dir(stopped.path(), 2)).unwrap();
    let series = config(2, 9).market.generate(1).unwrap();
    // Without --resume a directory with rounds is refused; another config cannot resume.
    let err = train(
        &model,
        &series,
        &config(2, 9),
        stopped.path(),
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::OutputExists { rounds: 1, .. }),
        "{err}"
    );
    let err = train(
        &model,
        &series,
        &config(2, 10),
        stopped.path(),
        true,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::ConfigMismatch { .. }), "{err}");
    let mut seen = Vec::new();
    let resumed = train(
        &model,
        &series,
        &config(2, 9),
        stopped.path(),
        true,
        &mut |log| seen.push(log.round),
    )
    .unwrap();
    assert_eq!(seen, vec![2], "only round 2 runs again");
    assert_eq!(without_time(resumed), without_time(logs));
    assert_eq!(adapters(stopped.path(), 2), adapters(whole.path(), 2));
    assert!(resumed_validation_is_logged(stopped.path()));
    // More rounds may be asked of a finished run: only round 3 runs.
    let mut seen = Vec::new();
    let longer = train(
        &model,
        &series,
        &config(3, 9),
        stopped.path(),
        true,
        &mut |log| seen.push(log.round),
    )
    .unwrap();
    assert_eq!(seen, vec![3]);
    assert_eq!(longer.len(), 3);
}

/// Every round of the resumed run's `rounds.json` carries its validation.
fn resumed_validation_is_logged(out: &Path) -> bool {
    let rounds: Vec<RoundLog> =
        serde_json::from_slice(&std::fs::read(out.join("rounds.json")).unwrap()).unwrap();
    rounds
        .iter()
        .all(|r| r.validation.as_ref().is_some_and(|v| v.decisions == 2))
}

#[test]
fn the_realised_return_never_reaches_the_actor() {
    let config = config(1, 0);
    let series = config.market.generate(1).unwrap();
    let data = TrainingData::new(&series, &config).unwrap();
    // Decisions 26..=40 (training period: the first 42 of 60 bars, t + 1 inside it).
    assert_eq!(data.len(), 15);
    let example = data.example(3).unwrap();
    let t = example.context.bar;
    assert_eq!(t, 29);
    let closes = series[0].closes();
    let realised = (closes[t + 1] / closes[t] - 1.0) * 100.0;
    assert!((example.realised_return_pct - realised).abs() < 1e-12);
    let actor_prompt = format!("{:?}", roles::actor_messages(&example.context));
    assert!(!actor_prompt.contains("Realised"), "{actor_prompt}");
    assert!(!actor_prompt.contains(&format!("{realised:+.2}%")));
    let judge_prompt = format!(
        "{:?}",
        roles::judge_messages(
            &example.context,
            "{}",
            Some(roles::Outcome {
                realised_return_pct: example.realised_return_pct,
                position: 1.0,
            })
        )
    );
    assert!(judge_prompt.contains(&format!("{realised:+.2}%")));
    // Perturbing every bar after t changes the realised return but not the actor's prompt.
    let bars: Vec<Bar> = series[0]
        .closes()
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut bar = series[0].bar(i);
            if i > t {
                for p in [&mut bar.open, &mut bar.high, &mut bar.low, &mut bar.close] {
                    *p *= 1.5;
                }
            }
            bar
        })
        .collect();
    let perturbed = vec![
        BarSeries::new(&bars)
            .unwrap()
            .with_symbol(series[0].symbol().unwrap()),
    ];
    let data2 = TrainingData::new(&perturbed, &config).unwrap();
    let example2 = data2.example(3).unwrap();
    assert_eq!(
        roles::actor_messages(&example2.context),
        roles::actor_messages(&example.context)
    );
    assert!((example2.realised_return_pct - example.realised_return_pct).abs() > 10.0);
}

#[test]
fn the_shipped_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let quick = TrainConfig::from_toml_file(&dir.join("llm-quick.toml")).unwrap();
    assert_eq!((quick.rounds, quick.contexts, quick.candidates), (2, 4, 3));
    let big = TrainConfig::from_toml_file(&dir.join("llm-experiment.toml")).unwrap();
    assert_eq!((big.rounds, big.contexts, big.candidates), (4, 32, 4));
    // The two differ only in size: same seed, markets' law and length, context, adapters
    // and preference rules.
    assert_eq!(quick.market.synthetic, big.market.synthetic);
    assert_eq!(quick.market.n_bars, big.market.n_bars);
    assert_eq!(
        (quick.context, quick.lora, quick.seed),
        (big.context, big.lora, big.seed)
    );
    for config in [&quick, &big] {
        assert_eq!(config.actor_pairs, mrl_llm::PairFilter::DifferingPositions);
        assert_eq!(config.outcome_weight, 0.5);
    }
    // The speed target's round: llm-quick with 24 contexts, one round.
    let round24 = TrainConfig::from_toml_file(&dir.join("llm-round24.toml")).unwrap();
    assert_eq!(
        (round24.rounds, round24.contexts, round24.candidates),
        (1, 24, 3)
    );
    assert_eq!(
        TrainConfig {
            rounds: quick.rounds,
            contexts: quick.contexts,
            ..round24
        },
        quick
    );
}
