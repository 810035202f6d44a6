//! A cycle-level model of the EIE ASIC (EIE, section IV), in the manner of the authors' own
//! simulator: leading non-zero detection and the central control unit broadcasting non-zero
//! activations into per-PE FIFOs, PEs streaming their relative-indexed column slices from the
//! sparse-matrix SRAM, codebook decode, multiply-accumulate, ReLU on write-back, and the
//! source/destination register swap between the layers of a model.
//!
//! The simulator computes the layer outputs itself, in the PEs' order, and they equal the CPU
//! model's ([`crate::CpuEngine`]): bit for bit in fixed16, and in f32 as well, since every output
//! row is summed in the same order. Alongside come the statistics of [`SimResult`]: cycles, time
//! at the clock, per-PE busy / starved / drained / stalled cycles, load-balance efficiency, work
//! and padding, SRAM reads and an [`Energy`] estimate.
//!
//! **Long vectors.** Each PE holds 64 source and 64 destination activations in register files
//! ([`SimConfig::act_regs_per_pe`]), 4K activations over 64 PEs. A layer with more inputs or
//! outputs runs in rounds, as the paper's "batches of 4K or less": outputs are split into row
//! pieces of at most `act_regs_per_pe × N` rows (each piece a full pass over the input, with its
//! own column pointers and padding, as if encoded separately), and within a row piece the input
//! into column pieces of at most `act_regs_per_pe × N` activations that accumulate into the same
//! accumulators. A round ends when every PE has drained (the source registers are then reloaded
//! from the activation SRAM); the next starts with empty FIFOs. The pipeline's timing rules,
//! taken from the authors' C++ simulator, are documented in `src/sim/pipeline.rs`;
//! [`sequence`] runs models with recurrent layers step by step (cycles per time step, the
//! element-wise cell update's latency stated there);
//! `docs/SIM.md` has the whole model, its results and a comparison with that simulator.
//!
//! Start with [`simulate_model`] (a [`crate::Model`], an input and a [`SimConfig`], whose
//! `Default` is the paper's chip), or [`Simulator::new`] to run several inputs; `eie sim` prints
//! a [`SimResult`].

mod arith;
pub mod chart;
mod energy;
pub mod paper;
mod pipeline;
pub mod sequence;

pub use energy::{Energy, DRAM_READ_32_PJ, INT_ADD_PJ, INT_MULT_PJ, SRAM_READ_32_PJ};
pub use sequence::{simulate_sequence, SequenceSimResult};

use crate::error::{Error, Result};
use crate::fixed16::{self, FixedCodebook};
use crate::format::{EieLayer, Model, SparseCodes};
use crate::precision::Precision;
use arith::{Arith, F32Arith, FixedArith};
use serde::Serialize;
use std::borrow::Cow;

/// The simulated ASIC's parameters.
///
/// `Default` is the paper's chip; [`simulate_model`] and [`Simulator::new`] take one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SimConfig {
    /// Processing elements (1..=1024); the paper's ASIC has 64.
    pub pes: usize,
    /// Activation FIFO depth per PE (1..=256); the paper's ASIC has 8. As in the authors'
    /// simulator, a FIFO of depth `d ≥ 2` is a ring of `d` slots holding at most `d − 1`
    /// activations; depth 1 means no FIFO (see the `pipeline` rules).
    pub fifo_depth: usize,
    /// Sparse-matrix SRAM line width in entries (1..=1024); 8 (64 bits of 8-bit entries).
    pub line_entries: usize,
    /// Clock in MHz; 800.
    pub clock_mhz: f64,
    /// Source (and destination) activation registers per PE (1..=65536); 64, so one round holds
    /// `64 × N` activations.
    pub act_regs_per_pe: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            pes: 64,
            fifo_depth: 8,
            line_entries: 8,
            clock_mhz: 800.0,
            act_regs_per_pe: 64,
        }
    }
}

impl SimConfig {
    /// Checks every parameter's range.
    ///
    /// [`Simulator::new`] calls it.
    pub fn validate(&self) -> Result<()> {
        let check = |what: &str, v: usize, max: usize| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!(
                    "{what} {v} outside 1..={max}"
                )))
            }
        };
        check("PE count", self.pes, 1024)?;
        check("FIFO depth", self.fifo_depth, 256)?;
        check("SRAM line width (entries)", self.line_entries, 1024)?;
        check("activation registers per PE", self.act_regs_per_pe, 65536)?;
        if !(self.clock_mhz.is_finite() && self.clock_mhz > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "clock {} MHz must be positive",
                self.clock_mhz
            )));
        }
        Ok(())
    }

    /// Activations (inputs or outputs) one round holds: `act_regs_per_pe × pes`.
    ///
    /// See the [module docs](self) on long vectors.
    pub fn round_size(&self) -> usize {
        self.act_regs_per_pe * self.pes
    }
}

