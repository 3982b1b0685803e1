//! The self-improvement loop (`mrl llm train`): actor, judge and meta-judge in rounds of
//! DPO on LoRA adapters (Meta-Rewarding, Wu et al. 2024, arXiv:2407.19594; applied to
//! trading as in Meta-RL-Crypto, arXiv:2509.09751).
//!
//! One round, for each of `contexts` training decisions drawn (seeded) from the training
//! periods:
//!
//! 1. the **actor** (base model + actor adapters) samples `candidates` answers under
//!    constrained decoding ([`Template::prediction`]); its prompt is built from
//!    [`TrainingExample::context`] alone, which holds bars at or before the decision bar;
//!    the realised return is a separate field that only the judge and meta-judge see;
//! 2. the **judge** (base model + judge adapters) scores each parsed answer `judgments`
//!    times with the realised next return in its rubric; a candidate's score is the mean
//!    of its parsed judgments, blended with the computed outcome ([`outcome_score`]) by
//!    `outcome_weight` (0: the judge alone, as in Meta-Rewarding), and an answer that could
//!    not be parsed scores −1 (below any judged answer);
//! 3. actor pair: the chosen answer is the shortest of those scoring within
//!    `length_tie · (best − worst)` of the best, the rejected one the worst (no pair when
//!    all score the same);
//! 4. the **meta-judge** (the judge's model, as in Meta-Rewarding where one model plays
//!    every role) compares two different judgments of the candidate whose judgments
//!    disagree most, in a seeded random order (against position bias); the judge pair is
//!    (winner, loser) for the judge's prompt;
//! 5. DPO on each role's pairs ([`dpo_loss`](crate::dpo_loss), β from the config) with
//!    AdamW on the adapters only; the reference is the role's model at the start of the
//!    round (iterative DPO as in Meta-Rewarding: round `k` starts from and is anchored to
//!    round `k − 1`).
//!
//! **Length control.** The judge never sees the actor's raw reply: it sees the parsed
//! answer re-rendered canonically ([`canonical_prediction`]: fixed fields, two decimals, the
//! rationale cut to [`SHOWN_RATIONALE_CHARS`]), so a longer reply cannot look more
//! thorough; the meta-judge likewise sees canonical judgments. Constrained decoding bounds
//! every rationale by `rationale_tokens`. Among near-best answers the shortest is chosen
//! (the Meta-Rewarding paper's length control of the actor pairs), so the loop does not
//! teach verbosity.
//!
//! Every draw is seeded from `config.seed` and the round, context, candidate and sample
//! index; the optimiser is fresh each round; adapters are saved per round in a directory
//! written under a temporary name and renamed, so a resumed run equals an uninterrupted
//! one.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use mrl_data::BarSeries;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{GenerateConfig, Message};
use crate::config::{PairFilter, TrainConfig};
use crate::constrained::Template;
use crate::context::{ContextBuilder, MarketContext};
use crate::dpo::{dpo_loss, response_logprob};
use crate::embedded::EmbeddedBackend;
use crate::error::{Error, Result};
use crate::eval::{EvalRow, actor_decisions, actor_row, constrained_actor};
use crate::lora::{LoraConfig, LoraLlama};
use crate::reply::{
    Direction, Judgment, ParseStats, Prediction, Preference, parse_judgment, parse_meta_judgment,
    parse_prediction,
};
use crate::roles::{self, Outcome, Role};

/// Characters of a rationale shown to the judge or meta-judge.
pub const SHOWN_RATIONALE_CHARS: usize = 80;
/// Score of an actor answer that could not be parsed (judged answers score 0–10).
pub const UNPARSED_SCORE: f64 = -1.0;

/// One training decision: the market context at the close of bar `t` and, kept apart, the
/// realised return of bar `t + 1` (known in the training period only).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingExample {
    /// Built from bars at or before `t` only; the actor's prompt comes from this alone.
    pub context: MarketContext,
    /// `(close[t+1] / close[t] − 1) · 100`; shown to the judge and the meta-judge only.
    pub realised_return_pct: f64,
}

/// The decisions of the training periods of some series.
#[derive(Debug)]
pub struct TrainingData<'a> {
    series: &'a [BarSeries],
    builders: Vec<ContextBuilder<'a>>,
    /// (series index, decision bar) of every usable decision.
    bars: Vec<(usize, usize)>,
}

impl<'a> TrainingData<'a> {
    /// The usable decisions: bars `t` from the context builder's first bar with `t + 1`
    /// inside the training period (the first `train_share` of each series).
    ///
    /// # Errors
    /// [`Error::NoData`] when no series has a usable decision; context-builder errors.
    pub fn new(series: &'a [BarSeries], config: &TrainConfig) -> Result<Self> {
        let mut builders = Vec::with_capacity(series.len());
        let mut bars = Vec::new();
        for (i, s) in series.iter().enumerate() {
            let builder = ContextBuilder::new(s, Vec::new(), config.context)?;
            let train_end = (s.len() as f64 * config.train_share).floor() as usize;
            for t in builder.first_bar()..train_end.saturating_sub(1) {
                bars.push((i, t));
            }
            builders.push(builder);
        }
        if bars.is_empty() {
            return Err(Error::NoData {
                reason: format!(
                    "no decision bar in the training periods ({} of each series) after the context warm-up",
                    config.train_share
                ),
            });
        }
        Ok(Self {
            series,
            builders,
            bars,
        })
    }

    /// Usable decisions.
    pub fn len(&self) -> usize {
        self.bars.len()
    }

    /// Whether there is none (never, after [`new`](Self::new)).
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// Decision `k` (an index into the usable decisions).
    ///
    /// # Errors
    /// [`Error::BadDecisionBar`] for `k` out of range.
    pub fn example(&self, k: usize) -> Result<TrainingExample> {
        let &(i, t) = self.bars.get(k).ok_or_else(|| Error::BadDecisionBar {
            index: k,
            reason: format!("only {} training decisions", self.bars.len()),
        })?;
        let closes = self.series[i].closes();
        Ok(TrainingExample {
            context: self.builders[i].context_at(t)?,
            realised_return_pct: (closes[t + 1] / closes[t] - 1.0) * 100.0,
        })
    }

    /// `n` distinct decisions (all of them when `n` exceeds their number), drawn from `rng`,
    /// in drawn order.
    pub fn draw(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.bars.len()).collect();
        all.shuffle(rng);
        all.truncate(n);
        all
    }
}

/// A seed derived from `base` and a path of indices (SplitMix64 finaliser of each step,
/// Steele et al. 2014): distinct paths give unrelated seeds.
pub fn derive_seed(base: u64, path: &[u64]) -> u64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    path.iter().fold(mix(base), |acc, &p| mix(acc ^ mix(p)))
}

fn shown_rationale(text: &str) -> String {
    text.chars().take(SHOWN_RATIONALE_CHARS).collect()
}

