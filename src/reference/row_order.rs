//! A row-ordered copy of a layer's codes for the CPU engine, and the kernels that walk it.
//!
//! EIE's column walk pays per non-zero activation and, per entry, a read-modify-write of a
//! scattered accumulator. Where most activations are non-zero it has nothing to skip, and the
//! row-ordered ("pull") walk of the same 4-bit codes is cheaper: each row gathers its inputs into
//! a register. The copy holds, per row, the column and codebook index of every non-zero weight in
//! increasing column order (padding entries dropped), so each row sums its terms in the same
//! order as the column walk and the result is bit for bit the same (a zero activation adds a
//! zero product, which leaves a sum unchanged; see [`RowCodes`]).
//!
//! Layout: rows in groups of [`GROUP`], each group padded to its longest row and stored
//! step-major (the `k`-th weight of each of the group's rows side by side), so the kernels walk
//! [`GROUP`] independent sums at once. Column indices are `u16` where the layer has fewer than
//! 65 536 columns and `u32` otherwise; codes are one byte.

use crate::error::{try_filled, try_with_capacity, Result};
use crate::format::{entry_code, entry_run, EieLayer};

/// Rows walked together: one independent sum per row, so the adds of a group overlap.
///
/// See [`RowCodes`].
pub const GROUP: usize = 8;

/// Inputs a tile of the batched kernels multiplies each weight into (two AVX2 registers).
///
/// See [`RowCodes`].
pub const TILE: usize = 16;

/// Rows of a group the batched kernel walks at once: `HALF * TILE` sums stay in registers.
const HALF: usize = GROUP / 2;

/// Column indices of a [`RowCodes`]: `u16` for layers under 65 536 columns, `u32` otherwise.
#[derive(Clone, Debug)]
enum Columns {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

/// A layer's non-zero codes in row order, grouped by [`GROUP`] rows (see the module docs).
///
/// Padding slots (a group's rows shorter than its longest) hold code 0 and column `cols`: the
/// kernels append one zero to the input, so a padding slot adds `codebook[0] * 0 = 0`.
#[derive(Clone, Debug)]
pub struct RowCodes {
    rows: usize,
    cols: usize,
    /// `step_ptr[g]..step_ptr[g + 1]` are group g's steps; each step is [`GROUP`] slots.
    step_ptr: Vec<u32>,
    columns: Columns,
    codes: Vec<u8>,
    /// Every code indexes the first 16 codebook entries (4-bit codebooks): the vector kernel
    /// looks them up with two 8-entry permutes (x86-64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    codes_below_16: bool,
}

impl RowCodes {
    /// Builds the row-ordered copy of `layer`'s codes (any PE count). Fails where memory runs
    /// out, or where padding the row groups would take more than four slots per weight.
    ///
    /// [`crate::CpuEngine`] builds one per layer; see the [module docs](self).
    pub fn new(layer: &EieLayer) -> Result<Self> {
        let (rows, cols, pes) = (layer.rows(), layer.cols(), layer.pes());
        // Row lengths, then the row-major (column, code) lists by a counting pass.
        let mut len: Vec<u32> = try_filled(rows, 0, "row lengths")?;
        let walk = |f: &mut dyn FnMut(usize, usize, u8)| {
            for p in 0..pes {
                let pe = layer.pe(p);
                for j in 0..cols {
                    let mut local = usize::MAX;
                    for &e in pe.column(j) {
                        local = local.wrapping_add(entry_run(e) as usize + 1);
                        if entry_code(e) != 0 {
                            f(p + local * pes, j, entry_code(e));
                        }
                    }
                }
            }
        };
        walk(&mut |i, _, _| len[i] += 1);
        let groups = rows.div_ceil(GROUP);
        let mut step_ptr: Vec<u32> = try_with_capacity(groups + 1, "row groups")?;
        step_ptr.push(0);
        for g in 0..groups {
            let longest = len[g * GROUP..((g + 1) * GROUP).min(rows)]
                .iter()
                .copied()
                .max()
                .unwrap_or(0);
            let next = step_ptr[g] as u64 + longest as u64;
            step_ptr.push(u32::try_from(next).map_err(|_| {
                crate::Error::InvalidArgument(format!(
                    "layer `{}` has too many weights per row group for the row walk",
                    layer.name()
                ))
            })?);
        }
        let slots = step_ptr[groups] as usize * GROUP;
        // Rows of very uneven lengths pad their groups to many times the weights: the row walk
        // would not pay there, so such a layer keeps the column walk only.
        let nnz: usize = len.iter().map(|&n| n as usize).sum();
        if slots > 4 * nnz + GROUP * groups {
            return Err(crate::Error::InvalidArgument(format!(
                "layer `{}`: rows too uneven for the row walk ({slots} slots for {nnz} weights)",
                layer.name()
            )));
        }
        let mut column: Vec<u32> = try_filled(slots, cols as u32, "row-ordered columns")?;
        let mut codes: Vec<u8> = try_filled(slots, 0, "row-ordered codes")?;
        let mut fill: Vec<u32> = try_filled(rows, 0, "row fill")?;
        walk(&mut |i, j, code| {
            let (g, r) = (i / GROUP, i % GROUP);
            let slot = (step_ptr[g] + fill[i]) as usize * GROUP + r;
            fill[i] += 1;
            column[slot] = j as u32;
            codes[slot] = code;
        });
        let columns = if cols < u16::MAX as usize {
            Columns::Narrow(column.iter().map(|&c| c as u16).collect())
        } else {
            Columns::Wide(column)
        };
        let codes_below_16 = codes.iter().all(|&c| c < 16);
        Ok(RowCodes {
            rows,
            cols,
            step_ptr,
            columns,
            codes,
            codes_below_16,
        })
    }

