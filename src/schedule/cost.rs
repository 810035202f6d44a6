//! What each GPU kernel does for one layer and batch, modelled without a GPU (`eie plan`): its
//! workgroups and dispatches, the bytes it reads and writes, how many entries one
//! invocation (lane) decodes, and the work [`latency`] turns into modelled microseconds on a
//! device profile. The figures follow the kernels in `shaders/` line by line; a value read by
//! every lane of a workgroup (a broadcast) counts once per workgroup.
//!
//! Byte categories:
//! * `entries`: the weights proper (EIE entries, CSR values, dense weights);
//! * `metadata`: what locates them and drives the walk, and what combines workgroups: column
//!   pointers, non-zero bitmaps or lists, column indices, row pointers, codebook copies, bias,
//!   and the partial sums of split columns (written by every column slice and read back by
//!   the reduction; also given alone as `partial_sums`);
//! * `activations`: input values read;
//! * `output`: output values and bitmap words written.
//!
//! Start with [`model_costs`] (or [`model_costs_on`] with a [`latency::DeviceProfile`]): a
//! [`KernelCost`] per kernel and layer.

pub mod fit;
pub mod history;
pub mod latency;

use super::{EieLayerPlan, BATCH_TILE, ROWS_PER_WORKGROUP, WORKGROUP_SIZE};
use crate::error::{Error, Result};
use crate::format::EieLayer;
use crate::kernel_id::{KernelId, KernelKind};
use crate::precision::Precision;
use latency::{DeviceProfile, DispatchWork, LatencyWork, PathStats, WorkPath};
use serde::Serialize;

/// Modelled bytes of one run.
///
/// The `bytes` of a [`KernelCost`]; the [module docs](self) define the categories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    /// Weights proper.
    pub entries: u64,
    /// Pointers, bitmaps or lists, indices, codebook, bias, and partial sums.
    pub metadata: u64,
    /// Input activations.
    pub activations: u64,
    /// Outputs and their bitmaps.
    pub output: u64,
    /// Of `metadata`: partial sums of split columns, written and read back.
    pub partial_sums: u64,
}

impl Bytes {
    /// All bytes read and written (`partial_sums` is part of `metadata`).
    ///
    /// See [`Bytes`].
    pub fn total(&self) -> u64 {
        self.entries + self.metadata + self.activations + self.output
    }
}

/// Entries (weights) one invocation decodes in a run.
///
/// The `entries_per_lane` of a [`KernelCost`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PerLane {
    /// The busiest invocation's count.
    pub max: u64,
    /// Mean over every invocation of the dispatch (idle ones included).
    pub mean: f64,
}

/// One kernel on one layer at one batch size.
///
/// Returned by [`eie()`], [`eie_rows`], [`csr`], [`dense`] and, for a whole model,
/// [`model_costs`] / [`model_costs_on`]; `eie plan` prints them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelCost {
    /// Layer name.
    pub layer: String,
    /// Kernel name as `eie bench` prints it (`gpu-eie/f32`, `gpu-csr/f32`, ...).
    pub kernel: String,
    /// Inputs per run.
    pub batch: usize,
    /// Workgroups launched, all dispatches together.
    pub workgroups: u64,
    /// EIE kernels: PEs and column slices (workgroups of the walk = PEs × slices × tiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pes_slices: Option<(usize, usize)>,
    /// Non-zero input columns walked (summed over the tiles of the batch).
    pub listed_columns: u64,
    /// Dispatches of the layer (each one dependent on the one before).
    pub dispatches: u32,
    /// Bytes read and written.
    pub bytes: Bytes,
    /// Entries decoded per invocation.
    pub entries_per_lane: PerLane,
    /// What the latency model charges for: each dispatch's workgroups and their paths.
    pub work: LatencyWork,
    /// Modelled µs on a device profile ([`KernelCost::with_profile`]); absent until one is
    /// applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modelled_us: Option<f64>,
}

impl KernelCost {
    /// Metadata bytes (partial sums included) over entry bytes (0 when there are no entries).
    ///
    /// See [`Bytes`].
    pub fn metadata_ratio(&self) -> f64 {
        if self.bytes.entries == 0 {
            0.0
        } else {
            self.bytes.metadata as f64 / self.bytes.entries as f64
        }
    }

    /// This cost with its modelled µs on `profile`.
    ///
    /// See [`DeviceProfile::modelled_us`]; [`model_costs_on`] applies it to every row.
    pub fn with_profile(mut self, profile: &DeviceProfile) -> KernelCost {
        self.modelled_us = Some(profile.modelled_us(&self.work));
        self
    }

