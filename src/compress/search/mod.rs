//! Accuracy-aware compression: each layer's sensitivity to pruning and weight sharing (Deep
//! Compression's pruning-sensitivity analysis, over density × codebook bits), measured on
//! calibration inputs, then a search for the smallest model file that keeps a quality budget
//! on those inputs.
//!
//! The search:
//! 1. **Sensitivity.** Every layer is compressed alone at every (density, bits) of the
//!    [`SearchSpace`] while the others stay uncompressed, and the whole network's quality is
//!    measured on the calibration inputs. A candidate is pruned by `|w_ij| × rms(x_j)` (the
//!    RMS of its input over the calibration inputs; plain magnitude when
//!    [`SearchOptions::activation_aware`] is off); its kept weights are re-fitted by damped
//!    least squares, it is weight-shared by k-means, and its codebook re-fitted by least
//!    squares, both re-fits so that its outputs on the calibration inputs match the
//!    uncompressed layer's ([`SearchOptions::refine_codebooks`]). Each point records the
//!    layer's file bytes (at the interleaving that stores smallest, or the one the user fixed),
//!    the budget's loss and the distortion (`1 −` the mean cosine similarity of the network's
//!    outputs with the uncompressed network's).
//! 2. **Front.** Per layer, the points that no other point beats in both bytes and distortion.
//! 3. **Threshold.** A tolerance `t` picks, in every layer, the smallest point whose own
//!    distortion is at most `t`; the largest `t` whose combined model keeps the budget is
//!    found by bisection over the measured distortions.
//! 4. **Greedy descent.** One layer at a time steps to a smaller point on its front; of the
//!    steps that keep the budget, the one that saves most bytes is taken, until none does.
//! 5. **Final re-fit.** Each layer's codebook is re-fitted once more on the compressed
//!    network's own inputs to it, kept where that lowers the loss.
//! 6. **Fixed point.** The model's fixed16 activation formats are chosen from the calibration
//!    inputs ([`crate::calibration::choose_formats`]).
//!
//! **Sequence models** ([`search_sequence`](crate::recurrent::search_sequence)). The same steps run over a model of
//! fully-connected and recurrent stages: every matrix is a layer of the search (a
//! fully-connected layer's weight, a recurrent layer's `W_ih` and `W_hh` each), and each
//! evaluation runs the whole model in f32 over the calibration sequences, each from the zero
//! state. A matrix's inputs, for activation-aware pruning and both re-fits, are its input
//! vectors at every step of every sequence: the stage's inputs for a fully-connected weight
//! and for `W_ih`, the layer's `h_{t−1}` (zero at the first step) for `W_hh`. The re-fits
//! carry over as they are: each matches the matrix's pre-activation gates, `W x` or `W h_{t−1}`,
//! on those inputs, the uncompressed layer's `h_{t−1}` during the search and, in step 5, the
//! compressed model's own (which the re-fit itself then changes, through the recurrence; the
//! re-fit is kept only where the measured loss says it helps). A cosine budget and every
//! distortion are measured over the outputs of every step; an accuracy budget takes one label
//! per sequence, judged on its last step's output. Step 6 does not apply: a sequence model
//! stores no fixed16 formats, its engines choose them from the weights.
//!
//! With an accuracy budget the loss is the measured drop plus a margin of
//! [`SearchOptions::margin`] standard errors ([`accuracy_loss`]): the search makes hundreds of
//! comparisons on a finite calibration set, and the margin keeps the budget on new inputs.
//!
//! Everything is deterministic for a given input: pruning and k-means are, and every
//! evaluation sums each output in a fixed order.

use super::{compress_kept, prune_by_magnitude, CompressConfig, CompressPlan, DenseLayer};
use crate::error::{try_filled, Error, Result};
use crate::format::{Activation, EieLayer, Model};
use rayon::prelude::*;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What the compressed model must keep, measured on the calibration inputs against the
/// uncompressed model.
///
/// Given to [`search`].
#[derive(Clone, Debug, PartialEq)]
pub enum Budget {
    /// Top-1 accuracy on the calibration inputs, against `labels` (one class per input, below
    /// the model's output size), may fall at most `points` percentage points below the
    /// uncompressed model's.
    MaxAccuracyDrop {
        /// Largest drop, in percentage points.
        points: f64,
        /// The class of each calibration input.
        labels: Vec<usize>,
    },
    /// The mean cosine similarity between the compressed and the uncompressed model's output
    /// vectors must be at least this (in `[-1, 1]`; no labels needed).
    MinCosine(f64),
}

impl Budget {
    /// The largest loss the budget allows: points of accuracy, or `1 - cosine`.
    fn limit(&self) -> f64 {
        match self {
            Budget::MaxAccuracyDrop { points, .. } => *points,
            Budget::MinCosine(c) => 1.0 - c,
        }
    }

