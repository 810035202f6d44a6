//! What each GPU kernel does for one layer and batch, modelled without a GPU (`eie plan`): its
//! workgroups and dispatches, the bytes it reads and writes, and how many entries one
//! invocation (lane) decodes. The figures follow the kernels in `shaders/` line by line; a
//! value read by every lane of a workgroup (a broadcast) counts once per workgroup.
//!
//! Byte categories:
//! * `entries`: the weights proper (EIE entries, CSR values, dense weights);
//! * `metadata`: what locates them and drives the walk: column pointers, non-zero bitmaps or
//!   lists, counters, column indices, row pointers, codebook copies, bias;
//! * `activations`: input values read;
//! * `output`: output values and bitmap words written, partial sums written and read back.

use super::{EieLayerPlan, BATCH_TILE, ROWS_PER_WORKGROUP, WORKGROUP_SIZE};
use crate::error::{Error, Result};
use crate::format::EieLayer;
use crate::reference::Precision;
use serde::Serialize;

/// Modelled bytes of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    /// Weights proper.
    pub entries: u64,
    /// Pointers, bitmaps or lists, counters, indices, codebook, bias.
    pub metadata: u64,
    /// Input activations.
    pub activations: u64,
    /// Outputs, bitmaps and partial sums.
    pub output: u64,
}

/// Entries (weights) one invocation decodes in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PerLane {
    /// The busiest invocation's count.
    pub max: u64,
    /// Mean over every invocation of the dispatch (idle ones included).
    pub mean: f64,
}

/// One kernel on one layer at one batch size.
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
    /// EIE kernels: PEs and column slices (workgroups = PEs × slices × tiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pes_slices: Option<(usize, usize)>,
    /// Non-zero input columns walked (summed over the tiles of the batch).
    pub listed_columns: u64,
    /// Dispatches of the layer (each one dependent on the previous layer's).
    pub dispatches: u32,
    /// Bytes read and written.
    pub bytes: Bytes,
    /// Entries decoded per invocation (of the walk's dispatch).
    pub entries_per_lane: PerLane,
}

impl KernelCost {
    /// Metadata bytes over entry bytes (0 when there are no entries).
    pub fn metadata_ratio(&self) -> f64 {
        if self.bytes.entries == 0 {
            0.0
        } else {
            self.bytes.metadata as f64 / self.bytes.entries as f64
        }
    }
}

fn check_input(layer: &EieLayer, input: &[f32]) -> Result<usize> {
    let cols = layer.cols();
    if input.is_empty() || input.len() % cols != 0 {
        return Err(Error::Shape(format!(
            "{} values are not a batch of {cols}-value inputs",
            input.len()
        )));
    }
    Ok(input.len() / cols)
}

fn act_bytes(precision: Precision) -> u64 {
    match precision {
        Precision::F16 => 2,
        _ => 4,
    }
}

