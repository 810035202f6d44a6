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
//! The inner loop ([`add_column`]) looks each entry's term up in the column's scaled codebook
//! (`codebook[k] * a_j`, computed once per column: the same products the entries would compute
//! one by one) and adds it into the PE's accumulator, entry after entry.

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

/// Appends an entry, growing the vector fallibly (by half its length).
fn push(entries: &mut Vec<u16>, e: u16) -> Result<()> {
    if entries.len() == entries.capacity() {
        entries
            .try_reserve(entries.len() / 2 + 16)
            .map_err(|_| crate::Error::Allocation {
                what: "column entries".into(),
                bytes: entries.len() as u64 * 3,
            })?;
    }
    entries.push(e);
    Ok(())
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
                        push(&mut entries, (MAX_RUN as u16) << 4)?;
                        gap -= MAX_RUN + 1;
                    }
                    push(&mut entries, entry_code(e) as u16 | (gap as u16) << 4)?;
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
///
/// Scalar on purpose: decoding eight entries at once in AVX2 (runs to rows by a prefix sum,
/// codes to terms by two permutes) and then adding the terms one by one measured 0–15 % slower
/// on the paper's layers (`cargo bench --bench cpu_walks`); the scattered read-modify-write of
/// the accumulators, not the decode, bounds this loop.
///
/// Generic over the accumulator: f32 sums for f32 and f16, exact i64 sums of the product terms
/// for fixed16.
#[inline]
pub fn add_column<T: Copy + std::ops::AddAssign>(column: &[u16], scaled: &[T; 16], acc: &mut [T]) {
    let mut row = usize::MAX;
    for &e in column {
        row = row.wrapping_add((e >> 4) as usize + 1);
        acc[row] += scaled[(e & 15) as usize];
    }
}
