//! Sequence models on the simulated ASIC, ESE-style: every time step runs each stage in turn,
//! a fully-connected stage as one EIE layer pass and a recurrent stage as two sparse products,
//! `W_ih · x_t` and then `W_hh · h_{t−1}` (each a full pass of the [`super::Simulator`]:
//! broadcasts, FIFOs, PEs, pipeline drain), followed by the element-wise cell update.
//!
//! **Layout.** A gate matrix is interleaved over `N` PEs with `N` dividing `H`, so every PE owns
//! all gates of its hidden units ([`crate::format::sequence`]): the cell update runs inside the
//! PE at write-back, reading the gate sums of both products from its accumulators (the two
//! products keep separate accumulators, since a GRU needs `W_hn h + b_hn` apart), and writes
//! `h_t` into its destination activation registers, which hold exactly the `h` entries the PE's
//! LNZD group broadcasts next step. No data moves between PEs.
//!
//! **The element-wise unit.** Each PE has one pipelined element-wise unit that takes one hidden
//! unit per cycle (all `G` gates of the unit read in parallel from the accumulators) and
//! finishes it [`cell_latency`] cycles later, so a step's update costs
//! `H / N + latency − 1` cycles ([`cell_update_cycles`]) on every PE alike (no load imbalance).
//! The latency is one cycle per dependent operation of the fixed16 cell arithmetic
//! ([`crate::recurrent::cell::update_fixed16`]), counted as the PE's arithmetic pipeline counts
//! its multiply and its add (one cycle each), with `σ` and `tanh` a table read followed by the
//! interpolation's multiply and add (three cycles), as ESE implements them piecewise linearly:
//!
//! * LSTM, [`LSTM_CELL_LATENCY`] = 11: gate sum `gx + gh` (1); `σ`/`tanh` of the four gates in
//!   parallel (3); `f·c` and `i·g` (1); their sum, `c'` (1); `tanh(c')` (3); `o·tanh(c')` (1);
//!   write-back of `h` and `c` (1).
//! * GRU, [`GRU_CELL_LATENCY`] = 12: gate sums of `r` and `z` (1); `σ(r)`, `σ(z)` (3);
//!   `r·gh_n` (1); `+ gx_n` (1); `tanh` (3); `(1 − z)·n` and `z·h` (1); their sum (1);
//!   write-back (1).
//!
//! The model is serial: the next product starts only when the previous one has drained, and
//! the update only when both products have. Hardware could overlap `W_ih · x_{t+1}` (which does
//! not depend on `h_t`) with step `t`'s `W_hh` product and update; the figures here do not, so
//! they are an upper bound on such a design's cycles. A step's cycles are therefore exactly the
//! sum of its parts, each part simulated as the single layer it is.
//!
//! Start with [`simulate_sequence`]; it returns a [`SequenceSimResult`].

use super::{efficiency, Counters, Energy, LayerStats, PeStats, SimConfig, Simulator};
use crate::error::{Error, Result};
use crate::fixed16;
use crate::format::{sequence::recurrent_pes_ok, CellKind, Model, SequenceModel};
use crate::precision::Precision;
use crate::recurrent::{cell, SequenceEngine, StageParts};
use serde::Serialize;

/// Pipeline latency (cycles) of the element-wise unit for an LSTM cell (see the module
/// documentation for the stages counted).
///
/// See [`cell_latency`].
pub const LSTM_CELL_LATENCY: u64 = 11;
/// Pipeline latency (cycles) of the element-wise unit for a GRU cell.
///
/// See [`cell_latency`] and the [module docs](self).
pub const GRU_CELL_LATENCY: u64 = 12;

/// The element-wise unit's pipeline latency for `kind`.
///
/// [`LSTM_CELL_LATENCY`] or [`GRU_CELL_LATENCY`]; [`cell_update_cycles`] adds it.
pub fn cell_latency(kind: CellKind) -> u64 {
    match kind {
        CellKind::Lstm => LSTM_CELL_LATENCY,
        CellKind::Gru => GRU_CELL_LATENCY,
    }
}

/// Cycles of one step's cell update for a layer of `hidden` units over `pes` PEs (`pes`
/// divides `hidden`): one unit per cycle per PE, `hidden / pes` units each, plus the
/// pipeline's latency.
///
/// [`simulate_sequence`] charges it every step.
pub fn cell_update_cycles(kind: CellKind, hidden: usize, pes: usize) -> u64 {
    (hidden / pes.max(1)) as u64 + cell_latency(kind) - 1
}

/// One stage's statistics over all steps.
///
/// Listed in [`SequenceSimResult`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageSimStats {
    /// The stage's name.
    pub name: String,
    /// `fc`, `lstm` or `gru`.
    pub kind: &'static str,
    /// Cycles over all steps: the products and, for a recurrent stage, the cell updates.
    pub cycles: u64,
    /// Cycles of one step's cell update ([`cell_update_cycles`]; 0 for a fully-connected
    /// stage).
    pub cell_update_cycles_per_step: u64,
    /// The stage's matrices (a fully-connected weight; `W_ih` then `W_hh`), each summed over
    /// all steps: its cycles, load-balance efficiency, work and per-PE counters.
    pub matrices: Vec<LayerStats>,
}

