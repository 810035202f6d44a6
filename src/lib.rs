#![doc = include_str!("../README.md")]

pub mod backend;
pub mod baseline;
#[cfg(feature = "async")]
pub mod batching;
pub mod bench;
pub mod classify;
pub mod compress;
pub mod engine;
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
mod simd;
pub mod synth;
pub mod verify;

pub use engine::{
    Device, Engine, EngineBuilder, EngineDevice, Inputs, NonFinite, NumericReport, Outputs,
};
pub use error::{Error, Result};
pub use format::{Activation, EieLayer, LoadLimits, Model};
pub use reference::{CpuEngine, DenseOracle, Precision};
