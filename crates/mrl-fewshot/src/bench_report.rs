//! [`FewshotReport`]: the pooled table of the few-shot benchmark (means with intervals over
//! seeds × tasks, steps to reach a target Sharpe) as JSON, Markdown and CSV.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::benchmark::{BENCHMARK_FORMAT, BenchmarkRaw, BenchmarkSettings, MethodRaw, RowKind};

/// Reads one metric of a cell.
type MetricOf = fn(&CellSummary) -> Option<Interval>;

/// A mean and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Mean of the defined values.
    pub mean: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// One (method, K) pooled over seeds × tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    /// Adaptation steps.
    pub k: usize,
    /// Annualised Sharpe.
    pub sharpe: Option<Interval>,
    /// Total return (fraction).
    pub total_return: Option<Interval>,
    /// Maximum drawdown (fraction).
    pub max_drawdown: Option<Interval>,
    /// (seed, task) pairs with a defined Sharpe.
    pub sharpe_defined: usize,
    /// All (seed, task) pairs.
    pub pairs: usize,
}

/// One method's pooled curve over K.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method or baseline.
    pub name: String,
    /// Its kind.
    pub kind: RowKind,
    /// One entry per K (one `K = 0` entry without gradient steps).
    pub curve: Vec<CellSummary>,
    /// The fewest K of the grid whose mean Sharpe reaches [`Reach::target_sharpe`]; `None`
    /// when none does or no target is defined. Agents only.
    pub steps_to_reach: Option<usize>,
}

/// The target of [`steps_to_reach`]: a share of the best agent's final mean Sharpe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// The share asked for.
    pub fraction: f64,
    /// The agent (adapted or zero-step) with the best mean Sharpe at its largest K.
    pub reference: Option<String>,
    /// Its mean Sharpe there.
    pub reference_sharpe: Option<f64>,
    /// `fraction × reference_sharpe` when that is positive; `None` otherwise (no agent
    /// earned a positive Sharpe, so "reaching a share of it" means nothing).
    pub target_sharpe: Option<f64>,
}

/// The benchmark report (`fewshot.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FewshotReport {
    /// Always [`BENCHMARK_FORMAT`].
    pub format: String,
    /// Settings and budgets.
    pub settings: BenchmarkSettings,
    /// How the intervals were computed.
    pub interval: String,
    /// Held-out task names.
    pub tasks: Vec<String>,
    /// Pooled curves: agents first, then baselines.
    pub methods: Vec<MethodSummary>,
    /// The steps-to-reach target.
    pub reach: Reach,
    /// The raw (seed × task) values behind every entry.
    pub raw: Vec<MethodRaw>,
    /// Each online row's paired Sharpe difference against its offline row
    /// (`meta_online − meta`, …) at every K, pooled like the cells.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub online_gain: Vec<OnlineGain>,
}

/// An online row's paired Sharpe difference against the row it continues, per K.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineGain {
    /// The online row (`meta_online`, `pretrain_online`).
    pub online: String,
    /// The offline row (`meta`, `pretrain`).
    pub offline: String,
    /// `(K, mean and interval of online − offline over the (seed, task) pairs where both
    /// are defined)`.
    pub sharpe: Vec<(usize, Option<Interval>)>,
}

/// The fewest steps `k` of `curve` (ascending in `k`) whose value is at least `target`;
/// `None` when no defined value reaches it.
pub fn steps_to_reach(curve: &[(usize, Option<f64>)], target: f64) -> Option<usize> {
    curve
        .iter()
        .find(|(_, v)| v.is_some_and(|v| v >= target))
        .map(|&(k, _)| k)
}

