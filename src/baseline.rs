//! CPU baselines that EIE is measured against: a dense f32 GEMV/GEMM through a BLAS-quality
//! kernel (the `gemm` crate: packed, SIMD micro-kernels, multi-threaded) and a plain CSR SpMV
//! (f32 values, u32 column indices, no codebook, no activation skipping), both on the
//! dequantised weights of a [`Model`] and both usable as a [`Backend`].

use crate::backend::Backend;
use crate::error::Result;
use crate::format::{check_batch, Activation, EieLayer, Model};
use crate::reference::Precision;
use rayon::prelude::*;

/// Bias and activation applied to one batch of outputs (`batch * rows` values).
fn finish(out: &mut [f32], rows: usize, bias: Option<&[f32]>, act: Activation) {
    for y in out.chunks_exact_mut(rows) {
        if let Some(b) = bias {
            for (v, b) in y.iter_mut().zip(b) {
                *v += b;
            }
        }
        for v in y.iter_mut() {
            *v = act.apply(*v);
        }
    }
}

/// One layer as a dense row-major f32 matrix.
pub struct DenseLayerF32 {
    rows: usize,
    cols: usize,
    weights: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

impl DenseLayerF32 {
    /// Expands a compressed layer.
    pub fn new(layer: &EieLayer) -> Self {
        DenseLayerF32 {
            rows: layer.rows(),
            cols: layer.cols(),
            weights: layer.dense_weights(),
            bias: layer.bias().map(<[f32]>::to_vec),
            activation: layer.activation(),
        }
    }

    /// `y = f(x W^T + b)` for a batch `x` of `batch * cols` values.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let batch = x.len() / self.cols;
        let mut y = vec![0f32; batch * self.rows];
        // SAFETY: the pointers cover `batch * cols` (x), `rows * cols` (W) and `batch * rows`
        // (y) elements with the strides given; y does not alias x or W.
        unsafe {
            gemm::gemm(
                batch,
                self.rows,
                self.cols,
                y.as_mut_ptr(),
                1,
                self.rows as isize,
                false,
                x.as_ptr(),
                1,
                self.cols as isize,
                self.weights.as_ptr(),
                self.cols as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        finish(&mut y, self.rows, self.bias.as_deref(), self.activation);
        y
    }
}

/// One layer in plain CSR: f32 values and u32 column indices, rows in order.
pub struct CsrLayerF32 {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

impl CsrLayerF32 {
    /// Converts a compressed layer (padding dropped, codebook looked up).
    pub fn new(layer: &EieLayer) -> Self {
        let sc = layer.sparse_codes();
        let mut count = vec![0u32; layer.rows() + 1];
        for &r in &sc.row_idx {
            count[r as usize + 1] += 1;
        }
        for i in 0..layer.rows() {
            count[i + 1] += count[i];
        }
        let mut fill: Vec<u32> = count.clone();
        let mut col_idx = vec![0u32; sc.nnz()];
        let mut values = vec![0f32; sc.nnz()];
        for j in 0..sc.cols {
            for k in sc.col_ptr[j]..sc.col_ptr[j + 1] {
                let r = sc.row_idx[k] as usize;
                col_idx[fill[r] as usize] = j as u32;
                values[fill[r] as usize] = layer.codebook()[sc.code[k] as usize];
                fill[r] += 1;
            }
        }
        CsrLayerF32 {
            rows: layer.rows(),
            cols: layer.cols(),
            row_ptr: count,
            col_idx,
            values,
            bias: layer.bias().map(<[f32]>::to_vec),
            activation: layer.activation(),
        }
    }

    /// Row pointers (`rows + 1`).
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }
    /// Column index of each non-zero.
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }
    /// Value of each non-zero.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// `y = f(W x + b)` for a batch `x` of `batch * cols` values, parallel over row blocks.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let batch = x.len() / self.cols;
        let mut y = vec![0f32; batch * self.rows];
        const BLOCK: usize = 256;
        y.par_chunks_mut(self.rows)
            .zip(x.par_chunks(self.cols))
            .for_each(|(yb, xb)| {
                yb.par_chunks_mut(BLOCK).enumerate().for_each(|(blk, ys)| {
                    for (o, yi) in ys.iter_mut().enumerate() {
                        let i = blk * BLOCK + o;
                        let (s, e) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
                        let mut acc = 0f32;
                        for k in s..e {
                            acc += self.values[k] * xb[self.col_idx[k] as usize];
                        }
                        *yi = acc;
                    }
                })
            });
        finish(&mut y, self.rows, self.bias.as_deref(), self.activation);
        y
    }
}

/// A baseline layer kind: built from a compressed layer, run on a batch.
pub trait BaselineLayer: Send + Sync + Sized {
    /// Backend name, e.g. `cpu-dense/f32`.
    const NAME: &'static str;
    /// Converts a compressed layer.
    fn new(layer: &EieLayer) -> Self;
    /// `y = f(W x + b)` for a batch `x`.
    fn forward(&self, x: &[f32]) -> Vec<f32>;
}

impl BaselineLayer for DenseLayerF32 {
    const NAME: &'static str = "cpu-dense/f32";
    fn new(layer: &EieLayer) -> Self {
        DenseLayerF32::new(layer)
    }
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        DenseLayerF32::forward(self, x)
    }
}

impl BaselineLayer for CsrLayerF32 {
    const NAME: &'static str = "cpu-csr/f32";
    fn new(layer: &EieLayer) -> Self {
        CsrLayerF32::new(layer)
    }
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        CsrLayerF32::forward(self, x)
    }
}

/// A baseline over a whole model, layer after layer, as a [`Backend`].
pub struct BaselineBackend<L> {
    layers: Vec<L>,
    input_size: usize,
}

impl<L: BaselineLayer> BaselineBackend<L> {
    /// Converts every layer of `model`.
    pub fn new(model: &Model) -> Self {
        BaselineBackend {
            layers: model.layers().iter().map(L::new).collect(),
            input_size: model.input_size(),
        }
    }
}

impl<L: BaselineLayer> Backend for BaselineBackend<L> {
    fn name(&self) -> String {
        L::NAME.into()
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        check_batch(self.input_size, input)?;
        let mut x = input.to_vec();
        for l in &self.layers {
            x = l.forward(&x);
        }
        Ok(x)
    }
}

/// The dense f32 baseline (`gemm`) over a whole model.
pub type DenseBackend = BaselineBackend<DenseLayerF32>;
/// The plain CSR baseline over a whole model.
pub type CsrBackend = BaselineBackend<CsrLayerF32>;
