//! `mrl llm …`: the language-model trader: one actor decision (`mrl llm ask`), the
//! self-improvement loop (`mrl llm train`) and its walk-forward evaluation (`mrl llm eval`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use mrl::data::BarSeries;
use mrl_llm::{
    ADAPTERS_JSON, BASE_VALIDATION_JSON, Backend, ContextBuilder, ContextConfig, EmbeddedBackend,
    EvalReport, EvalRow, GenerateConfig, Message, Role, RoundLog, Sampling, ServerBackend,
    ServerConfig, TrainConfig, Weights, actor_decisions, actor_row, complete_rounds,
    constrained_actor, default_model_path, load_round_adapters, parse_prediction, read_news, roles,
    round_dir, test_bars,
};

use super::print;

/// `mrl llm` subcommands.
#[derive(Debug, Subcommand)]
pub enum LlmCommand {
    /// Ask the actor for a forecast and a position at one bar of a series; prints the
    /// prompt's context, the reply, the parsed prediction and (embedded model) tokens/s.
    Ask(AskArgs),
    /// Self-improvement: rounds of actor candidates, judge scores (with the realised
    /// return of the training period), meta-judge verdicts and DPO on LoRA adapters of the
    /// actor and the judge; adapters and logs per round in --out.
    Train(TrainArgs),
    /// Walk-forward evaluation on held-out bars: the plain model and the actor after each
    /// round (and optionally a server model and trained RL agents) beside buy-and-hold, flat
    /// and the trader rules.
    Eval(EvalArgs),
}

/// Arguments of `mrl llm train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The loop's settings (configs/llm-quick.toml, configs/llm-experiment.toml).
    #[arg(long)]
    config: PathBuf,
    /// Output directory (config, logs, one round-NNNN/ per round).
    #[arg(long)]
    out: PathBuf,
    /// A bar file to train on (its first train_share) instead of the synthetic markets.
    #[arg(long, conflicts_with = "data_dir")]
    data: Option<PathBuf>,
    /// A directory of bar files (.csv, .parquet) to train on.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Continue after the last complete round in --out (same config and data; `rounds` may
    /// grow).
    #[arg(long)]
    resume: bool,
    /// GGUF model file (default: $MRL_LLM_MODEL, else the cache of scripts/fetch-smollm2).
    #[arg(long)]
    model: Option<PathBuf>,
}

/// Arguments of `mrl llm eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory of `mrl llm train` (every complete round, each a row after the
    /// plain model's) or one of its round-NNNN directories (that round alone).
    #[arg(long)]
    adapter: PathBuf,
    /// A bar file to evaluate on (its last eval.test_share); default: the held-out
    /// synthetic market of the run's config (seed eval.market_seed).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory (eval.json, eval.md, decisions.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// Decisions to evaluate (default: the config's eval.decisions).
    #[arg(long)]
    decisions: Option<usize>,
    /// GGUF model file (default: $MRL_LLM_MODEL, else the cache of scripts/fetch-smollm2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also evaluate a model behind an OpenAI-compatible server (free-text replies with
    /// repair).
    #[command(flatten)]
    server: ServerArgs,
    /// A run directory of `mrl train` (RL², the MLP, any agent kind) to trade the same
    /// decision bars through mrl-backtest's walk-forward (its trial settings, the eval's
    /// cost); repeat for several agents.
    #[arg(long = "agent", alias = "rl-checkpoint", value_name = "DIR")]
    agents: Vec<PathBuf>,
}

/// The OpenAI-compatible server of `mrl llm ask` and `mrl llm eval`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    server: Option<String>,
    /// Model name on the server.
    #[arg(long, default_value = "default", requires = "server")]
    server_model: String,
    /// Environment variable holding the server's API key.
    #[arg(long, requires = "server")]
    api_key_env: Option<String>,
}

impl ServerArgs {
    /// The server backend, when --server is given.
    fn backend(&self) -> anyhow::Result<Option<ServerBackend>> {
        let Some(url) = &self.server else {
            return Ok(None);
        };
        Ok(Some(ServerBackend::new(ServerConfig {
            base_url: url.clone(),
            model: self.server_model.clone(),
            api_key_env: self.api_key_env.clone(),
            ..ServerConfig::default()
        })?))
    }
}

