//! The WGSL kernels (one file per kernel in `shaders/`, entry point named after the file) and
//! a per-device cache of their compiled pipelines keyed by kernel and specialisation constants.

use super::device::GpuContext;
use crate::error::Result;
use std::collections::HashMap;
use std::sync::Mutex;

/// One kernel: its name (= file stem = entry point) and WGSL source.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// File stem and entry point.
    pub name: &'static str,
    /// WGSL source.
    pub source: &'static str,
}

/// EIE SpMV, one dispatch per layer: fused leading non-zero detection from the input's
/// bitmap, PEs walking column slices with a lane per entry, split-column reduction, bias, ReLU
/// and the output's bitmap; f32, fixed16 and f16 by specialisation.
pub const EIE_SPMV: Kernel = Kernel {
    name: "eie_spmv",
    source: include_str!("../../shaders/eie_spmv.wgsl"),
};
/// Stand-alone non-zero compaction: dense vectors to (index, value) lists.
pub const COMPACT_NONZEROS: Kernel = Kernel {
    name: "compact_nonzeros",
    source: include_str!("../../shaders/compact_nonzeros.wgsl"),
};
/// Dense f32 GEMV/GEMM baseline.
pub const DENSE_GEMV: Kernel = Kernel {
    name: "dense_gemv",
    source: include_str!("../../shaders/dense_gemv.wgsl"),
};
/// Plain CSR f32 SpMV baseline.
pub const CSR_SPMV: Kernel = Kernel {
    name: "csr_spmv",
    source: include_str!("../../shaders/csr_spmv.wgsl"),
};

/// Every kernel of the backend.
pub const ALL: [Kernel; 4] = [EIE_SPMV, COMPACT_NONZEROS, DENSE_GEMV, CSR_SPMV];

/// Compiled pipelines of one device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

impl PipelineCache {
    /// The pipeline of `kernel` specialised with `constants` (override name, value), compiled
    /// on first use inside an error scope.
    pub(crate) fn get(
        &self,
        ctx: &GpuContext,
        kernel: Kernel,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = format!("{}{constants:?}", kernel.name);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let label = format!("eie/gpu/{}", kernel.name);
        let device = ctx.device();
        let pipeline = ctx.scoped(&format!("compiling {label} {constants:?}"), || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(kernel.name),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        map.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