/// The actor's answer as the judge sees it: fixed field order, two decimals, the rationale
/// cut to [`SHOWN_RATIONALE_CHARS`] (length control: the raw reply is never shown).
pub fn canonical_prediction(p: &Prediction) -> String {
    let direction = match p.direction {
        Direction::Up => "up",
        Direction::Down => "down",
        Direction::Flat => "flat",
    };
    serde_json::json!({
        "return_pct": (p.return_pct * 100.0).round() / 100.0,
        "direction": direction,
        "position": (p.position * 100.0).round() / 100.0,
        "confidence": (p.confidence * 100.0).round() / 100.0,
        "rationale": shown_rationale(&p.rationale),
    })
    .to_string()
}

/// A judgment as the meta-judge sees it: the score to one decimal and the cut rationale.
pub fn canonical_judgment(j: &Judgment) -> String {
    serde_json::json!({
        "score": (j.score * 10.0).round() / 10.0,
        "rationale": shown_rationale(&j.rationale),
    })
    .to_string()
}

/// The outcome term of a candidate's score (`outcome_weight`): 10 when the position made
/// money over the next bar (`position · realised > 0`), 0 when it lost, 5 when it made
/// nothing (flat, or no move): the judge rubric's "score by the outcome first" computed
/// rather than read by the model.
pub fn outcome_score(position: f64, realised_return_pct: f64) -> f64 {
    let profit = position * realised_return_pct;
    if profit > 0.0 {
        10.0
    } else if profit < 0.0 {
        0.0
    } else {
        5.0
    }
}

/// The actor preference pair of one context: `(chosen, rejected)` indices into the
/// candidates, or `None` when fewer than two are scored or all score the same.
///
/// The rejected answer is the first of the lowest score; the chosen one the shortest (by
/// `lengths`, then the first) of those scoring above the lowest and at least
/// `best − length_tie · (best − worst)`.
pub fn select_pair(
    scores: &[Option<f64>],
    lengths: &[usize],
    length_tie: f64,
) -> Option<(usize, usize)> {
    let scored: Vec<(usize, f64)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    let best = scored
        .iter()
        .map(|&(_, s)| s)
        .fold(f64::NEG_INFINITY, f64::max);
    let worst = scored.iter().map(|&(_, s)| s).fold(f64::INFINITY, f64::min);
    if scored.len() < 2 || best <= worst {
        return None;
    }
    let tier = best - length_tie * (best - worst);
    let rejected = scored.iter().find(|&&(_, s)| s == worst)?.0;
    let chosen = scored
        .iter()
        .filter(|&&(_, s)| s >= tier && s > worst)
        .min_by_key(|&&(i, _)| (lengths.get(i).copied().unwrap_or(usize::MAX), i))?
        .0;
    Some((chosen, rejected))
}

/// Spearman's rank correlation (Pearson's on average ranks, ties sharing their mean rank);
/// `None` for fewer than 3 pairs or a constant side.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 3 {
        return None;
    }
    let ranks = |v: &[f64]| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let mean = (i + j) as f64 / 2.0 + 1.0;
            for &k in &idx[i..=j] {
                r[k] = mean;
            }
            i = j + 1;
        }
        r
    };
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    if vx <= 0.0 || vy <= 0.0 {
        return None;
    }
    Some(cov / (vx * vy).sqrt())
}

/// One preference pair for DPO: token ids of the prompt and of the two responses (each
/// ending with the end-of-turn token), with their texts for the logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Whose pair: the actor's or the judge's.
    pub role: Role,
    /// Index of the context in the round.
    pub context: usize,
    /// The rendered prompt's ids.
    pub prompt_ids: Vec<u32>,
    /// The preferred response's ids.
    pub chosen_ids: Vec<u32>,
    /// The other response's ids.
    pub rejected_ids: Vec<u32>,
    /// The preferred response.
    pub chosen: String,
    /// The other response.
    pub rejected: String,
}

/// What DPO did in one round for one role.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpoStats {
    /// Optimiser steps (pairs × epochs).
    pub steps: usize,
    /// Mean loss of the first epoch (before most updates; ln 2 ≈ 0.693 at the reference).
    pub loss_first_epoch: f64,
    /// Mean loss of the last epoch.
    pub loss_last_epoch: f64,
    /// Mean reward margin `r_w − r_l` of the last epoch.
    pub margin_last_epoch: f64,
    /// Mean implicit reward of the chosen responses, last epoch.
    pub chosen_reward: f64,
    /// Mean implicit reward of the rejected responses, last epoch.
    pub rejected_reward: f64,
    /// Mean loss over the pairs with the adapters after the last step (each epoch's losses
    /// are taken before that pair's step, so with one epoch they sit near ln 2 whatever the
    /// optimiser does; this one shows what the round's steps achieved).
    #[serde(default)]
    pub loss_after: f64,
    /// Mean reward margin `r_w − r_l` after the last step.
    #[serde(default)]
    pub margin_after: f64,
}

/// The log of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundLog {
    /// Round number (1-based).
    pub round: usize,
    /// Contexts used.
    pub contexts: usize,
    /// Parse outcomes of the actor's answers.
    pub actor_replies: ParseStats,
    /// Parse outcomes of the judge's answers.
    pub judge_replies: ParseStats,
    /// Parse outcomes of the meta-judge's answers.
    pub meta_judge_replies: ParseStats,
    /// Positions of the actor's parsed candidates: long (> 0), short (< 0), flat (0).
    #[serde(default)]
    pub candidate_positions: PositionCounts,
    /// Contexts whose selected pair ([`select_pair`]) has a chosen and a rejected position
    /// of different sign (before `actor_pairs` filtering).
    #[serde(default)]
    pub differing_pairs: usize,
    /// Actor preference pairs trained on.
    pub actor_pairs: usize,
    /// Judge preference pairs.
    pub judge_pairs: usize,
    /// DPO of the actor (`None` without pairs).
    pub actor_dpo: Option<DpoStats>,
    /// DPO of the judge (`None` without pairs).
    pub judge_dpo: Option<DpoStats>,
    /// Spearman correlation of each judged answer's score with its realised return
    /// `position · realised return` (`None` with fewer than 3 judged answers or no spread).
    pub judge_outcome_spearman: Option<f64>,
    /// Mean score of the judged answers.
    pub mean_score: Option<f64>,
    /// Mean tokens of the actor's answers.
    pub mean_answer_tokens: f64,
    /// The actor after this round on the validation bars ([`validation_bars`]; `None`
    /// when `eval.validation_decisions` is 0): Sharpe, return, error of the predicted
    /// return, unparsed replies.
    #[serde(default)]
    pub validation: Option<EvalRow>,
    /// Wall time of the round, seconds (with [`phase_seconds`](Self::phase_seconds), the
    /// fields a resumed run does not reproduce).
    pub seconds: f64,
    /// Wall time of each phase of the round, seconds.
    #[serde(default)]
    pub phase_seconds: PhaseSeconds,
}