impl FewshotReport {
    /// Pools `raw`: every (method, K) cell's Sharpe, total return and max drawdown through
    /// `interval` (given `values[seed][task]`, `None` undefined; the CLI passes the two-way
    /// seed × task bootstrap of `mrl::study`), described by `interval_text`; then the
    /// steps each agent needs to reach `fraction` of the best agent's final Sharpe.
    pub fn new(
        raw: BenchmarkRaw,
        interval_text: &str,
        mut interval: impl FnMut(&[Vec<Option<f64>>]) -> Option<Interval>,
    ) -> Self {
        let methods: Vec<MethodSummary> = raw
            .rows
            .iter()
            .map(|row| MethodSummary {
                name: row.name.clone(),
                kind: row.kind,
                curve: row
                    .cells
                    .iter()
                    .map(|cell| CellSummary {
                        k: cell.k,
                        sharpe: interval(&cell.sharpe),
                        total_return: interval(&cell.total_return),
                        max_drawdown: interval(&cell.max_drawdown),
                        sharpe_defined: cell.sharpe.iter().flatten().flatten().count(),
                        pairs: cell.sharpe.iter().map(Vec::len).sum(),
                    })
                    .collect(),
                steps_to_reach: None,
            })
            .collect();
        let online_gain = online_gains(&raw.rows, &mut interval);
        let fraction = raw.settings.benchmark.target_fraction;
        let mut report = Self {
            format: BENCHMARK_FORMAT.to_owned(),
            settings: raw.settings,
            interval: interval_text.to_owned(),
            tasks: raw.tasks,
            methods,
            reach: Reach {
                fraction,
                reference: None,
                reference_sharpe: None,
                target_sharpe: None,
            },
            raw: raw.rows,
            online_gain,
        };
        report.fill_reach();
        report
    }

