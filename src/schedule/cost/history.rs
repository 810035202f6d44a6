//! Earlier generations of the EIE column-walk kernel, modelled like today's (bytes and the
//! work [`super::latency`] charges for), so that the latency model's constants can be fitted
//! to what was measured of them (docs/measurements/h100-bench-2026-11-27*, lavapipe runs).
//! Each function follows the shader of the commit it names; the PE counts and launches are
//! those commit's planners, copied here because today's planner has moved on.
//!
//! * [`Generation::Atomics`] (`84dc6b3`, `-before`): one workgroup per (PE, input), 8 rows per
//!   PE; every workgroup scans the dense input 2048 values at a time (a two-level prefix sum,
//!   four barriers), then each lane walks whole listed columns of its PE one entry at a time
//!   (a pointer pair, then an entry word every four entries), adding into shared
//!   accumulators with f32 compare-exchange loops (so the updates of one row serialise).
//! * [`Generation::Partials`] (`d13901a`, the plain folder): 16 rows per PE (at least 128
//!   PEs); column-ordered lists; the pointers, activation and first entry word of four
//!   columns loaded before any is walked; per-lane partial sums reduced at the end (three
//!   barriers per eight rows).
//! * [`Generation::Compaction`] (`a011ef0`, `-compaction`): as `Partials`, but the input is
//!   compacted once per input by its own dispatch (`compact_columns`) and every workgroup
//!   reads that list (one more dependent load per batch of four columns).
//! * [`eie_v2`] (`517abbc`): the second generation (one dispatch; bitmaps compacted per chunk
//!   in the workgroup; column groups taking every GROUPS-th listed column with the next
//!   pointer pair prefetched; a lane per entry; split columns summed by the last workgroup of
//!   each PE).

use super::latency::{DispatchWork, PathStats, WorkPath};
use super::{
    check_input, entries_per_word, lane_rounds, listed_columns, warp_steps, words_spanned, Bytes,
    KernelCost, PerLane, ENTRY_STEPS,
};
use crate::error::Result;
use crate::format::EieLayer;
use crate::precision::Precision;
use crate::schedule::WORKGROUP_SIZE;

/// A first-generation EIE kernel measured on the H100 on 2026-11-27.
///
/// Modelled by [`eie_gen1`]; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// `84dc6b3`: input scanned in every workgroup, shared-memory compare-exchange sums.
    Atomics,
    /// `d13901a`: input scanned in every workgroup, per-lane partial sums, four columns'
    /// loads in flight.
    Partials,
    /// `a011ef0`: as `Partials`, with the input compacted once by a separate dispatch.
    Compaction,
}

impl Generation {
    /// All three, oldest first.
    ///
    /// See [`Generation`].
    pub const ALL: [Generation; 3] = [
        Generation::Atomics,
        Generation::Partials,
        Generation::Compaction,
    ];

    /// Short name (`atomics`, `partials`, `compaction`).
    ///
    /// See [`Generation`].
    pub fn name(self) -> &'static str {
        match self {
            Generation::Atomics => "atomics",
            Generation::Partials => "partials",
            Generation::Compaction => "compaction",
        }
    }

    /// The PE count its automatic plan gave a `rows`-row layer (on a device whose limits do
    /// not bind, as on the H100).
    ///
    /// See [`eie_gen1`].
    pub fn pes(self, rows: usize) -> usize {
        let min = rows.div_ceil(1024);
        let want = match self {
            Generation::Atomics => rows.div_ceil(8),
            _ => rows.div_ceil(16).max(128.min(rows)),
        };
        want.clamp(min, rows.max(min))
    }
}

/// Values one workgroup scans per chunk of the first generation's in-workgroup compaction.
const GEN1_CHUNK: usize = 2048;

