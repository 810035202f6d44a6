//! Planning for the GPU backend that needs no GPU: how many PEs (workgroups) each layer gets, how
//! big layers are tiled against a device's limits, and how batches are split.
//!
//! The kernels in `shaders/` are written against the WebGPU default limits (16 KiB of workgroup
//! memory, 256 invocations per workgroup, 65535 workgroups per dimension); the sizes they share
//! with the host are the constants here, passed to them as override constants (or, where WGSL
//! needs a constant, checked against them by `tests/shaders.rs`), and the planners check a layer
//! against the limits of the device it will run on so that a layer that cannot fit is a typed
//! error, never a bad dispatch.
//!
//! Start with [`EieLayerPlan::new`] for one layer on a device's [`DeviceLimits`] (what the GPU
//! engine plans); [`cost`] models what it costs (`eie plan`), and [`dense_tiles`] splits the
//! dense baseline.

use crate::error::{Error, Result};

pub mod cost;

/// Invocations per workgroup of every kernel.
///
/// Shared with every kernel in `shaders/` (see the [module docs](self)).
pub const WORKGROUP_SIZE: usize = 256;
/// Workgroup-memory words the EIE kernel keeps accumulators in at the WebGPU default limit
/// (16 KiB; `ACC_WORDS` of `eie_spmv.wgsl` is sized per device by
/// [`DeviceLimits::eie_acc_words`]): one copy of a PE's local rows per column group and input
/// of a tile.
pub const EIE_ACC_WORDS: usize = 2560;
/// Listed columns one EIE workgroup compacts at a time, over the inputs of a tile
/// (`LIST_WORDS` in `eie_spmv.wgsl`: a chunk is `LIST_WORDS / tile` columns).
///
/// Shared with the kernels (see the [module docs](self)); [`EieLaunch`] plans with it.
pub const EIE_LIST_WORDS: usize = 512;
/// Most inputs one EIE workgroup computes together when the batch is larger than one: each
/// column's entries are decoded once for the whole tile.
///
/// The default [`DeviceLimits::batch_tile`]; see [`EieLaunch`].
pub const EIE_BATCH_TILE: usize = 4;
/// Most rows one EIE PE may own: a tile's accumulators must fit with one column group at the
/// default limit.
///
/// [`pe_bounds`] gives a layer at least `rows / EIE_MAX_LOCAL_ROWS` PEs (rounded up).
pub const EIE_MAX_LOCAL_ROWS: usize = EIE_ACC_WORDS / EIE_BATCH_TILE;
/// Most column groups of an EIE workgroup (at least 16 lanes share a column slice).
///
/// A [`ScheduleOverride`] may force at most this many; see [`EieLaunch`].
pub const EIE_MAX_GROUPS: usize = 16;
/// Largest codebook the EIE kernel holds in workgroup memory (8-bit indices).
///
/// Counted in [`EIE_FIXED_WORKGROUP_WORDS`].
pub const EIE_MAX_CODES: usize = 256;
/// Workgroup-memory words of the EIE kernel besides its accumulators: listed columns and their
/// activations, codebook, bitmap words, per-group counts and the step count.
///
/// See [`EIE_WORKGROUP_BYTES`].
pub const EIE_FIXED_WORKGROUP_WORDS: usize =
    2 * EIE_LIST_WORDS + EIE_MAX_CODES + EIE_LIST_WORDS / 32 + EIE_MAX_GROUPS + 1;
/// Workgroup memory the EIE kernel declares at the default limit, in bytes.
///
/// See [`DeviceLimits::eie_acc_words`].
pub const EIE_WORKGROUP_BYTES: usize = 4 * (EIE_ACC_WORDS + EIE_FIXED_WORKGROUP_WORDS);
const _: () = assert!(
    EIE_WORKGROUP_BYTES <= 16384,
    "the EIE kernel must fit the WebGPU default workgroup memory"
);
/// Bytes of column pointers one EIE workgroup reads per listed column (the pair `p[j]`,
/// `p[j + 1]` of its PE).
///
/// Used by [`auto_pes`] with `EIE_METADATA_SHARE`.
pub const EIE_POINTER_BYTES: usize = 8;
/// The share of a layer's entry bytes the automatic plan lets pointer reads take: it picks
/// the most PEs for which `PEs * EIE_POINTER_BYTES <= EIE_METADATA_SHARE * entry bytes per
/// column`, so that metadata stays below the entries it locates.
///
/// Used by [`auto_pes`] ([`PePlan::Auto`]).
// Unstable: a scheduling heuristic, public for the crate's own benches and tests only (hidden
// from the documentation; it may change in any release).
#[doc(hidden)]
pub const EIE_METADATA_SHARE: f64 = 0.7;
/// Workgroups the scheduler aims for per EIE dispatch on a GPU: columns are split into slices
/// until PEs × slices × tiles reaches it, to fill a large GPU at batch 1.
///
/// [`DeviceLimits::target_workgroups`] on a GPU; see [`eie_launches`].
// Unstable: a scheduling heuristic, public for the crate's own benches and tests only (hidden
// from the documentation; it may change in any release).
#[doc(hidden)]
pub const EIE_TARGET_WORKGROUPS: usize = 1024;
/// The same aim on a CPU adapter (lavapipe, WARP), which runs a workgroup's invocations as
/// loops on a few cores: every workgroup and barrier costs microseconds there, so a few large
/// workgroups per core serve it better.
///
/// [`DeviceLimits::for_cpu_adapter`] sets it.
// Unstable: a scheduling heuristic, public for the crate's own benches and tests only (hidden
// from the documentation; it may change in any release).
#[doc(hidden)]
pub const EIE_TARGET_WORKGROUPS_CPU: usize = 32;

