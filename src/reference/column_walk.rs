//! The column walk's inner loop for 4-bit codebooks in AVX2: eight entries of a column slice
//! decoded at once (their zero runs turned into local rows by a prefix sum, their codes into
//! terms `codebook[code] * a_j` by two 8-entry permutes of the column's scaled codebook), then
//! added into the accumulators one by one in entry order, so every row receives the same terms
//! in the same order as the scalar walk.

/// Adds column slice `column`'s terms into `acc` (a PE's local rows): `scaled[k]` is
/// `codebook[k] * a_j` for the column's activation `a_j`, for the 16 codes of a 4-bit codebook.
///
/// Every code must be below 16 and the runs must stay inside `acc` (both hold for a validated
/// layer of at most 4 bits); an entry past `acc` panics.
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
        row = row.wrapping_add(crate::format::entry_run(e) as usize + 1);
        acc[row] += scaled[(crate::format::entry_code(e) & 15) as usize];
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// See [`super::add_column`].
    ///
    /// # Safety
    /// The CPU has AVX2, and `acc` holds at most `i32::MAX` values (so that rows, computed in
    /// 32 bits, rise without wrapping: each step is at most 256).
    #[target_feature(enable = "avx2")]
    pub unsafe fn add_column(column: &[u16], scaled: &[f32; 16], acc: &mut [f32]) {
        let lo = _mm256_loadu_ps(scaled.as_ptr());
        let hi = _mm256_loadu_ps(scaled.as_ptr().add(8));
        let one = _mm256_set1_epi32(1);
        let low_byte = _mm256_set1_epi32(0xff);
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
            let mut s = _mm256_add_epi32(_mm256_srli_epi32(e, 8), one);
            s = _mm256_add_epi32(s, _mm256_slli_si256(s, 4));
            s = _mm256_add_epi32(s, _mm256_slli_si256(s, 8));
            // Carry the low half's total (its lane 3) into the high half.
            let carry = _mm256_shuffle_epi32(_mm256_permute2x128_si256(s, s, 0x08), 0xff);
            s = _mm256_add_epi32(s, carry);
            let r = _mm256_add_epi32(base, s);
            base = _mm256_permutevar8x32_epi32(r, last);
            let code = _mm256_and_si256(e, low_byte);
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