/// The EIE kernel (`eie_spmv.wgsl`) on `layer` for the batch `input`, as `plan` schedules it.
/// `layer` is re-interleaved to the plan's PE count when it differs.
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
    let launch = plan.launch(batch);
    let (tile, groups, lanes, slices) = (launch.tile, launch.groups, launch.lanes, launch.slices);
    let tiles = batch.div_ceil(tile);
    let padded = (tiles * tile) as u64;
    let entry_bytes: u64 = if layer.codebook().len() > 16 { 2 } else { 1 };
    let ab = act_bytes(precision);
    // Entries of PE p's slice of column j.
    let slice_len = |p: usize, j: usize| -> u64 {
        let ptr = layer.pe(p).col_ptr;
        (ptr[j + 1] - ptr[j]) as u64
    };
    let column_entries: Vec<u64> = (0..cols)
        .map(|j| (0..pes).map(|p| slice_len(p, j)).sum())
        .collect();

    let mut bytes = Bytes::default();
    let mut decoded = 0u64;
    let mut busiest = 0u64;
    let mut per_lane = vec![0u64; lanes];
    let mut listed_columns = 0u64;
    for t in 0..tiles {
        let inputs: Vec<&[f32]> = (t * tile..((t + 1) * tile).min(batch))
            .map(|b| &input[b * cols..(b + 1) * cols])
            .collect();
        let listed: Vec<usize> = (0..cols)
            .filter(|&j| inputs.iter().any(|x| x[j] != 0.0))
            .collect();
        let n = listed.len() as u64;
        listed_columns += n;
        bytes.entries += listed.iter().map(|&j| column_entries[j]).sum::<u64>() * entry_bytes;
        bytes.metadata += n * pes as u64 * super::EIE_POINTER_BYTES as u64;
        bytes.activations += n * pes as u64 * tile as u64 * ab;
        // Lanes: workgroup (slice, PE) of this tile, group g takes the listed columns j of its
        // slice with j % groups == g, lane e of input b the entries e, e + lanes, ...
        for p in 0..pes {
            for s in 0..slices {
                let lo = s * launch.slice_cols;
                let hi = (lo + launch.slice_cols).min(cols);
                let mine: Vec<usize> = listed
                    .iter()
                    .copied()
                    .filter(|&j| j >= lo && j < hi)
                    .collect();
                for g in 0..groups {
                    for (b, x) in inputs.iter().enumerate() {
                        per_lane.iter_mut().for_each(|c| *c = 0);
                        for &j in mine.iter().filter(|&&j| j % groups == g) {
                            if x[j] == 0.0 {
                                continue;
                            }
                            let len = slice_len(p, j) as usize;
                            for (e, c) in per_lane.iter_mut().enumerate().take(len) {
                                *c += ((len - 1 - e) / lanes + 1) as u64;
                            }
                        }
                        let _ = b;
                        decoded += per_lane.iter().sum::<u64>();
                        busiest = busiest.max(per_lane.iter().copied().max().unwrap_or(0));
                    }
                }
            }
        }
    }
    let walk_workgroups = (slices * pes * tiles) as u64;
    // The reduction dispatch of split columns: one invocation per row and (padded) input.
    let workgroups = walk_workgroups
        + if slices > 1 {
            (rows.div_ceil(WORKGROUP_SIZE) as u64) * padded
        } else {
            0
        };
    let words = cols.div_ceil(32) as u64;
    // Bitmap words of each input of the tile, codebook copy, bias per output.
    bytes.metadata += pes as u64 * padded * words * 4;
    bytes.metadata += walk_workgroups * layer.codebook().len() as u64 * 4;
    if layer.bias().is_some() {
        bytes.metadata += padded * rows as u64 * 4;
    }
    // Output values and their bitmap words.
    bytes.output += padded * rows as u64 * (ab + 4);
    if slices > 1 {
        // The partial sums, written by every slice and read back by `eie_reduce`.
        bytes.output += 2 * slices as u64 * padded * (pes * plan.local_rows) as u64 * 4;
    }
    Ok(KernelCost {
        layer: layer.name().to_string(),
        kernel: format!("gpu-eie/{}", precision_name(precision)),
        batch,
        workgroups,
        pes_slices: Some((pes, slices)),
        listed_columns,
        dispatches: launch.dispatches(),
        bytes,
        entries_per_lane: PerLane {
            max: busiest,
            mean: decoded as f64 / (walk_workgroups * WORKGROUP_SIZE as u64) as f64,
        },
    })
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::Fixed16 => "fixed16",
        Precision::F16 => "f16",
    }
}

/// The EIE kernel walked by rows (`eie_spmv_rows.wgsl`: 8 rows per workgroup, 32 lanes per
/// row, the same codes with relative column indices stored row by row, a tile of inputs per
/// workgroup at batch > 1 (`tile`), every activation of a row's columns gathered).
pub fn eie_rows(
    layer: &EieLayer,
    input: &[f32],
    tile: usize,
    precision: Precision,
) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let rows = layer.rows();
    let tile = if batch == 1 { 1 } else { tile.max(1) };
    let tiles = batch.div_ceil(tile) as u64;
    let padded = tiles * tile as u64;
    let entry_bytes: u64 = if layer.codebook().len() > 16 { 2 } else { 1 };
    let ab = act_bytes(precision);
    // Each row's columns in increasing order, then its entries: one per non-zero plus a
    // padding entry per 16 zero columns skipped.
    let codes = layer.sparse_codes();
    let mut cols_of: Vec<Vec<u32>> = vec![Vec::new(); rows];
    for j in 0..codes.cols {
        for k in codes.col_ptr[j]..codes.col_ptr[j + 1] {
            cols_of[codes.row_idx[k] as usize].push(j as u32);
        }
    }
    let (mut total, mut busiest, mut decoded) = (0u64, 0u64, 0u64);
    for cols in &cols_of {
        let mut next = 0u32;
        let mut n = 0u64;
        for &c in cols {
            n += 1 + ((c - next) / 16) as u64;
            next = c + 1;
        }
        total += n;
        busiest = busiest.max(n.div_ceil(32));
        decoded += n;
    }
    let nnz = codes.nnz() as u64;
    let groups = rows.div_ceil(ROWS_PER_WORKGROUP) as u64;
    let workgroups = groups * tiles;
    let bias = if layer.bias().is_some() { 4 } else { 0 };
    Ok(KernelCost {
        layer: layer.name().to_string(),
        kernel: format!("gpu-eie-rows/{}", precision_name(precision)),
        batch,
        workgroups,
        pes_slices: None,
        listed_columns: (layer.cols() * batch) as u64,
        dispatches: 1,
        bytes: Bytes {
            entries: total * entry_bytes * tiles,
            metadata: (rows as u64 * (8 + bias) + groups * layer.codebook().len() as u64 * 4)
                * tiles,
            activations: nnz * tile as u64 * ab * tiles,
            output: padded * rows as u64 * (ab + 4),
        },
        entries_per_lane: PerLane {
            max: busiest,
            mean: (decoded * tiles) as f64 / (workgroups * WORKGROUP_SIZE as u64) as f64,
        },
    })
}

