//! Report files: `report.json`, `equity.csv` and (feature `plot`) charts, each written
//! atomically.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{BacktestReport, Error, PolicyRecords, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over `path`, so readers see the old file or the new one.
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The per-step book as CSV: `timestamp,bar,window,close`, then `<policy>_position`,
/// `<policy>_reward` and `<policy>_equity` for every policy in report order. Every policy's
/// book covers the same bars.
pub fn equity_csv(report: &BacktestReport, records: &PolicyRecords) -> String {
    let names: Vec<&str> = report
        .ordered()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| records.contains_key(*name))
        .collect();
    let mut out = String::from("timestamp,bar,window,close");
    for name in &names {
        let _ = write!(out, ",{name}_position,{name}_reward,{name}_equity");
    }
    out.push('\n');
    let Some(base) = names.first().and_then(|n| records.get(*n)) else {
        return out;
    };
    for (i, r) in base.iter().enumerate() {
        let _ = write!(out, "{},{},{},{}", r.timestamp, r.bar, r.window, r.close);
        for name in &names {
            match records.get(*name).and_then(|rs| rs.get(i)) {
                Some(s) => {
                    let _ = write!(out, ",{},{},{}", s.position, s.reward, s.equity);
                }
                None => out.push_str(",,,"),
            }
        }
        out.push('\n');
    }
    out
}

/// Writes `report.json`, `equity.csv` and, with the `plot` feature, `equity`, `drawdown`
/// and `adaptation` charts as PNG and SVG into `dir` (created if missing). Returns the
/// paths written.
///
/// # Errors
/// [`Error::Io`] naming the file, [`Error::Json`], [`Error::Plot`].
pub fn write_report(
    report: &BacktestReport,
    records: &PolicyRecords,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        op: "create dir",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    let json = dir.join("report.json");
    write_file_atomic(&json, &serde_json::to_vec_pretty(report)?)?;
    written.push(json);
    let csv = dir.join("equity.csv");
    write_file_atomic(&csv, equity_csv(report, records).as_bytes())?;
    written.push(csv);
    #[cfg(feature = "plot")]
    written.extend(crate::plot::write_charts(report, records, dir)?);
    tracing::info!(dir = %dir.display(), files = written.len(), "backtest report written");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_names_a_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_file_atomic(&path, b"one").unwrap();
        write_file_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("nope").join("b.txt");
        let err = write_file_atomic(&missing, b"x").unwrap_err();
        assert!(matches!(err, Error::Io { op: "create", .. }), "{err}");
    }
}
