//! The speed-up chart: for one batch size, each kernel's speed-up over the dense kernel of the
//! same device, per layer, as grouped bars on a log scale (SVG).

use super::WorkloadResult;
use crate::chart::{legend, svg};
use crate::error::{Error, Result};
use crate::kernel_id::{KernelId, KernelKind};
use plotters::prelude::*;
use std::path::Path;

/// The dense baseline a kernel is compared with: the dense kernel of its own device (none for
/// a dense kernel itself).
fn dense_of(kernel: KernelId) -> Option<KernelId> {
    (kernel.kind != KernelKind::Dense).then(|| kernel.dense_of())
}

/// Writes the chart of speed-ups over dense at `batch` to `path` (SVG).
///
/// The results come from [`super::run()`] (feature `charts`).
pub fn speedup_chart(results: &[WorkloadResult], batch: usize, path: &Path) -> Result<()> {
    let rows: Vec<&WorkloadResult> = results.iter().filter(|r| r.batch == batch).collect();
    let mut series: Vec<KernelId> = Vec::new();
    for r in &rows {
        for k in &r.kernels {
            if dense_of(k.kernel).is_some() && !series.contains(&k.kernel) {
                series.push(k.kernel);
            }
        }
    }
    let value = |r: &WorkloadResult, k: KernelId| -> Option<f64> {
        Some(r.median_us(dense_of(k)?)? / r.median_us(k)?)
    };
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| series.iter().filter_map(|&k| value(r, k)))
        .collect();
    if values.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no speed-ups over a dense kernel to chart at batch {batch}"
        )));
    }
    let lo = values
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        / 1.5;
    let hi = values.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.5;
    let n = rows.len();
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    svg(path, (1000, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Speed-up over the dense f32 kernel of the same device, batch {batch}"),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            // Groups are centred on integers; only integer key points get a layer name.
            .x_labels(2 * n + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("speed-up (×, log scale)")
            .draw()?;
        let width = 0.8 / series.len().max(1) as f64;
        for (s, kernel) in series.iter().enumerate() {
            let color = Palette99::pick(s).to_rgba();
            let bars: Vec<Rectangle<(f64, f64)>> = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let v = value(r, *kernel)?;
                    let x0 = i as f64 - 0.4 + s as f64 * width;
                    Some(Rectangle::new([(x0, lo), (x0 + width, v)], color.filled()))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(kernel.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart.draw_series(LineSeries::new(
            [(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.stroke_width(1),
        ))?;
        legend(&mut chart, SeriesLabelPosition::UpperRight, 0.8)
    })
}