    fn new(
        layer: &EieLayer,
        kernel: String,
        batch: usize,
        listed_columns: u64,
        bytes: Bytes,
        per_lane: PerLane,
        dispatches: Vec<DispatchWork>,
    ) -> KernelCost {
        KernelCost {
            layer: layer.name().to_string(),
            kernel,
            batch,
            workgroups: dispatches.iter().map(|d| d.workgroups).sum(),
            pes_slices: None,
            listed_columns,
            dispatches: dispatches.len() as u32,
            bytes,
            entries_per_lane: per_lane,
            work: LatencyWork {
                dispatches,
                bytes: bytes.total(),
            },
            modelled_us: None,
        }
    }
}

pub(crate) fn check_input(layer: &EieLayer, input: &[f32]) -> Result<usize> {
    let cols = layer.cols();
    if input.is_empty() || input.len() % cols != 0 {
        return Err(Error::Shape(format!(
            "{} values are not a batch of {cols}-value inputs",
            input.len()
        )));
    }
    Ok(input.len() / cols)
}

/// Entries per 32-bit word: four 8-bit entries, or two 16-bit ones for codebooks over 16.
pub(crate) fn entries_per_word(layer: &EieLayer) -> u64 {
    if layer.codebook().len() > 16 {
        2
    } else {
        4
    }
}

/// Words of 32 bits a run of `len` consecutive entries spans, on average over its alignment
/// (`1 + (len − 1) / entries per word`; 0 for an empty run).
pub(crate) fn words_spanned(len: u64, per_word: u64) -> f64 {
    if len == 0 {
        0.0
    } else {
        1.0 + (len - 1) as f64 / per_word as f64
    }
}

/// Lane steps of one decoded entry of a column walk: its code, its codebook value, and the
/// read and write of its accumulator in workgroup memory (a lane step is one dependent
/// on-chip operation: a workgroup- or private-memory access, or a loop iteration's arithmetic).
pub(crate) const ENTRY_STEPS: u64 = 4;

/// A run of `len` entries decoded `lanes` at a time, one entry per lane, each lane finding
/// its row from word-wide sums of the runs before it (`advance` in
/// `shaders/common/eie.wgsl`): `(rounds, steps)`, where every lane of the group takes one
/// step per word the round spans, then `per_entry` steps for its own entry.
pub(crate) fn lane_rounds(len: u64, lanes: u64, per_word: u64, per_entry: u64) -> (u64, f64) {
    let full = len / lanes;
    let rest = len % lanes;
    let e = per_entry as f64;
    let steps = full as f64 * (words_spanned(lanes, per_word) + e)
        + if rest > 0 {
            words_spanned(rest, per_word) + e
        } else {
            0.0
        };
    (len.div_ceil(lanes), steps)
}

/// Lanes that advance together (a warp; lavapipe's SIMD groups are narrower, 8): a warp
/// costs its busiest lane's steps for each of its lanes, so the workgroup step totals of
/// [`WorkPath`] count divergence.
pub(crate) const WARP: usize = 32;

/// Workgroup steps of consecutive units (column groups, rows) of `lanes_per_unit` lanes each,
/// whose lanes all take the unit's steps: warps of 32 lanes, each charged its busiest unit.
pub(crate) fn warp_steps(units: &[f64], lanes_per_unit: usize) -> f64 {
    if lanes_per_unit >= WARP {
        return units.iter().sum::<f64>() * lanes_per_unit as f64;
    }
    units
        .chunks(WARP / lanes_per_unit.max(1))
        .map(|c| c.iter().copied().fold(0.0, f64::max) * WARP as f64)
        .sum()
}

/// Non-zero columns of a tile of inputs (the OR of their bitmaps), in increasing order.
pub(crate) fn listed_columns(inputs: &[&[f32]], cols: usize) -> Vec<usize> {
    (0..cols)
        .filter(|&j| inputs.iter().any(|x| x[j] != 0.0))
        .collect()
}