/// A sequence on the simulated ASIC ([`simulate_sequence`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SequenceSimResult {
    /// The simulated ASIC.
    pub config: SimConfig,
    /// The datapath's arithmetic.
    pub precision: Precision,
    /// Time steps simulated.
    pub steps: usize,
    /// Total cycles.
    pub cycles: u64,
    /// Cycles of each step.
    pub step_cycles: Vec<u64>,
    /// `cycles / steps`.
    pub cycles_per_step: f64,
    /// `cycles_per_step` at the clock (µs).
    pub time_per_step_us: f64,
    /// Load-balance efficiency of the sparse products over all steps: 1 − bubble cycles /
    /// (N × product cycles). The cell updates, equal on every PE, are not counted.
    pub load_balance_efficiency: f64,
    /// Energy estimate of the sparse products (the element-wise units are not modelled).
    pub energy: Energy,
    /// Per-stage statistics.
    pub stages: Vec<StageSimStats>,
    /// The model's output at every step, `steps × output_size` values (dequantised in
    /// fixed16); equal to [`SequenceEngine::run`]'s from the zero state.
    #[serde(skip)]
    pub output: Vec<f32>,
}

/// A one-matrix simulator and the statistics it gathers over the steps.
struct Part<'a> {
    sim: Simulator<'a>,
    stats: Option<LayerStats>,
}

impl<'a> Part<'a> {
    fn new(model: &'a Model, cfg: &SimConfig, precision: Precision) -> Result<Self> {
        Ok(Part {
            sim: Simulator::new(model, cfg, precision)?,
            stats: None,
        })
    }

    /// Simulates one vector; returns its output and cycles.
    fn run(&mut self, x: &[f32]) -> Result<(Vec<f32>, u64)> {
        let r = self.sim.run(x)?;
        let l = r.layers.into_iter().next().expect("a one-layer model");
        match &mut self.stats {
            None => self.stats = Some(l),
            Some(s) => {
                s.cycles += l.cycles;
                s.counters.add(&l.counters);
                for (a, b) in s.pes.iter_mut().zip(&l.pes) {
                    a.add(b);
                }
            }
        }
        Ok((r.output, r.cycles))
    }

    /// The statistics over all steps, derived figures recomputed.
    fn finish(self, cfg: &SimConfig) -> LayerStats {
        let mut s = self.stats.expect("at least one step");
        let (n, clock) = (cfg.pes, cfg.clock_mhz);
        s.time_us = s.cycles as f64 / clock;
        s.theoretical_us = s.counters.work() as f64 / (n as f64 * clock);
        s.load_balance_efficiency = efficiency(&s.counters, n, s.cycles);
        s.energy = Energy::estimate(
            s.counters.useful_macs,
            s.counters.pointer_reads,
            s.counters.matrix_reads,
            cfg.line_entries,
        );
        s
    }
}

/// A stage ready to simulate, with its recurrent state (one per stage of the model, held in a
/// short vector: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
enum SimStage<'a> {
    Fc(Part<'a>),
    Recurrent {
        kind: CellKind,
        hidden: usize,
        gate_frac: u32,
        ih: Part<'a>,
        hh: Part<'a>,
        /// `h` as the `W_hh` product's input (f32, or the fixed16 values dequantised).
        h: Vec<f32>,
        c: Vec<f32>,
        hq: Vec<i16>,
        cq: Vec<i32>,
    },
}

