//! `mrl llm …`: the language-model trader. For now one actor decision (`mrl llm ask`); the
//! self-improvement loop and its evaluation are not built yet.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use mrl_llm::{
    Backend, ContextBuilder, ContextConfig, EmbeddedBackend, GenerateConfig, Sampling,
    ServerBackend, ServerConfig, Weights, default_model_path, parse_prediction, read_news, roles,
};

use super::print;

/// `mrl llm` subcommands.
#[derive(Debug, Subcommand)]
pub enum LlmCommand {
    /// Ask the actor for a forecast and a position at one bar of a series; prints the
    /// prompt's context, the reply, the parsed prediction and (embedded model) tokens/s.
    Ask(AskArgs),
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
    /// Base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1) instead of
    /// the embedded model.
    #[arg(long)]
    server: Option<String>,
    /// Model name on the server.
    #[arg(long, default_value = "default", requires = "server")]
    server_model: String,
    /// Environment variable holding the server's API key.
    #[arg(long, requires = "server")]
    api_key_env: Option<String>,
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
    }
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
    let (completion, timing) = match &args.server {
        Some(url) => {
            let mut backend = ServerBackend::new(ServerConfig {
                base_url: url.clone(),
                model: args.server_model.clone(),
                api_key_env: args.api_key_env.clone(),
                ..ServerConfig::default()
            })?;
            (backend.chat(&messages, &config)?, None)
        }
        None => {
            let path = args
                .model
                .clone()
                .or_else(default_model_path)
                .context("no model: pass --model, or set MRL_LLM_MODEL or HOME")?;
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
