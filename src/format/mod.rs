//! EIE's storage format: rows interleaved across processing elements (PEs), each PE holding its
//! slice of every column as relative-indexed CSC entries (codebook index + 4-bit zero run, with
//! padding entries), plus per-PE column pointers (EIE paper, section III-B).
//!
//! [`EieLayer`] is one compressed fully-connected layer, [`Model`] a chain of them,
//! [`SequenceModel`] a chain of fully-connected and recurrent ([`RecurrentLayer`]) stages run
//! over the steps of a sequence, and
//! [`mod@file`] reads and writes the model file described in `docs/FORMAT.md`.
//!
//! Start with [`Model::load`] (see the [crate-level guide](crate#load-a-model)); the
//! [`EieLayer`] page has an example that builds a layer by hand.

pub mod file;
pub mod fixed_point;
mod json;
mod layer;
mod model;
pub mod sequence;

pub use file::LoadLimits;
pub use layer::{
    encode_column, encode_runs, encoded_len, entry, entry_code, entry_run, rows_of_pe, Activation,
    EieLayer, PeSlice, RowOrderCodes, SparseCodes, MAX_DIM, MAX_RUN,
};
pub use model::{check_batch, Model};
pub use sequence::{CellKind, RecurrentLayer, SequenceModel, Stage};
