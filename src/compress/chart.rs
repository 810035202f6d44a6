//! The sensitivity chart (SVG): for each layer, the whole network's quality on the calibration
//! inputs with only that layer compressed, against density (log scale), one line per codebook
//! width; the uncompressed network's quality is the dashed line.

use super::LayerSensitivity;
use crate::chart::{legend, svg};
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// Writes the sensitivity chart of `layers` to `path`. `metric` names the y axis; `dense` is
/// the uncompressed network's value of it.
///
/// The layers are [`SearchResult::sensitivity`](super::SearchResult::sensitivity); `eie
/// compress` writes this chart after a search.
pub fn sensitivity_chart(
    layers: &[LayerSensitivity],
    metric: &str,
    dense: f64,
    path: &Path,
) -> Result<()> {
    let points = layers.iter().flat_map(|l| &l.points);
    let (mut lo, mut hi) = (dense, dense);
    let (mut dmin, mut dmax) = (1f64, 1f64);
    for p in points {
        lo = lo.min(p.metric);
        hi = hi.max(p.metric);
        dmin = dmin.min(p.density);
        dmax = dmax.max(p.density);
    }
    if layers.iter().all(|l| l.points.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "drawing {}: no sensitivity points",
            path.display()
        )));
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    let width = 380 * layers.len().clamp(1, 4) as u32;
    let rows = layers.len().div_ceil(4) as u32;
    svg(path, (width, 360 * rows), |root| {
        let panels = root.split_evenly((rows as usize, layers.len().min(4)));
        for (layer, panel) in layers.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(panel)
                .caption(&layer.name, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d((dmin * 0.9..dmax * 1.1).log_scale(), lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("density (log scale)")
                .y_desc(metric)
                .x_label_formatter(&|d| format!("{:.0}%", d * 100.0))
                .draw()?;
            chart
                .draw_series(DashedLineSeries::new(
                    [(dmin * 0.9, dense), (dmax * 1.1, dense)],
                    4,
                    4,
                    BLACK.stroke_width(1),
                ))?
                .label("uncompressed")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK));
            let mut widths: Vec<u8> = layer.points.iter().map(|p| p.bits).collect();
            widths.sort_unstable();
            widths.dedup();
            for (s, &bits) in widths.iter().enumerate() {
                let color = Palette99::pick(s).to_rgba();
                let mut line: Vec<(f64, f64)> = layer
                    .points
                    .iter()
                    .filter(|p| p.bits == bits)
                    .map(|p| (p.density, p.metric))
                    .collect();
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                    .label(format!("{bits} bits"))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color));
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
            }
            legend(&mut chart, SeriesLabelPosition::LowerRight, 0.8)?;
        }
        Ok(())
    })
}
