//! Planning for the GPU backend that needs no GPU: how many PEs (workgroups) each layer gets, how
//! big layers are tiled against a device's limits, and how batches are split.
//!
//! The kernels in `shaders/` are written against the WebGPU default limits (16 KiB of workgroup
//! memory, 256 invocations per workgroup, 65535 workgroups per dimension); the constants here
//! mirror the sizes fixed in those files, and the planners check a layer against the limits of
//! the device it will run on so that a layer that cannot fit is a typed error, never a bad
//! dispatch.

use crate::error::{Error, Result};

/// Invocations per workgroup of every kernel.
pub const WORKGROUP_SIZE: usize = 256;
/// Input activations one EIE workgroup scans per step of its non-zero compaction
/// (`CHUNK` in `eie_spmv.wgsl`: 8 per invocation).
pub const EIE_CHUNK: usize = 2048;
/// Most rows one EIE PE may own: its accumulators live in workgroup memory
/// (`MAX_LOCAL` in `eie_spmv.wgsl`).
pub const EIE_MAX_LOCAL_ROWS: usize = 1024;
/// Largest codebook the EIE kernel holds in workgroup memory (8-bit indices).
pub const EIE_MAX_CODES: usize = 256;
/// Workgroup memory the EIE kernel declares, in bytes (accumulators, compacted list, scan
/// scratch, codebook, counters).
pub const EIE_WORKGROUP_BYTES: usize = 4 * (EIE_MAX_LOCAL_ROWS + EIE_CHUNK + 256 + 32 + 256 + 1);
const _: () = assert!(
    EIE_WORKGROUP_BYTES <= 16384,
    "the EIE kernel must fit the WebGPU default workgroup memory"
);

/// Rows one dense-GEMV or CSR workgroup computes (32 invocations per row).
pub const ROWS_PER_WORKGROUP: usize = 8;
/// Inputs the dense and CSR kernels compute together per weight load.
pub const BATCH_TILE: usize = 4;
/// Rows per PE the automatic plan aims for: every PE reads the input's non-zero column list and
/// a column pointer pair for every non-zero activation, so fewer, fuller PEs cost less, as long as the
/// PE's rows fit its per-invocation partial sums (16 rows in the kernels).
pub const AUTO_ROWS_PER_PE: usize = 16;
/// Fewest PEs the automatic plan gives a layer with at least this many rows, to keep a large
/// GPU's multiprocessors busy on small layers.
pub const AUTO_MIN_PES: usize = 128;

/// The device limits the planners respect (a copy of the relevant `wgpu::Limits` fields, so the
/// planning builds and is tested without the `gpu` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Most workgroups in one dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Workgroup memory available to one workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
}

impl Default for DeviceLimits {
    /// The WebGPU default limits.
    fn default() -> Self {
        DeviceLimits {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            max_compute_workgroups_per_dimension: 65535,
            max_compute_workgroup_storage_size: 16384,
        }
    }
}

impl DeviceLimits {
    /// The largest single binding the device accepts (binding and buffer limits together).
    pub fn max_binding(&self) -> u64 {
        self.max_storage_buffer_binding_size
            .min(self.max_buffer_size)
    }
}

#[cfg(feature = "gpu")]
impl From<&wgpu::Limits> for DeviceLimits {
    fn from(l: &wgpu::Limits) -> Self {
        DeviceLimits {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        }
    }
}

/// How the number of PEs (= workgroups of the EIE kernel) of each layer is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PePlan {
    /// Chosen per layer by [`auto_pes`] for the device.
    #[default]
    Auto,
    /// The same count for every layer.
    Fixed(usize),
    /// About this many rows per PE in every layer (within the layer's bounds).
    RowsPerPe(usize),
    /// The interleaving stored in the model file.
    File,
}