/// One PE's counters. Every cycle of a run is exactly one of busy, starved or drained.
///
/// Listed per PE in [`SimResult::pes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeStats {
    /// Cycles spent on an activation: one per entry of its slice, or one for an empty slice.
    pub busy: u64,
    /// Idle cycles with nothing to pop while the CCU still had activations to broadcast
    /// (waiting for a broadcast held up by another PE's full FIFO or by the LNZD, or for one
    /// written into the FIFO in the cycle before).
    pub starved: u64,
    /// Idle cycles once the CCU had nothing left to broadcast: waiting for the slowest PE and
    /// for the last entries to leave the arithmetic pipeline.
    pub drained: u64,
    /// Cycles in which this PE's full FIFO (at depth 1: its busy activation register) held up
    /// the broadcast.
    pub stalled: u64,
    /// Activations popped from the FIFO.
    pub activations: u64,
    /// Entries with a non-zero code (one multiply-accumulate each).
    pub useful_macs: u64,
    /// Padding entries (code 0) streamed: a cycle each, no arithmetic.
    pub padding_entries: u64,
    /// Activations whose slice in this PE was empty (one cycle each).
    pub empty_slices: u64,
    /// 16-bit pointer words read (two per activation, from the even and odd banks).
    pub pointer_reads: u64,
    /// Sparse-matrix SRAM lines read.
    pub matrix_reads: u64,
    /// Multiply-accumulates that hit the accumulator written the cycle before (bypass path).
    pub bypasses: u64,
}

impl PeStats {
    /// Idle cycles (starved + drained).
    ///
    /// See [`SimResult::load_balance_efficiency`].
    pub fn bubbles(&self) -> u64 {
        self.starved + self.drained
    }

    fn add(&mut self, o: &PeStats) {
        self.busy += o.busy;
        self.starved += o.starved;
        self.drained += o.drained;
        self.stalled += o.stalled;
        self.activations += o.activations;
        self.useful_macs += o.useful_macs;
        self.padding_entries += o.padding_entries;
        self.empty_slices += o.empty_slices;
        self.pointer_reads += o.pointer_reads;
        self.matrix_reads += o.matrix_reads;
        self.bypasses += o.bypasses;
    }
}

/// Totals over PEs and rounds.
///
/// In [`SimResult::counters`] and [`LayerStats::counters`]; [`Energy::estimate`] prices them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Non-zero activations broadcast by the CCU.
    pub broadcasts: u64,
    /// Cycles the LNZD broadcast nothing: finding that its group of N activations held no
    /// (further) non-zero and loading the next group.
    pub lnzd_empty_cycles: u64,
    /// Cycles the CCU held a non-zero but some FIFO was full.
    pub ccu_stall_cycles: u64,
    /// Useful multiply-accumulates (non-zero weight × non-zero activation).
    pub useful_macs: u64,
    /// Padding entries streamed.
    pub padding_entries: u64,
    /// (PE, activation) pairs with an empty slice.
    pub empty_slices: u64,
    /// Busy cycles summed over PEs.
    pub busy_cycles: u64,
    /// Idle (bubble) cycles summed over PEs.
    pub bubble_cycles: u64,
    /// Pointer SRAM reads (16-bit words).
    pub pointer_reads: u64,
    /// Sparse-matrix SRAM line reads.
    pub matrix_reads: u64,
    /// Back-to-back accumulator hits served by the bypass.
    pub accumulator_bypasses: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.broadcasts += o.broadcasts;
        self.lnzd_empty_cycles += o.lnzd_empty_cycles;
        self.ccu_stall_cycles += o.ccu_stall_cycles;
        self.useful_macs += o.useful_macs;
        self.padding_entries += o.padding_entries;
        self.empty_slices += o.empty_slices;
        self.busy_cycles += o.busy_cycles;
        self.bubble_cycles += o.bubble_cycles;
        self.pointer_reads += o.pointer_reads;
        self.matrix_reads += o.matrix_reads;
        self.accumulator_bypasses += o.accumulator_bypasses;
    }

    /// Work in PE cycles counted by the theoretical time: every entry streamed, padding included.
    ///
    /// See [`SimResult::theoretical_us`].
    pub fn work(&self) -> u64 {
        self.useful_macs + self.padding_entries
    }
}

