//! CSV and SVG output of the paper's sweeps ([`super::paper::fifo_sweep`],
//! [`super::paper::pe_sweep`]): one line per layer. The SVG charts need the cargo feature
//! `charts` (plotters).

use super::paper::SweepPoint;
#[cfg(feature = "charts")]
use crate::chart::{legend, svg, Drawing, Svg};
use crate::error::{Error, Result};
#[cfg(feature = "charts")]
use plotters::prelude::*;
use std::io::Write;
use std::path::Path;

/// Writes sweep points as CSV (`layer,pes,fifo_depth,cycles,time_us,load_balance_efficiency,
/// speedup`).
///
/// The points come from [`super::paper::sweep`] (or [`fifo_sweep`](super::paper::fifo_sweep),
/// [`pe_sweep`](super::paper::pe_sweep)).
pub fn write_csv(points: &[SweepPoint], path: &Path) -> Result<()> {
    let mut s =
        String::from("layer,pes,fifo_depth,cycles,time_us,load_balance_efficiency,speedup\n");
    for p in points {
        s.push_str(&format!(
            "{},{},{},{},{:.4},{:.4},{:.3}\n",
            p.layer, p.pes, p.fifo_depth, p.cycles, p.time_us, p.load_balance_efficiency, p.speedup
        ));
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(s.as_bytes()))
        .map_err(|e| Error::io(path, e))
}

/// The layers of `points` in first-seen order, each with its points.
#[cfg(feature = "charts")]
fn by_layer(points: &[SweepPoint]) -> Vec<(&str, Vec<&SweepPoint>)> {
    let mut out: Vec<(&str, Vec<&SweepPoint>)> = Vec::new();
    for p in points {
        match out.iter_mut().find(|(l, _)| *l == p.layer) {
            Some((_, v)) => v.push(p),
            None => out.push((&p.layer, vec![p])),
        }
    }
    out
}

/// Draws one line per layer of `y(point)` against `x(point)` on log-2 axes.
#[cfg(feature = "charts")]
#[allow(clippy::too_many_arguments)]
fn draw(
    root: &Svg<'_>,
    points: &[SweepPoint],
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: impl Fn(&SweepPoint) -> f64,
    y: impl Fn(&SweepPoint) -> f64,
    y_log: bool,
) -> Drawing {
    let x_max = points.iter().map(&x).fold(2.0, f64::max);
    let y_max = points.iter().map(&y).fold(1.0, f64::max);
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(65);
    let fmt_x = |v: &f64| format!("{v:.0}");
    let series = by_layer(points);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&fmt_x)
                .draw()?;
            if y_log {
                // The ideal (linear) speed-up.
                chart
                    .draw_series(LineSeries::new(
                        [(1.0, 1.0), (x_max, x_max)],
                        BLACK.mix(0.4).stroke_width(1),
                    ))?
                    .label("linear")
                    .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], BLACK.mix(0.4)));
            }
            for (i, (layer, pts)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let xy: Vec<(f64, f64)> = pts.iter().map(|p| (x(p), y(p))).collect();
                chart
                    .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))?
                    .label(*layer)
                    .legend(move |(a, b)| {
                        PathElement::new(vec![(a, b), (a + 20, b)], color.stroke_width(2))
                    });
                chart.draw_series(xy.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            let position = if y_log {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerRight
            };
            legend(&mut chart, position, 0.85)?;
        }};
    }
    if y_log {
        body!(builder
            .build_cartesian_2d((1f64..x_max).log_scale(), (1f64..y_max * 1.2).log_scale())?);
    } else {
        body!(builder.build_cartesian_2d((1f64..x_max).log_scale(), 0f64..1.0)?);
    }
    Ok(())
}

/// The load-balance chart: efficiency against FIFO depth, one line per layer.
///
/// The points come from [`super::paper::fifo_sweep`].
#[cfg(feature = "charts")]
pub fn fifo_chart(points: &[SweepPoint], pes: usize, path: &Path) -> Result<()> {
    svg(path, (900, 600), |root| {
        draw(
            root,
            points,
            &format!("Load-balance efficiency vs FIFO depth ({pes} PEs)"),
            "FIFO depth (activations)",
            "load-balance efficiency",
            |p| p.fifo_depth as f64,
            |p| p.load_balance_efficiency,
            false,
        )
    })
}

/// The scalability chart: speed-up over one PE against PE count, one line per layer.
///
/// The points come from [`super::paper::pe_sweep`].
#[cfg(feature = "charts")]
pub fn pe_chart(points: &[SweepPoint], fifo_depth: usize, path: &Path) -> Result<()> {
    svg(path, (900, 600), |root| {
        draw(
            root,
            points,
            &format!("Speed-up over 1 PE vs PE count (FIFO depth {fifo_depth})"),
            "processing elements",
            "speed-up over 1 PE",
            |p| p.pes as f64,
            |p| p.speedup,
            true,
        )
    })
}
