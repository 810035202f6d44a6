//! Recurrent layers (LSTM and GRU cells) beside fully-connected ones, in one model: the
//! [`SequenceModel`] that runs over the steps of a sequence (ESE, Han et al., FPGA 2017, built
//! on EIE's format).
//!
//! A recurrent layer is two EIE layers: `W_ih` (`[G × H, in]`, with `b_ih`) and `W_hh`
//! (`[G × H, H]`, with `b_hh`), with `G` = 4 gates for an LSTM and 3 for a GRU, in PyTorch's
//! gate order (LSTM `i, f, g, o`; GRU `r, z, n`): gate `g` of hidden unit `u` is row `g × H + u`
//! of both matrices. Both are interleaved over a PE count `N` that divides `H`, so row
//! `g × H + u` belongs to PE `(g × H + u) mod N = u mod N`: every PE owns all `G` gates of its
//! hidden units (units `u ≡ p (mod N)`, gate `g` of its `k`-th unit at local row
//! `g × H / N + k`), and the cell update at write-back needs nothing from another PE.
//!
//! A [`SequenceModel`] is a list of [`Stage`]s, each a fully-connected [`EieLayer`] or a
//! [`RecurrentLayer`]; [`crate::recurrent`] makes and runs them (its page has an example).

use super::{Activation, EieLayer, Model};
use crate::error::{Error, Result};
use std::path::Path;

/// The kind of a recurrent cell.
///
/// [`RecurrentLayer::kind`] says which a layer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Long short-term memory, PyTorch's `nn.LSTM` / `nn.LSTMCell`: gates `i, f, g, o`,
    /// `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.
    Lstm,
    /// Gated recurrent unit, PyTorch's `nn.GRU` / `nn.GRUCell`: gates `r, z, n`,
    /// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
    Gru,
}

impl CellKind {
    /// The number of gates, the rows of `W_ih` and `W_hh` per hidden unit: 4 or 3.
    ///
    /// See the [module docs](self) for the gate order.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// The name in files and reports: `lstm` or `gru`.
    ///
    /// Written in the model file (`docs/FORMAT.md`).
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    /// Whether the cell has a cell state `c` beside `h` (an LSTM does).
    ///
    /// [`RecurrentLayer::state_size`] counts it.
    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }
}

/// One compressed recurrent layer: an LSTM or GRU cell's two gate matrices in EIE's format.
///
/// Made by [`RecurrentLayer::new`] (or [`crate::recurrent::compress_stages`] from PyTorch
/// weights read by [`crate::recurrent::pytorch::read_recurrent`]); a [`Stage::Recurrent`] of a
/// [`SequenceModel`]. The [module docs](self) give the layout.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentLayer {
    name: String,
    kind: CellKind,
    hidden: usize,
    ih: EieLayer,
    hh: EieLayer,
}

/// Whether `pes` may interleave a recurrent layer of `hidden` units: it must divide `hidden`
/// so that every PE owns all gates of its units.
///
/// [`RecurrentLayer::new`] requires it.
pub fn recurrent_pes_ok(hidden: usize, pes: usize) -> bool {
    pes >= 1 && hidden % pes == 0
}

impl RecurrentLayer {
    /// Builds a recurrent layer from its input-to-hidden and hidden-to-hidden matrices,
    /// checking the shapes (`ih` is `[G × H, in]`, `hh` `[G × H, H]`), that both have the
    /// identity activation, and that each is interleaved over a PE count dividing `H`
    /// ([`Error::Shape`] or [`Error::InvalidArgument`] otherwise).
    pub fn new(
        name: impl Into<String>,
        kind: CellKind,
        ih: EieLayer,
        hh: EieLayer,
    ) -> Result<Self> {
        let name = name.into();
        let g = kind.gates();
        if hh.rows() % g != 0 || hh.rows() / g != hh.cols() {
            return Err(Error::Shape(format!(
                "{} layer `{name}`: W_hh is {}x{}, expected [{g} x H, H]",
                kind.name(),
                hh.rows(),
                hh.cols()
            )));
        }
        let hidden = hh.cols();
        if ih.rows() != hh.rows() {
            return Err(Error::Shape(format!(
                "{} layer `{name}`: W_ih has {} rows, W_hh {}",
                kind.name(),
                ih.rows(),
                hh.rows()
            )));
        }
        for (what, l) in [("W_ih", &ih), ("W_hh", &hh)] {
            if l.activation() != Activation::Identity {
                return Err(Error::InvalidArgument(format!(
                    "{} layer `{name}`: {what} has activation {}; gate matrices take identity",
                    kind.name(),
                    l.activation().name()
                )));
            }
            if !recurrent_pes_ok(hidden, l.pes()) {
                return Err(Error::InvalidArgument(format!(
                    "{} layer `{name}`: {what} is interleaved over {} PEs, which does not divide \
                     its {hidden} hidden units (each PE must own all gates of its units)",
                    kind.name(),
                    l.pes()
                )));
            }
        }
        Ok(RecurrentLayer {
            name,
            kind,
            hidden,
            ih,
            hh,
        })
    }