/// Counts of positions by sign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionCounts {
    /// Positions > 0.
    pub long: usize,
    /// Positions < 0.
    pub short: usize,
    /// Positions = 0.
    pub flat: usize,
}

impl PositionCounts {
    /// Counts `position` under its sign.
    pub fn record(&mut self, position: f64) {
        match position_sign(position) {
            1 => self.long += 1,
            -1 => self.short += 1,
            _ => self.flat += 1,
        }
    }
}

/// −1, 0 or 1: the side of a position (−0 is flat).
pub fn position_sign(position: f64) -> i8 {
    if position > 0.0 {
        1
    } else if position < 0.0 {
        -1
    } else {
        0
    }
}

/// One actor candidate of a round as logged in `candidates.jsonl`: what the actor said,
/// what the judge gave it, and what the market did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateLog {
    /// Index of the context in the round.
    pub context: usize,
    /// The decision bar.
    pub bar: usize,
    /// The realised next return, percent.
    pub realised_return_pct: f64,
    /// The parsed answer (`None`: unparsed).
    pub prediction: Option<Prediction>,
    /// Each judgment's score (`None`: unparsed).
    pub judge_scores: Vec<Option<f64>>,
    /// The candidate's score: `(1 − outcome_weight) · judge + outcome_weight ·`
    /// [`outcome_score`], the judge's part the mean of the parsed judgments;
    /// [`UNPARSED_SCORE`] when the answer could not be parsed.
    pub score: Option<f64>,
    /// Whether it was the chosen (`Some(true)`) or the rejected (`Some(false)`) answer of
    /// an actor pair trained on.
    pub in_pair: Option<bool>,
}

/// Wall time of the phases of one round, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Sampling the actor's candidates (with loading the adapted actor).
    pub actor: f64,
    /// The judge's scores and the meta-judge's verdicts (with loading the adapted judge).
    pub judge: f64,
    /// DPO of the actor (reference pass, steps, the pass after the last step); it runs
    /// side by side with the judge's, so the two overlap in time.
    pub dpo_actor: f64,
    /// DPO of the judge (side by side with the actor's).
    pub dpo_judge: f64,
    /// The validation after the round.
    pub validation: f64,
}

/// AdamW settings and β of [`dpo_train`].
#[derive(Debug, Clone, Copy)]
struct DpoRun {
    beta: f64,
    learning_rate: f64,
    weight_decay: f64,
    epochs: usize,
    seed: u64,
}