    /// Slots walked per input: every group's steps times [`GROUP`] (padding included).
    pub fn slots(&self) -> usize {
        self.codes.len()
    }

    /// Memory held, in bytes.
    ///
    /// See [`RowCodes::new`].
    pub fn bytes(&self) -> usize {
        let col = match &self.columns {
            Columns::Narrow(c) => c.len() * 2,
            Columns::Wide(c) => c.len() * 4,
        };
        col + self.codes.len() + self.step_ptr.len() * 4
    }

    /// Row groups in `0..groups()`.
    ///
    /// Each of [`GROUP`] rows.
    pub fn groups(&self) -> usize {
        self.step_ptr.len() - 1
    }

    /// Pre-activation sums of the rows of groups `g0..g0 + out.len() / GROUP` for one input.
    ///
    /// `x` holds the input followed by one zero (`cols + 1` values); `out` receives
    /// [`GROUP`] sums per group (rows past the layer's end included).
    pub fn sums(&self, codebook: &[f32; 256], x: &[f32], g0: usize, out: &mut [f32]) {
        assert_eq!(x.len(), self.cols + 1, "input plus a trailing zero");
        assert!(g0 + out.len() / GROUP <= self.groups() && out.len() % GROUP == 0);
        #[cfg(target_arch = "x86_64")]
        if GROUP == 8 && self.codes_below_16 && crate::simd::avx2() {
            // SAFETY: AVX2 is present; columns are at most `cols` and codes below 16 (checked
            // on construction), `x` holds `cols + 1` values and the groups exist (asserted).
            unsafe {
                match &self.columns {
                    Columns::Narrow(c) => {
                        avx2::sums_narrow(&self.step_ptr, c, &self.codes, codebook, x, g0, out)
                    }
                    Columns::Wide(c) => {
                        avx2::sums_wide(&self.step_ptr, c, &self.codes, codebook, x, g0, out)
                    }
                }
            }
            return;
        }
        match &self.columns {
            Columns::Narrow(c) => crate::simd::dispatch(|| {
                sums_groups(&self.step_ptr, c, &self.codes, codebook, x, g0, out)
            }),
            Columns::Wide(c) => crate::simd::dispatch(|| {
                sums_groups(&self.step_ptr, c, &self.codes, codebook, x, g0, out)
            }),
        }
    }