/// The EIE kernel (`eie_spmv.wgsl`) on `layer` for the batch `input`, as `plan` schedules it.
/// `layer` is re-interleaved to the plan's PE count when it differs.
///
/// Workgroup (slice s, PE p, tile) walks the listed columns of its slice chunk by chunk: the
/// tile's bitmap words (OR-ed), compaction into per-group lists (group g takes the listed
/// columns j with j % GROUPS == g), the chunk's activations into workgroup memory; then steps
/// in which every group walks one column (a lane per entry, the next column's pointer pair
/// loaded meanwhile) and the workgroup meets at a barrier. With S > 1 slices the walk writes
/// partial sums and a second dispatch (`eie_reduce.wgsl`, one invocation per row and input)
/// adds them in slice order; with S == 1 the write-back is fused.
///
/// Returns a [`KernelCost`]; [`model_costs`] calls it for every layer.
pub fn eie(
    layer: &EieLayer,
    plan: &EieLayerPlan,
    input: &[f32],
    precision: Precision,
) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let owned;
    let layer = if layer.pes() == plan.pes {
        layer
    } else {
        owned = layer.with_pes(plan.pes)?;
        &owned
    };
    let (rows, cols, pes) = (layer.rows(), layer.cols(), plan.pes);
    let local_rows = plan.local_rows;
    let launch = plan.launch(batch);
    let (tile, groups, lanes, slices) = (launch.tile, launch.groups, launch.lanes, launch.slices);
    let tiles = batch.div_ceil(tile);
    let padded = (tiles * tile) as u64;
    let per_word = entries_per_word(layer);
    let entry_bytes = 4 / per_word;
    let ab = precision.bytes() as u64;
    let chunk = (super::EIE_LIST_WORDS / tile).max(32);
    let slice_len = |p: usize, j: usize| -> u64 {
        let ptr = layer.pe(p).col_ptr;
        (ptr[j + 1] - ptr[j]) as u64
    };

    let mut bytes = Bytes::default();
    let (mut decoded, mut busiest) = (0u64, 0u64);
    let mut listed_total = 0u64;
    let mut walk = PathStats::default();
    for t in 0..tiles {
        let inputs: Vec<&[f32]> = (t * tile..((t + 1) * tile).min(batch))
            .map(|b| &input[b * cols..(b + 1) * cols])
            .collect();
        let listed = listed_columns(&inputs, cols);
        let n = listed.len() as u64;
        listed_total += n;
        bytes.metadata += n * pes as u64 * super::EIE_POINTER_BYTES as u64;
        bytes.activations += n * pes as u64 * tile as u64 * ab;
        for p in 0..pes {
            bytes.entries += listed.iter().map(|&j| slice_len(p, j)).sum::<u64>() * entry_bytes;
            for s in 0..slices {
                let lo = s * launch.slice_cols;
                let hi = (lo + launch.slice_cols).min(cols);
                // Codebook copy and accumulators cleared, then a barrier.
                let mut path = WorkPath {
                    round_trips: 1.0,
                    barriers: 1.0,
                    lane_steps: (groups * tile * local_rows).div_ceil(WORKGROUP_SIZE) as f64,
                    workgroup_steps: (groups * tile * local_rows) as f64,
                };
                let mut lane_entries = vec![0u64; groups * tile];
                for cc in (lo..hi).step_by(chunk) {
                    let ce = (cc + chunk).min(hi);
                    let mine: Vec<usize> = listed
                        .iter()
                        .copied()
                        .filter(|&j| j >= cc && j < ce)
                        .collect();
                    // Bitmap words, per-group compaction, activations and the first pointer
                    // pairs: three dependent loads, three barriers; invocation (g, w) counts
                    // the group's columns in the words before w, then lists word w's.
                    let nw = (ce - cc).div_ceil(32);
                    let densest = (0..nw)
                        .flat_map(|w| (0..groups).map(move |g| (w, g)))
                        .map(|(w, g)| {
                            mine.iter()
                                .filter(|&&j| (j - cc) / 32 == w && j % groups == g)
                                .count()
                        })
                        .max()
                        .unwrap_or(0);
                    path.round_trips += 3.0;
                    path.barriers += 3.0;
                    path.lane_steps += (densest + nw + groups) as f64;
                    path.workgroup_steps +=
                        (mine.len() * (1 + tile) + groups * nw * (nw + 1) / 2) as f64;
                    let lists: Vec<Vec<usize>> = (0..groups)
                        .map(|g| mine.iter().copied().filter(|&j| j % groups == g).collect())
                        .collect();
                    let steps = lists.iter().map(Vec::len).max().unwrap_or(0);
                    let mut units = vec![0f64; groups * tile];
                    for st in 0..steps {
                        let (mut rt, mut lane) = (0u64, 0f64);
                        units.iter_mut().for_each(|u| *u = 0.0);
                        for (g, list) in lists.iter().enumerate() {
                            let Some(&j) = list.get(st) else { continue };
                            let len = slice_len(p, j);
                            let (rounds, steps) =
                                lane_rounds(len, lanes as u64, per_word, ENTRY_STEPS);
                            rt = rt.max(rounds);
                            for (b, x) in inputs.iter().enumerate() {
                                if x[j] == 0.0 {
                                    continue;
                                }
                                lane = lane.max(steps);
                                units[g * tile + b] = steps;
                                lane_entries[g * tile + b] += len.div_ceil(lanes as u64);
                                decoded += len;
                            }
                        }
                        path.workgroup_steps += warp_steps(&units, lanes);
                        // The entry words (the next column's pointer pair is in flight); a
                        // barrier per step.
                        path.round_trips += rt.max(1) as f64;
                        path.barriers += 1.0;
                        path.lane_steps += lane;
                    }
                }
                busiest = busiest.max(lane_entries.iter().copied().max().unwrap_or(0));
                // The groups' copies summed in group order, then the write-back or the
                // partial sums.
                let outs = tile * local_rows;
                path.lane_steps += (groups * outs.div_ceil(WORKGROUP_SIZE)) as f64;
                path.workgroup_steps += (groups * outs) as f64;
                path.round_trips += 1.0;
                walk.push(path);
            }
        }
    }
    let walk_groups = (slices * pes * tiles) as u64;
    let words = cols.div_ceil(32) as u64;
    // Bitmap words of each input of the tile (every PE reads its slice's), codebook copies,
    // bias per output.
    bytes.metadata += pes as u64 * padded * words * 4;
    bytes.metadata += walk_groups * layer.codebook().len() as u64 * 4;
    if layer.bias().is_some() {
        bytes.metadata += padded * rows as u64 * 4;
    }
    // Output values and their bitmap words.
    bytes.output += padded * rows as u64 * (ab + 4);
    let mut dispatches = vec![walk.dispatch()];
    if slices > 1 {
        // Partial sums [batch][S][PEs][local rows], written by the walk and read back by
        // eie_reduce: one invocation per row and (padded) input adds the S partials in slice order
        // (the first, then eight loads in flight at a time), then bias, ReLU, output and
        // bitmap.
        let partials = slices as u64 * padded * (pes * local_rows) as u64 * 4
            + slices as u64 * padded * rows as u64 * 4;
        bytes.partial_sums = partials;
        bytes.metadata += partials;
        let path = WorkPath {
            round_trips: (2 + (slices - 1).div_ceil(8)) as f64,
            barriers: 0.0,
            lane_steps: (slices + 2) as f64,
            workgroup_steps: ((slices + 2) * WORKGROUP_SIZE) as f64,
        };
        // Every input of every tile, padding inputs included.
        dispatches.push(DispatchWork::uniform(
            rows.div_ceil(WORKGROUP_SIZE) as u64 * padded,
            path,
        ));
    }
    let mut c = KernelCost::new(
        layer,
        KernelId::gpu(KernelKind::Eie, precision).to_string(),
        batch,
        listed_total,
        bytes,
        PerLane {
            max: busiest,
            mean: decoded as f64 / (walk_groups * WORKGROUP_SIZE as u64) as f64,
        },
        dispatches,
    );
    c.pes_slices = Some((pes, slices));
    Ok(c)
}