    fn check(&self, n: usize, classes: usize) -> Result<()> {
        match self {
            Budget::MaxAccuracyDrop { points, labels } => {
                if !(points.is_finite() && *points >= 0.0 && *points <= 100.0) {
                    return Err(Error::InvalidArgument(format!(
                        "the largest accuracy drop, {points} percentage points, is outside 0..=100"
                    )));
                }
                if labels.len() != n {
                    return Err(Error::Shape(format!(
                        "{} labels for {n} calibration inputs",
                        labels.len()
                    )));
                }
                if let Some(i) = labels.iter().position(|&l| l >= classes) {
                    return Err(Error::InvalidArgument(format!(
                        "label {i} is {}, but the model has {classes} outputs",
                        labels[i]
                    )));
                }
            }
            Budget::MinCosine(c) => {
                if !(c.is_finite() && (-1.0..=1.0).contains(c)) {
                    return Err(Error::InvalidArgument(format!(
                        "the smallest cosine similarity, {c}, is outside [-1, 1]"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The quality metric of `outputs`: top-1 accuracy in percent, or the mean cosine
    /// similarity with `reference`.
    fn metric(&self, outputs: &[f32], reference: &[f32], classes: usize) -> f64 {
        match self {
            Budget::MaxAccuracyDrop { labels, .. } => {
                let predicted = crate::classify::top1(outputs, classes);
                100.0 * crate::classify::correct(&predicted, labels) as f64 / labels.len() as f64
            }
            Budget::MinCosine(_) => mean_cosine(outputs, reference, classes),
        }
    }

    /// The metric's name for tables and charts.
    ///
    /// See [`SearchResult::metric`].
    pub fn metric_name(&self) -> &'static str {
        match self {
            Budget::MaxAccuracyDrop { .. } => "top-1 accuracy (%)",
            Budget::MinCosine(_) => "mean cosine similarity",
        }
    }

    /// The budget in words.
    ///
    /// See [`Budget`].
    pub fn describe(&self) -> String {
        match self {
            Budget::MaxAccuracyDrop { points, .. } => {
                format!("top-1 accuracy drop at most {points} points")
            }
            Budget::MinCosine(c) => format!("mean cosine similarity at least {c}"),
        }
    }
}

/// The accuracy loss of `predicted` against the uncompressed network's predictions `dense`,
/// in percentage points, with a margin: `drop + margin × 100 × sqrt(b + c) / n`, where `b`
/// inputs the uncompressed network gets right turn wrong and `c` wrong ones turn right
/// (`drop = 100 (b − c) / n`). `sqrt(b + c) / n` is the standard error of the paired
/// difference (McNemar), so with a margin of 2 the budget holds with about 97.5 % confidence
/// on new inputs like the calibration ones, before any selection effect of the search.
///
/// [`search`] measures a [`Budget::MaxAccuracyDrop`] with it.
pub fn accuracy_loss(predicted: &[usize], dense: &[usize], labels: &[usize], margin: f64) -> f64 {
    let (mut b, mut c) = (0usize, 0usize);
    for ((&p, &d), &l) in predicted.iter().zip(dense).zip(labels) {
        match (d == l, p == l) {
            (true, false) => b += 1,
            (false, true) => c += 1,
            _ => {}
        }
    }
    let n = labels.len().max(1) as f64;
    100.0 * (b as f64 - c as f64 + margin * ((b + c) as f64).sqrt()) / n
}

/// The mean over vectors of `dim` values of the cosine similarity of `a` and `b` (1 where
/// both are zero, 0 where only one is).
///
/// [`search`] measures a [`Budget::MinCosine`] and every point's distortion with it.
pub fn mean_cosine(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let n = a.len() / dim.max(1);
    if n == 0 {
        return 1.0;
    }
    let total: f64 = a
        .chunks_exact(dim)
        .zip(b.chunks_exact(dim))
        .map(|(x, y)| {
            let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
            for (&p, &q) in x.iter().zip(y) {
                xy += p as f64 * q as f64;
                xx += p as f64 * p as f64;
                yy += q as f64 * q as f64;
            }
            match (xx > 0.0, yy > 0.0) {
                (true, true) => xy / (xx.sqrt() * yy.sqrt()),
                (false, false) => 1.0,
                _ => 0.0,
            }
        })
        .sum();
    total / n as f64
}

/// The (density, bits) grid every layer's sensitivity is measured on.
///
/// Part of [`SearchOptions`].
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpace {
    /// Densities to try, each in (0, 1].
    pub densities: Vec<f64>,
    /// Codebook bits to try, each in 2..=8.
    pub bits: Vec<u8>,
}

impl Default for SearchSpace {
    fn default() -> Self {
        SearchSpace {
            densities: vec![
                0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7,
                1.0,
            ],
            bits: vec![2, 3, 4, 5, 6, 8],
        }
    }
}

/// Everything the search takes besides the layers and the budget.
///
/// Given to [`search`]; `Default` is the usual start.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// The grid of settings.
    pub space: SearchSpace,
    /// The settings the search keeps rather than chooses: what the plan gives for a layer or
    /// as its default ([`CompressPlan::given_for`]) is kept; a density or bits it leaves to the
    /// built-in default is the search's to choose, and a PE count it leaves out stores the
    /// layer at the interleaving that is smallest. The default plan fixes nothing.
    pub plan: CompressPlan,
    /// Largest number of k-means iterations per layer (0: [`CompressConfig`]'s default).
    pub max_iterations: usize,
    /// Re-fit each candidate's kept weights (before weight sharing) and codebook (after) on
    /// the calibration inputs, by least squares against the uncompressed layer's outputs, and
    /// the chosen layers' codebooks once more where that lowers the loss.
    pub refine_codebooks: bool,
    /// With an accuracy budget: how many standard errors of the paired accuracy difference
    /// are added to the measured drop before it is held against the budget (see
    /// [`accuracy_loss`]). 0 takes the drop as measured.
    pub margin: f64,
    /// Prune by `|w_ij| × rms(x_j)` over the calibration inputs (activation-aware pruning:
    /// a weight on an input that is always zero goes first) instead of by `|w_ij|`.
    pub activation_aware: bool,
}

impl Default for SearchOptions {
    /// The default grid, nothing fixed, re-fits on, a margin of [`DEFAULT_MARGIN`].
    fn default() -> Self {
        SearchOptions {
            space: SearchSpace::default(),
            plan: CompressPlan::default(),
            max_iterations: 0,
            refine_codebooks: true,
            margin: DEFAULT_MARGIN,
            activation_aware: true,
        }
    }
}

/// The default [`SearchOptions::margin`], in standard errors.
pub const DEFAULT_MARGIN: f64 = 2.0;

/// One measured point of a layer's sensitivity.
///
/// Part of a [`LayerSensitivity`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensitivityPoint {
    /// Fraction of weights kept.
    pub density: f64,
    /// Codebook bits.
    pub bits: u8,
    /// The layer's bytes in the model file.
    pub bytes: usize,
    /// The whole network's metric with only this layer compressed.
    pub metric: f64,
    /// Its loss against the uncompressed network (accuracy points, or `1 - cosine`).
    pub loss: f64,
}

/// A layer's sensitivity: every point measured.
///
/// Listed in [`SearchResult::sensitivity`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSensitivity {
    /// The layer's name.
    pub name: String,
    /// The points, in grid order (density-major).
    pub points: Vec<SensitivityPoint>,
}

/// What the search chose for one layer.
///
/// Listed in [`SearchResult::layers`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerChoice {
    /// The layer's name.
    pub name: String,
    /// Fraction of weights kept.
    pub density: f64,
    /// Codebook bits.
    pub bits: u8,
    /// PEs the layer is stored interleaved over.
    pub pes: usize,
    /// The layer's bytes in the model file.
    pub bytes: usize,
    /// Bytes of the same layer as dense f32.
    pub dense_bytes: usize,
    /// The whole network's metric with only this layer compressed (as chosen, before any
    /// codebook refinement).
    pub metric: f64,
    /// Whether its codebook holds re-fitted values rather than the k-means centroids.
    pub refined: bool,
}

/// The search's result: a [`Model`] from [`search`], a
/// [`SequenceModel`](crate::format::SequenceModel) from [`search_sequence`](crate::recurrent::search_sequence).
///
/// Returned by [`search`] and [`search_sequence`](crate::recurrent::search_sequence); its layers are the model's matrices (a
/// recurrent layer's `W_ih` and `W_hh` each), in order.
#[derive(Clone, Debug)]
pub struct SearchResult<M = Model> {
    /// The compressed model.
    pub model: M,
    /// Per-layer choices, in layer order.
    pub layers: Vec<LayerChoice>,
    /// Per-layer sensitivity, in layer order.
    pub sensitivity: Vec<LayerSensitivity>,
    /// The uncompressed model's metric on the calibration inputs.
    pub dense_metric: f64,
    /// The compressed model's metric on the calibration inputs (before codebook refinement).
    pub unrefined_metric: f64,
    /// The compressed model's metric on the calibration inputs.
    pub metric: f64,
    /// The compressed model's loss against the uncompressed one.
    pub loss: f64,
    /// Whole-network evaluations made on the calibration inputs.
    pub evaluations: usize,
}

/// Progress of a search, for a progress bar.
///
/// Reported by [`search`] through its `progress` callback.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Sensitivity points measured so far, of `total`.
    Sensitivity {
        /// Points measured.
        done: usize,
        /// Points in all.
        total: usize,
    },
    /// The search's current best model bytes after `evaluations` evaluations.
    Search {
        /// Evaluations so far in this phase.
        evaluations: usize,
        /// Bytes of the smallest model found so far that keeps the budget.
        bytes: usize,
    },
}

/// A layer's weights as used by an evaluation: compressed rows (column, weight), bias and
/// activation. Summation runs in increasing column order, like the dense oracle.
#[derive(Clone, Debug)]
pub(crate) struct Rows {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) ptr: Vec<usize>,
    pub(crate) col: Vec<u32>,
    pub(crate) val: Vec<f32>,
    pub(crate) bias: Option<Vec<f32>>,
    pub(crate) act: Activation,
}

