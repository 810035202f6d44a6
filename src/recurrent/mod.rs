//! Recurrent layers, ESE-style (Han et al., "ESE: Efficient Speech Recognition Engine with
//! Sparse LSTM on FPGA", FPGA 2017): LSTM and GRU cells whose gate matrices are compressed and
//! stored as EIE layers ([`crate::format::RecurrentLayer`]), run over sequences beside
//! fully-connected layers ([`crate::format::SequenceModel`]).
//!
//! * [`pytorch`] reads PyTorch's `nn.LSTM`, `nn.GRU`, `nn.LSTMCell` and `nn.GRUCell` tensors.
//! * [`compress_stages`] prunes and weight-shares every matrix as [`crate::compress`] does for
//!   a fully-connected layer; [`search_sequence`] chooses each matrix's
//!   density and bits against an accuracy budget on calibration sequences.
//! * [`SequenceEngine`] runs a model on the CPU (f32, f16 and fixed16), whole sequences or
//!   step by step, with the state carried between calls; `gpu::GpuSequenceEngine` (feature
//!   `gpu`) runs it on the GPU (f32, and fixed16 bit for bit the same), the state on the
//!   device.
//! * [`SequenceOracle`] is the dense f64 oracle, [`cell`] the gate arithmetic both share.
//!
//! Start with a model file made by `eie compress` from PyTorch weights (or by
//! [`compress_stages`] and [`SequenceModel::save`]), loaded with [`SequenceModel::load`], and a
//! [`SequenceEngine`]; `examples/lstm_step.rs` times one step.
//!
//! ```
//! # fn main() -> eie::Result<()> {
//! use eie::recurrent::SequenceEngine;
//! use eie::{Precision, SequenceModel};
//! let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("assets/seqmnist/seqmnist-lstm.eie.safetensors");
//! let engine = SequenceEngine::new(SequenceModel::load(&path)?, Precision::F32)?;
//! let (inputs, outputs) = (engine.model().input_size(), engine.model().output_size());
//! let mut stream = engine.stream(); // from the zero state
//! for _ in 0..3 {
//!     assert_eq!(stream.push(&vec![0.5; inputs])?.len(), outputs); // one step
//! }
//! let mut state = stream.state().clone();
//! let _whole = engine.run(&vec![0.5; 4 * inputs], 4, &mut state)?; // four more at once
//! # Ok(())
//! # }
//! ```

pub mod cell;
mod engine;
mod oracle;
pub mod pytorch;
mod search;

#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub(crate) use engine::check_input;
pub(crate) use engine::StageParts;
pub use engine::{SequenceEngine, SequenceState, SequenceStream};
pub use oracle::SequenceOracle;
pub use search::search_sequence;

use crate::compress::{compress_layer, compress_layer_balanced, CompressPlan};
use crate::dense::DenseLayer;
use crate::error::{Error, Result};
use crate::format::{
    sequence::recurrent_pes_ok, Activation, CellKind, EieLayer, RecurrentLayer, SequenceModel,
    Stage,
};

/// A recurrent layer as imported: its two dense gate matrices in PyTorch's layout.
///
/// Read by [`pytorch::read_recurrent`]; a [`DenseStage::Recurrent`] of what
/// [`compress_stages`] compresses.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseRecurrent {
    /// The layer's name.
    pub name: String,
    /// LSTM or GRU.
    pub kind: CellKind,
    /// `W_ih` `[G × H, in]` with `b_ih`; its name is the source tensor's.
    pub ih: DenseLayer,
    /// `W_hh` `[G × H, H]` with `b_hh`; its name is the source tensor's.
    pub hh: DenseLayer,
}

impl DenseRecurrent {
    /// Checks the shapes (`hh` is `[G × H, H]`, `ih` `[G × H, in]`) and values of both
    /// matrices.
    ///
    /// [`pytorch::read_recurrent`] builds one from a file.
    pub fn new(name: String, kind: CellKind, ih: DenseLayer, hh: DenseLayer) -> Result<Self> {
        ih.validate()?;
        hh.validate()?;
        let g = kind.gates();
        if hh.rows != g * hh.cols || ih.rows != hh.rows {
            return Err(Error::Shape(format!(
                "{} layer `{name}`: W_ih {}x{} and W_hh {}x{}; expected [{g}H, in] and [{g}H, H]",
                kind.name(),
                ih.rows,
                ih.cols,
                hh.rows,
                hh.cols
            )));
        }
        Ok(DenseRecurrent { name, kind, ih, hh })
    }

    /// Hidden units `H`.
    ///
    /// See [`RecurrentLayer::hidden`] for the compressed layer's.
    pub fn hidden(&self) -> usize {
        self.hh.cols
    }
}

/// One stage of a dense sequence model, as imported.
///
/// Read by [`pytorch::load_dense_stages`]; [`compress_stages`] compresses them into a
/// [`SequenceModel`]'s [`Stage`]s.
#[derive(Clone, Debug, PartialEq)]
pub enum DenseStage {
    /// A fully-connected layer.
    Fc(DenseLayer),
    /// A recurrent layer.
    Recurrent(DenseRecurrent),
}