/// The EIE kernel walked by rows (`eie_spmv_rows.wgsl`: `lanes` invocations per row, a power
/// of two from 1 to 32, so `256 / lanes` rows per workgroup; the same codes with relative
/// column indices stored row by row, a tile of inputs per workgroup at batch > 1 (`tile`),
/// every activation of a row's columns gathered). With one lane per row (CPU adapters) each
/// invocation walks its row serially with no reduction; with more, the lanes take one entry
/// each, find its column from word-wide sums of the runs, and their sums meet in a tree.
///
/// Returns a [`KernelCost`]; see [`eie()`] for the column walk.
pub fn eie_rows(
    layer: &EieLayer,
    input: &[f32],
    tile: usize,
    lanes: usize,
    precision: Precision,
) -> Result<KernelCost> {
    eie_rows_with(layer, input, tile, lanes, precision, true)
}

/// [`eie_rows`], with 16-bit row entries allowed (`wide_rows`, as today) or only where the
/// codebook needs them (the row walk before 16-bit runs).
pub(crate) fn eie_rows_with(
    layer: &EieLayer,
    input: &[f32],
    tile: usize,
    lanes: usize,
    precision: Precision,
    wide_rows: bool,
) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    if !lanes.is_power_of_two() || lanes > 32 {
        return Err(Error::InvalidArgument(format!(
            "{lanes} lanes per row: the row walk takes a power of two from 1 to 32"
        )));
    }
    let rows = layer.rows();
    let rows_per_group = WORKGROUP_SIZE / lanes;
    let tile = if batch == 1 { 1 } else { tile.max(1) };
    let tiles = batch.div_ceil(tile) as u64;
    let padded = tiles * tile as u64;
    let ab = precision.bytes() as u64;
    // Each row's columns in increasing order, then its entries: one per non-zero plus a
    // padding entry per (max run + 1) zero columns skipped beyond the first max run.
    let codes = layer.sparse_codes().by_rows();
    let cols_of: Vec<&[u32]> = (0..rows)
        .map(|i| &codes.col[codes.row_ptr[i]..codes.row_ptr[i + 1]])
        .collect();
    let count = |cols: &[u32], max_run: u32| -> u64 {
        let mut next = 0u32;
        cols.iter()
            .map(|&c| {
                let pad = ((c - next) / (max_run + 1)) as u64;
                next = c + 1;
                pad + 1
            })
            .sum()
    };
    let narrow: u64 = cols_of.iter().map(|c| count(c, 15)).sum();
    let wide = layer.codebook().len() > 16
        || (wide_rows
            && cols_of.iter().map(|c| count(c, 255)).sum::<u64>() as f64 * 2.0
                <= narrow as f64 * super::EIE_ROW_WIDE_SHARE);
    let max_run = if wide { 255 } else { 15 };
    let per_word: u64 = if wide { 2 } else { 4 };
    let entry_bytes = 4 / per_word;
    let entries_of: Vec<(u64, u64)> = cols_of
        .iter()
        .map(|c| (count(c, max_run), c.len() as u64))
        .collect();
    let total: u64 = entries_of.iter().map(|e| e.0).sum();
    let busiest = entries_of
        .iter()
        .map(|e| e.0.div_ceil(lanes as u64))
        .max()
        .unwrap_or(0);
    let nnz = codes.nnz() as u64;
    let groups = rows.div_ceil(rows_per_group) as u64;
    let workgroups = groups * tiles;
    let bias = if layer.bias().is_some() { 4 } else { 0 };
    // Per workgroup: codebook and a barrier, the row pointers, then the walk and the
    // write-back. One lane per row: a word load per four entries, a gather per non-zero, each
    // waited on in turn. More lanes: per round of `lanes` entries the words of runs and,
    // dependent on them, the gathers; then a tree over the lanes (log2 lanes barriers).
    let mut stats = PathStats::default();
    let levels = lanes.trailing_zeros() as f64;
    let tree = if lanes > 1 { 1.0 + levels } else { 0.0 };
    for rs in entries_of.chunks(rows_per_group) {
        let mut path = WorkPath {
            round_trips: 3.0,
            barriers: 1.0 + tree,
            lane_steps: 1.0 + 2.0 * levels * tile as f64,
            // The tree: each level halves the lanes at work (a read and a write each).
            workgroup_steps: WORKGROUP_SIZE as f64 * (1.0 + 2.0 * tile as f64 * tree.min(1.0)),
        };
        let (mut rt, mut lane) = (0f64, 0f64);
        let mut units = Vec::with_capacity(rs.len());
        for &(n, nz) in rs {
            let (r, s) = if lanes == 1 {
                // Decode, codebook value, one product per input of the tile.
                let s = words_spanned(n, per_word) + (2 * n + tile as u64 * nz) as f64;
                (words_spanned(n, per_word) + nz as f64, s)
            } else {
                // Each round: the words, the entry's code and codebook value, then one
                // product per input of the tile (the gathers are round trips).
                let (rounds, s) = lane_rounds(n, lanes as u64, per_word, 2 + tile as u64);
                (2.0 * rounds as f64, s)
            };
            rt = rt.max(r);
            lane = lane.max(s);
            units.push(s);
        }
        path.workgroup_steps += warp_steps(&units, lanes);
        path.round_trips += rt;
        path.lane_steps += lane;
        stats.push_n(path, tiles);
    }
    let bytes = Bytes {
        entries: total * entry_bytes * tiles,
        metadata: (rows as u64 * (8 + bias) + groups * layer.codebook().len() as u64 * 4) * tiles,
        activations: nnz * tile as u64 * ab * tiles,
        output: padded * rows as u64 * (ab + 4),
        partial_sums: 0,
    };
    Ok(KernelCost::new(
        layer,
        KernelId::gpu(KernelKind::EieRows, precision).to_string(),
        batch,
        (layer.cols() * batch) as u64,
        bytes,
        PerLane {
            max: busiest,
            mean: (total * tiles) as f64 / (workgroups * WORKGROUP_SIZE as u64) as f64,
        },
        vec![stats.dispatch()],
    ))
}

