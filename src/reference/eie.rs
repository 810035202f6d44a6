use crate::error::{try_filled, try_with_capacity, Error, Result};
use crate::fixed16::{self, FixedCodebook};
use crate::format::{entry_code, entry_run, Activation, EieLayer, Model, PeSlice};
use rayon::prelude::*;

/// Arithmetic of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit float codebook, activations and accumulators.
    #[default]
    F32,
    /// EIE's 16-bit fixed point as defined in [`crate::fixed16`]; bit-exact across backends.
    Fixed16,
    /// Half precision storage: codebook values and activations (inputs, every layer's outputs)
    /// rounded to f16, products and sums in f32, bias in f32. The same on the CPU engine and
    /// the GPU kernels; checked against the dense f32 oracle with the f16 tolerance.
    F16,
}

impl Precision {
    /// Every precision, in the order reports list them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Fixed16, Precision::F16];

    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Fixed16 => "fixed16",
            Precision::F16 => "f16",
        }
    }
}

thread_local! {
    /// Set while the CPU engine runs one input of a batch: the batch's inputs already run in
    /// parallel, so the PEs of each layer run one after the other on the input's thread (a
    /// nested fork-join per layer costs more than a small layer's work).
    static BATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls `f(p, local_outputs)` for every PE of `layer` in parallel and interleaves the per-PE
/// outputs back into global row order (row `p + k * pes` is PE p's local row k).
fn per_pe<T, F>(layer: &EieLayer, out: &mut [T], f: F) -> Result<()>
where
    T: Copy + Send + Sync + Default,
    F: Fn(usize, &mut [T]) -> Result<()> + Sync,
{
    let pes = layer.pes();
    let run = |p: usize| -> Result<Vec<T>> {
        let mut local = try_filled(layer.rows_of_pe(p), T::default(), "PE accumulators")?;
        f(p, &mut local)?;
        Ok(local)
    };
    let locals: Vec<Vec<T>> = if BATCHED.with(|b| b.get()) {
        (0..pes).map(run).collect::<Result<_>>()?
    } else {
        (0..pes).into_par_iter().map(run).collect::<Result<_>>()?
    };
    for (p, local) in locals.iter().enumerate() {
        for (k, &v) in local.iter().enumerate() {
            out[p + k * pes] = v;
        }
    }
    Ok(())
}

/// Checks that `x` and `out` have the layer's input and output lengths.
fn check_lengths(layer: &EieLayer, x: usize, out: usize) -> Result<()> {
    if x != layer.cols() || out != layer.rows() {
        return Err(Error::Shape(format!(
            "layer `{}` maps {} inputs to {} outputs; got {x} inputs and room for {out} outputs",
            layer.name(),
            layer.cols(),
            layer.rows()
        )));
    }
    Ok(())
}

/// The non-zero activations `(j, a_j)` of `x`, in increasing `j`: EIE's leading non-zero
/// detection.
fn nonzero<T: Copy + PartialEq + Default>(x: &[T]) -> Vec<(usize, T)> {
    x.iter()
        .enumerate()
        .filter(|(_, &a)| a != T::default())
        .map(|(j, &a)| (j, a))
        .collect()
}

/// One layer in f32, in EIE's order: for each non-zero input activation `a_j` in increasing `j`,
/// every PE walks its slice of column `j` and accumulates `codebook[v] * a_j` into its local
/// rows; bias is added and the activation function applied on write-back.
///
/// Each output row sums its terms in increasing `j` whatever the PE count, so the result does
/// not depend on how the layer is interleaved.
///
/// `x` must hold `layer.cols()` values and `out` `layer.rows()` ([`Error::Shape`] otherwise).
pub fn layer_f32(layer: &EieLayer, x: &[f32], out: &mut [f32]) -> Result<()> {
    layer_f32_with(layer, layer.codebook(), x, out)
}

/// [`layer_f32`] with the codebook values replaced by `values` (one per codebook entry).
fn layer_f32_with(layer: &EieLayer, values: &[f32], x: &[f32], out: &mut [f32]) -> Result<()> {
    check_lengths(layer, x.len(), out.len())?;
    let nonzero = nonzero(x);
    // A 256-entry table covers every possible 8-bit code without a bounds check; padding
    // entries (code 0) add codebook[0] = 0.0 * a_j, which leaves the sum unchanged.
    let mut codebook = [0f32; 256];
    codebook[..values.len()].copy_from_slice(values);
    per_pe(layer, out, |p, acc| {
        let PeSlice { col_ptr, entries } = layer.pe(p);
        for &(j, a) in &nonzero {
            let mut row = usize::MAX;
            for &e in &entries[col_ptr[j] as usize..col_ptr[j + 1] as usize] {
                row = row.wrapping_add(entry_run(e) as usize + 1);
                acc[row] += codebook[entry_code(e) as usize] * a;
            }
        }
        let pes = layer.pes();
        for (k, v) in acc.iter_mut().enumerate() {
            let b = layer.bias().map_or(0.0, |b| b[p + k * pes]);
            *v = layer.activation().apply(*v + b);
        }
        Ok(())
    })
}

/// Inputs the CPU engine walks together at batch > 1 (f32 and f16): each entry is decoded once
/// and multiplied into this many accumulators.
pub const CPU_BATCH_TILE: usize = 8;

/// [`layer_f32_with`] for up to [`CPU_BATCH_TILE`] inputs at once (`xs`: `t` inputs back to
/// back, `out`: `t` outputs back to back). The columns walked are those non-zero in any of the
/// inputs, in increasing order, so every row sums its terms in the same order as one input
/// alone (an input's zero activation adds a zero product, which leaves its sum unchanged).
fn layer_f32_tile(layer: &EieLayer, values: &[f32], xs: &[f32], out: &mut [f32]) -> Result<()> {
    const T: usize = CPU_BATCH_TILE;
    let (rows, cols, pes) = (layer.rows(), layer.cols(), layer.pes());
    let t = xs.len() / cols.max(1);
    if t == 0 || t > T || xs.len() != t * cols || out.len() != t * rows {
        return Err(Error::Shape(format!(
            "a tile of {} inputs and {} outputs for layer `{}` ({rows}x{cols}, at most {T} inputs)",
            xs.len(),
            out.len(),
            layer.name()
        )));
    }
    let mut codebook = [0f32; 256];
    codebook[..values.len()].copy_from_slice(values);
    let mut listed: Vec<(usize, [f32; T])> = try_with_capacity(cols, "listed columns")?;
    for j in 0..cols {
        let mut a = [0f32; T];
        for (b, v) in a.iter_mut().enumerate().take(t) {
            *v = xs[b * cols + j];
        }
        if a.iter().any(|&v| v != 0.0) {
            listed.push((j, a));
        }
    }
    let locals: Vec<Vec<[f32; T]>> = (0..pes)
        .map(|p| -> Result<Vec<[f32; T]>> {
            let mut acc = try_filled(layer.rows_of_pe(p), [0f32; T], "PE accumulators")?;
            let PeSlice { col_ptr, entries } = layer.pe(p);
            for (j, a) in &listed {
                let mut row = usize::MAX;
                for &e in &entries[col_ptr[*j] as usize..col_ptr[*j + 1] as usize] {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    let w = codebook[entry_code(e) as usize];
                    let r = &mut acc[row];
                    for b in 0..T {
                        r[b] += w * a[b];
                    }
                }
            }
            Ok(acc)
        })
        .collect::<Result<_>>()?;
    for (p, acc) in locals.iter().enumerate() {
        for (k, r) in acc.iter().enumerate() {
            let row = p + k * pes;
            let bias = layer.bias().map_or(0.0, |b| b[row]);
            for (b, &v) in r.iter().enumerate().take(t) {
                out[b * rows + row] = layer.activation().apply(v + bias);
            }
        }
    }
    Ok(())
}

/// One layer in 16-bit fixed point (see [`crate::fixed16`]): inputs in the layer's input
/// format, outputs in its output format ([`EieLayer::fixed16_format`]). Returns the layer's
/// saturation counts.
///
/// `x` must hold `layer.cols()` values and `out` `layer.rows()` ([`Error::Shape`] otherwise).
pub fn layer_fixed16(
    layer: &EieLayer,
    x: &[i16],
    out: &mut [i16],
) -> Result<fixed16::LayerSaturations> {
    check_lengths(layer, x.len(), out.len())?;
    let nonzero = nonzero(x);
    let codebook = FixedCodebook::new(layer.codebook());
    let relu = layer.activation() == Activation::Relu;
    let format = layer.fixed16_format();
    let (acc_frac, shift) = (format.acc_frac(), format.write_back_shift());
    let counts = std::sync::Mutex::new(fixed16::LayerSaturations::default());
    per_pe(layer, out, |p, y| {
        let pe = layer.pe(p);
        let pes = layer.pes();
        // Sums of the i32 product terms in 64 bits: the i32 accumulator every backend keeps
        // is their wrapped value, and the 64-bit one tells whether it overflowed.
        let mut acc: Vec<i64> = try_filled(y.len(), 0, "PE accumulators")?;
        // Products of a_j with every codebook entry, computed once per slice when the slice
        // is at least as long as the codebook (the same values `term` gives per entry; the
        // table's entry 0 stays 0 for padding).
        let n = codebook.values.len();
        let mut terms = [0i32; 256];
        for &(j, a) in &nonzero {
            let column = pe.column(j);
            let mut row = usize::MAX;
            if column.len() >= n {
                for (code, t) in terms.iter_mut().enumerate().take(n).skip(1) {
                    *t = codebook.term(a, code as u8);
                }
                for &e in column {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    acc[row] += terms[entry_code(e) as usize] as i64;
                }
            } else {
                for &e in column {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    let code = entry_code(e);
                    if code != 0 {
                        acc[row] += codebook.term(a, code) as i64;
                    }
                }
            }
        }
        let mut local = fixed16::LayerSaturations::default();
        for (k, (v, &s)) in y.iter_mut().zip(&acc).enumerate() {
            let b = layer.bias().map_or(0.0, |b| b[p + k * pes]);
            let (sum, overflow) = fixed16::finish_row(s, b, acc_frac);
            let (q, saturated) = fixed16::write_back(sum, shift, relu);
            *v = q;
            local.accumulator += overflow as u64;
            local.write_back += saturated as u64;
        }
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        c.accumulator += local.accumulator;
        c.write_back += local.write_back;
        Ok(())
    })?;
    Ok(counts.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// The EIE CPU engine: runs a whole model on a batch of inputs, multi-threaded over inputs and
/// PEs, straight from the compressed format.
///
/// Like the GPU scheduler, the engine picks its own PE count per layer for the machine (see
/// [`cpu_pes`]) and re-interleaves layers whose stored PE count differs. Every output row still
/// sums its terms in increasing column order, so results equal the hardware-order reference
/// ([`layer_f32`], [`layer_fixed16`]) at the file's PE count exactly.
///
/// Cloning is cheap (the model is shared), and an engine is `Send + Sync`: one engine serves
/// many threads.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    model: std::sync::Arc<Model>,
}

/// The PE count the CPU engine uses for `layer`: one PE per thread.
///
/// A PE pays a loop exit the branch predictor misses (about 8 ns on the development machine)
/// for every non-empty slice of a non-zero column, against about 1.2 ns per entry walked; fewer
/// PEs mean longer zero runs and so a few more padding entries, but far fewer slices. Measured
/// single-threaded on the paper's layers, 2 PEs beat 4 to 64 PEs on NT-We, Alex-7, VGG-6 and
/// NT-Wd, so the engine uses as many PEs as it has threads (rows permitting).
pub fn cpu_pes(layer: &EieLayer, threads: usize) -> usize {
    threads.clamp(1, layer.rows().max(1))
}

impl CpuEngine {
    /// Wraps a model, re-interleaving each layer to [`cpu_pes`] PEs for this machine's threads
    /// (a layer already at that count is kept as it is). Fails only where re-interleaving does
    /// (memory, or the format's 2^32-entry limit).
    pub fn new(model: Model) -> Result<Self> {
        let threads = rayon::current_num_threads();
        let layers: Vec<EieLayer> = model
            .layers()
            .iter()
            .map(|l| l.with_pes(cpu_pes(l, threads)))
            .collect::<Result<_>>()?;
        Ok(CpuEngine {
            model: std::sync::Arc::new(Model::new(layers)?),
        })
    }

    /// Wraps a model as stored, without re-interleaving.
    pub fn as_stored(model: Model) -> Self {
        CpuEngine {
            model: std::sync::Arc::new(model),
        }
    }

    /// The model this engine runs (at the engine's PE counts).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs a batch: `input` holds `batch * input_size` values, the result `batch * output_size`.
    ///
    /// Buffers are reserved fallibly: a batch whose outputs do not fit in memory is
    /// [`Error::Allocation`], not an abort.
    pub fn run(&self, input: &[f32], precision: Precision) -> Result<Vec<f32>> {
        let batch = self.model.check_input(input)?;
        let n_in = self.model.input_size();
        let n_out = self.model.output_size();
        let len = batch.checked_mul(n_out).ok_or(Error::Allocation {
            what: format!("{batch} outputs of {n_out} values"),
            bytes: u64::MAX,
        })?;
        let mut out = try_filled(len, 0f32, "outputs")?;
        let forward = |x: &[f32], y: &mut [f32]| match precision {
            Precision::F32 => self.forward_f32(x, y),
            Precision::F16 => self.forward_f16(x, y),
            Precision::Fixed16 => self.forward_fixed16(x, y).map(drop),
        };
        if batch == 1 {
            // One input: the PEs of each layer run in parallel.
            forward(input, &mut out)?;
        } else if precision != Precision::Fixed16 {
            // Tiles of inputs in parallel, each decoding every entry once for all its inputs.
            out.par_chunks_mut(n_out * CPU_BATCH_TILE)
                .zip(input.par_chunks(n_in * CPU_BATCH_TILE))
                .try_for_each(|(y, x)| self.forward_tile(x, y, precision == Precision::F16))?;
        } else {
            // Several: the inputs run in parallel, each one's PEs on its own thread (the
            // forward pass makes no rayon calls then, so no other task interleaves on it).
            out.par_chunks_mut(n_out)
                .zip(input.par_chunks(n_in))
                .try_for_each(|(y, x)| {
                    BATCHED.with(|b| b.set(true));
                    let r = forward(x, y);
                    BATCHED.with(|b| b.set(false));
                    r
                })?;
        }
        Ok(out)
    }

    /// Up to [`CPU_BATCH_TILE`] inputs through every layer together (f32, or f16 storage).
    fn forward_tile(&self, x: &[f32], y: &mut [f32], f16: bool) -> Result<()> {
        let round = |v: f32| {
            if f16 {
                half::f16::from_f32(v).to_f32()
            } else {
                v
            }
        };
        let mut cur: Vec<f32> = x.iter().map(|&v| round(v)).collect();
        let t = x.len() / self.model.input_size();
        for l in self.model.layers() {
            let codebook: Vec<f32> = l.codebook().iter().map(|&v| round(v)).collect();
            let mut next = try_filled(t * l.rows(), 0f32, "layer outputs")?;
            layer_f32_tile(l, &codebook, &cur, &mut next)?;
            if f16 {
                next.iter_mut().for_each(|v| *v = round(*v));
            }
            cur = next;
        }
        y.copy_from_slice(&cur);
        Ok(())
    }

    fn forward_f32(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        let mut cur = x.to_vec();
        for l in self.model.layers() {
            let mut next = try_filled(l.rows(), 0f32, "layer outputs")?;
            layer_f32(l, &cur, &mut next)?;
            cur = next;
        }
        y.copy_from_slice(&cur);
        Ok(())
    }

    /// f16 storage, as the GPU's f16 kernel: the input, each layer's codebook and each layer's
    /// output rounded to f16 (round to nearest even); products and sums in f32, bias in f32.
    fn forward_f16(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        let half = |v: f32| half::f16::from_f32(v).to_f32();
        let mut cur: Vec<f32> = x.iter().map(|&v| half(v)).collect();
        for l in self.model.layers() {
            let codebook: Vec<f32> = l.codebook().iter().map(|&v| half(v)).collect();
            let mut next = try_filled(l.rows(), 0f32, "layer outputs")?;
            layer_f32_with(l, &codebook, &cur, &mut next)?;
            next.iter_mut().for_each(|v| *v = half(*v));
            cur = next;
        }
        y.copy_from_slice(&cur);
        Ok(())
    }

    /// Runs a batch in fixed16 (as [`Self::run`] with [`Precision::Fixed16`]) and counts the
    /// saturations over the whole batch: inputs clipped to the model's input format, outputs
    /// clipped on write-back and accumulator overflows, per layer.
    pub fn run_fixed16(&self, input: &[f32]) -> Result<(Vec<f32>, fixed16::Saturations)> {
        let batch = self.model.check_input(input)?;
        let n_in = self.model.input_size();
        let n_out = self.model.output_size();
        let len = batch.checked_mul(n_out).ok_or(Error::Allocation {
            what: format!("{batch} outputs of {n_out} values"),
            bytes: u64::MAX,
        })?;
        let mut out = try_filled(len, 0f32, "outputs")?;
        let layers = self.model.layers().len();
        let counts = if batch == 1 {
            self.forward_fixed16(input, &mut out)?
        } else {
            out.par_chunks_mut(n_out)
                .zip(input.par_chunks(n_in))
                .map(|(y, x)| {
                    BATCHED.with(|b| b.set(true));
                    let r = self.forward_fixed16(x, y);
                    BATCHED.with(|b| b.set(false));
                    r
                })
                .try_reduce(
                    || fixed16::Saturations::zero(layers),
                    |mut a, b| {
                        a.add(&b);
                        Ok(a)
                    },
                )?
        };
        Ok((out, counts))
    }

    fn forward_fixed16(&self, x: &[f32], y: &mut [f32]) -> Result<fixed16::Saturations> {
        let mut counts = fixed16::Saturations::zero(self.model.layers().len());
        let input_frac = self.model.input_frac();
        let mut cur: Vec<i16> = x
            .iter()
            .map(|&v| {
                let (q, saturated) = fixed16::quantize(v, input_frac);
                counts.input += saturated as u64;
                q
            })
            .collect();
        for (l, c) in self.model.layers().iter().zip(&mut counts.layers) {
            let mut next = try_filled(l.rows(), 0i16, "layer outputs")?;
            *c = layer_fixed16(l, &cur, &mut next)?;
            cur = next;
        }
        let output_frac = self.model.output_frac();
        for (o, &q) in y.iter_mut().zip(&cur) {
            *o = fixed16::dequantize_activation(q, output_frac);
        }
        Ok(counts)
    }
}