/// DPO on `pairs` for `model`'s adapters: the reference log-probabilities are the model's
/// before the first step; one AdamW step per pair, `epochs` passes in seeded order.
fn dpo_train(model: &LoraLlama, pairs: &[PreferencePair], run: DpoRun) -> Result<DpoStats> {
    // Summed log-probabilities of the chosen and the rejected response: the prompt (but its
    // last token) runs once as their shared prefix; the rows from the prompt's last
    // position on predict the responses. Passes without gradient record no graph.
    let logprobs = |p: &PreferencePair, grad: bool| -> Result<(Tensor, Tensor)> {
        let from = p.prompt_ids.len().saturating_sub(1);
        let tails = [&p.chosen_ids, &p.rejected_ids].map(|r| [&p.prompt_ids[from..], r].concat());
        let prefix = &p.prompt_ids[..from];
        let continuations = [&tails[0][..], &tails[1][..]];
        let rows = match grad {
            true => model.forward_continuations(prefix, &continuations)?,
            false => model.forward_continuations_detached(prefix, &continuations)?,
        };
        let logprob = |k: usize| -> Result<Tensor> {
            Ok(response_logprob(&rows[k], &tails[k], 1)?.reshape(1)?)
        };
        Ok((logprob(0)?, logprob(1)?))
    };
    // The passes without gradient are independent across pairs: they run on the rayon
    // threads side by side (each pair's numbers are the same as one after the other).
    let detached = || -> Result<Vec<(Tensor, Tensor)>> {
        pairs.par_iter().map(|p| logprobs(p, false)).collect()
    };
    let reference = detached()?;
    let vars = model.adapters().into_iter().cloned().collect();
    let mut optimiser = AdamW::new(
        vars,
        ParamsAdamW {
            lr: run.learning_rate,
            weight_decay: run.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
    let mut stats = DpoStats {
        steps: 0,
        loss_first_epoch: 0.0,
        loss_last_epoch: 0.0,
        margin_last_epoch: 0.0,
        chosen_reward: 0.0,
        rejected_reward: 0.0,
        loss_after: 0.0,
        margin_after: 0.0,
    };
    let n = pairs.len() as f64;
    let loss_against_reference = |k: usize, (chosen, rejected): &(Tensor, Tensor)| {
        dpo_loss(chosen, rejected, &reference[k].0, &reference[k].1, run.beta)
    };
    let scalar = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
    for epoch in 0..run.epochs {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut margin_sum, mut chosen_sum, mut rejected_sum) = (0.0, 0.0, 0.0, 0.0);
        for k in order {
            let out = loss_against_reference(k, &logprobs(&pairs[k], true)?)?;
            optimiser.backward_step(&out.loss)?;
            stats.steps += 1;
            loss_sum += scalar(&out.loss)?;
            margin_sum += out.mean_margin();
            chosen_sum += out.chosen_rewards[0];
            rejected_sum += out.rejected_rewards[0];
        }
        tracing::debug!(
            epoch,
            loss = loss_sum / n,
            margin = margin_sum / n,
            "dpo epoch"
        );
        if epoch == 0 {
            stats.loss_first_epoch = loss_sum / n;
        }
        stats.loss_last_epoch = loss_sum / n;
        stats.margin_last_epoch = margin_sum / n;
        stats.chosen_reward = chosen_sum / n;
        stats.rejected_reward = rejected_sum / n;
    }
    for (k, after) in detached()?.iter().enumerate() {
        let out = loss_against_reference(k, after)?;
        stats.loss_after += scalar(&out.loss)? / n;
        stats.margin_after += out.mean_margin() / n;
    }
    tracing::debug!(
        loss = stats.loss_after,
        margin = stats.margin_after,
        "dpo after the last step"
    );
    Ok(stats)
}

/// One generated reply: ids for DPO (with the end-of-turn token) and text.
#[derive(Clone)]
struct Reply {
    ids: Vec<u32>,
    text: String,
}

/// Replies to several prompts under `template` (`seeds[p]` for `prompts[p]`, the loop's
/// sampling, the end-of-turn token appended for DPO): with f32
/// weights their common prefix runs once and all replies advance together
/// ([`EmbeddedBackend::generate_constrained_batch`]); the same replies as one call each.
fn generate_batch(
    backend: &mut EmbeddedBackend,
    prompts: &[&[u32]],
    template: &Template,
    config: &TrainConfig,
    seeds: &[Vec<u64>],
) -> Result<Vec<Vec<Reply>>> {
    let configs: Vec<Vec<GenerateConfig>> = seeds
        .iter()
        .map(|seeds| {
            seeds
                .iter()
                .map(|&seed| GenerateConfig {
                    max_new_tokens: 256,
                    sampling: config.sampling,
                    seed,
                })
                .collect()
        })
        .collect();
    let config_refs: Vec<&[GenerateConfig]> = configs.iter().map(Vec::as_slice).collect();
    let end = backend.end_of_turn_id();
    backend
        .generate_constrained_batch(prompts, template, &config_refs)?
        .into_iter()
        .map(|replies| {
            replies
                .into_iter()
                .map(|generated| {
                    let text = backend.tokenizer().decode(&generated.ids)?;
                    let mut ids = generated.ids;
                    ids.push(end);
                    Ok(Reply { ids, text })
                })
                .collect()
        })
        .collect()
}

fn prompt_ids(backend: &EmbeddedBackend, messages: &[Message]) -> Result<Vec<u32>> {
    backend.tokenizer().encode(&backend.prompt(messages))
}

struct Candidate {
    reply: Reply,
    prediction: Option<Prediction>,
    judgments: Vec<(Reply, Option<Judgment>)>,
    score: Option<f64>,
}

/// Meta-judge prompts (one per context) that run as one batch.
const VERDICT_BATCH: usize = 8;

/// A judged answer whose two judgments go to the meta-judge: the meta-judge's prompt
/// and seed, the judge's prompt (of the pair it makes) and the two judgments in the order
/// shown (A, B).
struct Contest {
    context: usize,
    prompt: Vec<u32>,
    seed: u64,
    judge_prompt: Vec<u32>,
    first: Reply,
    second: Reply,
}

/// Contexts whose actor prompts run as one batch: 3 candidates each make a batch of 12
/// replies, whose key/value caches stay small beside the weights read per step.
const ACTOR_BATCH_CONTEXTS: usize = 4;

/// Generation and judging of one round; returns the pairs and every candidate's log, and
/// fills the log's counts.
fn collect_pairs(
    model_path: &Path,
    actor: &LoraLlama,
    judge: &LoraLlama,
    examples: &[TrainingExample],
    config: &TrainConfig,
    round: usize,
    log: &mut RoundLog,
) -> Result<(Vec<PreferencePair>, Vec<CandidateLog>)> {
    let r = round as u64;
    let start = Instant::now();
    let mut actor_backend = actor.merged_backend(model_path, config.generation_weights)?;
    let mut candidates: Vec<Vec<Candidate>> = Vec::with_capacity(examples.len());
    let mut answer_tokens = 0usize;
    // The actor's prompts (the context alone: bars at or before the decision bar), a few
    // contexts per batch.
    for (chunk, examples) in examples.chunks(ACTOR_BATCH_CONTEXTS).enumerate() {
        let prompts = examples
            .iter()
            .map(|e| prompt_ids(&actor_backend, &roles::actor_messages(&e.context)))
            .collect::<Result<Vec<_>>>()?;
        let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let seeds: Vec<Vec<u64>> = (0..examples.len())
            .map(|i| {
                let c = (chunk * ACTOR_BATCH_CONTEXTS + i) as u64;
                (0..config.candidates)
                    .map(|k| derive_seed(config.seed, &[r, 1, c, k as u64]))
                    .collect()
            })
            .collect();
        let replies = generate_batch(
            &mut actor_backend,
            &prompt_refs,
            &Template::prediction(config.rationale_tokens),
            config,
            &seeds,
        )?;
        for replies in replies {
            let mut row = Vec::with_capacity(config.candidates);
            for reply in replies {
                let parsed = parse_prediction(&reply.text);
                log.actor_replies.record(&parsed);
                if let Ok(p) = &parsed {
                    log.candidate_positions.record(p.value.position);
                }
                answer_tokens += reply.ids.len();
                row.push(Candidate {
                    reply,
                    prediction: parsed.ok().map(|p| p.value),
                    judgments: Vec::new(),
                    score: None,
                });
            }
            candidates.push(row);
        }
    }
    drop(actor_backend);
    tracing::info!(
        answers = log.actor_replies.total(),
        unparsed = log.actor_replies.failed,
        "actor answers sampled"
    );
    log.mean_answer_tokens = answer_tokens as f64 / (examples.len() * config.candidates) as f64;
    log.phase_seconds.actor = start.elapsed().as_secs_f64();
    let start = Instant::now();

    let mut judge_backend = judge.merged_backend(model_path, config.generation_weights)?;
    let mut pairs = Vec::new();
    let mut candidate_logs = Vec::new();
    let mut contests: Vec<Contest> = Vec::new();
    let (mut scores_seen, mut pnl_seen) = (Vec::new(), Vec::new());
    for (c, (example, row)) in examples.iter().zip(&mut candidates).enumerate() {
        let outcome = |p: &Prediction| {
            Some(Outcome {
                realised_return_pct: example.realised_return_pct,
                position: p.position,
            })
        };
        // The judge's prompts about this context's parsed answers share the system turn
        // and the context: one batch.
        let mut judged_k = Vec::with_capacity(row.len());
        let mut prompts = Vec::with_capacity(row.len());
        let mut seeds = Vec::with_capacity(row.len());
        for (k, cand) in row.iter_mut().enumerate() {
            let Some(prediction) = &cand.prediction else {
                cand.score = Some(UNPARSED_SCORE);
                continue;
            };
            let shown = canonical_prediction(prediction);
            prompts.push(prompt_ids(
                &judge_backend,
                &roles::judge_messages(&example.context, &shown, outcome(prediction)),
            )?);
            seeds.push(
                (0..config.judgments)
                    .map(|j| derive_seed(config.seed, &[r, 2, c as u64, k as u64, j as u64]))
                    .collect(),
            );
            judged_k.push(k);
        }
        let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let replies = generate_batch(
            &mut judge_backend,
            &prompt_refs,
            &Template::judgment(config.rationale_tokens),
            config,
            &seeds,
        )?;
        for (k, replies) in judged_k.into_iter().zip(replies) {
            let cand = &mut row[k];
            let prediction = cand.prediction.as_ref().unwrap_or_else(|| unreachable!());
            for reply in replies {
                let parsed = parse_judgment(&reply.text);
                log.judge_replies.record(&parsed);
                cand.judgments.push((reply, parsed.ok().map(|p| p.value)));
            }
            let judged: Vec<f64> = cand
                .judgments
                .iter()
                .filter_map(|(_, j)| j.as_ref().map(|j| j.score))
                .collect();
            if !judged.is_empty() {
                let judge_score = judged.iter().sum::<f64>() / judged.len() as f64;
                let outcome = outcome_score(prediction.position, example.realised_return_pct);
                cand.score = Some(
                    (1.0 - config.outcome_weight) * judge_score + config.outcome_weight * outcome,
                );
                // The judge's own agreement with the outcome, without the outcome term.
                scores_seen.push(judge_score);
                pnl_seen.push(prediction.position * example.realised_return_pct);
            }
        }
        let scores: Vec<Option<f64>> = row.iter().map(|c| c.score).collect();
        let lengths: Vec<usize> = row.iter().map(|c| c.reply.ids.len()).collect();
        let side = |k: usize| {
            row[k]
                .prediction
                .as_ref()
                .map(|p| position_sign(p.position))
        };
        let selected = select_pair(&scores, &lengths, config.length_tie);
        let differing = selected.is_some_and(|(w, l)| side(w) != side(l));
        log.differing_pairs += usize::from(differing);
        let trained = selected.filter(|_| match config.actor_pairs {
            PairFilter::Any => true,
            PairFilter::DifferingPositions => differing,
        });
        for (k, cand) in row.iter().enumerate() {
            candidate_logs.push(CandidateLog {
                context: c,
                bar: example.context.bar,
                realised_return_pct: example.realised_return_pct,
                prediction: cand.prediction.clone(),
                judge_scores: cand
                    .judgments
                    .iter()
                    .map(|(_, j)| j.as_ref().map(|j| j.score))
                    .collect(),
                score: cand.score,
                in_pair: trained
                    .and_then(|(w, l)| (k == w).then_some(true).or((k == l).then_some(false))),
            });
        }
        if let Some((w, l)) = trained {
            let prompt = prompt_ids(&judge_backend, &roles::actor_messages(&example.context))?;
            pairs.push(PreferencePair {
                role: Role::Actor,
                context: c,
                prompt_ids: prompt,
                chosen_ids: row[w].reply.ids.clone(),
                rejected_ids: row[l].reply.ids.clone(),
                chosen: row[w].reply.text.clone(),
                rejected: row[l].reply.text.clone(),
            });
        }
        // Meta-judge the candidate whose two (different) judgments disagree most.
        let contested = row
            .iter()
            .enumerate()
            .filter_map(|(k, cand)| {
                let parsed: Vec<(usize, &Judgment)> = cand
                    .judgments
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, j))| j.as_ref().map(|j| (i, j)))
                    .collect();
                let (a, ja) = *parsed.first()?;
                let (b, jb) = *parsed
                    .iter()
                    .find(|(i, _)| cand.judgments[*i].0.text != cand.judgments[a].0.text)?;
                Some((k, a, b, (ja.score - jb.score).abs()))
            })
            .max_by(|x, y| x.3.total_cmp(&y.3).then(y.0.cmp(&x.0)));
        if let Some((k, a, b, _)) = contested {
            let cand = &row[k];
            let prediction = cand.prediction.as_ref().unwrap_or_else(|| unreachable!());
            let shown = canonical_prediction(prediction);
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, &[r, 3, c as u64]));
            let swap: bool = rng.random();
            let (first, second) = if swap { (b, a) } else { (a, b) };
            let canon = |i: usize| {
                cand.judgments[i]
                    .1
                    .as_ref()
                    .map(canonical_judgment)
                    .unwrap_or_default()
            };
            let messages = roles::meta_judge_messages(
                &example.context,
                &shown,
                &canon(first),
                &canon(second),
                outcome(prediction),
            );
            let judge_prompt = prompt_ids(
                &judge_backend,
                &roles::judge_messages(&example.context, &shown, outcome(prediction)),
            )?;
            contests.push(Contest {
                context: c,
                prompt: prompt_ids(&judge_backend, &messages)?,
                seed: derive_seed(config.seed, &[r, 4, c as u64]),
                judge_prompt,
                first: cand.judgments[first].0.clone(),
                second: cand.judgments[second].0.clone(),
            });
        }
    }
    // The meta-judge's verdicts, a few contexts per batch; the judge's pairs in context
    // order.
    for contests in contests.chunks(VERDICT_BATCH) {
        let prompts: Vec<&[u32]> = contests.iter().map(|c| c.prompt.as_slice()).collect();
        let seeds: Vec<Vec<u64>> = contests.iter().map(|c| vec![c.seed]).collect();
        let verdicts = generate_batch(
            &mut judge_backend,
            &prompts,
            &Template::meta_judgment(config.rationale_tokens),
            config,
            &seeds,
        )?;
        for (contest, mut verdict) in contests.iter().zip(verdicts) {
            let verdict = verdict.remove(0);
            let parsed = parse_meta_judgment(&verdict.text);
            log.meta_judge_replies.record(&parsed);
            if let Ok(parsed) = parsed {
                let (chosen, rejected) = match parsed.value.better {
                    Preference::A => (&contest.first, &contest.second),
                    Preference::B => (&contest.second, &contest.first),
                };
                pairs.push(PreferencePair {
                    role: Role::Judge,
                    context: contest.context,
                    prompt_ids: contest.judge_prompt.clone(),
                    chosen_ids: chosen.ids.clone(),
                    rejected_ids: rejected.ids.clone(),
                    chosen: chosen.text.clone(),
                    rejected: rejected.text.clone(),
                });
            }
        }
    }
    tracing::info!(
        judgments = log.judge_replies.total(),
        verdicts = log.meta_judge_replies.total(),
        pairs = pairs.len(),
        "judged"
    );
    log.phase_seconds.judge = start.elapsed().as_secs_f64();
    log.judge_outcome_spearman = spearman(&scores_seen, &pnl_seen);
    log.mean_score = (!scores_seen.is_empty())
        .then(|| scores_seen.iter().sum::<f64>() / scores_seen.len() as f64);
    Ok((pairs, candidate_logs))
}

