//! Charts of a multi-seed study (feature `plot`): lines with a shaded band (a spread across
//! seeds, say), one or several panels per figure, each figure as PNG and SVG.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::{color, register_fonts};
use crate::{Error, Result};

/// Pixel size of one panel; a figure of `n` panels is a grid of them.
const PANEL: (u32, u32) = (900, 500);

/// One line of a [`Panel`], with an optional band around it.
#[derive(Debug, Clone, PartialEq)]
pub struct BandLine {
    /// Legend label; a policy name (`rl2`, `mlp`, `buy_and_hold`, …) also picks the colour
    /// that the backtest charts use for it.
    pub name: String,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
    /// `(x, lo, hi)` of the band, in x order (empty: no band). Drawn translucent under the
    /// line.
    pub band: Vec<(f64, f64, f64)>,
}

/// One chart of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption.
    pub title: String,
    /// X-axis label.
    pub x_desc: String,
    /// Y-axis label.
    pub y_desc: String,
    /// The lines.
    pub lines: Vec<BandLine>,
    /// Label every integer x (episode indices) instead of 10 decimal ticks.
    pub integer_x: bool,
}

/// The bounds of every point and band value of `panel`, padded by 5 % in y; `(0, 1, 0, 1)`
/// when it has none.
fn bounds(panel: &Panel) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    let mut add = |x: f64, y: f64| {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    };
    for line in &panel.lines {
        for &(x, y) in &line.points {
            add(x, y);
        }
        for &(x, lo, hi) in &line.band {
            add(x, lo);
            add(x, hi);
        }
    }
    if !x0.is_finite() {
        return (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    (x0, x1, y0 - pad, y1 + pad)
}

/// A y tick label with enough decimals to tell ticks apart on an axis spanning `span`:
/// ticks about `span / 10` apart need `1 − ⌊log10 span⌋` decimals (0 to 6), and scientific
/// notation below a span of 1e-4.
fn tick_label(y: f64, span: f64) -> String {
    if span > 0.0 && span < 1e-4 {
        return format!("{y:.1e}");
    }
    let decimals = if span > 0.0 {
        (1.0 - span.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{y:.decimals$}")
}

/// Draws `panel` into `area` (the backtest charts of [`crate::write_report`] too).
pub(crate) fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (x0, x1, y0, y1) = bounds(panel);
    let integer_x = panel.integer_x;
    // Iterations and other whole-number x values get whole-number tick labels.
    let whole_x = panel
        .lines
        .iter()
        .all(|l| l.points.iter().all(|(x, _)| x.fract() == 0.0));
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title.as_str(), ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(if integer_x {
            ((x1 - x0) as usize + 1).min(20)
        } else {
            10
        })
        .x_label_formatter(&|x| {
            if integer_x || (whole_x && x.fract() == 0.0) {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .y_label_formatter(&|y| tick_label(*y, y1 - y0))
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for line in &panel.lines {
        let rgb = color(&line.name);
        if !line.band.is_empty() {
            // The band as one closed polygon: the upper edge forward, the lower one back.
            let outline: Vec<(f64, f64)> = line
                .band
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(line.band.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    rgb.mix(0.2).filled(),
                )))
                .map_err(err)?;
        }
        let style = ShapeStyle::from(&rgb).stroke_width(2);
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(err)?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], rgb.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(legend_position(panel, (x0, x1, y0, y1)))
        .draw()
        .map_err(err)
}

/// Where the legend goes: the first of the four corners, then the middle of the left and
/// right edges, that covers the fewest samples of the lines and bands (each segment sampled
/// at 16 points). The legend's box is taken as a quarter of the width and `0.04 + 0.07` of
/// the height per line, about its size on a [`PANEL`]-sized chart.
fn legend_position(panel: &Panel, (x0, x1, y0, y1): (f64, f64, f64, f64)) -> SeriesLabelPosition {
    use SeriesLabelPosition::{
        LowerLeft, LowerRight, MiddleLeft, MiddleRight, UpperLeft, UpperRight,
    };
    let (w, h) = (0.25, (0.04 + 0.07 * panel.lines.len() as f64).min(0.5));
    // Candidate boxes in fractions of the axes: (position, x from, x to, y from, y to).
    let boxes = [
        (UpperLeft, 0.0, w, 1.0 - h, 1.0),
        (UpperRight, 1.0 - w, 1.0, 1.0 - h, 1.0),
        (LowerLeft, 0.0, w, 0.0, h),
        (LowerRight, 1.0 - w, 1.0, 0.0, h),
        (MiddleLeft, 0.0, w, 0.5 - h / 2.0, 0.5 + h / 2.0),
        (MiddleRight, 1.0 - w, 1.0, 0.5 - h / 2.0, 0.5 + h / 2.0),
    ];
    let (dx, dy) = (
        (x1 - x0).max(f64::MIN_POSITIVE),
        (y1 - y0).max(f64::MIN_POSITIVE),
    );
    let mut samples = Vec::new();
    let mut polyline = |points: &mut dyn Iterator<Item = (f64, f64)>| {
        let mut prev: Option<(f64, f64)> = None;
        for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
            let (u, v) = ((x - x0) / dx, (y - y0) / dy);
            match prev {
                Some((pu, pv)) => samples.extend((1..=16).map(|i| {
                    let f = f64::from(i) / 16.0;
                    (pu + f * (u - pu), pv + f * (v - pv))
                })),
                None => samples.push((u, v)),
            }
            prev = Some((u, v));
        }
    };
    for line in &panel.lines {
        polyline(&mut line.points.iter().copied());
        polyline(&mut line.band.iter().map(|&(x, lo, _)| (x, lo)));
        polyline(&mut line.band.iter().map(|&(x, _, hi)| (x, hi)));
    }
    let covered = |&(_, u0, u1, v0, v1): &(SeriesLabelPosition, f64, f64, f64, f64)| {
        samples
            .iter()
            .filter(|&&(u, v)| (u0..=u1).contains(&u) && (v0..=v1).contains(&v))
            .count()
    };
    let mut best = (UpperLeft, usize::MAX);
    for candidate in &boxes {
        let n = covered(candidate);
        if n < best.1 {
            best = (candidate.0.clone(), n);
        }
    }
    best.0
}

/// Rows and columns of the grid for `n` panels: one column up to 2 panels, then two.
fn grid(n: usize) -> (usize, usize) {
    let cols = if n <= 2 { 1 } else { 2 };
    (n.div_ceil(cols).max(1), cols)
}

/// A figure: a title and its panels, drawable on any backend.
struct Figure<'a> {
    title: &'a str,
    panels: &'a [Panel],
}

impl crate::plot::Drawing for Figure<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = grid(self.panels.len());
        (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + 50)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let body = root.titled(self.title, ("sans-serif", 26)).map_err(err)?;
        let (rows, cols) = grid(self.panels.len());
        let areas = body.split_evenly((rows, cols));
        for (area, panel) in areas.iter().zip(self.panels) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(err)
    }
}

