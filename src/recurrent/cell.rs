//! The element-wise cell update of LSTM and GRU layers, defined once for the CPU engine (f32)
//! and the dense oracle (f64), in PyTorch's conventions.
//!
//! [`update`] is the float cell ([`CellFloat`]: `f32` and `f64`), [`update_fixed16`] the
//! fixed16 one; the [module page of `recurrent`](super) shows the engine that calls them.

use crate::format::CellKind;

/// The arithmetic the cell update runs in.
///
/// Implemented for `f32` (the [`SequenceEngine`](super::SequenceEngine)) and `f64` (the
/// [`SequenceOracle`](super::SequenceOracle)); [`update`] is generic over it.
pub trait CellFloat: Copy + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> {
    /// `1 / (1 + e^(-x))`.
    fn sigmoid(self) -> Self;
    /// The hyperbolic tangent.
    fn tanh(self) -> Self;
    /// `1 - self`.
    fn one_minus(self) -> Self;
}

impl CellFloat for f32 {
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn one_minus(self) -> Self {
        1.0 - self
    }
}

impl CellFloat for f64 {
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn one_minus(self) -> Self {
        1.0 - self
    }
}

/// One step of a cell of `hidden` units, given the gate pre-activations of the input part
/// (`gx = W_ih x + b_ih`) and of the hidden part (`gh = W_hh h + b_hh`), each `G × hidden`
/// values in PyTorch's gate order (gate `g` of unit `u` at `g × hidden + u`). Updates `h`
/// (and, for an LSTM, `c`) in place.
///
/// * LSTM (gates `i, f, g, o`): `c' = σ(f) c + σ(i) tanh(g)`, `h' = σ(o) tanh(c')`, each gate
///   `gx + gh`.
/// * GRU (gates `r, z, n`): `r = σ(gx_r + gh_r)`, `z = σ(gx_z + gh_z)`,
///   `n = tanh(gx_n + r ⊙ gh_n)` (so `b_hn` is inside the reset product),
///   `h' = (1 − z) n + z h`. `c` is unused (pass an empty slice).
///
/// [`update_fixed16`] is the fixed16 counterpart; `examples/lstm_step.rs` calls this one for
/// a dense LSTM step.
pub fn update<T: CellFloat>(kind: CellKind, gx: &[T], gh: &[T], h: &mut [T], c: &mut [T]) {
    let n = h.len();
    match kind {
        CellKind::Lstm => {
            for u in 0..n {
                let gate = |g: usize| gx[g * n + u] + gh[g * n + u];
                let (i, f) = (gate(0).sigmoid(), gate(1).sigmoid());
                let (g, o) = (gate(2).tanh(), gate(3).sigmoid());
                c[u] = f * c[u] + i * g;
                h[u] = o * c[u].tanh();
            }
        }
        CellKind::Gru => {
            for u in 0..n {
                let r = (gx[u] + gh[u]).sigmoid();
                let z = (gx[n + u] + gh[n + u]).sigmoid();
                let cand = (gx[2 * n + u] + r * gh[2 * n + u]).tanh();
                h[u] = z.one_minus() * cand + z * h[u];
            }
        }
    }
}

/// Fraction bits of the fixed16 cell's gate outputs (`σ`, `tanh`) and of its cell state `c`.
///
/// Used by [`update_fixed16`].
pub const GATE_FRAC: u32 = 15;
/// Fraction bits of a fixed16 recurrent layer's output `h` (Q1.14: `|h| ≤ 1` holds exactly).
///
/// Used by [`update_fixed16`].
pub const H_FRAC: u32 = 14;
/// The fixed16 cell state `c` saturates at `±C_LIMIT / 2^15` (about ±512), so that it round
/// trips exactly through an f32 state.
///
/// Used by [`update_fixed16`].
pub const C_LIMIT: i64 = (1 << 24) - 1;
/// The fixed16 `σ` and `tanh` tables cover `[-TABLE_RANGE, TABLE_RANGE]` in steps of
/// `1 / TABLE_STEPS`; beyond it the end values hold.
///
/// See [`sigmoid_fixed16`] and [`tanh_fixed16`].
pub const TABLE_RANGE: i64 = 8;
/// Table entries per unit of input.
///
/// See [`TABLE_RANGE`].
pub const TABLE_STEPS: i64 = 16;
/// Entries of each fixed16 table.
pub(crate) const TABLE_LEN: usize = (2 * TABLE_RANGE * TABLE_STEPS + 1) as usize;
/// Fraction bits of the table's input position.
pub(crate) const POS_FRAC: u32 = 12;
/// Fraction bits of the position within one table step (interpolation weight).
pub(crate) const STEP_BITS: u32 = POS_FRAC - TABLE_STEPS.trailing_zeros();