/// The plain CSR kernel (`csr_spmv.wgsl`: 8 rows and 4 inputs per workgroup, 32 lanes per
/// row, f32 values and u32 column indices, no activation skipping).
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
    for &n in &row_nnz {
        // Lane l of the row's 32 takes non-zeros l, l + 32, ... for all 4 inputs at once.
        busiest = busiest.max(n.div_ceil(32));
        decoded += n;
    }
    let bias = if layer.bias().is_some() { 4 } else { 0 };
    Ok(KernelCost {
        layer: layer.name().to_string(),
        kernel: "gpu-csr/f32".into(),
        batch,
        workgroups,
        pes_slices: None,
        listed_columns: (layer.cols() * batch) as u64,
        dispatches: 1,
        bytes: Bytes {
            entries: nnz * 4 * passes,
            metadata: (nnz * 4 + rows as u64 * (8 + bias)) * passes,
            activations: nnz * 4 * passes * BATCH_TILE as u64,
            output: (batch * rows) as u64 * 4,
        },
        entries_per_lane: PerLane {
            max: busiest,
            mean: (decoded * passes) as f64 / (workgroups * WORKGROUP_SIZE as u64) as f64,
        },
    })
}

/// The dense kernel (`dense_gemv.wgsl`: 8 rows and 4 inputs per workgroup, 32 lanes per row
/// streaming vec4 words; one dispatch per row tile of `tiles`).
pub fn dense(layer: &EieLayer, input: &[f32], tiles: usize) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let (rows, cols) = (layer.rows(), layer.cols());
    let passes = batch.div_ceil(BATCH_TILE) as u64;
    let padded_cols = cols.next_multiple_of(4) as u64;
    let row_groups = rows.div_ceil(ROWS_PER_WORKGROUP) as u64;
    let workgroups = row_groups * passes;
    let bias = if layer.bias().is_some() { 4 } else { 0 };
    Ok(KernelCost {
        layer: layer.name().to_string(),
        kernel: "gpu-dense/f32".into(),
        batch,
        workgroups,
        pes_slices: None,
        listed_columns: (cols * batch) as u64,
        dispatches: tiles.max(1) as u32,
        bytes: Bytes {
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
        },
        entries_per_lane: PerLane {
            max: padded_cols.div_ceil(32),
            mean: (rows as u64 * padded_cols * passes) as f64
                / (workgroups * WORKGROUP_SIZE as u64) as f64,
        },
    })
}

/// Every GPU kernel (EIE in f32, fixed16 and f16, EIE walked by rows in f32, dense, CSR) on
/// every layer of `model` for
/// the batch `input`, each layer's input being the previous layer's output on the CPU model
/// (f32), with PEs from `pes` on a device with `limits`.
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
        for p in [Precision::F32, Precision::Fixed16, Precision::F16] {
            out.push(eie(&interleaved, &plan, &x, p)?);
        }
        out.push(eie_rows(layer, &x, plan.batched.tile, Precision::F32)?);
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
        // Three 32-column slices per PE: the walk and the reduction of the partial sums.
        assert_eq!((plan.single.slices, c.dispatches), (3, 2));
        // Pointer pairs: 48 listed columns × 4 PEs × 8 bytes, plus bitmaps and codebooks.
        assert!(c.bytes.metadata >= 48 * 4 * 8);
        assert_eq!(c.bytes.activations, 48 * 4 * 4);
        // Every entry of a listed column is decoded by exactly one lane of the walk (the
        // reduction's workgroups decode none).
        let (pes, slices) = c.pes_slices.unwrap();
        let lanes = (pes * slices) as f64 * WORKGROUP_SIZE as f64;
        assert_eq!((c.entries_per_lane.mean * lanes).round() as u64, want);
        assert!(c.entries_per_lane.max >= 1);
        // An all-zero input reads no entries.
        let z = eie(&l, &plan, &[0.0; 96], Precision::F32).unwrap();
        assert_eq!(z.bytes.entries, 0);
        assert_eq!(z.entries_per_lane.max, 0);
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
    }
}