/// Invocations per row of the row walk (`LANES` of `eie_spmv_rows.wgsl`) on a GPU: a row's
/// entries are read coalesced by its lanes and their sums reduced in a tree.
///
/// [`DeviceLimits::row_lanes`] on a GPU.
pub const EIE_ROW_LANES: usize = 32;
/// The row walk stores 16-bit entries (8-bit runs) where their bytes, padding included, are at
/// most this share of the 8-bit entries' (4-bit runs): sparse rows whose long gaps would need
/// many padding entries.
///
/// See [`Walk::Rows`].
// Unstable: a scheduling heuristic, public for the crate's own benches and tests only (hidden
// from the documentation; it may change in any release).
#[doc(hidden)]
pub const EIE_ROW_WIDE_SHARE: f64 = 1.25;

/// Rows one dense-GEMV or CSR workgroup computes (32 invocations per row).
///
/// See [`dense_tiles`].
pub const ROWS_PER_WORKGROUP: usize = 8;
/// Inputs the dense and CSR kernels compute together per weight load.
///
/// Shared with the dense and CSR kernels (see the [module docs](self)).
pub const BATCH_TILE: usize = 4;

/// The device limits the planners respect (a copy of the relevant `wgpu::Limits` fields, so the
/// planning builds and is tested without the `gpu` feature).
///
/// Every planner here takes them ([`EieLayerPlan::new`], [`dense_tiles`]);
/// [`DeviceLimits::for_cpu_adapter`] adjusts them for a CPU adapter.
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
    /// Workgroups an EIE dispatch should aim for on this device (`EIE_TARGET_WORKGROUPS`,
    /// or `EIE_TARGET_WORKGROUPS_CPU` on a CPU adapter).
    pub target_workgroups: usize,
    /// Inputs per EIE workgroup at batch > 1 ([`EIE_BATCH_TILE`], on CPU adapters too: each
    /// entry decoded once for the tile; not yet measured against single inputs there).
    pub batch_tile: usize,
    /// Invocations per row of the row walk ([`EIE_ROW_LANES`]; 1 on a CPU adapter, whose
    /// invocations are SIMD lanes: each walks its row serially, with no reduction).
    pub row_lanes: usize,
    /// The walk of a layer when none is forced: EIE's column walk on a GPU; the row walk on a
    /// CPU adapter, where the serial row walk took 1/8 to 1/30 of the column walk's time on the
    /// paper's layers at batch 1 although the column walk skips their zero activations
    /// (lavapipe, `BENCHMARKS.md`).
    pub walk: Walk,
}

impl Default for DeviceLimits {
    /// The WebGPU default limits.
    fn default() -> Self {
        DeviceLimits {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            max_compute_workgroups_per_dimension: 65535,
            max_compute_workgroup_storage_size: 16384,
            target_workgroups: EIE_TARGET_WORKGROUPS,
            batch_tile: EIE_BATCH_TILE,
            row_lanes: EIE_ROW_LANES,
            walk: Walk::Columns,
        }
    }
}

impl DeviceLimits {
    /// The same limits with the parameters of a CPU adapter (lavapipe, WARP):
    /// `EIE_TARGET_WORKGROUPS_CPU` and the row walk with one invocation per row.
    pub fn for_cpu_adapter(self) -> Self {
        DeviceLimits {
            target_workgroups: EIE_TARGET_WORKGROUPS_CPU,
            row_lanes: 1,
            walk: Walk::Rows,
            ..self
        }
    }

    /// Accumulator words the EIE kernel may declare on this device: its workgroup memory less
    /// the kernel's other arrays, in multiples of 256 words ([`EIE_ACC_WORDS`] at the WebGPU
    /// default of 16 KiB; 6656 with 32 KiB, 10752 with 48 KiB).
    pub fn eie_acc_words(&self) -> usize {
        (self.max_compute_workgroup_storage_size as usize / 4)
            .saturating_sub(EIE_FIXED_WORKGROUP_WORDS)
            / 256
            * 256
    }

