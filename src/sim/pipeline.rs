//! One round of the ASIC, cycle by cycle: the leading non-zero detection (LNZD) and central
//! control unit (CCU) broadcasting `(j, a_j)` into every PE's activation FIFO, and the PEs
//! popping their FIFO heads and streaming their slices of column `j` through the codebook and
//! the accumulators (EIE, sections IV-A and IV-B).
//!
//! Timing rules, applied in this order within a cycle:
//! 1. every PE that is idle pops its FIFO head (if any) and reads `p[j]`, `p[j + 1]` from the
//!    even/odd pointer banks; a PE with an activation in hand processes one entry of its slice
//!    (one codebook decode and one multiply-accumulate, or a padding entry), or, when its slice
//!    is empty, spends the cycle on the pointer read alone. An activation therefore costs
//!    `max(1, entries)` cycles: the pointer read of the next activation overlaps the last entry
//!    of the current one.
//! 2. the CCU takes its next slot: a group of `N` activations without a non-zero costs the cycle;
//!    a non-zero is pushed into every FIFO unless some FIFO is still full after this cycle's
//!    pops, in which case the CCU stalls. A pushed activation is visible to the PEs the next
//!    cycle.
//!
//! The round ends on the first cycle in which the CCU has no slot left, every FIFO is empty and
//! no PE holds an activation.

use super::arith::Arith;
use super::PeStats;
use crate::format::{entry_code, entry_run, EieLayer};

/// A CCU slot that scans a group of `N` activations holding no non-zero.
pub(crate) const EMPTY_GROUP: u32 = u32::MAX;

/// The CCU's schedule for the input range `[c0, c1)`: one slot per non-zero activation (its
/// index in `bcast`) and one [`EMPTY_GROUP`] slot per group of `pes` activations without one.
/// Returns the broadcast list `(j, a_j)` and the slots.
pub(crate) fn schedule<T: Copy>(
    x: &[T],
    c0: usize,
    c1: usize,
    pes: usize,
    nonzero: impl Fn(T) -> bool,
) -> (Vec<(u32, T)>, Vec<u32>) {
    let mut bcast = Vec::new();
    let mut slots = Vec::new();
    let mut g = c0;
    while g < c1 {
        let end = (g + pes).min(c1);
        let before = bcast.len();
        for (j, &a) in x[g..end].iter().enumerate() {
            if nonzero(a) {
                slots.push(bcast.len() as u32);
                bcast.push(((g + j) as u32, a));
            }
        }
        if bcast.len() == before {
            slots.push(EMPTY_GROUP);
        }
        g = end;
    }
    (bcast, slots)
}

/// Round-level counters (the per-PE ones go to [`PeStats`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RoundCounters {
    pub cycles: u64,
    pub lnzd_empty_cycles: u64,
    pub ccu_stall_cycles: u64,
    pub broadcasts: u64,
}

/// A PE's state within a round.
#[derive(Clone, Copy)]
struct Pe<T: Copy> {
    /// Index in the broadcast list of the next activation to pop; the FIFO holds
    /// `head..pushed`.
    head: usize,
    /// Holding an activation (its slice not yet finished).
    active: bool,
    act: T,
    /// Entry cursor and end within the PE's entries.
    pos: usize,
    end: usize,
    /// Local row of the last entry decoded (wrapping "-1" at the top of a column).
    row: usize,
    /// Sparse-matrix SRAM line currently in the read register.
    line: usize,
    /// Row and cycle of the last multiply-accumulate (for the bypass count).
    last_row: usize,
    last_mac: u64,
}

/// Simulates one round: `bcast`/`slots` from [`schedule`] over `layer`'s columns, accumulating
/// into `acc[p][local_row]`. Adds to `pe_stats` and returns the round's counters.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_round<A: Arith>(
    layer: &EieLayer,
    arith: &A,
    bcast: &[(u32, A::Act)],
    slots: &[u32],
    fifo_depth: usize,
    line_entries: usize,
    acc: &mut [Vec<A::Acc>],
    pe_stats: &mut [PeStats],
) -> RoundCounters {
    let n = layer.pes();
    let slices: Vec<_> = (0..n).map(|p| layer.pe(p)).collect();
    let mut pes = vec![
        Pe {
            head: 0,
            active: false,
            act: arith.zero(),
            pos: 0,
            end: 0,
            row: 0,
            line: usize::MAX,
            last_row: usize::MAX,
            last_mac: u64::MAX,
        };
        n
    ];
    let mut c = RoundCounters::default();
    let mut pushed = 0usize;
    let mut slot = 0usize;
    let mut t: u64 = 0;
    let mut pending = !slots.is_empty();
    while pending {
        let ccu_done = slot == slots.len();
        let mut fullest = 0usize;
        let mut busy_next = false;
        for (p, pe) in pes.iter_mut().enumerate() {
            let st = &mut pe_stats[p];
            if !pe.active {
                if pe.head < pushed {
                    let (j, a) = bcast[pe.head];
                    pe.head += 1;
                    let ptr = slices[p].col_ptr;
                    pe.pos = ptr[j as usize] as usize;
                    pe.end = ptr[j as usize + 1] as usize;
                    pe.act = a;
                    pe.row = usize::MAX;
                    pe.active = true;
                    st.pointer_reads += 2;
                    st.activations += 1;
                } else {
                    if ccu_done {
                        st.drained += 1;
                    } else {
                        st.starved += 1;
                    }
                    continue;
                }
            }
            st.busy += 1;
            if pe.pos == pe.end {
                // Empty slice: the cycle goes to the pointer read.
                st.empty_slices += 1;
                pe.active = false;
            } else {
                let e = slices[p].entries[pe.pos];
                let line = pe.pos / line_entries;
                if line != pe.line {
                    st.matrix_reads += 1;
                    pe.line = line;
                }
                pe.row = pe.row.wrapping_add(entry_run(e) as usize + 1);
                let code = entry_code(e);
                if code != 0 {
                    arith.mac(&mut acc[p][pe.row], pe.act, code);
                    st.useful_macs += 1;
                    if pe.row == pe.last_row && pe.last_mac.wrapping_add(1) == t {
                        st.bypasses += 1;
                    }
                    pe.last_row = pe.row;
                    pe.last_mac = t;
                } else {
                    st.padding_entries += 1;
                }
                pe.pos += 1;
                pe.active = pe.pos < pe.end;
            }
            let fill = pushed - pe.head;
            fullest = fullest.max(fill);
            busy_next |= pe.active || fill > 0;
        }
        if !ccu_done {
            let s = slots[slot];
            if s == EMPTY_GROUP {
                c.lnzd_empty_cycles += 1;
                slot += 1;
            } else if fullest >= fifo_depth {
                c.ccu_stall_cycles += 1;
                for (p, pe) in pes.iter().enumerate() {
                    if pushed - pe.head >= fifo_depth {
                        pe_stats[p].stalled += 1;
                    }
                }
            } else {
                pushed += 1;
                c.broadcasts += 1;
                slot += 1;
                busy_next = true;
            }
        }
        t += 1;
        pending = busy_next || slot < slots.len();
    }
    c.cycles = t;
    c
}
