//! The CPU engine's copy of a 4-bit layer's columns for the column walk, and its inner loop.
//!
//! The format's entries hold a 4-bit zero run, so a PE whose rows are sparser than one in 16
//! walks padding entries (code 0) over every longer gap: at the 2 PEs the engine uses on a
//! 2-core machine, about one padding entry per weight on the paper's 4 %-dense VGG layers. The
//! engine's copy ([`ColumnCodes`]) keeps the same codes in the same per-PE column order with a
//! 12-bit run beside the 4-bit code in each 16-bit entry, so padding is left only over gaps of
//! 4096 rows or more. A padding entry adds `codebook[0] * a_j = 0`, which leaves a sum unchanged
//! (an accumulator starts at +0 and cannot become -0 in round-to-nearest), so dropping them
//! changes no bit of the result.
//!
//! The inner loop ([`add_column`]) decodes eight entries at once in AVX2 (their runs turned into
//! local rows by a prefix sum, their codes into terms `codebook[code] * a_j` by two 8-entry
//! permutes of the column's scaled codebook), then adds the terms into the accumulators one by
//! one in entry order, so every row receives the same terms in the same order as the scalar
//! walk.

use crate::error::{try_with_capacity, Result};
use crate::format::{entry_code, entry_run, EieLayer};

/// The longest zero run of a [`ColumnCodes`] entry (12 bits).
const MAX_RUN: usize = 4095;

/// A 4-bit layer's entries re-encoded with 12-bit runs, at the layer's PE count (see the module
/// docs): entry `code | run << 4`.
#[derive(Clone, Debug)]
pub struct ColumnCodes {
    cols: usize,
    /// PE p's column j is `entries[col_ptr[p * (cols + 1) + j]..col_ptr[p * (cols + 1) + j + 1]]`.
    col_ptr: Vec<u32>,
    entries: Vec<u16>,
}

impl ColumnCodes {
    /// Re-encodes `layer`; fails for codebooks of more than 16 entries, or where memory runs out.
    pub fn new(layer: &EieLayer) -> Result<Self> {
        if layer.codebook().len() > 16 {
            return Err(crate::Error::InvalidArgument(format!(
                "layer `{}`: the compact column copy takes 4-bit codebooks only",
                layer.name()
            )));
        }
        let (cols, pes) = (layer.cols(), layer.pes());
        let mut col_ptr: Vec<u32> = try_with_capacity(pes * (cols + 1), "column pointers")?;
        let mut entries: Vec<u16> = try_with_capacity(layer.nnz() + 16, "column entries")?;
        for p in 0..pes {
            let pe = layer.pe(p);
            for j in 0..cols {
                col_ptr.push(entries.len() as u32);
                // Rows skipped since the last kept entry.
                let mut gap = 0usize;
                for &e in pe.column(j) {
                    gap += entry_run(e) as usize;
                    if entry_code(e) == 0 {
                        gap += 1; // a padding entry stands for one more zero row
                        continue;
                    }
                    while gap > MAX_RUN {
                        if entries.len() == entries.capacity() {
                            entries.try_reserve(entries.len() / 2 + 16).map_err(|_| {
                                crate::Error::Allocation {
                                    what: "column entries".into(),
                                    bytes: entries.len() as u64 * 3,
                                }
                            })?;
                        }
                        entries.push((MAX_RUN as u16) << 4);
                        gap -= MAX_RUN + 1;
                    }
                    if entries.len() == entries.capacity() {
                        entries.try_reserve(entries.len() / 2 + 16).map_err(|_| {
                            crate::Error::Allocation {
                                what: "column entries".into(),
                                bytes: entries.len() as u64 * 3,
                            }
                        })?;
                    }
                    entries.push(entry_code(e) as u16 | (gap as u16) << 4);
                    gap = 0;
                }
            }
            col_ptr.push(entries.len() as u32);
            if entries.len() > u32::MAX as usize {
                return Err(crate::Error::InvalidArgument(format!(
                    "layer `{}`: too many entries for the compact column copy",
                    layer.name()
                )));
            }
        }
        Ok(ColumnCodes {
            cols,
            col_ptr,
            entries,
        })
    }

