//! [`Verdict`]: does each learned agent beat the best fixed baseline? A learned agent that
//! cannot beat buy-and-hold and the classic trader rules is not worth deploying, and the
//! tables say so ([`BacktestReport::verdict`], [`MarketsSummary::verdict`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{BacktestReport, MarketsSummary, POLICY_ORDER, SharpeDiffCi};

/// The fixed baselines an agent is judged against, in order of precedence on equal Sharpe:
/// [`POLICY_ORDER`] after the agents and the oracle (buy-and-hold, flat, random and the
/// trader rules). The oracle is left out (it knows the market's true parameters), and so is
/// the MLP (a learned agent itself).
pub const FIXED_BASELINES: &[&str] = POLICY_ORDER.as_slice().split_at(3).1;

/// The learned agents that are judged.
const AGENTS: [&str; 2] = ["rl2", "mlp"];

/// How an agent's Sharpe ratio compares with the best fixed baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Higher Sharpe, and the whole bootstrap interval of the difference is above 0.
    Beats,
    /// Higher Sharpe, but the interval reaches 0 (or there is no interval): not shown to
    /// beat it.
    Inconclusive,
    /// Sharpe at or below the best baseline's, or undefined (an agent that never trades).
    DoesNotBeat,
}

/// One agent against the best fixed baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVerdict {
    /// The agent's report key (`rl2`, `mlp`).
    pub agent: String,
    /// The agent's annualised Sharpe ratio; `None` when undefined.
    pub sharpe: Option<f64>,
    /// `sharpe(agent) − sharpe(best baseline)`, the difference of the reported Sharpe ratios
    /// (with sampled actions each the mean over the policy's seeds); `None` when the agent's
    /// is undefined.
    pub sharpe_diff: Option<f64>,
    /// Bootstrap interval of that same difference (its point is `sharpe_diff`: the backtest
    /// builds both from one estimator,
    /// [`bootstrap_mean_sharpe_diff_ci`](crate::bootstrap_mean_sharpe_diff_ci)); the
    /// backtest bootstraps `rl2` against every policy, so only `rl2` on a single series has
    /// one.
    pub ci: Option<SharpeDiffCi>,
    /// The comparison.
    pub standing: Standing,
}

/// The best fixed baseline by Sharpe ratio ([`FIXED_BASELINES`] whose Sharpe ratio is
/// defined) and how every learned agent compares with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Report key of the best fixed baseline.
    pub best_baseline: String,
    /// Its annualised Sharpe ratio.
    pub best_sharpe: f64,
    /// One entry per learned agent present (`rl2`, then `mlp`).
    pub agents: Vec<AgentVerdict>,
}

impl Verdict {
    /// The verdict over `(name, sharpe, interval of sharpe(rl2) − sharpe(name))` entries;
    /// `None` when no fixed baseline among them has a defined Sharpe ratio. Of equal
    /// Sharpe ratios the baseline listed first in [`FIXED_BASELINES`] is the best.
    fn of(entries: &[(&str, Option<f64>, Option<SharpeDiffCi>)]) -> Option<Self> {
        let find = |name: &str| entries.iter().find(|(n, ..)| *n == name);
        let mut best: Option<(&str, f64, Option<SharpeDiffCi>)> = None;
        for &(name, sharpe, ci) in FIXED_BASELINES.iter().filter_map(|name| find(name)) {
            let Some(sharpe) = sharpe.filter(|s| s.is_finite()) else {
                continue;
            };
            if best.is_none_or(|(_, s, _)| sharpe > s) {
                best = Some((name, sharpe, ci));
            }
        }
        let (best, best_sharpe, best_ci) = best?;
        let agents = AGENTS
            .iter()
            .filter_map(|name| find(name))
            .map(|&(agent, sharpe, _)| {
                let sharpe_diff = sharpe.map(|s| s - best_sharpe);
                let ci = if agent == "rl2" { best_ci } else { None };
                let standing = match sharpe_diff {
                    Some(d) if d > 0.0 && ci.is_some_and(|c| c.lo > 0.0) => Standing::Beats,
                    Some(d) if d > 0.0 => Standing::Inconclusive,
                    _ => Standing::DoesNotBeat,
                };
                AgentVerdict {
                    agent: agent.to_string(),
                    sharpe,
                    sharpe_diff,
                    ci,
                    standing,
                }
            })
            .collect();
        Some(Self {
            best_baseline: best.to_string(),
            best_sharpe,
            agents,
        })
    }
}

