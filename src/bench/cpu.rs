//! CPU contenders: every [`Backend`] of [`crate::backend::cpu_backends`] (EIE engine in f32 and
//! fixed16, dense f32 through OpenBLAS or the `gemm` crate, plain CSR), timed by wall clock;
//! each names the library or kernel behind it ([`crate::baseline::dense_library`], ...).

use super::{time_wall, BenchConfig, Contender, Metric, Timing};
use crate::backend::Backend;
use crate::error::Result;
use crate::format::Model;
use crate::reference::Precision;

/// The CPU's model name and the number of threads the kernels use, e.g.
/// `Intel(R) Xeon(R) ... (2 threads)`.
///
/// [`super::Contender::device`] of the CPU contenders.
pub fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model} ({} threads)", rayon::current_num_threads())
}

/// A host backend timed by wall clock.
struct HostContender {
    backend: Box<dyn Backend>,
    device: String,
    library: Option<String>,
}

impl Contender for HostContender {
    fn name(&self) -> String {
        self.backend.name()
    }
    fn device(&self) -> String {
        self.device.clone()
    }
    fn precision(&self) -> Precision {
        self.backend.precision()
    }
    fn library(&self) -> Option<String> {
        self.library.clone()
    }
    fn run(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        self.backend.run(input)
    }
    fn time(&mut self, inputs: &[Vec<f32>], cfg: &BenchConfig) -> Result<Vec<Timing>> {
        let us = time_wall(inputs, cfg, |x| self.backend.run(x).map(drop))?;
        Ok(vec![Timing {
            metric: Metric::Wall,
            us,
        }])
    }
}

/// The CPU kernels for `model`: `cpu-dense/f32`, `cpu-csr/f32`, `cpu-eie/f32`, `cpu-eie/fixed16`
/// (the CPU's f16, an emulation for checking, is left out).
///
/// [`super::run()`] measures them; see [`super::Contender`].
pub fn cpu_contenders(model: &Model) -> Result<Vec<Box<dyn Contender>>> {
    let device = cpu_name();
    let mut backends = crate::backend::cpu_backends(model)?;
    // The CPU's f16 is an emulation of f16 storage (for checking), not a faster kernel.
    backends.retain(|b| b.precision() != Precision::F16);
    // Baselines first, as in the report's columns.
    backends.rotate_left(2);
    Ok(backends
        .into_iter()
        .map(|backend| {
            let library = library_of(&backend.name());
            Box::new(HostContender {
                backend,
                device: device.clone(),
                library,
            }) as Box<dyn Contender>
        })
        .collect())
}

/// The library or kernel behind a CPU backend, by its name.
pub fn library_of(name: &str) -> Option<String> {
    use crate::baseline::{BaselineLayer, CsrLayerF32, DenseLayerF32};
    if name == DenseLayerF32::NAME {
        Some(crate::baseline::dense_library())
    } else if name == CsrLayerF32::NAME {
        Some(crate::baseline::csr_library())
    } else if name.starts_with("cpu-eie/") {
        Some(crate::reference::cpu_engine_kernels())
    } else {
        None
    }
}
