//! The element-wise cell update of LSTM and GRU layers, defined once for the CPU engine (f32)
//! and the dense oracle (f64), in PyTorch's conventions.

use crate::format::CellKind;

/// The arithmetic the cell update runs in.
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