    /// The layer's name (for PyTorch imports, the tensors' common prefix and layer suffix).
    ///
    /// See [`Stage::name`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// LSTM or GRU.
    ///
    /// See [`CellKind`].
    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// Hidden units `H`: the length of `h` (and `c`), the layer's output per step.
    ///
    /// See [`RecurrentLayer::state_size`].
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Inputs per step.
    ///
    /// The columns of [`RecurrentLayer::ih`].
    pub fn input_size(&self) -> usize {
        self.ih.cols()
    }

    /// The input-to-hidden gate matrix `W_ih` (`[G × H, in]`) with `b_ih`.
    ///
    /// See the [module docs](self) for the row order.
    pub fn ih(&self) -> &EieLayer {
        &self.ih
    }

    /// The hidden-to-hidden gate matrix `W_hh` (`[G × H, H]`) with `b_hh`.
    ///
    /// See the [module docs](self) for the row order.
    pub fn hh(&self) -> &EieLayer {
        &self.hh
    }

    /// Values of state per sequence: `H` for a GRU (`h`), `2 × H` for an LSTM (`h`, then `c`).
    ///
    /// [`SequenceModel::state_size`] sums it over the model.
    pub fn state_size(&self) -> usize {
        if self.kind.has_cell_state() {
            2 * self.hidden
        } else {
            self.hidden
        }
    }

    /// The same layer with both matrices re-interleaved over `pes` PEs, which must divide
    /// the hidden size.
    ///
    /// See [`recurrent_pes_ok`] and [`EieLayer::with_pes`].
    pub fn with_pes(&self, pes: usize) -> Result<Self> {
        Self::new(
            self.name.clone(),
            self.kind,
            self.ih.with_pes(pes)?,
            self.hh.with_pes(pes)?,
        )
    }
}

/// One stage of a [`SequenceModel`], applied at every step.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// A fully-connected layer, applied to each step's vector on its own.
    Fc(EieLayer),
    /// A recurrent layer, carrying its state from step to step.
    Recurrent(Box<RecurrentLayer>),
}

impl Stage {
    /// The stage's name.
    ///
    /// See [`SequenceModel::stages`].
    pub fn name(&self) -> &str {
        match self {
            Stage::Fc(l) => l.name(),
            Stage::Recurrent(r) => r.name(),
        }
    }

    /// Inputs per step.
    ///
    /// See [`SequenceModel::input_size`].
    pub fn input_size(&self) -> usize {
        match self {
            Stage::Fc(l) => l.cols(),
            Stage::Recurrent(r) => r.input_size(),
        }
    }

    /// Outputs per step.
    ///
    /// See [`SequenceModel::output_size`].
    pub fn output_size(&self) -> usize {
        match self {
            Stage::Fc(l) => l.rows(),
            Stage::Recurrent(r) => r.hidden(),
        }
    }

    /// The EIE matrices of the stage: one for a fully-connected layer, `W_ih` then `W_hh` for
    /// a recurrent one (the order of the model file).
    ///
    /// See [`RecurrentLayer::ih`] and [`RecurrentLayer::hh`].
    pub fn matrices(&self) -> Vec<&EieLayer> {
        match self {
            Stage::Fc(l) => vec![l],
            Stage::Recurrent(r) => vec![&r.ih, &r.hh],
        }
    }
}