impl fmt::Display for Verdict {
    /// `best fixed baseline by Sharpe: <name> (<sharpe>)`, then one line per agent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "best fixed baseline by Sharpe: {} ({:.2})",
            self.best_baseline, self.best_sharpe
        )?;
        for a in &self.agents {
            let ci = a.ci.map_or_else(
                || "no interval".to_string(),
                |c| {
                    format!(
                        "{:.0}% CI [{:+.2}, {:+.2}]",
                        100.0 * c.confidence,
                        c.lo,
                        c.hi
                    )
                },
            );
            let judgement = match a.standing {
                Standing::Beats => "beats it",
                Standing::Inconclusive => "higher, but not shown to beat it",
                Standing::DoesNotBeat => "does NOT beat it: not worth deploying",
            };
            let (sharpe, diff) = match (a.sharpe, a.sharpe_diff) {
                (Some(s), Some(d)) => (format!("{s:.2}"), format!("{d:+.2}")),
                _ => ("undefined".to_string(), "-".to_string()),
            };
            writeln!(
                f,
                "{}: Sharpe {sharpe}, {diff} vs {} ({ci}): {judgement}",
                a.agent, self.best_baseline
            )?;
        }
        Ok(())
    }
}

impl BacktestReport {
    /// The best fixed baseline by Sharpe and whether `rl2` (with the bootstrap interval of
    /// the difference) and `mlp` beat it; `None` when the report has no fixed baseline.
    pub fn verdict(&self) -> Option<Verdict> {
        let entries: Vec<_> = self
            .policies
            .iter()
            .map(|(name, p)| (name.as_str(), defined(p.metrics.sharpe), p.sharpe_diff_ci))
            .collect();
        Verdict::of(&entries)
    }
}

/// A Sharpe ratio as `Some` value when defined: the figure itself where it is an
/// `Option<f64>`, `Some` where it is a plain `f64`.
fn defined(sharpe: impl Into<Option<f64>>) -> Option<f64> {
    sharpe.into()
}

/// The verdicts of a multi-market evaluation, one per series (a mean of Sharpe ratios
/// over different markets, each defined on a different subset, would not be a fair
/// comparison, so there is no verdict on the means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketsVerdict {
    /// One verdict per evaluated series (its name and verdict), in row order.
    pub series: Vec<(String, Verdict)>,
}

impl MarketsSummary {
    /// Per series, the best fixed baseline by Sharpe and whether each agent beats it (with
    /// rl2's bootstrap interval).
    pub fn verdict(&self) -> MarketsVerdict {
        MarketsVerdict {
            series: self
                .rows
                .iter()
                .filter_map(|row| {
                    let entries: Vec<_> = row
                        .policies
                        .iter()
                        .map(|(name, f)| (name.as_str(), defined(f.sharpe), f.sharpe_diff_ci))
                        .collect();
                    Some((row.name.clone(), Verdict::of(&entries)?))
                })
                .collect(),
        }
    }
}