/// File names inside a run directory.
const CONFIG_FILE: &str = "config.toml";
const DATA_FILE: &str = "data.json";
const ROUNDS_JSON: &str = "rounds.json";
const ROUNDS_CSV: &str = "rounds.csv";
/// The validation of the plain actor (before round 1) in a run directory.
pub const BASE_VALIDATION_JSON: &str = "validation-base.json";
/// Files of a round directory.
pub const ACTOR_ADAPTERS: &str = "actor.safetensors";
/// The judge's adapters in a round directory.
pub const JUDGE_ADAPTERS: &str = "judge.safetensors";
/// The adapters' description in a round directory.
pub const ADAPTERS_JSON: &str = "adapters.json";
const ROUND_JSON: &str = "round.json";
const PAIRS_JSONL: &str = "pairs.jsonl";
/// Every actor candidate of a round ([`CandidateLog`], one JSON object a line).
pub const CANDIDATES_JSONL: &str = "candidates.jsonl";

/// The directory of round `round` (1-based) in `out`.
pub fn round_dir(out: &Path, round: usize) -> PathBuf {
    out.join(format!("round-{round:04}"))
}

/// Complete rounds in `out`: the largest `k` such that rounds 1..=k all have their
/// `round.json` (a round directory appears only when complete).
pub fn complete_rounds(out: &Path) -> usize {
    let mut k = 0;
    while round_dir(out, k + 1).join(ROUND_JSON).is_file() {
        k += 1;
    }
    k
}