impl Rows {
    pub(crate) fn from_dense(d: &DenseLayer, act: Activation) -> Self {
        let mut ptr = Vec::with_capacity(d.rows + 1);
        let (mut col, mut val) = (Vec::new(), Vec::new());
        ptr.push(0);
        for w in d.weights.chunks_exact(d.cols) {
            for (j, &v) in w.iter().enumerate() {
                if v != 0.0 {
                    col.push(j as u32);
                    val.push(v);
                }
            }
            ptr.push(col.len());
        }
        Rows {
            rows: d.rows,
            cols: d.cols,
            ptr,
            col,
            val,
            bias: d.bias.clone(),
            act,
        }
    }

    fn from_layer(l: &EieLayer) -> Self {
        let csr = l.sparse_codes().by_rows();
        let val = csr.code.iter().map(|&c| l.codebook()[c as usize]).collect();
        Rows {
            rows: l.rows(),
            cols: l.cols(),
            ptr: csr.row_ptr,
            col: csr.col,
            val,
            bias: l.bias().map(<[f32]>::to_vec),
            act: l.activation(),
        }
    }

    /// `act(W x + b)` for each of the inputs in `x` (back to back).
    pub(crate) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / self.cols;
        let mut y = vec![0f32; n * self.rows];
        y.par_chunks_mut(self.rows)
            .zip(x.par_chunks(self.cols))
            .for_each(|(y, x)| self.apply(x, y));
        y
    }

    /// `y = act(W x + b)` for one input `x`, on the calling thread.
    pub(crate) fn apply(&self, x: &[f32], y: &mut [f32]) {
        for (r, out) in y.iter_mut().enumerate() {
            let (s, e) = (self.ptr[r], self.ptr[r + 1]);
            let dot = self.col[s..e]
                .iter()
                .zip(&self.val[s..e])
                .fold(0f32, |acc, (&j, &w)| acc + w * x[j as usize]);
            *out = self
                .act
                .apply(dot + self.bias.as_ref().map_or(0.0, |b| b[r]));
        }
    }
}

/// What the search compresses: its matrices in order, and the network that runs them on the
/// calibration inputs in f32. [`search`] runs a stack of fully-connected layers
/// ([`FeedForward`]), [`search_sequence`](crate::recurrent::search_sequence) a sequence model.
pub(crate) trait Network: Sync {
    /// The uncompressed matrices, in the order the search and its results list them.
    fn matrices(&self) -> &[DenseLayer];
    /// The activation stored with matrix `k` (identity for a gate matrix).
    fn activation(&self, k: usize) -> Activation;
    /// Matrix `k`, compressed at one PE, stored at the PE count at which it is smallest.
    fn compact(&self, k: usize, layer: EieLayer) -> Result<EieLayer>;
    /// The uncompressed network's input vectors to matrix `k`, back to back.
    fn dense_inputs(&self, k: usize) -> &[f32];
    /// The uncompressed network's outputs, back to back.
    fn dense_outputs(&self) -> &[f32];
    /// Values per output vector.
    fn output_size(&self) -> usize;
    /// Calibration inputs (one label each).
    fn samples(&self) -> usize;
    /// The network's outputs on the calibration inputs with `layer(k)` in place of matrix `k`
    /// wherever it gives one. Every matrix before `from` is uncompressed, so the run may start
    /// from the uncompressed network's activations there.
    fn run<'r>(&'r self, from: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32>;
    /// The input vectors to matrix `k` of the network with `layer`'s substitutions, in the
    /// order of `dense_inputs`.
    fn inputs_to<'r>(&'r self, k: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32>;
    /// The outputs the labels judge, one output vector per calibration input.
    fn judged<'y>(&self, y: &'y [f32]) -> Cow<'y, [f32]>;
}

/// A stack of fully-connected layers, each input one calibration vector.
struct FeedForward<'a> {
    dense: &'a [DenseLayer],
    activations: &'a [Activation],
    rows: Vec<Rows>,
    /// `acts[k]`: the uncompressed network's input to layer `k`; `acts[layers]` its output.
    acts: Vec<Vec<f32>>,
}

impl<'a> FeedForward<'a> {
    fn new(dense: &'a [DenseLayer], activations: &'a [Activation], x: &[f32]) -> Self {
        let rows: Vec<Rows> = dense
            .iter()
            .zip(activations)
            .map(|(d, &a)| Rows::from_dense(d, a))
            .collect();
        let mut acts = vec![x.to_vec()];
        for r in &rows {
            let next = r.forward(&acts[acts.len() - 1]);
            acts.push(next);
        }
        FeedForward {
            dense,
            activations,
            rows,
            acts,
        }
    }
}

impl Network for FeedForward<'_> {
    fn matrices(&self) -> &[DenseLayer] {
        self.dense
    }

    fn activation(&self, k: usize) -> Activation {
        self.activations[k]
    }

    fn compact(&self, _: usize, layer: EieLayer) -> Result<EieLayer> {
        layer.compact()
    }

    fn dense_inputs(&self, k: usize) -> &[f32] {
        &self.acts[k]
    }

    fn dense_outputs(&self) -> &[f32] {
        &self.acts[self.dense.len()]
    }

    fn output_size(&self) -> usize {
        self.dense[self.dense.len() - 1].rows
    }

    fn samples(&self) -> usize {
        self.acts[0].len() / self.dense[0].cols
    }

    fn run<'r>(&'r self, from: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32> {
        let mut a = self.acts[from].clone();
        for k in from..self.dense.len() {
            a = layer(k).unwrap_or(&self.rows[k]).forward(&a);
        }
        a
    }

    fn inputs_to<'r>(&'r self, k: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32> {
        let mut a = self.acts[0].clone();
        for j in 0..k {
            a = layer(j).unwrap_or(&self.rows[j]).forward(&a);
        }
        a
    }

    fn judged<'y>(&self, y: &'y [f32]) -> Cow<'y, [f32]> {
        Cow::Borrowed(y)
    }
}