/// A cell state value in the fixed16 cell's format: `round(x × 2^15)` saturated at
/// ±[`C_LIMIT`].
pub fn quantize_c(x: f32) -> i32 {
    let limit = C_LIMIT as f64;
    (x as f64 * (1u64 << GATE_FRAC) as f64)
        .round()
        .clamp(-limit, limit) as i32
}

/// A fixed16 cell state value back to f32 (exact: `|q| ≤ C_LIMIT < 2^24`).
pub fn dequantize_c(q: i32) -> f32 {
    q as f32 / (1u32 << GATE_FRAC) as f32
}

/// `(v + 2^(s−1)) >> s`: a right shift rounding half up (`s ≥ 1`).
fn shift_round(v: i64, s: u32) -> i64 {
    (v + (1 << (s - 1))) >> s
}

/// The two tables: `round(f(k / 16 − 8) × 2^15)` for `k = 0 ..= 256`, `f` = σ and tanh,
/// computed once in f64 (a port to another backend uploads the same integers).
fn tables() -> &'static ([i32; TABLE_LEN], [i32; TABLE_LEN]) {
    static TABLES: std::sync::OnceLock<([i32; TABLE_LEN], [i32; TABLE_LEN])> =
        std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut s = [0i32; TABLE_LEN];
        let mut t = [0i32; TABLE_LEN];
        for k in 0..TABLE_LEN {
            let x = k as f64 / TABLE_STEPS as f64 - TABLE_RANGE as f64;
            let scale = (1u32 << GATE_FRAC) as f64;
            s[k] = (scale / (1.0 + (-x).exp())).round() as i32;
            t[k] = (scale * x.tanh()).round() as i32;
        }
        (s, t)
    })
}

/// The sigmoid table then the tanh table, as a backend uploads them (what
/// [`sigmoid_fixed16`] and [`tanh_fixed16`] interpolate in).
#[cfg_attr(
    not(all(feature = "gpu", not(target_arch = "wasm32"))),
    allow(dead_code)
)]
pub(crate) fn fixed16_tables() -> Vec<i32> {
    let (s, t) = tables();
    s.iter().chain(t.iter()).copied().collect()
}

/// Looks `x` (with `frac` fraction bits) up in `table`, interpolating linearly between
/// entries (rounding half up); the result has [`GATE_FRAC`] fraction bits.
fn lookup(table: &[i32; TABLE_LEN], x: i64, frac: u32) -> i32 {
    let limit = TABLE_RANGE << frac;
    let x = x.clamp(-limit, limit);
    // The input in Q.12, then its position in table steps with 8 fraction bits.
    let x12 = if frac >= POS_FRAC {
        if frac == POS_FRAC {
            x
        } else {
            shift_round(x, frac - POS_FRAC)
        }
    } else {
        x << (POS_FRAC - frac)
    };
    let step_bits = STEP_BITS;
    let pos = x12 + (TABLE_RANGE << POS_FRAC);
    let idx = (pos >> step_bits) as usize;
    let part = pos & ((1 << step_bits) - 1);
    if idx + 1 >= TABLE_LEN {
        return table[TABLE_LEN - 1];
    }
    let (a, b) = (table[idx] as i64, table[idx + 1] as i64);
    (a + shift_round((b - a) * part, step_bits)) as i32
}

/// EIE's fixed16 `σ`: `x` with `frac` fraction bits (0..=24) to `σ(x)` with [`GATE_FRAC`]
/// fraction bits, by linear interpolation in a 257-entry table over `[−8, 8]` (the one
/// definition every fixed16 backend uses), the end values beyond.
pub fn sigmoid_fixed16(x: i64, frac: u32) -> i32 {
    lookup(&tables().0, x, frac)
}

