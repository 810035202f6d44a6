//! CPU baselines that EIE is measured against, both on the dequantised weights of a [`Model`]
//! and both usable as a [`Backend`]:
//!
//! * dense f32 GEMV / GEMM through the `gemm` crate, or with the opt-in feature `openblas`
//!   through the system's OpenBLAS (CBLAS `sgemv` at batch 1, `sgemm` above);
//! * plain CSR SpMV / SpMM (f32 values, u32 column indices, no codebook, no activation
//!   skipping): four partial sums per row at batch 1, a tile of 64 inputs per weight read at
//!   larger batches, AVX2 where the CPU has it, rows split over the rayon threads.
//!
//! [`dense_library`] and [`csr_library`] name what runs, for the bench report.
//!
//! [`DenseBackend`] and [`CsrBackend`] run whole models ([`crate::backend::cpu_backends`] lists
//! them); [`DenseLayerF32`] and [`CsrLayerF32`] are single layers, built from an
//! [`EieLayer`].

use crate::backend::Backend;
use crate::error::Result;
use crate::format::{check_batch, Activation, EieLayer, Model};
use crate::kernel_id::{KernelId, KernelKind};
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
///
/// Made by [`DenseLayerF32::new`]; [`DenseBackend`] runs a model of them, and
/// `examples/lstm_step.rs` uses one for a dense LSTM step.
pub struct DenseLayerF32 {
    rows: usize,
    cols: usize,
    weights: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

impl DenseLayerF32 {
    /// Expands a compressed layer.
    ///
    /// See [`DenseLayerF32::forward`].
    pub fn new(layer: &EieLayer) -> Self {
        DenseLayerF32 {
            rows: layer.rows(),
            cols: layer.cols(),
            weights: layer.dense_weights(),
            bias: layer.bias().map(<[f32]>::to_vec),
            activation: layer.activation(),
        }
    }

    /// A dense layer from its row-major `rows × cols` weights and optional bias
    /// ([`crate::Error::Shape`] when a length does not match).
    pub fn from_weights(
        rows: usize,
        cols: usize,
        weights: Vec<f32>,
        bias: Option<Vec<f32>>,
        activation: Activation,
    ) -> crate::Result<Self> {
        if rows.checked_mul(cols) != Some(weights.len())
            || bias.as_ref().is_some_and(|b| b.len() != rows)
        {
            return Err(crate::Error::Shape(format!(
                "{} weights and {} biases for a {rows}x{cols} dense layer",
                weights.len(),
                bias.as_ref().map_or(0, Vec::len)
            )));
        }
        Ok(DenseLayerF32 {
            rows,
            cols,
            weights,
            bias,
            activation,
        })
    }

    /// `y = f(x W^T + b)` for a batch `x` of `batch * cols` values.
    ///
    /// See [`dense_library`] for what computes it.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let batch = x.len() / self.cols.max(1);
        let mut y = vec![0f32; batch * self.rows];
        #[cfg(feature = "openblas")]
        let done = openblas::gemm(batch, self.rows, self.cols, x, &self.weights, &mut y);
        #[cfg(not(feature = "openblas"))]
        let done = false;
        if !done {
            gemm_crate(batch, self.rows, self.cols, x, &self.weights, &mut y);
        }
        finish(&mut y, self.rows, self.bias.as_deref(), self.activation);
        y
    }
}