/// One compressed candidate of a layer.
#[derive(Clone, Debug)]
struct Candidate {
    density: f64,
    bits: u8,
    bytes: usize,
    metric: f64,
    loss: f64,
    /// `1 - mean cosine` of the network's outputs with the uncompressed network's: a smooth
    /// measure of the damage that orders the candidates (accuracy moves in steps of one input).
    distortion: f64,
}

/// The evaluation context: the network with its uncompressed activations, and the budget.
struct Evaluator<'a> {
    budget: &'a Budget,
    net: &'a dyn Network,
    classes: usize,
    /// The uncompressed network's top-1 class of each calibration input.
    dense_top1: Vec<usize>,
    margin: f64,
    evaluations: usize,
}

/// A network output's scores: the budget's metric and loss, and the distortion.
#[derive(Clone, Copy, Debug)]
struct Score {
    metric: f64,
    loss: f64,
    distortion: f64,
}

impl Evaluator<'_> {
    /// The budget's metric of network outputs `y`: top-1 accuracy of the judged outputs, or
    /// the mean cosine similarity of all outputs with the uncompressed network's.
    fn metric(&self, y: &[f32]) -> f64 {
        match self.budget {
            Budget::MaxAccuracyDrop { .. } => {
                self.budget
                    .metric(&self.net.judged(y), self.net.dense_outputs(), self.classes)
            }
            Budget::MinCosine(_) => self
                .budget
                .metric(y, self.net.dense_outputs(), self.classes),
        }
    }

    /// The scores of network outputs `y`.
    fn score(&mut self, y: &[f32]) -> Score {
        self.evaluations += 1;
        let reference = self.net.dense_outputs();
        let metric = self.metric(y);
        // Outputs that overflowed (inf, NaN) never keep a budget and come last in every order.
        let finite = |v: f64| if v.is_finite() { v } else { f64::INFINITY };
        let outputs_finite = y.iter().all(|v| v.is_finite());
        Score {
            metric,
            loss: match self.budget {
                _ if !outputs_finite => f64::INFINITY,
                Budget::MaxAccuracyDrop { labels, .. } => {
                    let predicted = crate::classify::top1(&self.net.judged(y), self.classes);
                    accuracy_loss(&predicted, &self.dense_top1, labels, self.margin)
                }
                Budget::MinCosine(_) => finite(1.0 - metric),
            },
            distortion: finite(1.0 - mean_cosine(y, reference, self.classes)),
        }
    }
}

