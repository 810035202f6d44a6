//! The search over a sequence model: its stages run over whole calibration sequences in f32,
//! every matrix (a fully-connected layer's weight, a recurrent layer's `W_ih` and `W_hh`)
//! one layer of the search.

use crate::compress::search::{search_network, Network, Rows};
use crate::compress::{Budget, Progress, SearchOptions, SearchResult};
use crate::dense::DenseLayer;
use crate::error::{Error, Result};
use crate::format::{sequence::recurrent_pes_ok, Activation, EieLayer, RecurrentLayer};
use crate::format::{SequenceModel, Stage};
use crate::recurrent::{cell, chains, smallest_dividing_pes, DenseRecurrent, DenseStage};
use rayon::prelude::*;
use std::borrow::Cow;

/// Where a matrix sits: its stage, and which part of it it is.
#[derive(Clone, Copy, Debug)]
enum Part {
    /// A fully-connected stage's weight.
    Fc(usize),
    /// A recurrent stage's `W_ih`.
    Ih(usize),
    /// A recurrent stage's `W_hh`.
    Hh(usize),
}

impl Part {
    fn stage(self) -> usize {
        match self {
            Part::Fc(s) | Part::Ih(s) | Part::Hh(s) => s,
        }
    }
}

/// A sequence model on calibration sequences of `steps` steps, each run from the zero state.
/// Its inputs are `[sequence][step]` vectors back to back, stage by stage.
struct SequenceNetwork<'a> {
    stages: &'a [DenseStage],
    matrices: Vec<DenseLayer>,
    parts: Vec<Part>,
    /// The index of each stage's first matrix.
    first: Vec<usize>,
    activations: Vec<Activation>,
    rows: Vec<Rows>,
    steps: usize,
    /// `acts[s]`: the uncompressed model's input to stage `s` at every step of every
    /// sequence; `acts[stages]` its outputs.
    acts: Vec<Vec<f32>>,
    /// Per matrix: for a `W_hh`, the uncompressed layer's `h_{t-1}` at every step (zero at
    /// the first); empty for the others.
    hidden_inputs: Vec<Vec<f32>>,
    /// Per stage: for a recurrent one, the uncompressed `W_ih x + b_ih` at every step, which
    /// every run that starts there with `W_ih` uncompressed reuses; empty for the others.
    dense_gx: Vec<Vec<f32>>,
}

impl<'a> SequenceNetwork<'a> {
    fn new(
        stages: &'a [DenseStage],
        fc_activations: &[Activation],
        x: &[f32],
        steps: usize,
    ) -> Self {
        let (mut matrices, mut parts, mut first, mut activations) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut fc_acts = fc_activations.iter();
        for (s, stage) in stages.iter().enumerate() {
            first.push(matrices.len());
            match stage {
                DenseStage::Fc(d) => {
                    matrices.push(d.clone());
                    parts.push(Part::Fc(s));
                    activations.push(fc_acts.next().copied().unwrap_or_default());
                }
                DenseStage::Recurrent(r) => {
                    matrices.extend([r.ih.clone(), r.hh.clone()]);
                    parts.extend([Part::Ih(s), Part::Hh(s)]);
                    activations.extend([Activation::Identity; 2]);
                }
            }
        }
        let rows = matrices
            .iter()
            .zip(&activations)
            .map(|(d, &a)| Rows::from_dense(d, a))
            .collect();
        let mut net = SequenceNetwork {
            stages,
            matrices,
            parts,
            first,
            activations,
            rows,
            steps,
            acts: vec![x.to_vec()],
            hidden_inputs: Vec::new(),
            dense_gx: Vec::new(),
        };
        let mut hidden_inputs = vec![Vec::new(); net.matrices.len()];
        let mut dense_gx = vec![Vec::new(); stages.len()];
        for s in 0..stages.len() {
            let out = net.run_stage(s, &net.acts[s], false, &|_| None);
            if let DenseStage::Recurrent(r) = &stages[s] {
                let k = net.first[s];
                hidden_inputs[k + 1] = net.previous_hidden(&out, r.hidden());
                dense_gx[s] = net.rows[k].forward(&net.acts[s]);
            }
            net.acts.push(out);
        }
        net.hidden_inputs = hidden_inputs;
        net.dense_gx = dense_gx;
        net
    }

