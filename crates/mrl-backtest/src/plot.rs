//! Charts of a backtest (feature `plot`): equity against buy-and-hold, drawdown, and the
//! adaptation curve, each as PNG and SVG. Text is drawn with DejaVu Sans (from the
//! `dejavu` crate, registered with plotters once).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::files::write_file_atomic;
use crate::study_plot::draw_panel;
use crate::{BacktestReport, BandLine as Line, Error, Panel, PolicyRecords, Result};

/// Chart size in pixels.
const SIZE: (u32, u32) = (1000, 560);

/// Colour of a policy's line.
pub(crate) fn color(name: &str) -> RGBColor {
    match name {
        "rl2" => RGBColor(31, 119, 180),
        "mlp" => RGBColor(255, 127, 14),
        "oracle" => RGBColor(44, 160, 44),
        "buy_and_hold" => RGBColor(90, 90, 90),
        "flat" => RGBColor(170, 170, 170),
        "random" => RGBColor(214, 39, 40),
        "ts_momentum" => RGBColor(148, 103, 189),
        "ma_crossover" => RGBColor(140, 86, 75),
        "macd" => RGBColor(227, 119, 194),
        "rsi_reversion" => RGBColor(23, 190, 207),
        // The further agents of a study (mrl study --others).
        "transformer" => RGBColor(128, 0, 128),
        "task_inference" => RGBColor(0, 128, 128),
        // The belief chart of examples/belief_ar1.rs: the belief as the agent, the truth as
        // the oracle, episode boundaries in grey.
        "belief about φ (mean ± 2 sd)" => RGBColor(31, 119, 180),
        "true φ" => RGBColor(44, 160, 44),
        n if n.starts_with("end of episode") => RGBColor(150, 150, 150),
        // The few-shot benchmark's initialisations (mrl eval fewshot); scratch takes the
        // default.
        "meta" => RGBColor(220, 20, 60),
        "pretrain" => RGBColor(255, 165, 0),
        _ => RGBColor(188, 189, 34),
    }
}

/// Registers DejaVu Sans as plotters' `sans-serif` font (once per process).
pub(crate) fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        if register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            tracing::warn!("could not register the chart font");
        }
    });
}

/// One chart: file stem and its panel.
struct Chart<'a> {
    stem: &'a str,
    panel: Panel,
}

/// Draws `chart` on any backend.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart<'_>,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    draw_panel(&root, &chart.panel)?;
    root.present().map_err(err)
}

/// Something drawable on any plotters backend at a fixed pixel size.
pub(crate) trait Drawing {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws onto `root` (and presents it).
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>;
}

impl Drawing for Chart<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> std::result::Result<(), String> {
        draw(root, self)
    }
}

/// Writes one chart as `<stem>.png` and `<stem>.svg` in `dir`, each atomically.
fn write_chart(dir: &Path, chart: &Chart<'_>) -> Result<Vec<PathBuf>> {
    write_drawing(dir, chart.stem, chart)
}

/// Writes `drawing` as `<stem>.png` and `<stem>.svg` in `dir`, each atomically.
pub(crate) fn write_drawing(
    dir: &Path,
    stem: &str,
    drawing: &impl Drawing,
) -> Result<Vec<PathBuf>> {
    let size = drawing.size();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let plot_err = |path: &Path| {
        let path = path.to_path_buf();
        move |reason| Error::Plot { path, reason }
    };
    let mut text = String::new();
    drawing
        .draw(SVGBackend::with_string(&mut text, size).into_drawing_area())
        .map_err(plot_err(&svg))?;
    write_file_atomic(&svg, text.as_bytes())?;
    // The bitmap backend encodes by file extension: draw to a hidden `.png` and rename.
    let tmp = dir.join(format!(".tmp-{stem}-{}.png", std::process::id()));
    let drawn = drawing
        .draw(BitMapBackend::new(&tmp, size).into_drawing_area())
        .map_err(plot_err(&png))
        .and_then(|()| {
            std::fs::rename(&tmp, &png).map_err(|source| Error::Io {
                op: "rename",
                path: png.clone(),
                source,
            })
        });
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn?;
    Ok(vec![png, svg])
}

/// Writes `equity`, `drawdown` and `adaptation` charts (PNG and SVG) into `dir`.
///
/// # Errors
/// [`Error::Plot`], [`Error::Io`].
pub(crate) fn write_charts(
    report: &BacktestReport,
    records: &PolicyRecords,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    register_fonts();
    let shown: Vec<&str> = report
        .ordered()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !matches!(*n, "flat" | "random") && records.contains_key(*n))
        .collect();
    let days = |ts: i64| (ts - report.span.start) as f64 / mrl_data::DAY_MS as f64;
    let equity: Vec<Line> = shown
        .iter()
        .map(|&name| Line {
            name: name.into(),
            points: records[name]
                .iter()
                .map(|r| (days(r.timestamp), r.equity))
                .collect(),
            band: Vec::new(),
        })
        .collect();
    let drawdown: Vec<Line> = shown
        .iter()
        .map(|&name| {
            let mut peak = 1.0_f64;
            let points = records[name]
                .iter()
                .map(|r| {
                    peak = peak.max(r.equity);
                    (days(r.timestamp), 100.0 * (r.equity / peak - 1.0))
                })
                .collect();
            Line {
                name: name.into(),
                points,
                band: Vec::new(),
            }
        })
        .collect();
    let adaptation: Vec<Line> = report
        .ordered()
        .into_iter()
        .filter(|(n, _)| *n != "flat")
        .map(|(name, p)| Line {
            name: name.into(),
            points: p
                .adaptation_curve
                .iter()
                .enumerate()
                .map(|(e, &r)| (e as f64 + 1.0, 100.0 * r))
                .collect(),
            band: Vec::new(),
        })
        .collect();
    let start = mrl_data::format_timestamp(report.span.start);
    let x_days = format!("days since {start}");
    let charts = [
        Chart {
            stem: "equity",
            panel: Panel {
                title: "Equity over the test period".into(),
                x_desc: x_days.to_string(),
                y_desc: "equity".into(),
                lines: equity,
                integer_x: false,
            },
        },
        Chart {
            stem: "drawdown",
            panel: Panel {
                title: "Drawdown".into(),
                x_desc: x_days.to_string(),
                y_desc: "drawdown (%)".into(),
                lines: drawdown,
                integer_x: false,
            },
        },
        Chart {
            stem: "adaptation",
            panel: Panel {
                title: "Adaptation curve (mean episode return)".into(),
                x_desc: "episode of the trial (last = evaluation)".to_string(),
                y_desc: "return (%)".into(),
                lines: adaptation,
                integer_x: true,
            },
        },
    ];
    let mut written = Vec::new();
    for chart in &charts {
        written.extend(write_chart(dir, chart)?);
    }
    Ok(written)
}