    /// PE `p`'s entries of column `j`.
    #[inline]
    pub fn column(&self, p: usize, j: usize) -> &[u16] {
        let base = p * (self.cols + 1);
        &self.entries[self.col_ptr[base + j] as usize..self.col_ptr[base + j + 1] as usize]
    }
}

/// Adds column slice `column` of a [`ColumnCodes`] into `acc` (a PE's local rows): `scaled[k]` is
/// `codebook[k] * a_j` for the column's activation `a_j`, for the 16 codes of a 4-bit codebook.
///
/// An entry past `acc` panics (the runs of a copy of a validated layer stay inside it).
pub fn add_column(column: &[u16], scaled: &[f32; 16], acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() && acc.len() <= i32::MAX as usize {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { avx2::add_column(column, scaled, acc) };
        return;
    }
    add_scalar(column, scaled, acc, usize::MAX);
}

/// The scalar walk of `column` from local row `row` (`usize::MAX` before the first entry).
#[inline(always)]
fn add_scalar(column: &[u16], scaled: &[f32; 16], acc: &mut [f32], mut row: usize) {
    for &e in column {
        row = row.wrapping_add((e >> 4) as usize + 1);
        acc[row] += scaled[(e & 15) as usize];
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// See [`super::add_column`].
    ///
    /// # Safety
    /// The CPU has AVX2, and `acc` holds at most `i32::MAX` values (so that rows, computed in
    /// 32 bits, rise without wrapping: each step is at most 4096).
    #[target_feature(enable = "avx2")]
    pub unsafe fn add_column(column: &[u16], scaled: &[f32; 16], acc: &mut [f32]) {
        let lo = _mm256_loadu_ps(scaled.as_ptr());
        let hi = _mm256_loadu_ps(scaled.as_ptr().add(8));
        let one = _mm256_set1_epi32(1);
        let low_nibble = _mm256_set1_epi32(0xf);
        let last = _mm256_set1_epi32(7);
        // Local row before the next entry, in every lane (-1: before the first).
        let mut base = _mm256_set1_epi32(-1);
        let mut rows = [0i32; 8];
        let mut terms = [0f32; 8];
        let chunks = column.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            let e = _mm256_cvtepu16_epi32(_mm_loadu_si128(c.as_ptr() as *const __m128i));
            // Row steps (run + 1), summed inclusive across the eight lanes.
            let mut s = _mm256_add_epi32(_mm256_srli_epi32(e, 4), one);
            s = _mm256_add_epi32(s, _mm256_slli_si256(s, 4));
            s = _mm256_add_epi32(s, _mm256_slli_si256(s, 8));
            // Carry the low half's total (its lane 3) into the high half.
            let carry = _mm256_shuffle_epi32(_mm256_permute2x128_si256(s, s, 0x08), 0xff);
            s = _mm256_add_epi32(s, carry);
            let r = _mm256_add_epi32(base, s);
            base = _mm256_permutevar8x32_epi32(r, last);
            let code = _mm256_and_si256(e, low_nibble);
            let t = _mm256_blendv_ps(
                _mm256_permutevar8x32_ps(lo, code),
                _mm256_permutevar8x32_ps(hi, code),
                _mm256_castsi256_ps(_mm256_slli_epi32(code, 28)),
            );
            _mm256_storeu_si256(rows.as_mut_ptr() as *mut __m256i, r);
            _mm256_storeu_ps(terms.as_mut_ptr(), t);
            // Rows rise strictly within a slice (every step is at least 1), so the last lane
            // bounds them all: one check per eight entries.
            assert!(
                (rows[7] as u32 as usize) < acc.len(),
                "a run past the PE's rows"
            );
            for k in 0..8 {
                // SAFETY: rows[k] <= rows[7] < acc.len() (asserted above), and rows[0] >= 0
                // (the walk starts at -1 and steps by at least 1).
                *acc.get_unchecked_mut(rows[k] as u32 as usize) += terms[k];
            }
        }
        let row = _mm256_cvtsi256_si32(base) as u32 as usize;
        // -1 (before the first entry) becomes usize::MAX, as the scalar walk starts.
        let row = if row == u32::MAX as usize {
            usize::MAX
        } else {
            row
        };
        super::add_scalar(tail, scaled, acc, row);
    }
}