/// The plain CSR kernel (`csr_spmv.wgsl`: 8 rows and 4 inputs per workgroup, 32 lanes per
/// row, f32 values and u32 column indices, no activation skipping).
///
/// Returns a [`KernelCost`]; [`model_costs`] includes it.
pub fn csr(layer: &EieLayer, input: &[f32]) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let rows = layer.rows();
    let passes = batch.div_ceil(BATCH_TILE) as u64;
    let mut row_nnz = vec![0u64; rows];
    let codes = layer.sparse_codes();
    for &r in &codes.row_idx {
        row_nnz[r as usize] += 1;
    }
    let nnz = codes.nnz() as u64;
    let workgroups = rows.div_ceil(ROWS_PER_WORKGROUP) as u64 * passes;
    let (mut decoded, mut busiest) = (0u64, 0u64);
    // Per workgroup: row pointers, then a lane's loop of ceil(row nnz / 32) iterations, each
    // waiting on its loads (values and column indices, then the gathered activations), then
    // the write-back; a reduction tree of five levels after one barrier (each level halves the
    // lanes at work).
    let mut stats = PathStats::default();
    for rs in row_nnz.chunks(ROWS_PER_WORKGROUP) {
        let lane = rs.iter().map(|n| n.div_ceil(32)).max().unwrap_or(0);
        // A row's 32 lanes are a warp: each takes the row's most iterations.
        let all: u64 = rs.iter().map(|n| 32 * n.div_ceil(32)).sum();
        stats.push_n(
            WorkPath {
                round_trips: (2 + lane) as f64,
                barriers: 6.0,
                lane_steps: (lane + 10) as f64,
                workgroup_steps: (all + 2 * WORKGROUP_SIZE as u64) as f64,
            },
            passes,
        );
    }
    for &n in &row_nnz {
        // Lane l of the row's 32 takes non-zeros l, l + 32, ... for all 4 inputs at once.
        busiest = busiest.max(n.div_ceil(32));
        decoded += n;
    }
    let bias = if layer.bias().is_some() { 4 } else { 0 };
    let bytes = Bytes {
        entries: nnz * 4 * passes,
        metadata: (nnz * 4 + rows as u64 * (8 + bias)) * passes,
        activations: nnz * 4 * passes * BATCH_TILE as u64,
        output: (batch * rows) as u64 * 4,
        partial_sums: 0,
    };
    Ok(KernelCost::new(
        layer,
        KernelId::gpu(KernelKind::Csr, Precision::F32).to_string(),
        batch,
        (layer.cols() * batch) as u64,
        bytes,
        PerLane {
            max: busiest,
            mean: (decoded * passes) as f64 / (workgroups * WORKGROUP_SIZE as u64) as f64,
        },
        vec![stats.dispatch()],
    ))
}