/// Compresses `dense` (with `activations`, one per layer) to the smallest model file the
/// search finds whose quality on the calibration inputs `calibration` (`n` inputs back to
/// back) keeps `budget`. The steps are sensitivity, front, threshold, greedy descent, a final
/// re-fit and the fixed16 formats, as the comment at the top of `src/compress/search/mod.rs`
/// describes.
///
/// Errors: [`Error::BudgetUnreachable`] when even the least lossy setting of every layer
/// misses the budget; shape, range and name errors for bad inputs.
pub fn search(
    dense: &[DenseLayer],
    activations: &[Activation],
    calibration: &[f32],
    budget: &Budget,
    options: &SearchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<SearchResult> {
    super::validate_network(dense, activations)?;
    let n = crate::format::check_batch(dense[0].cols, calibration)?;
    if n == 0 {
        return Err(Error::Shape("no calibration inputs".into()));
    }
    crate::error::check_finite("calibration inputs", calibration)?;
    let net = FeedForward::new(dense, activations, calibration);
    search_network(&net, budget, options, progress)?.into_result(|layers| {
        // EIE's 16-bit activation formats, from the same calibration inputs.
        let mut model = Model::new(layers)?;
        crate::calibration::choose_formats(&mut model, Some(calibration))?;
        Ok(model)
    })
}

/// What [`search_network`] found: the compressed matrices in order, and the figures of a
/// [`SearchResult`].
pub(crate) struct Outcome {
    pub(crate) layers: Vec<EieLayer>,
    pub(crate) choices: Vec<LayerChoice>,
    pub(crate) sensitivity: Vec<LayerSensitivity>,
    pub(crate) dense_metric: f64,
    pub(crate) unrefined_metric: f64,
    pub(crate) metric: f64,
    pub(crate) loss: f64,
    pub(crate) evaluations: usize,
}

impl Outcome {
    /// The [`SearchResult`] of a model that `model` builds from the compressed matrices.
    pub(crate) fn into_result<M>(
        self,
        model: impl FnOnce(Vec<EieLayer>) -> Result<M>,
    ) -> Result<SearchResult<M>> {
        Ok(SearchResult {
            model: model(self.layers)?,
            layers: self.choices,
            sensitivity: self.sensitivity,
            dense_metric: self.dense_metric,
            unrefined_metric: self.unrefined_metric,
            metric: self.metric,
            loss: self.loss,
            evaluations: self.evaluations,
        })
    }
}

/// The search itself (steps 1 to 5) over the matrices of `net`.
pub(crate) fn search_network(
    net: &dyn Network,
    budget: &Budget,
    options: &SearchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    let dense = net.matrices();
    let names: Vec<&str> = dense.iter().map(|d| d.name.as_str()).collect();
    if let Some(unknown) = options
        .plan
        .layers()
        .keys()
        .find(|n| !names.contains(&n.as_str()))
    {
        return Err(Error::InvalidArgument(format!(
            "unknown layer name `{unknown}` in the fixed settings; the layers are: {}",
            names.join(", ")
        )));
    }
    check_space(&options.space)?;
    if !(options.margin.is_finite() && options.margin >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "margin {} is not a finite number of standard errors >= 0",
            options.margin
        )));
    }
    let n = net.samples();
    let classes = net.output_size();
    budget.check(n, classes)?;

    // The uncompressed network's outputs on the calibration inputs.
    crate::error::check_finite("the uncompressed network's outputs", net.dense_outputs())?;
    let dense_top1 = crate::classify::top1(&net.judged(net.dense_outputs()), classes);
    let mut ev = Evaluator {
        budget,
        net,
        classes,
        dense_top1,
        margin: options.margin,
        evaluations: 0,
    };
    let dense_metric = ev.metric(net.dense_outputs());
    // Each layer's uncompressed pre-activation outputs, the targets of codebook re-fits.
    let targets: Vec<Vec<f64>> = if options.refine_codebooks {
        (0..dense.len())
            .map(|k| refit_targets(&dense[k], net.dense_inputs(k)))
            .collect()
    } else {
        vec![Vec::new(); dense.len()]
    };
    // Per layer, the RMS of each input over the calibration inputs (activation-aware pruning).
    let scales: Vec<Option<Vec<f32>>> = (0..dense.len())
        .map(|k| {
            options.activation_aware.then(|| {
                let cols = dense[k].cols;
                let inputs = net.dense_inputs(k);
                let count = (inputs.len() / cols).max(1);
                let mut sum = vec![0f64; cols];
                for x in inputs.chunks_exact(cols) {
                    for (s, &v) in sum.iter_mut().zip(x) {
                        *s += v as f64 * v as f64;
                    }
                }
                // An input that is zero on every calibration input still ranks its weights (by
                // magnitude, below every live input's): its scale is floored at 1e-6 of the
                // largest, so density 1 keeps every weight.
                let rms: Vec<f64> = sum.iter().map(|&s| (s / count as f64).sqrt()).collect();
                let floor = (rms.iter().cloned().fold(0f64, f64::max) * 1e-6).max(1e-30);
                rms.iter().map(|&r| r.max(floor) as f32).collect()
            })
        })
        .collect();
    // Per layer, the calibration inputs' Gram matrix for re-fitting the kept weights.
    let grams: Vec<Option<Gram>> = (0..dense.len())
        .map(|k| {
            if options.refine_codebooks {
                Gram::new(&dense[k], net.dense_inputs(k))
            } else {
                None
            }
        })
        .collect();
    let max_iterations = if options.max_iterations == 0 {
        CompressConfig::default().max_iterations
    } else {
        options.max_iterations
    };
    let fixed = |k: usize| options.plan.given_for(&dense[k].name);
    // A layer compressed at (density, bits); with re-fitting on, its codebook re-fitted on
    // the uncompressed network's input to it.
    let build = |k: usize, density: f64, bits: u8| -> Result<(EieLayer, bool)> {
        let f = fixed(k);
        let config = CompressConfig {
            density,
            bits,
            pes: f.pes.unwrap_or(1),
            max_iterations,
        };
        config.validate()?;
        let kept = match &scales[k] {
            // Activation-aware pruning: |w_ij| scaled by the RMS of input j.
            Some(scale) => {
                let scored: Vec<f32> = dense[k]
                    .weights
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| w * scale[i % dense[k].cols])
                    .collect();
                prune_by_magnitude(&scored, density)?
            }
            None => prune_by_magnitude(&dense[k].weights, density)?,
        };
        let (kept, values) = match &grams[k] {
            Some(gram) => gram.reconstruct(&dense[k], &kept),
            None => {
                let values = kept.iter().map(|&i| dense[k].weights[i]).collect();
                (kept, values)
            }
        };
        let layer = compress_kept(&dense[k], &kept, &values, &config, net.activation(k))?;
        let layer = match f.pes {
            Some(_) => layer,
            None => net.compact(k, layer)?,
        };
        if options.refine_codebooks {
            if let Some(refit) = refit_codebook(&layer, net.dense_inputs(k), &targets[k])? {
                return Ok((refit, true));
            }
        }
        Ok((layer, false))
    };

    // 1. Sensitivity of every layer alone.
    let grids: Vec<Vec<(f64, u8)>> = (0..dense.len())
        .map(|k| {
            let f = fixed(k);
            let ds = f
                .density
                .map_or(options.space.densities.clone(), |d| vec![d]);
            let bs = f.bits.map_or(options.space.bits.clone(), |b| vec![b]);
            ds.iter()
                .flat_map(|&d| bs.iter().map(move |&b| (d, b)))
                .collect()
        })
        .collect();
    let total: usize = grids.iter().map(Vec::len).sum();
    let mut done = 0;
    progress(Progress::Sensitivity { done, total });
    let mut candidates: Vec<Vec<Candidate>> = Vec::with_capacity(dense.len());
    for (k, grid) in grids.iter().enumerate() {
        let mut points = Vec::with_capacity(grid.len());
        for &(density, bits) in grid {
            let (layer, _) = build(k, density, bits)?;
            let rows = Rows::from_layer(&layer);
            let y = net.run(k, &|j| (j == k).then_some(&rows));
            let s = ev.score(&y);
            points.push(Candidate {
                density,
                bits,
                bytes: layer.compressed_bytes(),
                metric: s.metric,
                loss: s.loss,
                distortion: s.distortion,
            });
            done += 1;
            progress(Progress::Sensitivity { done, total });
        }
        candidates.push(points);
    }
    let sensitivity: Vec<LayerSensitivity> = candidates
        .iter()
        .zip(dense)
        .map(|(c, d)| LayerSensitivity {
            name: d.name.clone(),
            points: c
                .iter()
                .map(|c| SensitivityPoint {
                    density: c.density,
                    bits: c.bits,
                    bytes: c.bytes,
                    metric: c.metric,
                    loss: c.loss,
                })
                .collect(),
        })
        .collect();

    // 2. Each layer's front: bytes increasing, distortion strictly decreasing.
    let fronts: Vec<Vec<Candidate>> = candidates.iter().map(|c| front(c)).collect();

    // Compressed layers are rebuilt on demand (deterministically) and cached by position.
    let mut cache: BTreeMap<(usize, usize), (EieLayer, Rows, bool)> = BTreeMap::new();
    let mut evaluate = |ev: &mut Evaluator, pos: &[usize]| -> Result<Score> {
        for (k, &p) in pos.iter().enumerate() {
            if let std::collections::btree_map::Entry::Vacant(e) = cache.entry((k, p)) {
                let c = &fronts[k][p];
                let (layer, refit) = build(k, c.density, c.bits)?;
                let rows = Rows::from_layer(&layer);
                e.insert((layer, rows, refit));
            }
        }
        let y = net.run(0, &|k| Some(&cache[&(k, pos[k])].1));
        Ok(ev.score(&y))
    };
    let bytes_of = |pos: &[usize]| -> usize {
        pos.iter()
            .enumerate()
            .map(|(k, &p)| fronts[k][p].bytes)
            .sum()
    };

    // 3. The least distorting setting everywhere must keep the budget; then bisect the
    //    tolerance.
    let limit = budget.limit();
    let least: Vec<usize> = fronts.iter().map(|f| f.len() - 1).collect();
    let best = evaluate(&mut ev, &least)?;
    if best.loss > limit {
        return Err(Error::BudgetUnreachable(format!(
            "{}: the least lossy setting of every layer gives {} {:.4} (uncompressed: {:.4})",
            budget.describe(),
            budget.metric_name(),
            best.metric,
            dense_metric
        )));
    }
    let at_tolerance = |t: f64| -> Vec<usize> {
        fronts
            .iter()
            .map(|f| {
                f.iter()
                    .position(|c| c.distortion <= t)
                    .unwrap_or(f.len() - 1)
            })
            .collect()
    };
    let mut tolerances: Vec<f64> = fronts.iter().flatten().map(|c| c.distortion).collect();
    tolerances.sort_by(f64::total_cmp);
    tolerances.dedup();
    // Below `floor` some layer has no point; `least` is the verified fallback.
    let floor = fronts
        .iter()
        .map(|f| f[f.len() - 1].distortion)
        .fold(f64::NEG_INFINITY, f64::max);
    let (mut lo, mut hi) = (tolerances.partition_point(|&t| t < floor), tolerances.len());
    let mut pos = least.clone();
    let mut phase_evals = 0;
    // The largest tolerance whose model keeps the budget, assuming that more distortion never
    // gains quality; every accepted model is verified.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let trial = at_tolerance(tolerances[mid]);
        let s = evaluate(&mut ev, &trial)?;
        phase_evals += 1;
        if s.loss <= limit {
            lo = mid + 1;
            pos = trial;
        } else {
            hi = mid;
        }
        progress(Progress::Search {
            evaluations: phase_evals,
            bytes: bytes_of(&pos),
        });
    }

    // 4. Greedy descent along the fronts: a layer whose next step misses the budget tries the
    //    steps after it (up to `GREEDY_LOOKAHEAD`) before it is left where it is.
    let mut blocked = vec![false; dense.len()];
    loop {
        let mut best: Option<(Vec<usize>, usize)> = None; // (position, bytes saved)
        for k in 0..dense.len() {
            if blocked[k] {
                continue;
            }
            let mut passed = false;
            for step in 1..=GREEDY_LOOKAHEAD.min(pos[k]) {
                let mut trial = pos.clone();
                trial[k] -= step;
                let s = evaluate(&mut ev, &trial)?;
                phase_evals += 1;
                if s.loss <= limit {
                    let saved = bytes_of(&pos) - bytes_of(&trial);
                    if best.as_ref().is_none_or(|(_, b)| saved > *b) {
                        best = Some((trial, saved));
                    }
                    passed = true;
                    break;
                }
            }
            blocked[k] = !passed;
        }
        match best {
            Some((trial, _)) => pos = trial,
            None => break,
        }
        progress(Progress::Search {
            evaluations: phase_evals,
            bytes: bytes_of(&pos),
        });
    }
    let chosen = evaluate(&mut ev, &pos)?;
    let (unrefined_metric, mut metric, mut loss) = (chosen.metric, chosen.metric, chosen.loss);

    // 5. Codebook re-fits on the compressed network's own inputs, kept where they lower the
    //    loss (the distortion on ties).
    let mut layers: Vec<EieLayer> = pos
        .iter()
        .enumerate()
        .map(|(k, &p)| cache[&(k, p)].0.clone())
        .collect();
    let mut refined: Vec<bool> = pos
        .iter()
        .enumerate()
        .map(|(k, &p)| cache[&(k, p)].2)
        .collect();
    if options.refine_codebooks {
        let mut distortion = chosen.distortion;
        for k in 0..dense.len() {
            let current: Vec<Rows> = layers.iter().map(Rows::from_layer).collect();
            let x = net.inputs_to(k, &|j| Some(&current[j]));
            let Some(candidate) = refit_codebook(&layers[k], &x, &targets[k])? else {
                continue;
            };
            let refit = Rows::from_layer(&candidate);
            let y = net.run(0, &|j| Some(if j == k { &refit } else { &current[j] }));
            let s = ev.score(&y);
            if s.loss < loss || (s.loss == loss && s.distortion < distortion) {
                layers[k] = candidate;
                refined[k] = true;
                (metric, loss, distortion) = (s.metric, s.loss, s.distortion);
            }
        }
    }

    let choices = layers
        .iter()
        .enumerate()
        .map(|(k, l)| LayerChoice {
            name: dense[k].name.clone(),
            density: fronts[k][pos[k]].density,
            bits: fronts[k][pos[k]].bits,
            pes: l.pes(),
            bytes: l.compressed_bytes(),
            dense_bytes: l.dense_bytes(),
            metric: fronts[k][pos[k]].metric,
            refined: refined[k],
        })
        .collect();
    Ok(Outcome {
        layers,
        choices,
        sensitivity,
        dense_metric,
        unrefined_metric,
        metric,
        loss,
        evaluations: ev.evaluations,
    })
}