    /// [`RowCodes::sums`] for a tile of up to [`TILE`] inputs stored input-minor:
    /// `xt[j * TILE + b]` is input b's activation j, with a zero row `j = cols` at the end.
    /// `out[(r * TILE) + b]` receives row `g0 * GROUP + r`'s sum for input b.
    pub fn sums_tile(&self, codebook: &[f32; 256], xt: &[f32], g0: usize, out: &mut [f32]) {
        assert_eq!(
            xt.len(),
            (self.cols + 1) * TILE,
            "tile plus a trailing zero row"
        );
        assert!(
            g0 + out.len() / (GROUP * TILE) <= self.groups() && out.len() % (GROUP * TILE) == 0
        );
        match &self.columns {
            Columns::Narrow(c) => crate::simd::dispatch(|| {
                tile_groups(&self.step_ptr, c, &self.codes, codebook, xt, g0, out)
            }),
            Columns::Wide(c) => crate::simd::dispatch(|| {
                tile_groups(&self.step_ptr, c, &self.codes, codebook, xt, g0, out)
            }),
        }
    }

    /// [`RowCodes::sums`] in fixed16: each slot adds the product term of [`FixedTerms`] in
    /// i32 (wrapping, as the hardware's accumulator; the caller walks rows only where no sum
    /// can leave the i32 range). `x` holds the input and one zero.
    pub fn sums_fixed16(&self, terms: &FixedTerms, x: &[i32], g0: usize, out: &mut [i32]) {
        assert_eq!(x.len(), self.cols + 1, "input plus a trailing zero");
        assert!(g0 + out.len() / GROUP <= self.groups() && out.len() % GROUP == 0);
        #[cfg(target_arch = "x86_64")]
        if GROUP == 8 && self.codes_below_16 && crate::simd::avx2() {
            // SAFETY: as in `sums`: AVX2 is present, columns are at most `cols`, codes below
            // 16, `x` holds `cols + 1` values and the groups exist.
            unsafe {
                match &self.columns {
                    Columns::Narrow(c) => {
                        avx2::fixed16_narrow(&self.step_ptr, c, &self.codes, terms, x, g0, out)
                    }
                    Columns::Wide(c) => {
                        avx2::fixed16_wide(&self.step_ptr, c, &self.codes, terms, x, g0, out)
                    }
                }
            }
            return;
        }
        match &self.columns {
            Columns::Narrow(c) => fixed16_groups(&self.step_ptr, c, &self.codes, terms, x, g0, out),
            Columns::Wide(c) => fixed16_groups(&self.step_ptr, c, &self.codes, terms, x, g0, out),
        }
    }