    /// The largest single binding the device accepts (binding and buffer limits together).
    ///
    /// [`dense_tiles`] splits matrices to fit it.
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
            target_workgroups: EIE_TARGET_WORKGROUPS,
            batch_tile: EIE_BATCH_TILE,
            row_lanes: EIE_ROW_LANES,
            walk: Walk::Columns,
        }
    }
}

/// How the number of PEs of each layer is chosen on the GPU (each PE is a row of
/// workgroups of the EIE kernel, one per column slice).
///
/// Resolved per layer by [`plan_pes`]; the GPU engine's options (`gpu::EngineOptions::pes`,
/// feature `gpu`) and `eie plan --pes` set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PePlan {
    /// Chosen per layer by [`auto_pes`]: the most PEs whose column pointers stay within
    /// `EIE_METADATA_SHARE` of the layer's entry bytes.
    #[default]
    Auto,
    /// The same count for every layer.
    Fixed(usize),
    /// About this many rows per PE in every layer (within the layer's bounds).
    RowsPerPe(usize),
    /// The interleaving stored in the model file.
    File,
}

/// The PE counts a layer can run with on a device: `(min, max)`. Every PE owns at most
/// [`EIE_MAX_LOCAL_ROWS`] rows; `max` is bounded by the workgroups per dispatch dimension and
/// by the size of the column-pointer binding (PEs beyond the row count are allowed: they own
/// no rows, as in EIE with more PEs than outputs).
pub fn pe_bounds(rows: usize, cols: usize, limits: &DeviceLimits) -> Result<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Err(Error::Shape(format!("empty layer {rows}x{cols}")));
    }
    let min = rows.div_ceil(EIE_MAX_LOCAL_ROWS);
    let by_pointers = (limits.max_binding() / (4 * (cols as u64 + 1))) as usize;
    let max = (limits.max_compute_workgroups_per_dimension as usize).min(by_pointers);
    if min > max {
        return Err(Error::LimitExceeded {
            what: format!(
                "the PEs a {rows}x{cols} layer needs (this device allows at most {max}: \
                 workgroups per dimension {}, storage binding {} bytes)",
                limits.max_compute_workgroups_per_dimension,
                limits.max_binding()
            ),
            value: min as u64,
            limit: max as u64,
        });
    }
    Ok((min, max))
}

/// The automatic PE count of a layer whose entries take `entry_bytes` in all: the most PEs
/// for which one pointer pair per PE and listed column ([`EIE_POINTER_BYTES`]) stays within
/// `EIE_METADATA_SHARE` of the entry bytes of an average column, within [`pe_bounds`] and
/// never more than the rows.
pub fn auto_pes(
    rows: usize,
    cols: usize,
    entry_bytes: usize,
    limits: &DeviceLimits,
) -> Result<usize> {
    let (min, max) = pe_bounds(rows, cols, limits)?;
    Ok(auto_pes_within(rows, cols, entry_bytes, min, max))
}

/// [`auto_pes`] within device bounds already known.
fn auto_pes_within(rows: usize, cols: usize, entry_bytes: usize, min: usize, max: usize) -> usize {
    let per_col = entry_bytes as f64 / cols as f64;
    let want = (EIE_METADATA_SHARE * per_col / EIE_POINTER_BYTES as f64).floor() as usize;
    clamp_pes(want, rows, min, max)
}

/// `want` PEs brought within the device's `min..=max` and never above the rows (unless the
/// device's minimum is).
fn clamp_pes(want: usize, rows: usize, min: usize, max: usize) -> usize {
    want.min(rows).clamp(min, max.min(rows).max(min))
}

/// The PE count a plan gives a layer whose file interleaving is `file_pes` and whose entries
/// take `entry_bytes`.
///
/// See [`PePlan`] and [`pe_bounds`].
pub fn plan_pes(
    plan: PePlan,
    rows: usize,
    cols: usize,
    file_pes: usize,
    entry_bytes: usize,
    limits: &DeviceLimits,
) -> Result<usize> {
    let (min, max) = pe_bounds(rows, cols, limits)?;
    let want = match plan {
        PePlan::Auto => return Ok(auto_pes_within(rows, cols, entry_bytes, min, max)),
        PePlan::Fixed(0) | PePlan::RowsPerPe(0) => {
            return Err(Error::InvalidArgument("PE count must be at least 1".into()))
        }
        PePlan::RowsPerPe(r) => return Ok(clamp_pes(rows.div_ceil(r), rows, min, max)),
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

/// How the EIE kernels walk a layer's codes.
///
/// Chosen by [`EieLayerPlan::new`] or forced by [`ScheduleOverride`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub enum Walk {
    /// EIE's dataflow (`eie_spmv.wgsl`): the columns of the non-zero activations only, each PE
    /// accumulating into its own rows ("push").
    #[default]
    Columns,
    /// The same codes stored row by row (`eie_spmv_rows.wgsl`): each row gathers its
    /// activations ("pull"), zero or not; for layers whose inputs are mostly non-zero.
    Rows,
}

impl Walk {
    /// `columns` or `rows`.
    ///
    /// See [`Walk`].
    pub fn name(self) -> &'static str {
        match self {
            Walk::Columns => "columns",
            Walk::Rows => "rows",
        }
    }
}

