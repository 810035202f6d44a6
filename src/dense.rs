//! Dense (uncompressed) layers: the weights every importer, compressor, classifier and
//! generator of the crate takes before compression.
//!
//! Below everything that compresses or runs models: it uses only [`crate::error`] and
//! [`crate::format`]'s activations.

use crate::error::{check_finite, Error, Result};
use crate::format::Activation;

/// A dense layer as imported: row-major `[rows, cols]` weights (PyTorch's `[out, in]`).
///
/// Read from files by [`crate::import::load_dense_layers`];
/// [`crate::compress::compress_model`] and [`crate::compress::search()`] take them. The
/// [`compress` module example](crate::compress) builds one by hand.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseLayer {
    /// Name of the source tensor.
    pub name: String,
    /// Outputs.
    pub rows: usize,
    /// Inputs.
    pub cols: usize,
    /// `rows * cols` weights, row-major.
    pub weights: Vec<f32>,
    /// Optional per-output bias.
    pub bias: Option<Vec<f32>>,
}

impl DenseLayer {
    /// Checks shapes and that every value is finite.
    ///
    /// [`crate::compress::compress_layer`] calls it first.
    pub fn validate(&self) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::Shape(format!(
                "`{}`: empty weight matrix {}x{}",
                self.name, self.rows, self.cols
            )));
        }
        if self.rows.checked_mul(self.cols) != Some(self.weights.len()) {
            return Err(Error::Shape(format!(
                "`{}`: {} weights for shape {}x{}",
                self.name,
                self.weights.len(),
                self.rows,
                self.cols
            )));
        }
        check_finite(&format!("weights `{}`", self.name), &self.weights)?;
        if let Some(b) = &self.bias {
            if b.len() != self.rows {
                return Err(Error::Shape(format!(
                    "`{}`: bias has {} values for {} outputs",
                    self.name,
                    b.len(),
                    self.rows
                )));
            }
            check_finite(&format!("bias of `{}`", self.name), b)?;
        }
        Ok(())
    }
}

/// Checks a dense network: at least one layer, one activation per layer, every layer valid
/// ([`DenseLayer::validate`]) and each layer taking as many inputs as the previous one gives.
pub fn validate_network(layers: &[DenseLayer], activations: &[Activation]) -> Result<()> {
    if layers.is_empty() || activations.len() != layers.len() {
        return Err(Error::InvalidArgument(format!(
            "{} activations for {} layers",
            activations.len(),
            layers.len()
        )));
    }
    for (k, l) in layers.iter().enumerate() {
        l.validate()?;
        if k > 0 && l.cols != layers[k - 1].rows {
            return Err(Error::Shape(format!(
                "layer `{}` takes {} inputs but `{}` gives {}",
                l.name,
                l.cols,
                layers[k - 1].name,
                layers[k - 1].rows
            )));
        }
    }
    Ok(())
}