/// The dense kernel (`dense_gemv.wgsl`: 8 rows and 4 inputs per workgroup, 32 lanes per row
/// streaming vec4 words; one dispatch per row tile of `tiles`, each tile of about
/// `rows / tiles` rows).
///
/// Returns a [`KernelCost`]; [`model_costs`] includes it.
pub fn dense(layer: &EieLayer, input: &[f32], tiles: usize) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let (rows, cols) = (layer.rows(), layer.cols());
    let tiles = tiles.max(1);
    let passes = batch.div_ceil(BATCH_TILE) as u64;
    let padded_cols = cols.next_multiple_of(4) as u64;
    let row_groups = rows.div_ceil(ROWS_PER_WORKGROUP) as u64;
    let bias = if layer.bias().is_some() { 4 } else { 0 };
    // Per workgroup: the streamed row (one vec4 of weights and four of inputs per lane and
    // iteration, each iteration waiting on its loads), the bias and write-back; a reduction
    // tree of five levels after a barrier.
    let iters = (padded_cols / 4).div_ceil(32);
    let path = WorkPath {
        round_trips: (1 + iters) as f64,
        barriers: 6.0,
        lane_steps: (iters + 10) as f64,
        workgroup_steps: (WORKGROUP_SIZE as u64 * (iters + 2)) as f64,
    };
    let per_tile = rows.div_ceil(tiles);
    let dispatches = (0..tiles)
        .map(|t| {
            let r = per_tile.min(rows.saturating_sub(t * per_tile));
            DispatchWork::uniform(r.div_ceil(ROWS_PER_WORKGROUP) as u64 * passes, path)
        })
        .collect();
    let bytes = Bytes {
        entries: rows as u64 * padded_cols * 4 * passes,
        metadata: rows as u64 * bias * passes,
        // Each row's lanes read the tile's four inputs.
        activations: row_groups
            * ROWS_PER_WORKGROUP as u64
            * padded_cols
            * 4
            * BATCH_TILE as u64
            * passes,
        output: (batch * rows) as u64 * 4,
        partial_sums: 0,
    };
    Ok(KernelCost::new(
        layer,
        KernelId::gpu(KernelKind::Dense, Precision::F32).to_string(),
        batch,
        (cols * batch) as u64,
        bytes,
        PerLane {
            max: padded_cols.div_ceil(32),
            mean: (rows as u64 * padded_cols * passes) as f64
                / (row_groups * passes * WORKGROUP_SIZE as u64) as f64,
        },
        dispatches,
    ))
}