/// The environment variable [`ScheduleOverride::from_env`] reads.
pub const SCHEDULE_ENV: &str = "EIE_GPU_SCHEDULE";

/// A schedule forced instead of the one the planner would pick for the device, so that every
/// path of the kernels can be run (and timed) on any adapter: in code
/// (`EngineOptions::schedule`) or from the environment ([`SCHEDULE_ENV`]), written as
/// comma-separated `key=value` pairs, e.g. `walk=columns,tile=4,slices=8,groups=4`:
///
/// | key | values | what it forces |
/// |---|---|---|
/// | `walk` | `columns`, `rows` | the walk of every layer |
/// | `tile` | 1 to [`EIE_BATCH_TILE`] | inputs per workgroup at batch > 1 |
/// | `slices` | ≥ 1 | column slices per PE (the column walk; fewer when the layer has fewer 32-column words) |
/// | `groups` | 1, 2, 4, 8, 16 | column groups per workgroup (the column walk) |
/// | `lanes` | 1, 2, 4, 8, 16, 32 | invocations per row (the row walk) |
/// | `target` | ≥ 1 | workgroups a dispatch aims for when `slices` is not given |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleOverride {
    /// The walk of every layer.
    pub walk: Option<Walk>,
    /// Inputs per workgroup at batch > 1.
    pub tile: Option<usize>,
    /// Column slices per PE.
    pub slices: Option<usize>,
    /// Column groups per workgroup.
    pub groups: Option<usize>,
    /// Invocations per row of the row walk.
    pub lanes: Option<usize>,
    /// Workgroups per dispatch to aim for.
    pub target: Option<usize>,
}

impl ScheduleOverride {
    /// The override in [`SCHEDULE_ENV`], or none when it is unset or empty; a malformed value
    /// is an error (never silently ignored).
    pub fn from_env() -> Result<Self> {
        match std::env::var(SCHEDULE_ENV) {
            Ok(v) => v
                .parse()
                .map_err(|e: Error| Error::InvalidArgument(format!("{SCHEDULE_ENV}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(e) => Err(Error::InvalidArgument(format!("{SCHEDULE_ENV}: {e}"))),
        }
    }

    /// Each setting of `self`, else the one of `other`.
    ///
    /// See [`ScheduleOverride::from_env`].
    pub fn or(self, other: Self) -> Self {
        ScheduleOverride {
            walk: self.walk.or(other.walk),
            tile: self.tile.or(other.tile),
            slices: self.slices.or(other.slices),
            groups: self.groups.or(other.groups),
            lanes: self.lanes.or(other.lanes),
            target: self.target.or(other.target),
        }
    }

    /// Whether nothing is forced.
    ///
    /// See [`ScheduleOverride`].
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl std::str::FromStr for ScheduleOverride {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut o = ScheduleOverride::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| Error::InvalidArgument(format!("`{part}` is not key=value")))?;
            let (key, value) = (key.trim(), value.trim());
            let number = |lo: usize, hi: usize, pow2: bool| -> Result<usize> {
                let n: usize = value.parse().map_err(|_| {
                    Error::InvalidArgument(format!("{key}={value}: not a whole number"))
                })?;
                if n < lo || n > hi || (pow2 && !n.is_power_of_two()) {
                    let kind = if pow2 { "a power of two " } else { "" };
                    return Err(Error::InvalidArgument(format!(
                        "{key}={value}: must be {kind}in {lo}..={hi}"
                    )));
                }
                Ok(n)
            };
            match key {
                "walk" => {
                    o.walk = Some(match value {
                        "columns" | "cols" => Walk::Columns,
                        "rows" => Walk::Rows,
                        _ => {
                            return Err(Error::InvalidArgument(format!(
                                "walk={value}: expected `columns` or `rows`"
                            )))
                        }
                    })
                }
                "tile" => o.tile = Some(number(1, EIE_BATCH_TILE, false)?),
                "slices" => o.slices = Some(number(1, 65535, false)?),
                "groups" => o.groups = Some(number(1, EIE_MAX_GROUPS, true)?),
                "lanes" => o.lanes = Some(number(1, EIE_ROW_LANES, true)?),
                "target" => o.target = Some(number(1, 1 << 24, false)?),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown key `{key}` (walk, tile, slices, groups, lanes, target)"
                    )))
                }
            }
        }
        Ok(o)
    }
}