/// Arguments of `mrl llm ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The bar file (.csv or .parquet).
    #[arg(long)]
    data: PathBuf,
    /// Decision bar, 0-based (default: the last bar).
    #[arg(long)]
    bar: Option<usize>,
    /// Headlines, one JSON object per line: {"timestamp": ms, "headline": "..."}.
    #[arg(long)]
    news: Option<PathBuf>,
    /// GGUF model file (default: $MRL_LLM_MODEL, else the cache of scripts/fetch-smollm2).
    #[arg(long, conflicts_with = "server")]
    model: Option<PathBuf>,
    /// Run the embedded model with weights dequantised to f32 (4× the memory; on some CPUs
    /// faster than the quantised kernels).
    #[arg(long, conflicts_with = "server")]
    f32: bool,
    /// Ask a model behind an OpenAI-compatible server instead of the embedded model.
    #[command(flatten)]
    server: ServerArgs,
    /// Token budget of the reply.
    #[arg(long, default_value_t = 96)]
    max_new_tokens: usize,
    /// Sampling temperature; greedy decoding when absent.
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus mass with --temperature.
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs an `mrl llm` subcommand.
pub fn run(command: LlmCommand) -> anyhow::Result<()> {
    match command {
        LlmCommand::Ask(args) => ask(args),
        LlmCommand::Train(args) => train(args),
        LlmCommand::Eval(args) => eval(args),
    }
}

fn model_path(model: Option<&Path>) -> anyhow::Result<PathBuf> {
    model
        .map(Path::to_path_buf)
        .or_else(default_model_path)
        .context("no model: pass --model, or set MRL_LLM_MODEL or HOME")
}

fn read_data_dir(dir: &Path) -> anyhow::Result<Vec<BarSeries>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv" || e == "parquet"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "{} holds no .csv or .parquet file",
        dir.display()
    );
    files
        .iter()
        .map(|f| mrl::data::read_bars(f).with_context(|| format!("reading {}", f.display())))
        .collect()
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config = super::load_config(&args.config, TrainConfig::from_toml_file)?;
    let model = model_path(args.model.as_deref())?;
    let series = match (&args.data, &args.data_dir) {
        (Some(file), _) => vec![mrl::data::read_bars(file)?],
        (None, Some(dir)) => read_data_dir(dir)?,
        (None, None) => config.market.generate(config.market.seed)?,
    };
    let start = Instant::now();
    let generation = match config.generation_weights {
        mrl_llm::Weights::Quantized => "quantised blocks as stored",
        mrl_llm::Weights::DequantizedF32 => "dequantised to f32",
    };
    print(format!(
        "mrl llm train: {} round(s) of {} contexts × {} candidates on {} series, model {} \
         (generation {generation}, DPO in f32; -v logs each phase)",
        config.rounds,
        config.contexts,
        config.candidates,
        series.len(),
        model.display()
    ));
    let mut show = |log: &RoundLog| print(round_line(log));
    let logs = mrl_llm::train(&model, &series, &config, &args.out, args.resume, &mut show)?;
    if config.eval.validation_decisions > 0 {
        print(validation_curve(&args.out, &logs)?);
    }
    print(format!(
        "{} round(s) in {}; logs in {}",
        logs.len(),
        human_secs(start.elapsed().as_secs_f64()),
        args.out.join("rounds.csv").display()
    ));
    Ok(())
}

fn human_secs(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.0} min {:.0} s", (secs / 60.0).floor(), secs % 60.0)
    }
}

fn round_line(log: &RoundLog) -> String {
    let dpo = |d: Option<mrl_llm::DpoStats>| {
        d.map_or("no pairs".to_string(), |d| {
            format!(
                "loss {:.3} -> {:.3}, after {:.3}, margin after {:+.3}",
                d.loss_first_epoch, d.loss_last_epoch, d.loss_after, d.margin_after
            )
        })
    };
    format!(
        "round {}: actor pairs {} ({}; candidates long/short/flat {}/{}/{}, pairs of differing positions {}), judge pairs {} ({}), judge-outcome Spearman {}, parse failures actor {}/{} judge {}/{} meta {}/{} (repaired {}/{}/{}), {}",
        log.round,
        log.actor_pairs,
        dpo(log.actor_dpo),
        log.candidate_positions.long,
        log.candidate_positions.short,
        log.candidate_positions.flat,
        log.differing_pairs,
        log.judge_pairs,
        dpo(log.judge_dpo),
        log.judge_outcome_spearman
            .map_or("–".to_string(), |r| format!("{r:+.2}")),
        log.actor_replies.failed,
        log.actor_replies.total(),
        log.judge_replies.failed,
        log.judge_replies.total(),
        log.meta_judge_replies.failed,
        log.meta_judge_replies.total(),
        log.actor_replies.repaired,
        log.judge_replies.repaired,
        log.meta_judge_replies.repaired,
        human_secs(log.seconds)
    ) + &log.validation.as_ref().map_or(String::new(), |row| {
        format!("; validation {}", validation_line(row))
    })
}

