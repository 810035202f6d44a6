//! Choosing a model's fixed16 activation formats ([`choose_formats`]): from the f32 forward
//! pass of calibration inputs through the CPU model ([`crate::reference`]), or from the
//! weights alone by interval arithmetic. Above [`crate::reference`], which runs the pass; the
//! formats themselves and their arithmetic are [`crate::fixed16`]'s.

use crate::error::{Error, Result};
use crate::fixed16::{frac_for, DEFAULT_INPUT_BOUND, GUARD_BITS, MAX_ACT_FRAC};
use crate::format::{entry_code, entry_run, Activation, EieLayer, Model};
use rayon::prelude::*;

/// Headroom [`choose_formats`] leaves above the largest magnitude seen on the calibration
/// inputs: a format holds at least `1.25 ×` that magnitude.
pub const CALIBRATION_HEADROOM: f32 = 1.25;

/// Largest magnitudes of one layer's values: before the activation function (its accumulator
/// must hold them, and its bias) and after (its output format must).
#[derive(Clone, Copy, Debug, Default)]
struct Magnitudes {
    pre: f64,
    post: f64,
}

/// Chooses every layer's activation formats for `model` (see the module documentation) and
/// stores them in its layers: from the f32 forward pass over `calibration` (a batch of input
/// vectors back to back) when given, else from the weights and bias for inputs within
/// `±`[`DEFAULT_INPUT_BOUND`].
///
/// Fails on a calibration batch that is empty, not a whole number of input vectors, or not
/// finite ([`Error::Shape`], [`Error::InvalidArgument`]), or when memory runs out.
pub fn choose_formats(model: &mut Model, calibration: Option<&[f32]>) -> Result<()> {
    match calibration {
        Some(x) => {
            let (input, layers) = calibrated_magnitudes(model, x)?;
            set_formats(model, input, &layers, CALIBRATION_HEADROOM)
        }
        None => choose_formats_for_bound(model, DEFAULT_INPUT_BOUND),
    }
}

/// Chooses every layer's activation formats for inputs within `±input_bound`, from the weights
/// and bias alone (interval arithmetic, see the module documentation).
///
/// [`Error::InvalidArgument`] when `input_bound` is negative or not finite.
pub fn choose_formats_for_bound(model: &mut Model, input_bound: f32) -> Result<()> {
    if !(input_bound.is_finite() && input_bound >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "input bound {input_bound} must be finite and non-negative"
        )));
    }
    let layers = bounded_magnitudes(model, input_bound as f64)?;
    set_formats(model, input_bound as f64, &layers, 1.0)
}

/// Fraction bits for `magnitude × headroom`, and the most an accumulator holding
/// `acc × headroom` allows.
fn set_formats(model: &mut Model, input: f64, layers: &[Magnitudes], headroom: f32) -> Result<()> {
    let h = headroom as f64;
    let frac = |m: f64| frac_for((m * h).min(f32::MAX as f64) as f32);
    // The accumulator has `fi + GUARD_BITS` fraction bits in an i32.
    let acc_cap = |m: f64| {
        (0..=MAX_ACT_FRAC)
            .rev()
            .find(|&f| (m * h * (1u64 << (f + GUARD_BITS)) as f64).round() <= i32::MAX as f64)
            .unwrap_or(0)
    };
    let n = layers.len();
    // fracs[k]: the format of layer k's input (k < n) or of the model's output (k = n).
    let mut fracs = Vec::with_capacity(n + 1);
    fracs.push(frac(input));
    fracs.extend(layers.iter().map(|m| frac(m.post)));
    for (k, m) in layers.iter().enumerate() {
        let bias = model.layers()[k]
            .bias()
            .map_or(0.0, |b| b.iter().fold(0f64, |a, &v| a.max(v.abs() as f64)));
        fracs[k] = fracs[k].min(acc_cap(m.pre.max(bias)));
    }
    model.set_fixed16_fracs(fracs[0], &fracs[1..])
}

/// The largest input magnitude and each layer's magnitudes over the f32 forward pass of
/// `calibration`.
fn calibrated_magnitudes(model: &Model, calibration: &[f32]) -> Result<(f64, Vec<Magnitudes>)> {
    model.check_input(calibration)?;
    let n = model.input_size();
    let input = calibration.iter().fold(0f64, |a, &v| a.max(v.abs() as f64));
    // Each layer without its activation function gives the pre-activation values.
    let linear: Vec<EieLayer> = model
        .layers()
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.set_activation(Activation::Identity);
            l
        })
        .collect();
    let zero = || vec![Magnitudes::default(); linear.len()];
    // The inputs in parallel, each through every layer; the largest magnitudes of all.
    let mags = calibration
        .par_chunks_exact(n)
        .map(|x| -> Result<Vec<Magnitudes>> {
            let mut mags = zero();
            let mut cur = x.to_vec();
            for ((l, orig), m) in linear.iter().zip(model.layers()).zip(&mut mags) {
                let mut next = crate::error::try_filled(l.rows(), 0f32, "calibration outputs")?;
                crate::reference::layer_f32(l, &cur, &mut next)?;
                for v in &mut next {
                    m.pre = m.pre.max(v.abs() as f64);
                    *v = orig.activation().apply(*v);
                    m.post = m.post.max(v.abs() as f64);
                }
                cur = next;
            }
            Ok(mags)
        })
        .try_reduce(zero, |mut a, b| {
            for (m, o) in a.iter_mut().zip(b) {
                m.pre = m.pre.max(o.pre);
                m.post = m.post.max(o.post);
            }
            Ok(a)
        })?;
    Ok((input, mags))
}

/// Each layer's magnitudes bounded by interval arithmetic for inputs within `±bound`.
fn bounded_magnitudes(model: &Model, bound: f64) -> Result<Vec<Magnitudes>> {
    let mut lo = crate::error::try_filled(model.input_size(), -bound, "input ranges")?;
    let mut hi = crate::error::try_filled(model.input_size(), bound, "input ranges")?;
    let mut mags = Vec::with_capacity(model.layers().len());
    for l in model.layers() {
        let (mut rlo, mut rhi) = match l.bias() {
            Some(b) => (
                b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            ),
            None => (
                crate::error::try_filled(l.rows(), 0f64, "row ranges")?,
                crate::error::try_filled(l.rows(), 0f64, "row ranges")?,
            ),
        };
        let codebook = l.codebook();
        for p in 0..l.pes() {
            let pe = l.pe(p);
            for j in 0..l.cols() {
                let mut local = usize::MAX;
                for &e in pe.column(j) {
                    local = local.wrapping_add(entry_run(e) as usize + 1);
                    let w = codebook[entry_code(e) as usize] as f64;
                    let i = local * l.pes() + p;
                    let (a, b) = (w * lo[j], w * hi[j]);
                    rlo[i] += a.min(b);
                    rhi[i] += a.max(b);
                }
            }
        }
        let mut m = Magnitudes::default();
        for (a, b) in rlo.iter_mut().zip(rhi.iter_mut()) {
            m.pre = m.pre.max(a.abs()).max(b.abs());
            if l.activation() == Activation::Relu {
                *a = a.max(0.0);
                *b = b.max(0.0);
            }
            m.post = m.post.max(a.abs()).max(b.abs());
        }
        mags.push(m);
        (lo, hi) = (rlo, rhi);
    }
    Ok(mags)
}
