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
    /// WGSL source of the kernel's own file.
    pub source: &'static str,
    /// Shared declarations the source is compiled after (`shaders/common/`), or "".
    pub prelude: &'static str,
}

/// Declarations and helpers shared by the EIE kernels (`shaders/common/eie.wgsl`).
pub const EIE_COMMON: &str = include_str!("../../shaders/common/eie.wgsl");

impl Kernel {
    /// The complete WGSL module: the prelude, then the kernel's own source.
    pub fn module_source(&self) -> String {
        format!("{}\n{}", self.prelude, self.source)
    }
}

/// EIE SpMV by columns: fused leading non-zero detection from the input's bitmap, PEs walking
/// column slices with a lane per entry, then bias, ReLU and the output's bitmap (one slice) or
/// partial sums for [`EIE_REDUCE`]; f32, fixed16 and f16 by specialisation.
pub const EIE_SPMV: Kernel = Kernel {
    name: "eie_spmv",
    source: include_str!("../../shaders/eie_spmv.wgsl"),
    prelude: EIE_COMMON,
};
/// The second dispatch of a layer whose columns are split into slices: the partial sums of
/// [`EIE_SPMV`] added in slice order, then its write-back.
pub const EIE_REDUCE: Kernel = Kernel {
    name: "eie_reduce",
    source: include_str!("../../shaders/eie_reduce.wgsl"),
    prelude: EIE_COMMON,
};
/// EIE SpMV walked by rows, for layers whose inputs are mostly non-zero: the same codes with
/// relative column indices stored row by row, lanes of a row gathering activations; bias,
/// ReLU and the output's bitmap as in [`EIE_SPMV`].
pub const EIE_SPMV_ROWS: Kernel = Kernel {
    name: "eie_spmv_rows",
    source: include_str!("../../shaders/eie_spmv_rows.wgsl"),
    prelude: EIE_COMMON,
};
/// Stand-alone non-zero compaction: dense vectors to (index, value) lists.
pub const COMPACT_NONZEROS: Kernel = Kernel {
    name: "compact_nonzeros",
    source: include_str!("../../shaders/compact_nonzeros.wgsl"),
    prelude: "",
};
/// Dense f32 GEMV/GEMM baseline.
pub const DENSE_GEMV: Kernel = Kernel {
    name: "dense_gemv",
    source: include_str!("../../shaders/dense_gemv.wgsl"),
    prelude: "",
};
/// Plain CSR f32 SpMV baseline.
pub const CSR_SPMV: Kernel = Kernel {
    name: "csr_spmv",
    source: include_str!("../../shaders/csr_spmv.wgsl"),
    prelude: "",
};

/// Every kernel of the backend.
pub const ALL: [Kernel; 6] = [
    EIE_SPMV,
    EIE_REDUCE,
    EIE_SPMV_ROWS,
    COMPACT_NONZEROS,
    DENSE_GEMV,
    CSR_SPMV,
];

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
                source: wgpu::ShaderSource::Wgsl(kernel.module_source().into()),
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