/// A first-generation EIE kernel on `layer` (re-interleaved to the generation's PE count)
/// for the batch `input`, in f32.
///
/// Returns a [`KernelCost`] as [`super::eie()`] does for today's kernel.
pub fn eie_gen1(layer: &EieLayer, input: &[f32], generation: Generation) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let pes = generation.pes(layer.rows());
    let owned;
    let layer = if layer.pes() == pes {
        layer
    } else {
        owned = layer.with_pes(pes)?;
        &owned
    };
    let (rows, cols) = (layer.rows(), layer.cols());
    let local_rows = rows.div_ceil(pes);
    let per_word = entries_per_word(layer);
    let entry_bytes = 4 / per_word;
    let wg = WORKGROUP_SIZE;
    let chunks = cols.div_ceil(GEN1_CHUNK);
    let scans_input = generation != Generation::Compaction;
    let batched_loads = generation != Generation::Atomics;
    let reduce_rounds = if batched_loads {
        local_rows.div_ceil(8)
    } else {
        0
    };

    let mut bytes = Bytes::default();
    let mut walk = PathStats::default();
    let (mut listed_total, mut decoded, mut busiest) = (0u64, 0u64, 0u64);
    let mut lane_rt = vec![0f64; wg];
    let mut lane_steps = vec![0f64; wg];
    let mut lane_entries = vec![0u64; wg];
    for b in 0..batch {
        let x = &input[b * cols..(b + 1) * cols];
        // The list order: column order, except `Atomics`, whose coalesced scan lists lane t's
        // columns c0 + i * 256 + t (i = 0..8) before lane t + 1's.
        let mut listed: Vec<Vec<usize>> = Vec::with_capacity(chunks);
        for c in 0..chunks {
            let c0 = c * GEN1_CHUNK;
            let c1 = (c0 + GEN1_CHUNK).min(cols);
            let l: Vec<usize> = if generation == Generation::Atomics {
                (0..wg)
                    .flat_map(|t| (0..8).map(move |i| c0 + i * wg + t))
                    .filter(|&j| j < c1 && x[j] != 0.0)
                    .collect()
            } else {
                (c0..c1).filter(|&j| x[j] != 0.0).collect()
            };
            listed.push(l);
        }
        // Without its own compaction, the whole list is one chunk of the walk.
        if !scans_input {
            let all: Vec<usize> = listed.concat();
            listed = vec![all];
        }
        let n: u64 = listed.iter().map(|l| l.len() as u64).sum();
        listed_total += n;
        for p in 0..pes {
            let ptr = layer.pe(p).col_ptr;
            let mut path = WorkPath {
                round_trips: 1.0,
                barriers: 1.0,
                lane_steps: 1.0,
                workgroup_steps: wg as f64,
            };
            if !scans_input {
                // The list count, then list words.
                path.round_trips += 1.0;
            }
            let mut wg_entries = 0u64;
            for l in &listed {
                if scans_input {
                    // Count pass and list pass over 8 values per lane, two-level prefix sum.
                    path.round_trips += 2.0;
                    path.barriers += 4.0;
                    path.lane_steps += 16.0 + 40.0;
                    path.workgroup_steps += (16 * wg + 32 * 8 + 32) as f64;
                }
                lane_rt.iter_mut().for_each(|v| *v = 0.0);
                lane_steps.iter_mut().for_each(|v| *v = 0.0);
                for (k, &j) in l.iter().enumerate() {
                    let t = k % wg;
                    let len = (ptr[j + 1] - ptr[j]) as u64;
                    let words = words_spanned(len, per_word);
                    if batched_loads {
                        // Four columns (k, k + 256, k + 512, k + 768) per load batch: the
                        // first word of each arrives with its pointers.
                        let first_of_batch = (k / wg) % 4 == 0;
                        if first_of_batch {
                            lane_rt[t] += if scans_input { 1.0 } else { 2.0 };
                        }
                        lane_rt[t] += (words - 1.0).max(0.0);
                    } else {
                        lane_rt[t] += 1.0 + words;
                    }
                    lane_steps[t] += (ENTRY_STEPS * len + 1) as f64;
                    lane_entries[t] += len;
                    wg_entries += len;
                }
                path.round_trips += lane_rt.iter().copied().fold(0.0, f64::max);
                path.lane_steps += lane_steps.iter().copied().fold(0.0, f64::max);
                path.workgroup_steps += warp_steps(&lane_steps, 1);
            }
            decoded += wg_entries;
            busiest = busiest.max(*lane_entries.iter().max().unwrap_or(&0));
            lane_entries.iter_mut().for_each(|v| *v = 0);
            if generation == Generation::Atomics {
                // Compare-exchange updates of one accumulator serialise: the busiest row's
                // updates (a read and an exchange each) are a chain (rows are evenly hit, so
                // about entries / local rows).
                path.lane_steps = path
                    .lane_steps
                    .max(2.0 * wg_entries as f64 / local_rows as f64);
            }
            // Partial sums reduced (three barriers per eight rows), then the write-back.
            path.barriers += 1.0 + 3.0 * reduce_rounds as f64;
            path.lane_steps += (48 * reduce_rounds + local_rows.div_ceil(wg)) as f64;
            path.workgroup_steps += ((16 * wg + 8 * 32) * reduce_rounds + local_rows) as f64;
            path.round_trips += 1.0;
            walk.push(path);
            bytes.entries += listed
                .iter()
                .flatten()
                .map(|&j| (ptr[j + 1] - ptr[j]) as u64)
                .sum::<u64>()
                * entry_bytes;
        }
        // Pointer pairs and activations per (PE, listed column); the codebook per workgroup.
        bytes.metadata += n * pes as u64 * 8 + pes as u64 * layer.codebook().len() as u64 * 4;
        bytes.activations += n * pes as u64 * 4;
        if scans_input {
            // Every workgroup reads the input twice (count, then list).
            bytes.activations += pes as u64 * 2 * cols as u64 * 4;
        } else {
            // The compaction reads the input and writes the list; every PE reads the list.
            bytes.activations += cols as u64 * 4;
            bytes.metadata += (n + 1) * 4 + pes as u64 * (n + 1) * 4;
        }
    }
    if layer.bias().is_some() {
        bytes.metadata += (batch * rows) as u64 * 4;
    }
    bytes.output += (batch * rows) as u64 * 4;
    let mut dispatches = Vec::new();
    if !scans_input {
        // compact_columns: one workgroup per input, per chunk two loads and four barriers.
        let path = WorkPath {
            round_trips: (2 * chunks) as f64,
            barriers: (4 * chunks) as f64,
            lane_steps: (56 * chunks) as f64,
            workgroup_steps: ((16 * wg + 32 * 8 + 32) * chunks) as f64,
        };
        dispatches.push(DispatchWork::uniform(batch as u64, path));
    }
    dispatches.push(walk.dispatch());
    let workgroups = (pes * batch) as u64;
    let mut c = KernelCost::new(
        layer,
        format!("gpu-eie-{}/f32", generation.name()),
        batch,
        listed_total,
        bytes,
        PerLane {
            max: busiest,
            mean: decoded as f64 / (workgroups * wg as u64) as f64,
        },
        dispatches,
    );
    c.pes_slices = Some((pes, 1));
    Ok(c)
}

