//! What the SVG charts (feature `charts`) share: the file they draw on and its errors, and the
//! legend box. The charts themselves are `bench::speedup_chart`,
//! `compress::sensitivity_chart` and `sim::chart::{fifo_chart, pe_chart}`.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The drawing area of a whole SVG file.
pub(crate) type Svg<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// What drawing returns: plotters' errors, boxed, until [`svg`] maps them to [`Error`].
pub(crate) type Drawing = std::result::Result<(), Box<dyn std::error::Error>>;

/// A chart that fails to draw or to write is an I/O error on its file.
fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

/// Draws the SVG file `path`, `size` pixels: `draw` gets the whole area, filled white; then the
/// file is written. An error on the way is [`draw_err`]'s.
pub(crate) fn svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Svg<'_>) -> Drawing,
) -> Result<()> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    let drawn = || -> Drawing {
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    };
    drawn().map_err(|e| draw_err(path, e))
}

/// Draws the legend of `chart` at `position`, in a black-bordered box of white at opacity
/// `background`.
pub(crate) fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
    background: f64,
) -> Drawing {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(background))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
