use super::{EieLayer, LoadLimits};
use crate::error::{Error, Result};
use std::path::Path;

/// A chain of compressed layers: layer `k + 1` takes layer `k`'s outputs as its inputs.
///
/// Read one with [`Model::load`], make one from layers with [`Model::new`] (or from dense
/// weights with [`crate::compress::compress_model`]), and run it through
/// [`Engine::builder`](crate::Engine::builder); the [crate-level guide](crate#load-a-model)
/// starts here.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    layers: Vec<EieLayer>,
}

impl Model {
    /// Builds a model, checking that there is at least one layer, that shapes chain and that
    /// each layer's fixed16 input format is the previous layer's output format
    /// ([`Error::Shape`] otherwise).
    pub fn new(layers: Vec<EieLayer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::InvalidArgument(
                "a model needs at least one layer".into(),
            ));
        }
        for (k, pair) in layers.windows(2).enumerate() {
            if pair[1].cols() != pair[0].rows() {
                return Err(Error::Shape(format!(
                    "layer {} (`{}`) has {} outputs but layer {} (`{}`) takes {} inputs",
                    k,
                    pair[0].name(),
                    pair[0].rows(),
                    k + 1,
                    pair[1].name(),
                    pair[1].cols()
                )));
            }
            let (out, inp) = (pair[0].fixed16_format(), pair[1].fixed16_format());
            if inp.input_frac() != out.output_frac() {
                return Err(Error::Shape(format!(
                    "layer {} (`{}`) outputs fixed16 {} but layer {} (`{}`) takes {}",
                    k,
                    pair[0].name(),
                    super::fixed_point::format_name(out.output_frac()),
                    k + 1,
                    pair[1].name(),
                    super::fixed_point::format_name(inp.input_frac())
                )));
            }
        }
        Ok(Model { layers })
    }

    /// Sets every layer's fixed16 activation formats: the model's input gets `input_frac`
    /// fraction bits and layer `k`'s output `output_fracs[k]` (also layer `k + 1`'s input).
    /// [`Error::InvalidArgument`] for a count that is not one per layer or a fraction above
    /// [`crate::fixed16::MAX_ACT_FRAC`]; the model is unchanged then.
    pub fn set_fixed16_fracs(&mut self, input_frac: u32, output_fracs: &[u32]) -> Result<()> {
        if output_fracs.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "{} output formats for {} layers",
                output_fracs.len(),
                self.layers.len()
            )));
        }
        let mut formats = Vec::with_capacity(output_fracs.len());
        let mut input = input_frac;
        for &out in output_fracs {
            formats.push(super::fixed_point::LayerFormat::new(input, out)?);
            input = out;
        }
        for (l, f) in self.layers.iter_mut().zip(formats) {
            l.set_fixed16_format(f);
        }
        Ok(())
    }

    /// Fraction bits of the model's fixed16 input (the first layer's input format).
    ///
    /// Set by [`Model::set_fixed16_fracs`]; see [`crate::fixed16`].
    pub fn input_frac(&self) -> u32 {
        self.layers[0].fixed16_format().input_frac()
    }

    /// Fraction bits of the model's fixed16 output (the last layer's output format).
    ///
    /// Set by [`Model::set_fixed16_fracs`]; see [`crate::fixed16`].
    pub fn output_frac(&self) -> u32 {
        self.layers[self.layers.len() - 1]
            .fixed16_format()
            .output_frac()
    }

    /// The layers in evaluation order.
    ///
    /// Each an [`EieLayer`]; [`Model::into_layers`] takes them.
    pub fn layers(&self) -> &[EieLayer] {
        &self.layers
    }

    /// Consumes the model, returning its layers.
    ///
    /// The inverse of [`Model::new`].
    pub fn into_layers(self) -> Vec<EieLayer> {
        self.layers
    }

    /// Length of an input vector.
    ///
    /// [`Model::check_input`] checks an input against it.
    pub fn input_size(&self) -> usize {
        self.layers[0].cols()
    }

    /// Length of an output vector.
    ///
    /// See [`Model::input_size`].
    pub fn output_size(&self) -> usize {
        self.layers[self.layers.len() - 1].rows()
    }

    /// The same model with every layer re-interleaved over `pes` PEs.
    /// (Each layer keeps its fixed16 formats, as [`EieLayer::with_pes`] does.)
    pub fn with_pes(&self, pes: usize) -> Result<Self> {
        Ok(Model {
            layers: self
                .layers
                .iter()
                .map(|l| l.with_pes(pes))
                .collect::<Result<_>>()?,
        })
    }

    /// The same model with every layer re-interleaved to the PE count at which it stores
    /// smallest ([`EieLayer::compact`]).
    pub fn compact(&self) -> Result<Self> {
        Ok(Model {
            layers: self
                .layers
                .iter()
                .map(EieLayer::compact)
                .collect::<Result<_>>()?,
        })
    }

    /// Checks that `input` holds a whole number of finite input vectors; returns the batch size.
    ///
    /// The same check as [`check_batch`] with `n` = [`Model::input_size`].
    pub fn check_input(&self, input: &[f32]) -> Result<usize> {
        check_batch(self.input_size(), input)
    }

    /// Writes the model file (see `docs/FORMAT.md`) atomically: a temporary file in the same
    /// folder, renamed over `path` once complete.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        super::file::save(self, path.as_ref())
    }

    /// Reads and validates a model file under the default [`LoadLimits`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        super::file::load(path.as_ref())
    }

    /// Reads and validates a model file under `limits` (see [`LoadLimits`]).
    pub fn load_with_limits(path: impl AsRef<Path>, limits: &LoadLimits) -> Result<Self> {
        super::file::load_with_limits(path.as_ref(), limits)
    }

    /// Parses and validates the bytes of a model file (the same bytes [`load`](Self::load)
    /// reads; on the web, fetched over the network) under the default [`LoadLimits`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        super::file::from_bytes(bytes)
    }
}

/// Checks that `input` holds a whole, non-zero number of finite vectors of length `n`;
/// returns how many.
///
/// [`Model::check_input`] applies it with the model's input size.
pub fn check_batch(n: usize, input: &[f32]) -> Result<usize> {
    if input.is_empty() {
        return Err(Error::Shape(format!(
            "the input is empty; the model takes vectors of {n} values"
        )));
    }
    if input.len() % n != 0 {
        return Err(Error::Shape(format!(
            "input has {} values; the model takes vectors of {n} (a batch must be a multiple)",
            input.len()
        )));
    }
    crate::error::check_finite("input", input)?;
    Ok(input.len() / n)
}