/// One validation row in a line.
fn validation_line(row: &EvalRow) -> String {
    format!(
        "Sharpe {}, return {:+.2}%, MAE {} pp, unparsed {}/{}",
        row.metrics
            .sharpe
            .map_or("–".to_string(), |v| format!("{v:.2}")),
        row.metrics.total_return * 100.0,
        row.mae_pct.map_or("–".to_string(), |v| format!("{v:.3}")),
        row.parse_failures.unwrap_or(0),
        row.decisions
    )
}

/// The validation rows of the plain actor and of every round, one line each.
fn validation_curve(out: &Path, logs: &[RoundLog]) -> anyhow::Result<String> {
    let path = out.join(BASE_VALIDATION_JSON);
    let base: EvalRow = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let mut text = format!(
        "validation ({} decisions):\n  round 0: {}",
        base.decisions,
        validation_line(&base)
    );
    for log in logs {
        if let Some(row) = &log.validation {
            text.push_str(&format!(
                "\n  round {}: {}",
                log.round,
                validation_line(row)
            ));
        }
    }
    Ok(text)
}

/// The run directory and the round directories named by `--adapter`: that round, or every
/// complete round of a run directory (the "round 0 and each later round").
fn resolve_adapter(adapter: &Path) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    if adapter.join(ADAPTERS_JSON).is_file() {
        let run = adapter
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        return Ok((run, vec![adapter.to_path_buf()]));
    }
    let rounds = complete_rounds(adapter);
    anyhow::ensure!(
        rounds > 0,
        "{} is neither a round directory (with {ADAPTERS_JSON}) nor a run directory with a complete round",
        adapter.display()
    );
    let dirs = (1..=rounds).map(|k| round_dir(adapter, k)).collect();
    Ok((adapter.to_path_buf(), dirs))
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let (run_dir, rounds) = resolve_adapter(&args.adapter)?;
    let mut config = super::load_config(&run_dir.join("config.toml"), TrainConfig::from_toml_file)?;
    if let Some(n) = args.decisions {
        config.eval.decisions = n;
    }
    // The agents load first, so that a bad run directory fails before the model runs.
    let agents = args
        .agents
        .iter()
        .map(|dir| {
            let policy = super::backtest::load_policy(dir)?;
            let walk = match super::backtest::load_run_config(dir)? {
                Some(c) => mrl::walk_forward_config(&c),
                None => {
                    tracing::warn!(
                        "agent {} has no {}: default walk-forward settings",
                        dir.display(),
                        mrl::ppo::CONFIG_FILE
                    );
                    mrl::backtest::WalkForwardConfig::default()
                }
            };
            let stem = dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok((format!("{} ({stem})", policy.kind().as_str()), policy, walk))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let model = model_path(args.model.as_deref())?;
    let series = match &args.data {
        Some(file) => mrl::data::read_bars(file)?,
        None => config
            .market
            .synthetic
            .generate(config.market.n_bars, config.eval.market_seed)?
            .series
            .with_symbol(format!("synthetic-{}", config.eval.market_seed)),
    };
    let first = ContextBuilder::new(&series, Vec::new(), config.context)?.first_bar();
    let bars = test_bars(&series, &config.eval, first)?;
    print(format!(
        "mrl llm eval: {} bars {}..{} ({} decisions), adapters {}",
        series.symbol().unwrap_or("series"),
        bars.start,
        bars.end,
        bars.len(),
        rounds
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // The agents trade first (seconds), so that a window that does not fit fails early.
    let mut agent_rows = Vec::with_capacity(agents.len());
    for (name, policy, walk) in &agents {
        let row = mrl_llm::agent_row(name, &series, &bars, policy, walk, config.eval.cost_rate)
            .with_context(|| format!("walk-forward of the agent {name}"))?;
        print(format!(
            "{name}: {} decisions after {} adaptation episode(s) of {} bars",
            row.decisions, walk.adaptation_episodes, walk.adaptation_len
        ));
        agent_rows.push(row);
    }
    let mut rows = Vec::new();
    // One JSON line per decision of each model (eval/decisions.jsonl).
    let mut lines = String::new();
    let mut evaluate = |name: &str,
                        decide: &mut dyn FnMut(&[Message]) -> mrl_llm::Result<String>|
     -> anyhow::Result<()> {
        let start = Instant::now();
        let decisions = actor_decisions(&series, config.context, bars.clone(), decide)?;
        let row = actor_row(name, &series, &decisions, config.eval.cost_rate);
        print(format!(
            "{name}: {} decisions in {}, {} unparsed",
            decisions.len(),
            human_secs(start.elapsed().as_secs_f64()),
            row.parse_failures.unwrap_or(0)
        ));
        rows.push(row);
        for d in &decisions {
            lines.push_str(&serde_json::json!({ "policy": name, "decision": d }).to_string());
            lines.push('\n');
        }
        Ok(())
    };
    {
        let mut base = EmbeddedBackend::load(&model, config.generation_weights)?;
        evaluate(
            "base (round 0)",
            &mut constrained_actor(&mut base, config.rationale_tokens),
        )?;
    }
    for round in &rounds {
        let round_name = round
            .file_name()
            .map_or("trained".into(), |n| n.to_string_lossy().replace('-', " "));
        let actor = load_round_adapters(&model, round, Role::Actor)?;
        let mut adapted = actor.merged_backend(&model, config.generation_weights)?;
        drop(actor);
        evaluate(
            &round_name,
            &mut constrained_actor(&mut adapted, config.rationale_tokens),
        )?;
    }
    if let Some(mut backend) = args.server.backend()? {
        let generate = GenerateConfig::greedy(128);
        let name = format!("server {}", args.server.server_model);
        evaluate(&name, &mut |messages| {
            Ok(backend.chat(messages, &generate)?.text)
        })?;
    }
    rows.extend(agent_rows);
    let report = EvalReport::new(&series, bars, config.eval.cost_rate, rows)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    mrl::data::write_file_atomic(
        &args.out.join("eval.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let table = report.markdown();
    mrl::data::write_file_atomic(&args.out.join("eval.md"), table.as_bytes())?;
    mrl::data::write_file_atomic(&args.out.join("decisions.jsonl"), lines.as_bytes())?;
    print(table);
    Ok(())
}

fn ask(args: AskArgs) -> anyhow::Result<()> {
    let series = mrl::data::read_bars(&args.data)?;
    let news = match &args.news {
        Some(path) => read_news(path)?,
        None => Vec::new(),
    };
    let builder = ContextBuilder::new(&series, news, ContextConfig::default())
        .with_context(|| format!("market context of {}", args.data.display()))?;
    let bar = args.bar.unwrap_or(series.len().saturating_sub(1));
    let context = builder.context_at(bar)?;
    let config = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        sampling: match args.temperature {
            Some(temperature) => Sampling::TopP {
                temperature,
                top_p: args.top_p,
            },
            None => Sampling::Greedy,
        },
        seed: args.seed,
    };
    let messages = roles::actor_messages(&context);
    print(context.to_prompt());
    let (completion, timing) = match args.server.backend()? {
        Some(mut backend) => (backend.chat(&messages, &config)?, None),
        None => {
            let path = model_path(args.model.as_deref())?;
            let weights = if args.f32 {
                Weights::DequantizedF32
            } else {
                Weights::Quantized
            };
            let mut backend = EmbeddedBackend::load(&path, weights)?;
            let completion = backend.chat(&messages, &config)?;
            (completion, backend.last_timing())
        }
    };
    print(format!(
        "reply ({:?}): {}",
        completion.finish, completion.text
    ));
    match parse_prediction(&completion.text) {
        Ok(parsed) => print(format!(
            "prediction: return {:+.3}%, {:?}, position {:+.2}, confidence {:.2}, \"{}\"{}",
            parsed.value.return_pct,
            parsed.value.direction,
            parsed.value.position,
            parsed.value.confidence,
            parsed.value.rationale,
            if parsed.repairs.is_empty() {
                String::new()
            } else {
                format!(" (repaired: {:?})", parsed.repairs)
            }
        )),
        Err(failure) => print(format!("prediction: unparseable reply ({failure})")),
    }
    if let Some(t) = timing {
        print(format!(
            "tokens: prompt {} at {:.0}/s, generated {} at {:.1}/s",
            t.prompt_tokens,
            t.prompt_tokens_per_sec(),
            t.generated_tokens,
            t.generate_tokens_per_sec()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_names_every_complete_round_and_a_round_directory_itself() {
        let run = tempfile::tempdir().unwrap();
        for k in 1..=2 {
            let dir = round_dir(run.path(), k);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("round.json"), "{}").unwrap();
            std::fs::write(dir.join(ADAPTERS_JSON), "{}").unwrap();
        }
        // Round 3 incomplete (no round.json): not evaluated.
        std::fs::create_dir_all(round_dir(run.path(), 3)).unwrap();
        let (dir, rounds) = resolve_adapter(run.path()).unwrap();
        assert_eq!(dir, run.path());
        assert_eq!(
            rounds,
            vec![round_dir(run.path(), 1), round_dir(run.path(), 2)]
        );
        let (dir, rounds) = resolve_adapter(&round_dir(run.path(), 2)).unwrap();
        assert_eq!(dir, run.path());
        assert_eq!(rounds, vec![round_dir(run.path(), 2)]);
        let empty = tempfile::tempdir().unwrap();
        let err = resolve_adapter(empty.path()).unwrap_err().to_string();
        assert!(err.contains("neither a round directory"), "{err}");
    }
}
