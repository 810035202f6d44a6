//! The paper's experiments on the simulator: the nine benchmark layers of Table III against the
//! published "EIE theoretical" and "EIE actual" latencies (Table IV), the load-balance study
//! against FIFO depth and the scalability study against PE count (EIE, section VI).
//!
//! Layers come from [`crate::paper::PaperLayer::generate`] (seeded random weights at the paper's
//! weight density) and [`crate::paper::PaperLayer::input`] (a seeded ReLU-like input at its
//! activation density).
//!
//! [`run_all`] runs Table III; [`fifo_sweep`] and [`pe_sweep`] run the two studies, which
//! [`super::chart`] writes out.

use super::{SimConfig, SimResult, Simulator};
use crate::error::Result;
use crate::paper::{PaperLayer, PAPER_LAYERS};
use crate::precision::Precision;
use rayon::prelude::*;
use serde::Serialize;

/// One paper layer simulated beside the paper's figures.
///
/// Returned by [`run_all`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PaperRun {
    /// The paper's name, e.g. `"Alex-6"`.
    pub layer: String,
    /// Inputs (columns of W).
    pub inputs: usize,
    /// Outputs (rows of W).
    pub outputs: usize,
    /// PEs simulated.
    pub pes: usize,
    /// FIFO depth simulated.
    pub fifo_depth: usize,
    /// Simulated cycles.
    pub cycles: u64,
    /// Simulated time (µs).
    pub time_us: f64,
    /// Work including padding / (N × clock) of the generated layer (µs).
    pub theoretical_us: f64,
    /// Load-balance efficiency.
    pub load_balance_efficiency: f64,
    /// The paper's "EIE actual" (µs).
    pub paper_actual_us: f64,
    /// The paper's "EIE theoretical" (µs).
    pub paper_theoretical_us: f64,
    /// `time_us / paper_actual_us − 1`.
    pub deviation: f64,
    /// Useful multiply-accumulates.
    pub useful_macs: u64,
    /// Padding entries streamed.
    pub padding_entries: u64,
    /// Energy estimate (nJ).
    pub energy_nj: f64,
}

impl PaperRun {
    fn new(l: &PaperLayer, r: &SimResult) -> Self {
        PaperRun {
            layer: l.name.to_string(),
            inputs: l.inputs,
            outputs: l.outputs,
            pes: r.config.pes,
            fifo_depth: r.config.fifo_depth,
            cycles: r.cycles,
            time_us: r.time_us,
            theoretical_us: r.theoretical_us,
            load_balance_efficiency: r.load_balance_efficiency,
            paper_actual_us: l.eie_actual_us,
            paper_theoretical_us: l.eie_theoretical_us,
            deviation: r.time_us / l.eie_actual_us - 1.0,
            useful_macs: r.counters.useful_macs,
            padding_entries: r.counters.padding_entries,
            energy_nj: r.energy.total_nj,
        }
    }
}

/// Simulates one paper layer (batch 1) generated from `seed`.
///
/// See [`run_all`] for all nine; the layer is [`PaperLayer::generate`]'s.
pub fn simulate_layer(l: &PaperLayer, cfg: &SimConfig, seed: u64) -> Result<SimResult> {
    cfg.validate()?;
    let model = l.model(cfg.pes, seed)?;
    let x = l.input(1, seed);
    Simulator::new(&model, cfg, Precision::F32)?.run(&x)
}

/// Simulates all nine paper layers at `cfg` (in parallel over layers).
///
/// Each a [`PaperRun`]; `eie sim --paper` prints them.
pub fn run_all(cfg: &SimConfig, seed: u64) -> Result<Vec<PaperRun>> {
    PAPER_LAYERS
        .par_iter()
        .map(|l| Ok(PaperRun::new(l, &simulate_layer(l, cfg, seed)?)))
        .collect()
}

/// One point of a sweep.
///
/// Returned by [`sweep`], [`fifo_sweep`] and [`pe_sweep`]; [`super::chart`] draws them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The paper's layer name.
    pub layer: String,
    /// PEs.
    pub pes: usize,
    /// FIFO depth.
    pub fifo_depth: usize,
    /// Simulated cycles.
    pub cycles: u64,
    /// Simulated time (µs).
    pub time_us: f64,
    /// Load-balance efficiency.
    pub load_balance_efficiency: f64,
    /// Cycles of the sweep's first point of this layer / cycles of this point.
    pub speedup: f64,
}

/// FIFO depths of the paper's load-balance study.
///
/// Swept by [`fifo_sweep`].
pub const FIFO_DEPTHS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// PE counts of the paper's scalability study.
///
/// Swept by [`pe_sweep`].
pub const PE_COUNTS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Runs every paper layer at every configuration of `cfgs` (same layer weights and input for
/// all; re-interleaved when the PE count changes). `speedup` is relative to `cfgs[0]`.
///
/// [`fifo_sweep`] and [`pe_sweep`] call it; [`super::chart::write_csv`] writes the points.
pub fn sweep(cfgs: &[SimConfig], seed: u64) -> Result<Vec<SweepPoint>> {
    let Some(first) = cfgs.first() else {
        return Ok(Vec::new());
    };
    for c in cfgs {
        c.validate()?;
    }
    let per_layer: Vec<Vec<SweepPoint>> = PAPER_LAYERS
        .par_iter()
        .map(|l| {
            let model = l.model(first.pes, seed)?;
            let x = l.input(1, seed);
            let mut base = None;
            cfgs.iter()
                .map(|cfg| {
                    let r = Simulator::new(&model, cfg, Precision::F32)?.run(&x)?;
                    let base = *base.get_or_insert(r.cycles);
                    Ok(SweepPoint {
                        layer: l.name.to_string(),
                        pes: cfg.pes,
                        fifo_depth: cfg.fifo_depth,
                        cycles: r.cycles,
                        time_us: r.time_us,
                        load_balance_efficiency: r.load_balance_efficiency,
                        speedup: base as f64 / r.cycles.max(1) as f64,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    Ok(per_layer.into_iter().flatten().collect())
}

/// The paper's load-balance study: every layer at FIFO depths 1..=256 on `base`'s PEs.
///
/// [`super::chart`] draws it (`fifo_chart`, feature `charts`).
pub fn fifo_sweep(base: &SimConfig, seed: u64) -> Result<Vec<SweepPoint>> {
    let cfgs: Vec<_> = FIFO_DEPTHS
        .iter()
        .map(|&d| SimConfig {
            fifo_depth: d,
            ..*base
        })
        .collect();
    sweep(&cfgs, seed)
}

/// The paper's scalability study: every layer on 1..=256 PEs at `base`'s FIFO depth; speed-up
/// is relative to one PE. The chip's total activation storage stays at `base`'s round size
/// (4K for 64 PEs × 64 registers): `act_regs_per_pe` becomes `round size / PEs` (at least 1),
/// so every PE count runs a layer in the same pieces and the study measures compute scaling.
///
/// [`super::chart`] draws it (`pe_chart`, feature `charts`).
pub fn pe_sweep(base: &SimConfig, seed: u64) -> Result<Vec<SweepPoint>> {
    let round = base.round_size();
    let cfgs: Vec<_> = PE_COUNTS
        .iter()
        .map(|&pes| SimConfig {
            pes,
            act_regs_per_pe: (round / pes).max(1),
            ..*base
        })
        .collect();
    sweep(&cfgs, seed)
}
