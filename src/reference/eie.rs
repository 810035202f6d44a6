use crate::error::Result;
use crate::fixed16::{self, FixedCodebook};
use crate::format::{entry_code, entry_run, Activation, EieLayer, Model};
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
    /// Half precision (GPU kernels on devices with `SHADER_F16`): f16 weights, activations and
    /// products with f32 sums. The CPU engine has no f16 arithmetic and runs such a request
    /// in f32, the precision the f16 results are checked against.
    F16,
}

impl Precision {
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Fixed16 => "fixed16",
            Precision::F16 => "f16",
        }
    }
}

/// Calls `f(p, local_outputs)` for every PE of `layer` in parallel and interleaves the per-PE
/// outputs back into global row order (row `p + k * pes` is PE p's local row k).
fn per_pe<T, F>(layer: &EieLayer, out: &mut [T], f: F)
where
    T: Copy + Send + Sync + Default,
    F: Fn(usize, &mut [T]) + Sync,
{
    let pes = layer.pes();
    let locals: Vec<Vec<T>> = (0..pes)
        .into_par_iter()
        .map(|p| {
            let mut local = vec![T::default(); layer.rows_of_pe(p)];
            f(p, &mut local);
            local
        })
        .collect();
    for (p, local) in locals.iter().enumerate() {
        for (k, &v) in local.iter().enumerate() {
            out[p + k * pes] = v;
        }
    }
}

/// One layer in f32, in EIE's order: for each non-zero input activation `a_j` in increasing `j`,
/// every PE walks its slice of column `j` and accumulates `codebook[v] * a_j` into its local
/// rows; bias is added and the activation function applied on write-back.
pub fn layer_f32(layer: &EieLayer, x: &[f32], out: &mut [f32]) {
    let nonzero: Vec<(usize, f32)> = x
        .iter()
        .enumerate()
        .filter(|(_, &a)| a != 0.0)
        .map(|(j, &a)| (j, a))
        .collect();
    let codebook = layer.codebook();
    per_pe(layer, out, |p, acc| {
        let pe = layer.pe(p);
        for &(j, a) in &nonzero {
            let mut row = usize::MAX;
            for &e in pe.column(j) {
                row = row.wrapping_add(entry_run(e) as usize + 1);
                let code = entry_code(e);
                if code != 0 {
                    acc[row] += codebook[code as usize] * a;
                }
            }
        }
        let pes = layer.pes();
        for (k, v) in acc.iter_mut().enumerate() {
            let b = layer.bias().map_or(0.0, |b| b[p + k * pes]);
            *v = layer.activation().apply(*v + b);
        }
    });
}

/// One layer in 16-bit fixed point (see [`crate::fixed16`]); inputs and outputs are Q5.10.
pub fn layer_fixed16(layer: &EieLayer, x: &[i16], out: &mut [i16]) {
    let nonzero: Vec<(usize, i16)> = x
        .iter()
        .enumerate()
        .filter(|(_, &a)| a != 0)
        .map(|(j, &a)| (j, a))
        .collect();
    let codebook = FixedCodebook::new(layer.codebook());
    let relu = layer.activation() == Activation::Relu;
    per_pe(layer, out, |p, y| {
        let pe = layer.pe(p);
        let pes = layer.pes();
        let mut acc: Vec<i32> = (0..y.len())
            .map(|k| {
                layer
                    .bias()
                    .map_or(0, |b| fixed16::bias_to_acc(b[p + k * pes]))
            })
            .collect();
        for &(j, a) in &nonzero {
            let mut row = usize::MAX;
            for &e in pe.column(j) {
                row = row.wrapping_add(entry_run(e) as usize + 1);
                let code = entry_code(e);
                if code != 0 {
                    acc[row] = acc[row].wrapping_add(codebook.term(a, code));
                }
            }
        }
        for (v, &s) in y.iter_mut().zip(&acc) {
            *v = fixed16::write_back(s, relu);
        }
    });
}

/// The EIE CPU engine: runs a whole model on a batch of inputs, multi-threaded over inputs and
/// PEs, straight from the compressed format.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    model: Model,
}

impl CpuEngine {
    /// Wraps a model.
    pub fn new(model: Model) -> Self {
        CpuEngine { model }
    }

    /// The model this engine runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs a batch: `input` holds `batch * input_size` values, the result `batch * output_size`.
    pub fn run(&self, input: &[f32], precision: Precision) -> Result<Vec<f32>> {
        let batch = self.model.check_input(input)?;
        let n_in = self.model.input_size();
        let n_out = self.model.output_size();
        let mut out = vec![0f32; batch * n_out];
        out.par_chunks_mut(n_out)
            .zip(input.par_chunks(n_in))
            .for_each(|(y, x)| match precision {
                Precision::F32 | Precision::F16 => self.forward_f32(x, y),
                Precision::Fixed16 => self.forward_fixed16(x, y),
            });
        Ok(out)
    }

    fn forward_f32(&self, x: &[f32], y: &mut [f32]) {
        let mut cur = x.to_vec();
        for l in self.model.layers() {
            let mut next = vec![0f32; l.rows()];
            layer_f32(l, &cur, &mut next);
            cur = next;
        }
        y.copy_from_slice(&cur);
    }

    fn forward_fixed16(&self, x: &[f32], y: &mut [f32]) {
        let mut cur: Vec<i16> = x.iter().map(|&v| fixed16::quantize_activation(v)).collect();
        for l in self.model.layers() {
            let mut next = vec![0i16; l.rows()];
            layer_fixed16(l, &cur, &mut next);
            cur = next;
        }
        for (o, &q) in y.iter_mut().zip(&cur) {
            *o = fixed16::dequantize_activation(q);
        }
    }
}