/// How many steps along its front a layer tries in one round of the greedy descent.
const GREEDY_LOOKAHEAD: usize = 3;

fn check_space(space: &SearchSpace) -> Result<()> {
    if space.densities.is_empty() || space.bits.is_empty() {
        return Err(Error::InvalidArgument(
            "the search space needs at least one density and one bit width".into(),
        ));
    }
    for &d in &space.densities {
        CompressConfig {
            density: d,
            ..CompressConfig::default()
        }
        .validate()?;
    }
    for &b in &space.bits {
        CompressConfig {
            bits: b,
            ..CompressConfig::default()
        }
        .validate()?;
    }
    Ok(())
}

/// The candidates no other beats in both bytes and distortion: bytes increasing, distortion
/// strictly decreasing. Ties go to the one listed first.
fn front(points: &[Candidate]) -> Vec<Candidate> {
    let mut sorted: Vec<&Candidate> = points.iter().collect();
    sorted.sort_by(|a, b| {
        a.bytes
            .cmp(&b.bytes)
            .then(a.distortion.total_cmp(&b.distortion))
    });
    let mut out: Vec<Candidate> = Vec::new();
    for c in sorted {
        if out.last().is_none_or(|l| c.distortion < l.distortion) {
            out.push(c.clone());
        }
    }
    out
}

/// Layers with more inputs than this keep their pruned weights as they are (the Gram matrix
/// takes `inputs²` values).
const RECONSTRUCT_MAX_COLS: usize = 4096;
/// Largest sum over rows of `kept³` (the Cholesky factorisations) for a re-fit of the kept
/// weights.
const RECONSTRUCT_MAX_WORK: f64 = 3e10;
/// Damping of the Gram matrix: this fraction of its mean diagonal is added to the diagonal.
const RECONSTRUCT_DAMPING: f64 = 0.01;

/// The calibration inputs' Gram matrix `H = XᵀX / n` of a layer, and `H wᵣ` for each of its
/// uncompressed rows `wᵣ`: what a least-squares re-fit of a pruned row needs.
struct Gram {
    cols: usize,
    h: Vec<f64>,
    hw: Vec<f64>,
    damping: f64,
}