impl std::fmt::Display for ScheduleOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(w) = self.walk {
            parts.push(format!("walk={}", w.name()));
        }
        for (k, v) in [
            ("tile", self.tile),
            ("slices", self.slices),
            ("groups", self.groups),
            ("lanes", self.lanes),
            ("target", self.target),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        f.write_str(&parts.join(","))
    }
}

/// How one EIE dispatch covers a layer: the specialisation of `eie_spmv.wgsl` (`TILE`,
/// `GROUPS`) and the column slices.
///
/// Made by [`eie_launches`]; [`EieLayerPlan::launch`] picks one per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EieLaunch {
    /// Inputs per workgroup (1 at batch 1, the device's batch tile otherwise).
    pub tile: usize,
    /// Column groups per workgroup: group g walks the listed columns j with j % groups == g.
    pub groups: usize,
    /// Lanes that share one column slice of one input (`256 / (groups * tile)`).
    pub lanes: usize,
    /// Column slices S: workgroups per PE and tile. With S > 1 the partial sums are added by
    /// a second dispatch (`eie_reduce.wgsl`).
    pub slices: usize,
    /// Columns per slice (a multiple of 32).
    pub slice_cols: usize,
    /// Accumulator words the workgroup declares (`ACC_WORDS` of `eie_spmv.wgsl`): groups ×
    /// tile × local rows, rounded up to a multiple of 512 within the device's
    /// [`DeviceLimits::eie_acc_words`], so that few pipelines serve many layers and no
    /// workgroup holds more workgroup memory than it uses.
    pub acc_words: usize,
}

impl EieLaunch {
    /// Workgroups along x (slices × PEs) and y (tiles) for `batch` inputs.
    ///
    /// See [`EieLaunch::dispatches`].
    pub fn grid(&self, pes: usize, batch: usize) -> (usize, usize) {
        (self.slices * pes, batch.div_ceil(self.tile).max(1))
    }

    /// Dispatches per run: the walk, and the reduction of the partial sums when the columns
    /// are split.
    ///
    /// See [`EieLaunch::grid`].
    pub fn dispatches(&self) -> u32 {
        if self.slices > 1 {
            2
        } else {
            1
        }
    }
}

/// The launches of a layer with `pes` PEs, for one input and for tiles of inputs. Both share
/// the column groups and the slices, so that each input's terms are added in one order
/// whatever else is in its batch: as many groups as the batched tile's accumulators allow (at
/// most [`EIE_MAX_GROUPS`] / tile), and columns split into slices until a single input's
/// dispatch has about `limits.target_workgroups` workgroups; `ov` forces any of these.
pub fn eie_launches(
    rows: usize,
    cols: usize,
    pes: usize,
    limits: &DeviceLimits,
    ov: &ScheduleOverride,
) -> Result<(EieLaunch, EieLaunch)> {
    if rows == 0 || cols == 0 || pes == 0 {
        return Err(Error::Shape(format!(
            "empty EIE launch: {rows}x{cols}, {pes} PEs"
        )));
    }
    // Groups first, so that a single input gets as many column groups as its accumulators
    // allow; the tile then takes what is left. Both launches share the groups (an input's f32
    // sums do not depend on its batch); only the tile differs.
    let acc = limits.eie_acc_words();
    let local = rows.div_ceil(pes);
    let groups = match ov.groups {
        Some(g) => g,
        None => {
            let mut g = EIE_MAX_GROUPS;
            while g > 1 && g * local > acc {
                g /= 2;
            }
            g
        }
    };
    if !groups.is_power_of_two() || groups > EIE_MAX_GROUPS {
        return Err(Error::InvalidArgument(format!(
            "{groups} column groups: must be a power of two up to {EIE_MAX_GROUPS}"
        )));
    }
    let tile = match ov.tile {
        Some(t) => t.clamp(1, EIE_BATCH_TILE),
        None => {
            let mut t = limits.batch_tile.clamp(1, EIE_BATCH_TILE);
            while t > 1 && groups * t * local > acc {
                t /= 2;
            }
            t
        }
    };
    if groups * tile > WORKGROUP_SIZE || WORKGROUP_SIZE % (groups * tile) != 0 {
        return Err(Error::InvalidArgument(format!(
            "{groups} column groups for a tile of {tile} inputs: the workgroup's \
             {WORKGROUP_SIZE} lanes must split evenly"
        )));
    }
    if groups * tile * local > acc {
        return Err(Error::LimitExceeded {
            what: format!(
                "accumulator words of {local} rows per PE in {groups} column groups for a tile \
                 of {tile} inputs (this device's workgroup memory; use more PEs or fewer groups)"
            ),
            value: (groups * tile * local) as u64,
            limit: acc as u64,
        });
    }
    let max_x = limits.max_compute_workgroups_per_dimension as usize;
    if pes > max_x {
        return Err(Error::LimitExceeded {
            what: "PEs (this device's workgroups per dimension)".into(),
            value: pes as u64,
            limit: max_x as u64,
        });
    }
    let words = cols.div_ceil(32);
    let want = match ov.slices {
        Some(s) => s,
        None => ov
            .target
            .unwrap_or(limits.target_workgroups)
            .max(1)
            .div_ceil(pes),
    }
    .clamp(1, words)
    .min(max_x / pes);
    let slice_cols = 32 * words.div_ceil(want.max(1));
    let launch = |tile: usize| EieLaunch {
        tile,
        groups,
        acc_words: (groups * tile * local)
            .div_ceil(512)
            .saturating_mul(512)
            .min(acc),
        lanes: WORKGROUP_SIZE / (groups * tile),
        slices: cols.div_ceil(slice_cols),
        slice_cols,
    };
    Ok((launch(1), launch(tile)))
}

