//! The PE datapath's arithmetic in the simulator's two precisions, written to give exactly the
//! CPU model's results: f32 accumulates `codebook[v] * a` from 0 and adds the bias on write-back
//! (as [`crate::reference::layer_f32`]); fixed16 starts the accumulator at the bias and follows
//! [`crate::fixed16`] (as [`crate::reference::layer_fixed16`]).

use crate::fixed16::{self, FixedCodebook};
use crate::format::Activation;

/// One layer's codebook decode, multiply-accumulate and write-back.
pub(crate) trait Arith: Sync {
    /// An activation as it travels through the FIFOs and registers.
    type Act: Copy + Send + Sync;
    /// An accumulator.
    type Acc: Copy + Send + Sync;
    /// The zero activation.
    fn zero(&self) -> Self::Act;
    /// Whether the LNZD sees `a` as non-zero.
    fn nonzero(a: Self::Act) -> bool;
    /// The accumulator's value before the first product of a row with bias `bias`.
    fn start(&self, bias: f32) -> Self::Acc;
    /// `acc += codebook[code] * a`.
    fn mac(&self, acc: &mut Self::Acc, a: Self::Act, code: u8);
    /// Write-back: bias (f32), rounding (fixed16) and the activation function.
    fn finish(&self, acc: Self::Acc, bias: f32, activation: Activation) -> Self::Act;
}

/// f32 datapath.
pub(crate) struct F32Arith<'a> {
    pub codebook: &'a [f32],
}

impl Arith for F32Arith<'_> {
    type Act = f32;
    type Acc = f32;
    fn zero(&self) -> f32 {
        0.0
    }
    fn nonzero(a: f32) -> bool {
        a != 0.0
    }
    fn start(&self, _bias: f32) -> f32 {
        0.0
    }
    #[inline]
    fn mac(&self, acc: &mut f32, a: f32, code: u8) {
        *acc += self.codebook[code as usize] * a;
    }
    fn finish(&self, acc: f32, bias: f32, activation: Activation) -> f32 {
        activation.apply(acc + bias)
    }
}

/// EIE's 16-bit fixed-point datapath: `i16` activations and `i32` accumulators in the layer's
/// formats ([`crate::fixed16::LayerFormat`]).
pub(crate) struct FixedArith {
    pub codebook: FixedCodebook,
    pub format: fixed16::LayerFormat,
}

impl Arith for FixedArith {
    type Act = i16;
    type Acc = i32;
    fn zero(&self) -> i16 {
        0
    }
    fn nonzero(a: i16) -> bool {
        a != 0
    }
    fn start(&self, bias: f32) -> i32 {
        if bias == 0.0 {
            0
        } else {
            fixed16::bias_to_acc(bias, self.format.acc_frac())
        }
    }
    #[inline]
    fn mac(&self, acc: &mut i32, a: i16, code: u8) {
        *acc = acc.wrapping_add(self.codebook.term(a, code));
    }
    fn finish(&self, acc: i32, _bias: f32, activation: Activation) -> i16 {
        let shift = self.format.write_back_shift();
        fixed16::write_back(acc, shift, activation == Activation::Relu).0
    }
}