impl DenseStage {
    /// The stage's name.
    ///
    /// See [`Stage::name`] for the compressed stage's.
    pub fn name(&self) -> &str {
        match self {
            DenseStage::Fc(l) => &l.name,
            DenseStage::Recurrent(r) => &r.name,
        }
    }

    /// Inputs per step.
    ///
    /// See [`chains`].
    pub fn input_size(&self) -> usize {
        match self {
            DenseStage::Fc(l) => l.cols,
            DenseStage::Recurrent(r) => r.ih.cols,
        }
    }

    /// Outputs per step.
    ///
    /// See [`chains`].
    pub fn output_size(&self) -> usize {
        match self {
            DenseStage::Fc(l) => l.rows,
            DenseStage::Recurrent(r) => r.hidden(),
        }
    }

    /// The dense matrices, by the names per-layer settings use: the weight of a
    /// fully-connected layer, `W_ih` then `W_hh` of a recurrent one.
    ///
    /// [`compress_stages`] looks up each one's settings by name ([`CompressPlan::config_for`]).
    pub fn matrices(&self) -> Vec<&DenseLayer> {
        match self {
            DenseStage::Fc(l) => vec![l],
            DenseStage::Recurrent(r) => vec![&r.ih, &r.hh],
        }
    }
}

/// Whether the stages chain: each takes as many inputs per step as the previous one gives.
///
/// Checked on [`DenseStage::input_size`] and [`DenseStage::output_size`].
pub fn chains(stages: &[DenseStage]) -> bool {
    stages
        .windows(2)
        .all(|w| w[1].input_size() == w[0].output_size())
}

/// The PE count, among those dividing `hidden` and at most 256, at which `layer` stores
/// smallest.
pub(crate) fn smallest_dividing_pes(layer: &EieLayer, hidden: usize) -> Result<EieLayer> {
    let mut best: Option<EieLayer> = None;
    for pes in (1..=hidden.min(256)).filter(|&p| recurrent_pes_ok(hidden, p)) {
        let l = layer.with_pes(pes)?;
        if best
            .as_ref()
            .is_none_or(|b| l.compressed_bytes() < b.compressed_bytes())
        {
            best = Some(l);
        }
    }
    best.ok_or_else(|| Error::InvalidArgument(format!("no PE count divides {hidden}")))
}

/// Compresses every stage: each matrix (a fully-connected weight, or a recurrent layer's
/// `W_ih` and `W_hh`) pruned and weight-shared with the settings `plan` gives for its name
/// (see [`CompressPlan::config_for`]). A matrix given no PE count is stored at the count at
/// which it stores smallest: among all counts up to its rows for a fully-connected layer
/// ([`EieLayer::compact`]), among the divisors of `H` up to 256 for a gate matrix, so that
/// every PE owns all gates of its hidden units. `activations` has one entry per
/// fully-connected stage (gate matrices have none).
///
/// With `balance`, every matrix is pruned load-balance-aware ([`compress_layer_balanced`]) for
/// the PE count the plan gives it (default 64; for a gate matrix it must divide `H`) and
/// stored at that count.
pub fn compress_stages(
    stages: &[DenseStage],
    plan: &CompressPlan,
    activations: &[Activation],
    balance: bool,
) -> Result<SequenceModel> {
    let fc_count = stages
        .iter()
        .filter(|s| matches!(s, DenseStage::Fc(_)))
        .count();
    if activations.len() != fc_count {
        return Err(Error::InvalidArgument(format!(
            "{} activations for {fc_count} fully-connected layers",
            activations.len()
        )));
    }
    let mut acts = activations.iter();
    let mut out = Vec::with_capacity(stages.len());
    for s in stages {
        match s {
            DenseStage::Fc(d) => {
                let act = *acts.next().expect("counted above");
                if balance {
                    out.push(Stage::Fc(compress_layer_balanced(
                        d,
                        &plan.config_for(&d.name),
                        act,
                    )?));
                    continue;
                }
                let l = compress_layer(d, &plan.config_for(&d.name), act)?;
                out.push(Stage::Fc(if plan.given_for(&d.name).pes.is_some() {
                    l
                } else {
                    l.compact()?
                }));
            }
            DenseStage::Recurrent(r) => {
                let hidden = r.hidden();
                let matrix = |d: &DenseLayer| -> Result<EieLayer> {
                    if balance {
                        let config = plan.config_for(&d.name);
                        return compress_layer_balanced(d, &config, Activation::Identity);
                    }
                    let given = plan.given_for(&d.name).pes.is_some();
                    let mut config = plan.config_for(&d.name);
                    if !given {
                        config.pes = 1;
                    }
                    let l = compress_layer(d, &config, Activation::Identity)?;
                    if given {
                        Ok(l)
                    } else {
                        smallest_dividing_pes(&l, hidden)
                    }
                };
                out.push(Stage::Recurrent(Box::new(RecurrentLayer::new(
                    r.name.clone(),
                    r.kind,
                    matrix(&r.ih)?,
                    matrix(&r.hh)?,
                )?)));
            }
        }
    }
    SequenceModel::new(out)
}