/// Smallest PE count for which a layer fits the EIE kernel and the device: every PE owns at
/// most [`EIE_MAX_LOCAL_ROWS`] rows. Returns `(min, max)`: `max` is bounded by the workgroups
/// per dispatch dimension and by the size of the per-PE column-pointer binding (PEs beyond the
/// row count are allowed: they own no rows, as in EIE with more PEs than outputs).
pub fn pe_bounds(rows: usize, cols: usize, limits: &DeviceLimits) -> Result<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Err(Error::Shape(format!("empty layer {rows}x{cols}")));
    }
    let min = rows.div_ceil(EIE_MAX_LOCAL_ROWS);
    let by_pointers = (limits.max_binding() / (4 * (cols as u64 + 1))) as usize;
    let max = (limits.max_compute_workgroups_per_dimension as usize).min(by_pointers);
    if min > max {
        return Err(Error::InvalidArgument(format!(
            "a {rows}x{cols} layer needs at least {min} PEs but this device allows at most {max} \
             (workgroups per dimension {}, storage binding {} bytes)",
            limits.max_compute_workgroups_per_dimension,
            limits.max_binding()
        )));
    }
    Ok((min, max))
}

/// The automatic PE count: about [`AUTO_ROWS_PER_PE`] rows per PE but at least
/// [`AUTO_MIN_PES`] (or one per row), within [`pe_bounds`].
pub fn auto_pes(rows: usize, cols: usize, limits: &DeviceLimits) -> Result<usize> {
    let (min, max) = pe_bounds(rows, cols, limits)?;
    let want = rows.div_ceil(AUTO_ROWS_PER_PE).max(AUTO_MIN_PES.min(rows));
    Ok(want.clamp(min, max.min(rows)))
}

/// The PE count a plan gives a layer whose file interleaving is `file_pes`.
pub fn plan_pes(
    plan: PePlan,
    rows: usize,
    cols: usize,
    file_pes: usize,
    limits: &DeviceLimits,
) -> Result<usize> {
    let (min, max) = pe_bounds(rows, cols, limits)?;
    let want = match plan {
        PePlan::Auto => return auto_pes(rows, cols, limits),
        PePlan::Fixed(0) | PePlan::RowsPerPe(0) => {
            return Err(Error::InvalidArgument("PE count must be at least 1".into()))
        }
        PePlan::RowsPerPe(r) => return Ok(rows.div_ceil(r).clamp(min, max.min(rows))),
        PePlan::Fixed(n) => n,
        PePlan::File => file_pes,
    };
    if want < min || want > max {
        return Err(Error::InvalidArgument(format!(
            "{want} PEs for a {rows}x{cols} layer: this device needs {min}..={max}"
        )));
    }
    Ok(want)
}

/// A block of consecutive rows of a dense matrix stored in one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowTile {
    /// First row.
    pub start: usize,
    /// Number of rows.
    pub rows: usize,
}

/// Splits a dense `rows x cols` f32 matrix (rows padded to a multiple of 4 columns) into row
/// tiles that each fit one storage binding and one dispatch.
pub fn dense_tiles(rows: usize, cols: usize, limits: &DeviceLimits) -> Result<Vec<RowTile>> {
    if rows == 0 || cols == 0 {
        return Err(Error::Shape(format!("empty layer {rows}x{cols}")));
    }
    let row_bytes = 4 * cols.next_multiple_of(4) as u64;
    let by_binding = (limits.max_binding() / row_bytes) as usize;
    let by_dispatch = limits.max_compute_workgroups_per_dimension as usize * ROWS_PER_WORKGROUP;
    let per_tile = by_binding.min(by_dispatch);
    if per_tile == 0 {
        return Err(Error::InvalidArgument(format!(
            "one row of {cols} f32 weights ({row_bytes} bytes) exceeds the device's {}-byte \
             storage binding",
            limits.max_binding()
        )));
    }
    Ok((0..rows)
        .step_by(per_tile)
        .map(|start| RowTile {
            start,
            rows: per_tile.min(rows - start),
        })
        .collect())
}

