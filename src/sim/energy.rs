//! An energy estimate from the per-operation energies the EIE paper quotes for 45 nm (its
//! Table I, after Horowitz): it counts the datapath's multiply-accumulates and the reads of the
//! two large per-PE SRAMs, which dominate a PE's dynamic energy. It leaves out the codebook and
//! activation register files, FIFOs, the LNZD tree, control, clock and leakage, so it is a
//! lower bound on the chip's energy and an upper bound on the arithmetic's (the figures are for
//! 32-bit operations; EIE's are 16-bit). No DRAM access is counted: EIE keeps the whole model
//! on chip.

use serde::Serialize;

/// 32-bit integer multiply, 45 nm (pJ).
///
/// Used by [`Energy::estimate`].
pub const INT_MULT_PJ: f64 = 3.1;
/// 32-bit integer add, 45 nm (pJ).
///
/// Used by [`Energy::estimate`].
pub const INT_ADD_PJ: f64 = 0.1;
/// 32-bit read of a 32 KB SRAM, 45 nm (pJ).
///
/// Used by [`Energy::estimate`].
pub const SRAM_READ_32_PJ: f64 = 5.0;
/// 32-bit DRAM read, 45 nm (pJ); quoted for comparison, never charged.
///
/// See [`Energy`].
pub const DRAM_READ_32_PJ: f64 = 640.0;

/// Estimated dynamic energy of a run, by component (picojoules).
///
/// In [`SimResult::energy`](super::SimResult::energy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Energy {
    /// Useful multiply-accumulates × (int mult + int add). Padding entries do no arithmetic.
    pub mac_pj: f64,
    /// Pointer SRAM: each pair `p[j]`, `p[j + 1]` (two 16-bit words) as one 32-bit read.
    pub pointer_sram_pj: f64,
    /// Sparse-matrix SRAM: each line read (8-bit entries × line width) as that many bits of
    /// 32-bit reads, padding entries included.
    pub matrix_sram_pj: f64,
    /// The sum, in nanojoules.
    pub total_nj: f64,
}

impl Energy {
    /// The estimate for the given operation counts; `line_entries` is the matrix SRAM's line
    /// width in 8-bit entries.
    ///
    /// Priced with [`INT_MULT_PJ`], [`INT_ADD_PJ`] and [`SRAM_READ_32_PJ`].
    pub fn estimate(
        useful_macs: u64,
        pointer_reads: u64,
        matrix_reads: u64,
        line_entries: usize,
    ) -> Self {
        let mac_pj = useful_macs as f64 * (INT_MULT_PJ + INT_ADD_PJ);
        // Pointer reads are counted per 16-bit word; a pair is one 32-bit access.
        let pointer_sram_pj = pointer_reads as f64 / 2.0 * SRAM_READ_32_PJ;
        let words_per_line = (line_entries * 8).div_ceil(32) as f64;
        let matrix_sram_pj = matrix_reads as f64 * words_per_line * SRAM_READ_32_PJ;
        Energy {
            mac_pj,
            pointer_sram_pj,
            matrix_sram_pj,
            total_nj: (mac_pj + pointer_sram_pj + matrix_sram_pj) / 1e3,
        }
    }
}