/// A layer's GPU schedule: its walk, its PEs and the launches at batch 1 and for larger
/// batches.
///
/// [`cost`] models its work and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EieLayerPlan {
    /// The walk.
    pub walk: Walk,
    /// PEs (the interleaving the layer is re-encoded to) of the column walk.
    pub pes: usize,
    /// Rows per PE, `ceil(rows / pes)`.
    pub local_rows: usize,
    /// The column walk's launch for a single input.
    pub single: EieLaunch,
    /// The column walk's launch for batches of two inputs or more.
    pub batched: EieLaunch,
    /// Invocations per row of the row walk.
    pub row_lanes: usize,
}

impl EieLayerPlan {
    /// Plans a layer of `rows x cols` whose entries take `entry_bytes` (at its file
    /// interleaving `file_pes`), walked by columns, as the planner picks for `limits`.
    ///
    /// [`EieLayerPlan::with_override`] applies a [`ScheduleOverride`].
    pub fn new(
        plan: PePlan,
        rows: usize,
        cols: usize,
        file_pes: usize,
        entry_bytes: usize,
        limits: &DeviceLimits,
    ) -> Result<Self> {
        Self::with_override(
            plan,
            rows,
            cols,
            file_pes,
            entry_bytes,
            limits,
            &ScheduleOverride::default(),
        )
    }

    /// [`new`](Self::new) with the settings `ov` forces.
    pub fn with_override(
        plan: PePlan,
        rows: usize,
        cols: usize,
        file_pes: usize,
        entry_bytes: usize,
        limits: &DeviceLimits,
        ov: &ScheduleOverride,
    ) -> Result<Self> {
        let pes = plan_pes(plan, rows, cols, file_pes, entry_bytes, limits)?;
        let (single, batched) = eie_launches(rows, cols, pes, limits, ov)?;
        let row_lanes = ov.lanes.unwrap_or(limits.row_lanes);
        if !row_lanes.is_power_of_two() || row_lanes > EIE_ROW_LANES {
            return Err(Error::InvalidArgument(format!(
                "{row_lanes} lanes per row: must be a power of two up to {EIE_ROW_LANES}"
            )));
        }
        Ok(EieLayerPlan {
            walk: ov.walk.unwrap_or(limits.walk),
            pes,
            local_rows: rows.div_ceil(pes),
            single,
            batched,
            row_lanes,
        })
    }

    /// The launch that serves `batch` inputs.
    ///
    /// See [`EieLaunch`].
    pub fn launch(&self, batch: usize) -> &EieLaunch {
        if batch <= 1 {
            &self.single
        } else {
            &self.batched
        }
    }

    /// Rows one workgroup of the row walk computes.
    ///
    /// See [`Walk::Rows`].
    pub fn rows_per_workgroup(&self) -> usize {
        WORKGROUP_SIZE / self.row_lanes
    }
}

/// A block of consecutive rows of a dense matrix stored in one binding.
///
/// Returned by [`dense_tiles`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowTile {
    /// First row.
    pub start: usize,
    /// Number of rows.
    pub rows: usize,
}

