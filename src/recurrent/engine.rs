//! The CPU engine for sequence models: whole sequences, batches of sequences, and step by
//! step streaming, with the recurrent state carried between calls.

use super::cell;
use crate::error::{check_finite, Error, Result};
use crate::fixed16;
use crate::format::{CellKind, EieLayer, Model, SequenceModel, Stage};
use crate::reference::{CpuEngine, Precision, PARALLEL_MIN_ENTRIES};
use rayon::prelude::*;

/// The recurrent state of one sequence: for each recurrent stage in order, its `h` (`H`
/// values) and, for an LSTM, its `c` (`H` values). A new sequence starts from zeros.
///
/// Made by [`SequenceState::zeros`] (or [`SequenceEngine::zero_state`]); [`SequenceEngine::run`]
/// advances it, and a [`SequenceStream`] carries one.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceState {
    values: Vec<f32>,
}

impl SequenceState {
    /// The zero state of `model` (every `h` and `c` zero).
    ///
    /// See [`SequenceEngine::stream_from`] to resume from a state.
    pub fn zeros(model: &SequenceModel) -> Self {
        SequenceState {
            values: vec![0.0; model.state_size()],
        }
    }

    /// A state from its values ([`SequenceModel::state_size`] of them, in the order above):
    /// [`Error::Shape`] for a wrong length, [`Error::NonFinite`] for NaN or infinity.
    pub fn from_values(model: &SequenceModel, values: Vec<f32>) -> Result<Self> {
        if values.len() != model.state_size() {
            return Err(Error::Shape(format!(
                "a state of {} values; the model's recurrent state has {} ({})",
                values.len(),
                model.state_size(),
                model
                    .recurrent_layers()
                    .map(|r| if r.kind().has_cell_state() {
                        format!("{}: h and c of {}", r.name(), r.hidden())
                    } else {
                        format!("{}: h of {}", r.name(), r.hidden())
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        check_finite("state", &values)?;
        Ok(SequenceState { values })
    }

    /// The values, in the order above.
    ///
    /// See [`SequenceState::from_values`] for the inverse.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Consumes the state, returning its values.
    ///
    /// See [`SequenceState::from_values`] for the inverse.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }
}

/// A stage of a [`SequenceEngine`] as the simulator sees it (see
/// [`SequenceEngine::stage_parts`]).
pub(crate) enum StageParts<'a> {
    Fc(&'a Model),
    Recurrent {
        kind: CellKind,
        hidden: usize,
        ih: &'a Model,
        hh: &'a Model,
        gate_frac: u32,
    },
}

/// What the engine keeps per stage.
#[derive(Clone, Debug)]
enum StageEngine {
    Fc(CpuEngine),
    Recurrent {
        kind: CellKind,
        hidden: usize,
        ih: CpuEngine,
        hh: CpuEngine,
        /// fixed16: fraction bits of both gate matrices' outputs.
        gate_frac: u32,
    },
}

/// The largest `|W x + b|` over the rows of `layer` for `|x| ≤ bound` (interval arithmetic).
fn output_bound(layer: &EieLayer, bound: f64) -> Result<f64> {
    let w = layer.try_dense_weights()?;
    let cols = layer.cols();
    Ok((0..layer.rows())
        .map(|i| {
            let s: f64 = w[i * cols..(i + 1) * cols]
                .iter()
                .map(|v| v.abs() as f64)
                .sum();
            s * bound + layer.bias().map_or(0.0, |b| b[i].abs() as f64)
        })
        .fold(0.0, f64::max))
}

/// `input` holds `batch` sequences of `steps` steps of `model`'s input, both at least 1, all
/// finite, with a state of the model's size for each: [`Error::Shape`] or
/// [`Error::NonFinite`] otherwise.
pub(crate) fn check_input(
    model: &SequenceModel,
    input: &[f32],
    batch: usize,
    steps: usize,
    states: &[SequenceState],
) -> Result<()> {
    if states.len() != batch {
        return Err(Error::Shape(format!(
            "{} states for a batch of {batch} sequences",
            states.len()
        )));
    }
    if let Some(s) = states.iter().find(|s| s.values.len() != model.state_size()) {
        return Err(Error::Shape(format!(
            "a state of {} values for a model whose state has {}",
            s.values.len(),
            model.state_size()
        )));
    }
    let n = model.input_size();
    let want = batch
        .checked_mul(steps)
        .and_then(|v| v.checked_mul(n))
        .ok_or_else(|| Error::Shape(format!("{batch} × {steps} steps overflow")))?;
    if batch == 0 || steps == 0 || input.len() != want {
        return Err(Error::Shape(format!(
            "input has {} values; {batch} sequences of {steps} steps of {n} take {want} \
         (and both must be at least 1)",
            input.len()
        )));
    }
    check_finite("input", input)
}

/// A one-matrix engine whose fixed16 formats are `input_frac` in and `output_frac` out,
/// checking that the accumulator (`input_frac + 4` fraction bits in an `i32`) holds `bound`.
fn fixed16_single(
    layer: &EieLayer,
    input_frac: u32,
    output_frac: u32,
    bound: f64,
) -> Result<CpuEngine> {
    let acc = bound * (1u64 << (input_frac + fixed16::GUARD_BITS)) as f64;
    if acc > i32::MAX as f64 {
        return Err(Error::InvalidArgument(format!(
            "fixed16: `{}` can reach {bound:.3e}, beyond its i32 accumulator at input format {}",
            layer.name(),
            fixed16::format_name(input_frac)
        )));
    }
    let mut m = Model::new(vec![layer.clone()])?;
    m.set_fixed16_fracs(input_frac, &[output_frac])?;
    Ok(CpuEngine::new(m)?.with_precision(Precision::Fixed16))
}

/// Runs a [`SequenceModel`] on the CPU in f32, f16 (f16 storage of every activation, `h`
/// included, and of the codebooks, with f32 arithmetic and an f32 cell state `c`, as
/// [`Precision::F16`] is for fully-connected layers) or EIE's fixed16 (formats chosen from the
/// weights, see [`Self::new`]; the gate matrices through the fixed16 EIE engine, the cell
/// update in integers, [`super::cell::update_fixed16`]).
///
/// Each matrix runs on the EIE CPU engine ([`CpuEngine`]). Stages run one after the other over
/// all the steps of a call: a fully-connected stage and a recurrent stage's input part
/// `W_ih x_t + b_ih` take the call's steps as one batch (decoding each entry once for a tile of
/// steps, which costs less than one product per step), then the serial chain runs
/// `W_hh h_{t−1} + b_hh` and the cell update step by step. Every input's result is the same
/// alone or in any batch of sequences, and splitting a sequence into several calls, the state
/// carried, gives the same outputs as one call.
///
/// Cloning is cheap; an engine is `Send + Sync`.
#[derive(Clone, Debug)]
pub struct SequenceEngine {
    model: std::sync::Arc<SequenceModel>,
    stages: std::sync::Arc<Vec<StageEngine>>,
    precision: Precision,
}

/// The CPU engine of one matrix in `precision` (f32 or f16; fixed16 is [`fixed16_single`]).
fn single(layer: &crate::format::EieLayer, precision: Precision) -> Result<CpuEngine> {
    Ok(CpuEngine::new(Model::new(vec![layer.clone()])?)?.with_precision(precision))
}

fn round_f16(v: &mut [f32]) {
    v.iter_mut()
        .for_each(|x| *x = half::f16::from_f32(*x).to_f32());
}

impl SequenceEngine {
    /// An engine for `model` at `precision`.
    ///
    /// In fixed16 the formats are chosen from the weights, for inputs within ±1, by interval
    /// arithmetic: the input is Q1.14; a fully-connected stage's output takes the most
    /// fraction bits that hold `max |W x + b|` for its input's bound; a recurrent stage's two
    /// gate matrices output in one format that holds both parts' bounds (`|h| ≤ 1` for
    /// `W_hh`), and its output `h` is Q1.14 ([`super::cell::H_FRAC`]). The cell update is
    /// [`super::cell::update_fixed16`]. [`Error::InvalidArgument`] when an accumulator cannot
    /// hold its bound.
    pub fn new(model: SequenceModel, precision: Precision) -> Result<Self> {
        let fixed = precision == Precision::Fixed16;
        let mut frac = fixed16::frac_for(fixed16::DEFAULT_INPUT_BOUND);
        let mut bound = fixed16::DEFAULT_INPUT_BOUND as f64;
        let mut stages = Vec::with_capacity(model.stages().len());
        for s in model.stages() {
            stages.push(match s {
                Stage::Fc(l) if fixed => {
                    let b = output_bound(l, bound)?;
                    let out = fixed16::frac_for(b as f32);
                    let e = fixed16_single(l, frac, out, b)?;
                    (frac, bound) = (out, b);
                    StageEngine::Fc(e)
                }
                Stage::Fc(l) => StageEngine::Fc(single(l, precision)?),
                Stage::Recurrent(r) if fixed => {
                    let (bx, bh) = (output_bound(r.ih(), bound)?, output_bound(r.hh(), 1.0)?);
                    let gate_frac = fixed16::frac_for(bx.max(bh) as f32);
                    let e = StageEngine::Recurrent {
                        kind: r.kind(),
                        hidden: r.hidden(),
                        ih: fixed16_single(r.ih(), frac, gate_frac, bx)?,
                        hh: fixed16_single(r.hh(), cell::H_FRAC, gate_frac, bh)?,
                        gate_frac,
                    };
                    (frac, bound) = (cell::H_FRAC, 1.0);
                    e
                }
                Stage::Recurrent(r) => StageEngine::Recurrent {
                    kind: r.kind(),
                    hidden: r.hidden(),
                    ih: single(r.ih(), precision)?,
                    hh: single(r.hh(), precision)?,
                    gate_frac: 0,
                },
            });
        }
        Ok(SequenceEngine {
            model: std::sync::Arc::new(model),
            stages: std::sync::Arc::new(stages),
            precision,
        })
    }

    /// What each stage runs, for the simulator: the one-matrix [`Model`]s of the stage's
    /// engines (with their fixed16 formats) and, for a recurrent stage, its cell and gate
    /// format.
    pub(crate) fn stage_parts(&self) -> Vec<StageParts<'_>> {
        self.stages
            .iter()
            .map(|s| match s {
                StageEngine::Fc(e) => StageParts::Fc(e.model()),
                StageEngine::Recurrent {
                    kind,
                    hidden,
                    ih,
                    hh,
                    gate_frac,
                } => StageParts::Recurrent {
                    kind: *kind,
                    hidden: *hidden,
                    ih: ih.model(),
                    hh: hh.model(),
                    gate_frac: *gate_frac,
                },
            })
            .collect()
    }

    /// The model, as given.
    ///
    /// See [`SequenceEngine::new`].
    pub fn model(&self) -> &SequenceModel {
        &self.model
    }

    /// Which kernel variant runs the matrix products: `cpu-eie/<precision>`.
    ///
    /// See [`crate::kernel_id`].
    pub fn id(&self) -> crate::kernel_id::KernelId {
        crate::kernel_id::KernelId::cpu(crate::kernel_id::KernelKind::Eie, self.precision)
    }

    /// The engine's arithmetic.
    ///
    /// See [`Precision`].
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The zero state (see [`SequenceState::zeros`]).
    pub fn zero_state(&self) -> SequenceState {
        SequenceState::zeros(&self.model)
    }

    /// Runs one sequence of `steps` steps (`input` holds `steps × input_size` values, step
    /// after step) from `state`, which it leaves at the state after the last step. Returns
    /// the model's output at every step, `steps × output_size` values.
    ///
    /// [`SequenceEngine::stream`] runs the same step by step; see the [module example](super).
    pub fn run(&self, input: &[f32], steps: usize, state: &mut SequenceState) -> Result<Vec<f32>> {
        check_input(&self.model, input, 1, steps, std::slice::from_ref(state))?;
        self.sequence(input, steps, &mut state.values)
    }

    /// Runs `batch` sequences of `steps` steps each (`input`: `batch × steps × input_size`
    /// values), sequence `b` from `states[b]`, in parallel. Returns `batch × steps ×
    /// output_size` values; each sequence's result is the same as [`Self::run`]'s.
    pub fn run_batch(
        &self,
        input: &[f32],
        batch: usize,
        steps: usize,
        states: &mut [SequenceState],
    ) -> Result<Vec<f32>> {
        check_input(&self.model, input, batch, steps, states)?;
        let per = steps * self.model.input_size();
        let outs: Vec<Vec<f32>> = input
            .par_chunks(per)
            .zip(states.par_iter_mut())
            .map(|(x, s)| self.run(x, steps, s))
            .collect::<Result<_>>()?;
        Ok(outs.concat())
    }

    /// A stream from the zero state, to run a sequence step by step as its inputs arrive.
    ///
    /// See [`SequenceStream::push`] and the [module example](super).
    pub fn stream(&self) -> SequenceStream<'_> {
        self.stream_from(self.zero_state())
    }

    /// A stream from `state`.
    ///
    /// The state comes from [`SequenceStream::state`], [`SequenceEngine::run`] or
    /// [`SequenceState::from_values`].
    pub fn stream_from(&self, state: SequenceState) -> SequenceStream<'_> {
        SequenceStream {
            engine: self,
            state,
        }
    }

    /// One sequence, state updated in place.
    fn sequence(&self, input: &[f32], steps: usize, state: &mut [f32]) -> Result<Vec<f32>> {
        let f16 = self.precision == Precision::F16;
        let mut cur = input.to_vec();
        if f16 {
            round_f16(&mut cur);
        }
        let mut offset = 0;
        for stage in self.stages.iter() {
            match stage {
                StageEngine::Fc(e) => cur = e.run(&cur)?,
                StageEngine::Recurrent {
                    kind,
                    hidden,
                    ih,
                    hh,
                    gate_frac,
                } => {
                    let (g, h_len) = (kind.gates() * hidden, *hidden);
                    let has_c = kind.has_cell_state();
                    let size = if has_c { 2 * h_len } else { h_len };
                    let (h, c) = state[offset..offset + size].split_at_mut(h_len);
                    offset += size;
                    let mut out = Vec::with_capacity(steps * h_len);
                    if self.precision == Precision::Fixed16 {
                        let hf = h_float(&h_fixed16(h));
                        let parts = gate_products(ih, hh, &cur, &hf, steps)?;
                        fixed16_chain(*kind, *gate_frac, parts, hh, steps, g, h, c, &mut out)?;
                    } else {
                        let (gx, mut first_gh) = gate_products(ih, hh, &cur, h, steps)?;
                        for t in 0..steps {
                            let gh = match first_gh.take() {
                                Some(gh) => gh,
                                None => hh.run(h)?,
                            };
                            cell::update(*kind, &gx[t * g..(t + 1) * g], &gh, h, c);
                            if f16 {
                                round_f16(h);
                            }
                            check_finite("recurrent state", h)?;
                            out.extend_from_slice(h);
                        }
                    }
                    cur = out;
                }
            }
        }
        Ok(cur)
    }
}

/// `W_ih x` for every step of `x` and, for a single step whose two products are worth a
/// fork-join (a stream's push), that step's `W_hh h` computed beside it (`h` as the hidden
/// product reads it).
fn gate_products(
    ih: &CpuEngine,
    hh: &CpuEngine,
    x: &[f32],
    h: &[f32],
    steps: usize,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let entries = |e: &CpuEngine| e.model().layers()[0].entry_count();
    if steps == 1 && entries(ih) + entries(hh) >= PARALLEL_MIN_ENTRIES {
        let (gx, gh) = rayon::join(|| ih.run(x), || hh.run(h));
        Ok((gx?, Some(gh?)))
    } else {
        Ok((ih.run(x)?, None))
    }
}

/// The fixed16 hidden state: Q1.14, each value rounded and saturated.
fn h_fixed16(h: &[f32]) -> Vec<i16> {
    h.iter()
        .map(|&x| fixed16::quantize_activation(x, cell::H_FRAC))
        .collect()
}

/// A fixed16 hidden state as the floats the fixed16 engine takes (exactly).
fn h_float(hq: &[i16]) -> Vec<f32> {
    let h_scale = (1u32 << cell::H_FRAC) as f32;
    hq.iter().map(|&q| q as f32 / h_scale).collect()
}

/// The serial chain of a recurrent stage in fixed16, from the input parts of every step (and
/// the first step's hidden part where [`gate_products`] computed it): the state converted to
/// its formats (`h` Q1.14, `c` with 15 fraction bits, each rounded and saturated), `W_hh h`
/// through the fixed16 engine, the cell update in integers, and the state converted back
/// (exactly).
#[allow(clippy::too_many_arguments)]
fn fixed16_chain(
    kind: CellKind,
    gate_frac: u32,
    (gx, mut first_gh): (Vec<f32>, Option<Vec<f32>>),
    hh: &CpuEngine,
    steps: usize,
    g: usize,
    h: &mut [f32],
    c: &mut [f32],
    out: &mut Vec<f32>,
) -> Result<()> {
    let to_int = |v: &[f32], frac: u32| -> Vec<i32> {
        v.iter()
            .map(|&x| (x as f64 * (1u64 << frac) as f64).round() as i32)
            .collect()
    };
    let gx = to_int(&gx, gate_frac);
    let mut hq = h_fixed16(h);
    let mut cq: Vec<i32> = c.iter().map(|&x| cell::quantize_c(x)).collect();
    let mut hf = h_float(&hq);
    for t in 0..steps {
        let gh = match first_gh.take() {
            Some(gh) => gh,
            None => hh.run(&hf)?,
        };
        let gh = to_int(&gh, gate_frac);
        cell::update_fixed16(
            kind,
            &gx[t * g..(t + 1) * g],
            &gh,
            gate_frac,
            &mut hq,
            &mut cq,
        );
        hf = h_float(&hq);
        out.extend_from_slice(&hf);
    }
    h.copy_from_slice(&hf);
    for (x, &q) in c.iter_mut().zip(&cq) {
        *x = cell::dequantize_c(q);
    }
    Ok(())
}

/// A sequence run step by step ([`SequenceEngine::stream`]): each [`Self::push`] runs one
/// step and returns the model's output for it; the state carries over.
#[derive(Debug)]
pub struct SequenceStream<'a> {
    engine: &'a SequenceEngine,
    state: SequenceState,
}

impl SequenceStream<'_> {
    /// Runs one step (`x` holds `input_size` values); returns `output_size` values.
    ///
    /// See the [module example](super).
    pub fn push(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.engine.run(x, 1, &mut self.state)
    }

    /// The state after the steps pushed so far.
    ///
    /// [`SequenceEngine::stream_from`] resumes from it.
    pub fn state(&self) -> &SequenceState {
        &self.state
    }

    /// Ends the stream, returning its state (to resume later with
    /// [`SequenceEngine::stream_from`]).
    pub fn into_state(self) -> SequenceState {
        self.state
    }
}