/// EIE's fixed16 `tanh`, as [`sigmoid_fixed16`].
pub fn tanh_fixed16(x: i64, frac: u32) -> i32 {
    lookup(&tables().1, x, frac)
}

/// One fixed16 step of a cell: `gx`, `gh` are the gate pre-activations of the input and
/// hidden parts as integers with `gate_frac` fraction bits (the gate matrices' fixed16 output
/// format), `h` has [`H_FRAC`] fraction bits, `c` [`GATE_FRAC`] (saturating at
/// ±[`C_LIMIT`]). Products are formed exactly in `i64` and rounded half up:
///
/// * LSTM: `c ← (σ(f) c + σ(i) tanh(g)) >> 15`, `h ← (σ(o) tanh(c)) >> 16`;
/// * GRU: `n = tanh(gx_n + (σ(r) gh_n) >> 15)`, `h ← ((2^15 − σ(z)) n + σ(z) 2h) >> 16`.
pub fn update_fixed16(
    kind: CellKind,
    gx: &[i32],
    gh: &[i32],
    gate_frac: u32,
    h: &mut [i16],
    c: &mut [i32],
) {
    let n = h.len();
    let sum = |g: usize, u: usize| gx[g * n + u] as i64 + gh[g * n + u] as i64;
    let to_h = |v: i64| v.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    match kind {
        CellKind::Lstm => {
            for u in 0..n {
                let i = sigmoid_fixed16(sum(0, u), gate_frac) as i64;
                let f = sigmoid_fixed16(sum(1, u), gate_frac) as i64;
                let g = tanh_fixed16(sum(2, u), gate_frac) as i64;
                let o = sigmoid_fixed16(sum(3, u), gate_frac) as i64;
                let cn = shift_round(f * c[u] as i64 + i * g, GATE_FRAC).clamp(-C_LIMIT, C_LIMIT);
                c[u] = cn as i32;
                let t = tanh_fixed16(cn, GATE_FRAC) as i64;
                h[u] = to_h(shift_round(o * t, 2 * GATE_FRAC - H_FRAC));
            }
        }
        CellKind::Gru => {
            for u in 0..n {
                let r = sigmoid_fixed16(sum(0, u), gate_frac) as i64;
                let z = sigmoid_fixed16(sum(1, u), gate_frac) as i64;
                let pre = gx[2 * n + u] as i64 + shift_round(r * gh[2 * n + u] as i64, GATE_FRAC);
                let cand = tanh_fixed16(pre, gate_frac) as i64;
                let h15 = (h[u] as i64) << (GATE_FRAC - H_FRAC);
                let v = ((1 << GATE_FRAC) - z) * cand + z * h15;
                h[u] = to_h(shift_round(v, 2 * GATE_FRAC - H_FRAC));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed16_sigmoid_and_tanh_follow_the_functions() {
        let (s, t) = tables();
        assert_eq!((s[0], s[128], s[256]), (11, 16384, 32757));
        assert_eq!((t[0], t[128], t[256]), (-32768, 0, 32768));
        for frac in [6u32, 10, 12, 14, 20] {
            let (mut worst_s, mut worst_t, mut last) = (0f64, 0f64, (i32::MIN, i32::MIN));
            for k in -(10i64 << frac)..=(10 << frac) {
                if frac > 12 && k % (1 << (frac - 10)) != 0 {
                    continue;
                }
                let x = k as f64 / (1u64 << frac) as f64;
                let (ys, yt) = (sigmoid_fixed16(k, frac), tanh_fixed16(k, frac));
                assert!(ys >= last.0 && yt >= last.1, "monotone at {x}");
                last = (ys, yt);
                worst_s = worst_s.max((ys as f64 / 32768.0 - 1.0 / (1.0 + (-x).exp())).abs());
                worst_t = worst_t.max((yt as f64 / 32768.0 - x.tanh()).abs());
            }
            eprintln!("frac {frac}: sigmoid within {worst_s:.2e}, tanh within {worst_t:.2e}");
            assert!(
                worst_s < 5e-4 && worst_t < 1e-3,
                "{frac}: {worst_s} {worst_t}"
            );
        }
    }
}