/// Statistics of one layer (summed over the batch).
///
/// Listed per layer in [`SimResult::layers`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerStats {
    /// The layer's name.
    pub name: String,
    /// Outputs.
    pub rows: usize,
    /// Inputs.
    pub cols: usize,
    /// Row pieces the outputs were split into (see the module documentation).
    pub row_pieces: usize,
    /// Column pieces the inputs were split into.
    pub col_pieces: usize,
    /// Total cycles.
    pub cycles: u64,
    /// `cycles` at the clock (µs).
    pub time_us: f64,
    /// Work including padding / (N × clock) (µs).
    pub theoretical_us: f64,
    /// 1 − bubble cycles / (N × cycles).
    pub load_balance_efficiency: f64,
    /// Operation counts.
    #[serde(flatten)]
    pub counters: Counters,
    /// Energy estimate.
    pub energy: Energy,
    /// Per-PE counters.
    pub pes: Vec<PeStats>,
}

/// Everything a simulation produces.
///
/// Returned by [`simulate_model`] and [`Simulator::run`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimResult {
    /// The simulated ASIC.
    pub config: SimConfig,
    /// The datapath's arithmetic.
    pub precision: Precision,
    /// Input vectors simulated (one after the other).
    pub batch: usize,
    /// Total cycles.
    pub cycles: u64,
    /// `cycles` at the clock (µs).
    pub time_us: f64,
    /// Work including padding / (N × clock) (µs).
    pub theoretical_us: f64,
    /// 1 − bubble cycles / (N × cycles), the paper's load-balance efficiency.
    pub load_balance_efficiency: f64,
    /// Operation counts over all layers.
    #[serde(flatten)]
    pub counters: Counters,
    /// Energy estimate over all layers.
    pub energy: Energy,
    /// Per-layer statistics.
    pub layers: Vec<LayerStats>,
    /// Per-PE counters over all layers.
    pub pes: Vec<PeStats>,
    /// The model's output, `batch × output_size` values (dequantised in fixed16).
    #[serde(skip)]
    pub output: Vec<f32>,
}

/// A row piece of a layer: the rows `row0..row0 + layer.rows()` encoded on their own (`None`:
/// the whole layer).
struct RowPiece {
    row0: usize,
    layer: Option<EieLayer>,
}

/// A layer ready to simulate: re-interleaved over the configured PEs and split into pieces.
struct Prepared<'a> {
    layer: Cow<'a, EieLayer>,
    pieces: Vec<RowPiece>,
}

/// The precisions the simulator models, EIE's datapath in f32 or fixed16:
/// [`Error::UnsupportedPrecision`] for f16. [`Simulator::new`], [`simulate_model`] and
/// [`simulate_sequence`] check it before they prepare anything.
pub(crate) fn check_precision(precision: Precision) -> Result<()> {
    if precision == Precision::F16 {
        return Err(Error::UnsupportedPrecision {
            backend: "the simulator (EIE's datapath)".into(),
            precision: precision.name().into(),
            supported: "f32 or fixed16".into(),
        });
    }
    Ok(())
}

/// A model prepared for one configuration and precision; [`Simulator::run`] simulates input
/// batches on it.
pub struct Simulator<'a> {
    cfg: SimConfig,
    precision: Precision,
    layers: Vec<Prepared<'a>>,
}