/// Splits `batch` inputs into consecutive runs of at most `max_batch`: `(first, count)`.
pub fn batch_chunks(batch: usize, max_batch: usize) -> Vec<(usize, usize)> {
    let step = max_batch.max(1);
    (0..batch)
        .step_by(step)
        .map(|s| (s, step.min(batch - s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_plan_gives_many_small_pes_within_bounds() {
        let l = DeviceLimits::default();
        assert_eq!(auto_pes(4096, 9216, &l).unwrap(), 256);
        assert_eq!(auto_pes(8791, 600, &l).unwrap(), 550);
        assert_eq!(auto_pes(1000, 4096, &l).unwrap(), 128);
        assert_eq!(auto_pes(1, 1, &l).unwrap(), 1);
        assert_eq!(auto_pes(10, 3, &l).unwrap(), 10);
        // Many rows: capped by the workgroup limit, and never more than 1024 rows per PE.
        let tight = DeviceLimits {
            max_compute_workgroups_per_dimension: 16,
            ..l
        };
        assert_eq!(auto_pes(16 * 1024, 10, &tight).unwrap(), 16);
        assert!(auto_pes(16 * 1024 + 1, 10, &tight).is_err());
    }

    #[test]
    fn pointer_binding_limits_the_pe_count() {
        let l = DeviceLimits {
            max_storage_buffer_binding_size: 4 * 101 * 50,
            ..DeviceLimits::default()
        };
        let (min, max) = pe_bounds(1000, 100, &l).unwrap();
        assert_eq!((min, max), (1, 50));
        // More PEs than rows are allowed (empty PEs), up to the limits.
        assert_eq!(
            pe_bounds(3, 3, &DeviceLimits::default()).unwrap(),
            (1, 65535)
        );
        assert_eq!(auto_pes(1000, 100, &l).unwrap(), 50);
        assert_eq!(auto_pes(100, 100, &l).unwrap(), 50);
        assert!(plan_pes(PePlan::Fixed(60), 1000, 100, 8, &l).is_err());
        assert_eq!(plan_pes(PePlan::File, 1000, 100, 8, &l).unwrap(), 8);
        assert_eq!(plan_pes(PePlan::Fixed(5000), 1000, 100, 8, &l).ok(), None);
        assert!(plan_pes(PePlan::Fixed(0), 10, 10, 1, &l).is_err());
        assert!(plan_pes(PePlan::RowsPerPe(0), 10, 10, 1, &l).is_err());
        assert_eq!(
            plan_pes(PePlan::RowsPerPe(16), 1000, 100, 8, &l).unwrap(),
            50
        );
        assert_eq!(
            plan_pes(PePlan::RowsPerPe(64), 1000, 100, 8, &l).unwrap(),
            16
        );
        assert_eq!(
            plan_pes(PePlan::Fixed(64), 3, 3, 1, &DeviceLimits::default()).unwrap(),
            64
        );
    }

    #[test]
    fn dense_tiles_cover_every_row_once_within_the_binding() {
        let l = DeviceLimits {
            max_storage_buffer_binding_size: 4 * 12 * 7,
            ..DeviceLimits::default()
        };
        // 10 columns pad to 12: 7 rows per binding.
        let t = dense_tiles(20, 10, &l).unwrap();
        assert_eq!(
            t,
            vec![
                RowTile { start: 0, rows: 7 },
                RowTile { start: 7, rows: 7 },
                RowTile { start: 14, rows: 6 }
            ]
        );
        assert!(dense_tiles(20, 100, &l).is_err());
        assert_eq!(
            dense_tiles(5, 5, &DeviceLimits::default()).unwrap().len(),
            1
        );
        // VGG-6 in f32 (411 MB) needs four 128 MiB bindings.
        assert_eq!(
            dense_tiles(4096, 25088, &DeviceLimits::default())
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn batch_chunks_split_evenly() {
        assert_eq!(batch_chunks(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(batch_chunks(3, 8), vec![(0, 3)]);
        assert_eq!(batch_chunks(0, 8), vec![]);
    }
}