impl fmt::Display for MarketsVerdict {
    /// Per agent, on how many series it beats the best fixed baseline of the series; then
    /// one line per series: the best baseline and each agent's difference and standing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.series.len();
        for agent in AGENTS {
            let standings: Vec<Standing> = self
                .series
                .iter()
                .filter_map(|(_, v)| v.agents.iter().find(|a| a.agent == agent))
                .map(|a| a.standing)
                .collect();
            if standings.is_empty() {
                continue;
            }
            let count = |s: Standing| standings.iter().filter(|&&x| x == s).count();
            writeln!(
                f,
                "{agent} against each series' best fixed baseline by Sharpe: beats it on {} of \
                 {n}, higher but not shown to beat it on {}, does not beat it on {}",
                count(Standing::Beats),
                count(Standing::Inconclusive),
                count(Standing::DoesNotBeat),
            )?;
        }
        for (name, v) in &self.series {
            write!(
                f,
                "  {name}: best {} ({:.2})",
                v.best_baseline, v.best_sharpe
            )?;
            for a in &v.agents {
                let diff = a
                    .sharpe_diff
                    .map_or("-".to_string(), |d| format!("{d:+.2}"));
                write!(f, "; {} {diff} {}", a.agent, a.standing.label())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl Standing {
    /// `beats`, `not shown to beat` or `does not beat`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Beats => "beats",
            Self::Inconclusive => "not shown to beat",
            Self::DoesNotBeat => "does not beat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(lo: f64, hi: f64) -> Option<SharpeDiffCi> {
        let json = serde_json::json!({
            "point": (lo + hi) / 2.0,
            "lo": lo,
            "hi": hi,
            "confidence": 0.95,
            "resamples": 1000,
            "dropped": 0,
        });
        Some(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn fixed_baselines_are_the_baselines_and_rules() {
        for learned_or_oracle in ["rl2", "mlp", "oracle"] {
            assert!(!FIXED_BASELINES.contains(&learned_or_oracle));
        }
        let rules = crate::TraderRule::standard(None).map(|r| r.name());
        assert_eq!(FIXED_BASELINES[..3], ["buy_and_hold", "flat", "random"]);
        assert_eq!(FIXED_BASELINES[3..], rules);
    }

    #[test]
    fn best_baseline_and_standings() {
        let entries = [
            ("rl2", Some(1.5), None),
            ("mlp", Some(0.2), None),
            ("oracle", Some(3.0), ci(-2.0, -1.0)),
            ("buy_and_hold", Some(0.4), ci(0.5, 1.6)),
            ("macd", Some(0.9), ci(-0.1, 1.3)),
            ("flat", None, None),
        ];
        let v = Verdict::of(&entries).unwrap();
        assert_eq!((v.best_baseline.as_str(), v.best_sharpe), ("macd", 0.9));
        assert_eq!(v.agents.len(), 2);
        let (rl2, mlp) = (&v.agents[0], &v.agents[1]);
        assert_eq!(rl2.agent, "rl2");
        assert!((rl2.sharpe_diff.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(rl2.ci, ci(-0.1, 1.3));
        assert_eq!(rl2.standing, Standing::Inconclusive);
        assert_eq!(mlp.standing, Standing::DoesNotBeat);
        assert_eq!(mlp.ci, None);
        let text = v.to_string();
        assert!(
            text.starts_with("best fixed baseline by Sharpe: macd (0.90)\n"),
            "{text}"
        );
        assert!(
            text.contains("rl2: Sharpe 1.50, +0.60 vs macd (95% CI [-0.10, +1.30]): higher"),
            "{text}"
        );
        assert!(text.contains("mlp: Sharpe 0.20, -0.70 vs macd (no interval): does NOT beat"));

        let beaten = [
            ("rl2", Some(1.5), None),
            ("buy_and_hold", Some(0.4), ci(0.5, 1.6)),
        ];
        assert_eq!(
            Verdict::of(&beaten).unwrap().agents[0].standing,
            Standing::Beats
        );
        // An agent that never trades (undefined Sharpe) beats nothing.
        let idle = [("rl2", None, None), ("random", Some(-0.3), None)];
        let v = Verdict::of(&idle).unwrap();
        assert_eq!(v.agents[0].standing, Standing::DoesNotBeat);
        assert!(v.to_string().contains("rl2: Sharpe undefined, - vs random"));
        // Equal Sharpe: the earlier baseline wins, and the agent does not beat it.
        let tied = [
            ("rl2", Some(0.5), None),
            ("random", Some(0.5), None),
            ("macd", Some(0.5), None),
        ];
        let v = Verdict::of(&tied).unwrap();
        assert_eq!(v.best_baseline, "random");
        assert_eq!(v.agents[0].standing, Standing::DoesNotBeat);
        // No baseline with a defined Sharpe ratio: no verdict.
        assert_eq!(
            Verdict::of(&[("rl2", Some(1.0), None), ("flat", None, None)]),
            None
        );
    }
}
