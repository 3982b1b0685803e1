//! Domain generalisation: the few-shot benchmark meta-trains on one asset class and adapts
//! to the assets of another (equities → crypto, crypto → equities), read from the
//! `[transfer]` table of a benchmark config.
//!
//! ```toml
//! [transfer]             # held-out assets of another class, instead of task.split.held_out
//! class = "crypto"
//! data_dir = "../shared/data"   # MRL_DATA_DIR or mrl eval fewshot --data-dir override it
//! interval = "1h"
//! assets = ["LINKUSDT", "DOTUSDT", "AVAXUSDT"]
//! ```
//!
//! Every method but `meta_embed` sees the same eleven features in both classes (per-class
//! feature sets and their embeddings: `[classes]`, `embedding.rs`); what changes is the law of the returns and the bar spacing (daily
//! equities against hourly crypto), and the input normalisation stays the one fitted on the
//! training class.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mrl_env::MarketData;
use mrl_ppo::{TaskKind, TrainConfig, asset_path};
use serde::{Deserialize, Serialize};

use crate::benchmark::HeldOutTask;
use crate::{Error, Result};

/// Held-out assets of another asset class (the `[transfer]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// The class's name in the report (`crypto`, `equities`, …).
    pub class: String,
    /// Directory of the bar files (default `../shared/data`); `MRL_DATA_DIR` overrides it, as
    /// for training.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Interval suffix of the file names (`1h`, `1d`).
    pub interval: String,
    /// Symbols: files `<data_dir>/<ASSET>_<interval>.csv`.
    pub assets: Vec<String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("../shared/data")
}

impl TransferConfig {
    /// Checks the table against the training run: at least one asset, and none that
    /// training reads (the same file).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `transfer.assets` or `transfer.class`.
    pub fn validate(&self, train: &TrainConfig) -> Result<()> {
        if self.assets.is_empty() {
            return Err(Error::invalid(
                "transfer.assets",
                "[]".into(),
                "name at least one asset of the other class",
            ));
        }
        if self.class.trim().is_empty() {
            return Err(Error::invalid(
                "transfer.class",
                "\"\"".into(),
                "name the asset class",
            ));
        }
        let training = training_files(train);
        for asset in &self.assets {
            let path = self.path(asset);
            if training.contains(&path) {
                return Err(Error::invalid(
                    "transfer.assets",
                    asset.clone(),
                    "training reads this file too; held-out assets must be unseen",
                ));
            }
        }
        Ok(())
    }

    /// The bar file of `asset`.
    pub fn path(&self, asset: &str) -> PathBuf {
        asset_path(&self.data_dir, &self.interval, asset)
    }

    /// The held-out tasks: every asset's whole series (no oracle).
    ///
    /// # Errors
    /// Data errors naming the file, env errors.
    pub fn held_out(&self) -> Result<Vec<HeldOutTask>> {
        self.assets
            .iter()
            .map(|asset| read_asset(&self.path(asset), asset))
            .collect()
    }

    /// `mrl eval fewshot --data-dir`: the directory of both classes.
    pub fn set_data_dir(&mut self, dir: &Path) {
        self.data_dir = dir.to_path_buf();
    }
}

/// One asset's bars as a held-out task named by its symbol.
///
/// # Errors
/// Data errors naming the file, env errors.
pub(crate) fn read_asset(path: &Path, asset: &str) -> Result<HeldOutTask> {
    let series = mrl_data::read_bars(path)?.with_symbol(asset.to_owned());
    Ok(HeldOutTask {
        name: asset.to_owned(),
        market: Arc::new(MarketData::new(series)?),
        oracle: None,
    })
}

/// The bar files a training run trains on (none for synthetic kinds; a multi-asset run's
/// held-out assets are never trained on, so another benchmark may adapt to them).
pub(crate) fn training_files(train: &TrainConfig) -> Vec<PathBuf> {
    match &train.task.kind {
        TaskKind::MultiAsset {
            data_dir,
            interval,
            assets,
            split,
        } => assets
            .iter()
            .filter(|a| !split.held_out.contains(a))
            .map(|a| asset_path(data_dir, interval, a))
            .collect(),
        TaskKind::RegimeWindows {
            data_dir,
            interval,
            assets,
            ..
        } => assets
            .iter()
            .map(|a| asset_path(data_dir, interval, a))
            .collect(),
        TaskKind::Timeframes {
            data_dir,
            interval,
            asset,
            ..
        } => vec![asset_path(data_dir, interval, asset)],
        _ => Vec::new(),
    }
}