/// A model over sequences: stages (fully-connected or recurrent) applied in order at every step,
/// the recurrent ones carrying state from one step to the next. A model of fully-connected
/// stages only is a plain [`Model`] applied to every step.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceModel {
    stages: Vec<Stage>,
}

impl SequenceModel {
    /// Builds a model, checking that there is at least one stage and that the stages chain
    /// (each takes as many inputs per step as the previous one gives; [`Error::Shape`]).
    pub fn new(stages: Vec<Stage>) -> Result<Self> {
        if stages.is_empty() {
            return Err(Error::InvalidArgument(
                "a model needs at least one layer".into(),
            ));
        }
        for (k, pair) in stages.windows(2).enumerate() {
            if pair[1].input_size() != pair[0].output_size() {
                return Err(Error::Shape(format!(
                    "layer {k} (`{}`) gives {} values per step but layer {} (`{}`) takes {}",
                    pair[0].name(),
                    pair[0].output_size(),
                    k + 1,
                    pair[1].name(),
                    pair[1].input_size()
                )));
            }
        }
        Ok(SequenceModel { stages })
    }

    /// The stages in evaluation order.
    ///
    /// Each a [`Stage`].
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Whether any stage is recurrent.
    ///
    /// See [`SequenceModel::to_feed_forward`] for a model without recurrent stages.
    pub fn is_recurrent(&self) -> bool {
        self.stages.iter().any(|s| matches!(s, Stage::Recurrent(_)))
    }

    /// The recurrent stages, in order.
    ///
    /// Each a [`RecurrentLayer`].
    pub fn recurrent_layers(&self) -> impl Iterator<Item = &RecurrentLayer> {
        self.stages.iter().filter_map(|s| match s {
            Stage::Recurrent(r) => Some(&**r),
            Stage::Fc(_) => None,
        })
    }

    /// Inputs per step.
    ///
    /// See [`crate::recurrent::SequenceEngine`] for a run.
    pub fn input_size(&self) -> usize {
        self.stages[0].input_size()
    }

    /// Outputs per step.
    ///
    /// See [`SequenceModel::input_size`].
    pub fn output_size(&self) -> usize {
        self.stages[self.stages.len() - 1].output_size()
    }

    /// Values of recurrent state per sequence: for each recurrent stage in order, `h` and (for
    /// an LSTM) `c`.
    ///
    /// The length of a [`crate::recurrent::SequenceState`].
    pub fn state_size(&self) -> usize {
        self.recurrent_layers()
            .map(RecurrentLayer::state_size)
            .sum()
    }

    /// The model as a plain [`Model`] when no stage is recurrent ([`Error::InvalidArgument`]
    /// otherwise).
    pub fn to_feed_forward(&self) -> Result<Model> {
        let layers = self
            .stages
            .iter()
            .map(|s| match s {
                Stage::Fc(l) => Ok(l.clone()),
                Stage::Recurrent(r) => Err(Error::InvalidArgument(format!(
                    "layer `{}` is a recurrent ({}) layer",
                    r.name(),
                    r.kind().name()
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Model::new(layers)
    }

    /// Writes the model file atomically: format version 2 when no stage is recurrent (the
    /// same bytes [`Model::save`] writes), version 3 otherwise (see `docs/FORMAT.md`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        super::file::write_atomic(path.as_ref(), &super::file::sequence_to_bytes(self)?)
    }

    /// Reads and validates a model file of any version (1, 2 or 3) under the default
    /// [`super::LoadLimits`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        super::file::load_sequence(path.as_ref(), &super::LoadLimits::default())
    }

    /// Reads and validates a model file under `limits`.
    ///
    /// See [`LoadLimits`](super::LoadLimits) and [`SequenceModel::load`].
    pub fn load_with_limits(path: impl AsRef<Path>, limits: &super::LoadLimits) -> Result<Self> {
        super::file::load_sequence(path.as_ref(), limits)
    }
}

impl From<Model> for SequenceModel {
    fn from(model: Model) -> Self {
        SequenceModel {
            stages: model.into_layers().into_iter().map(Stage::Fc).collect(),
        }
    }
}