/// Every GPU kernel on every layer of `model` for the batch `input`, as `eie bench` names
/// them: EIE in f32, fixed16 and f16 walked as the planner picks for the device
/// (`gpu-eie/*`: by columns on a GPU, by rows on a CPU adapter), both walks forced in f32
/// (`gpu-eie-columns/f32`, `gpu-eie-rows/f32`), dense and CSR; each layer's input being the
/// previous layer's output on the CPU model (f32), with PEs from `pes` on a device with
/// `limits`.
///
/// [`model_costs_on`] adds a device profile's modelled µs; `examples/latency_fit.rs` uses it.
pub fn model_costs(
    model: &crate::format::Model,
    input: &[f32],
    pes: super::PePlan,
    limits: &super::DeviceLimits,
) -> Result<Vec<KernelCost>> {
    let batch = model.check_input(input)?;
    let mut x = input.to_vec();
    let mut out = Vec::new();
    for layer in model.layers() {
        let entry_bytes = layer.entry_bytes();
        let plan = EieLayerPlan::new(
            pes,
            layer.rows(),
            layer.cols(),
            layer.pes(),
            entry_bytes,
            limits,
        )?;
        let interleaved = layer.with_pes(plan.pes)?;
        let rows = |p: Precision| eie_rows(layer, &x, plan.batched.tile, plan.row_lanes, p);
        // The planner's walk in each precision, then both walks forced (as `eie bench` names
        // them).
        for p in Precision::ALL {
            let mut c = match plan.walk {
                super::Walk::Columns => eie(&interleaved, &plan, &x, p)?,
                super::Walk::Rows => rows(p)?,
            };
            c.kernel = KernelId::gpu(KernelKind::Eie, p).to_string();
            out.push(c);
        }
        let mut columns = eie(&interleaved, &plan, &x, Precision::F32)?;
        columns.kernel = KernelId::gpu(KernelKind::EieColumns, Precision::F32).to_string();
        out.push(columns);
        out.push(rows(Precision::F32)?);
        out.push(dense(
            layer,
            &x,
            super::dense_tiles(layer.rows(), layer.cols(), limits)?.len(),
        )?);
        out.push(csr(layer, &x)?);
        let mut y = vec![0f32; batch * layer.rows()];
        for (xs, ys) in x
            .chunks_exact(layer.cols())
            .zip(y.chunks_exact_mut(layer.rows()))
        {
            crate::reference::layer_f32(layer, xs, ys)?;
        }
        x = y;
    }
    Ok(out)
}

