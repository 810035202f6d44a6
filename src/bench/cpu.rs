//! CPU contenders: every [`Backend`] of [`crate::backend::cpu_backends`] (EIE engine in f32 and
//! fixed16, dense f32 through OpenBLAS or the `gemm` crate, plain CSR), timed by wall clock;
//! each names the library or kernel behind it ([`crate::baseline::dense_library`], ...).

use super::Contender;
use crate::error::Result;
use crate::format::Model;
use crate::kernel_id::{KernelId, KernelKind, Place};
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

/// The CPU kernels for `model`: `cpu-dense/f32`, `cpu-csr/f32`, `cpu-eie/f32`, `cpu-eie/fixed16`
/// (the CPU's f16, an emulation for checking, is left out), baselines first as in the report's
/// columns.
///
/// [`super::run()`] measures them; see [`super::Contender`].
pub fn cpu_contenders(model: &Model) -> Result<Vec<Contender>> {
    let device = cpu_name();
    CPU_KERNELS
        .iter()
        .map(|&id| {
            let backend = crate::backend::cpu_backend(model, id)?;
            Ok(Contender::wall(backend, device.clone(), library_of(id)))
        })
        .collect()
}

/// The CPU kernels `eie bench` measures, in the report's order (baselines first): the entries
/// of [`KernelId::CPU`] but the CPU's f16, an emulation of f16 storage for checking rather than
/// a faster kernel.
pub const CPU_KERNELS: [KernelId; 4] = [
    KernelId::cpu(KernelKind::Dense, Precision::F32),
    KernelId::cpu(KernelKind::Csr, Precision::F32),
    KernelId::cpu(KernelKind::Eie, Precision::F32),
    KernelId::cpu(KernelKind::Eie, Precision::Fixed16),
];

/// The library or kernel behind a CPU kernel.
fn library_of(id: KernelId) -> Option<String> {
    match (id.place, id.kind) {
        (Place::Cpu, KernelKind::Dense) => Some(crate::baseline::dense_library()),
        (Place::Cpu, KernelKind::Csr) => Some(crate::baseline::csr_library()),
        (Place::Cpu, KernelKind::Eie) => Some(crate::reference::cpu_engine_kernels()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_kernels_are_cpu_variants_baselines_first() {
        assert!(CPU_KERNELS.iter().all(|k| KernelId::CPU.contains(k)));
        let first_eie = CPU_KERNELS.iter().position(|k| !k.kind.is_baseline());
        assert!(CPU_KERNELS[first_eie.unwrap()..]
            .iter()
            .all(|k| !k.kind.is_baseline()));
    }
}
