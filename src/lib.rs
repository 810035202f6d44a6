//! # eie: compressed neural networks, run as EIE runs them
//!
//! `eie` runs fully-connected layers compressed the Deep Compression way (pruned, weights
//! shared through a per-layer codebook, stored in EIE's interleaved relative-indexed format),
//! skipping zero activations as the EIE accelerator does: on the CPU (f32, EIE's 16-bit fixed
//! point, f16 storage) and on any GPU wgpu reaches (Vulkan, Metal, DX12, WebGPU). This page is
//! the guide for applications; the repository's README and `docs/` cover the format, the
//! kernels, the simulator and the benchmarks.
//!
//! ## Load a model
//!
//! A model file is a `.safetensors` file with EIE's layers inside ([`Model::load`], every
//! pointer and checksum checked; a hostile file is a typed [`Error`], never a panic). Make one
//! from dense weights with `eie compress` or [`compress::compress_model`]; this crate ships
//! LeNet-300-100 trained on MNIST in `assets/lenet/`.
//!
//! ```
//! # fn main() -> eie::Result<()> {
//! let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("assets/lenet/lenet-300-100.eie.safetensors");
//! let model = eie::Model::load(&path)?;
//! assert_eq!((model.input_size(), model.output_size()), (784, 10));
//! # Ok(())
//! # }
//! ```
//!
//! ## Build an engine
//!
//! One builder for every device: [`Engine::builder`], a [`Precision`] and a [`Device`].
//! [`Device::Auto`] takes a hardware GPU when there is one, otherwise the CPU engine, and
//! [`Engine::device`] says which it took and why. From async code, [`EngineBuilder::build_async`]
//! builds on a thread of its own.
//!
//! ```
//! # fn main() -> eie::Result<()> {
//! # let model = eie::Model::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//! #     .join("assets/lenet/lenet-300-100.eie.safetensors"))?;
//! use eie::{Device, Engine, Precision};
//! let engine = Engine::builder(model)
//!     .precision(Precision::F32)
//!     .device(Device::Auto)
//!     .build()?;
//! println!("{} on {}", engine.id(), engine.device()); // e.g. `cpu-eie/f32 on CPU (8 threads)`
//! # Ok(())
//! # }
//! ```
//!
//! ## Run
//!
//! Inputs are a borrowed, shaped batch ([`Inputs`]; a plain `&[f32]` is one input). Outputs
//! carry their shape and a [`NumericReport`]: fixed16 inputs clipped, fixed16 saturations per
//! layer (on the GPU too, which counts write-back saturations but not accumulator overflows),
//! non-finite outputs ([`NonFinite::Error`] refuses those).
//!
//! ```
//! # fn main() -> eie::Result<()> {
//! # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/lenet");
//! # let engine = eie::Engine::builder(eie::Model::load(&dir.join("lenet-300-100.eie.safetensors"))?)
//! #     .device(eie::Device::Cpu).build()?;
//! use eie::classify::read_images;
//! use eie::Inputs;
//! let (n, width, pixels) = read_images(&dir.join("test-images.npy"))?; // uint8 → 0..=1
//! let out = engine.run(Inputs::new(&pixels[..8 * width], 8, width)?)?;
//! assert_eq!((out.batch(), out.width()), (8, 10));
//! let digits = out.argmax();
//! assert!(out.report().is_clean());
//! # let _ = (n, digits);
//! # Ok(())
//! # }
//! ```
//!
//! [`Engine::run`] blocks the calling thread; [`Engine::run_async`] (feature `async`, on by
//! default) is the same run as an owned `'static` future over any owned buffer (`Vec<f32>`,
//! `Arc<[f32]>`: no copy), for `tokio::spawn` or any executor. Every runner in the crate means
//! the same by these two names (`CpuEngine::run`, `gpu::GpuEngine::run` and `run_async`,
//! [`batching::Batcher::run_async`], ...).
//!
//! ## Batch and serve
//!
//! [`batching::Batcher`] gathers concurrent single requests into batches (at most `max_batch`,
//! waiting at most `max_delay`), with a bounded queue ([`Error::QueueFull`]), cancellation that
//! costs no one else, and a graceful [`batching::Batcher::shutdown`]. `examples/serve.rs` loads
//! it with 64 concurrent clients.
//!
//! ```
//! # fn main() -> eie::Result<()> {
//! # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/lenet");
//! # let engine = eie::Engine::builder(eie::Model::load(&dir.join("lenet-300-100.eie.safetensors"))?)
//! #     .device(eie::Device::Cpu).build()?;
//! use eie::batching::{BatchConfig, Batcher};
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! rt.block_on(async {
//!     let batcher = Batcher::new(engine, BatchConfig::default())?;
//!     let y = batcher.run_async(vec![0.5f32; 784]).await?;
//!     assert_eq!(y.len(), 10);
//!     batcher.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Across processes, `serve` (feature `serve`, part of the CLI's `cli`) is a server speaking the
//! Open Inference Protocol (KServe v2 / Triton) over REST and gRPC in front of these batchers,
//! with Prometheus metrics: `eie::serve::Server::start(ServeConfig::new(models))`, or the
//! `eie serve` command.
//!
//! ## Lower levels
//!
//! [`CpuEngine`] and `gpu::GpuEngine` (feature `gpu`) are the engines behind [`Engine`], with
//! forced walks, timing and pipelining; [`compress`] prunes, shares weights and searches
//! per-layer settings against an accuracy budget; [`import`] reads `.npy` and `.safetensors`;
//! [`recurrent`] runs LSTM and GRU layers (PyTorch's names, gate matrices stored as EIE
//! layers) over sequences, beside fully-connected ones, in a [`SequenceModel`] on the CPU
//! (whole sequences or step by step) and on the GPU (`gpu::GpuSequenceEngine`); [`sim`] is a cycle-level model of the EIE ASIC; [`schedule`] plans GPU dispatches (and models
//! their time) without a GPU; [`verify`] cross-checks every backend against a dense oracle.
//! The rest: [`format`](mod@format) is the storage format and the model file, [`fixed16`] the
//! 16-bit arithmetic, [`backend`] the one trait every runner implements (what [`verify`]
//! compares and the benchmarks time), [`kernel_id`] the names of every kernel variant
//! ([`kernel_id::KernelId`]: `cpu-eie/f32`, `gpu-eie-rows/f32`, ...), [`baseline`] the
//! dense and CSR baselines, [`paper`] the paper's layers, [`classify`] the MNIST assets and
//! accuracy. Every module's page names its main items and where to start.
//!
//! ## Public API
//!
//! What an application needs is at the crate root: [`Model`] (and [`SequenceModel`]),
//! [`Engine`] with its builder, [`Device`], [`Inputs`] and [`Outputs`], [`Precision`], [`Error`]
//! and [`Result`]; [`compress`] makes model files. These and the modules documented here follow
//! semantic versioning. Not documented, and unstable (they may change or go in any release):
//! the benchmark framework (`eie::bench`), the seeded synthetic generators (`eie::synth`) and
//! the measured cost constants behind the CPU engine's walk choice and the GPU scheduler's
//! heuristics (`reference::ROW_SLOT_COST`, `SLICE_COST`, `PARALLEL_MIN_ENTRIES`, ...,
//! `schedule::EIE_METADATA_SHARE`, `EIE_TARGET_WORKGROUPS`, ...). They are public only for this
//! crate's own benches, tests, examples and command-line tool.

// Every public item is documented, and every intra-doc link resolves (`cargo doc` fails on a
// broken link or one to a private item). Some links point into the default features (`gpu`,
// `async`), so the link check assumes them.
#![warn(missing_docs)]
#![cfg_attr(
    all(feature = "gpu", feature = "async"),
    deny(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)
)]

pub mod backend;
pub mod baseline;
#[cfg(feature = "async")]
pub mod batching;
// Unstable: the benchmark framework of `eie bench`, `benches/` and the tests, public for them
// only; not part of the documented API, it may change in any release.
#[doc(hidden)]
pub mod bench;
pub mod calibration;
#[cfg(feature = "charts")]
mod chart;
pub mod classify;
pub mod compress;
pub mod dense;
pub mod engine;
pub mod error;
pub mod fixed16;
pub mod format;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod import;
pub mod kernel_id;
pub mod paper;
pub mod precision;
pub mod recurrent;
pub mod reference;
pub mod schedule;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sim;
mod simd;
// Unstable: seeded synthetic data for the demo, `eie verify`, the benches and the tests, public
// for them only; not part of the documented API, it may change in any release.
#[doc(hidden)]
pub mod synth;
pub mod verify;

pub use engine::{
    Device, Engine, EngineBuilder, EngineDevice, Inputs, NonFinite, NumericReport, Outputs,
};
pub use error::{Error, Result};
pub use format::{Activation, CellKind, EieLayer, LoadLimits, Model, SequenceModel};
pub use precision::Precision;
pub use reference::{CpuEngine, DenseOracle};

// The README's examples compile and run as tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
