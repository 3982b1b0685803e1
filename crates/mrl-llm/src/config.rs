//! Settings of the self-improvement loop ([`TrainConfig`]) and of its evaluation
//! ([`EvalConfig`]), read from one TOML file (`configs/llm-*.toml`).

use std::path::Path;

use mrl_data::{BarSeries, ProcessKind, SyntheticConfig};
use serde::{Deserialize, Serialize};

use crate::backend::Sampling;
use crate::context::ContextConfig;
use crate::embedded::Weights;
use crate::error::{Error, Result};
use crate::lora::LoraConfig;

/// The synthetic markets the loop trains on when no data file is given, so that a fresh
/// clone runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// The law of the returns and the bar style.
    pub synthetic: SyntheticConfig,
    /// Markets drawn (seeds `seed`, `seed + 1`, …).
    pub n_markets: usize,
    /// Bars per market.
    pub n_bars: usize,
    /// Seed of the first market.
    pub seed: u64,
}

impl Default for MarketConfig {
    /// Two AR(1) markets of 400 hourly bars with mild momentum (mrl-data's defaults).
    fn default() -> Self {
        Self {
            synthetic: SyntheticConfig::new(ProcessKind::Ar1.default_process()),
            n_markets: 2,
            n_bars: 400,
            seed: 1,
        }
    }
}

impl MarketConfig {
    /// The markets, each named `synthetic-{seed}`, starting at seed `seed`.
    ///
    /// # Errors
    /// mrl-data's errors for invalid process parameters.
    pub fn generate(&self, seed: u64) -> Result<Vec<BarSeries>> {
        (0..self.n_markets as u64)
            .map(|k| {
                Ok(self
                    .synthetic
                    .generate(self.n_bars, seed + k)?
                    .series
                    .with_symbol(format!("synthetic-{}", seed + k)))
            })
            .collect()
    }
}

/// DPO settings (Rafailov et al. 2023) of one round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// β, the strength of the KL anchor to the reference model.
    pub beta: f64,
    /// AdamW learning rate of the adapters.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Passes over the round's pairs (one optimiser step per pair).
    pub epochs: usize,
}

impl Default for DpoConfig {
    /// β = 0.1 (the DPO paper's common value), learning rate 5·10⁻⁴ (LoRA's usual range),
    /// no weight decay, 2 epochs.
    fn default() -> Self {
        Self {
            beta: 0.1,
            learning_rate: 5e-4,
            weight_decay: 0.0,
            epochs: 2,
        }
    }
}

/// Settings of `mrl llm eval`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Seed of the held-out synthetic market (never one of the training seeds).
    pub market_seed: u64,
    /// Share of a series held out at its end; decisions start at its first bar.
    pub test_share: f64,
    /// Decisions (consecutive bars from the start of the test period; fewer when the
    /// period is shorter).
    pub decisions: usize,
    /// Proportional cost per unit of position traded (mrl-backtest's default, 10 bps).
    pub cost_rate: f64,
    /// Decisions of the validation evaluation of `mrl llm train` before the first round and
    /// after every round (0: none): the actor, greedy and constrained, on the first
    /// series' bars right after its training period (never drawn for training), booked at
    /// `cost_rate` as in `mrl llm eval`.
    pub validation_decisions: usize,
}

impl Default for EvalConfig {
    /// Seed 1000, the last 30 % held out, 24 decisions, 10 bps, no validation.
    fn default() -> Self {
        Self {
            market_seed: 1000,
            test_share: 0.3,
            decisions: 24,
            cost_rate: 0.001,
            validation_decisions: 0,
        }
    }
}

/// Which actor preference pairs DPO trains on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairFilter {
    /// Every pair [`select_pair`](crate::select_pair) finds (Meta-Rewarding's rule).
    #[default]
    Any,
    /// Only pairs whose chosen and rejected positions differ in sign (long, short, flat):
    /// pairs of two longs that differ only in their wording or numbers teach the trade
    /// nothing, so DPO's few steps go to the decision itself.
    DifferingPositions,
}

/// Everything `mrl llm train` needs; saved beside the adapters and checked on resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of every draw (contexts, sampling, pair order, adapter initialisation).
    pub seed: u64,
    /// Rounds of the loop.
    pub rounds: usize,
    /// Training contexts per round (drawn anew each round from the training periods).
    pub contexts: usize,
    /// Actor candidates per context.
    pub candidates: usize,
    /// Judge samples per candidate (two or more give the meta-judge something to compare).
    pub judgments: usize,
    /// Token budget of a rationale (every role).
    pub rationale_tokens: usize,
    /// Share of each series at its start that is the training period.
    pub train_share: f64,
    /// How the roles sample.
    pub sampling: Sampling,
    /// Length control: candidates whose score is within `length_tie · (best − worst)` of
    /// the best tie, and the shortest of them is the chosen answer (Meta-Rewarding, §2.3).
    pub length_tie: f64,
    /// Which actor pairs are trained on.
    pub actor_pairs: PairFilter,
    /// Weight in [0, 1] of the computed outcome ([`outcome_score`](crate::outcome_score):
    /// 10 if the position made money over the next bar, 0 if it lost, 5 if flat) in a
    /// candidate's score, against the judge's mean score: 0 is the judge alone
    /// (Meta-Rewarding); SmolLM2-135M as judge scored the training answers unrelated to
    /// their outcome (judge–outcome Spearman −0.05 with the outcome in its prompt), so the
    /// shipped configs blend it in.
    pub outcome_weight: f64,
    /// Weights of the generation backends (the merged adapters are f32 in both).
    pub generation_weights: Weights,
    /// Market context settings.
    pub context: ContextConfig,
    /// Adapter settings (the seed of each role's `A` matrices is derived from `seed`).
    pub lora: LoraConfig,
    /// DPO settings.
    pub dpo: DpoConfig,
    /// Synthetic markets (when no data is given).
    pub market: MarketConfig,
    /// Evaluation settings.
    pub eval: EvalConfig,
}

