//! One round of the ASIC, cycle by cycle: the leading non-zero detection (LNZD) and central
//! control unit (CCU) broadcasting `(j, a_j)` into every PE's activation FIFO, and the PEs
//! popping their FIFO heads and streaming their slices of column `j` through the codebook and
//! the accumulators (EIE, sections IV-A and IV-B).
//!
//! The timing follows the register-transfer model of the authors' C++ simulator
//! (github.com/RalphMao/EIE-simulator): every module computes its outputs from the registers
//! it holds at the start of a cycle, and all registers change together at the clock edge that
//! ends it. The rules, with where each one comes from:
//!
//! 1. **LNZD** (their `nzfetch.cpp`). The LNZD holds one group of `N` activations (one per PE,
//!    as activations are interleaved like rows) and looks for the next non-zero after the one it
//!    last sent. Each cycle it either broadcasts that non-zero or, when the group holds no
//!    further one, loads the next group. A group therefore costs one cycle per non-zero, plus
//!    one cycle to find that it is exhausted unless its last non-zero sat in its last position
//!    (then the next group loads in the same cycle); a group without any non-zero costs one
//!    cycle.
//! 2. **FIFO** (their `nzfetch.cpp`). A FIFO of depth `d ≥ 2` is a ring buffer of `d` slots
//!    whose write pointer may not catch up with its read pointer, so it holds at most `d − 1`
//!    activations. Its full flag is a register: the CCU broadcasts only if, at the start of the
//!    cycle, every FIFO had a free slot; a pop in the same cycle does not make room for that
//!    cycle's broadcast. The broadcast is written at the edge that ends the cycle, and a PE can
//!    pop it at the following edge at the earliest: an activation spends at least one whole
//!    cycle in the FIFO. Depth 1 is the limit case without any FIFO (their ring cannot run with
//!    one slot): the CCU writes `(j, a_j)` straight into the PEs' activation registers, and only
//!    in a cycle when every PE was idle.
//! 3. **Pointer read** (their `ptrvec.cpp`). A PE whose slice is finished, or that is idle,
//!    takes its FIFO head at the edge; in the next cycle it reads `p[j]`, `p[j + 1]` from the
//!    even and odd pointer banks and, in the same cycle, issues the address of the slice's first
//!    entry. It then issues one entry per cycle and takes the next activation at the edge after
//!    the last one, so an activation costs `max(1, entries)` cycles: an empty slice costs the
//!    pointer read alone.
//! 4. **SRAM line, codebook, multiply, accumulate** (their `spmat.cpp`, `arithm.cpp`). Each
//!    entry then passes four more stages, one cycle each: the sparse-matrix SRAM line read (a
//!    new 64-bit line whenever the entry's line differs from the last one read), the codebook
//!    decode and accumulator address, the multiply, and the add with its write-back (a bypass
//!    forwards back-to-back hits on one accumulator). No stage ever stalls, so they add latency
//!    and no throughput limit: a round ends [`PIPELINE_TAIL`] cycles after the last entry left
//!    the pointer stage.
//!
//! The round ends in the first cycle when the CCU has no slot left, every FIFO is empty, no PE
//! holds an activation and no entry is left in the pipeline. Their simulator additionally spends
//! two cycles noticing the last write-back; those are not counted here.

use super::arith::Arith;
use super::PeStats;
use crate::format::{entry_code, entry_run, EieLayer};

/// A CCU slot in which the LNZD broadcasts nothing: it finds that its group of `N` activations
/// holds no (further) non-zero and loads the next group.
pub(crate) const LNZD_SCAN: u32 = u32::MAX;

/// Cycles an entry spends in the PE after the pointer stage: SRAM line read, codebook decode,
/// multiply, add and write-back (rule 4 of the module documentation).
pub(crate) const PIPELINE_TAIL: u64 = 4;

/// The CCU's schedule for the input range `[c0, c1)`, in groups of `pes` activations: one slot
/// per non-zero activation (its index in `bcast`), and one [`LNZD_SCAN`] slot per group whose
/// last activation is zero (rule 1). A final group shorter than `pes` is padded with zeros, as
/// the activation SRAM rows are. Returns the broadcast list `(j, a_j)` and the slots.
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
        let mut last = None;
        for (j, &a) in x[g..end].iter().enumerate() {
            if nonzero(a) {
                slots.push(bcast.len() as u32);
                bcast.push(((g + j) as u32, a));
                last = Some(j);
            }
        }
        if last != Some(pes - 1) {
            slots.push(LNZD_SCAN);
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
    // Depth 1: no FIFO, the broadcast goes straight into the PEs' activation registers.
    let direct = fifo_depth == 1;
    let mut c = RoundCounters::default();
    // Broadcasts written so far, and those a PE may pop at the start of this cycle (written at
    // least one whole cycle ago; at depth 1, written at the last edge).
    let mut pushed = 0usize;
    let mut visible = 0usize;
    let mut slot = 0usize;
    let mut t: u64 = 0;
    let mut last_entry: Option<u64> = None;
    let mut pending = !slots.is_empty();
    while pending {
        let ccu_done = slot == slots.len();
        let wants = !ccu_done && slots[slot] != LNZD_SCAN;
        let mut blocked = false;
        let mut busy_next = false;
        for (p, pe) in pes.iter_mut().enumerate() {
            let st = &mut pe_stats[p];
            let mut busy = false;
            if !pe.active && pe.head < visible {
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
            }
            if pe.active {
                busy = true;
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
                    last_entry = Some(t);
                    pe.pos += 1;
                    pe.active = pe.pos < pe.end;
                }
            } else if ccu_done {
                st.drained += 1;
            } else {
                st.starved += 1;
            }
            // Rule 2: the full flag is the FIFO's fill at the start of the cycle (after the
            // pops at the edge that began it); at depth 1, whether the PE is working.
            let fill = pushed - pe.head;
            let full = if direct { busy } else { fill >= fifo_depth - 1 };
            if wants && full {
                st.stalled += 1;
                blocked = true;
            }
            busy_next |= pe.active || fill > 0;
        }
        let before = pushed;
        if !ccu_done {
            if !wants {
                c.lnzd_empty_cycles += 1;
                slot += 1;
            } else if blocked {
                c.ccu_stall_cycles += 1;
            } else {
                pushed += 1;
                c.broadcasts += 1;
                slot += 1;
                busy_next = true;
            }
        }
        visible = if direct { pushed } else { before };
        t += 1;
        pending = busy_next || slot < slots.len();
    }
    c.cycles = last_entry.map_or(t, |e| t.max(e + 1 + PIPELINE_TAIL));
    for st in pe_stats.iter_mut() {
        st.drained += c.cycles - t;
    }
    c
}