/// Description of saved adapters (`adapters.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// The round that produced them.
    pub round: usize,
    /// The base model's file name.
    pub model: String,
    /// Adapter settings of the actor.
    pub actor: LoraConfig,
    /// Adapter settings of the judge.
    pub judge: LoraConfig,
    /// Element type of the saved tensors.
    pub dtype: String,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (mrl-data's temporary file and rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(mrl_data::write_file_atomic(path, bytes)?)
}

/// The adapter settings of a role: the config's rank and α, a seed derived per role.
pub fn role_lora(config: &TrainConfig, role: Role) -> LoraConfig {
    let tag = match role {
        Role::Actor => 1,
        Role::Judge => 2,
        Role::MetaJudge => 3,
    };
    LoraConfig {
        seed: derive_seed(config.seed, &[config.lora.seed, 100 + tag]),
        ..config.lora
    }
}

fn data_fingerprint(series: &[BarSeries]) -> serde_json::Value {
    series
        .iter()
        .map(|s| {
            serde_json::json!({
                "symbol": s.symbol(),
                "bars": s.len(),
                "first_close": s.closes().first(),
                "last_close": s.closes().last(),
            })
        })
        .collect()
}

fn rounds_csv(logs: &[RoundLog]) -> String {
    let mut out = String::from(
        "round,contexts,actor_clean,actor_repaired,actor_failed,judge_failed,meta_failed,cand_long,cand_short,cand_flat,differing_pairs,actor_pairs,judge_pairs,actor_loss_first,actor_loss_last,actor_margin,actor_loss_after,actor_margin_after,judge_loss_first,judge_loss_last,judge_margin,judge_loss_after,judge_margin_after,judge_outcome_spearman,mean_score,mean_answer_tokens,val_sharpe,val_return,val_mae_pct,val_unparsed_share,seconds\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for l in logs {
        let dpo = |d: &Option<DpoStats>| {
            [
                opt(d.map(|d| d.loss_first_epoch)),
                opt(d.map(|d| d.loss_last_epoch)),
                opt(d.map(|d| d.margin_last_epoch)),
                opt(d.map(|d| d.loss_after)),
                opt(d.map(|d| d.margin_after)),
            ]
            .join(",")
        };
        let validation = l.validation.as_ref();
        let unparsed_share = validation.and_then(|v| {
            v.parse_failures
                .map(|k| k as f64 / v.decisions.max(1) as f64)
        });
        let validation = [
            opt(validation.and_then(|v| v.metrics.sharpe)),
            opt(validation.map(|v| v.metrics.total_return)),
            opt(validation.and_then(|v| v.mae_pct)),
            opt(unparsed_share),
        ]
        .join(",");
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2}\n",
            l.round,
            l.contexts,
            l.actor_replies.clean,
            l.actor_replies.repaired,
            l.actor_replies.failed,
            l.judge_replies.failed,
            l.meta_judge_replies.failed,
            l.candidate_positions.long,
            l.candidate_positions.short,
            l.candidate_positions.flat,
            l.differing_pairs,
            l.actor_pairs,
            l.judge_pairs,
            dpo(&l.actor_dpo),
            dpo(&l.judge_dpo),
            opt(l.judge_outcome_spearman),
            opt(l.mean_score),
            format_args!("{:.2}", l.mean_answer_tokens),
            validation,
            l.seconds
        ));
    }
    out
}

/// The validation decision bars: the first `eval.validation_decisions` bars of `series`
/// from the end of its training period (`⌊len · train_share⌋`, and no earlier than the
/// context warm-up), each with a next bar. Training draws only bars whose next bar lies
/// before that end, so these are never trained on.
///
/// # Errors
/// [`Error::NoData`] when no such bar exists; context-builder errors.
pub fn validation_bars(series: &BarSeries, config: &TrainConfig) -> Result<Range<usize>> {
    let first = ContextBuilder::new(series, Vec::new(), config.context)?.first_bar();
    let n = series.len();
    let start = ((n as f64 * config.train_share).floor() as usize).max(first);
    let end = (start + config.eval.validation_decisions).min(n.saturating_sub(1));
    if start >= end {
        return Err(Error::NoData {
            reason: format!(
                "{n} bars leave no validation decision after the training period ({} of the series)",
                config.train_share
            ),
        });
    }
    Ok(start..end)
}

/// The actor (`model` with its current adapters merged) on the validation bars of
/// `series`, greedy under constrained decoding, booked at `eval.cost_rate`.
fn validate(
    model_path: &Path,
    model: &LoraLlama,
    series: &BarSeries,
    bars: &Range<usize>,
    config: &TrainConfig,
    name: &str,
) -> Result<EvalRow> {
    let mut backend = model.merged_backend(model_path, config.generation_weights)?;
    let decisions = actor_decisions(
        series,
        config.context,
        bars.clone(),
        &mut constrained_actor(&mut backend, config.rationale_tokens),
    )?;
    let row = actor_row(name, series, &decisions, config.eval.cost_rate);
    tracing::info!(
        name,
        sharpe = row.metrics.sharpe,
        total_return = row.metrics.total_return,
        mae_pct = row.mae_pct,
        unparsed = row.parse_failures,
        "validation"
    );
    Ok(row)
}