/// Writes a figure of `panels` (a grid: one column up to two panels, then two) under a
/// common `title` as `<stem>.png` and `<stem>.svg` in `dir`, each atomically. Returns the
/// two paths.
///
/// # Errors
/// [`Error::InvalidConfig`] for a figure without panels, [`Error::Plot`], [`Error::Io`].
pub fn write_band_figure(
    dir: &Path,
    stem: &str,
    title: &str,
    panels: &[Panel],
) -> Result<Vec<PathBuf>> {
    if panels.is_empty() {
        return Err(Error::InvalidConfig {
            field: "panels",
            value: "[]".into(),
            reason: "a figure needs at least one panel",
        });
    }
    register_fonts();
    let figure = Figure { title, panels };
    crate::plot::write_drawing(dir, stem, &figure)
}

/// Keeps the SVG writer reachable for tests: the figure as SVG text.
#[cfg(test)]
fn svg_text(title: &str, panels: &[Panel]) -> String {
    use crate::plot::Drawing;
    register_fonts();
    let figure = Figure { title, panels };
    let mut text = String::new();
    figure
        .draw(SVGBackend::with_string(&mut text, figure.size()).into_drawing_area())
        .unwrap();
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(lines: Vec<BandLine>) -> Panel {
        Panel {
            title: "t".into(),
            x_desc: "x".into(),
            y_desc: "y".into(),
            lines,
            integer_x: true,
        }
    }

    /// The legend avoids the lines: a falling curve (entropy, KL) gets it top right, a
    /// chart whose corners are all crossed but whose middle is empty (the adaptation
    /// chart) gets it at the middle of an edge.
    #[test]
    fn legend_goes_where_the_lines_are_not() {
        let line = |name: &str, points: Vec<(f64, f64)>| BandLine {
            name: name.into(),
            points,
            band: Vec::new(),
        };
        let falling = panel(vec![
            line(
                "rl2",
                (0..50)
                    .map(|i| (f64::from(i), 1.1 - 0.012 * f64::from(i)))
                    .collect(),
            ),
            line(
                "mlp",
                (0..50)
                    .map(|i| (f64::from(i), 1.1 - 0.009 * f64::from(i)))
                    .collect(),
            ),
        ]);
        let pos = legend_position(&falling, bounds(&falling));
        assert!(matches!(pos, SeriesLabelPosition::UpperRight), "{pos:?}");
        let adaptation = panel(vec![
            line("rl2", vec![(1.0, 27.9), (2.0, 30.4), (3.0, 31.3)]),
            line("mlp", vec![(1.0, 9.1), (2.0, 9.1), (3.0, 9.2)]),
            line("oracle", vec![(1.0, 32.3), (2.0, 32.1), (3.0, 32.4)]),
            line("buy_and_hold", vec![(1.0, 0.2), (2.0, 0.2), (3.0, 0.1)]),
        ]);
        let pos = legend_position(&adaptation, bounds(&adaptation));
        assert!(
            matches!(
                pos,
                SeriesLabelPosition::MiddleLeft | SeriesLabelPosition::MiddleRight
            ),
            "{pos:?}"
        );
    }

    #[test]
    fn bounds_cover_points_and_bands() {
        let p = panel(vec![BandLine {
            name: "rl2".into(),
            points: vec![(1.0, 0.5), (3.0, 1.0)],
            band: vec![(1.0, 0.0, 1.0), (3.0, 0.5, 2.0)],
        }]);
        let (x0, x1, y0, y1) = bounds(&p);
        assert_eq!((x0, x1), (1.0, 3.0));
        assert!((y0 - (0.0 - 0.1)).abs() < 1e-12 && (y1 - 2.1).abs() < 1e-12);
        assert_eq!(bounds(&panel(Vec::new())), (0.0, 1.0, 0.0, 1.0));
    }

    #[test]
    fn tick_labels_resolve_the_axis_span() {
        assert_eq!(tick_label(15.0, 20.0), "15");
        assert_eq!(tick_label(1.25, 0.5), "1.25");
        assert_eq!(tick_label(1.0965, 0.004), "1.0965");
        assert_eq!(tick_label(0.000012, 0.00002), "1.2e-5");
        assert_eq!(tick_label(250.0, 1000.0), "250");
        assert_eq!(tick_label(0.5, 0.0), "0.50");
    }

    #[test]
    fn grid_is_one_column_up_to_two_panels() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (2, 1));
        assert_eq!(grid(4), (2, 2));
        assert_eq!(grid(5), (3, 2));
    }

    #[test]
    fn a_figure_is_written_as_png_and_svg_with_its_band() {
        let dir = tempfile::tempdir().unwrap();
        let line = BandLine {
            name: "rl2".into(),
            points: vec![(1.0, 0.5), (2.0, 1.0), (3.0, 0.8)],
            band: vec![(1.0, 0.2, 0.7), (2.0, 0.6, 1.4), (3.0, 0.5, 1.0)],
        };
        let panels = vec![panel(vec![line.clone()]), panel(vec![line])];
        let written = write_band_figure(dir.path(), "fig", "Figure", &panels).unwrap();
        assert_eq!(written.len(), 2);
        assert!(written.iter().all(|p| p.exists()));
        let svg = svg_text("Figure", &panels);
        assert!(svg.contains("<polygon"), "the band is a polygon");
        let err = write_band_figure(dir.path(), "none", "Figure", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "panels",
                    ..
                }
            ),
            "{err}"
        );
    }
}