    /// Stage `s` over every step of every sequence of its inputs `x`, with `layer(k)` in place
    /// of matrix `k` where it gives one. `dense_input`: `x` is the uncompressed model's input
    /// to the stage.
    fn run_stage<'r>(
        &'r self,
        s: usize,
        x: &[f32],
        dense_input: bool,
        layer: &dyn Fn(usize) -> Option<&'r Rows>,
    ) -> Vec<f32> {
        let k = self.first[s];
        let pick = |k: usize| layer(k).unwrap_or(&self.rows[k]);
        match &self.stages[s] {
            DenseStage::Fc(_) => pick(k).forward(x),
            DenseStage::Recurrent(r) => {
                let (ih, hh) = (pick(k), pick(k + 1));
                let (hidden, gates, steps) = (r.hidden(), ih.rows, self.steps);
                let gx = match layer(k) {
                    None if dense_input && !self.dense_gx[s].is_empty() => {
                        Cow::Borrowed(&self.dense_gx[s][..])
                    }
                    _ => Cow::Owned(ih.forward(x)),
                };
                let mut out = vec![0f32; gx.len() / gates * hidden];
                // Sequences in parallel, the steps of each in order from the zero state.
                out.par_chunks_mut(steps * hidden)
                    .zip(gx.par_chunks(steps * gates))
                    .for_each(|(out, gx)| {
                        let mut h = vec![0f32; hidden];
                        let mut c = vec![0f32; if r.kind.has_cell_state() { hidden } else { 0 }];
                        let mut gh = vec![0f32; gates];
                        for (o, gx) in out.chunks_exact_mut(hidden).zip(gx.chunks_exact(gates)) {
                            hh.apply(&h, &mut gh);
                            cell::update(r.kind, gx, &gh, &mut h, &mut c);
                            o.copy_from_slice(&h);
                        }
                    });
                out
            }
        }
    }

    /// A recurrent stage's `h_{t-1}` at every step, from its outputs `h_t`: zero at the first
    /// step of each sequence.
    fn previous_hidden(&self, out: &[f32], hidden: usize) -> Vec<f32> {
        let mut prev = vec![0f32; out.len()];
        let len = self.steps * hidden;
        for (p, o) in prev.chunks_exact_mut(len).zip(out.chunks_exact(len)) {
            p[hidden..].copy_from_slice(&o[..len - hidden]);
        }
        prev
    }

    /// The input to stage `s` with `layer`'s substitutions.
    fn stage_input<'r>(&'r self, s: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32> {
        let mut a = self.acts[0].clone();
        for stage in 0..s {
            a = self.run_stage(stage, &a, false, layer);
        }
        a
    }
}

impl Network for SequenceNetwork<'_> {
    fn matrices(&self) -> &[DenseLayer] {
        &self.matrices
    }

    fn activation(&self, k: usize) -> Activation {
        self.activations[k]
    }

    fn compact(&self, k: usize, layer: EieLayer) -> Result<EieLayer> {
        match (self.parts[k], &self.stages[self.parts[k].stage()]) {
            (Part::Ih(_) | Part::Hh(_), DenseStage::Recurrent(r)) => {
                smallest_dividing_pes(&layer, r.hidden())
            }
            _ => layer.compact(),
        }
    }

    fn dense_inputs(&self, k: usize) -> &[f32] {
        match self.parts[k] {
            Part::Fc(s) | Part::Ih(s) => &self.acts[s],
            Part::Hh(_) => &self.hidden_inputs[k],
        }
    }

    fn dense_outputs(&self) -> &[f32] {
        &self.acts[self.stages.len()]
    }

    fn output_size(&self) -> usize {
        self.stages[self.stages.len() - 1].output_size()
    }

    fn samples(&self) -> usize {
        self.acts[0].len() / (self.steps * self.stages[0].input_size())
    }

    fn run<'r>(&'r self, from: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32> {
        let s0 = self.parts[from].stage();
        let mut a = self.run_stage(s0, &self.acts[s0], true, layer);
        for s in s0 + 1..self.stages.len() {
            a = self.run_stage(s, &a, false, layer);
        }
        a
    }

    fn inputs_to<'r>(&'r self, k: usize, layer: &dyn Fn(usize) -> Option<&'r Rows>) -> Vec<f32> {
        match self.parts[k] {
            Part::Fc(s) | Part::Ih(s) => self.stage_input(s, layer),
            Part::Hh(s) => {
                let out = self.run_stage(s, &self.stage_input(s, layer), false, layer);
                self.previous_hidden(&out, self.stages[s].output_size())
            }
        }
    }

    /// The last step's output of each sequence.
    fn judged<'y>(&self, y: &'y [f32]) -> Cow<'y, [f32]> {
        let out = self.output_size();
        Cow::Owned(
            y.chunks_exact(self.steps * out)
                .flat_map(|s| &s[(self.steps - 1) * out..])
                .copied()
                .collect(),
        )
    }
}