impl<'a> Simulator<'a> {
    /// Prepares `model` for `cfg` in `precision` (chosen at build, as on every engine): layers
    /// encoded for another PE count are re-interleaved ([`EieLayer::with_pes`]) and layers with
    /// more outputs than a round holds are split into row pieces.
    /// [`Error::UnsupportedPrecision`] for f16 (the simulator models f32 and fixed16).
    pub fn new(model: &'a Model, cfg: &SimConfig, precision: Precision) -> Result<Self> {
        cfg.validate()?;
        check_precision(precision)?;
        let layers = model
            .layers()
            .iter()
            .map(|l| {
                let layer = if l.pes() == cfg.pes {
                    Cow::Borrowed(l)
                } else {
                    Cow::Owned(l.with_pes(cfg.pes)?)
                };
                let pieces = if layer.rows() <= cfg.round_size() {
                    vec![RowPiece {
                        row0: 0,
                        layer: None,
                    }]
                } else {
                    split_rows(&layer, cfg.round_size())?
                };
                Ok(Prepared { layer, pieces })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Simulator {
            cfg: *cfg,
            precision,
            layers,
        })
    }

    /// The configuration.
    ///
    /// See [`Simulator::new`].
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Simulates a batch (`input.len()` a multiple of the input size), vector after vector.
    ///
    /// See [`SimResult`]; [`simulate_model`] is this in one call.
    pub fn run(&self, input: &[f32]) -> Result<SimResult> {
        let precision = self.precision;
        let first = &self.layers[0].layer;
        let batch = crate::format::check_batch(first.cols(), input)?;
        let n = self.cfg.pes;
        let mut layer_stats: Vec<LayerStats> = self
            .layers
            .iter()
            .map(|p| LayerStats {
                name: p.layer.name().to_string(),
                rows: p.layer.rows(),
                cols: p.layer.cols(),
                row_pieces: p.pieces.len(),
                col_pieces: p.layer.cols().div_ceil(self.cfg.round_size()),
                cycles: 0,
                time_us: 0.0,
                theoretical_us: 0.0,
                load_balance_efficiency: 0.0,
                counters: Counters::default(),
                energy: Energy::default(),
                pes: vec![PeStats::default(); n],
            })
            .collect();
        let mut output =
            Vec::with_capacity(batch * self.layers[self.layers.len() - 1].layer.rows());
        for x in input.chunks_exact(first.cols()) {
            match precision {
                Precision::F32 => {
                    let mut cur = x.to_vec();
                    for (prep, st) in self.layers.iter().zip(&mut layer_stats) {
                        let arith = F32Arith {
                            codebook: prep.layer.codebook(),
                        };
                        cur = self.layer(prep, &arith, &cur, st);
                    }
                    output.extend_from_slice(&cur);
                }
                Precision::Fixed16 | Precision::F16 => {
                    let first = self.layers[0].layer.fixed16_format().input_frac();
                    let last = self.layers[self.layers.len() - 1].layer.fixed16_format();
                    let mut cur: Vec<i16> = x
                        .iter()
                        .map(|&v| fixed16::quantize_activation(v, first))
                        .collect();
                    for (prep, st) in self.layers.iter().zip(&mut layer_stats) {
                        let arith = FixedArith {
                            codebook: FixedCodebook::new(prep.layer.codebook()),
                            format: prep.layer.fixed16_format(),
                        };
                        cur = self.layer(prep, &arith, &cur, st);
                    }
                    output.extend(
                        cur.iter()
                            .map(|&q| fixed16::dequantize_activation(q, last.output_frac())),
                    );
                }
            }
        }
        let mut counters = Counters::default();
        let mut pes = vec![PeStats::default(); n];
        let mut cycles = 0;
        for st in &mut layer_stats {
            self.finish_stats(st);
            counters.add(&st.counters);
            cycles += st.cycles;
            for (a, b) in pes.iter_mut().zip(&st.pes) {
                a.add(b);
            }
        }
        let clock = self.cfg.clock_mhz;
        Ok(SimResult {
            config: self.cfg,
            precision,
            batch,
            cycles,
            time_us: cycles as f64 / clock,
            theoretical_us: counters.work() as f64 / (n as f64 * clock),
            load_balance_efficiency: efficiency(&counters, n, cycles),
            counters,
            energy: self.energy(&counters),
            layers: layer_stats,
            pes,
            output,
        })
    }

    fn energy(&self, c: &Counters) -> Energy {
        Energy::estimate(
            c.useful_macs,
            c.pointer_reads,
            c.matrix_reads,
            self.cfg.line_entries,
        )
    }

    /// Fills a layer's derived figures from its per-PE counters.
    fn finish_stats(&self, st: &mut LayerStats) {
        let n = self.cfg.pes;
        let c = &mut st.counters;
        for p in &st.pes {
            c.useful_macs += p.useful_macs;
            c.padding_entries += p.padding_entries;
            c.empty_slices += p.empty_slices;
            c.busy_cycles += p.busy;
            c.bubble_cycles += p.bubbles();
            c.pointer_reads += p.pointer_reads;
            c.matrix_reads += p.matrix_reads;
            c.accumulator_bypasses += p.bypasses;
        }
        let clock = self.cfg.clock_mhz;
        st.time_us = st.cycles as f64 / clock;
        st.theoretical_us = c.work() as f64 / (n as f64 * clock);
        st.load_balance_efficiency = efficiency(c, n, st.cycles);
        st.energy = self.energy(&st.counters);
    }

    /// Simulates one layer on one vector; returns its output activations.
    fn layer<A: Arith>(
        &self,
        prep: &Prepared<'_>,
        arith: &A,
        x: &[A::Act],
        st: &mut LayerStats,
    ) -> Vec<A::Act> {
        let n = self.cfg.pes;
        let round = self.cfg.round_size();
        let src: &EieLayer = &prep.layer;
        let bias = |row: usize| src.bias().map_or(0.0, |b| b[row]);
        let mut out = vec![arith.zero(); src.rows()];
        for piece in &prep.pieces {
            let pl = piece.layer.as_ref().unwrap_or(src);
            let mut acc: Vec<Vec<A::Acc>> = (0..n)
                .map(|p| {
                    (0..pl.rows_of_pe(p))
                        .map(|k| arith.start(bias(piece.row0 + p + k * n)))
                        .collect()
                })
                .collect();
            for c0 in (0..src.cols()).step_by(round) {
                let c1 = (c0 + round).min(src.cols());
                let (bcast, slots) = pipeline::schedule(x, c0, c1, n, A::nonzero);
                let rc = pipeline::run_round(
                    pl,
                    arith,
                    &bcast,
                    &slots,
                    self.cfg.fifo_depth,
                    self.cfg.line_entries,
                    &mut acc,
                    &mut st.pes,
                );
                st.cycles += rc.cycles;
                st.counters.broadcasts += rc.broadcasts;
                st.counters.lnzd_empty_cycles += rc.lnzd_empty_cycles;
                st.counters.ccu_stall_cycles += rc.ccu_stall_cycles;
            }
            // Write-back: bias, rounding and ReLU into the destination registers.
            for (p, local) in acc.iter().enumerate() {
                for (k, &a) in local.iter().enumerate() {
                    let row = piece.row0 + p + k * n;
                    out[row] = arith.finish(a, bias(row), src.activation());
                }
            }
        }
        out
    }
}

fn efficiency(c: &Counters, pes: usize, cycles: u64) -> f64 {
    if cycles == 0 {
        1.0
    } else {
        1.0 - c.bubble_cycles as f64 / (pes as f64 * cycles as f64)
    }
}

/// Splits a layer's outputs into pieces of `piece_rows` rows (a multiple of its PE count), each
/// encoded on its own over the same PEs (own pointers, padding from the top of the piece).
fn split_rows(layer: &EieLayer, piece_rows: usize) -> Result<Vec<RowPiece>> {
    let codes = layer.sparse_codes();
    let (rows, cols) = (layer.rows(), layer.cols());
    let pieces = rows.div_ceil(piece_rows);
    let mut count = vec![vec![0usize; cols + 1]; pieces];
    for j in 0..cols {
        for &r in &codes.row_idx[codes.col_ptr[j]..codes.col_ptr[j + 1]] {
            count[r as usize / piece_rows][j + 1] += 1;
        }
    }
    let mut parts: Vec<SparseCodes> = count
        .into_iter()
        .enumerate()
        .map(|(k, mut ptr)| {
            for j in 0..cols {
                ptr[j + 1] += ptr[j];
            }
            let nnz = ptr[cols];
            SparseCodes {
                rows: piece_rows.min(rows - k * piece_rows),
                cols,
                col_ptr: ptr,
                row_idx: Vec::with_capacity(nnz),
                code: Vec::with_capacity(nnz),
            }
        })
        .collect();
    for j in 0..cols {
        for k in codes.col_ptr[j]..codes.col_ptr[j + 1] {
            let r = codes.row_idx[k] as usize;
            let part = &mut parts[r / piece_rows];
            part.row_idx.push((r % piece_rows) as u32);
            part.code.push(codes.code[k]);
        }
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(k, part)| {
            let mut l = EieLayer::encode(
                &part,
                layer.codebook().to_vec(),
                layer.bits(),
                layer.pes(),
                None,
                layer.activation(),
            )?;
            l.set_name(format!("{}[rows {}..]", layer.name(), k * piece_rows));
            Ok(RowPiece {
                row0: k * piece_rows,
                layer: Some(l),
            })
        })
        .collect()
}

/// Simulates `model` on `input` (one or more vectors back to back) on the ASIC `cfg` describes.
///
/// Returns a [`SimResult`]; `eie sim` prints one, and [`paper::run_all`] runs the paper's
/// layers. [`Error::UnsupportedPrecision`] for f16, before the model is prepared.
pub fn simulate_model(
    model: &Model,
    input: &[f32],
    cfg: &SimConfig,
    precision: Precision,
) -> Result<SimResult> {
    Simulator::new(model, cfg, precision)?.run(input)
}