    /// Rows of the layer.
    ///
    /// See [`RowCodes::groups`].
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// One group's sums, [`GROUP`] independent chains, each in increasing column order.
#[inline(always)]
fn sums_groups<I: Copy + Into<u32>>(
    step_ptr: &[u32],
    columns: &[I],
    codes: &[u8],
    codebook: &[f32; 256],
    x: &[f32],
    g0: usize,
    out: &mut [f32],
) {
    for (k, o) in out.chunks_exact_mut(GROUP).enumerate() {
        let g = g0 + k;
        let (s, e) = (
            step_ptr[g] as usize * GROUP,
            step_ptr[g + 1] as usize * GROUP,
        );
        let mut acc = [0f32; GROUP];
        for (c, q) in columns[s..e]
            .chunks_exact(GROUP)
            .zip(codes[s..e].chunks_exact(GROUP))
        {
            for r in 0..GROUP {
                let j = c[r].into() as usize;
                // SAFETY: every stored column is at most `cols` (set on construction, never
                // changed) and `x` holds `cols + 1` values (asserted by the caller).
                let a = unsafe { *x.get_unchecked(j) };
                acc[r] += codebook[q[r] as usize] * a;
            }
        }
        o.copy_from_slice(&acc);
    }
}

/// One group's sums for a tile of [`TILE`] inputs, in two passes of [`HALF`] rows each (so
/// that the `HALF * TILE` sums stay in registers).
#[inline(always)]
fn tile_groups<I: Copy + Into<u32>>(
    step_ptr: &[u32],
    columns: &[I],
    codes: &[u8],
    codebook: &[f32; 256],
    xt: &[f32],
    g0: usize,
    out: &mut [f32],
) {
    for (k, o) in out.chunks_exact_mut(GROUP * TILE).enumerate() {
        let g = g0 + k;
        let (s, e) = (
            step_ptr[g] as usize * GROUP,
            step_ptr[g + 1] as usize * GROUP,
        );
        for half in 0..GROUP / HALF {
            let mut acc = [[0f32; TILE]; HALF];
            for (c, q) in columns[s..e]
                .chunks_exact(GROUP)
                .zip(codes[s..e].chunks_exact(GROUP))
            {
                for r in 0..HALF {
                    let j = c[half * HALF + r].into() as usize;
                    let w = codebook[q[half * HALF + r] as usize];
                    // SAFETY: every stored column is at most `cols` and `xt` holds `cols + 1`
                    // rows of TILE values (asserted by the caller).
                    let xs = unsafe { &*(xt.as_ptr().add(j * TILE) as *const [f32; TILE]) };
                    for b in 0..TILE {
                        acc[r][b] += w * xs[b];
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let row = half * HALF + r;
                o[row * TILE..(row + 1) * TILE].copy_from_slice(a);
            }
        }
    }
}

/// A layer's fixed16 product terms: `term(a, code) = (a × c + half) >> right` for codebook
/// values `c` with more fraction bits than the guard bits, else `(a × c) << left`
/// ([`crate::fixed16::product_term`]).
#[derive(Clone, Debug)]
pub struct FixedTerms {
    /// Codebook values as i32, indexed by code (unused codes 0).
    pub codebook: [i32; 256],
    /// Right shift (0 when the terms shift left).
    pub right: u32,
    /// Left shift (0 when the terms shift right).
    pub left: u32,
}

impl FixedTerms {
    /// The terms of a fixed16 codebook.
    ///
    /// `codebook` comes from [`crate::fixed16::FixedCodebook::new`].
    pub fn new(codebook: &crate::fixed16::FixedCodebook) -> Self {
        let mut table = [0i32; 256];
        for (t, &v) in table.iter_mut().zip(&codebook.values) {
            *t = v as i32;
        }
        let g = crate::fixed16::GUARD_BITS;
        let (right, left) = if codebook.frac > g {
            (codebook.frac - g, 0)
        } else {
            (0, g - codebook.frac)
        };
        FixedTerms {
            codebook: table,
            right,
            left,
        }
    }

    /// One product term.
    ///
    /// See [`crate::fixed16::product_term`].
    #[inline(always)]
    pub fn term(&self, a: i32, c: i32) -> i32 {
        let p = a * c;
        if self.right > 0 {
            (p + (1 << (self.right - 1))) >> self.right
        } else {
            p.wrapping_shl(self.left)
        }
    }
}

/// [`sums_groups`] in fixed16.
#[inline(always)]
fn fixed16_groups<I: Copy + Into<u32>>(
    step_ptr: &[u32],
    columns: &[I],
    codes: &[u8],
    terms: &FixedTerms,
    x: &[i32],
    g0: usize,
    out: &mut [i32],
) {
    for (k, o) in out.chunks_exact_mut(GROUP).enumerate() {
        let g = g0 + k;
        let (s, e) = (
            step_ptr[g] as usize * GROUP,
            step_ptr[g + 1] as usize * GROUP,
        );
        let mut acc = [0i32; GROUP];
        for (c, q) in columns[s..e]
            .chunks_exact(GROUP)
            .zip(codes[s..e].chunks_exact(GROUP))
        {
            for r in 0..GROUP {
                let a = x[c[r].into() as usize];
                let w = terms.codebook[q[r] as usize];
                acc[r] = acc[r].wrapping_add(terms.term(a, w));
            }
        }
        o.copy_from_slice(&acc);
    }
}

/// The row walk in AVX2: a step of a group (one slot per row of the group) at once, its 4-bit
/// codes looked up by two 8-entry permutes, its activations gathered. Multiply and add stay
/// separate instructions, so each row's sum rounds exactly as the scalar walk's.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::GROUP;
    use std::arch::x86_64::*;

    macro_rules! sums_kernel {
        ($name:ident, $idx:ty, $load:expr) => {
            /// See [`super::RowCodes::sums`].
            ///
            /// # Safety
            /// The CPU has AVX2; every column index is below `x.len()`, every code below 16;
            /// groups `g0..g0 + out.len() / 8` exist in `step_ptr`.
            #[target_feature(enable = "avx2")]
            pub unsafe fn $name(
                step_ptr: &[u32],
                columns: &[$idx],
                codes: &[u8],
                codebook: &[f32; 256],
                x: &[f32],
                g0: usize,
                out: &mut [f32],
            ) {
                let cb_lo = _mm256_loadu_ps(codebook.as_ptr());
                let cb_hi = _mm256_loadu_ps(codebook.as_ptr().add(8));
                for (k, o) in out.chunks_exact_mut(GROUP).enumerate() {
                    let g = g0 + k;
                    let (s, e) = (
                        step_ptr[g] as usize * GROUP,
                        step_ptr[g + 1] as usize * GROUP,
                    );
                    debug_assert!(e <= columns.len() && e <= codes.len());
                    let mut acc = _mm256_setzero_ps();
                    let mut i = s;
                    while i < e {
                        let c: __m256i = $load(columns.as_ptr().add(i));
                        let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                            codes.as_ptr().add(i) as *const __m128i
                        ));
                        let lo = _mm256_permutevar8x32_ps(cb_lo, q);
                        let hi = _mm256_permutevar8x32_ps(cb_hi, q);
                        // Bit 3 of the code, moved to the sign bit, picks the upper half.
                        let w =
                            _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
                        let a = _mm256_i32gather_ps::<4>(x.as_ptr(), c);
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(w, a));
                        i += GROUP;
                    }
                    _mm256_storeu_ps(o.as_mut_ptr(), acc);
                }
            }
        };
    }