/// `y = x W^T` through the `gemm` crate (`x`: `batch * cols`, `W`: `rows * cols`, row-major).
fn gemm_crate(batch: usize, rows: usize, cols: usize, x: &[f32], w: &[f32], y: &mut [f32]) {
    // SAFETY: the pointers cover `batch * cols` (x), `rows * cols` (W) and `batch * rows`
    // (y) elements with the strides given; y does not alias x or W.
    unsafe {
        gemm::gemm(
            batch,
            rows,
            cols,
            y.as_mut_ptr(),
            1,
            rows as isize,
            false,
            x.as_ptr(),
            1,
            cols as isize,
            w.as_ptr(),
            cols as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// The system's OpenBLAS through its CBLAS interface.
#[cfg(feature = "openblas")]
mod openblas {
    use cblas_sys::{cblas_sgemm, cblas_sgemv, CblasNoTrans, CblasRowMajor, CblasTrans};
    use std::os::raw::{c_char, c_int};

    // Links the system library, which provides the CBLAS symbols `cblas-sys` declares.
    #[link(name = "openblas")]
    extern "C" {
        fn openblas_get_config() -> *const c_char;
        fn openblas_get_num_threads() -> c_int;
    }

    /// OpenBLAS's build string and thread count, e.g.
    /// `OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64, 2 threads`.
    pub fn describe() -> String {
        // SAFETY: both calls take no arguments; the config is a static NUL-terminated string.
        let (config, threads) = unsafe {
            let p = openblas_get_config();
            let config = if p.is_null() {
                "OpenBLAS".to_string()
            } else {
                std::ffi::CStr::from_ptr(p)
                    .to_string_lossy()
                    .trim()
                    .to_string()
            };
            (config, openblas_get_num_threads())
        };
        format!("{config}, {threads} threads (cblas_sgemv at batch 1, cblas_sgemm above)")
    }

    /// `y = x W^T` (`x`: `batch * cols`, `W`: `rows * cols`, row-major): `sgemv` for one input,
    /// `sgemm` for several. False (nothing done) when a dimension does not fit CBLAS's `int`.
    pub fn gemm(
        batch: usize,
        rows: usize,
        cols: usize,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
    ) -> bool {
        let fits = |n: usize| c_int::try_from(n).is_ok();
        if !(fits(batch) && fits(rows) && fits(cols) && fits(rows.max(cols))) {
            return false;
        }
        let (b, m, n) = (batch as c_int, rows as c_int, cols as c_int);
        // SAFETY: x holds batch * cols values, W rows * cols, y batch * rows, all row-major
        // with the leading dimensions given; y does not alias x or W.
        unsafe {
            if batch == 1 {
                cblas_sgemv(
                    CblasRowMajor,
                    CblasNoTrans,
                    m,
                    n,
                    1.0,
                    w.as_ptr(),
                    n,
                    x.as_ptr(),
                    1,
                    0.0,
                    y.as_mut_ptr(),
                    1,
                );
            } else {
                cblas_sgemm(
                    CblasRowMajor,
                    CblasNoTrans,
                    CblasTrans,
                    b,
                    m,
                    n,
                    1.0,
                    x.as_ptr(),
                    n,
                    w.as_ptr(),
                    n,
                    0.0,
                    y.as_mut_ptr(),
                    m,
                );
            }
        }
        true
    }
}

/// The library behind the dense baseline `cpu-dense/f32`, as the bench report names it.
///
/// See [`DenseBackend`].
pub fn dense_library() -> String {
    #[cfg(feature = "openblas")]
    {
        openblas::describe()
    }
    #[cfg(not(feature = "openblas"))]
    {
        format!(
            "gemm crate 0.19 (Rust, {} rayon threads; built without the `openblas` feature)",
            rayon::current_num_threads()
        )
    }
}

/// The kernel behind the CSR baseline `cpu-csr/f32`, as the bench report names it.
///
/// See [`CsrBackend`].
pub fn csr_library() -> String {
    format!(
        "this crate's CSR kernel ({}, u32 indices, f32 values, {} rayon threads over row blocks; \
         4 partial sums per row at batch 1, 64 inputs per weight read above)",
        if crate::simd::avx2() { "AVX2" } else { "SSE2" },
        rayon::current_num_threads()
    )
}

/// One layer in plain CSR: f32 values and u32 column indices, rows in order.
///
/// Made by [`CsrLayerF32::new`]; [`CsrBackend`] runs a model of them.
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
    ///
    /// See [`CsrLayerF32::forward`].
    pub fn new(layer: &EieLayer) -> Self {
        let csr = layer.sparse_codes().by_rows();
        let values = csr
            .code
            .iter()
            .map(|&c| layer.codebook()[c as usize])
            .collect();
        CsrLayerF32 {
            rows: layer.rows(),
            cols: layer.cols(),
            row_ptr: csr.row_ptr.iter().map(|&p| p as u32).collect(),
            col_idx: csr.col,
            values,
            bias: layer.bias().map(<[f32]>::to_vec),
            activation: layer.activation(),
        }
    }

    /// Row pointers (`rows + 1`).
    ///
    /// See [`CsrLayerF32::col_idx`] and [`CsrLayerF32::values`].
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }
    /// Column index of each non-zero.
    ///
    /// See [`CsrLayerF32::row_ptr`].
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }
    /// Value of each non-zero.
    ///
    /// See [`CsrLayerF32::row_ptr`].
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// `y = f(W x + b)` for a batch `x` of `batch * cols` values, parallel over row blocks.
    ///
    /// See [`csr_library`] for what computes it.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let batch = x.len() / self.cols.max(1);
        let mut y = vec![0f32; batch * self.rows];
        if batch == 1 {
            const BLOCK: usize = 256;
            y.par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(blk, ys)| crate::simd::dispatch(|| self.rows_dot(blk * BLOCK, x, ys)));
        } else {
            // Rows in blocks, inputs in tiles of CSR_TILE stored input-minor (`xt[j * T + b]`),
            // so each non-zero is read once per tile and multiplied into T contiguous sums.
            const BLOCK: usize = 128;
            let tiles: Vec<Vec<f32>> = x
                .chunks(self.cols * CSR_TILE)
                .map(|xs| {
                    let t = xs.len() / self.cols;
                    let mut xt = vec![0f32; self.cols * CSR_TILE];
                    for (b, xb) in xs.chunks_exact(self.cols).enumerate() {
                        for (j, &v) in xb.iter().enumerate() {
                            xt[j * CSR_TILE + b] = v;
                        }
                    }
                    debug_assert!(t <= CSR_TILE);
                    xt
                })
                .collect();
            let blocks = self.rows.div_ceil(BLOCK);
            let parts: Vec<(usize, usize, Vec<[f32; CSR_TILE]>)> = (0..tiles.len() * blocks)
                .into_par_iter()
                .map(|k| {
                    let (tile, blk) = (k / blocks, k % blocks);
                    let r0 = blk * BLOCK;
                    let r1 = (r0 + BLOCK).min(self.rows);
                    let mut acc = vec![[0f32; CSR_TILE]; r1 - r0];
                    crate::simd::dispatch(|| self.rows_tile(r0, &tiles[tile], &mut acc));
                    (tile, r0, acc)
                })
                .collect();
            for (tile, r0, acc) in parts {
                for (o, a) in acc.iter().enumerate() {
                    for (b, &v) in a.iter().enumerate() {
                        let input = tile * CSR_TILE + b;
                        if input < batch {
                            y[input * self.rows + r0 + o] = v;
                        }
                    }
                }
            }
        }
        finish(&mut y, self.rows, self.bias.as_deref(), self.activation);
        y
    }

    /// Dot products of rows `r0..r0 + ys.len()` with `x`, four partial sums per row.
    #[inline(always)]
    fn rows_dot(&self, r0: usize, x: &[f32], ys: &mut [f32]) {
        for (o, yi) in ys.iter_mut().enumerate() {
            let i = r0 + o;
            let (s, e) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
            let (cols, vals) = (&self.col_idx[s..e], &self.values[s..e]);
            let mut acc = [0f32; 4];
            let mut cs = cols.chunks_exact(4);
            let mut vs = vals.chunks_exact(4);
            for (c, v) in (&mut cs).zip(&mut vs) {
                for k in 0..4 {
                    acc[k] += v[k] * x[c[k] as usize];
                }
            }
            let mut tail = 0f32;
            for (&c, &v) in cs.remainder().iter().zip(vs.remainder()) {
                tail += v * x[c as usize];
            }
            *yi = (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
        }
    }

    /// Rows `r0..r0 + acc.len()` against a tile of inputs stored input-minor.
    #[inline(always)]
    fn rows_tile(&self, r0: usize, xt: &[f32], acc: &mut [[f32; CSR_TILE]]) {
        for (o, out) in acc.iter_mut().enumerate() {
            let i = r0 + o;
            let (s, e) = (self.row_ptr[i] as usize, self.row_ptr[i + 1] as usize);
            let mut a = [0f32; CSR_TILE];
            for (&c, &v) in self.col_idx[s..e].iter().zip(&self.values[s..e]) {
                let xs: &[f32; CSR_TILE] = xt[c as usize * CSR_TILE..][..CSR_TILE]
                    .try_into()
                    .expect("a tile row");
                for b in 0..CSR_TILE {
                    a[b] += v * xs[b];
                }
            }
            *out = a;
        }
    }
}