    /// Sets [`Reach`] and every agent's steps to reach it.
    fn fill_reach(&mut self) {
        let is_agent = |m: &MethodSummary| m.kind != RowKind::Baseline;
        let best = self
            .methods
            .iter()
            .filter(|m| is_agent(m))
            .filter_map(|m| Some((m.name.clone(), m.curve.last()?.sharpe?.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((name, sharpe)) = best else { return };
        self.reach.reference = Some(name);
        self.reach.reference_sharpe = Some(sharpe);
        if sharpe <= 0.0 {
            return;
        }
        let target = self.reach.fraction * sharpe;
        self.reach.target_sharpe = Some(target);
        for m in self.methods.iter_mut().filter(|m| is_agent(m)) {
            let curve: Vec<(usize, Option<f64>)> = m
                .curve
                .iter()
                .map(|c| (c.k, c.sharpe.map(|s| s.mean)))
                .collect();
            m.steps_to_reach = steps_to_reach(&curve, target);
        }
    }

    /// The K grid of the adapted methods.
    pub fn ks(&self) -> Vec<usize> {
        self.settings.benchmark.ks.clone()
    }

    /// The row label of a method: the meta-learner's name for `meta`, `(K = 0)` for the
    /// zero-step agent.
    pub fn label(&self, m: &MethodSummary) -> String {
        match (m.name.as_str(), m.kind) {
            ("meta", _) => format!("meta ({})", self.settings.algorithm.as_str()),
            ("meta_embed", _) => format!(
                "meta ({}) + class embeddings",
                self.settings.algorithm.as_str()
            ),
            ("pretrain", _) => "pretrain + fine-tune".into(),
            ("meta_online", _) => format!("meta ({}) + online", self.settings.algorithm.as_str()),
            ("pretrain_online", _) => "pretrain + fine-tune + online".into(),
            (name, RowKind::ZeroStep) => format!("{name} (0 steps)"),
            (name, _) => name.to_owned(),
        }
    }

    /// Markdown: one table per metric (methods × K, `mean [lo, hi]`), the steps to reach
    /// the target, and the settings.
    pub fn to_markdown(&self) -> String {
        let s = &self.settings;
        let b = &s.benchmark;
        let mut out = String::from("# Few-shot benchmark\n\n");
        let _ = writeln!(
            out,
            "{} · seeds {:?} · {} agent, hidden {} · inner loop: {} {:?} steps of {} trials \
             ({} env-steps each), lr {} · meta: {} · rl2: {} · pretrain: {} PPO iterations \
             ({} env-steps, as meta-training) · {}\n",
            s.held_out,
            b.seeds,
            s.agent.as_str(),
            s.hidden,
            if s.inner.adapter.is_some() {
                "adapter"
            } else {
                "full-weight"
            },
            s.inner.optimizer,
            s.inner.n_envs,
            s.env_steps_per_inner_step,
            s.inner.lr,
            s.meta_source,
            if s.rl2_source.is_empty() {
                "-"
            } else {
                &s.rl2_source
            },
            s.pretrain_iterations,
            s.meta_env_steps,
            self.interval
        );
        if let Some(classes) = &s.classes {
            let _ = writeln!(out, "meta_embed row: {classes}.\n");
        }
        if let Some(o) = &s.online {
            let _ = writeln!(
                out,
                "Online rows: after the K steps, an update every {} test bars ({} inner steps on \
                 the {} bars before the most recent {}, step size {}, update norm ≤ {}), kept \
                 only when the return on those {} bars does not fall by more than {}.\n",
                o.every_bars,
                o.steps,
                o.train_bars,
                o.validation_bars,
                o.step_size,
                o.max_update_norm,
                o.validation_bars,
                o.tolerance
            );
            for t in &s.online_updates {
                let _ = writeln!(
                    out,
                    "- {}: {} updates kept, {} rolled back (validation return fell), {} rolled \
                     back (non-finite), over every seed, task and K",
                    t.method, t.accepted, t.degraded, t.non_finite
                );
            }
            if !s.online_updates.is_empty() {
                out.push('\n');
            }
        }
        out.push_str(
            "Rows without gradient steps (rl2 and the baselines) repeat their one value in every \
             K column.\n\n",
        );
        let metrics: [(&str, MetricOf, f64); 3] = [
            ("Greedy Sharpe (annualised)", |c| c.sharpe, 1.0),
            ("Total return (%)", |c| c.total_return, 100.0),
            ("Max drawdown (%)", |c| c.max_drawdown, 100.0),
        ];
        let ks = self.ks();
        for (title, get, scale) in metrics {
            let _ = writeln!(out, "## {title} after K adaptation steps\n");
            let mut header = String::from("| method |");
            let mut rule = String::from("|---|");
            for k in &ks {
                let _ = write!(header, " K = {k} |");
                rule.push_str("---|");
            }
            if title.starts_with("Greedy") {
                header.push_str(" steps to reach |");
                rule.push_str("---|");
            }
            let _ = writeln!(out, "{header}\n{rule}");
            for m in &self.methods {
                let _ = write!(out, "| {} |", self.label(m));
                for k in &ks {
                    let cell = match m.kind {
                        RowKind::Adapted => m.curve.iter().find(|c| c.k == *k),
                        _ => m.curve.first(),
                    };
                    let text = cell.and_then(get).map_or("–".to_owned(), |i| {
                        format!(
                            "{:.2} [{:.2}, {:.2}]",
                            i.mean * scale,
                            i.lo * scale,
                            i.hi * scale
                        )
                    });
                    let _ = write!(out, " {text} |");
                }
                if title.starts_with("Greedy") {
                    let reach = match (m.kind, m.steps_to_reach) {
                        (RowKind::Baseline, _) => "".to_owned(),
                        (_, Some(k)) => k.to_string(),
                        (_, None) => "not reached".to_owned(),
                    };
                    let _ = write!(out, " {reach} |");
                }
                out.push('\n');
            }
            out.push('\n');
        }
        if !self.online_gain.is_empty() {
            out.push_str(
                "## Online minus offline: paired Sharpe difference after K steps\n\n| rows |",
            );
            for k in &ks {
                let _ = write!(out, " K = {k} |");
            }
            out.push_str("\n|---|");
            out.push_str(&"---|".repeat(ks.len()));
            out.push('\n');
            for g in &self.online_gain {
                let _ = write!(out, "| {} − {} |", g.online, g.offline);
                for k in &ks {
                    let text = g
                        .sharpe
                        .iter()
                        .find(|(gk, _)| gk == k)
                        .and_then(|(_, i)| *i)
                        .map_or("–".to_owned(), |i| {
                            format!("{:+.2} [{:+.2}, {:+.2}]", i.mean, i.lo, i.hi)
                        });
                    let _ = write!(out, " {text} |");
                }
                out.push('\n');
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.reach_line());
        out
    }

    /// One sentence on the steps-to-reach target.
    pub fn reach_line(&self) -> String {
        let r = &self.reach;
        match (&r.reference, r.reference_sharpe, r.target_sharpe) {
            (Some(name), Some(best), Some(target)) => {
                let steps: Vec<String> = self
                    .methods
                    .iter()
                    .filter(|m| m.kind != RowKind::Baseline)
                    .map(|m| match m.steps_to_reach {
                        Some(k) => format!("{} {k}", m.name),
                        None => format!("{} not reached", m.name),
                    })
                    .collect();
                format!(
                    "Steps to reach {:.0} % of the best agent's final Sharpe ({name}, {best:.2}), \
                     i.e. a mean Sharpe ≥ {target:.2}, fewest K of the grid: {} (rl2 takes no \
                     gradient step).",
                    r.fraction * 100.0,
                    steps.join(", ")
                )
            }
            (Some(name), Some(best), None) => format!(
                "No agent earned a positive mean Sharpe (best: {name}, {best:.2}), so steps to \
                 reach a share of it are not defined."
            ),
            _ => "No agent has a defined Sharpe; steps to reach are not defined.".to_owned(),
        }
    }

    /// CSV, one line per (method, K, metric): `method,kind,k,metric,mean,lo,hi,defined,pairs`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("method,kind,k,metric,mean,lo,hi,defined,pairs\n");
        for m in &self.methods {
            let kind = serde_json::to_value(m.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            for c in &m.curve {
                for (metric, value) in [
                    ("sharpe", c.sharpe),
                    ("total_return", c.total_return),
                    ("max_drawdown", c.max_drawdown),
                ] {
                    let (mean, lo, hi) = value
                        .map_or((String::new(), String::new(), String::new()), |i| {
                            (i.mean.to_string(), i.lo.to_string(), i.hi.to_string())
                        });
                    let _ = writeln!(
                        out,
                        "{},{kind},{},{metric},{mean},{lo},{hi},{},{}",
                        m.name, c.k, c.sharpe_defined, c.pairs
                    );
                }
            }
        }
        out
    }
}

/// The paired Sharpe differences of every `<name>_online` row against `<name>`, per K,
/// through `interval`.
fn online_gains(
    rows: &[MethodRaw],
    interval: &mut impl FnMut(&[Vec<Option<f64>>]) -> Option<Interval>,
) -> Vec<OnlineGain> {
    rows.iter()
        .filter_map(|online| {
            let offline_name = online.name.strip_suffix("_online")?;
            let offline = rows.iter().find(|r| r.name == offline_name)?;
            let sharpe = online
                .cells
                .iter()
                .filter_map(|a| {
                    let b = offline.cells.iter().find(|b| b.k == a.k)?;
                    let diffs: Vec<Vec<Option<f64>>> = a
                        .sharpe
                        .iter()
                        .zip(&b.sharpe)
                        .map(|(ra, rb)| {
                            ra.iter()
                                .zip(rb)
                                .map(|(x, y)| Some((*x)? - (*y)?))
                                .collect()
                        })
                        .collect();
                    Some((a.k, interval(&diffs)))
                })
                .collect();
            Some(OnlineGain {
                online: online.name.clone(),
                offline: offline_name.to_owned(),
                sharpe,
            })
        })
        .collect()
}