    sums_kernel!(sums_narrow, u16, |p: *const u16| _mm256_cvtepu16_epi32(
        _mm_loadu_si128(p as *const __m128i)
    ));
    sums_kernel!(sums_wide, u32, |p: *const u32| _mm256_loadu_si256(
        p as *const __m256i
    ));

    macro_rules! fixed16_kernel {
        ($name:ident, $idx:ty, $load:expr) => {
            /// See [`super::RowCodes::sums_fixed16`].
            ///
            /// # Safety
            /// As for the f32 kernels: AVX2, column indices below `x.len()`, codes below 16,
            /// groups `g0..g0 + out.len() / 8` in `step_ptr`.
            #[target_feature(enable = "avx2")]
            pub unsafe fn $name(
                step_ptr: &[u32],
                columns: &[$idx],
                codes: &[u8],
                terms: &super::FixedTerms,
                x: &[i32],
                g0: usize,
                out: &mut [i32],
            ) {
                let cb_lo = _mm256_loadu_si256(terms.codebook.as_ptr() as *const __m256i);
                let cb_hi = _mm256_loadu_si256(terms.codebook.as_ptr().add(8) as *const __m256i);
                let right = _mm_cvtsi32_si128(terms.right as i32);
                let left = _mm_cvtsi32_si128(terms.left as i32);
                let half = _mm256_set1_epi32(if terms.right > 0 {
                    1 << (terms.right - 1)
                } else {
                    0
                });
                for (k, o) in out.chunks_exact_mut(GROUP).enumerate() {
                    let g = g0 + k;
                    let (s, e) = (
                        step_ptr[g] as usize * GROUP,
                        step_ptr[g + 1] as usize * GROUP,
                    );
                    debug_assert!(e <= columns.len() && e <= codes.len());
                    let mut acc = _mm256_setzero_si256();
                    let mut i = s;
                    while i < e {
                        let c: __m256i = $load(columns.as_ptr().add(i));
                        let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                            codes.as_ptr().add(i) as *const __m128i
                        ));
                        let lo = _mm256_permutevar8x32_epi32(cb_lo, q);
                        let hi = _mm256_permutevar8x32_epi32(cb_hi, q);
                        // Bit 3 of the code, moved to the sign bit, picks the upper half.
                        let w = _mm256_castps_si256(_mm256_blendv_ps(
                            _mm256_castsi256_ps(lo),
                            _mm256_castsi256_ps(hi),
                            _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)),
                        ));
                        let a = _mm256_i32gather_epi32::<4>(x.as_ptr(), c);
                        let p = _mm256_mullo_epi32(w, a);
                        let t = _mm256_sll_epi32(
                            _mm256_sra_epi32(_mm256_add_epi32(p, half), right),
                            left,
                        );
                        acc = _mm256_add_epi32(acc, t);
                        i += GROUP;
                    }
                    _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, acc);
                }
            }
        };
    }

    fixed16_kernel!(fixed16_narrow, u16, |p: *const u16| _mm256_cvtepu16_epi32(
        _mm_loadu_si128(p as *const __m128i)
    ));
    fixed16_kernel!(fixed16_wide, u32, |p: *const u32| _mm256_loadu_si256(
        p as *const __m256i
    ));
}
