//! The GPU kernels as [`Backend`]s, for `eie verify` and the generic test suite.

use super::baseline::{BaselineEngine, BaselineKind};
use super::device::{DeviceOptions, GpuContext};
use super::engine::{EngineOptions, GpuEngine};
use crate::backend::Backend;
use crate::error::Result;
use crate::format::Model;
use crate::precision::Precision;
use std::sync::Arc;

impl Backend for GpuEngine {
    fn name(&self) -> String {
        GpuEngine::name(self)
    }
    fn precision(&self) -> Precision {
        GpuEngine::precision(self)
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        GpuEngine::run(self, input)
    }
}

impl Backend for BaselineEngine {
    fn name(&self) -> String {
        format!("gpu-{}/f32", self.kind().name())
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        BaselineEngine::run(self, input)
    }
}

/// Every GPU kernel variant on `ctx`: gpu-eie/f32, gpu-eie/fixed16, gpu-eie/f16,
/// (each layer walked as the planner picks for the device), gpu-eie-columns/f32 and
/// gpu-eie-rows/f32 (every layer walked one way), gpu-dense/f32 and gpu-csr/f32.
///
/// Each a [`Backend`]; [`crate::verify::verify`] compares them, [`gpu_backends`] opens the
/// default device.
pub fn gpu_backends_on(ctx: &Arc<GpuContext>, model: &Model) -> Result<Vec<Box<dyn Backend>>> {
    let mut v: Vec<Box<dyn Backend>> = Vec::new();
    for precision in Precision::ALL {
        let opts = EngineOptions {
            precision,
            ..EngineOptions::default()
        };
        v.push(Box::new(GpuEngine::new(ctx.clone(), model, opts)?));
    }
    for walk in [crate::schedule::Walk::Columns, crate::schedule::Walk::Rows] {
        let opts = EngineOptions {
            walk: Some(walk),
            ..EngineOptions::default()
        };
        v.push(Box::new(GpuEngine::new(ctx.clone(), model, opts)?));
    }
    for kind in [BaselineKind::Dense, BaselineKind::Csr] {
        v.push(Box::new(BaselineEngine::new(ctx.clone(), model, kind)?));
    }
    Ok(v)
}

/// [`gpu_backends_on`] the device [`DeviceOptions::default`] picks.
pub fn gpu_backends(model: &Model) -> Result<Vec<Box<dyn Backend>>> {
    let ctx = GpuContext::new(&DeviceOptions::default())?;
    gpu_backends_on(&ctx, model)
}