/// Inputs the CSR baseline multiplies each non-zero into at batch > 1 (as scipy's
/// `csr_matvecs` does for all the inputs of a batch): eight AVX2 registers of sums per row.
const CSR_TILE: usize = 64;

/// A baseline layer kind: built from a compressed layer, run on a batch.
///
/// Implemented by [`DenseLayerF32`] and [`CsrLayerF32`]; [`BaselineBackend`] runs a model of
/// them.
pub trait BaselineLayer: Send + Sync + Sized {
    /// Which baseline: [`KernelKind::Dense`] or [`KernelKind::Csr`] (the
    /// [`Backend::id`] of a [`BaselineBackend`] is this kernel on the CPU in f32).
    const KIND: KernelKind;
    /// Converts a compressed layer ([`DenseLayerF32::new`], [`CsrLayerF32::new`]).
    fn new(layer: &EieLayer) -> Self;
    /// `y = f(W x + b)` for a batch `x` ([`DenseLayerF32::forward`], [`CsrLayerF32::forward`]).
    fn forward(&self, x: &[f32]) -> Vec<f32>;
}

impl BaselineLayer for DenseLayerF32 {
    const KIND: KernelKind = KernelKind::Dense;
    fn new(layer: &EieLayer) -> Self {
        DenseLayerF32::new(layer)
    }
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        DenseLayerF32::forward(self, x)
    }
}

impl BaselineLayer for CsrLayerF32 {
    const KIND: KernelKind = KernelKind::Csr;
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
    ///
    /// The model's layers become [`BaselineLayer`]s.
    pub fn new(model: &Model) -> Self {
        BaselineBackend {
            layers: model.layers().iter().map(L::new).collect(),
            input_size: model.input_size(),
        }
    }
}

impl<L: BaselineLayer> Backend for BaselineBackend<L> {
    fn id(&self) -> KernelId {
        KernelId::cpu(L::KIND, Precision::F32)
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

/// The dense f32 baseline (OpenBLAS, or the `gemm` crate without the `openblas` feature) over
/// a whole model.
///
/// A [`Backend`]; [`crate::backend::cpu_backends`] includes it.
pub type DenseBackend = BaselineBackend<DenseLayerF32>;
/// The plain CSR baseline over a whole model.
///
/// A [`Backend`]; [`crate::backend::cpu_backends`] includes it.
pub type CsrBackend = BaselineBackend<CsrLayerF32>;
