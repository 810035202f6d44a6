//! # eie
//!
//! EIE, the Efficient Inference Engine for compressed neural networks (Han et al., ISCA 2016):
//! Deep Compression ([`compress`]), EIE's interleaved relative-indexed CSC storage
//! ([`format`]), a CPU model ([`reference`]) in f32 and 16-bit fixed point ([`fixed16`]), a
//! cycle-level simulator of the ASIC ([`sim`]) and WGSL kernels through wgpu (`gpu`).

pub mod backend;
pub mod compress;
pub mod error;
pub mod fixed16;
pub mod format;
pub mod import;
pub mod reference;
pub mod synth;
pub mod verify;

pub use error::{Error, Result};
pub use format::{Activation, EieLayer, Model};
pub use reference::{CpuEngine, DenseOracle, Precision};