/// The second generation's launch of a layer (`517abbc`'s `eie_launch`): column groups, lanes,
/// slices, columns per slice.
///
/// Returned by [`v2_plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Launch {
    /// Inputs per workgroup.
    pub tile: usize,
    /// Column groups.
    pub groups: usize,
    /// Lanes per column slice and input.
    pub lanes: usize,
    /// Column slices.
    pub slices: usize,
    /// Columns per slice.
    pub slice_cols: usize,
}

const V2_ACC_WORDS: usize = 2560;
const V2_LIST_WORDS: usize = 512;

/// The second generation's PE count (`auto_pes`: pointer pairs within 0.7 of an average
/// column's entry bytes, at most 640 rows per PE) and launch for `batch` inputs on a device
/// aiming at `target` workgroups with input tiles of `batch_tile`.
///
/// [`eie_v2`] models the kernel it launches.
pub fn v2_plan(
    rows: usize,
    cols: usize,
    entry_bytes: usize,
    batch: usize,
    target: usize,
    batch_tile: usize,
) -> (usize, V2Launch) {
    let min = rows.div_ceil(V2_ACC_WORDS / 4);
    let want = (0.7 * entry_bytes as f64 / cols as f64 / 8.0).floor() as usize;
    let pes = want.min(rows).clamp(min, rows.max(min));
    let (tile, tiles) = if batch <= 1 {
        (1, 1)
    } else {
        (batch_tile.clamp(1, 4), 4)
    };
    let local = rows.div_ceil(pes);
    let mut groups = (16 / tile).max(1);
    while groups > 1 && groups * tile * local > V2_ACC_WORDS {
        groups /= 2;
    }
    let words = cols.div_ceil(32);
    let want = target.max(1).div_ceil(pes * tiles).clamp(1, words);
    let slice_cols = 32 * words.div_ceil(want);
    (
        pes,
        V2Launch {
            tile,
            groups,
            lanes: WORKGROUP_SIZE / (groups * tile),
            slices: cols.div_ceil(slice_cols),
            slice_cols,
        },
    )
}