impl Default for TrainConfig {
    /// The quick setting: 2 rounds of 4 contexts, 2 candidates, 2 judgments, 16-token
    /// rationales, temperature 0.8 / top-p 0.95, length tie 0.1, every actor pair, the
    /// judge's score alone.
    fn default() -> Self {
        Self {
            seed: 0,
            rounds: 2,
            contexts: 4,
            candidates: 2,
            judgments: 2,
            rationale_tokens: 16,
            train_share: 0.7,
            sampling: Sampling::TopP {
                temperature: 0.8,
                top_p: 0.95,
            },
            length_tie: 0.1,
            actor_pairs: PairFilter::Any,
            outcome_weight: 0.0,
            generation_weights: Weights::DequantizedF32,
            context: ContextConfig::default(),
            lora: LoraConfig::default(),
            dpo: DpoConfig::default(),
            market: MarketConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file and checks it.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Config`] naming the file and the problem.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML (what is saved beside the adapters).
    ///
    /// # Errors
    /// [`Error::Config`] if serialisation fails.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config {
            path: "config.toml".into(),
            reason: e.to_string(),
        })
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let at_least = |field: &'static str, value: usize, min: usize| {
            if value < min {
                Err(Error::setting(
                    field,
                    value,
                    if min == 1 { "at least 1" } else { "at least 2" },
                ))
            } else {
                Ok(())
            }
        };
        at_least("rounds", self.rounds, 1)?;
        at_least("contexts", self.contexts, 1)?;
        at_least("candidates", self.candidates, 2)?;
        at_least("judgments", self.judgments, 1)?;
        at_least("rationale_tokens", self.rationale_tokens, 1)?;
        at_least("dpo.epochs", self.dpo.epochs, 1)?;
        at_least("market.n_markets", self.market.n_markets, 1)?;
        at_least("eval.decisions", self.eval.decisions, 1)?;
        at_least("lora.rank", self.lora.rank, 1)?;
        // The synthetic markets' process and bar style, checked at load (the error then
        // names the config file) rather than when the first market is generated.
        self.market.synthetic.process.validate()?;
        self.market.synthetic.bars.validate()?;
        if !(self.train_share > 0.0 && self.train_share < 1.0) {
            return Err(Error::setting(
                "train_share",
                self.train_share,
                "a number in (0, 1)",
            ));
        }
        if !(self.eval.test_share > 0.0 && self.eval.test_share < 1.0) {
            return Err(Error::setting(
                "eval.test_share",
                self.eval.test_share,
                "a number in (0, 1)",
            ));
        }
        if !(self.length_tie.is_finite() && (0.0..=1.0).contains(&self.length_tie)) {
            return Err(Error::setting(
                "length_tie",
                self.length_tie,
                "a number in [0, 1]",
            ));
        }
        if !(self.outcome_weight.is_finite() && (0.0..=1.0).contains(&self.outcome_weight)) {
            return Err(Error::setting(
                "outcome_weight",
                self.outcome_weight,
                "a number in [0, 1]",
            ));
        }
        if !(self.dpo.learning_rate.is_finite() && self.dpo.learning_rate > 0.0) {
            return Err(Error::setting(
                "dpo.learning_rate",
                self.dpo.learning_rate,
                "a finite number > 0",
            ));
        }
        if !(self.dpo.beta.is_finite() && self.dpo.beta > 0.0) {
            return Err(Error::setting(
                "dpo.beta",
                self.dpo.beta,
                "a finite number > 0",
            ));
        }
        if !(self.eval.cost_rate.is_finite() && (0.0..1.0).contains(&self.eval.cost_rate)) {
            return Err(Error::setting(
                "eval.cost_rate",
                self.eval.cost_rate,
                "a number in [0, 1)",
            ));
        }
        if self.eval.market_seed >= self.market.seed
            && self.eval.market_seed < self.market.seed + self.market.n_markets as u64
        {
            return Err(Error::setting(
                "eval.market_seed",
                self.eval.market_seed,
                "a seed outside the training markets' seeds",
            ));
        }
        crate::backend::GenerateConfig {
            max_new_tokens: 1,
            sampling: self.sampling,
            seed: 0,
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml_and_ranges_are_checked() {
        let config = TrainConfig::default();
        let text = config.to_toml().unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        assert!(config.validate().is_ok());
        let one_candidate = TrainConfig {
            candidates: 1,
            ..TrainConfig::default()
        };
        assert!(matches!(
            one_candidate.validate(),
            Err(Error::InvalidSetting {
                field: "candidates",
                ..
            })
        ));
        let heavy = TrainConfig {
            outcome_weight: 1.5,
            ..TrainConfig::default()
        };
        assert!(matches!(
            heavy.validate(),
            Err(Error::InvalidSetting {
                field: "outcome_weight",
                ..
            })
        ));
        let leaky = TrainConfig {
            eval: EvalConfig {
                market_seed: 2,
                ..EvalConfig::default()
            },
            ..TrainConfig::default()
        };
        assert!(matches!(
            leaky.validate(),
            Err(Error::InvalidSetting {
                field: "eval.market_seed",
                ..
            })
        ));
    }
}