/// Splits a dense `rows x cols` f32 matrix (rows padded to a multiple of 4 columns) into row
/// tiles that each fit one storage binding and one dispatch.
///
/// Each a [`RowTile`], within [`DeviceLimits::max_binding`].
pub fn dense_tiles(rows: usize, cols: usize, limits: &DeviceLimits) -> Result<Vec<RowTile>> {
    if rows == 0 || cols == 0 {
        return Err(Error::Shape(format!("empty layer {rows}x{cols}")));
    }
    let row_bytes = 4 * cols.next_multiple_of(4) as u64;
    let by_binding = (limits.max_binding() / row_bytes) as usize;
    let by_dispatch = limits.max_compute_workgroups_per_dimension as usize * ROWS_PER_WORKGROUP;
    let per_tile = by_binding.min(by_dispatch);
    if per_tile == 0 {
        return Err(Error::LimitExceeded {
            what: format!("bytes of one row of {cols} f32 weights (this device's storage binding)"),
            value: row_bytes,
            limit: limits.max_binding(),
        });
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
///
/// For example `batch_chunks(10, 4)` is `[(0, 4), (4, 4), (8, 2)]`; see [`DeviceLimits`] for
/// the other planners.
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
    fn auto_plan_keeps_pointers_within_the_entry_bytes() {
        let l = DeviceLimits::default();
        // 369 entry bytes per column: 0.7 * 369 / 8 = 32 PEs.
        assert_eq!(auto_pes(4096, 9216, 369 * 9216, &l).unwrap(), 32);
        // Few entries: one PE, unless the rows need more (at most 640 rows per PE).
        assert_eq!(auto_pes(600, 4096, 4096, &l).unwrap(), 1);
        assert_eq!(auto_pes(8791, 600, 600, &l).unwrap(), 14);
        // Never more PEs than rows.
        assert_eq!(auto_pes(3, 10, 10_000, &l).unwrap(), 3);
        assert_eq!(auto_pes(1, 1, 0, &l).unwrap(), 1);
        // Many rows: capped by the workgroup limit, and never more than 640 rows per PE.
        let tight = DeviceLimits {
            max_compute_workgroups_per_dimension: 16,
            ..l
        };
        assert_eq!(auto_pes(16 * 640, 10, 1 << 30, &tight).unwrap(), 16);
        assert!(auto_pes(16 * 640 + 1, 10, 0, &tight).is_err());
    }

    #[test]
    fn pointer_binding_limits_the_pe_count() {
        let l = DeviceLimits {
            max_storage_buffer_binding_size: 4 * 101 * 50,
            ..DeviceLimits::default()
        };
        let (min, max) = pe_bounds(1000, 100, &l).unwrap();
        assert_eq!((min, max), (2, 50));
        // More PEs than rows are allowed (empty PEs), up to the limits.
        assert_eq!(
            pe_bounds(3, 3, &DeviceLimits::default()).unwrap(),
            (1, 65535)
        );
        assert_eq!(auto_pes(1000, 100, 1 << 20, &l).unwrap(), 50);
        assert!(plan_pes(PePlan::Fixed(60), 1000, 100, 8, 0, &l).is_err());
        assert_eq!(plan_pes(PePlan::File, 1000, 100, 8, 0, &l).unwrap(), 8);
        assert!(plan_pes(PePlan::File, 1000, 100, 1, 0, &l).is_err());
        assert!(plan_pes(PePlan::Fixed(0), 10, 10, 1, 0, &l).is_err());
        assert!(plan_pes(PePlan::RowsPerPe(0), 10, 10, 1, 0, &l).is_err());
        assert_eq!(
            plan_pes(PePlan::RowsPerPe(16), 1000, 100, 8, 0, &l).unwrap(),
            50
        );
        assert_eq!(
            plan_pes(PePlan::RowsPerPe(64), 1000, 100, 8, 0, &l).unwrap(),
            16
        );
        assert_eq!(
            plan_pes(PePlan::Fixed(64), 3, 3, 1, 0, &DeviceLimits::default()).unwrap(),
            64
        );
    }

    #[test]
    fn launches_fit_the_accumulators_and_split_columns() {
        let l = DeviceLimits::default();
        let none = ScheduleOverride::default();
        // 128 rows per PE at the default 16 KiB: 16 groups for one input (16 * 128 = 2048 of
        // 2560 words), so no room for a second input: the batched tile is 1. The same groups
        // and slices for one input as for a tile.
        let (one, batched) = eie_launches(4096, 9216, 32, &l, &none).unwrap();
        assert_eq!((one.tile, one.groups, one.lanes), (1, 16, 16));
        assert_eq!((batched.tile, batched.groups, batched.lanes), (1, 16, 16));
        assert_eq!(one.acc_words, 2048);
        assert_eq!(
            (one.slices, one.slice_cols),
            (batched.slices, batched.slice_cols)
        );
        assert!(one.slices * one.slice_cols >= 9216);
        assert_eq!(one.slice_cols % 32, 0);
        assert!(one.slices * 32 >= EIE_TARGET_WORKGROUPS);
        assert_eq!(one.dispatches(), 2);
        assert_eq!(batched.grid(32, 9), (batched.slices * 32, 9));
        // With 48 KiB of workgroup memory (10752 accumulator words) a tile of 4 fits beside
        // the 16 groups; with 32 KiB (6656) a tile of 2.
        assert_eq!(l.eie_acc_words(), EIE_ACC_WORDS);
        let big_wg = |bytes| DeviceLimits {
            max_compute_workgroup_storage_size: bytes,
            ..l
        };
        assert_eq!(big_wg(49152).eie_acc_words(), 10752);
        let (one, four) = eie_launches(4096, 9216, 32, &big_wg(49152), &none).unwrap();
        assert_eq!(
            (one.groups, four.tile, four.groups, four.lanes),
            (16, 4, 16, 4)
        );
        assert_eq!((one.acc_words, four.acc_words), (2048, 8192));
        assert_eq!(four.grid(32, 9), (four.slices * 32, 3));
        let (_, two) = eie_launches(4096, 9216, 32, &big_wg(32768), &none).unwrap();
        assert_eq!((two.tile, two.groups), (2, 16));
        // 640 rows per PE: 4 groups for one input, one input per workgroup in batches; a
        // PE's rows beyond the accumulators are an error, not a bad dispatch.
        let (one, big) = eie_launches(640, 50, 1, &l, &none).unwrap();
        assert_eq!((one.groups, big.tile, big.lanes, big.slices), (4, 1, 64, 2));
        assert_eq!(eie_launches(2560, 50, 1, &l, &none).unwrap().0.groups, 1);
        assert!(eie_launches(2561, 50, 1, &l, &none).is_err());
        // A CPU adapter: fewer workgroups, so one slice; the row walk, one lane per row.
        let cpu = l.for_cpu_adapter();
        let (one, batched) = eie_launches(4096, 9216, 32, &cpu, &none).unwrap();
        assert_eq!((one.groups, batched.tile, one.slices), (16, 1, 1));
        let plan = EieLayerPlan::new(PePlan::Auto, 4096, 9216, 64, 369 * 9216, &cpu).unwrap();
        assert_eq!((plan.walk, plan.row_lanes), (Walk::Rows, 1));
        // A tiny layer: one slice of 32 columns, one dispatch.
        let (tiny, _) = eie_launches(1, 1, 1, &l, &none).unwrap();
        assert_eq!(
            (tiny.slices, tiny.slice_cols, tiny.dispatches()),
            (1, 32, 1)
        );
        let plan = EieLayerPlan::new(PePlan::Auto, 4096, 9216, 64, 369 * 9216, &l).unwrap();
        assert_eq!(plan.launch(1), &plan.single);
        assert_eq!(plan.launch(3), &plan.batched);
        assert_eq!((plan.walk, plan.row_lanes), (Walk::Columns, EIE_ROW_LANES));
    }

    #[test]
    fn overrides_force_every_setting_and_reject_bad_ones() {
        let l = DeviceLimits::default().for_cpu_adapter();
        let ov: ScheduleOverride = "walk=rows, tile=4,slices=8,groups=2,lanes=4,target=64"
            .parse()
            .unwrap();
        assert_eq!(
            ov.to_string(),
            "walk=rows,tile=4,slices=8,groups=2,lanes=4,target=64"
        );
        assert_eq!(ov.to_string().parse::<ScheduleOverride>().unwrap(), ov);
        let plan = EieLayerPlan::with_override(PePlan::Fixed(4), 240, 3000, 4, 0, &l, &ov).unwrap();
        assert_eq!(
            (plan.walk, plan.row_lanes, plan.rows_per_workgroup()),
            (Walk::Rows, 4, 64)
        );
        assert_eq!(
            (plan.batched.tile, plan.batched.groups, plan.single.groups),
            (4, 2, 2)
        );
        assert_eq!((plan.single.slices, plan.batched.slices), (8, 8));
        // More slices than 32-column words: one slice per word.
        let many: ScheduleOverride = "slices=1000".parse().unwrap();
        let (one, _) = eie_launches(10, 100, 1, &l, &many).unwrap();
        assert_eq!((one.slices, one.slice_cols), (4, 32));
        // The target when no slice count is given.
        let t: ScheduleOverride = "target=8".parse().unwrap();
        assert_eq!(eie_launches(10, 3200, 2, &l, &t).unwrap().0.slices, 4);
        assert_eq!(
            ScheduleOverride::default().or(ov),
            ov,
            "`or` fills unset settings"
        );
        assert!("".parse::<ScheduleOverride>().unwrap().is_empty());
        for bad in [
            "walk=diagonal",
            "tile=5",
            "tile=0",
            "groups=3",
            "groups=32",
            "lanes=64",
            "slices=x",
            "speed=11",
            "tile",
        ] {
            let e = bad.parse::<ScheduleOverride>().unwrap_err().to_string();
            assert!(e.contains(bad.split('=').next().unwrap()), "{bad}: {e}");
        }
        // Groups that do not fit the accumulators are an error, not a bad dispatch.
        let g: ScheduleOverride = "groups=16,tile=4".parse().unwrap();
        assert!(eie_launches(4096, 100, 32, &l, &g).is_err());
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
