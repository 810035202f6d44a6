#![doc = include_str!("../README.md")]

pub mod backend;
pub mod baseline;
pub mod bench;
pub mod classify;
pub mod compress;
pub mod error;
pub mod fixed16;
pub mod format;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod import;
pub mod paper;
pub mod reference;
pub mod schedule;
pub mod sim;
pub mod synth;
pub mod verify;

pub use error::{Error, Result};
pub use format::{Activation, EieLayer, Model};
pub use reference::{CpuEngine, DenseOracle, Precision};