impl Gram {
    /// `None` when the layer has more than [`RECONSTRUCT_MAX_COLS`] inputs or the inputs are
    /// all zero.
    fn new(dense: &DenseLayer, x: &[f32]) -> Option<Gram> {
        let cols = dense.cols;
        if cols > RECONSTRUCT_MAX_COLS {
            return None;
        }
        let n = x.len() / cols;
        let mut h: Vec<f64> = try_filled(cols * cols, 0.0, "Gram matrix").ok()?;
        let mut nz: Vec<(usize, f64)> = Vec::with_capacity(cols);
        for xi in x.chunks_exact(cols) {
            nz.clear();
            nz.extend(
                xi.iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0.0)
                    .map(|(j, &v)| (j, v as f64)),
            );
            for &(p, a) in &nz {
                let row = &mut h[p * cols..(p + 1) * cols];
                for &(q, b) in &nz {
                    row[q] += a * b;
                }
            }
        }
        h.iter_mut().for_each(|v| *v /= n as f64);
        let mean_diag = (0..cols).map(|j| h[j * cols + j]).sum::<f64>() / cols as f64;
        if mean_diag <= 0.0 || !mean_diag.is_finite() {
            return None;
        }
        let mut hw: Vec<f64> = try_filled(dense.rows * cols, 0.0, "Gram products").ok()?;
        hw.par_chunks_mut(cols)
            .zip(dense.weights.par_chunks(cols))
            .for_each(|(out, w)| {
                for (o, hrow) in out.iter_mut().zip(h.chunks_exact(cols)) {
                    *o = hrow.iter().zip(w).map(|(&a, &b)| a * b as f64).sum();
                }
            });
        Some(Gram {
            cols,
            h,
            hw,
            damping: RECONSTRUCT_DAMPING * mean_diag,
        })
    }

    /// Re-fits the weights each row keeps (`kept`: increasing flat indices) by damped least
    /// squares, so that the pruned row's outputs on the calibration inputs match the
    /// uncompressed row's, damped towards the row's own weights: `(H_SS + λI) w_S = (H w)_S +
    /// λ w_S⁰` (a row that keeps every weight comes out unchanged). Rows too costly to solve keep their
    /// weights; weights that come out exactly zero are dropped. Returns the kept indices and
    /// their values.
    fn reconstruct(&self, dense: &DenseLayer, kept: &[usize]) -> (Vec<usize>, Vec<f32>) {
        let cols = self.cols;
        // Row boundaries in `kept`.
        let mut bounds = vec![0usize; dense.rows + 1];
        for &i in kept {
            bounds[i / cols + 1] += 1;
        }
        for r in 0..dense.rows {
            bounds[r + 1] += bounds[r];
        }
        let work: f64 = (0..dense.rows)
            .map(|r| ((bounds[r + 1] - bounds[r]) as f64).powi(3))
            .sum();
        let original = |i: usize| dense.weights[i];
        if work > RECONSTRUCT_MAX_WORK {
            return (kept.to_vec(), kept.iter().map(|&i| original(i)).collect());
        }
        let solved: Vec<Vec<f32>> = (0..dense.rows)
            .into_par_iter()
            .map(|r| {
                let idx = &kept[bounds[r]..bounds[r + 1]];
                let m = idx.len();
                let Ok(mut a) = try_filled(m * m, 0f64, "row system") else {
                    return idx.iter().map(|&i| original(i)).collect();
                };
                let mut b = vec![0f64; m];
                for (p, &i) in idx.iter().enumerate() {
                    let jp = i % cols;
                    for (q, &i2) in idx.iter().enumerate() {
                        a[p * m + q] = self.h[jp * cols + i2 % cols];
                    }
                    a[p * m + p] += self.damping;
                    b[p] = self.hw[r * cols + jp] + self.damping * original(i) as f64;
                }
                match solve_spd(&mut a, &mut b, m) {
                    Some(w) if w.iter().all(|&v| (v as f32).is_finite()) => {
                        w.iter().map(|&v| v as f32).collect()
                    }
                    _ => idx.iter().map(|&i| original(i)).collect(),
                }
            })
            .collect();
        let mut out_idx = Vec::with_capacity(kept.len());
        let mut out_val = Vec::with_capacity(kept.len());
        for (r, values) in solved.iter().enumerate() {
            for (&i, &v) in kept[bounds[r]..bounds[r + 1]].iter().zip(values) {
                if v != 0.0 && v.is_finite() {
                    out_idx.push(i);
                    out_val.push(v);
                }
            }
        }
        (out_idx, out_val)
    }
}

/// Codebooks this large are not re-fitted: the normal equations grow with the square of the
/// codes a row uses.
const REFIT_MAX_BITS: u8 = 6;
/// At most this many calibration inputs feed a re-fit.
const REFIT_MAX_INPUTS: usize = 512;
/// Layers whose targets (inputs × rows × columns multiply-adds) cost more are not re-fitted.
const REFIT_MAX_WORK: f64 = 4e9;
/// Calibration inputs per partial sum: the partials are added in a fixed order, so the
/// re-fit does not depend on how the threads split the work.
const REFIT_CHUNK: usize = 16;

/// The uncompressed layer's pre-activation outputs without bias, `W x`, on the first
/// [`REFIT_MAX_INPUTS`] inputs of `x` (empty when the layer is too large to re-fit).
fn refit_targets(dense: &DenseLayer, x: &[f32]) -> Vec<f64> {
    let (rows, cols) = (dense.rows, dense.cols);
    let n = (x.len() / cols).min(REFIT_MAX_INPUTS);
    if (n * rows) as f64 * cols as f64 > REFIT_MAX_WORK {
        return Vec::new();
    }
    let Ok(mut t) = try_filled(n * rows, 0f64, "re-fit targets") else {
        return Vec::new();
    };
    t.par_chunks_mut(rows)
        .zip(x.par_chunks(cols))
        .for_each(|(t, x)| {
            for (t, w) in t.iter_mut().zip(dense.weights.chunks_exact(cols)) {
                *t = w.iter().zip(x).map(|(&w, &v)| w as f64 * v as f64).sum();
            }
        });
    t
}

/// Re-fits `layer`'s shared weights (codes and pruning unchanged) by least squares so that on
/// inputs `x` its pre-activation outputs match `targets` (from [`refit_targets`]), with a
/// small ridge pulling each value towards its k-means centroid. `None` when the layer is out
/// of the re-fit's range or the system is singular.
fn refit_codebook(layer: &EieLayer, x: &[f32], targets: &[f64]) -> Result<Option<EieLayer>> {
    let (rows, cols) = (layer.rows(), layer.cols());
    let n = (x.len() / cols).min(REFIT_MAX_INPUTS);
    if layer.bits() > REFIT_MAX_BITS || targets.len() != n * rows {
        return Ok(None);
    }
    let k = layer.codebook().len();
    let codes = layer.sparse_codes();
    // Per row: (column, code) of its non-zeros, in column order.
    let by_row = codes.by_rows();
    // Normal equations G c = h over the codes: per row and input, a_c = the sum of the inputs
    // whose weights share code c.
    let partial = |start: usize| -> (Vec<f64>, Vec<f64>) {
        let (mut g, mut h) = (vec![0f64; k * k], vec![0f64; k]);
        let mut a = vec![0f64; k];
        let mut seen = vec![false; k];
        let mut used: Vec<usize> = Vec::with_capacity(k);
        for i in start..(start + REFIT_CHUNK).min(n) {
            let xi = &x[i * cols..(i + 1) * cols];
            for r in 0..rows {
                for (j, c) in by_row.row(r) {
                    let c = c as usize;
                    if !seen[c] {
                        seen[c] = true;
                        used.push(c);
                    }
                    a[c] += xi[j as usize] as f64;
                }
                let target = targets[i * rows + r];
                for &p in &used {
                    h[p] += a[p] * target;
                    for &q in &used {
                        g[p * k + q] += a[p] * a[q];
                    }
                }
                for &p in &used {
                    (a[p], seen[p]) = (0.0, false);
                }
                used.clear();
            }
        }
        (g, h)
    };
    let starts: Vec<usize> = (0..n).step_by(REFIT_CHUNK).collect();
    let partials: Vec<(Vec<f64>, Vec<f64>)> = starts.par_iter().map(|&s| partial(s)).collect();
    let (mut g, mut h) = (vec![0f64; k * k], vec![0f64; k]);
    for (pg, ph) in &partials {
        g.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        h.iter_mut().zip(ph).for_each(|(a, b)| *a += b);
    }
    // Unknowns: codes 1..k. Ridge: 1e-6 of the mean diagonal, towards the old centroid.
    let m = k - 1;
    let diag_mean = (1..k).map(|p| g[p * k + p]).sum::<f64>() / m as f64;
    if diag_mean <= 0.0 || !diag_mean.is_finite() {
        return Ok(None);
    }
    let lambda = 1e-6 * diag_mean;
    let old = layer.codebook();
    let mut a = vec![0f64; m * m];
    let mut b = vec![0f64; m];
    for p in 0..m {
        for q in 0..m {
            a[p * m + q] = g[(p + 1) * k + q + 1];
        }
        a[p * m + p] += lambda;
        b[p] = h[p + 1] + lambda * old[p + 1] as f64;
    }
    let Some(c) = solve_spd(&mut a, &mut b, m) else {
        return Ok(None);
    };
    let mut codebook = old.to_vec();
    for (slot, &v) in codebook[1..].iter_mut().zip(&c) {
        let v = v as f32;
        if !v.is_finite() {
            return Ok(None);
        }
        *slot = v;
    }
    let mut out = EieLayer::encode(
        &codes,
        codebook,
        layer.bits(),
        layer.pes(),
        layer.bias().map(<[f32]>::to_vec),
        layer.activation(),
    )?;
    out.set_name(layer.name());
    Ok(Some(out))
}

