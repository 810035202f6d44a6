//! Deep Compression (Han, Mao, Dally, ICLR 2016) for one fully-connected layer: magnitude
//! pruning to a target density, then weight sharing through a per-layer codebook whose entry 0
//! is reserved for zero, then EIE encoding.
//!
//! Start with [`compress_model`]: dense layers ([`DenseLayer`], read from `.npy` or
//! `.safetensors` by [`crate::import::load_dense_layers`]) and a [`CompressPlan`] (one
//! [`CompressConfig`] for every layer, or per-layer settings from a plan file) give a
//! [`Model`](crate::Model) ready to save ([`Model::save`](crate::Model::save)) or run. The steps
//! are public too: [`prune_by_magnitude`] (or [`prune_balanced`]), [`share_weights`], and
//! [`compress_layer`] for one layer. [`search()`] chooses each layer's settings itself against
//! an accuracy budget ([`Budget`]) on calibration inputs, [`search_sequence`](crate::recurrent::search_sequence) each matrix's of
//! a model with recurrent layers on calibration sequences; `eie compress` runs them all.
//!
//! ```
//! # fn main() -> eie::Result<()> {
//! use eie::compress::{compress_model, CompressConfig, CompressPlan, DenseLayer};
//! let dense = vec![DenseLayer {
//!     name: "fc1.weight".into(),
//!     rows: 4,
//!     cols: 8,
//!     weights: (0..32).map(|i| (i as f32 - 16.0) / 8.0).collect(),
//!     bias: None,
//! }];
//! let config = CompressConfig { density: 0.5, bits: 4, pes: 2, ..CompressConfig::default() };
//! let model = compress_model(&dense, &CompressPlan::uniform(config), &[eie::Activation::Relu])?;
//! assert_eq!((model.input_size(), model.output_size()), (8, 4));
//! assert_eq!(model.layers()[0].nnz(), 16); // half of the 32 weights kept
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "charts")]
mod chart;
mod codebook;
mod plan;
mod prune;
pub(crate) mod search;

pub use crate::dense::{validate_network, DenseLayer};
#[cfg(feature = "charts")]
pub use chart::sensitivity_chart;
pub use codebook::{share_weights, SharedWeights};
pub use plan::{compress_model, CompressPlan, LayerSettings, Setting};
pub use prune::{prune_balanced, prune_by_magnitude};
pub use search::{
    accuracy_loss, mean_cosine, search, Budget, LayerChoice, LayerSensitivity, Progress,
    SearchOptions, SearchResult, SearchSpace, SensitivityPoint, DEFAULT_MARGIN,
};

use crate::error::{Error, Result};
use crate::format::{Activation, EieLayer, SparseCodes};

/// Settings for compressing a layer.
///
/// [`compress_layer`] takes one; for a whole model, [`CompressPlan::uniform`] or a plan file
/// ([`CompressPlan`]) gives one per layer. The [module example](self) uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct CompressConfig {
    /// Fraction of weights kept, in (0, 1]; 1.0 keeps every non-zero weight.
    pub density: f64,
    /// Codebook index width in bits, 2..=8 (codebook of 2^bits entries, index 0 = zero).
    pub bits: u8,
    /// Number of processing elements the rows are interleaved over (>= 1).
    pub pes: usize,
    /// Largest number of k-means iterations.
    pub max_iterations: usize,
}

impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig {
            density: 1.0,
            bits: 4,
            pes: 64,
            max_iterations: 100,
        }
    }
}

impl CompressConfig {
    /// Checks every field's range.
    ///
    /// [`compress_layer`] calls it first.
    pub fn validate(&self) -> Result<()> {
        if !(self.density > 0.0 && self.density <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "density {} is outside (0, 1]",
                self.density
            )));
        }
        if !(2..=8).contains(&self.bits) {
            return Err(Error::InvalidArgument(format!(
                "bits {} is outside 2..=8",
                self.bits
            )));
        }
        if self.pes == 0 {
            return Err(Error::InvalidArgument("PE count must be at least 1".into()));
        }
        Ok(())
    }
}

/// Prunes, weight-shares and EIE-encodes one dense layer.
///
/// [`compress_model`] does this for every layer of a model (see the [module example](self)).
pub fn compress_layer(
    layer: &DenseLayer,
    config: &CompressConfig,
    activation: Activation,
) -> Result<EieLayer> {
    config.validate()?;
    layer.validate()?;
    let kept = prune_by_magnitude(&layer.weights, config.density)?;
    let values: Vec<f32> = kept.iter().map(|&i| layer.weights[i]).collect();
    compress_kept(layer, &kept, &values, config, activation)
}

/// Prunes with load-balance-aware pruning ([`prune_balanced`]: every one of the
/// `config.pes` PEs keeps the same number of weights), weight-shares and EIE-encodes one dense
/// layer over `config.pes` PEs (the count the balance is for, so the layer is not meant to be
/// re-interleaved).
pub fn compress_layer_balanced(
    layer: &DenseLayer,
    config: &CompressConfig,
    activation: Activation,
) -> Result<EieLayer> {
    config.validate()?;
    layer.validate()?;
    let kept = prune::prune_balanced(
        &layer.weights,
        layer.rows,
        layer.cols,
        config.density,
        config.pes,
    )?;
    let values: Vec<f32> = kept.iter().map(|&i| layer.weights[i]).collect();
    compress_kept(layer, &kept, &values, config, activation)
}

/// Weight-shares and EIE-encodes a pruned `layer`: `values` (finite, non-zero) at the flat
/// indices `kept` (increasing), every other weight zero. `layer` gives the shape, name and
/// bias.
pub(crate) fn compress_kept(
    layer: &DenseLayer,
    kept: &[usize],
    values: &[f32],
    config: &CompressConfig,
    activation: Activation,
) -> Result<EieLayer> {
    let shared = share_weights(values, config.bits, config.max_iterations)?;
    let mut codes = vec![0u8; layer.rows * layer.cols];
    for (&i, &c) in kept.iter().zip(&shared.codes) {
        codes[i] = c;
    }
    let sparse = SparseCodes::from_dense(layer.rows, layer.cols, &codes)?;
    let mut out = EieLayer::encode(
        &sparse,
        shared.codebook,
        config.bits,
        config.pes,
        layer.bias.clone(),
        activation,
    )?;
    out.set_name(layer.name.clone());
    Ok(out)
}