/// Simulates one sequence of `steps` steps (`input`: `steps × input_size` values) from the
/// zero state on the ASIC `cfg` describes, in f32 or fixed16 (with the formats
/// [`SequenceEngine::new`] chooses). Every step runs each stage in turn: a fully-connected
/// stage as one layer pass, a recurrent stage as the `W_ih · x_t` pass, the `W_hh · h_{t−1}`
/// pass and [`cell_update_cycles`] of element-wise update (see the module documentation).
///
/// [`Error::UnsupportedPrecision`] for f16, [`Error::InvalidArgument`] for a PE count that does not divide a recurrent
/// layer's hidden size (a PE must own all gates of its units); [`Error::Shape`] for an input
/// of the wrong length.
pub fn simulate_sequence(
    model: &SequenceModel,
    input: &[f32],
    steps: usize,
    cfg: &SimConfig,
    precision: Precision,
) -> Result<SequenceSimResult> {
    cfg.validate()?;
    super::check_precision(precision)?;
    let n_in = model.input_size();
    if steps == 0 || steps.checked_mul(n_in) != Some(input.len()) {
        return Err(Error::Shape(format!(
            "input has {} values; {steps} steps of {n_in} take {} (and steps must be at least 1)",
            input.len(),
            steps.saturating_mul(n_in)
        )));
    }
    crate::error::check_finite("input", input)?;
    for r in model.recurrent_layers() {
        if !recurrent_pes_ok(r.hidden(), cfg.pes) {
            return Err(Error::InvalidArgument(format!(
                "{} layer `{}` has {} hidden units; the simulated PE count {} must divide it \
                 (each PE owns all gates of its units)",
                r.kind().name(),
                r.name(),
                r.hidden(),
                cfg.pes
            )));
        }
    }
    let engine = SequenceEngine::new(model.clone(), precision)?;
    let parts = engine.stage_parts();
    let mut stages = parts
        .iter()
        .map(|p| {
            Ok(match p {
                StageParts::Fc(m) => SimStage::Fc(Part::new(m, cfg, precision)?),
                StageParts::Recurrent {
                    kind,
                    hidden,
                    ih,
                    hh,
                    gate_frac,
                } => SimStage::Recurrent {
                    kind: *kind,
                    hidden: *hidden,
                    gate_frac: *gate_frac,
                    ih: Part::new(ih, cfg, precision)?,
                    hh: Part::new(hh, cfg, precision)?,
                    h: vec![0.0; *hidden],
                    c: vec![0.0; if kind.has_cell_state() { *hidden } else { 0 }],
                    hq: vec![0; *hidden],
                    cq: vec![0; if kind.has_cell_state() { *hidden } else { 0 }],
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut stage_cycles = vec![0u64; stages.len()];
    let mut step_cycles = Vec::with_capacity(steps);
    let mut output = Vec::with_capacity(steps * model.output_size());
    for x in input.chunks_exact(n_in) {
        let mut cur = x.to_vec();
        let mut step = 0;
        for (stage, total) in stages.iter_mut().zip(&mut stage_cycles) {
            let cycles = match stage {
                SimStage::Fc(p) => {
                    let (out, cycles) = p.run(&cur)?;
                    cur = out;
                    cycles
                }
                SimStage::Recurrent {
                    kind,
                    hidden,
                    gate_frac,
                    ih,
                    hh,
                    h,
                    c,
                    hq,
                    cq,
                } => {
                    let (gx, cx) = ih.run(&cur)?;
                    let (gh, ch) = hh.run(h)?;
                    if precision == Precision::Fixed16 {
                        let to_int = |v: &[f32]| -> Vec<i32> {
                            v.iter()
                                .map(|&x| (x as f64 * (1u64 << *gate_frac) as f64).round() as i32)
                                .collect()
                        };
                        cell::update_fixed16(*kind, &to_int(&gx), &to_int(&gh), *gate_frac, hq, cq);
                        for (f, &q) in h.iter_mut().zip(hq.iter()) {
                            *f = fixed16::dequantize_activation(q, cell::H_FRAC);
                        }
                    } else {
                        cell::update(*kind, &gx, &gh, h, c);
                        crate::error::check_finite("recurrent state", h)?;
                    }
                    cur = h.clone();
                    cx + ch + cell_update_cycles(*kind, *hidden, cfg.pes)
                }
            };
            *total += cycles;
            step += cycles;
        }
        step_cycles.push(step);
        output.extend_from_slice(&cur);
    }
    let mut counters = Counters::default();
    let mut product_cycles = 0;
    let stats: Vec<StageSimStats> = stages
        .into_iter()
        .zip(model.stages())
        .zip(stage_cycles)
        .map(|((s, st), cycles)| {
            let (kind, cell_cycles, matrices) = match s {
                SimStage::Fc(p) => ("fc", 0, vec![p.finish(cfg)]),
                SimStage::Recurrent {
                    kind,
                    hidden,
                    ih,
                    hh,
                    ..
                } => (
                    kind.name(),
                    cell_update_cycles(kind, hidden, cfg.pes),
                    vec![ih.finish(cfg), hh.finish(cfg)],
                ),
            };
            for m in &matrices {
                counters.add(&m.counters);
                product_cycles += m.cycles;
            }
            StageSimStats {
                name: st.name().to_string(),
                kind,
                cycles,
                cell_update_cycles_per_step: cell_cycles,
                matrices,
            }
        })
        .collect();
    let cycles: u64 = step_cycles.iter().sum();
    let cycles_per_step = cycles as f64 / steps as f64;
    Ok(SequenceSimResult {
        config: *cfg,
        precision,
        steps,
        cycles,
        step_cycles,
        cycles_per_step,
        time_per_step_us: cycles_per_step / cfg.clock_mhz,
        load_balance_efficiency: efficiency(&counters, cfg.pes, product_cycles),
        energy: Energy::estimate(
            counters.useful_macs,
            counters.pointer_reads,
            counters.matrix_reads,
            cfg.line_entries,
        ),
        stages: stats,
        output,
    })
}

/// Every PE's counters summed over the matrices of a result (for reports).
///
/// See [`PeStats`].
pub fn pe_totals(r: &SequenceSimResult) -> Vec<PeStats> {
    let mut pes = vec![PeStats::default(); r.config.pes];
    for m in r.stages.iter().flat_map(|s| &s.matrices) {
        for (a, b) in pes.iter_mut().zip(&m.pes) {
            a.add(b);
        }
    }
    pes
}