/// The second-generation EIE kernel (`517abbc`) on `layer` for the batch `input`, with the
/// PEs and launch of [`v2_plan`] for a device aiming at `target` workgroups per dispatch with
/// input tiles of `batch_tile`.
pub fn eie_v2(
    layer: &EieLayer,
    input: &[f32],
    precision: Precision,
    target: usize,
    batch_tile: usize,
) -> Result<KernelCost> {
    let batch = check_input(layer, input)?;
    let (pes, launch) = v2_plan(
        layer.rows(),
        layer.cols(),
        layer.entry_bytes(),
        batch,
        target,
        batch_tile,
    );
    let owned;
    let layer = if layer.pes() == pes {
        layer
    } else {
        owned = layer.with_pes(pes)?;
        &owned
    };
    let (rows, cols) = (layer.rows(), layer.cols());
    let local_rows = rows.div_ceil(pes);
    let (tile, groups, lanes, slices) = (launch.tile, launch.groups, launch.lanes, launch.slices);
    let tiles = batch.div_ceil(tile);
    let padded = (tiles * tile) as u64;
    let per_word = entries_per_word(layer);
    let entry_bytes = 4 / per_word;
    let ab = precision.bytes() as u64;
    let chunk = V2_LIST_WORDS / tile;
    let slice_len = |p: usize, j: usize| -> u64 {
        let ptr = layer.pe(p).col_ptr;
        (ptr[j + 1] - ptr[j]) as u64
    };
    let mut bytes = Bytes::default();
    let (mut decoded, mut busiest, mut listed_total) = (0u64, 0u64, 0u64);
    let mut walk = PathStats::default();
    for t in 0..tiles {
        let inputs: Vec<&[f32]> = (t * tile..((t + 1) * tile).min(batch))
            .map(|b| &input[b * cols..(b + 1) * cols])
            .collect();
        let listed = listed_columns(&inputs, cols);
        let n = listed.len() as u64;
        listed_total += n;
        bytes.metadata += n * pes as u64 * 8;
        bytes.activations += n * pes as u64 * tile as u64 * ab;
        for p in 0..pes {
            bytes.entries += listed.iter().map(|&j| slice_len(p, j)).sum::<u64>() * entry_bytes;
            for s in 0..slices {
                let lo = s * launch.slice_cols;
                let hi = (lo + launch.slice_cols).min(cols);
                let mut path = WorkPath {
                    round_trips: 1.0,
                    barriers: 0.0,
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
                    let nw = (ce - cc).div_ceil(32);
                    let densest = (0..nw)
                        .map(|w| mine.iter().filter(|&&j| (j - cc) / 32 == w).count())
                        .max()
                        .unwrap_or(0);
                    // Bitmap words, serial offsets, list, activations, first pointer pairs.
                    path.round_trips += 3.0;
                    path.barriers += 3.0;
                    path.lane_steps += (densest + 2 * nw) as f64;
                    path.workgroup_steps += (mine.len() * (1 + tile) + 2 * nw) as f64;
                    let steps = mine.len().div_ceil(groups);
                    let mut units = vec![0f64; groups * tile];
                    for st in 0..steps {
                        let (mut rt, mut lane) = (0u64, 0f64);
                        units.iter_mut().for_each(|u| *u = 0.0);
                        for g in 0..groups {
                            let Some(&j) = mine.get(st * groups + g) else {
                                continue;
                            };
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
                        // The next pointer pair is in flight while this step walks.
                        path.round_trips += rt.max(1) as f64;
                        path.barriers += 1.0;
                        path.lane_steps += lane;
                    }
                }
                busiest = busiest.max(lane_entries.iter().copied().max().unwrap_or(0));
                let outs = tile * local_rows;
                path.lane_steps += (groups * outs.div_ceil(WORKGROUP_SIZE)) as f64;
                path.workgroup_steps += (groups * outs) as f64;
                path.round_trips += 1.0;
                if slices > 1 && s == slices - 1 {
                    // The last workgroup of the PE: the counter, then the S partials (eight
                    // loads in flight) and the write-back.
                    path.round_trips += (1 + slices.div_ceil(8) + 1) as f64;
                    path.barriers += 1.0;
                    path.lane_steps += (slices * outs.div_ceil(WORKGROUP_SIZE)) as f64;
                    path.workgroup_steps += (slices * outs) as f64;
                } else if slices > 1 {
                    path.round_trips += 1.0;
                    path.barriers += 1.0;
                }
                walk.push(path);
            }
        }
    }
    let walk_groups = (slices * pes * tiles) as u64;
    let words = cols.div_ceil(32) as u64;
    bytes.metadata += pes as u64 * padded * words * 4;
    bytes.metadata += walk_groups * layer.codebook().len() as u64 * 4;
    if layer.bias().is_some() {
        bytes.metadata += padded * rows as u64 * 4;
    }
    bytes.output += padded * rows as u64 * (ab + 4);
    if slices > 1 {
        bytes.metadata += (walk_groups + (pes * tiles) as u64) * 4;
        let partials = 2 * slices as u64 * padded * (pes * local_rows) as u64 * 4;
        bytes.partial_sums = partials;
        bytes.metadata += partials;
    }
    let mut c = KernelCost::new(
        layer,
        format!("gpu-eie-v2/{}", precision.name()),
        batch,
        listed_total,
        bytes,
        PerLane {
            max: busiest,
            mean: decoded as f64 / (walk_groups * WORKGROUP_SIZE as u64) as f64,
        },
        vec![walk.dispatch()],
    );
    c.pes_slices = Some((pes, slices));
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Activation, SparseCodes};

    fn layer(rows: usize, cols: usize, every: usize) -> EieLayer {
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
        EieLayer::encode(&sc, cb, 4, 4, None, Activation::Relu).unwrap()
    }

    #[test]
    fn generations_count_the_same_entries_and_their_dispatches() {
        let l = layer(300, 5000, 7);
        let x: Vec<f32> = (0..5000).map(|j| (j % 3 == 0) as u8 as f32).collect();
        let a = eie_gen1(&l, &x, Generation::Atomics).unwrap();
        let p = eie_gen1(&l, &x, Generation::Partials).unwrap();
        let c = eie_gen1(&l, &x, Generation::Compaction).unwrap();
        assert_eq!(a.pes_slices, Some((38, 1)));
        assert_eq!(p.pes_slices, Some((128, 1)));
        // Entries read do not depend on the PE count (no padding at this density).
        assert_eq!(p.bytes.entries, c.bytes.entries);
        assert_eq!((a.dispatches, p.dispatches, c.dispatches), (1, 1, 2));
        // Loads of four columns in flight: fewer round trips than one column at a time.
        let rt = |k: &KernelCost| k.work.dispatches.last().unwrap().busiest.round_trips;
        assert!(rt(&p) < rt(&a));
        // The scanning generations read the input in every workgroup.
        assert!(p.bytes.activations > c.bytes.activations);
        let v2 = eie_v2(&l, &x, Precision::F32, 1024, 4).unwrap();
        assert_eq!(v2.dispatches, 1);
        assert!(v2.bytes.partial_sums > 0);
    }
}