/// [`search`](crate::compress::search()) for a sequence model: compresses `stages` (with `activations`,
/// one per fully-connected stage, as [`crate::recurrent::compress_stages`] takes them) to the
/// smallest model the search finds whose outputs on the calibration sequences keep `budget`.
///
/// `calibration` holds `n` sequences of `steps` steps of the first stage's inputs, back to
/// back (`[n, steps, inputs]`); each runs from the zero state. Every matrix is a layer of the
/// search, named as [`DenseStage::matrices`] names it (a recurrent layer's `W_ih` and `W_hh`
/// each by its source tensor), and gets its density and bits chosen unless `options.plan`
/// fixes them. The budget is measured as follows:
///
/// * [`Budget::MinCosine`]: the mean cosine similarity of the output vectors of **every step**
///   of every sequence with the uncompressed model's;
/// * [`Budget::MaxAccuracyDrop`]: one label per sequence, judged on the top-1 class of the
///   sequence's **last step**'s output.
///
/// A gate matrix not given a PE count is stored at the divisor of `H` (up to 256) at which it
/// stores smallest, as [`crate::recurrent::compress_stages`] stores it; one given a count that
/// does not divide `H` is an error. The model carries no fixed16 formats: like every sequence
/// model, its engines choose them from the weights
/// ([`SequenceEngine::new`](crate::recurrent::SequenceEngine::new)).
///
/// Errors as for [`search`](crate::compress::search()), and [`Error::Shape`] when the stages do not chain
/// or the calibration sequences are not `steps` steps of the model's inputs.
pub fn search_sequence(
    stages: &[DenseStage],
    activations: &[Activation],
    calibration: &[f32],
    steps: usize,
    budget: &Budget,
    options: &SearchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<SearchResult<SequenceModel>> {
    if stages.is_empty() {
        return Err(Error::InvalidArgument("a model of no stages".into()));
    }
    for s in stages {
        match s {
            DenseStage::Fc(d) => d.validate()?,
            DenseStage::Recurrent(r) => {
                DenseRecurrent::new(r.name.clone(), r.kind, r.ih.clone(), r.hh.clone())?;
                for m in [&r.ih, &r.hh] {
                    if let Some(p) = options.plan.given_for(&m.name).pes {
                        if !recurrent_pes_ok(r.hidden(), p) {
                            return Err(Error::InvalidArgument(format!(
                                "`{}`: {p} PEs do not divide its layer's {} hidden units",
                                m.name,
                                r.hidden()
                            )));
                        }
                    }
                }
            }
        }
    }
    if !chains(stages) {
        return Err(Error::Shape(
            "each stage must take as many inputs per step as the one before gives".into(),
        ));
    }
    let fc = stages
        .iter()
        .filter(|s| matches!(s, DenseStage::Fc(_)))
        .count();
    if activations.len() != fc {
        return Err(Error::InvalidArgument(format!(
            "{} activations for {fc} fully-connected layers",
            activations.len()
        )));
    }
    let width = stages[0].input_size();
    let per_sequence = steps.checked_mul(width).filter(|&w| w > 0);
    match per_sequence {
        Some(w) if !calibration.is_empty() && calibration.len() % w == 0 => {}
        _ => {
            return Err(Error::Shape(format!(
                "{} calibration values are not whole sequences of {steps} steps of {width} \
                 inputs",
                calibration.len()
            )))
        }
    }
    crate::error::check_finite("calibration inputs", calibration)?;
    let net = SequenceNetwork::new(stages, activations, calibration, steps);
    search_network(&net, budget, options, progress)?.into_result(|layers| {
        let mut layers = layers.into_iter();
        let mut next = || layers.next().expect("one compressed matrix per matrix");
        let compressed = stages
            .iter()
            .map(|s| match s {
                DenseStage::Fc(_) => Ok(Stage::Fc(next())),
                DenseStage::Recurrent(r) => {
                    let (ih, hh) = (next(), next());
                    Ok(Stage::Recurrent(Box::new(RecurrentLayer::new(
                        r.name.clone(),
                        r.kind,
                        ih,
                        hh,
                    )?)))
                }
            })
            .collect::<Result<Vec<Stage>>>()?;
        SequenceModel::new(compressed)
    })
}
