//! The files of a study: `study.json`, the CSV tables, `study.md` (Markdown a README can
//! paste), each seed's equity curve and, with the `plot` feature, the charts.

use std::fmt::Write as _;
use std::path::Path;

use mrl_ppo::TrainConfig;

#[cfg(feature = "plot")]
use super::{CurveBand, TrainingBands};
use super::{Diagnostics, Error, Result, StudyReport, policy_label, policy_order};

/// An agent's own settings in words (hidden width, step size, epochs, minibatch trials,
/// entropy), read back from its training config; the TOML itself when it does not parse.
fn own_settings_summary(toml: &str) -> String {
    match TrainConfig::from_toml_str(toml, Path::new("study.json")) {
        Ok(c) => format!(
            "hidden {}, lr {}, {} epochs × {} trials per minibatch, entropy {}",
            c.agent.hidden, c.optim.lr, c.ppo.epochs, c.ppo.minibatch_trials, c.ppo.entropy_coef
        ),
        Err(_) => toml.replace('\n', "; "),
    }
}

/// Writes `bytes` to `path` atomically, naming the file in the error.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    mrl_data::write_file_atomic(path, bytes).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `seed-<seed>/equity.csv` of the first held-out market and (feature `plot`) its chart.
pub(super) fn write_seed_equity(
    out_dir: &Path,
    seed: u64,
    market: &str,
    bt: &mrl_backtest::Backtest,
) -> Result<()> {
    let dir = out_dir.join(format!("seed-{seed}"));
    write(
        &dir.join("equity.csv"),
        mrl_backtest::equity_csv(&bt.report, &bt.records).as_bytes(),
    )?;
    // The market names only the chart.
    #[cfg(not(feature = "plot"))]
    let _ = market;
    #[cfg(feature = "plot")]
    {
        let start = bt.report.span.start;
        let days = |ts: i64| (ts - start) as f64 / mrl_data::DAY_MS as f64;
        let lines = ["rl2", "mlp", "buy_and_hold", "oracle"]
            .into_iter()
            .filter_map(|name| {
                let records = bt.records.get(name)?;
                Some(mrl_backtest::BandLine {
                    name: name.into(),
                    // Compounded equity spans orders of magnitude (the oracle's dwarfs the
                    // agents' on a linear axis): plot log10, floored for a ruined book.
                    points: records
                        .iter()
                        .map(|r| (days(r.timestamp), r.equity.max(1e-6).log10()))
                        .collect(),
                    band: Vec::new(),
                })
            })
            .collect();
        let panel = mrl_backtest::Panel {
            title: format!("{market}, greedy actions"),
            x_desc: format!("days since {}", mrl_data::format_timestamp(start)),
            y_desc: "log10 equity (0 = start, 1 = ×10)".into(),
            lines,
            integer_x: false,
        };
        let title = format!("Equity on held-out {market} (seed {seed})");
        mrl_backtest::write_band_figure(out_dir, &format!("equity-seed-{seed}"), &title, &[panel])
            .map_err(|e| Error::Write {
                path: out_dir.join(format!("equity-seed-{seed}.png")),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Writes every output file of `report` into `out_dir`.
pub(super) fn write_outputs(report: &StudyReport, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Write {
        path: out_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Write {
        path: out_dir.join("study.json"),
        reason: e.to_string(),
    })?;
    write(&out_dir.join("study.json"), &json)?;
    write(
        &out_dir.join("per_seed.csv"),
        report.per_seed_csv().as_bytes(),
    )?;
    write(&out_dir.join("pooled.csv"), report.pooled_csv().as_bytes())?;
    write(
        &out_dir.join("comparisons.csv"),
        report.comparisons_csv().as_bytes(),
    )?;
    write(&out_dir.join("study.md"), report.to_markdown().as_bytes())?;
    #[cfg(feature = "plot")]
    write_charts(report, out_dir)?;
    tracing::info!(dir = %out_dir.display(), "study written");
    Ok(())
}

/// `1 seed`, `3 seeds`.
pub fn seeds_phrase(n: usize) -> String {
    if n == 1 {
        "1 seed".into()
    } else {
        format!("{n} seeds")
    }
}

/// What a chart's shading shows for `n` seeds: the min–max band across seeds, or, for one
/// seed, that the lines are that seed's alone (a band of one seed is the line itself).
#[cfg(feature = "plot")]
fn band_phrase(n: usize) -> String {
    if n == 1 {
        "1 seed, no band".into()
    } else {
        format!("band: min–max across {n} seeds")
    }
}

/// The `adaptation` and `training` charts (min–max bands across seeds).
#[cfg(feature = "plot")]
fn write_charts(report: &StudyReport, out_dir: &Path) -> Result<()> {
    use mrl_backtest::{BandLine, Panel};
    let seeds = report.per_seed.len();
    let band_line = |name: &str, band: &CurveBand, x0: f64, scale: f64| BandLine {
        name: name.into(),
        points: band
            .mean
            .iter()
            .enumerate()
            .map(|(i, &y)| (x0 + i as f64, scale * y))
            .collect(),
        band: band
            .min
            .iter()
            .zip(&band.max)
            .enumerate()
            .map(|(i, (&lo, &hi))| (x0 + i as f64, scale * lo, scale * hi))
            .collect(),
    };
    let chart_err = |stem: &str| {
        let path = out_dir.join(format!("{stem}.png"));
        move |e: mrl_backtest::Error| Error::Write {
            path,
            reason: e.to_string(),
        }
    };
    // RL², the further agents of the study, then the references.
    let shown: Vec<&str> = std::iter::once("rl2")
        .chain(report.others.iter().map(|o| o.key.as_str()))
        .chain(["mlp", "oracle", "buy_and_hold"])
        .collect();
    let adaptation = Panel {
        title: "mean return by episode of the trial".into(),
        x_desc: "episode of the trial (last = evaluation window)".into(),
        y_desc: "return (%)".into(),
        lines: shown
            .iter()
            .filter_map(|k| Some(band_line(k, report.adaptation.get(*k)?, 1.0, 100.0)))
            .collect(),
        integer_x: true,
    };
    mrl_backtest::write_band_figure(
        out_dir,
        "adaptation",
        &format!(
            "Adaptation on held-out markets, greedy ({})",
            band_phrase(seeds)
        ),
        &[adaptation],
    )
    .map_err(chart_err("adaptation"))?;
    type Pick = fn(&TrainingBands) -> &CurveBand;
    let panels: [(&str, &str, Pick); 4] = [
        ("mean trial return", "return", |t| &t.mean_trial_return),
        ("explained variance", "explained variance", |t| {
            &t.explained_variance
        }),
        ("approx. KL", "approx. KL", |t| &t.approx_kl),
        ("policy entropy", "entropy (nats)", |t| &t.entropy),
    ];
    let panels: Vec<Panel> = panels
        .iter()
        .map(|(title, y, pick)| Panel {
            title: (*title).into(),
            x_desc: "iteration".into(),
            y_desc: (*y).into(),
            lines: report
                .training
                .iter()
                .map(|(agent, t)| band_line(agent, pick(t), 0.0, 1.0))
                .collect(),
            integer_x: false,
        })
        .collect();
    mrl_backtest::write_band_figure(
        out_dir,
        "training",
        &format!("Training diagnostics ({})", band_phrase(seeds)),
        &panels,
    )
    .map_err(chart_err("training"))?;
    Ok(())
}

/// `x` with 2 decimals, or `-` when undefined.
fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// `x` as CSV: the number, or empty when undefined.
fn csv_opt(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| v.to_string())
}

impl StudyReport {
    /// Policy keys in display order.
    fn policy_keys(&self) -> Vec<String> {
        policy_order(self.pooled.keys())
    }

    /// `per_seed.csv`: `seed,policy,markets,sharpe_markets,mean_sharpe,mean_total_return,
    /// mean_max_drawdown`, one row per seed and policy key (`mean_sharpe` empty when no
    /// market's Sharpe is defined).
    pub fn per_seed_csv(&self) -> String {
        let mut out = String::from(
            "seed,policy,markets,sharpe_markets,mean_sharpe,mean_total_return,mean_max_drawdown\n",
        );
        for s in &self.per_seed {
            for key in policy_order(s.policies.keys()) {
                let f = &s.policies[&key];
                let _ = writeln!(
                    out,
                    "{},{key},{},{},{},{},{}",
                    s.seed,
                    f.markets,
                    f.sharpe_markets,
                    csv_opt(f.sharpe),
                    f.total_return,
                    f.max_drawdown
                );
            }
        }
        out
    }

    /// `pooled.csv`: `policy,seeds,sharpe_seeds,sharpe_mean,sharpe_std,sharpe_min,
    /// sharpe_max,return_mean,return_std,max_drawdown_mean,max_drawdown_std`, one row per
    /// policy key (across seeds of each seed's mean over the markets; std with ddof 0).
    pub fn pooled_csv(&self) -> String {
        let mut out = String::from(
            "policy,seeds,sharpe_seeds,sharpe_mean,sharpe_std,sharpe_min,sharpe_max,\
             return_mean,return_std,max_drawdown_mean,max_drawdown_std\n",
        );
        for key in self.policy_keys() {
            let p = &self.pooled[&key];
            let s = p.sharpe;
            let _ = writeln!(
                out,
                "{key},{},{},{},{},{},{},{},{},{},{}",
                p.seeds,
                s.map_or(0, |s| s.n),
                csv_opt(s.map(|s| s.mean)),
                csv_opt(s.map(|s| s.std)),
                csv_opt(s.map(|s| s.min)),
                csv_opt(s.map(|s| s.max)),
                p.total_return.mean,
                p.total_return.std,
                p.max_drawdown.mean,
                p.max_drawdown.std
            );
        }
        out
    }

    /// `comparisons.csv`: `a,b,pairs,pairs_total,mean_diff,lo,hi,confidence,weaker_seeds`
    /// (the Sharpe difference `a − b`; `weaker_seeds` separated by `;`).
    pub fn comparisons_csv(&self) -> String {
        let mut out =
            String::from("a,b,pairs,pairs_total,mean_diff,lo,hi,confidence,weaker_seeds\n");
        for c in &self.comparisons {
            let i = c.interval;
            let weaker: Vec<String> = c.weaker_seeds.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{}",
                c.a,
                c.b,
                c.pairs,
                c.pairs_total,
                csv_opt(i.map(|i| i.mean)),
                csv_opt(i.map(|i| i.lo)),
                csv_opt(i.map(|i| i.hi)),
                csv_opt(i.map(|i| i.confidence)),
                weaker.join(";")
            );
        }
        out
    }

    /// The pooled table: per policy, mean ± std across seeds of the mean Sharpe, return
    /// and max drawdown over the markets (Markdown).
    pub fn pooled_table(&self) -> String {
        let mut out = String::from(
            "| policy | Sharpe (mean ± std) | seeds with Sharpe | return | max drawdown |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for key in self.policy_keys() {
            let p = &self.pooled[&key];
            let sharpe = p
                .sharpe
                .map_or_else(|| "-".into(), |s| format!("{:.2} ± {:.2}", s.mean, s.std));
            let _ = writeln!(
                out,
                "| {} | {sharpe} | {}/{} | {:.2}% ± {:.2}% | {:.2}% ± {:.2}% |",
                policy_label(&key),
                p.sharpe.map_or(0, |s| s.n),
                p.seeds,
                100.0 * p.total_return.mean,
                100.0 * p.total_return.std,
                100.0 * p.max_drawdown.mean,
                100.0 * p.max_drawdown.std
            );
        }
        out
    }

    /// `study.md`: settings, verdict, pooled table, paired differences, per-seed tables,
    /// adaptation curves, training summary and the charts, as Markdown a README can paste.
    pub fn to_markdown(&self) -> String {
        let s = &self.settings;
        let wf = &s.walk_forward;
        let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        let mut out = String::from("# RL² against the MLP baseline over seeds\n\n## Settings\n\n");
        out.push_str("| setting | value |\n|---|---|\n");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "| {k} | {v} |");
        };
        row("task", s.task.clone());
        row("seeds", seeds.join(", "));
        row(
            "training",
            format!(
                "{} iterations × {} trials × {} episodes, hidden {}",
                s.iterations, s.n_envs, s.episodes_per_trial, s.hidden
            ),
        );
        for (key, toml) in &s.own_settings {
            row(&format!("{key}'s own settings"), own_settings_summary(toml));
        }
        row("held-out markets", s.held_out.clone());
        row(
            "walk-forward",
            format!(
                "windows of {} bars after {} adaptation episodes of {} bars, {} bps costs",
                wf.window_len,
                wf.adaptation_episodes,
                wf.adaptation_len,
                wf.cost_rate * 1e4
            ),
        );
        row(
            "actions",
            format!(
                "greedy, and sampled in {} runs (their mean)",
                s.sampled_runs
            ),
        );
        row(
            "intervals",
            format!(
                "{:.0}% two-way bootstrap over (seed, market) pairs, {} resamples",
                100.0 * s.confidence,
                s.resamples
            ),
        );
        let _ = write!(
            out,
            "\n## Verdict\n\n{}\n\n{}{}\n\n## Pooled over seeds\n\nMean ± std across seeds of each \
             seed's mean over the {} held-out markets.\n\n{}",
            self.verdict,
            self.adaptation_gain
                .as_ref()
                .map(|g| g.line.as_str())
                .into_iter()
                .chain(
                    self.others
                        .iter()
                        .flat_map(|o| [o.line.as_str(), o.adaptation.line.as_str()])
                )
                .map(|line| format!("{line}\n\n"))
                .collect::<String>(),
            self.deployment.line,
            s.markets.len(),
            self.pooled_table()
        );
        out.push_str(
            "\n## Paired Sharpe differences\n\n| difference | mean Δ Sharpe | interval | pairs | \
             weaker on seeds |\n|---|---:|---:|---:|---|\n",
        );
        for c in &self.comparisons {
            let (mean, ci) = c.interval.map_or_else(
                || ("-".into(), "-".into()),
                |i| {
                    (
                        format!("{:+.2}", i.mean),
                        format!("[{:+.2}, {:+.2}]", i.lo, i.hi),
                    )
                },
            );
            let weaker: Vec<String> = c.weaker_seeds.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "| {} − {} | {mean} | {ci} | {}/{} | {} |",
                policy_label(&c.a),
                policy_label(&c.b),
                c.pairs,
                c.pairs_total,
                if weaker.is_empty() {
                    "none".into()
                } else {
                    weaker.join(", ")
                }
            );
        }
        let keys = self.policy_keys();
        out.push_str("\n## Per seed: mean Sharpe over the markets\n\n| seed |");
        for k in &keys {
            let _ = write!(out, " {} |", policy_label(k));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(keys.len()));
        out.push('\n');
        for seed in &self.per_seed {
            let _ = write!(out, "| {} |", seed.seed);
            for k in &keys {
                let _ = write!(
                    out,
                    " {} |",
                    opt(seed.policies.get(k).and_then(|f| f.sharpe))
                );
            }
            out.push('\n');
        }
        out.push_str(
            "\n## Per seed: training\n\n| seed | agent | iterations | last-10% trial return | \
             final explained variance | final approx. KL | final entropy |\n\
             |---|---|---:|---:|---:|---:|---:|\n",
        );
        for seed in &self.per_seed {
            for (agent, run) in &seed.training {
                let last = run.diagnostics.last();
                let pick = |f: fn(&Diagnostics) -> f64| opt(last.map(f));
                let _ = writeln!(
                    out,
                    "| {} | {agent} | {} | {:.3} | {} | {} | {} |",
                    seed.seed,
                    run.iterations,
                    run.tail_mean_trial_return,
                    pick(|d| d.explained_variance),
                    last.map_or_else(|| "-".into(), |d| format!("{:.4}", d.approx_kl)),
                    pick(|d| d.entropy)
                );
            }
        }
        out.push_str(
            "\n## Adaptation curve\n\nMean return (%) by episode of the trial, pooled mean \
             [min, max] across seeds; the last episode is the evaluation window.\n\n",
        );
        let episodes = self
            .adaptation
            .values()
            .map(|b| b.mean.len())
            .max()
            .unwrap_or(0);
        out.push_str("| policy |");
        for e in 1..=episodes {
            let _ = write!(out, " episode {e} |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(episodes));
        out.push('\n');
        for k in policy_order(self.adaptation.keys()) {
            let b = &self.adaptation[&k];
            let _ = write!(out, "| {} |", policy_label(&k));
            for j in 0..b.mean.len() {
                let _ = write!(
                    out,
                    " {:.3} [{:.3}, {:.3}] |",
                    100.0 * b.mean[j],
                    100.0 * b.min[j],
                    100.0 * b.max[j]
                );
            }
            out.push('\n');
        }
        out.push_str(
            "\n## Charts\n\n![adaptation curve](adaptation.png)\n\n![training \
             diagnostics](training.png)\n\n",
        );
        for seed in &self.per_seed {
            let _ = writeln!(out, "![equity, seed {0}](equity-seed-{0}.png)\n", seed.seed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_settings_are_summarised_from_their_config() {
        let mut c = TrainConfig::default();
        c.agent.hidden = 64;
        c.optim.lr = 5e-4;
        c.ppo.minibatch_trials = 16;
        c.ppo.entropy_coef = 0.003;
        assert_eq!(
            own_settings_summary(&c.to_toml()),
            "hidden 64, lr 0.0005, 4 epochs × 16 trials per minibatch, entropy 0.003"
        );
        assert_eq!(own_settings_summary("x = \n"), "x = ; ");
    }

    #[cfg(feature = "plot")]
    #[test]
    fn one_seed_claims_no_band() {
        assert_eq!(band_phrase(1), "1 seed, no band");
        assert_eq!(band_phrase(3), "band: min–max across 3 seeds");
    }
}
