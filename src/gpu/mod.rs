//! The wgpu backend: EIE's dataflow as WGSL compute kernels and a scheduler that runs a whole
//! model in one submission.
//!
//! * [`GpuContext`] opens an adapter ([`DeviceOptions`]: backend, adapter name, poll timeout;
//!   `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` are honoured) and never waits on the device forever.
//! * [`GpuEngine`] holds a model on the device: one `eie_spmv` dispatch per layer (non-zero
//!   detection from the input's bitmap, PEs walking column slices with a lane per entry,
//!   codebook and accumulators in workgroup memory, an ordered reduction over column slices,
//!   bias, ReLU and the next layer's bitmap fused), all layers in one compute pass; f32,
//!   fixed16 (bit for bit equal to the CPU model) and f16.
//! * [`GpuSequenceEngine`] runs a [`SequenceModel`](crate::SequenceModel) (LSTM and GRU
//!   layers): each step's `W_hh h` as an EIE product and a `recurrent_cell` dispatch for `c`
//!   and `h`, many steps per submission, the state on the device; f32 and fixed16 (bit for
//!   bit the CPU engine's).
//! * [`BaselineEngine`] runs the same model as dense f32 GEMV/GEMM or plain f32 CSR SpMV.
//! * Timing ([`Timing`], [`PipelineTiming`]) uses timestamp queries where the device has them.
//!
//! See `docs/GPU.md` for the kernels, bindings, scheduling and timing method.
//!
//! Most applications reach it through [`Engine::builder`](crate::Engine::builder) with
//! [`Device::Gpu`](crate::Device::Gpu) or [`Device::Auto`](crate::Device::Auto);
//! `examples/gpu_layers.rs` uses [`GpuContext::new`] and [`GpuEngine::new`] directly.

// The `Backend` trait runs blocking: native only.
#[cfg(not(target_arch = "wasm32"))]
mod backend;
mod baseline;
mod device;
mod engine;
pub mod kernels;
mod program;
// Sequence runs block on the device: native only.
#[cfg(not(target_arch = "wasm32"))]
mod sequence;

pub use crate::precision::Precision;
pub use crate::schedule::{PePlan, ScheduleOverride, Walk, SCHEDULE_ENV};
#[cfg(not(target_arch = "wasm32"))]
pub use backend::{gpu_backend, gpu_backends, gpu_backends_on, TimedBackend};
pub use baseline::{BaselineEngine, BaselineKind, BASELINE_MAX_BATCH};
#[cfg(not(target_arch = "wasm32"))]
pub use device::list_adapters;
pub use device::{AdapterSummary, DeviceOptions, GpuContext};
pub use engine::{EngineOptions, GpuEngine};
#[cfg(not(target_arch = "wasm32"))]
pub use kernels::compact_nonzeros;
#[cfg(not(target_arch = "wasm32"))]
pub use program::{PipelineTiming, Timing, TimingOptions};
#[cfg(not(target_arch = "wasm32"))]
pub use sequence::{GpuSequenceEngine, SequenceOptions};
/// The wgpu version this backend is built on (for `wgpu::Backends`, adapter info, ...).
pub use wgpu;
