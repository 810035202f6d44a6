//! The GPU kernels as [`Backend`]s, for `eie verify`, the generic test suite and `eie bench`:
//! one runner per entry of [`KernelId::GPU`], each also a [`TimedBackend`] (it times itself
//! with timestamp queries).

use super::baseline::{BaselineEngine, BaselineKind};
use super::device::{DeviceOptions, GpuContext};
use super::engine::{EngineOptions, GpuEngine};
use super::program::{Timing, TimingOptions};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::Model;
use crate::kernel_id::{KernelId, KernelKind};
use crate::schedule::Walk;
use std::sync::Arc;

/// A GPU [`Backend`] that also times itself on the device: `K` runs in one submission with
/// timestamp queries, and the wall time of each call ([`Timing`]).
///
/// [`gpu_backends_on`] builds them; `eie bench` times them.
pub trait TimedBackend: Backend {
    /// The same runner as a plain [`Backend`].
    fn into_backend(self: Box<Self>) -> Box<dyn Backend>;

    /// Times the model (see [`Timing`] and [`TimingOptions`]): one warm-up, then
    /// `opts.samples` samples, sample `s` on `inputs[s % inputs.len()]` (each one batch, all of
    /// one size), as `GpuEngine::time` does on one input.
    fn time(&self, inputs: &[Vec<f32>], opts: &TimingOptions) -> Result<Timing>;
}

/// `inputs` as the program's timing takes them.
fn borrowed(inputs: &[Vec<f32>]) -> Vec<&[f32]> {
    inputs.iter().map(Vec::as_slice).collect()
}

impl Backend for GpuEngine {
    fn id(&self) -> KernelId {
        GpuEngine::id(self)
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        GpuEngine::run(self, input)
    }
}

impl TimedBackend for GpuEngine {
    fn into_backend(self: Box<Self>) -> Box<dyn Backend> {
        self
    }
    fn time(&self, inputs: &[Vec<f32>], opts: &TimingOptions) -> Result<Timing> {
        self.program().time(&borrowed(inputs), opts)
    }
}

impl Backend for BaselineEngine {
    fn id(&self) -> KernelId {
        BaselineEngine::id(self)
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        BaselineEngine::run(self, input)
    }
}

impl TimedBackend for BaselineEngine {
    fn into_backend(self: Box<Self>) -> Box<dyn Backend> {
        self
    }
    fn time(&self, inputs: &[Vec<f32>], opts: &TimingOptions) -> Result<Timing> {
        self.program().time(&borrowed(inputs), opts)
    }
}

/// The GPU runner of `id` on `ctx` for `model`, taking batches up to `max_batch`; an
/// [`Error::InvalidArgument`] for an id that is not one of [`KernelId::GPU`].
///
/// [`gpu_backends_on`] builds every one.
pub fn gpu_backend(
    ctx: &Arc<GpuContext>,
    model: &Model,
    id: KernelId,
    max_batch: usize,
) -> Result<Box<dyn TimedBackend>> {
    if !KernelId::GPU.contains(&id) {
        return Err(Error::InvalidArgument(format!(
            "`{id}` is not a GPU kernel: they are {}",
            KernelId::GPU.map(|k| k.to_string()).join(", ")
        )));
    }
    let eie = |walk: Option<Walk>| {
        let opts = EngineOptions {
            precision: id.precision,
            max_batch,
            walk,
            ..EngineOptions::default()
        };
        GpuEngine::new(ctx.clone(), model, opts)
    };
    let baseline = |kind| BaselineEngine::with_max_batch(ctx.clone(), model, kind, max_batch);
    Ok(match id.kind {
        KernelKind::Eie => Box::new(eie(None)?),
        KernelKind::EieColumns => Box::new(eie(Some(Walk::Columns))?),
        KernelKind::EieRows => Box::new(eie(Some(Walk::Rows))?),
        KernelKind::Dense => Box::new(baseline(BaselineKind::Dense)?),
        KernelKind::Csr => Box::new(baseline(BaselineKind::Csr)?),
    })
}

/// Every GPU kernel variant on `ctx`, one per entry of [`KernelId::GPU`]: gpu-eie/f32,
/// gpu-eie/fixed16, gpu-eie/f16 (each layer walked as the planner picks for the device),
/// gpu-eie-columns/f32 and gpu-eie-rows/f32 (every layer walked one way), gpu-dense/f32 and
/// gpu-csr/f32, each taking batches up to `max_batch`.
///
/// Each a [`TimedBackend`]; [`crate::verify::verify`] compares them (as [`Backend`]s),
/// [`gpu_backends`] opens the default device.
pub fn gpu_backends_on(
    ctx: &Arc<GpuContext>,
    model: &Model,
    max_batch: usize,
) -> Result<Vec<Box<dyn TimedBackend>>> {
    KernelId::GPU
        .iter()
        .map(|&id| gpu_backend(ctx, model, id, max_batch))
        .collect()
}

/// [`gpu_backends_on`] the device [`DeviceOptions::default`] picks, as [`Backend`]s, taking
/// batches up to 64 inputs per submission (more are split).
pub fn gpu_backends(model: &Model) -> Result<Vec<Box<dyn Backend>>> {
    let ctx = GpuContext::new(&DeviceOptions::default())?;
    Ok(
        gpu_backends_on(&ctx, model, EngineOptions::default().max_batch)?
            .into_iter()
            .map(TimedBackend::into_backend)
            .collect(),
    )
}