/// Solves `a x = b` for a symmetric positive definite `m × m` matrix by Cholesky
/// factorisation in place; `None` when `a` is not positive definite.
fn solve_spd(a: &mut [f64], b: &mut [f64], m: usize) -> Option<Vec<f64>> {
    for j in 0..m {
        let mut d = a[j * m + j];
        for p in 0..j {
            d -= a[j * m + p] * a[j * m + p];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let mut s = a[i * m + j];
            for p in 0..j {
                s -= a[i * m + p] * a[j * m + p];
            }
            a[i * m + j] = s / d;
        }
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..m {
        let mut s = b[i];
        for p in 0..i {
            s -= a[i * m + p] * b[p];
        }
        b[i] = s / a[i * m + i];
    }
    for i in (0..m).rev() {
        let mut s = b[i];
        for p in i + 1..m {
            s -= a[p * m + i] * b[p];
        }
        b[i] = s / a[i * m + i];
    }
    Some(b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_and_rejects_indefinite_systems() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0].
        let x = solve_spd(&mut [4.0, 2.0, 2.0, 3.0], &mut [2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(&mut [1.0, 2.0, 2.0, 1.0], &mut [1.0, 1.0], 2).is_none());
    }

    #[test]
    fn a_row_that_keeps_every_weight_is_not_changed_and_pruned_rows_fit_better() {
        let d = crate::synth::dense_layer("l", 6, 12, false, 3);
        let x = crate::synth::activations(200 * 12, 0.7, 4);
        let gram = Gram::new(&d, &x).unwrap();
        let all: Vec<usize> = (0..d.weights.len()).collect();
        let (idx, values) = gram.reconstruct(&d, &all);
        assert_eq!(idx, all);
        for (v, w) in values.iter().zip(&d.weights) {
            assert!((v - w).abs() < 1e-4 * w.abs().max(1.0), "{v} vs {w}");
        }
        // Half the weights: the re-fit's outputs are closer to the dense outputs than the
        // plain pruned weights' on the calibration inputs.
        let kept = prune_by_magnitude(&d.weights, 0.5).unwrap();
        let (idx, refit) = gram.reconstruct(&d, &kept);
        let err = |idx: &[usize], vals: &[f32]| -> f64 {
            let mut w = vec![0f32; d.weights.len()];
            for (&i, &v) in idx.iter().zip(vals) {
                w[i] = v;
            }
            x.chunks_exact(12)
                .map(|xi| {
                    (0..6)
                        .map(|r| {
                            let row = |m: &[f32]| -> f64 {
                                m[r * 12..(r + 1) * 12]
                                    .iter()
                                    .zip(xi)
                                    .map(|(&a, &b)| a as f64 * b as f64)
                                    .sum()
                            };
                            (row(&w) - row(&d.weights)).powi(2)
                        })
                        .sum::<f64>()
                })
                .sum()
        };
        let plain: Vec<f32> = kept.iter().map(|&i| d.weights[i]).collect();
        let (e_refit, e_plain) = (err(&idx, &refit), err(&kept, &plain));
        assert!(e_refit < 0.8 * e_plain, "{e_refit} vs {e_plain}");
    }

    #[test]
    fn density_one_keeps_weights_on_inputs_calibration_never_sets() {
        let d = crate::synth::dense_layer("l", 5, 10, true, 7);
        let mut x = crate::synth::activations(40 * 10, 0.9, 8);
        for xi in x.chunks_exact_mut(10) {
            xi[3] = 0.0; // input 3 is never set
        }
        let options = SearchOptions {
            plan: CompressPlan::default().with_layer(
                "l",
                crate::compress::LayerSettings {
                    density: Some(1.0),
                    bits: Some(8),
                    pes: None,
                },
            ),
            ..SearchOptions::default()
        };
        let r = search(
            std::slice::from_ref(&d),
            &[Activation::Identity],
            &x,
            &Budget::MinCosine(0.0),
            &options,
            &mut |_| {},
        )
        .unwrap();
        let nonzero = d.weights.iter().filter(|&&w| w != 0.0).count();
        assert_eq!(r.model.layers()[0].nnz(), nonzero);
    }

    #[test]
    fn overflowing_networks_are_an_error_not_a_model() {
        // Outputs that overflow f32 give a typed error instead of a model whose loss is NaN.
        let mut d = crate::synth::dense_layer("l", 4, 6, false, 9);
        d.weights.iter_mut().for_each(|w| *w = 3e38);
        let x = vec![1.0f32; 6 * 8];
        let e = search(
            &[d],
            &[Activation::Identity],
            &x,
            &Budget::MinCosine(0.5),
            &SearchOptions::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    }

    #[test]
    fn codebook_refit_keeps_an_exact_codebook() {
        // Weights that take exactly the codebook's values: the least-squares fit is the
        // codebook itself.
        let d = crate::synth::dense_layer("l", 8, 16, true, 5);
        let config = CompressConfig {
            bits: 3,
            pes: 1,
            ..CompressConfig::default()
        };
        let layer = super::super::compress_layer(&d, &config, Activation::Identity).unwrap();
        let quantised = DenseLayer {
            weights: layer.dense_weights(),
            ..d
        };
        let x = crate::synth::activations(64 * 16, 0.8, 6);
        let targets = refit_targets(&quantised, &x);
        let refit = refit_codebook(&layer, &x, &targets).unwrap().unwrap();
        for (a, b) in refit.codebook().iter().zip(layer.codebook()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