/// Runs the loop on `series` (their training periods) with the GGUF model at
/// `model_path`, writing to `out`: `config.toml`, `data.json`, `rounds.json`, `rounds.csv`
/// and one `round-NNNN/` per round (`actor.safetensors`, `judge.safetensors`,
/// `adapters.json`, `round.json`, `pairs.jsonl`). With `resume`, continues after the last
/// complete round (same config and data required, except that `rounds` may grow);
/// `on_round` sees each round's log.
///
/// # Errors
/// [`Error::OutputExists`] (rounds present without `resume`), [`Error::ConfigMismatch`],
/// [`Error::NoData`], model, I/O and candle errors.
pub fn train(
    model_path: &Path,
    series: &[BarSeries],
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    on_round: &mut dyn FnMut(&RoundLog),
) -> Result<Vec<RoundLog>> {
    config.validate()?;
    let data = TrainingData::new(series, config)?;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let config_text = config.to_toml()?;
    let data_text =
        serde_json::to_string_pretty(&data_fingerprint(series)).map_err(|e| Error::Config {
            path: out.join(DATA_FILE),
            reason: e.to_string(),
        })?;
    let done = complete_rounds(out);
    if done > 0 && !resume {
        return Err(Error::OutputExists {
            path: out.to_path_buf(),
            rounds: done,
        });
    }
    // A resumed run may ask for more rounds; everything else must be as saved.
    let same_run = |saved: &str, name: &str| -> bool {
        if name != CONFIG_FILE {
            return saved == data_text;
        }
        toml::from_str::<TrainConfig>(saved).is_ok_and(|saved| {
            TrainConfig {
                rounds: config.rounds,
                ..saved
            } == *config
        })
    };
    for (name, text) in [(CONFIG_FILE, &config_text), (DATA_FILE, &data_text)] {
        let path = out.join(name);
        if done > 0 {
            let saved = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            if !same_run(&saved, name) {
                return Err(Error::ConfigMismatch { path });
            }
        }
        write_atomic(&path, text.as_bytes())?;
    }
    let actor = LoraLlama::load(model_path, &role_lora(config, Role::Actor), DType::F32)?;
    // One copy of the frozen base weights for both roles.
    let judge = actor.with_new_adapters(&role_lora(config, Role::Judge))?;
    let mut logs: Vec<RoundLog> = Vec::new();
    if done > 0 {
        let last = round_dir(out, done);
        actor.load_adapters(&last.join(ACTOR_ADAPTERS))?;
        judge.load_adapters(&last.join(JUDGE_ADAPTERS))?;
        for k in 1..=done {
            let path = round_dir(out, k).join(ROUND_JSON);
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            logs.push(serde_json::from_str(&text).map_err(|e| Error::Config {
                path,
                reason: e.to_string(),
            })?);
        }
        tracing::info!(rounds = done, "resuming after the last complete round");
    }
    let model_name = model_path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let validation = match config.eval.validation_decisions {
        0 => None,
        _ => Some(validation_bars(&series[0], config)?),
    };
    if let (Some(bars), 0) = (&validation, done) {
        let row = validate(model_path, &actor, &series[0], bars, config, "round 0")?;
        let path = out.join(BASE_VALIDATION_JSON);
        let json = serde_json::to_vec_pretty(&row).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
    }
    for round in done + 1..=config.rounds {
        let start = Instant::now();
        let _span = tracing::info_span!("round", round).entered();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, &[round as u64, 0]));
        let examples = data
            .draw(config.contexts, &mut rng)
            .into_iter()
            .map(|k| data.example(k))
            .collect::<Result<Vec<_>>>()?;
        let mut log = RoundLog {
            round,
            contexts: examples.len(),
            actor_replies: ParseStats::default(),
            judge_replies: ParseStats::default(),
            meta_judge_replies: ParseStats::default(),
            candidate_positions: PositionCounts::default(),
            differing_pairs: 0,
            actor_pairs: 0,
            judge_pairs: 0,
            actor_dpo: None,
            judge_dpo: None,
            judge_outcome_spearman: None,
            mean_score: None,
            mean_answer_tokens: 0.0,
            validation: None,
            seconds: 0.0,
            phase_seconds: PhaseSeconds::default(),
        };
        let (pairs, candidate_logs) = collect_pairs(
            model_path, &actor, &judge, &examples, config, round, &mut log,
        )?;
        let (actor_pairs, judge_pairs): (Vec<_>, Vec<_>) =
            pairs.iter().cloned().partition(|p| p.role == Role::Actor);
        log.actor_pairs = actor_pairs.len();
        log.judge_pairs = judge_pairs.len();
        let role_dpo = |model: &LoraLlama, role_pairs: &[PreferencePair], tag: u64| {
            if role_pairs.is_empty() {
                return Ok(None);
            }
            let dpo_start = Instant::now();
            tracing::info!(pairs = role_pairs.len(), role = tag, "dpo");
            let stats = dpo_train(
                model,
                role_pairs,
                DpoRun {
                    beta: config.dpo.beta,
                    learning_rate: config.dpo.learning_rate,
                    weight_decay: config.dpo.weight_decay,
                    epochs: config.dpo.epochs,
                    seed: derive_seed(config.seed, &[round as u64, 5, tag]),
                },
            )?;
            Ok::<_, Error>(Some((stats, dpo_start.elapsed().as_secs_f64())))
        };
        // The two roles' DPO share nothing but the frozen base (their own adapters, pairs,
        // optimisers and seeds): they run side by side on the rayon threads, with the same
        // numbers as one after the other.
        let (actor_dpo, judge_dpo) = rayon::join(
            || role_dpo(&actor, &actor_pairs, 1),
            || role_dpo(&judge, &judge_pairs, 2),
        );
        if let Some((stats, seconds)) = actor_dpo? {
            log.actor_dpo = Some(stats);
            log.phase_seconds.dpo_actor = seconds;
        }
        if let Some((stats, seconds)) = judge_dpo? {
            log.judge_dpo = Some(stats);
            log.phase_seconds.dpo_judge = seconds;
        }
        if let Some(bars) = &validation {
            let validation_start = Instant::now();
            let name = format!("round {round}");
            log.validation = Some(validate(
                model_path, &actor, &series[0], bars, config, &name,
            )?);
            log.phase_seconds.validation = validation_start.elapsed().as_secs_f64();
        }
        log.seconds = start.elapsed().as_secs_f64();
        save_round(
            out,
            round,
            &actor,
            &judge,
            config,
            &model_name,
            &log,
            &pairs,
            &candidate_logs,
        )?;
        tracing::info!(
            round,
            actor_pairs = log.actor_pairs,
            judge_pairs = log.judge_pairs,
            actor_loss = log.actor_dpo.map(|d| d.loss_last_epoch),
            judge_loss = log.judge_dpo.map(|d| d.loss_last_epoch),
            spearman = log.judge_outcome_spearman,
            actor_failed = log.actor_replies.failed,
            judge_failed = log.judge_replies.failed,
            seconds = log.seconds,
            "round done"
        );
        on_round(&log);
        logs.push(log);
        let json = serde_json::to_vec_pretty(&logs).map_err(|e| Error::Config {
            path: out.join(ROUNDS_JSON),
            reason: e.to_string(),
        })?;
        write_atomic(&out.join(ROUNDS_JSON), &json)?;
        write_atomic(&out.join(ROUNDS_CSV), rounds_csv(&logs).as_bytes())?;
    }
    Ok(logs)
}

