//! Charts of a backtest (feature `plot`): equity against buy-and-hold, drawdown, and the
//! adaptation curve, each as PNG and SVG. Text is drawn with DejaVu Sans (from the
//! `dejavu` crate, registered with plotters once).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::files::write_file_atomic;
use crate::{BacktestReport, Error, PolicyRecords, Result};

/// Chart size in pixels.
const SIZE: (u32, u32) = (1000, 560);

/// One line of a chart.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
}

/// Colour of a policy's line.
fn color(name: &str) -> RGBColor {
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
        _ => RGBColor(188, 189, 34),
    }
}

/// Registers DejaVu Sans as plotters' `sans-serif` font (once per process).
fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        if register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            tracing::warn!("could not register the chart font");
        }
    });
}

/// One chart: file stem, title, axis labels and lines.
struct Chart<'a> {
    stem: &'a str,
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    lines: Vec<Line>,
    /// Label every integer x (episode indices) instead of 10 decimal ticks.
    integer_x: bool,
}

/// Draws `chart` on any backend.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart<'_>,
) -> std::result::Result<(), String> {
    let Chart {
        title,
        x_desc,
        y_desc,
        integer_x,
        ..
    } = *chart;
    let lines = &chart.lines;
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let points = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (x1, y0, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(if integer_x {
            (x1 - x0) as usize + 1
        } else {
            10
        })
        .x_label_formatter(&|x| {
            if integer_x {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for line in lines {
        let style = ShapeStyle::from(&line.color).stroke_width(2);
        let color = line.color;
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(err)?
            .label(line.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Writes one chart as `<stem>.png` and `<stem>.svg` in `dir`, each atomically.
fn write_chart(dir: &Path, chart: &Chart<'_>) -> Result<Vec<PathBuf>> {
    let stem = chart.stem;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let plot_err = |path: &Path| {
        let path = path.to_path_buf();
        move |reason| Error::Plot { path, reason }
    };
    let mut text = String::new();
    draw(
        SVGBackend::with_string(&mut text, SIZE).into_drawing_area(),
        chart,
    )
    .map_err(plot_err(&svg))?;
    write_file_atomic(&svg, text.as_bytes())?;
    // The bitmap backend encodes by file extension: draw to a hidden `.png` and rename.
    let tmp = dir.join(format!(".tmp-{stem}-{}.png", std::process::id()));
    let drawn = draw(BitMapBackend::new(&tmp, SIZE).into_drawing_area(), chart)
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
            color: color(name),
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
                color: color(name),
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
            color: color(name),
        })
        .collect();
    let start = mrl_data::format_timestamp(report.span.start);
    let x_days = format!("days since {start}");
    let charts = [
        Chart {
            stem: "equity",
            title: "Equity over the test period",
            x_desc: &x_days,
            y_desc: "equity",
            lines: equity,
            integer_x: false,
        },
        Chart {
            stem: "drawdown",
            title: "Drawdown",
            x_desc: &x_days,
            y_desc: "drawdown (%)",
            lines: drawdown,
            integer_x: false,
        },
        Chart {
            stem: "adaptation",
            title: "Adaptation curve (mean episode return)",
            x_desc: "episode of the trial (last = evaluation)",
            y_desc: "return (%)",
            lines: adaptation,
            integer_x: true,
        },
    ];
    let mut written = Vec::new();
    for chart in &charts {
        written.extend(write_chart(dir, chart)?);
    }
    Ok(written)
}