/// [`model_costs`] as the engine schedules on the device `profile` describes (its planner
/// limits), each row with its modelled µs on that profile.
pub fn model_costs_on(
    model: &crate::format::Model,
    input: &[f32],
    pes: super::PePlan,
    profile: &DeviceProfile,
) -> Result<Vec<KernelCost>> {
    Ok(model_costs(model, input, pes, &profile.limits())?
        .into_iter()
        .map(|c| c.with_profile(profile))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SparseCodes;
    use crate::schedule::{DeviceLimits, EieLayerPlan, PePlan};

    fn layer(rows: usize, cols: usize, every: usize, pes: usize) -> EieLayer {
        let codes: Vec<u8> = (0..rows * cols)
            .map(|i| {
                if i % every == 0 {
                    1 + (i % 15) as u8
                } else {
                    0
                }
            })
            .collect();
        let sc = SparseCodes::from_dense(rows, cols, &codes).unwrap();
        let cb: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        EieLayer::encode(&sc, cb, 4, pes, None, crate::format::Activation::Relu).unwrap()
    }

    #[test]
    fn eie_reads_only_listed_columns() {
        let l = layer(64, 96, 3, 4);
        let plan = EieLayerPlan::new(
            PePlan::Fixed(4),
            64,
            96,
            4,
            l.entry_count(),
            &DeviceLimits::default(),
        )
        .unwrap();
        // Half of the columns non-zero.
        let x: Vec<f32> = (0..96).map(|j| (j % 2) as f32).collect();
        let c = eie(&l, &plan, &x, Precision::F32).unwrap();
        let want: u64 = (0..96)
            .filter(|j| j % 2 == 1)
            .map(|j| (0..4).map(|p| l.pe(p).column(j).len() as u64).sum::<u64>())
            .sum();
        assert_eq!(c.bytes.entries, want);
        // Split columns: the walk and the reduction, whose partial sums are metadata.
        let slices = c.pes_slices.unwrap().1;
        assert_eq!(c.dispatches, if slices > 1 { 2 } else { 1 });
        assert_eq!(c.work.dispatches.len(), c.dispatches as usize);
        if slices > 1 {
            assert_eq!(c.bytes.partial_sums, 2 * slices as u64 * 64 * 4);
            assert!(c.bytes.metadata >= c.bytes.partial_sums + 48 * 4 * 8);
        }
        assert_eq!(c.bytes.activations, 48 * 4 * 4);
        assert_eq!(c.work.bytes, c.bytes.total());
        // Every entry of a listed column is decoded by exactly one lane.
        let lanes = (4 * slices) as f64 * WORKGROUP_SIZE as f64;
        assert_eq!((c.entries_per_lane.mean * lanes).round() as u64, want);
        assert!(c.entries_per_lane.max >= 1);
        // An all-zero input reads no entries.
        let z = eie(&l, &plan, &[0.0; 96], Precision::F32).unwrap();
        assert_eq!(z.bytes.entries, 0);
        assert_eq!(z.entries_per_lane.max, 0);
        let p = DeviceProfile::H100;
        assert!(p.modelled_us(&z.work) < p.modelled_us(&c.work));
    }

    #[test]
    fn csr_and_dense_count_every_weight() {
        let l = layer(10, 40, 4, 2);
        let x = vec![1.0; 40 * 5];
        let c = csr(&l, &x).unwrap();
        assert_eq!(c.bytes.entries, l.nnz() as u64 * 4 * 2);
        assert_eq!(c.workgroups, 2 * 2);
        let d = dense(&l, &x, 1).unwrap();
        assert_eq!(d.bytes.entries, 10 * 40 * 4 * 2);
        assert!(csr(&l, &[1.0; 39]).is_err());
        // More row tiles: more dispatches, modelled slower.
        let d3 = dense(&l, &x, 3).unwrap();
        assert_eq!(d3.dispatches, 3);
        for p in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
            assert!(p.modelled_us(&d3.work) > p.modelled_us(&d.work));
        }
    }

    #[test]
    fn row_walk_lanes() {
        let l = layer(64, 96, 3, 4);
        let x = vec![1.0; 96];
        let c32 = eie_rows(&l, &x, 1, 32, Precision::F32).unwrap();
        let c8 = eie_rows(&l, &x, 1, 8, Precision::F32).unwrap();
        assert_eq!(c32.workgroups, 8);
        assert_eq!(c8.workgroups, 2);
        assert_eq!(c32.bytes.entries, c8.bytes.entries);
        // Fewer lanes per row: each lane decodes more entries.
        assert!(c8.entries_per_lane.max > c32.entries_per_lane.max);
        for bad in [0, 3, 64] {
            let e = eie_rows(&l, &x, 1, bad, Precision::F32).unwrap_err();
            assert!(e.to_string().contains("lanes"), "{e}");
        }
    }

    #[test]
    fn more_entries_are_never_faster() {
        // The same shape at rising densities, the same input: modelled time never falls.
        let x: Vec<f32> = (0..256).map(|j| (j % 3 != 0) as u8 as f32).collect();
        for p in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
            let mut last = [0.0f64; 3];
            for every in [32, 16, 8, 4, 2, 1] {
                let l = layer(128, 256, every, 4);
                let plan =
                    EieLayerPlan::new(PePlan::Fixed(4), 128, 256, 4, l.entry_bytes(), &p.limits())
                        .unwrap();
                let t = [
                    p.modelled_us(&eie(&l, &plan, &x, Precision::F32).unwrap().work),
                    p.modelled_us(&eie_rows(&l, &x, 1, 32, Precision::F32).unwrap().work),
                    p.modelled_us(&csr(&l, &x).unwrap().work),
                ];
                for k in 0..3 {
                    assert!(t[k] >= last[k], "{} kernel {k} every {every}", p.name);
                }
                last = t;
            }
        }
    }
}