#[allow(clippy::too_many_arguments)]
fn save_round(
    out: &Path,
    round: usize,
    actor: &LoraLlama,
    judge: &LoraLlama,
    config: &TrainConfig,
    model_name: &str,
    log: &RoundLog,
    pairs: &[PreferencePair],
    candidates: &[CandidateLog],
) -> Result<()> {
    let tmp = out.join(format!(".round-{round:04}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    actor.save_adapters(&tmp.join(ACTOR_ADAPTERS))?;
    judge.save_adapters(&tmp.join(JUDGE_ADAPTERS))?;
    let info = AdapterInfo {
        round,
        model: model_name.to_string(),
        actor: role_lora(config, Role::Actor),
        judge: role_lora(config, Role::Judge),
        dtype: "f32".into(),
    };
    for (name, bytes) in [
        (ADAPTERS_JSON, serde_json::to_vec_pretty(&info)),
        (ROUND_JSON, serde_json::to_vec_pretty(log)),
    ] {
        let path = tmp.join(name);
        let bytes = bytes.map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, bytes).map_err(io_err(&path))?;
    }
    let mut lines = String::new();
    for p in pairs {
        let line = serde_json::json!({
            "role": p.role, "context": p.context, "chosen": p.chosen, "rejected": p.rejected,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    std::fs::write(tmp.join(PAIRS_JSONL), lines).map_err(io_err(&tmp))?;
    let mut lines = String::new();
    for c in candidates {
        let line = serde_json::to_string(c).map_err(|e| Error::Config {
            path: tmp.join(CANDIDATES_JSONL),
            reason: e.to_string(),
        })?;
        lines.push_str(&line);
        lines.push('\n');
    }
    std::fs::write(tmp.join(CANDIDATES_JSONL), lines).map_err(io_err(&tmp))?;
    let dir = round_dir(out, round);
    std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
    Ok(())
}

/// Loads saved adapters into a model of the base file: the actor's or the judge's of a
/// round directory written by [`train`].
///
/// # Errors
/// [`Error::Io`] / [`Error::Config`] for a missing or bad `adapters.json`, model errors.
pub fn load_round_adapters(model_path: &Path, round_dir: &Path, role: Role) -> Result<LoraLlama> {
    let info_path = round_dir.join(ADAPTERS_JSON);
    let text = std::fs::read_to_string(&info_path).map_err(io_err(&info_path))?;
    let info: AdapterInfo = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: info_path.clone(),
        reason: e.to_string(),
    })?;
    let (lora, file) = match role {
        Role::Judge | Role::MetaJudge => (info.judge, JUDGE_ADAPTERS),
        Role::Actor => (info.actor, ACTOR_ADAPTERS),
    };
    let model = LoraLlama::load(model_path, &lora, DType::F32)?;
    model.load_adapters(&round_dir.join(file))?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_term_scores_the_side_that_made_money() {
        assert_eq!(outcome_score(0.5, 0.3), 10.0);
        assert_eq!(outcome_score(-1.0, -0.2), 10.0);
        assert_eq!(outcome_score(1.0, -0.2), 0.0);
        assert_eq!(outcome_score(-0.3, 0.4), 0.0);
        assert_eq!(outcome_score(0.0, 0.4), 5.0);
        assert_eq!(outcome_score(-0.0, -0.4), 5.0);
        assert_eq!(outcome_score(1.0, 0.0), 5.0);
    }

    /// DPO on one fixed pair of the tiny random model for `epochs` steps.
    fn dpo_steps(model_path: &Path, epochs: usize) -> DpoStats {
        let lora = LoraConfig {
            seed: 7,
            ..LoraConfig::default()
        };
        let model = LoraLlama::load(model_path, &lora, DType::F32).unwrap();
        let pair = PreferencePair {
            role: Role::Actor,
            context: 0,
            prompt_ids: (40..52).collect(),
            chosen_ids: vec![70, 71, 72, 73, 2],
            rejected_ids: vec![90, 91, 92, 2],
            chosen: String::new(),
            rejected: String::new(),
        };
        let run = DpoRun {
            beta: 0.1,
            learning_rate: 5e-4,
            weight_decay: 0.0,
            epochs,
            seed: 0,
        };
        let before: Vec<Vec<f32>> = model
            .adapters()
            .iter()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let stats = dpo_train(&model, &[pair], run).unwrap();
        // Every adapter matrix moved: A (through B ≠ 0 after the first step) and B.
        for (v, b) in model.adapters().iter().zip(&before) {
            let after: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert!(after.iter().zip(b).any(|(x, y)| x != y));
        }
        stats
    }

    #[test]
    fn dpo_steps_raise_the_margin_of_the_pair() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::tiny::write_tiny_model(&path, 5).unwrap();
        let ln2 = std::f64::consts::LN_2;
        let mut last_margin = 0.0;
        for epochs in [2, 4, 8] {
            let stats = dpo_steps(&path, epochs);
            assert_eq!(stats.steps, epochs);
            // The first step is at the reference: loss ln 2, margin 0.
            assert!((stats.loss_first_epoch - ln2).abs() < 1e-6, "{stats:?}");
            // Afterwards the chosen answer's log-ratio is above the rejected one's, and
            // more so after more steps; the loss falls below ln 2 accordingly.
            assert!(stats.margin_after > last_margin, "{epochs}: {stats:?}");
            assert!(stats.loss_after < ln2, "{stats:?}");
            let want = (1.0 + (-stats.margin_after).exp()).ln();
            assert!((stats.loss_after - want).abs() < 1e-5, "{stats:?}");
            last_margin = stats.margin_after;
        }
    }

    #[test]
    fn pairs_prefer_the_shortest_near_best_and_reject_the_worst() {
        let s = |v: &[f64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        // best 8, worst 2, tier 8 − 0.5·6 = 5: candidates 0 (8, 40 tokens) and 2 (6, 20).
        assert_eq!(
            select_pair(&s(&[8.0, 2.0, 6.0, 4.0]), &[40, 10, 20, 5], 0.5),
            Some((2, 1))
        );
        // No length tie: the best.
        assert_eq!(
            select_pair(&s(&[8.0, 2.0, 6.0, 4.0]), &[40, 10, 20, 5], 0.0),
            Some((0, 1))
        );
        // An unparsed answer (−1) loses to any judged one; unscored ones are left out.
        assert_eq!(
            select_pair(&[Some(-1.0), None, Some(0.0)], &[1, 1, 1], 0.1),
            Some((2, 0))
        );
        assert_eq!(select_pair(&s(&[5.0, 5.0]), &[1, 2], 0.1), None);
        assert_eq!(select_pair(&[Some(5.0), None], &[1, 2], 0.1), None);
        // A full tie still never chooses the rejected answer.
        assert_eq!(select_pair(&s(&[1.0, 3.0]), &[1, 9], 1.0), Some((1, 0)));
    }

    #[test]
    fn spearman_of_known_rankings() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // Ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4): cov 4.5, var 4.5 and 5.
        let rho = spearman(&[1.0, 5.0, 5.0, 9.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((rho - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-12, "{rho}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn derived_seeds_differ_by_path_and_repeat() {
        assert_eq!(derive_seed(7, &[1, 2]), derive_seed(7, &[1, 2]));
        assert_ne!(derive_seed(7, &[1, 2]), derive_seed(7, &[2, 1]));
        assert_ne!(derive_seed(7, &[1]), derive_seed(8, &[1]));
    }

    #[test]
    fn the_judge_sees_a_canonical_answer() {
        let p = Prediction {
            return_pct: 0.123_456,
            direction: Direction::Down,
            position: -0.5,
            confidence: 0.333,
            rationale: "x".repeat(300),
        };
        let shown = canonical_prediction(&p);
        let value: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(value["return_pct"], 0.12);
        assert_eq!(value["direction"], "down");
        assert_eq!(value["position"], -0.5);
        assert_eq!(value["confidence"], 0.33);
        assert_eq!(
            value["rationale"].as_str().unwrap().len(),
            SHOWN_RATIONALE_CHARS
        );
    }
}
